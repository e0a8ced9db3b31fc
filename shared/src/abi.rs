//! The host<->guest ABI: fixed-size `#[repr(C)]` records, written by one side and
//! read by the other as plain bytes (in guest RAM, or in-process for the native
//! backend). Each record starts with a magic and [`ABI_VERSION`]; bump the version
//! whenever a layout changes.

pub mod layout;
pub mod mailbox;
mod plan;
mod result;

pub use plan::{builder_id, MapFlags, MapOp, Plan, PoolRange, MAX_OPS, MAX_POOL_RANGES, MAX_PROBES, PLAN_MAGIC};
pub use result::{
    BugKind, BugRecord, Costs, ExceptionRecord, FaultRecord, ProbeRecord, RunResult, Status, TableRecord, MAX_FAULTS,
    MAX_TABLES, NO_LEVEL, PAR_PA_MASK, RESULT_MAGIC,
};

/// Layout version of [`Plan`], [`RunResult`] and the mailbox.
pub const ABI_VERSION: u32 = 3;

/// What the guest is doing, recorded for the exception handler
/// ([`ExceptionRecord::phase`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    /// Booting: no request to answer yet.
    Boot = 0,
    /// Running the builder.
    Build = 1,
    /// Probing the built tables with the MMU.
    Probe = 2,
    /// Waiting for a request.
    Idle = 3,
}

impl Phase {
    /// Decode the ABI's `u32`.
    pub fn from_u32(v: u32) -> Option<Phase> {
        Some(match v {
            0 => Phase::Boot,
            1 => Phase::Build,
            2 => Phase::Probe,
            3 => Phase::Idle,
            _ => return None,
        })
    }
}

/// Marker lines around the JSON report the nested-KVM runner (`ptcheck` as `/init`)
/// prints on its console for `cargo xtask nested-kvm`.
pub const NESTED_REPORT_BEGIN: &str = "PTCHECK-REPORT-BEGIN";
/// End marker of the nested-KVM report.
pub const NESTED_REPORT_END: &str = "PTCHECK-REPORT-END";
