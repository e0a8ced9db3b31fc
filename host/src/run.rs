//! Running one plan end to end on any backend: validate it, add MMU probes where the
//! backend has an MMU, run, name the outcome, verify.

use ptcheck_shared::abi::{BugKind, Plan, RunResult, Status};

use crate::backend::{Backend, RunView};
use crate::expect::{expected, overlay, Expected, Policy};
use crate::outcome::{Class, Outcome};
use crate::probes;
use crate::validate::validate;
use crate::verify::{verify_with, Verdict};
use crate::walker::Walk;

/// What one plan's run amounted to.
pub struct PlanRun {
    /// How the run ended.
    pub outcome: Outcome,
    /// Every check (empty when the outcome is not one the checks can judge).
    pub verdict: Verdict,
    /// Pages checked by the MMU.
    pub hw_probes: u64,
    /// The CPU could not run this regime (memory checked only).
    pub hw_unsupported: bool,
    /// What the tracer counted of the build (traced runs).
    pub observed: Option<ptcheck_shared::trace::Counts>,
}

impl PlanRun {
    /// A run the checks cannot judge: bad plan, over capacity, infrastructure.
    pub fn unchecked(outcome: Outcome) -> PlanRun {
        PlanRun {
            outcome,
            verdict: Verdict { checks: Vec::new() },
            hw_probes: 0,
            hw_unsupported: false,
            observed: None,
        }
    }

    /// Passed, failed by the builder, or not checked.
    pub fn class(&self) -> Class {
        if matches!(self.outcome, Outcome::NotApplicable(_)) {
            Class::NotApplicable
        } else if !self.outcome.checked() {
            Class::NotChecked
        } else if self.verdict.passed() {
            Class::Passed
        } else {
            Class::BuilderFailed
        }
    }

    /// Checked, and every check passed.
    pub fn passed(&self) -> bool {
        self.class() == Class::Passed
    }

    /// Checked, and some check failed: the builder is at fault.
    pub fn builder_failed(&self) -> bool {
        self.class() == Class::BuilderFailed
    }

