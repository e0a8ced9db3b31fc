//! The bug catalogue on the native backend: every variant is caught where it applies,
//! and nowhere else does it change anything. Needs the `mutants` feature
//! (`cargo xtask test` enables it); without it this file has no tests.
#![cfg(feature = "mutants")]

use ptcheck_guest::mutation::{by_name, ALL_VARIANTS};
use ptcheck_host::backend::native::NativeBackend;
use ptcheck_host::mutants::run_variant;
use ptcheck_shared::{LinuxLevel, TranslationConfig};

fn configs() -> Vec<TranslationConfig> {
    TranslationConfig::all().collect()
}

#[test]
fn folded_fixmap_is_caught_exactly_where_a_level_is_folded() {
    let v = by_name("folded-fixmap").unwrap();
    let mut b = NativeBackend::with_mutation(v.id);
    let o = run_variant(&mut b, Some(v), &configs(), 10, 1);
    for r in &o.regimes {
        let folded = LinuxLevel::ALL.iter().any(|&l| r.config.is_folded(l));
        assert_eq!(r.applies, folded, "{}", r.config);
        if folded {
            assert!(r.failed > 0, "{}: not caught", r.config);
            assert!(r.checks.contains("ordering"), "{}: {:?}", r.config, r.checks);
        } else {
            // 4k-52 folds nothing: the broken path never runs, every plan passes.
            assert_eq!((r.config.to_string().as_str(), r.failed), ("4k-52", 0));
        }
    }
    assert!(o.ok());
}

#[test]
fn every_variant_is_caught_and_the_clean_builder_passes() {
    let mut clean = NativeBackend::new();
    assert!(run_variant(&mut clean, None, &configs(), 10, 1).ok(), "clean builder failed");
    for v in ALL_VARIANTS {
        let mut b = NativeBackend::with_mutation(v.id);
        let o = run_variant(&mut b, Some(v), &configs(), 10, 1);
        assert!(
            o.ok(),
            "{} not caught on: {:?}",
            v.name,
            o.applicable().filter(|r| r.failed == 0).map(|r| r.config.to_string()).collect::<Vec<_>>()
        );
        // A lie only the tracer sees applies nowhere here; `cargo xtask test` proves it
        // caught in the traced QEMU catalogue run (`mutants --backend qemu --trace`).
        assert_eq!(o.applicable().count() > 0, !v.observed_only, "{} applies where it should not, or nowhere", v.name);
    }
}

/// Fuzzing alone finds lost output-address bits on the LPA2 regimes: generated plans,
/// not only the built-in high-pa plan, catch lpa2-oa-bits on 4k-52 and 16k-52.
#[test]
fn lpa2_oa_bits_is_caught_by_fuzzed_plans() {
    let v = by_name("lpa2-oa-bits").unwrap();
    let mut b = NativeBackend::with_mutation(v.id);
    let o = run_variant(&mut b, Some(v), &configs(), 40, 1);
    let by_fuzzing = o.caught_by_fuzzing();
    for name in ["4k-52", "16k-52", "64k-52"] {
        assert!(by_fuzzing.iter().any(|c| c == name), "{name}: fuzzed plans did not catch it: {by_fuzzing:?}");
    }
}

/// The kernel's path before the seed's change (`linux-6.9`): the clean builder
/// passes, and every catalogue variant is caught there too.
#[test]
fn the_catalogue_is_caught_on_linux_6_9() {
    use ptcheck_guest::registry::LINUX_6_9;
    use ptcheck_host::backend::Variant;
    let on_6_9 = |mutation| NativeBackend::with_variant(Variant { builder: LINUX_6_9, mutation });
    assert!(run_variant(&mut on_6_9(0), None, &configs(), 10, 1).ok(), "clean linux-6.9 failed");
    for v in ALL_VARIANTS {
        let o = run_variant(&mut on_6_9(v.id), Some(v), &configs(), 10, 1);
        let missed: Vec<_> = o.applicable().filter(|r| r.failed == 0).map(|r| r.config.to_string()).collect();
        assert!(o.ok(), "{} not caught on linux-6.9 on: {missed:?}", v.name);
    }
}

/// What the seed's change buys, counted: per new table, linux-6.9 sets and clears one
/// more fixmap slot (FIX_PTE, to clear it) than linux, so one more TLB invalidation.
#[test]
fn linux_6_9_pays_one_more_fixmap_round_trip_per_new_table() {
    use ptcheck_guest::registry::{LINUX, LINUX_6_9};
    use ptcheck_host::backend::{Backend, Variant};
    for cfg in configs() {
        let np = ptcheck_host::plans::builtin(cfg).into_iter().find(|p| p.name == "kernel-image").unwrap();
        let costs = |builder| {
            let mut b = NativeBackend::with_variant(Variant { builder, mutation: 0 });
            let r = b.run(&np.plan).unwrap().result;
            (r.costs, u64::from(r.n_tables))
        };
        let ((before, tables), (after, same_tables)) = (costs(LINUX_6_9), costs(LINUX));
        assert_eq!(tables, same_tables, "{cfg}");
        // The root costs one set either way (FIX_PTE vs the pgd slot); every other new
        // table costs linux-6.9 one more.
        assert_eq!(before.fixmap_sets - after.fixmap_sets, tables - 1, "{cfg}: {before:?} vs {after:?}");
        assert_eq!(before.tlb_invalidations - after.tlb_invalidations, before.fixmap_clears - after.fixmap_clears);
        assert_eq!((before.table_clears, after.table_clears), (tables, tables), "{cfg}");
        assert_eq!(before.descriptor_writes, after.descriptor_writes, "{cfg}");
    }
}
