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
    println!("{:<30} {:>8} {:>9} {:>11} {:>7}", "backend / plans", "plans", "seconds", "plans/s", "failed");
    for f in &figures {
        println!("{:<30} {:>8} {:>9.2} {:>11.1} {:>7}", f.label, f.plans, f.elapsed.as_secs_f64(), f.rate(), f.failed);
    }
    let r = |i: usize| figures[i].rate();
    println!(
        "ratios (built-in plans): native / qemu persistent = {:.1}x; qemu persistent / boot-per-plan = {:.1}x",
        r(0) / r(2),
        r(2) / r(4)
    );
    Ok(figures.iter().all(|f| f.failed == 0))
}
