//! The QEMU backend end to end. These need the guest image and qemu-system-aarch64,
//! so plain `cargo test` lists them as ignored; `cargo xtask test` builds the image,
//! installs QEMU if needed and runs them with `--ignored`.

use std::path::PathBuf;
use std::time::Duration;

use ptcheck_host::backend::qemu::{self, QemuBackend, QemuOptions};
use ptcheck_host::backend::Backend;
use ptcheck_host::plans;
use ptcheck_host::run::run_and_verify;
use ptcheck_host::verify::CheckName;
use ptcheck_shared::abi::{MapOp, Plan};
use ptcheck_shared::{Prot, TranslationConfig};

fn image() -> PathBuf {
    std::env::var_os("PTCHECK_GUEST_IMAGE").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/aarch64-unknown-none/release/ptcheck-guest-image"),
        PathBuf::from,
    )
}

/// How plans reach the guest in a test.
#[derive(Clone, Copy)]
enum QemuMode {
    /// One boot serves many plans.
    Persistent,
    /// A fresh QEMU per plan.
    BootPerPlan,
}

fn qemu(mode: QemuMode) -> QemuBackend {
    let mut opts = QemuOptions::new(image());
    opts.policy.boot_per_plan = matches!(mode, QemuMode::BootPerPlan);
    qemu::backend(opts).expect("QEMU backend (run `cargo xtask test`, which builds the guest)")
}

fn cfg(name: &str) -> TranslationConfig {
    TranslationConfig::parse(name).unwrap()
}

#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn every_builtin_plan_passes_with_mmu_probes() {
    let mut b = qemu(QemuMode::Persistent);
    for c in TranslationConfig::all() {
        let mut probes = 0;
        for np in plans::builtin(c) {
            let o = run_and_verify(&mut b, &np.plan, 7);
            assert!(o.passed(), "{c} {}:\n{}", np.name, o.describe());
            assert!(!o.hw_unsupported, "{c}: -cpu max supports every regime");
            probes += o.hw_probes;
        }
        assert!(probes > 100, "{c}: only {probes} MMU probes");
    }
    assert_eq!(b.boots, 1, "persistent mode must boot once for the whole matrix");
}

/// Wrong expectations are caught through the MMU: the guest builds the plan as given,
/// the host verifies against a plan whose PA differs by one page. Plan, walker and
/// MMU views are all printed.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn wrong_expectation_fails_the_mmu_cross_check() {
    let mut b = qemu(QemuMode::Persistent);
    let c = cfg("16k-47");
    let np = plans::builtin(c).into_iter().find(|p| p.name == "cont-pte").unwrap();
    let o = run_and_verify(&mut b, &np.plan, 1);
    assert!(o.passed(), "{}", o.describe());
    // Same plan again, with its MMU probes, then check it against a shifted expectation.
    let mut plan = np.plan.clone();
    ptcheck_host::probes::choose(&mut plan, &ptcheck_host::expect::expected(&np.plan).unwrap(), 1);
    assert!(plan.n_probes > 0);
    let view = b.run_tagged(&plan, &[]).unwrap();
    let mut wrong = plan.clone();
    wrong.ops[0].pa += c.page_size();
    let v = ptcheck_host::verify::verify(&wrong, &view);
    let hw = v.check(CheckName::HwProbe).unwrap();
    assert!(!hw.passed());
    let msg = &hw.failures[0];
    assert!(msg.contains("plan:") && msg.contains("walker:") && msg.contains("MMU:"), "{msg}");
    assert!(msg.contains("the MMU translates elsewhere"), "{msg}");
    assert!(!v.check(CheckName::Translation).unwrap().passed());
}

