//! `cargo xtask bench --scale`: machine-sized page-granular maps, measured side by
//! side in one run.
//!
//! 1. The pipeline per stage (model, pool poison, build, walk, checks; on QEMU the
//!    guest's build and probes, with the boot apart) for 1, 16, 64 and 256 GiB of 4K
//!    pages on 4k-48, and the same leaf counts on 16k-47 and 64k-48: ns per leaf and
//!    peak RSS of this process.
//! 2. The builder alone against aarch64-paging 0.12 (`LinearMap`, 4K only) and
//!    against writing each descriptor once (the memory floor), on the same layouts.
//!
//! Arguments: `--qemu` adds the QEMU rows (needs `PTCHECK_GUEST_IMAGE`); `--quick`
//! stops at 16 GiB.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ptcheck_host::backend::native::{NativeMemory, SimRam};
use ptcheck_host::backend::qemu::{self, QemuOptions};
use ptcheck_host::backend::{Backend, RunView};
use ptcheck_host::expect::expected;
use ptcheck_host::report::peak_rss_mib;
use ptcheck_host::validate::validate;
use ptcheck_host::verify::verify_walked;
use ptcheck_host::walker::walk;
use ptcheck_shared::abi::layout::{POOL_HIGH_START, POOL_START};
use ptcheck_shared::abi::{MapFlags, MapOp, Plan, RunResult};
use ptcheck_shared::{Descriptor, Level, Prot, TranslationConfig};

const GIB: u64 = 1 << 30;
/// Where every layout's RAM starts (a 2 MiB-aligned PA, as a real linear map).
const PA: u64 = 0x8000_0000;

/// A page-granular linear map (NO_BLOCK|NO_CONT, rodata=full) of `leaves` pages of
/// `cfg`, with a pool of exactly the tables it needs.
fn layout(cfg: TranslationConfig, leaves: u64) -> Box<Plan> {
    let mut plan: Box<Plan> = bytemuck::zeroed_box();
    *plan = Plan::new(cfg);
    plan.plan_id = 1;
    let flags = MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS;
    let size = leaves * cfg.page_size();
    plan.push_op(MapOp { va: cfg.va_start(), pa: PA, size, prot: Prot::KERNEL.0, flags });
    plan.push_pool(POOL_HIGH_START, 6 * GIB);
    let tables = expected(&plan).expect("a valid layout").tables as u64;
    plan.n_pool = 0;
    let bytes = tables * cfg.page_size();
    let base = if bytes <= 64 << 20 { POOL_START } else { POOL_HIGH_START };
    plan.push_pool(base, bytes);
    plan
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// One row of the pipeline table, natively.
fn native_row(cfg: TranslationConfig, leaves: u64, label: &str) {
    let plan = layout(cfg, leaves);
    let (exp, model) = time(|| validate(&plan).expect("valid"));
    let (mut ram, poison) = time(|| SimRam::for_pool(plan.pool()));
    let mut result: Box<RunResult> = bytemuck::zeroed_box();
    let ((), build) = time(|| {
        let mut mem = NativeMemory::new(cfg, &mut ram);
        ptcheck_guest::run_plan(&plan, &mut mem, &mut result);
    });
    let (w, walked) = time(|| walk(&cfg, result.root_pa, &ram));
    let view = RunView { result: &result, ram: &ram, observed: None };
    let (verdict, checks) = time(|| verify_walked(&plan, &exp, &view, &w));
    assert!(verdict.passed(), "{cfg} {label}: {}", verdict.describe_failures());
    let total = model + poison + build + walked + checks;
    println!(
        "| native | {cfg} | {label} | {} | {leaves} | {} | {} | {} | {} | {} | {:.1} | {} |",
        result.n_tables,
        ms(model),
        ms(poison),
        ms(build),
        ms(walked),
        ms(checks),
        total.as_nanos() as f64 / leaves as f64,
        peak_rss_mib()
    );
}

/// One row of the pipeline table on QEMU (the guest builds and probes; boot apart).
fn qemu_row(b: &mut dyn Backend, cfg: TranslationConfig, leaves: u64, label: &str) {
    let mut plan = layout(cfg, leaves);
    let (exp, model) = time(|| {
        let exp = validate(&plan).expect("valid");
        ptcheck_host::probes::choose(&mut plan, &exp, 1);
        exp
    });
    let tags = ptcheck_host::probes::tag_pages(&plan, &exp);
    let t = Instant::now();
    let view = b.run_tagged(&plan, &tags).expect("the guest runs the plan");
    let guest = t.elapsed();
    let (w, walked) = time(|| walk(&cfg, view.result.root_pa, view.ram));
    let (verdict, checks) = time(|| verify_walked(&plan, &exp, &view, &w));
    assert!(verdict.passed(), "{cfg} {label}: {}", verdict.describe_failures());
    let total = model + guest + walked + checks;
    println!(
        "| qemu | {cfg} | {label} | {} | {leaves} | {} | (in guest) | {} (poison, build, {} probes) | {} | {} | {:.1} | {} |",
        view.result.n_tables,
        ms(model),
        ms(guest),
        view.result.n_probes,
        ms(walked),
        ms(checks),
        total.as_nanos() as f64 / leaves as f64,
        peak_rss_mib()
    );
}

/// Best of three: the builder alone over a poisoned pool.
fn ptcheck_builder(plan: &Plan, cfg: TranslationConfig) -> Duration {
    let mut result: Box<RunResult> = bytemuck::zeroed_box();
    (0..3)
        .map(|_| {
            let mut ram = SimRam::for_pool(plan.pool());
            let mut mem = NativeMemory::new(cfg, &mut ram);
            let t = Instant::now();
            ptcheck_guest::run_plan(plan, &mut mem, &mut result);
            let d = t.elapsed();
            assert_eq!(result.status, 1, "done");
            d
        })
        .min()
        .expect("three runs")
}

/// Best of three: aarch64-paging mapping the same range, page granular.
fn aarch64_paging(leaves: u64) -> Duration {
    use aarch64_paging::descriptor::El1Attributes;
    use aarch64_paging::linearmap::LinearMap;
    use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, VaRange};
    // Lower VA range, offset 0: the crate also reaches its own (heap) tables through
    // the translation, so their host addresses must be valid output addresses too.
    let va = PA as usize;
    let offset = 0isize;
    let flags = El1Attributes::VALID
        | El1Attributes::ATTRIBUTE_INDEX_0
        | El1Attributes::INNER_SHAREABLE
        | El1Attributes::ACCESSED
        | El1Attributes::UXN
        | El1Attributes::PXN;
    let constraints = Constraints::NO_BLOCK_MAPPINGS | Constraints::NO_CONTIGUOUS_HINT;
    (0..3)
        .map(|_| {
            let mut map = LinearMap::with_asid(1, 0, offset, El1And0, VaRange::Lower);
            let region = MemoryRegion::new(va, va + (leaves * 4096) as usize);
            let t = Instant::now();
            map.map_range_with_constraints(&region, flags, constraints).expect("aarch64-paging maps it");
            let d = t.elapsed();
            black_box(&map);
            d
        })
        .min()
        .expect("three runs")
}

