//! Fuzzing: generated plans on any backend, sharded, time-boxed, with failures shrunk
//! to a reproducer.
//!
//! Plan ordinal `j` of a run is plan index `j / n` of regime `configs[j % n]`; shard
//! `i/k` runs the ordinals with `j % k == i - 1`, so k shards cover one run exactly.

pub mod command;
pub mod gen;
pub mod shrink;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ptcheck_shared::abi::Plan;
use ptcheck_shared::TranslationConfig;

use crate::backend::Backend;
use crate::differential::{compare, Likeness};
use crate::outcome::{Class, Outcome};
use crate::repro::{self, Repro};
use crate::run::run_and_verify;
use crate::verify::CheckName;

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
    /// Names the backend and builder in reproducer file names ("native-clean").
    pub label: String,
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

    /// The `m`-th ordinal of this shard (`None` past the end of the ordinals).
    pub fn nth_mine(&self, m: u64) -> Option<u64> {
        m.checked_mul(self.shards)?.checked_add(self.shard - 1).filter(|&j| self.count.is_none_or(|c| j < c))
    }

    /// How many of the ordinals `0..count` are this shard's (counted, not enumerated).
    pub fn planned(&self) -> Option<u64> {
        let c = self.count?;
        let first = self.shard - 1;
        Some(if c > first { (c - first).div_ceil(self.shards) } else { 0 })
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
    /// Where the reproducer was written, or why it could not be.
    pub repro: Result<std::path::PathBuf, String>,
}

impl Failure {
    /// The reproducer's path, or the write error, for printing.
    pub fn repro_text(&self) -> String {
        match &self.repro {
            Ok(p) => p.display().to_string(),
            Err(e) => format!("NOT WRITTEN: {e}"),
        }
    }
}

/// A plan the checks could not judge (bad plan, over capacity, infrastructure): never
/// shrunk, never written as a builder reproducer.
#[derive(Debug, Clone)]
pub struct Unchecked {
    /// Ordinal in the run.
    pub ordinal: u64,
    /// Regime.
    pub config: TranslationConfig,
    /// Plan index.
    pub index: u64,
    /// Why it could not be checked.
    pub outcome: Outcome,
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
    /// Plans not checked, by ordinal.
    pub unchecked: Vec<Unchecked>,
    /// Plans the builder under test cannot express (`n/a`): neither passed nor failed.
    pub not_applicable: u64,
    /// Why a worker stopped early (repeated infrastructure failures), if one did.
    pub gave_up: Option<String>,
}

impl Summary {
    /// Plans per second.
    pub fn rate(&self) -> f64 {
        self.plans as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Plans that were checked (passed or failed).
    pub fn checked(&self) -> u64 {
        self.plans - self.unchecked.len() as u64 - self.not_applicable
    }

    /// What the exit code says: a builder failure first, then anything unchecked
    /// (a run that checked nothing counts as unchecked).
    pub fn class(&self) -> Class {
        if !self.failures.is_empty() {
            Class::BuilderFailed
        } else if !self.unchecked.is_empty() || self.gave_up.is_some() || self.checked() == 0 {
            Class::NotChecked
        } else {
            Class::Passed
        }
    }
}

/// Infrastructure failures in a row after which a worker stops (QEMU keeps dying).
const GIVE_UP_AFTER: u32 = 3;

/// What one ordinal came to.
enum Case {
    Passed,
    NotApplicable,
    Failed(Failure),
    Unchecked(Unchecked),
}

/// Candidate runs a shrink may try.
const SHRINK_BUDGET: usize = 400;

/// Verify ordinal `j` on `backend`; on a builder failure shrink it there and write a
/// reproducer. A plan that cannot be checked is reported as such, never shrunk.
/// A second builder every plan runs on too, and how alike their tables must be.
pub struct Reference<'a> {
    /// Makes the reference backend (one per worker).
    pub make: &'a (dyn Fn() -> anyhow::Result<Box<dyn Backend>> + Sync),
    /// What must agree.
    pub likeness: Likeness,
    /// Its name, for messages ("linux").
    pub name: String,
}

