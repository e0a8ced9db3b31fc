//! The verifier: runs every check on one plan's outcome and says, by name, which failed
//! and where.
//!
//! | check        | what must hold |
//! |--------------|----------------|
//! | `result`     | the run ended as the model says: finished, or the exact expected BUG |
//! | `translation`| every mapped VA gives the expected PA and attributes; nothing else is mapped |
//! | `policy`     | block / contiguous / page choice and table count exactly as Linux would make them |
//! | `zeroing`    | every entry not expected to be valid is exactly 0; unallocated pool pages still hold poison |
//! | `ordering`   | every table: allocated once from the pool, zeroed, barrier, then linked once at one level; no folded level's fixmap used |
//! | `table_bits` | UXNTable on every table descriptor, PXNTable exactly with NO_EXEC_MAPPINGS |
//! | `hw_probe`   | (VM backends) the MMU's `AT` result and the word loaded through each probed page agree with the plan and the walker |
//! | `zeroed_at_link`, `ordered_link`, `observed` | (traced) what the tracer saw: see `observed.rs` |

mod check;
mod hw_probe;
mod observed;
mod ordering;
mod policy;
mod result;
mod table_bits;
mod translation;
mod zeroing;

use ptcheck_shared::abi::{Plan, Status, RESULT_MAGIC};

use check::Ctx;
pub use check::{Check, CheckName, Verdict, CHECKS};

use crate::backend::RunView;
use crate::expect::{expected, Expected, Policy};
use crate::walker::{walk, Walk};

/// Check one run of `plan`.
pub fn verify(plan: &Plan, view: &RunView<'_>) -> Verdict {
    let Some(exp) = expected(plan) else {
        let mut checks: Vec<Check> = CheckName::MEMORY.iter().map(|&n| Check::new(n)).collect();
        checks[0].fail("the plan itself is malformed (magic, version or config)");
        return Verdict { checks };
    };
    verify_with(plan, &exp, view).0
}

/// Check one run of `plan` against its expected state `exp`; also returns the walk
/// of the tables every check used (empty when there is no root).
pub fn verify_with(plan: &Plan, exp: &Expected, view: &RunView<'_>) -> (Verdict, Walk) {
    let r = view.result;
    let w = match plan.config() {
        Some(cfg) if r.root_pa != 0 && r.magic == RESULT_MAGIC && r.plan_id == plan.plan_id => {
            walk(&cfg, r.root_pa, view.ram)
        }
        _ => Walk::default(),
    };
    let v = verify_walked(plan, exp, view, &w);
    (v, w)
}

/// Check one run of `plan` against `exp`, with the tables already walked into `w`.
pub fn verify_walked(plan: &Plan, exp: &Expected, view: &RunView<'_>, w: &Walk) -> Verdict {
    let r = view.result;
    let mut checks: Vec<Check> = CheckName::MEMORY.iter().map(|&n| Check::new(n)).collect();
    let Some(cfg) = plan.config() else {
        checks[0].fail("the plan itself is malformed (magic, version or config)");
        return Verdict { checks };
    };
    if r.magic != RESULT_MAGIC || r.plan_id != plan.plan_id {
        checks[0].fail(format!(
            "no result for this plan in the result area (magic {:#x}, plan id {} vs {})",
            r.magic, r.plan_id, plan.plan_id
        ));
        return Verdict { checks };
    }
    let cx = Ctx { cfg: &cfg, plan, exp, walk: w, result: r, ram: view.ram };
    let [res, translation, policy, zeroing, ordering, table_bits] = &mut checks[..] else { unreachable!() };
    result::check(&cx, res);
    translation::check(&cx, translation);
    policy::check(&cx, policy);
    zeroing::check(&cx, zeroing);
    ordering::check(&cx, ordering);
    table_bits::check(&cx, table_bits);
    if exp.policy == Policy::Own {
        // A builder of its own policy is not held to Linux's shapes.
        checks.retain(|c| c.name != CheckName::Policy);
    }
    // The MMU view exists only if the guest got as far as probing: a crash or hang
    // is the `result` check's failure, not a disagreement of the MMU.
    if plan.n_probes > 0 && matches!(r.status(), Some(Status::Done | Status::Bug)) {
        let mut hw = Check::new(CheckName::HwProbe);
        hw_probe::check(&cx, &mut hw);
        checks.push(hw);
    }
    // What the tracer saw (an incomplete record never gets here: `run` names it).
    if let (Some(Ok(o)), Some(Status::Done | Status::Bug)) = (view.observed, r.status()) {
        let mut c =
            [CheckName::ZeroedAtLink, CheckName::OrderedLink, CheckName::Observed, CheckName::Bbm, CheckName::Tlbi]
                .map(Check::new);
        let [z, ord, agree, bbm, tlbi] = &mut c;
        observed::zeroed_at_link(o, z);
        observed::ordered_link(&cx, o, ord);
        observed::agrees(&cx, o, agree);
        observed::live(o, false, bbm);
        observed::live(o, true, tlbi);
        checks.extend(c);
    }
    Verdict { checks }
}
