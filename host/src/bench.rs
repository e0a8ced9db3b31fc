//! `ptcheck bench`: plans per second on each backend, measured side by side in one run
//! over the same built-in plan set, so the ratios are meaningful on a noisy machine.

use std::time::{Duration, Instant};

use ptcheck_shared::TranslationConfig;

use crate::backend::Backend;
use crate::plans;
use crate::run::run_and_verify;

/// One backend's figure.
pub struct Figure {
    /// What was measured.
    pub label: String,
    /// Plans run (each verified, as in a real run).
    pub plans: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Plans that failed verification (must be 0 for the figure to mean anything).
    pub failed: u64,
}

impl Figure {
    /// Plans per second.
    pub fn rate(&self) -> f64 {
        self.plans as f64 / self.elapsed.as_secs_f64()
    }
}

/// The figures as a table under `title`.
fn print_figures(title: &str, figures: &[Figure]) {
    println!("{title:<30} {:>8} {:>9} {:>11} {:>7}", "plans", "seconds", "plans/s", "failed");
    for f in figures {
        println!("{:<30} {:>8} {:>9.2} {:>11.1} {:>7}", f.label, f.plans, f.elapsed.as_secs_f64(), f.rate(), f.failed);
    }
}

/// Run the built-in plans of every regime on `backend`, round after round, until
/// `min_time` has passed or `max_plans` have run.
pub fn measure(label: &str, backend: &mut dyn Backend, min_time: Duration, max_plans: u64) -> Figure {
    let all: Vec<_> = TranslationConfig::all().flat_map(plans::builtin).collect();
    let (mut n, mut failed) = (0u64, 0u64);
    let start = Instant::now();
    'rounds: loop {
        for np in &all {
            let plan = np.plan.clone();
            let o = run_and_verify(backend, &plan, n);
            n += 1;
            if !o.passed() {
                failed += 1;
            }
            if n >= max_plans || (start.elapsed() >= min_time && n >= all.len() as u64) {
                break 'rounds;
            }
        }
    }
    Figure { label: label.into(), plans: n, elapsed: start.elapsed(), failed }
}

/// `ptcheck bench`: plans/s on native, QEMU persistent and QEMU boot-per-plan, side by
/// side in one run, at least `min` per figure. `backend` supplies the guest image,
/// CPU model and timeouts.
///
/// # Errors
/// A backend cannot be made.
pub fn bench(min: Duration, backend: &crate::backend::open::BackendOptions) -> anyhow::Result<bool> {
    use crate::backend::native::NativeBackend;
    use crate::backend::open::{open, BackendChoice, BackendOptions};
    use crate::fuzz::{self, FuzzSpec};
    let n: usize = TranslationConfig::all().map(|c| plans::builtin(c).len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "one run, side by side: the {n} built-in plans and the default fuzz mix (every plan verified; VM runs include MMU probes)"
    );
    let fuzz_figure = |label: &str, workers: usize, make: &(dyn Fn() -> anyhow::Result<Box<dyn Backend>> + Sync)| {
        let spec = FuzzSpec {
            seed: 1,
            configs: TranslationConfig::all().collect(),
            count: None,
            time: Some(min),
            shard: 1,
            shards: 1,
            label: "bench".into(),
        };
        fuzz::run(&spec, workers, make, false).map(|s| Figure {
            label: label.into(),
            plans: s.plans,
            elapsed: s.elapsed,
            failed: (s.failures.len() + s.unchecked.len()) as u64,
        })
    };
    let native = || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(NativeBackend::new())) };
    let qemu = |boot_per_plan: bool| {
        let mut o = BackendOptions { choice: BackendChoice::Qemu, mutant: None, ..backend.clone() };
        o.policy.boot_per_plan = boot_per_plan;
        o
    };
    let (persistent, boot_per_plan) = (qemu(false), qemu(true));
    let figures = vec![
        measure("native built-in", &mut NativeBackend::new(), min, u64::MAX),
        fuzz_figure(&format!("native fuzz x{cores}"), cores, &native)?,
        measure("qemu persistent built-in", open(&persistent)?.0.as_mut(), min, u64::MAX),
        fuzz_figure("qemu persistent fuzz", 1, &|| Ok(open(&persistent)?.0))?,
        measure("qemu boot-per-plan built-in", open(&boot_per_plan)?.0.as_mut(), min, 200),
    ];
    print_figures("backend / plans", &figures);
    let r = |i: usize| figures[i].rate();
    println!(
        "ratios (built-in plans): native / qemu persistent = {:.1}x; qemu persistent / boot-per-plan = {:.1}x",
        r(0) / r(2),
        r(2) / r(4)
    );
    Ok(figures.iter().all(|f| f.failed == 0))
}

