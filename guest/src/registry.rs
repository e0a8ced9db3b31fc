//! The builders ptcheck can run: one line each. A plan names its builder
//! ([`ptcheck_shared::abi::Plan::builder`]); the guest image and the native backend
//! link every one of them.
//!
//! To add a builder: a file with a `run(plan, mem, result)` that builds from the
//! plan's operations into pool pages (reached through [`TableMemory`]) and records
//! its tables and its own trace in the result, plus one line below.

use ptcheck_shared::abi::{Plan, RunResult, Status};
use ptcheck_shared::TranslationConfig;

use crate::memory::TableMemory;

/// Which checks a builder's tables are held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The Linux policy: every check, the model's blocks, contiguous runs, table bits
    /// and BUGs exactly.
    Linux,
    /// Its own policy: what any correct builder owes (every VA translates as the
    /// operations say, later ones winning; nothing else mapped; every table from the
    /// pool, cleared; the run completes), plus table descriptors with no
    /// hierarchical attributes, as the crate documents.
    Own,
}

/// One builder under test.
#[derive(Clone, Copy, Debug)]
pub struct BuilderInfo {
    /// The `Plan::builder` value.
    pub id: u32,
    /// Name on the command line (`--builder NAME`) and in reports.
    pub name: &'static str,
    /// What it is, in one line.
    pub about: &'static str,
    /// Whether it can build `cfg`'s tables at all (elsewhere: `n/a`, never a pass).
    pub supports: fn(&TranslationConfig) -> bool,
    /// Why it cannot take a plan it could otherwise (`n/a` too), if it cannot.
    pub refuses: fn(&Plan) -> Option<&'static str>,
    /// Which checks apply.
    pub policy: Policy,
}

fn every_regime(_: &TranslationConfig) -> bool {
    true
}

fn every_plan(_: &Plan) -> Option<&'static str> {
    None
}

pub use ptcheck_shared::abi::builder_id::{AARCH64_PAGING, LINUX, LINUX_6_9};

/// Every builder, by id.
pub const BUILDERS: &[BuilderInfo] = &[
    BuilderInfo {
        id: LINUX,
        name: "linux",
        about: "__create_pgd_mapping after the change: init_clear_pgtable in the builder",
        supports: every_regime,
        refuses: every_plan,
        policy: Policy::Linux,
    },
    BuilderInfo {
        id: LINUX_6_9,
        name: "linux-6.9",
        about: "__create_pgd_mapping before it: early_pgtable_alloc clears through FIX_PTE",
        supports: every_regime,
        refuses: every_plan,
        policy: Policy::Linux,
    },
    BuilderInfo {
        id: AARCH64_PAGING,
        name: "aarch64-paging",
        about: "Google's aarch64-paging 0.12 (Mapping, VaRange::Upper), tables from the pool",
        supports: crate::aarch64_paging::supports,
        refuses: crate::aarch64_paging::refuses,
        policy: Policy::Own,
    },
];

/// The builder called `name`.
pub fn by_name(name: &str) -> Option<&'static BuilderInfo> {
    BUILDERS.iter().find(|b| b.name == name)
}

/// The builder with id `id`.
pub fn by_id(id: u32) -> Option<&'static BuilderInfo> {
    BUILDERS.iter().find(|b| b.id == id)
}

/// Run `plan` on the builder it names; an unknown builder is a bad plan.
pub fn run_plan<M: TableMemory>(plan: &Plan, mem: &mut M, result: &mut RunResult) {
    match plan.builder {
        LINUX | LINUX_6_9 => crate::builder::run_plan(plan, mem, result),
        AARCH64_PAGING if plan.mutation == 0 => crate::aarch64_paging::run(plan, mem, result),
        _ => {
            result.reset(plan.plan_id);
            result.status = Status::BadPlan as u32;
        }
    }
}
