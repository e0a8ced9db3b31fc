//! The verifier must pass the clean builder on every built-in plan, and must fail,
//! by the matching named check, builders and tables that are wrong.

use ptcheck_guest::mutation;
use ptcheck_guest::run_plan_mutant;
use ptcheck_host::backend::native::{NativeBackend, NativeMemory};
use ptcheck_host::backend::{Backend, PhysMemory, RunView};
use ptcheck_host::plans::{self, NamedPlan};
use ptcheck_host::verify::CheckName;
use ptcheck_host::verify::{verify, Verdict};
use ptcheck_host::walker::walk;
use ptcheck_shared::abi::{BugKind, Plan, RunResult, Status};
use ptcheck_shared::{Descriptor, Level, LinuxLevel, TranslationConfig};

fn skip_zero(p: &Plan, m: &mut NativeMemory<'_>, r: &mut RunResult) {
    run_plan_mutant::<_, { mutation::SKIP_ZERO }>(p, m, r)
}
fn zero_after_link(p: &Plan, m: &mut NativeMemory<'_>, r: &mut RunResult) {
    run_plan_mutant::<_, { mutation::ZERO_AFTER_LINK }>(p, m, r)
}
fn folded_fixmap(p: &Plan, m: &mut NativeMemory<'_>, r: &mut RunResult) {
    run_plan_mutant::<_, { mutation::FOLDED_FIXMAP }>(p, m, r)
}

fn plan(cfg: TranslationConfig, name: &str) -> NamedPlan {
    plans::builtin(cfg).into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no plan {name} for {cfg}"))
}

fn has_folded_level(cfg: &TranslationConfig) -> bool {
    LinuxLevel::ALL.iter().any(|&l| cfg.is_folded(l))
}

#[test]
fn clean_builder_passes_every_builtin_plan() {
    let mut b = NativeBackend::new();
    for cfg in TranslationConfig::all() {
        for np in plans::builtin(cfg) {
            let view = b.run(&np.plan).unwrap();
            let v = verify(&np.plan, &view);
            assert!(v.passed(), "{cfg} {}:\n{}", np.name, v.describe_failures());
        }
    }
}

/// The bug plans are not vacuous: each ends in the BUG its name promises.
#[test]
fn forbidden_remaps_end_in_the_expected_bug() {
    let want = [
        ("bug-oa-change", BugKind::UnsafeChange, 3),
        ("bug-cont-touched", BugKind::UnsafeChange, 3),
        ("bug-ng-to-global", BugKind::UnsafeChange, 3),
        ("bug-type-change", BugKind::UnsafeChange, 3),
        ("bug-block-over-table", BugKind::ReplaceTable, 2),
        ("bug-split-block", BugKind::SplitBlock, 2),
    ];
    let mut b = NativeBackend::new();
    for cfg in TranslationConfig::all() {
        for (name, kind, level) in want {
            let np = plan(cfg, name);
            let view = b.run(&np.plan).unwrap();
            let r = view.result;
            assert_eq!(r.status(), Some(Status::Bug), "{cfg} {name}");
            assert_eq!(r.bug.kind, kind as u32, "{cfg} {name}");
            assert_eq!(r.bug.level, level, "{cfg} {name}");
            assert_eq!(r.bug.op, 1, "{cfg} {name}");
        }
        let np = plan(cfg, "bug-pool-exhausted");
        let r = b.run(&np.plan).unwrap().result;
        assert_eq!((r.status(), r.bug.kind, r.bug.op), (Some(Status::Bug), BugKind::PoolExhausted as u32, 1), "{cfg}");
    }
}

/// The shape plans really produce blocks and contiguous runs where Linux would.
#[test]
fn policy_shapes_are_what_linux_makes() {
    let mut b = NativeBackend::new();
    for cfg in TranslationConfig::all() {
        let leaves = |b: &mut NativeBackend, name: &str| {
            let np = plan(cfg, name);
            let view = b.run(&np.plan).unwrap();
            assert_eq!(view.result.status(), Some(Status::Done), "{cfg} {name}");
            walk(&cfg, view.result.root_pa, view.ram).leaves(&cfg).collect::<Vec<_>>()
        };
        let l = leaves(&mut b, "pmd-blocks");
        assert_eq!(l.len(), 3, "{cfg}");
        assert!(l.iter().all(|l| l.level == Level(2) && !l.desc.is_contiguous()), "{cfg}");

        let n = cfg.cont_entries(Level(3)).unwrap() as usize;
        let l = leaves(&mut b, "cont-pte");
        assert_eq!(l.len(), 2 * n + 3, "{cfg}");
        assert_eq!(l.iter().filter(|l| l.desc.is_contiguous()).count(), 2 * n, "{cfg}");

        // CONT_PMD is only ever taken below a real pud entry: never in 2-level configs.
        let l = leaves(&mut b, "cont-pmd");
        let cont = l.iter().filter(|l| l.desc.is_contiguous()).count();
        let want = if cfg.levels() == 2 { 0 } else { cfg.cont_entries(Level(2)).unwrap() as usize };
        assert_eq!(cont, want, "{cfg}");

        if cfg.kernel_block_size(Level(1)).is_some() {
            let l = leaves(&mut b, "pud-block");
            assert_eq!(l.iter().map(|l| l.level.0).collect::<Vec<_>>(), vec![1, 2, 3], "{cfg}");
        }
        let l = leaves(&mut b, "no-block-cont-exec");
        assert!(l.iter().all(|l| l.level == Level(3) && !l.desc.is_contiguous()), "{cfg}");
    }
}