/// One builder's costs over a set of plans.
#[derive(Default, Clone, Copy)]
struct CostSum {
    tables: u64,
    costs: ptcheck_shared::abi::Costs,
    /// Every plan passed every check (set by [`page_map_costs`]).
    passed: bool,
}

/// `builder` (a registry id) mapping `size` bytes of RAM with pages of `cfg`'s
/// granule (no blocks, no contiguous runs: a `rodata=full` linear map) at the start
/// of the kernel's VA space, natively, and what it counted; verified like any plan.
fn page_map_costs(cfg: TranslationConfig, size: u64, builder: u32) -> anyhow::Result<CostSum> {
    use crate::backend::native::NativeBackend;
    use crate::backend::Variant;
    use ptcheck_shared::abi::{layout, MapFlags, MapOp, Plan};
    use ptcheck_shared::Prot;
    let mut plan: Box<Plan> = bytemuck::zeroed_box();
    *plan = Plan::new(cfg);
    plan.plan_id = size >> 30;
    let flags = MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS;
    plan.push_op(MapOp { va: cfg.va_start(), pa: 0x8000_0000, size, prot: Prot::KERNEL.0, flags });
    // Leaf tables, one per (entries per table) pages, and the levels above them.
    let shift = cfg.granule().page_shift();
    let leaf_tables = size >> (2 * shift - 3);
    plan.push_pool(layout::POOL_HIGH_START, (leaf_tables + leaf_tables / 256 + 64) << shift);
    let mut b = NativeBackend::with_variant(Variant { builder, mutation: 0 });
    let passed = run_and_verify(&mut b, &plan, 1).passed();
    let mut sum = CostSum { passed, ..CostSum::default() };
    sum.add(b.run(&plan)?.result);
    Ok(sum)
}

/// ptcheck's `linux-6.9` and `linux` builders mapping `size` bytes page by page in
/// `cfg` (what `ptcheck kernel-costs` puts beside a real kernel's counts).
///
/// # Errors
/// A builder could not run the plan, or its map failed a check (named).
pub fn builders_on_page_map(
    cfg: TranslationConfig,
    size: u64,
) -> anyhow::Result<Vec<ptcheck_shared::report::BuilderCosts>> {
    use ptcheck_guest::registry::{LINUX, LINUX_6_9};
    let mut out = Vec::new();
    for (name, id) in [("linux-6.9", LINUX_6_9), ("linux", LINUX)] {
        let s = page_map_costs(cfg, size, id)?;
        if !s.passed {
            anyhow::bail!("ptcheck's {name} builder failed a check mapping {} GiB page by page on {cfg}", size >> 30);
        }
        let c = &s.costs;
        out.push(ptcheck_shared::report::BuilderCosts {
            builder: name.into(),
            tables: s.tables,
            fixmap_sets: c.fixmap_sets,
            fixmap_clears: c.fixmap_clears,
            tlbis: c.tlb_invalidations,
            dsbs: c.dsbs,
            table_clears: c.table_clears,
            descriptor_writes: c.descriptor_writes,
        });
    }
    Ok(out)
}

impl CostSum {
    fn add(&mut self, r: &ptcheck_shared::abi::RunResult) {
        let c = &r.costs;
        self.tables += u64::from(r.n_tables);
        self.costs.fixmap_sets += c.fixmap_sets;
        self.costs.fixmap_clears += c.fixmap_clears;
        self.costs.tlb_invalidations += c.tlb_invalidations;
        self.costs.dsbs += c.dsbs;
        self.costs.table_clears += c.table_clears;
        self.costs.descriptor_writes += c.descriptor_writes;
    }

    fn row(&self, what: &str, builder: &str) -> String {
        let t = self.tables.max(1) as f64;
        let c = &self.costs;
        format!(
            "| {what} | {builder} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            self.tables,
            c.fixmap_sets as f64 / t,
            c.fixmap_clears as f64 / t,
            c.tlb_invalidations as f64 / t,
            c.dsbs as f64 / t,
            c.table_clears as f64 / t,
            c.descriptor_writes as f64 / t
        )
    }
}

