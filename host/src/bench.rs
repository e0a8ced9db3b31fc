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
