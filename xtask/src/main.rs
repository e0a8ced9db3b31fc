//! `cargo xtask <command>`: the project's build and test entry points.
//!
//! One binary (std, plus cpio for initramfs images, serde_json and ptcheck's own report
//! types): every step is a `cargo` or tool invocation printed before it runs, so a
//! failure names the exact command to re-run.

mod debian;
mod kbuild;
mod linux;
mod nested_kvm;
mod steps;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  build-guest              build the aarch64 guest image
  run [ptcheck run args]   build what is needed, then run the built-in plans
                           (default: --backend auto --config all)
  test                     every test: unit tests, the QEMU backend tests, every
                           built-in plan on every config and a short fuzz run on
                           native, QEMU and KVM (nested on x86)
  fuzz [ptcheck fuzz args] generated plans: --backend --config --seed --count
                           --shard i/n --time 60s; failures shrink to reproducers
  mutants [--backend native|qemu] [--count N]
                           the bug catalogue: every variant must be caught where it
                           applies, and the clean builder must pass, in one run
  replay FILE [--backend B]
                           run a reproducer again, with the expected vs actual mappings
  bench [--seconds N]      plans/s on native, QEMU persistent, QEMU boot-per-plan
  bench --scale [--native-only] [--quick]
                           1-256 GiB page-granular maps per stage on native and QEMU,
                           and the builder vs aarch64-paging vs the memory floor
  linux [--kernel IMAGE [--cpu C] | --debian 6.1|6.12 [--flavour 4k|16k]]
        [--seed S] [--count N] [--shard i/n] [--cmdline K] [--report F]
                           boot real arm64 kernels (default: Debian 6.1 and 6.12 4K/16K,
                           with and without LPA2) on generated memory layouts, stop each
                           once init is up, check its tables (zeroing, translation,
                           image, table_bits, policy); reproducers replay
  linux --build <regimes|all> [--source DIR | --debian 6.1|6.12] [layout args]
                           small kernels from source (your tree: out of tree, never
                           written), one per regime, then the same layouts and checks
  linux --fuzz [--regime R] --seed S --count N [--shard i/n]
                           the layout stream on small kernels for every regime asked
  linux --compare A.json B.json
                           two reports, same seed: different outcomes are findings,
                           different linear-map shapes are reported
  nested-kvm [--report F] [--self-test] [--timeout SECS]
                           run the matrix on the KVM backend inside an emulated arm64
                           Linux with KVM (EL2 emulated); --self-test must fail
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let outcome = match cmd.as_str() {
        "build-guest" => tools::build_guest(),
        "run" => steps::run(&rest),
        "test" => steps::test(),
        "bench" => steps::bench(&rest),
        "fuzz" => steps::fuzz(&rest),
        "replay" => steps::replay(&rest),
        "mutants" => steps::mutants(&rest),
        "linux" => linux::run(&rest),
        "nested-kvm" => nested_kvm::NestedKvm::parse(&rest).and_then(|o| nested_kvm::run(&o)),
        "help" | "--help" | "-h" | "" => {
            print!("{USAGE}");
            return if cmd.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
