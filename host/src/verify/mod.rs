//! The verifier: runs every check on one plan's outcome and says, by name, which failed
//! and where.
//!
//! | check        | what must hold |
//! |--------------|----------------|
//! | `result`     | the run ended as the model says: finished, or the exact expected BUG |
//! | `translation`| every mapped VA gives the expected PA and attributes; nothing else is mapped |
//! | `policy`     | block / contiguous / page choice and table count exactly as Linux would make them |
//! | `zeroing`    | every entry not expected to be valid is exactly 0; unallocated pool pages still hold poison |
//! | `ordering`   | every table: allocated once from the pool, zeroed, barrier, then linked once at one level; no folded level's fixmap used |
//! | `table_bits` | UXNTable on every table descriptor, PXNTable exactly with NO_EXEC_MAPPINGS |
//! | `hw_probe`   | (VM backends) the MMU's `AT` result and the word loaded through each probed page agree with the plan and the walker |

mod hw_probe;
mod ordering;
mod policy;
mod result;
mod table_bits;
mod translation;
mod zeroing;

use std::fmt::Write as _;

use ptcheck_shared::abi::{BugKind, Plan, RunResult, Status, RESULT_MAGIC};
use ptcheck_shared::{Descriptor, Level, TranslationConfig};

use crate::backend::{PhysMemory, RunView};
use crate::expect::{expected, Expected};
use crate::walker::{walk, Walk};

/// A check, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckName {
    /// The run ended as the model says.
    Result,
    /// Every VA maps where the plan says, and nothing else is mapped.
    Translation,
    /// Blocks, contiguous runs, pages and table count as Linux makes them.
    Policy,
    /// Empty entries are zero; untouched pool pages still hold the poison.
    Zeroing,
    /// Allocate, zero, barrier, link: in that order, once.
    Ordering,
    /// UXNTable / PXNTable as asked.
    TableBits,
    /// The MMU agrees with the plan and the walker (VM backends).
    HwProbe,
}

impl CheckName {
    /// The checks every backend runs, in report order.
    pub const MEMORY: [CheckName; 6] = [
        CheckName::Result,
        CheckName::Translation,
        CheckName::Policy,
        CheckName::Zeroing,
        CheckName::Ordering,
        CheckName::TableBits,
    ];

    /// The name reports, reproducers and the command line use.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckName::Result => "result",
            CheckName::Translation => "translation",
            CheckName::Policy => "policy",
            CheckName::Zeroing => "zeroing",
            CheckName::Ordering => "ordering",
            CheckName::TableBits => "table_bits",
            CheckName::HwProbe => "hw_probe",
        }
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names of the memory checks, in report order.
pub const CHECKS: [&str; 6] = [
    CheckName::Result.as_str(),
    CheckName::Translation.as_str(),
    CheckName::Policy.as_str(),
    CheckName::Zeroing.as_str(),
    CheckName::Ordering.as_str(),
    CheckName::TableBits.as_str(),
];

/// Failures kept per check (the count of the rest is still reported).
const MAX_MESSAGES: usize = 6;

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// Empty when the check passed.
    pub failures: Vec<String>,
    /// Failures beyond those kept.
    pub more: usize,
}

impl Check {
    /// A passing check called `name`.
    pub fn new(name: CheckName) -> Self {
        Check { name, failures: Vec::new(), more: 0 }
    }

    /// Record a failure.
    pub fn fail(&mut self, msg: impl Into<String>) {
        if self.failures.len() < MAX_MESSAGES {
            self.failures.push(msg.into());
        } else {
            self.more += 1;
        }
    }

    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Every check's outcome for one plan.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// In [`CheckName::MEMORY`] order, then `hw_probe` where the MMU was probed.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    /// The check called `name`.
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Names of the failed checks.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks.iter().filter(|c| !c.passed()).map(|c| c.name.as_str()).collect()
    }

    /// Multi-line description of every failure.
    pub fn describe_failures(&self) -> String {
        let mut s = String::new();
        for c in self.checks.iter().filter(|c| !c.passed()) {
            for f in &c.failures {
                let _ = writeln!(s, "  [{}] {f}", c.name);
            }
            if c.more > 0 {
                let _ = writeln!(s, "  [{}] ... and {} more", c.name, c.more);
            }
        }
        s
    }
}