/// Best of three: each descriptor written once into memory already touched.
fn floor(cfg: TranslationConfig, leaves: u64) -> Duration {
    let mut v = vec![1u64; leaves as usize];
    let first = Descriptor::leaf(&cfg, Level(3), PA, Prot::KERNEL, false).0;
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for (i, d) in v.iter_mut().enumerate() {
                *d = first + ((i as u64) << 12);
            }
            let d = t.elapsed();
            black_box(&v);
            d
        })
        .min()
        .expect("three runs")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let with_qemu = args.iter().any(|a| a == "--qemu");
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[u64] = if quick { &[1, 16] } else { &[1, 16, 64, 256] };
    let cfg = |n: &str| TranslationConfig::parse(n).expect("known regime");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine: {cpu}, {cores} cores; one run, every figure side by side");
    println!();
    println!("Pipeline, page-granular linear maps (NO_BLOCK|NO_CONT), every check run:");
    println!();
    println!("| backend | regime | size | tables | leaves | model ms | poison ms | build ms | walk ms | checks ms | ns/leaf | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &gib in sizes {
        let leaves = gib * GIB / 4096;
        native_row(cfg("4k-48"), leaves, &format!("{gib} GiB of 4K"));
    }
    for name in ["16k-47", "64k-48"] {
        for &gib in sizes {
            let leaves = gib * GIB / 4096;
            native_row(cfg(name), leaves, &format!("= {gib} GiB of 4K"));
        }
    }
    if with_qemu {
        let image = std::env::var_os("PTCHECK_GUEST_IMAGE").expect("PTCHECK_GUEST_IMAGE names the guest image");
        let mut opts = QemuOptions::new(image.into());
        opts.policy.plan_timeout = Duration::from_secs(1200);
        let mut b = qemu::backend(opts).expect("QEMU backend");
        let ((), boot) = time(|| b.preflight().expect("the guest boots"));
        println!("| qemu | boot | | | | | | {} | | | | |", ms(boot));
        for &gib in sizes {
            qemu_row(&mut b, cfg("4k-48"), gib * GIB / 4096, &format!("{gib} GiB of 4K"));
        }
        for name in ["16k-47", "64k-48"] {
            let gib = *sizes.last().expect("a size");
            qemu_row(&mut b, cfg(name), gib * GIB / 4096, &format!("= {gib} GiB of 4K"));
        }
    }
    println!();
    println!("Builders alone, same layouts (4k-48, 4K pages, no blocks, no contiguous hint), best of 3:");
    println!();
    println!("| size | leaves | ptcheck M desc/s | aarch64-paging 0.12 M desc/s | floor M desc/s | ptcheck / aarch64-paging | floor / ptcheck |");
    println!("|---|---|---|---|---|---|---|");
    for &gib in sizes {
        let leaves = gib * GIB / 4096;
        let plan = layout(cfg("4k-48"), leaves);
        let ours = ptcheck_builder(&plan, cfg("4k-48"));
        let theirs = aarch64_paging(leaves);
        let min = floor(cfg("4k-48"), leaves);
        let rate = |d: Duration| leaves as f64 / d.as_secs_f64() / 1e6;
        println!(
            "| {gib} GiB | {leaves} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.1}x |",
            rate(ours),
            rate(theirs),
            rate(min),
            rate(ours) / rate(theirs),
            rate(min) / rate(ours)
        );
    }
}
