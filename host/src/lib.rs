//! ptcheck's host side: backends that run a plan, the independent reference walker,
//! the expected-state model, the verifier and reports.
//!
//! Flow: [`plans`] → [`backend::Backend::run`] → [`walker::walk`] + [`expect::Expected`]
//! → [`verify::verify`] → [`report`].
#![deny(unsafe_op_in_unsafe_fn)]

pub mod backend;
pub mod bench;
pub mod differential;
pub mod esr;
pub mod expect;
pub mod fuzz;
pub mod html;
pub mod linux;
pub mod matrix;
#[cfg(feature = "mutants")]
pub mod mutants;
pub mod outcome;
pub mod plans;
pub mod probes;
pub mod ptdump;
pub mod replay;
pub mod report;
pub mod repro;
pub mod run;
pub mod runs;
pub mod tested;
pub mod trace;
pub mod validate;
pub mod verify;
pub mod walker;

/// What the host writes over every pool page before a run: a pattern that decodes as a
/// *valid block* at levels 1-2 (bits[1:0] = 0b01), so a table the builder forgot to
/// clear maps garbage instead of quietly faulting.
pub const POOL_POISON: u64 = 0xA5A5_A5A5_A5A5_A5A5;