/// Everything a check may look at: the plan, its expected state, the walk of the
/// tables the builder left, the builder's record and the memory. Computed once per
/// plan and shared by every check.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub cfg: &'a TranslationConfig,
    pub plan: &'a Plan,
    pub exp: &'a Expected,
    pub walk: &'a Walk,
    pub result: &'a RunResult,
    pub ram: &'a dyn PhysMemory,
}

impl Ctx<'_> {
    /// Whether `[va, va + size)` meets the refused operation's range, whose entries
    /// may be half-written.
    pub fn in_bug(&self, va: u64, size: u64) -> bool {
        self.exp.bug_range.is_some_and(|(s, e)| {
            let (s, e, va) = (u128::from(s), if e == 0 { 1u128 << 64 } else { u128::from(e) }, u128::from(va));
            va < e && va + u128::from(size) > s
        })
    }
}

pub(crate) fn bug_name(kind: u32) -> String {
    BugKind::from_u32(kind).map_or_else(|| format!("unknown BUG kind {kind}"), |k| format!("{k:?}"))
}

pub(crate) fn op_name(op: u32) -> String {
    if op == u32::MAX {
        "root creation".into()
    } else {
        format!("op {op}")
    }
}

pub(crate) fn describe_leaf(level: Level, d: Descriptor, cfg: &TranslationConfig) -> String {
    let shape = match (level == Level::LEAF, d.is_contiguous()) {
        (true, false) => "page",
        (true, true) => "page (cont)",
        (false, false) => "block",
        (false, true) => "block (cont)",
    };
    format!("{level} {shape} -> {:#x} prot {:#x}", d.address(cfg) & !(cfg.entry_span(level) - 1), d.prot(cfg).0)
}

/// Check one run of `plan`.
pub fn verify(plan: &Plan, view: &RunView<'_>) -> Verdict {
    let Some(exp) = expected(plan) else {
        let mut checks: Vec<Check> = CheckName::MEMORY.iter().map(|&n| Check::new(n)).collect();
        checks[0].fail("the plan itself is malformed (magic, version or config)");
        return Verdict { checks };
    };
    verify_with(plan, &exp, view).0
}

/// Check one run of `plan` against its expected state `exp`; also returns the walk
/// of the tables every check used (empty when there is no root).
pub fn verify_with(plan: &Plan, exp: &Expected, view: &RunView<'_>) -> (Verdict, Walk) {
    let r = view.result;
    let mut checks: Vec<Check> = CheckName::MEMORY.iter().map(|&n| Check::new(n)).collect();
    let Some(cfg) = plan.config() else {
        checks[0].fail("the plan itself is malformed (magic, version or config)");
        return (Verdict { checks }, Walk::default());
    };
    if r.magic != RESULT_MAGIC || r.plan_id != plan.plan_id {
        checks[0].fail(format!(
            "no result for this plan in the result area (magic {:#x}, plan id {} vs {})",
            r.magic, r.plan_id, plan.plan_id
        ));
        return (Verdict { checks }, Walk::default());
    }
    let w = if r.root_pa != 0 { walk(&cfg, r.root_pa, view.ram) } else { Walk::default() };
    let cx = Ctx { cfg: &cfg, plan, exp, walk: &w, result: r, ram: view.ram };
    let [res, translation, policy, zeroing, ordering, table_bits] = &mut checks[..] else { unreachable!() };
    result::check(&cx, res);
    translation::check(&cx, translation);
    policy::check(&cx, policy);
    zeroing::check(&cx, zeroing);
    ordering::check(&cx, ordering);
    table_bits::check(&cx, table_bits);
    // The MMU view exists only if the guest got as far as probing: a crash or hang
    // is the `result` check's failure, not a disagreement of the MMU.
    if plan.n_probes > 0 && matches!(r.status(), Some(Status::Done | Status::Bug)) {
        let mut hw = Check::new(CheckName::HwProbe);
        hw_probe::check(&cx, &mut hw);
        checks.push(hw);
    }
    (Verdict { checks }, w)
}
