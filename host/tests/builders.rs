//! Builders under test: every builder in the registry runs the built-in plans where it
//! can, is `n/a` (never passed) where it cannot, and agrees with `linux` as its
//! policy requires; the differential check is not vacuous.

use std::path::PathBuf;

use ptcheck_guest::registry::{by_name, AARCH64_PAGING, BUILDERS, LINUX_6_9};
use ptcheck_host::backend::native::{NativeBackend, NativeMemory};
use ptcheck_host::backend::qemu::{self, QemuOptions};
use ptcheck_host::backend::{Backend, Variant};
use ptcheck_host::differential::{compare, Likeness};
use ptcheck_host::fuzz::gen;
use ptcheck_host::outcome::Class;
use ptcheck_host::plans;
use ptcheck_host::run::{run_against, run_and_verify, Expectation};
use ptcheck_shared::abi::{Plan, RunResult};
use ptcheck_shared::TranslationConfig;

fn on(builder: u32) -> NativeBackend {
    NativeBackend::with_variant(Variant { builder, mutation: 0 })
}

#[test]
fn every_builder_passes_where_it_applies_and_is_na_elsewhere() {
    assert_eq!(BUILDERS.iter().map(|b| b.name).collect::<Vec<_>>(), ["linux", "linux-6.9", "aarch64-paging"]);
    for b in BUILDERS {
        let mut backend = on(b.id);
        for cfg in TranslationConfig::all() {
            let mut passed = 0;
            for np in plans::builtin(cfg) {
                let o = run_and_verify(&mut backend, &np.plan, 1);
                match o.class() {
                    Class::Passed => passed += 1,
                    Class::NotApplicable => assert!(
                        !(b.supports)(&cfg)
                            || (b.refuses)(&np.plan).is_some()
                            || o.outcome.to_string().contains("pool"),
                        "{} {cfg} {}: n/a without a reason: {}",
                        b.name,
                        np.name,
                        o.outcome
                    ),
                    _ => panic!("{} {cfg} {}: {}", b.name, np.name, o.describe()),
                }
            }
            assert_eq!(passed > 0, (b.supports)(&cfg), "{} on {cfg}: {passed} plans passed", b.name);
        }
    }
}

/// The policy of aarch64-paging is its own, but its checks still bite: judged
/// against a plan one page off, translation fails.
#[test]
fn aarch64_paging_checks_are_not_vacuous() {
    let cfg = TranslationConfig::parse("4k-48").unwrap();
    let np = plans::builtin(cfg).into_iter().find(|p| p.name == "kernel-image").unwrap();
    let o = run_against(&mut on(AARCH64_PAGING), &np.plan, 1, Expectation::WrongByOnePage);
    assert_eq!(o.class(), Class::BuilderFailed, "{}", o.describe());
    assert!(o.verdict.failed().contains(&"translation"), "{}", o.describe());
    assert!(by_name("aarch64-paging").is_some_and(|b| !(b.supports)(&TranslationConfig::parse("16k-47").unwrap())));
}

fn off_by_one_end(p: &Plan, m: &mut NativeMemory<'_>, r: &mut RunResult) {
    ptcheck_guest::run_plan_mutant::<_, { ptcheck_guest::mutation::OFF_BY_ONE_END }>(p, m, r)
}

/// Differential: aarch64-paging and linux translate every fuzzed 4k-48 plan they both
/// complete the same way; linux-6.9 and linux build bit-identical tables; and a
/// reference that maps differently is noticed.
#[test]
fn differential_agreement_and_a_difference_noticed() {
    let cfg = TranslationConfig::parse("4k-48").unwrap();
    let (mut linux, mut ap, mut old) = (NativeBackend::new(), on(AARCH64_PAGING), on(LINUX_6_9));
    let mut broken = NativeBackend::with_builder(off_by_one_end);
    let mut noticed = 0;
    for i in 0..300 {
        let plan = gen::generate(3, i, cfg);
        assert_eq!(compare(&plan, &mut old, &mut linux, Likeness::Bits).unwrap(), None, "plan {i}");
        if (by_name("aarch64-paging").unwrap().refuses)(&plan).is_none() {
            assert_eq!(compare(&plan, &mut ap, &mut linux, Likeness::Translations).unwrap(), None, "plan {i}");
            noticed += usize::from(compare(&plan, &mut ap, &mut broken, Likeness::Translations).unwrap().is_some());
        }
    }
    assert!(noticed > 10, "a builder that drops a page was noticed on only {noticed} plans");
}

fn image() -> PathBuf {
    std::env::var_os("PTCHECK_GUEST_IMAGE").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/aarch64-unknown-none/release/ptcheck-guest-image"),
        PathBuf::from,
    )
}

/// In the guest, under the MMU: aarch64-paging's tables pass with hardware probes on
/// the 4K regimes, and linux-6.9 passes everywhere.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn builders_run_in_the_guest_with_mmu_probes() {
    for (builder, configs) in
        [(AARCH64_PAGING, vec!["4k-39", "4k-48"]), (LINUX_6_9, vec!["4k-52", "16k-47", "64k-52@48"])]
    {
        let mut b = qemu::backend(QemuOptions::new(image())).unwrap().with_variant(Variant { builder, mutation: 0 });
        for name in configs {
            let cfg = TranslationConfig::parse(name).unwrap();
            let mut probes = 0;
            for np in plans::builtin(cfg) {
                let o = run_and_verify(&mut b, &np.plan, 1);
                assert!(
                    matches!(o.class(), Class::Passed | Class::NotApplicable),
                    "{name} {}: {}",
                    np.name,
                    o.describe()
                );
                probes += o.hw_probes;
            }
            assert!(probes > 100, "{name}: {probes} probes");
        }
        assert_eq!(b.variant().builder, builder);
    }
}

/// A reproducer names its builder, and `replay` runs it there unless told otherwise.
#[test]
fn replay_runs_the_reproducers_builder() {
    let dir = std::env::temp_dir().join(format!("ptcheck-test-{}-builder", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.repro");
    std::fs::write(
        &file,
        "ptcheck-repro 2\nconfig 16k-47\nbuilder aarch64-paging\npool 0x44000000 0x100000\nmap 0xffff800000000000 0x80000000 0x4000 0x68000000000700 0\n",
    )
    .unwrap();
    let replay = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ptcheck"))
            .args(["replay", &file.to_string_lossy(), "--backend", "native"])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = replay(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("builder aarch64-paging") && text.contains("outcome: n/a aarch64-paging cannot build 16k-47"),
        "{text}"
    );
    let (code, text) = replay(&["--builder", "linux-6.9"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("builder linux-6.9") && text.contains("outcome: done"), "{text}");
}
