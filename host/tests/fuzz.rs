//! The fuzzer: reproducible plans, exact sharding, a realistic mix, and failures that
//! shrink to small reproducers which replay the same way.

use std::collections::{BTreeMap, BTreeSet};

use ptcheck_guest::mutation;
use ptcheck_guest::run_plan_mutant;
use ptcheck_host::backend::native::{NativeBackend, NativeMemory};
use ptcheck_host::backend::Backend;
use ptcheck_host::expect::expected;
use ptcheck_host::fuzz::{self, gen, FuzzSpec};
use ptcheck_host::repro;
use ptcheck_host::run::run_and_verify;
use ptcheck_host::verify::CheckName;
use ptcheck_shared::abi::{BugKind, Plan, RunResult, Status};
use ptcheck_shared::{Level, TranslationConfig};

fn all() -> Vec<TranslationConfig> {
    TranslationConfig::all().collect()
}

fn spec(count: u64, shard: u64, shards: u64) -> FuzzSpec {
    FuzzSpec { seed: 1, configs: all(), count: Some(count), time: None, shard, shards, label: "test".into() }
}

#[test]
fn same_seed_gives_byte_identical_plans() {
    for cfg in all() {
        for index in 0..40 {
            let (a, b) = (gen::generate(7, index, cfg), gen::generate(7, index, cfg));
            assert_eq!(bytemuck::bytes_of(&*a), bytemuck::bytes_of(&*b), "{cfg} {index}");
        }
        assert_ne!(bytemuck::bytes_of(&*gen::generate(7, 0, cfg)), bytemuck::bytes_of(&*gen::generate(8, 0, cfg)));
    }
}

/// FNV-1a over what a few plans say (regime, id, pool ranges, operations), not over
/// their ABI bytes: the ABI may grow fields without changing any plan.
fn fnv_of_format(format: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |w: u64| {
        for b in w.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for cfg in all() {
        for index in 0..3 {
            let p = gen::generate_format(format, 1, index, cfg);
            eat(u64::from(p.kernel_config) << 32 | u64::from(p.va_bits));
            eat(p.plan_id);
            for r in p.pool() {
                eat(r.base);
                eat(r.size);
            }
            for o in p.ops() {
                for w in [o.va, o.pa, o.size, o.prot, o.flags] {
                    eat(w);
                }
            }
        }
    }
    h
}

/// FNV-1a over the bytes of a few plans. If this changes, the generator changed:
/// bump `gen::FORMAT` (old seeds no longer name the same plans) and pin the new value.
/// Every older format stays pinned: its seeds must keep naming the same plans.
#[test]
fn generator_output_is_pinned_to_its_format() {
    assert_eq!(gen::FORMATS, [1, 2]);
    assert_eq!(fnv_of_format(1), GOLDEN_FORMAT_1, "format 1 output changed");
    assert_eq!(
        (gen::FORMAT, fnv_of_format(gen::FORMAT)),
        (2, GOLDEN_FORMAT_2),
        "generator output changed: bump gen::FORMAT and pin the new value"
    );
    assert_eq!(
        bytemuck::bytes_of(&*gen::generate(1, 0, all()[0])),
        bytemuck::bytes_of(&*gen::generate_format(2, 1, 0, all()[0]))
    );
}
const GOLDEN_FORMAT_1: u64 = 18202053909630234141;
const GOLDEN_FORMAT_2: u64 = 12641109676752148767;

/// Format 2 reaches output-address bits 50 and 51 on every 52-bit-PA regime (the
/// lpa2-oa-bits variant is invisible without them); format 1 never did.
#[test]
fn high_output_address_bits_are_generated() {
    for cfg in all().into_iter().filter(|c| c.pa_bits() == 52) {
        let bits = |format: u32| {
            (0..400).fold(0u64, |acc, i| {
                let p = gen::generate_format(format, 1, i, cfg);
                p.ops().iter().fold(acc, |a, op| a | (op.pa & (0b11 << 50)))
            })
        };
        assert_eq!(bits(1), 0, "{cfg}: format 1 is pinned as it was");
        assert_eq!(bits(2), 0b11 << 50, "{cfg}: format 2 must set PA bits 50 and 51");
    }
}

#[test]
fn shards_cover_the_run_exactly_once() {
    let whole: BTreeSet<u64> = (0..997).filter(|&j| spec(997, 1, 1).mine(j)).collect();
    let (s1, s2) = (spec(997, 1, 2), spec(997, 2, 2));
    let a: BTreeSet<u64> = (0..997).filter(|&j| s1.mine(j)).collect();
    let b: BTreeSet<u64> = (0..997).filter(|&j| s2.mine(j)).collect();
    assert!(a.is_disjoint(&b));
    assert_eq!(&a | &b, whole);
    assert_eq!(whole.len(), 997);
    // And the plans are those of the unsharded run.
    for j in [0, 1, 2, 500, 996] {
        assert_eq!(bytemuck::bytes_of(&*s1.plan(j)), bytemuck::bytes_of(&*spec(997, 1, 1).plan(j)));
    }
    // Through the real runner too: two shards run as many plans as the whole.
    let make = || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(NativeBackend::new())) };
    let n = |s: &FuzzSpec| fuzz::run(s, 1, &make, false).unwrap().plans;
    assert_eq!(n(&spec(300, 1, 2)) + n(&spec(300, 2, 2)), n(&spec(300, 1, 1)));
}

