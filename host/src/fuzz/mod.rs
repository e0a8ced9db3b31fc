//! Fuzzing: generated plans on any backend, sharded, time-boxed, with failures shrunk
//! to a reproducer.
//!
//! Plan ordinal `j` of a run is plan index `j / n` of regime `configs[j % n]`; shard
//! `i/k` runs the ordinals with `j % k == i - 1`, so k shards cover one run exactly.

pub mod gen;
pub mod shrink;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ptcheck_shared::abi::Plan;
use ptcheck_shared::TranslationConfig;

use crate::backend::Backend;
use crate::repro::{self, Repro};
use crate::run::run_and_verify;

/// Which plans a fuzz run covers.
#[derive(Clone, Debug)]
pub struct FuzzSpec {
    /// The run's seed.
    pub seed: u64,
    /// Regimes, in ordinal order.
    pub configs: Vec<TranslationConfig>,
    /// Ordinals `0..count` (None: until the time budget ends).
    pub count: Option<u64>,
    /// Stop after this long.
    pub time: Option<Duration>,
    /// This shard, 1-based, of `shards`.
    pub shard: u64,
    /// Number of shards.
    pub shards: u64,
}

impl FuzzSpec {
    /// The regime and plan index of ordinal `j`.
    pub fn case(&self, j: u64) -> (TranslationConfig, u64) {
        let n = self.configs.len() as u64;
        (self.configs[(j % n) as usize], j / n)
    }

    /// Whether ordinal `j` belongs to this shard.
    pub fn mine(&self, j: u64) -> bool {
        j % self.shards == self.shard - 1
    }

    /// The plan of ordinal `j`.
    pub fn plan(&self, j: u64) -> Box<Plan> {
        let (cfg, index) = self.case(j);
        gen::generate(self.seed, index, cfg)
    }
}

/// A failure, shrunk, with its reproducer.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Ordinal in the run.
    pub ordinal: u64,
    /// Regime.
    pub config: TranslationConfig,
    /// Plan index.
    pub index: u64,
    /// Operations before / after shrinking.
    pub ops: (u32, u32),
    /// The check that failed first.
    pub check: String,
    /// Where the reproducer was written.
    pub repro: std::path::PathBuf,
}

/// What a fuzz run did.
#[derive(Debug)]
pub struct Summary {
    /// Plans run.
    pub plans: u64,
    /// Pages checked by the MMU.
    pub hw_probes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Failures, by ordinal.
    pub failures: Vec<Failure>,
}

impl Summary {
    /// Plans per second.
    pub fn rate(&self) -> f64 {
        self.plans as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Candidate runs a shrink may try.
const SHRINK_BUDGET: usize = 400;

/// Verify ordinal `j` on `backend`; on failure shrink it there and write a reproducer.
fn one(spec: &FuzzSpec, backend: &mut dyn Backend, j: u64, hw: &AtomicU64) -> Option<Failure> {
    let (cfg, index) = spec.case(j);
    let mut plan = spec.plan(j);
    let probe_seed = spec.seed ^ j;
    let o = run_and_verify(backend, &mut plan, probe_seed);
    hw.fetch_add(o.hw_probes, Ordering::Relaxed);
    let check = *o.verdict.failed().first()?;
    let original_ops = plan.n_ops;
    let small = shrink::shrink(
        &plan,
        |p| {
            let mut p = Box::new(*p);
            let o = run_and_verify(backend, &mut p, probe_seed);
            o.verdict.check(check).is_some_and(|c| !c.passed())
        },
        SHRINK_BUDGET,
    );
    let mut rerun = small.clone();
    let v = run_and_verify(backend, &mut rerun, probe_seed).verdict;
    let notes = format!("{cfg} seed {} index {index} on {}: shrunk from {original_ops} to {} operations\n{}", spec.seed, backend.name(), small.n_ops, v.describe_failures());
    let r = Repro { plan: small.clone(), origin: Some((spec.seed, index, gen::FORMAT)), fails: vec![check.to_string()] };
    let path = repro::write_repro(&format!("fuzz-{cfg}-s{}-i{index}", spec.seed), &r, &notes).unwrap_or_default();
    Some(Failure { ordinal: j, config: cfg, index, ops: (original_ops, small.n_ops), check: check.into(), repro: path })
}

/// Run `spec` with `workers` backends made by `make` (native: one per core; a VM: one).
///
/// # Errors
/// A backend could not be created.
pub fn run(
    spec: &FuzzSpec,
    workers: usize,
    make: &(dyn Fn() -> anyhow::Result<Box<dyn Backend>> + Sync),
    progress: bool,
) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let total = spec.count.map(|c| (0..c).filter(|&j| spec.mine(j)).count() as u64);
    let bar = if progress { total.map_or_else(ProgressBar::new_spinner, ProgressBar::new) } else { ProgressBar::hidden() };
    let template = if total.is_some() {
        "{bar:30} {pos}/{len} plans  {per_sec}  failures: {msg}  ETA {eta}"
    } else {
        "{spinner} {pos} plans  {per_sec}  failures: {msg}  {elapsed}"
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message("0");
    let next = AtomicU64::new(0);
    let (hw, done) = (AtomicU64::new(0), AtomicU64::new(0));
    let nfail = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let backends: Vec<_> = (0..workers.max(1)).map(|_| make()).collect::<anyhow::Result<_>>()?;
    std::thread::scope(|s| {
        for mut backend in backends {
            let (next, hw, done, nfail, failures, bar) = (&next, &hw, &done, &nfail, &failures, &bar);
            s.spawn(move || loop {
                if spec.time.is_some_and(|t| start.elapsed() >= t) {
                    break;
                }
                let j = next.fetch_add(1, Ordering::Relaxed);
                if spec.count.is_some_and(|c| j >= c) {
                    break;
                }
                if !spec.mine(j) {
                    continue;
                }
                if let Some(f) = one(spec, backend.as_mut(), j, hw) {
                    let n = nfail.fetch_add(1, Ordering::Relaxed) + 1;
                    bar.set_message(n.to_string());
                    bar.suspend(|| eprintln!("FAIL {} index {}: [{}] shrunk {} -> {} ops, reproducer {}", f.config, f.index, f.check, f.ops.0, f.ops.1, f.repro.display()));
                    failures.lock().expect("no panics hold it").push(f);
                }
                done.fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let mut failures = failures.into_inner().expect("no panics hold it");
    failures.sort_by_key(|f| f.ordinal);
    Ok(Summary { plans: done.into_inner(), hw_probes: hw.into_inner(), elapsed: start.elapsed(), failures })
}