/// A plan whose table pool is not RAM is refused up front (`bad-plan`); sent to the
/// guest anyway, it makes the guest take a data abort while it clears the first
/// table; the result says which, in words, and no hang follows.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn guest_exception_is_reported_decoded() {
    let mut b = qemu(QemuMode::Persistent);
    let c = cfg("4k-48");
    let mut plan = Plan::new(c);
    plan.plan_id = 99;
    plan.push_pool(0x10_0000_0000, 16 * c.page_size()); // 64 GiB: no RAM there
    plan.push_op(MapOp { va: c.va_start(), pa: 0x8000_0000, size: c.page_size(), prot: Prot::KERNEL.0, flags: 0 });
    let o = run_and_verify(&mut b, &plan.clone(), 1);
    assert_eq!(o.outcome.kind(), "bad-plan", "{}", o.outcome);
    assert!(o.outcome.to_string().contains("leaves the pool window"), "{}", o.outcome);
    let view = b.run(&plan).expect("an exception is a result, not a backend failure");
    let v = ptcheck_host::verify::verify(&plan, &view);
    let result = v.check(CheckName::Result).unwrap();
    let msg = result.failures.first().expect("the exception must fail the result check");
    assert!(msg.contains("guest exception during"), "{msg}");
    assert!(msg.contains("abort"), "{msg}");
    assert!(msg.contains("FAR 0x"), "{msg}");
    // The backend recovers: the next plan boots a fresh guest and passes.
    let np = plans::builtin(c).into_iter().next().unwrap();
    let o = run_and_verify(&mut b, &np.plan, 1);
    assert!(o.passed(), "{}", o.describe());
    assert_eq!(b.boots, 2);
}

fn shm_entries() -> usize {
    std::fs::read_dir("/dev/shm").map(|d| d.count()).unwrap_or(0)
}

/// A guest that never answers is killed at the timeout with a clear message, and
/// neither the QEMU process nor any shared-memory file outlives it.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn hung_guest_is_killed_and_cleaned_up() {
    let shm_before = shm_entries();
    let mut b = qemu(QemuMode::Persistent);
    let err = b.hang(Duration::from_secs(2)).expect_err("a hung guest must be an error");
    let msg = format!("{err:#}");
    assert!(msg.contains("did not answer within 2s") && msg.contains("killed QEMU"), "{msg}");
    let pid = msg.split("pid ").nth(1).and_then(|s| s.split(')').next()).and_then(|s| s.parse::<u32>().ok()).unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "QEMU {pid} still exists");
    assert_eq!(b.vm.pid(), None);
    drop(b);
    assert_eq!(shm_entries(), shm_before, "/dev/shm gained entries");
}

#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn boot_per_plan_mode_boots_each_time_and_agrees() {
    let mut b = qemu(QemuMode::BootPerPlan);
    let c = cfg("64k-52");
    let plans: Vec<_> = plans::builtin(c).into_iter().take(3).collect();
    for np in plans {
        let o = run_and_verify(&mut b, &np.plan, 3);
        assert!(o.passed(), "{}", o.describe());
        assert!(o.hw_probes > 0);
    }
    assert_eq!(b.boots, 3);
    assert_eq!(b.vm.pid(), None, "boot-per-plan leaves no QEMU running");
}

/// A CPU without 16K pages, LPA2 or LVA: those regimes are built and checked in
/// memory, reported as unsupported by the hardware, never as probed.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn regimes_the_cpu_lacks_are_reported_unsupported() {
    let mut opts = QemuOptions::new(image());
    opts.cpu = "cortex-a57".into();
    let mut b = qemu::backend(opts).unwrap();
    for (name, unsupported) in [("4k-52", true), ("4k-52@48", false), ("16k-47", true), ("64k-48", false)] {
        let np = plans::builtin(cfg(name)).into_iter().next().unwrap();
        let o = run_and_verify(&mut b, &np.plan, 5);
        assert!(o.passed(), "{name}: {}", o.describe());
        assert_eq!(o.hw_unsupported, unsupported, "{name}");
        assert_eq!(o.hw_probes > 0, !unsupported, "{name}");
    }
}