/// The layouts are not degenerate: most finish, some BUG for each reason the
/// generator aims at, and blocks, contiguous runs and pages all appear.
#[test]
fn the_layout_mix_is_realistic() {
    let (mut outcomes, mut shapes) = (BTreeMap::<String, u32>::new(), BTreeMap::<&str, u32>::new());
    let mut ops = 0;
    let n = 1300;
    for j in 0..n {
        let plan = spec(n, 1, 1).plan(j);
        ops += plan.n_ops;
        let e = expected(&plan).unwrap();
        let key = e.bug.map_or("done".to_string(), |b| format!("{:?}", b.kind));
        *outcomes.entry(key).or_default() += 1;
        for (_, level, d) in e.leaves() {
            let shape = match (level, d.is_contiguous()) {
                (Level(3), false) => "page",
                (Level(3), true) => "cont page",
                (Level(2), false) => "pmd block",
                (Level(2), true) => "cont pmd block",
                _ => "pud block",
            };
            *shapes.entry(shape).or_default() += 1;
        }
    }
    println!("outcomes {outcomes:?}\nshapes {shapes:?}\nmean ops {}", ops as f64 / n as f64);
    assert!(outcomes["done"] > n as u32 / 2, "{outcomes:?}");
    for kind in [BugKind::UnsafeChange, BugKind::PoolExhausted] {
        assert!(outcomes.get(&format!("{kind:?}")).is_some_and(|&c| c >= 10), "{kind:?}: {outcomes:?}");
    }
    for shape in ["page", "cont page", "pmd block", "cont pmd block", "pud block"] {
        assert!(shapes.get(shape).is_some_and(|&c| c > 0), "no {shape}: {shapes:?}");
    }
    assert!(ops as f64 / n as f64 >= 4.0);
}

fn zero_after_link(p: &Plan, m: &mut NativeMemory<'_>, r: &mut RunResult) {
    run_plan_mutant::<_, { mutation::ZERO_AFTER_LINK }>(p, m, r)
}

/// A broken builder is found, shrunk to a few operations, and the reproducer replays
/// the same failure.
#[test]
fn a_broken_builder_is_found_shrunk_and_replayed() {
    let make = || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(NativeBackend::with_builder(zero_after_link))) };
    let s = FuzzSpec {
        seed: 3,
        configs: vec![TranslationConfig::parse("4k-48").unwrap()],
        count: Some(40),
        time: None,
        shard: 1,
        shards: 1,
        label: "test-zero-after-link".into(),
    };
    let summary = fuzz::run(&s, 1, &make, false).unwrap();
    let f = summary.failures.iter().max_by_key(|f| f.ops.0).expect("the broken builder must be caught");
    assert_eq!(f.check, "ordering");
    assert!(f.ops.1 <= 2 && f.ops.1 < f.ops.0.max(2), "shrunk {} -> {} ops", f.ops.0, f.ops.1);
    let r = repro::parse(&std::fs::read_to_string(f.repro.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(r.plan.n_ops, f.ops.1);
    assert_eq!(r.fails, vec!["ordering".to_string()]);
    assert_eq!(r.origin.map(|o| (o.0, o.2)), Some((3, gen::FORMAT)));
    let plan = r.plan.clone();
    let v = run_and_verify(&mut NativeBackend::with_builder(zero_after_link), &plan, 1).verdict;
    assert!(!v.check(CheckName::Ordering).unwrap().passed(), "replay with the broken builder fails the same way");
    let plan = r.plan.clone();
    assert!(run_and_verify(&mut NativeBackend::new(), &plan, 1).passed(), "and the clean builder passes it");
}

#[test]
fn every_fuzzed_plan_passes_with_the_clean_builder() {
    let make = || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(NativeBackend::new())) };
    let summary = fuzz::run(&spec(2600, 1, 1), 2, &make, false).unwrap();
    assert_eq!(summary.plans, 2600);
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    let _ = Status::Done;
}

fn table_bits_dropped(p: &Plan, m: &mut NativeMemory<'_>, r: &mut RunResult) {
    run_plan_mutant::<_, { mutation::TABLE_BITS_DROPPED }>(p, m, r)
}

/// The differential check is not vacuous: a reference builder that writes different
/// table descriptors (here one that drops UXNTable/PXNTable) differs from the clean
/// builder bit for bit, the failure is `differential`, and it shrinks.
#[test]
fn a_differing_reference_is_found_and_shrunk() {
    use ptcheck_host::differential::Likeness;
    use ptcheck_host::fuzz::Reference;
    let make = || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(NativeBackend::new())) };
    let other =
        || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(NativeBackend::with_builder(table_bits_dropped))) };
    let reference = Reference { make: &other, likeness: Likeness::Bits, name: "table-bits-dropped".into() };
    let s = FuzzSpec {
        seed: 2,
        configs: vec![TranslationConfig::parse("16k-47").unwrap()],
        count: Some(20),
        time: None,
        shard: 1,
        shards: 1,
        label: "test-differential".into(),
    };
    let summary = fuzz::run_against(&s, 1, &make, Some(&reference), false).unwrap();
    let f = summary.failures.first().expect("the difference must be found");
    assert_eq!(f.check, "differential");
    assert!(f.ops.1 <= f.ops.0);
    // And two equal builders agree on every plan, bit for bit.
    let same = Reference { make: &make, likeness: Likeness::Bits, name: "linux".into() };
    let summary = fuzz::run_against(&s, 1, &make, Some(&same), false).unwrap();
    assert!(summary.failures.is_empty() && summary.unchecked.is_empty());
}
