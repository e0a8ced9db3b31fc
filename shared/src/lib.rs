//! The arm64 stage-1 translation-regime model shared by the ptcheck guest and host.
//!
//! * [`granule`], [`level`], [`config`]: which tables exist for each Linux arm64
//!   kernel configuration, how many entries they have and which levels are folded.
//! * [`descriptor`]: the VMSAv8-64 descriptor formats (Arm ARM D8.3), including the
//!   52-bit output-address layouts of FEAT_LPA (64K) and FEAT_LPA2 (4K/16K, TCR.DS=1).
//! * [`prot`]: the attribute bits a mapping request carries (the kernel's `pgprot`).
//! * [`abi`]: the fixed-layout plan and result records exchanged with the guest.
//! * [`regs`]: system-register fields (TCR_EL1) both sides use.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "report")]
extern crate alloc;

pub mod abi;
pub mod config;
pub mod descriptor;
pub mod granule;
pub mod level;
pub mod prot;
pub mod regs;
#[cfg(feature = "report")]
pub mod report;
pub mod trace;

pub use config::{KernelConfig, OaFormat, TranslationConfig};
pub use descriptor::Descriptor;
pub use granule::Granule;
pub use level::{Level, LinuxLevel};
pub use prot::Prot;