fn run_mutant(build: ptcheck_host::backend::native::BuildFn, cfg: TranslationConfig, name: &str) -> Verdict {
    let np = plan(cfg, name);
    let mut b = NativeBackend::with_builder(build);
    let view = b.run(&np.plan).unwrap();
    verify(&np.plan, &view)
}

#[test]
fn skipped_zeroing_is_caught_by_zeroing_and_ordering() {
    for cfg in TranslationConfig::all() {
        let v = run_mutant(skip_zero, cfg, "cont-pte");
        assert!(!v.check(CheckName::Zeroing).unwrap().passed(), "{cfg}: {}", v.describe_failures());
        let ordering = v.check(CheckName::Ordering).unwrap();
        assert!(ordering.failures.iter().any(|f| f.contains("linked before it was zeroed")), "{cfg}: {ordering:?}");
    }
}

#[test]
fn zeroing_after_link_is_caught_by_ordering() {
    for cfg in TranslationConfig::all() {
        let v = run_mutant(zero_after_link, cfg, "cont-pte");
        let ordering = v.check(CheckName::Ordering).unwrap();
        assert!(ordering.failures.iter().any(|f| f.contains("linked before it was zeroed")), "{cfg}: {ordering:?}");
        // The final memory is right: only the order gives it away.
        assert!(v.check(CheckName::Translation).unwrap().passed(), "{cfg}");
        assert!(v.check(CheckName::Zeroing).unwrap().passed(), "{cfg}");
    }
}

#[test]
fn folded_level_accessor_is_caught_on_every_folded_config_only() {
    for cfg in TranslationConfig::all() {
        let v = run_mutant(folded_fixmap, cfg, "reenter-existing");
        if has_folded_level(&cfg) {
            let ordering = v.check(CheckName::Ordering).unwrap();
            assert!(ordering.failures.iter().any(|f| f.contains("is folded in")), "{cfg}: {ordering:?}");
            let result = v.check(CheckName::Result).unwrap();
            assert!(result.failures.iter().any(|f| f.contains("data abort")), "{cfg}: {result:?}");
        } else {
            assert!(v.passed(), "{cfg} has no folded level, mutant must be harmless: {}", v.describe_failures());
        }
    }
}

/// Memory with one word overridden, to tamper with finished tables.
struct Tampered<'a> {
    inner: &'a dyn PhysMemory,
    pa: u64,
    value: u64,
}
impl PhysMemory for Tampered<'_> {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        if pa == self.pa {
            Some(self.value)
        } else {
            self.inner.read_u64(pa)
        }
    }
}

/// Find the entry (pa, value) of the first leaf, and of the first table descriptor.
fn first_entries(cfg: &TranslationConfig, view: &RunView<'_>) -> ((u64, u64), (u64, u64)) {
    let w = walk(cfg, view.result.root_pa, view.ram);
    let leaf = w.leaves(cfg).next().unwrap();
    let table = w.tables[1];
    let leaf_pa = w.entry_pa(cfg, leaf.level, leaf.va).unwrap();
    let parent = w.tables.iter().find(|p| p.level.next() == table.level && table.va >= p.va).unwrap();
    let idx = cfg.index(parent.level, table.va) as u64;
    ((leaf_pa, leaf.desc.0), (parent.pa + idx * 8, table.parent_desc.0))
}

#[test]
fn tampered_tables_fail_the_matching_check() {
    let mut b = NativeBackend::new();
    for cfg in TranslationConfig::all() {
        let np = plan(cfg, "no-block-cont-exec");
        let view = b.run(&np.plan).unwrap();
        let ((leaf_pa, leaf), (tdesc_pa, tdesc)) = first_entries(&cfg, &view);
        let check = |pa, value, name: CheckName| {
            let ram = Tampered { inner: view.ram, pa, value };
            let v = verify(&np.plan, &RunView { result: view.result, ram: &ram, observed: None });
            assert!(!v.check(name).unwrap().passed(), "{cfg}: tampering {pa:#x} not caught by {name}");
        };
        check(leaf_pa, leaf + cfg.page_size(), CheckName::Translation);
        check(leaf_pa, leaf | Descriptor::CONT, CheckName::Policy);
        check(tdesc_pa, tdesc & !Descriptor::PXN_TABLE, CheckName::TableBits);
        check(leaf_pa, 0xdead_0000, CheckName::Zeroing);
    }
}