    /// The outcome, and the failing checks when there are any.
    pub fn describe(&self) -> String {
        let mut s = format!("outcome: {}\n", self.outcome);
        s.push_str(&self.verdict.describe_failures());
        s
    }
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

/// Run `plan` on `backend` and verify it (VM backends probe a copy of it with the MMU).
///
/// A backend failure (VM would not boot, hung, died) is an `infrastructure` outcome,
/// not an error and never a builder failure: the run goes on with the next plan.
pub fn run_and_verify(backend: &mut dyn Backend, plan: &Plan, seed: u64) -> PlanRun {
    run_against(backend, plan, seed, Expectation::AsPlanned)
}

/// Choose the plan's MMU probes and the RAM pages to tag, where the backend has an MMU.
fn prepare_probes(backend: &dyn Backend, plan: &mut Plan, exp: &Expected, seed: u64) -> Vec<u64> {
    if !backend.has_mmu() {
        return Vec::new();
    }
    probes::choose(plan, exp, seed);
    probes::tag_pages(plan, exp)
}

/// How the builder's run ended, from its result record; `Err` when the record says
/// the run cannot be judged.
fn outcome_of(result: &RunResult) -> Result<Outcome, Outcome> {
    Ok(match result.status() {
        Some(Status::Done) => Outcome::Done,
        Some(Status::Bug) => Outcome::bug(&result.bug),
        Some(Status::Exception) => Outcome::Crash(format!(
            "during op {}: {} at FAR {:#x}",
            result.exception.op as i64,
            crate::esr::describe(result.exception.esr),
            result.exception.far
        )),
        Some(Status::BadPlan) => {
            return Err(Outcome::Infrastructure(
                "the guest rejected a plan the host accepted: the guest image is from another ptcheck \
                 (rebuild it with `cargo xtask build-guest`)"
                    .into(),
            ))
        }
        Some(Status::Running) => {
            Outcome::Crash(format!("the run never finished ({} operations applied)", result.ops_done))
        }
        None => Outcome::Crash(format!("result status {} is not a status", result.status)),
    })
}

/// The verdict on one finished run, with the walk the checks used.
fn judge(plan: &Plan, exp: &Expected, view: &RunView<'_>) -> (PlanRun, Option<Walk>) {
    let result = view.result;
    let outcome = match outcome_of(result) {
        Ok(o) => o,
        Err(o) => return (PlanRun::unchecked(o), None),
    };
    // A traced build whose record is not whole cannot be judged by what was observed.
    if matches!(outcome, Outcome::Done | Outcome::Bug { .. }) {
        match view.observed {
            Some(Err(e)) => {
                return (
                    PlanRun::unchecked(Outcome::Infrastructure(format!("the tracer's record is not whole: {e}"))),
                    None,
                )
            }
            Some(Ok(o)) if o.counts.is_some_and(|c| c.links_dropped > 0) => {
                let c = o.counts.unwrap_or_default();
                let run = PlanRun::unchecked(Outcome::OverCapacity {
                    limit: "tracer link messages",
                    needed: c.total_links(),
                    held: c.total_links() - c.links_dropped,
                });
                return (run, None);
            }
            Some(Ok(o))
                if o.counts
                    .is_some_and(|c| c.live_over_capacity > 0 || c.bbm + c.tlbi_findings > o.findings.len() as u64) =>
            {
                let c = o.counts.unwrap_or_default();
                let run = PlanRun::unchecked(Outcome::OverCapacity {
                    limit: "tracer live tables and findings",
                    needed: c.bbm + c.tlbi_findings + c.live_over_capacity,
                    held: o.findings.len() as u64,
                });
                return (run, None);
            }
            _ => {}
        }
    }
    let (verdict, w) = verify_with(plan, exp, view);
    let probed = result.hw_flags & RunResult::HW_PROBED != 0;
    let run = PlanRun {
        outcome,
        verdict,
        hw_probes: if probed { u64::from(result.n_probes) } else { 0 },
        hw_unsupported: result.hw_flags & RunResult::HW_UNSUPPORTED != 0,
        observed: view.observed.and_then(|o| o.as_ref().ok()).and_then(|o| o.counts),
    };
    (run, Some(w))
}

/// [`run_and_verify`] with a chosen [`Expectation`].
pub fn run_against(backend: &mut dyn Backend, plan: &Plan, seed: u64, expect: Expectation) -> PlanRun {
    run_full(backend, plan, seed, expect).run
}

/// A run with what its checks looked at: for listings.
pub struct Listing {
    /// The run.
    pub run: PlanRun,
    /// The expected state (absent for a plan rejected before it ran).
    pub expected: Option<Expected>,
    /// The walk of the tables the builder left (absent when the checks did not run).
    pub walk: Option<Walk>,
}

fn run_full(backend: &mut dyn Backend, plan: &Plan, seed: u64, expect: Expectation) -> Listing {
    let unchecked = |o| Listing { run: PlanRun::unchecked(o), expected: None, walk: None };
    let linux = match validate(plan) {
        Ok(exp) => exp,
        Err(o) => return unchecked(o),
    };
    // The builder under test: can it take this plan, and which checks apply?
    let builder = ptcheck_guest::registry::by_id(backend.variant().builder);
    let Some(builder) = builder else {
        return unchecked(Outcome::BadPlan(format!("builder id {} is not in the registry", backend.variant().builder)));
    };
    if let Some(cfg) = plan.config().filter(|c| !(builder.supports)(c)) {
        return unchecked(Outcome::NotApplicable(format!("{} cannot build {cfg} tables", builder.name)));
    }
    if let Some(why) = (builder.refuses)(plan) {
        return unchecked(Outcome::NotApplicable(why.to_string()));
    }
    let exp = match builder.policy {
        Policy::Linux => linux,
        Policy::Own => match overlay(plan) {
            Some(exp) => exp,
            None => return unchecked(Outcome::BadPlan("the plan header is not valid".into())),
        },
    };
    // What the guest gets: the plan with its MMU probes (the caller's plan is not touched).
    let mut sent: Box<Plan> = Box::new(*plan);
    let plan = &mut *sent;
    let tags = prepare_probes(backend, plan, &exp, seed);
    let name = backend.name();
    let view = match backend.run_tagged(plan, &tags) {
        Ok(view) => view,
        Err(e) => {
            // One line: the cause (the guest console that follows it is for debugging).
            let text = format!("{e:#}");
            let cause = text.lines().next().unwrap_or("the backend failed");
            return Listing {
                run: PlanRun::unchecked(Outcome::Infrastructure(format!("{name} backend: {cause}"))),
                expected: Some(exp),
                walk: None,
            };
        }
    };
    if expect == Expectation::WrongByOnePage && plan.n_ops > 0 {
        let mut against = *plan;
        against.ops[0].pa = against.ops[0].pa.wrapping_add(against.config().map_or(4096, |c| c.page_size()));
        let wrong = match exp.policy {
            Policy::Linux => expected(&against),
            Policy::Own => overlay(&against),
        };
        let Some(wrong) = wrong else {
            return unchecked(Outcome::BadPlan("the self-test expectation has no model".into()));
        };
        let (run, walk) = judge(&against, &wrong, &view);
        return Listing { run, expected: Some(wrong), walk };
    }
    // A builder of its own policy that ran out of the pool (sized for the Linux
    // policy's tables) could not build this plan: n/a, not a finding.
    let r = view.result;
    if exp.policy == Policy::Own && r.status() == Some(Status::Bug) && r.bug.kind == BugKind::PoolExhausted as u32 {
        let why =
            format!("the plan's pool (sized for the Linux policy) ran out under {} at op {}", builder.name, r.bug.op);
        return unchecked(Outcome::NotApplicable(why));
    }
    let (run, walk) = judge(plan, &exp, &view);
    Listing { run, expected: Some(exp), walk }
}

/// Run and verify like [`run_and_verify`], and also return the expected state and
/// what the tables map (walked from the result's root), for listings.
pub fn run_for_listing(backend: &mut dyn Backend, plan: &Plan, seed: u64) -> Listing {
    run_full(backend, plan, seed, Expectation::AsPlanned)
}
