//! The aarch64 boot image: boots at EL1 with the MMU off, turns the MMU and caches on
//! over a small identity map, then serves plans from the mailbox: build the tables
//! with the builder (tables reached only through fixmap slots), load the root into
//! TTBR1, and probe the result with `AT` and real loads.
//!
//! On the host this file compiles to a stub that says how to build the real image.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod boot;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bootmap;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod channel;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod console;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod cpu;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod fixmap_memory;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod psci;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod serve;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ptcheck-guest-image is the aarch64 guest image: build it with `cargo xtask build-guest`");
    std::process::exit(2);
}