fn one(
    spec: &FuzzSpec,
    backend: &mut dyn Backend,
    mut reference: Option<(&mut (dyn Backend + 'static), &Reference<'_>)>,
    j: u64,
    hw: &AtomicU64,
) -> Case {
    let (cfg, index) = spec.case(j);
    let plan = spec.plan(j);
    let probe_seed = spec.seed ^ j;
    let o = run_and_verify(backend, &plan, probe_seed);
    hw.fetch_add(o.hw_probes, Ordering::Relaxed);
    let unchecked = |outcome| Case::Unchecked(Unchecked { ordinal: j, config: cfg, index, outcome });
    let mut differs = None;
    match o.class() {
        Class::Passed => {
            let Some((other, r)) = reference.as_mut() else { return Case::Passed };
            match compare(&plan, backend, &mut **other, r.likeness) {
                Ok(None) => return Case::Passed,
                Ok(Some(why)) => differs = Some(why),
                Err(e) => {
                    return unchecked(Outcome::Infrastructure(format!("{e:#}").lines().next().unwrap_or("").into()))
                }
            }
        }
        Class::NotApplicable => return Case::NotApplicable,
        Class::NotChecked => return unchecked(o.outcome),
        Class::BuilderFailed => {}
    }
    let check = if differs.is_some() {
        "differential".to_string()
    } else {
        o.verdict.checks.iter().find(|c| !c.passed()).map_or(CheckName::Result, |c| c.name).to_string()
    };
    let original_ops = plan.n_ops;
    let still_fails = |p: &Plan,
                       backend: &mut dyn Backend,
                       reference: &mut Option<(&mut (dyn Backend + 'static), &Reference<'_>)>| {
        let o = run_and_verify(backend, p, probe_seed);
        match (differs.is_some(), reference.as_mut()) {
            (true, Some((other, r))) => {
                o.passed() && compare(p, backend, &mut **other, r.likeness).is_ok_and(|d| d.is_some())
            }
            _ => o.builder_failed() && o.verdict.checks.iter().any(|c| !c.passed() && c.name.as_str() == check),
        }
    };
    let small = shrink::shrink(&plan, |p| still_fails(p, backend, &mut reference), SHRINK_BUDGET);
    let again = run_and_verify(backend, &small, probe_seed);
    if !again.outcome.checked() {
        // The environment failed while shrinking: what we hold is not a builder reproducer.
        return unchecked(again.outcome);
    }
    let detail = match (&differs, reference.as_mut()) {
        (Some(_), Some((other, r))) => match compare(&small, backend, &mut **other, r.likeness) {
            Ok(Some(why)) => format!("differs from {}: {why}\n", r.name),
            _ => "the difference did not survive shrinking\n".to_string(),
        },
        _ => again.describe(),
    };
    let notes = format!(
        "{cfg} seed {} index {index} on {} ({}): shrunk from {original_ops} to {} operations\n{detail}",
        spec.seed,
        backend.name(),
        spec.label,
        small.n_ops,
    );
    let r = Repro {
        plan: small.clone(),
        origin: Some((spec.seed, index, gen::FORMAT)),
        fails: vec![check.clone()],
        outcome: Some(again.outcome.to_string()),
        builder: crate::tested::builder_of(backend),
        traced: backend.traced(),
        tested: Some(crate::tested::of_backend("fuzz", backend, &[spec.seed])),
    };
    let stem = format!("fuzz-{}-{cfg}-s{}-i{index}", spec.label, spec.seed);
    let repro = repro::write_repro(&stem, &r, &notes).map_err(|e| format!("{e:#}"));
    Case::Failed(Failure { ordinal: j, config: cfg, index, ops: (original_ops, small.n_ops), check, repro })
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
    run_against(spec, workers, make, None, progress)
}

/// [`run`], with every plan that passes also run on `reference`'s builder and
/// compared (a difference is a `differential` failure, shrunk like any other).
///
/// # Errors
/// A backend could not be created.
pub fn run_against(
    spec: &FuzzSpec,
    workers: usize,
    make: &(dyn Fn() -> anyhow::Result<Box<dyn Backend>> + Sync),
    reference: Option<&Reference<'_>>,
    progress: bool,
) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let total = spec.planned();
    let bar =
        if progress { total.map_or_else(ProgressBar::new_spinner, ProgressBar::new) } else { ProgressBar::hidden() };
    let template = if total.is_some() {
        "{bar:30} {pos}/{len} plans  {per_sec}  failures: {msg}  ETA {eta}"
    } else {
        "{spinner} {pos} plans  {per_sec}  failures: {msg}  {elapsed}"
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message("0");
    let next = AtomicU64::new(0);
    let (hw, done, not_applicable) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let nfail = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let unchecked = Mutex::new(Vec::new());
    let gave_up = Mutex::new(None);
    let backends: Vec<_> = (0..workers.max(1)).map(|_| make()).collect::<anyhow::Result<_>>()?;
    let references: Vec<Option<Box<dyn Backend>>> =
        (0..workers.max(1)).map(|_| reference.map(|r| (r.make)()).transpose()).collect::<anyhow::Result<_>>()?;
    std::thread::scope(|s| {
        for (mut backend, mut other) in backends.into_iter().zip(references) {
            let (next, hw, done, nfail, failures, bar) = (&next, &hw, &done, &nfail, &failures, &bar);
            let (unchecked, gave_up, not_applicable) = (&unchecked, &gave_up, &not_applicable);
            s.spawn(move || {
                let mut infra_in_a_row = 0;
                loop {
                    if spec.time.is_some_and(|t| start.elapsed() >= t) || gave_up.lock().expect("no panics").is_some() {
                        break;
                    }
                    let Some(j) = spec.nth_mine(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let refr = other.as_deref_mut().zip(reference);
                    match one(spec, backend.as_mut(), refr, j, hw) {
                        Case::Passed => infra_in_a_row = 0,
                        Case::NotApplicable => {
                            infra_in_a_row = 0;
                            not_applicable.fetch_add(1, Ordering::Relaxed);
                        }
                        Case::Failed(f) => {
                            infra_in_a_row = 0;
                            let n = nfail.fetch_add(1, Ordering::Relaxed) + 1;
                            bar.set_message(n.to_string());
                            bar.suspend(|| {
                                eprintln!(
                                    "FAIL {} index {}: [{}] shrunk {} -> {} ops, reproducer {}",
                                    f.config,
                                    f.index,
                                    f.check,
                                    f.ops.0,
                                    f.ops.1,
                                    f.repro_text()
                                )
                            });
                            failures.lock().expect("no panics hold it").push(f);
                        }
                        Case::Unchecked(u) => {
                            let infra = matches!(u.outcome, Outcome::Infrastructure(_));
                            infra_in_a_row = if infra { infra_in_a_row + 1 } else { 0 };
                            bar.suspend(|| eprintln!("NOT CHECKED {} index {}: {}", u.config, u.index, u.outcome));
                            if infra_in_a_row >= GIVE_UP_AFTER {
                                let why = format!(
                                    "{GIVE_UP_AFTER} infrastructure failures in a row, the last: {}",
                                    u.outcome
                                );
                                *gave_up.lock().expect("no panics") = Some(why);
                            }
                            unchecked.lock().expect("no panics hold it").push(u);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut failures = failures.into_inner().expect("no panics hold it");
    failures.sort_by_key(|f| f.ordinal);
    let mut unchecked = unchecked.into_inner().expect("no panics hold it");
    unchecked.sort_by_key(|u| u.ordinal);
    Ok(Summary {
        plans: done.into_inner(),
        hw_probes: hw.into_inner(),
        elapsed: start.elapsed(),
        failures,
        unchecked,
        not_applicable: not_applicable.into_inner(),
        gave_up: gave_up.into_inner().expect("no panics hold it"),
    })
}
