//! `cargo xtask <command>`: the project's build and test entry points.
//!
//! One binary: clap for the command line (`flags.rs`), cpio for initramfs images,
//! serde_json and ptcheck's own report types for what ptcheck writes. Every step is a
//! `cargo` or tool invocation printed before it runs, so a failure names the exact
//! command to re-run. `main` parses and dispatches; the steps are in their modules.

mod browser;
mod builds;
mod debian;
mod flags;
mod kbuild;
mod linux;
mod linux_costs;
mod mirror;
mod nested_kvm;
mod patch_loop;
mod steps;
mod tools;

use std::process::ExitCode;

use clap::Parser;
use flags::Cmd;

fn main() -> ExitCode {
    let outcome = match flags::Xtask::parse().cmd {
        Cmd::BuildGuest => tools::build_guest(),
        Cmd::Run(f) => steps::forward("run", &f.args),
        Cmd::Test => steps::test(),
        Cmd::Bench(b) => steps::bench(&b),
        Cmd::Fuzz(f) => steps::forward("fuzz", &f.args),
        Cmd::Replay(f) => steps::forward("replay", &f.args),
        Cmd::Mutants(f) => steps::forward("mutants", &f.args),
        Cmd::Linux(l) => linux::run(&l),
        Cmd::NestedKvm(o) => nested_kvm::run(&o),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
