//! Deliberate builder bugs, each a real mistake someone could make in this code.
//!
//! The builder is generic over `const MUTATION: u32`; the clean builder is
//! `MUTATION == NONE`, and the public entry point [`crate::run_plan`] only ever uses
//! that. The variants are reachable only with the `mutants` cargo feature, which
//! tests and `cargo xtask mutants` enable; no normal build can select one.

/// The correct builder.
pub const NONE: u32 = 0;
/// A new table is linked without being cleared.
pub const SKIP_ZERO: u32 = 1;
/// A new table is cleared only after it is linked into its parent.
pub const ZERO_AFTER_LINK: u32 = 2;
/// At a folded level, the table is reached through that level's (NULL) fixmap accessor.
pub const FOLDED_FIXMAP: u32 = 3;

/// Every mutation with its name.
pub const ALL: &[(u32, &str)] =
    &[(SKIP_ZERO, "skip-zero"), (ZERO_AFTER_LINK, "zero-after-link"), (FOLDED_FIXMAP, "folded-fixmap")];

/// Run `plan` with the builder broken by `MUTATION`.
#[cfg(feature = "mutants")]
pub fn run_plan_mutant<M: crate::TableMemory, const MUTATION: u32>(
    plan: &ptcheck_shared::abi::Plan,
    mem: &mut M,
    result: &mut ptcheck_shared::abi::RunResult,
) {
    crate::builder::run_plan_with::<M, MUTATION>(plan, mem, result)
}