/// `ptcheck bench --costs`: what building costs on `linux-6.9` (the allocator clears
/// each new table through FIX_PTE) and on `linux` (the builder clears it through the
/// level's own slot), counted by the builders themselves, per table: for every
/// regime's built-in plans, and for a 64 GiB page-granular linear map on 4k-48.
///
/// # Errors
/// A plan could not be run.
pub fn costs() -> anyhow::Result<bool> {
    use crate::backend::native::NativeBackend;
    use crate::backend::Variant;
    use ptcheck_guest::registry::{LINUX, LINUX_6_9};
    use ptcheck_shared::abi::Plan;
    let builders = [("linux-6.9", LINUX_6_9), ("linux", LINUX)];
    let mut ok = true;
    let mut run = |plan: &Plan, builder: u32, sum: &mut CostSum| -> anyhow::Result<()> {
        let mut b = NativeBackend::with_variant(Variant { builder, mutation: 0 });
        let o = run_and_verify(&mut b, plan, 1);
        ok &= o.passed();
        sum.add(b.run(plan)?.result);
        Ok(())
    };
    println!("Per table, counted by the builders (a fixmap set is a PTE write + dsb; a clear, a PTE clear + TLBI between two dsbs):");
    println!();
    println!("| plans | builder | tables | fixmap sets | fixmap clears | TLB invalidations | dsb | table clears | descriptor writes |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut totals = [CostSum::default(); 2];
    for cfg in TranslationConfig::all() {
        for (k, (name, id)) in builders.iter().enumerate() {
            let mut sum = CostSum::default();
            for np in plans::builtin(cfg) {
                run(&np.plan, *id, &mut sum)?;
            }
            totals[k].tables += sum.tables;
            totals[k].add_sum(&sum);
            println!("{}", sum.row(&format!("{cfg} built-in"), name));
        }
    }
    let cfg = TranslationConfig::parse("4k-48").expect("known");
    let mut big = [CostSum::default(); 2];
    for (k, (name, id)) in builders.iter().enumerate() {
        big[k] = page_map_costs(cfg, 64 << 30, *id)?;
        ok &= big[k].passed;
        println!("{}", big[k].row("4k-48 64 GiB of 4K pages", name));
    }
    for (k, (name, _)) in builders.iter().enumerate() {
        println!("{}", totals[k].row("every built-in plan", name));
    }
    let per = |s: &CostSum, f: fn(&ptcheck_shared::abi::Costs) -> u64| f(&s.costs) as f64 / s.tables.max(1) as f64;
    let cut = |f: fn(&ptcheck_shared::abi::Costs) -> u64| {
        let (before, after) = (per(&big[0], f), per(&big[1], f));
        format!("{before:.2} -> {after:.2} per table ({:.0}% fewer)", 100.0 * (1.0 - after / before.max(1e-9)))
    };
    println!();
    println!(
        "64 GiB page-granular map, linux-6.9 -> linux: fixmap sets {}; TLB invalidations {}; dsb {}",
        cut(|c| c.fixmap_sets),
        cut(|c| c.tlb_invalidations),
        cut(|c| c.dsbs)
    );
    println!("costs: {}", if ok { "every plan passed every check on both builders" } else { "SOME PLANS FAILED" });
    Ok(ok)
}

impl CostSum {
    fn add_sum(&mut self, other: &CostSum) {
        let (c, o) = (&mut self.costs, &other.costs);
        c.fixmap_sets += o.fixmap_sets;
        c.fixmap_clears += o.fixmap_clears;
        c.tlb_invalidations += o.tlb_invalidations;
        c.dsbs += o.dsbs;
        c.table_clears += o.table_clears;
        c.descriptor_writes += o.descriptor_writes;
    }
}

/// What `bench --trace` measures besides the plans: a real kernel's boot.
pub struct TraceBench {
    /// Seconds per figure for the plans.
    pub min: Duration,
    /// A kernel and initramfs to boot untraced and traced (`None`: plans only).
    pub kernel: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Boots per kernel figure.
    pub boots: u32,
}

/// `ptcheck bench --trace`: the tracer's cost, side by side in one run. Plans/s on the
/// system QEMU untraced, QEMU 10 untraced and QEMU 10 traced; then, with a kernel, its
/// boot to the check point on the same three, with QEMU's peak RSS.
///
/// # Errors
/// QEMU 10 or the plugin cannot be found, a backend cannot start, a boot fails.
pub fn bench_trace(b: &TraceBench, backend: &crate::backend::open::BackendOptions) -> anyhow::Result<bool> {
    use crate::backend::qemu::{self, QemuOptions};
    use crate::backend::Backend as _;
    let setup = crate::trace::setup()?;
    let system = crate::trace::qemu_binary(false);
    let version = |q: &std::path::Path| {
        std::process::Command::new(q)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "system QEMU: {} ({}); tracing QEMU: {} ({})",
        system.display(),
        version(&system),
        setup.qemu.display(),
        setup.version
    );
    let variants: [(&str, std::path::PathBuf, bool); 3] = [
        ("system QEMU, untraced", system.clone(), false),
        ("QEMU 10, untraced", setup.qemu.clone(), false),
        ("QEMU 10, traced", setup.qemu.clone(), true),
    ];
    let mut figures = Vec::new();
    for (label, q, traced) in &variants {
        let mut o = QemuOptions::new(backend.guest_image());
        o.qemu = q.clone();
        o.cpu = backend.cpu.clone();
        o.policy = backend.policy;
        o.trace = traced.then(|| setup.clone());
        let mut be = qemu::backend(o)?;
        be.preflight()?;
        figures.push(measure(label, &mut be, b.min, u64::MAX));
    }
    print_figures("built-in plans", &figures);
    let r = |i: usize| figures[i].rate();
    println!(
        "plans: traced / untraced on QEMU 10 = {:.0}% (goal >= 50%); QEMU 10 / system QEMU untraced = {:.0}%",
        100.0 * r(2) / r(1),
        100.0 * r(1) / r(0)
    );
    let mut ok = figures.iter().all(|f| f.failed == 0);
    let Some((kernel, initrd)) = &b.kernel else { return Ok(ok) };
    let image = crate::linux::load_kernel(kernel)?;
    let needs = crate::linux::layout::Needs {
        image_size: image.image_size.next_multiple_of(64 << 20),
        initrd_size: std::fs::metadata(initrd)?.len(),
    };
    let layout = crate::linux::layout::generate(1, 0, needs);
    println!("kernel {}: layout 0 of seed 1, {} boots each", kernel.display(), b.boots);
    let mut secs = Vec::new();
    for (label, q, traced) in &variants {
        let run = crate::linux::KernelRun {
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            cpu: "max,pauth-impdef=on".into(),
            timeout: Duration::from_secs(120),
            plant: None,
            trace: traced.then(|| setup.clone()),
            qemu: Some(q.clone()),
            // The figures compare QEMU versions' emulation: TCG on every host.
            accel: crate::linux::accel::Accel::Tcg,
        };
        let (mut total, mut peak, mut anon) = (0.0, 0u64, 0u64);
        for _ in 0..b.boots {
            let start = Instant::now();
            let (i, _) = crate::linux::boot_and_inspect(&run, &image, &layout)?;
            total += start.elapsed().as_secs_f64();
            peak = peak.max(i.qemu_peak_kib.unwrap_or(0));
            anon = anon.max(i.qemu_anon_kib.unwrap_or(0));
            if *traced {
                ok &= matches!(&i.observed, Some(Ok(o)) if o.counts.is_some());
            }
        }
        let mean = total / f64::from(b.boots.max(1));
        println!(
            "{label:<30} {mean:>7.2} s per boot to the check point, QEMU peak RSS {} MiB, anonymous {} MiB",
            peak >> 10,
            anon >> 10
        );
        secs.push((mean, anon));
    }
    println!(
        "kernel boot: traced / untraced on QEMU 10 = {:.2}x (goal <= 2x); QEMU 10 / system QEMU untraced = {:.2}x; \
         tracer memory (anonymous RSS traced - untraced; guest RAM is shared and not in it) = {} MiB \
         (goal <= 64 MiB + per-table state)",
        secs[2].0 / secs[1].0,
        secs[1].0 / secs[0].0,
        secs[2].1.saturating_sub(secs[1].1) >> 10
    );
    Ok(ok)
}
