//! What every check works with: its name, its outcome, the verdict over all of them,
//! and the context (plan, expected state, walk, result, memory) each check reads.

use std::fmt::Write as _;

use ptcheck_shared::abi::{BugKind, Plan, RunResult};
use ptcheck_shared::{Descriptor, Level, TranslationConfig};

use crate::backend::PhysMemory;
use crate::expect::Expected;
use crate::walker::Walk;

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
    /// (traced) Every linked table held only zeroes or this build's writes at its link.
    ZeroedAtLink,
    /// (traced) A barrier (or release) ordered each table's last write before its link.
    OrderedLink,
    /// (traced) The observed links and the builder's own record agree.
    Observed,
    /// (traced) Live entries changed only with break-before-make.
    Bbm,
    /// (traced) Changed live translations invalidated (TLBI + DSB) before reuse.
    Tlbi,
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
            CheckName::ZeroedAtLink => "zeroed_at_link",
            CheckName::OrderedLink => "ordered_link",
            CheckName::Observed => "observed",
            CheckName::Bbm => "bbm",
            CheckName::Tlbi => "tlbi",
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
