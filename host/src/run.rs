//! Running one plan end to end on any backend: add MMU probes where the backend has
//! an MMU, run, verify.

use ptcheck_shared::abi::{Plan, RunResult};

use crate::backend::Backend;
use crate::expect::expected;
use crate::probes;
use crate::verify::{verify, Check, Verdict};

/// What one plan's run amounted to.
pub struct Outcome {
    /// Every check.
    pub verdict: Verdict,
    /// Pages checked by the MMU.
    pub hw_probes: u64,
    /// The CPU could not run this regime (memory checked only).
    pub hw_unsupported: bool,
}

/// What the run is verified against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// The plan itself.
    AsPlanned,
    /// Self-test: the plan with its first operation's PA one page off, so every check
    /// that looks at that operation must fail. Proves a backend's failures are real.
    WrongByOnePage,
}

/// Run `plan` on `backend` and verify it. The plan gains its probes (VM backends).
///
/// A backend failure (VM would not boot, hung, died) is a failed `result` check, not
/// an error: the run goes on with the next plan and the failure is reported.
pub fn run_and_verify(backend: &mut dyn Backend, plan: &mut Plan, seed: u64) -> Outcome {
    run_against(backend, plan, seed, Expectation::AsPlanned)
}

/// Choose the plan's MMU probes and the RAM pages to tag, where the backend has an MMU.
fn prepare_probes(backend: &dyn Backend, plan: &mut Plan, seed: u64) -> Vec<u64> {
    if !backend.has_mmu() {
        return Vec::new();
    }
    let Some(exp) = expected(plan) else { return Vec::new() };
    probes::choose(plan, &exp, seed);
    probes::tag_pages(plan, &exp)
}

impl Outcome {
    fn of(verdict: Verdict, result: &RunResult) -> Outcome {
        let probed = result.hw_flags & RunResult::HW_PROBED != 0;
        Outcome {
            verdict,
            hw_probes: if probed { u64::from(result.n_probes) } else { 0 },
            hw_unsupported: result.hw_flags & RunResult::HW_UNSUPPORTED != 0,
        }
    }
}

/// [`run_and_verify`] with a chosen [`Expectation`].
pub fn run_against(backend: &mut dyn Backend, plan: &mut Plan, seed: u64, expect: Expectation) -> Outcome {
    let tags = prepare_probes(backend, plan, seed);
    match backend.run_tagged(plan, &tags) {
        Ok(view) => {
            let mut against = *plan;
            if expect == Expectation::WrongByOnePage && against.n_ops > 0 {
                against.ops[0].pa += against.config().map_or(4096, |c| c.page_size());
            }
            Outcome::of(verify(&against, &view), view.result)
        }
        Err(e) => {
            let mut c = Check::new("result");
            c.fail(format!("{} backend failed: {e:#}", backend.name()));
            Outcome { verdict: Verdict { checks: vec![c] }, hw_probes: 0, hw_unsupported: false }
        }
    }
}

/// Run and verify like [`run_and_verify`], and also return what the tables map
/// (walked from the result's root) for listings.
///
/// # Errors
/// The backend failed (could not boot, hung, died).
pub fn run_for_listing(backend: &mut dyn Backend, plan: &mut Plan, seed: u64) -> anyhow::Result<(Outcome, crate::walker::Walk)> {
    let tags = prepare_probes(backend, plan, seed);
    let view = backend.run_tagged(plan, &tags)?;
    let cfg = plan.config().ok_or_else(|| anyhow::anyhow!("the plan's config is not valid"))?;
    let walk = if view.result.root_pa != 0 { crate::walker::walk(&cfg, view.result.root_pa, view.ram) } else { Default::default() };
    Ok((Outcome::of(verify(plan, &view), view.result), walk))
}
