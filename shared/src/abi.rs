//! The host<->guest ABI: fixed-size `#[repr(C)]` records, written by one side and
//! read by the other as plain bytes (in guest RAM, or in-process for the native
//! backend). Each record starts with a magic and [`ABI_VERSION`]; bump the version
//! whenever a layout changes.

pub mod layout;
pub mod mailbox;
mod plan;
mod result;

pub use plan::{MapFlags, MapOp, Plan, PoolRange, MAX_OPS, MAX_POOL_RANGES, MAX_PROBES, PLAN_MAGIC};
pub use result::{
    AllocRecord, BugKind, BugRecord, Event, EventKind, ExceptionRecord, ProbeRecord, RunResult, Status, MAX_ALLOCS,
    MAX_EVENTS, RESULT_MAGIC,
};

/// Layout version of [`Plan`] and [`RunResult`].
pub const ABI_VERSION: u32 = 1;
