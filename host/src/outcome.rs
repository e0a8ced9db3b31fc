//! How a plan's run ended: one named outcome for every run, printed by `run`, `fuzz`
//! and `replay` and written into reports and reproducers.
//!
//! | outcome | meaning | the checks | exit code |
//! |---|---|---|---|
//! | `done` | every operation applied | judged | 0 if they pass, else 1 |
//! | `bug <kind> at op N (…)` | the builder refused an operation where the kernel would BUG | judged: the model must expect exactly this BUG | 0 if they pass, else 1 |
//! | `crash …` | the builder took an exception | judged (the `result` check fails) | 1 |
//! | `bad-plan <why>` | the plan was rejected before running: which op or pool, what is allowed | not run | 2 |
//! | `over-capacity <limit>: needed N, held M` | a checker limit: never a pass, never the builder's fault | not run | 2 |
//! | `infrastructure <cause>` | the guest would not boot, QEMU died or stopped, the watchdog fired | not run | 2 |
//! | `n/a <why>` | the builder under test cannot express the plan or regime | not run | 0 (listed, never a pass) |

use std::fmt;

use ptcheck_shared::abi::{BugKind, BugRecord};

/// How one run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every operation applied.
    Done,
    /// The builder refused operation `op` with `kind` (whether the model expected it
    /// is for the checks to say).
    Bug {
        /// Why.
        kind: BugKind,
        /// Operation index (`u32::MAX`: creating the root).
        op: u32,
        /// Where, in words.
        what: String,
    },
    /// The builder took an exception (decoded).
    Crash(String),
    /// Rejected before running: what is wrong and what is allowed.
    BadPlan(String),
    /// A checker limit: the plan needs more than ptcheck can hold.
    OverCapacity {
        /// Which limit.
        limit: &'static str,
        /// What the plan needs (at least).
        needed: u64,
        /// What ptcheck holds.
        held: u64,
    },
    /// The environment failed (boot, QEMU died or stopped, watchdog, memory).
    Infrastructure(String),
    /// The builder under test cannot express this plan or regime: listed, never a pass.
    NotApplicable(String),
}

/// What an outcome means for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Checked, and every check passed.
    Passed,
    /// The builder cannot take the plan (`n/a`): neither a pass nor a failure.
    NotApplicable,
    /// Not checked: bad plan, over capacity or infrastructure (exit code 2).
    NotChecked,
    /// Checked, and a check failed: the builder is wrong (exit code 1).
    BuilderFailed,
}

/// A real kernel's layout in the plan side's terms: the one place the two meet.
impl From<ptcheck_shared::report::LayoutOutcome> for Class {
    fn from(o: ptcheck_shared::report::LayoutOutcome) -> Class {
        use ptcheck_shared::report::LayoutOutcome as L;
        match o {
            L::Passed => Class::Passed,
            L::Failed => Class::BuilderFailed,
            L::NotChecked => Class::NotChecked,
            // The kernel under test did not boot: its failure, as a failed check is.
            L::Crash => Class::BuilderFailed,
        }
    }
}

impl Class {
    /// The process exit code for a run whose worst plan is `self`.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Passed | Class::NotApplicable => 0,
            Class::BuilderFailed => 1,
            Class::NotChecked => 2,
        }
    }
}

impl Outcome {
    /// The outcome's kind, as reports name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Bug { .. } => "bug",
            Outcome::Crash(_) => "crash",
            Outcome::BadPlan(_) => "bad-plan",
            Outcome::OverCapacity { .. } => "over-capacity",
            Outcome::Infrastructure(_) => "infrastructure",
            Outcome::NotApplicable(_) => "n/a",
        }
    }

    /// Whether the builder ran to an end the checks can judge.
    pub fn checked(&self) -> bool {
        matches!(self, Outcome::Done | Outcome::Bug { .. } | Outcome::Crash(_))
    }

    /// The BUG the builder reported, in words.
    pub fn bug(record: &BugRecord) -> Outcome {
        let kind = BugKind::from_u32(record.kind).unwrap_or(BugKind::BadEntry);
        let what = if record.level == ptcheck_shared::abi::NO_LEVEL {
            format!("op VA {:#x}", record.va)
        } else {
            format!("L{} entry for VA {:#x}: {:#x} -> {:#x}", record.level, record.va, record.old, record.new)
        };
        Outcome::Bug { kind, op: record.op, what }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done => write!(f, "done"),
            Outcome::Bug { kind, op, what } if *op == u32::MAX => {
                write!(f, "bug {} creating the root ({what})", kind.name())
            }
            Outcome::Bug { kind, op, what } => write!(f, "bug {} at op {op} ({what})", kind.name()),
            Outcome::Crash(why) => write!(f, "crash {why}"),
            Outcome::BadPlan(why) => write!(f, "bad-plan {why}"),
            Outcome::OverCapacity { limit, needed, held } => {
                write!(f, "over-capacity {limit}: needed {needed}, held {held}")
            }
            Outcome::Infrastructure(why) => write!(f, "infrastructure {why}"),
            Outcome::NotApplicable(why) => write!(f, "n/a {why}"),
        }
    }
}
