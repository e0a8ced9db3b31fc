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
        assert!(o.applicable().count() > 0, "{} applies nowhere", v.name);
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
