//! ptcheck's page-table builder: the behaviour of the Linux arm64 early mapping path
//! (`__create_pgd_mapping` → p4d → pud → cont_pmd/pmd → cont_pte/pte) after the change
//! that moved table zeroing from the allocator into the builder.
//!
//! The builder reaches memory only through [`memory::TableMemory`], so the same code
//! runs in the aarch64 guest (fixmap slots under a real MMU) and in-process on the host
//! (simulated RAM).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod aarch64_paging;
pub mod builder;
pub mod memory;
pub mod mutation;
pub mod pool;
pub mod registry;

#[cfg(feature = "mutants")]
pub use builder::run_plan_mutant;
pub use memory::{TableMemory, TablePtr};
pub use pool::TablePool;
pub use registry::run_plan;
