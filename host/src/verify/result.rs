//! `result`: the run ended as the model says: finished, or exactly the expected BUG.

use ptcheck_shared::abi::{RunResult, Status};
use ptcheck_shared::descriptor::DescriptorKind;
use ptcheck_shared::{Descriptor, Level, TranslationConfig};

use super::check::{bug_name, op_name, Check, Ctx};
use crate::esr;
use crate::expect::Expected;

/// The `result` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    judge(cx.cfg, cx.result, cx.exp, c);
}

fn judge(cfg: &TranslationConfig, r: &RunResult, exp: &Expected, c: &mut Check) {
    match (r.status(), &exp.bug) {
        (Some(Status::Done), None) => {}
        (Some(Status::Done), Some(b)) => c.fail(format!(
            "expected BUG {:?} at {} (L{} VA {:#x}) but every operation was applied",
            b.kind,
            op_name(b.op),
            b.level,
            b.va
        )),
        (Some(Status::Bug), None) => c.fail(format!(
            "unexpected BUG {} at {} (L{} VA {:#x}, old {:#x}, new {:#x})",
            bug_name(r.bug.kind),
            op_name(r.bug.op),
            r.bug.level,
            r.bug.va,
            r.bug.old,
            r.bug.new
        )),
        (Some(Status::Bug), Some(b)) => {
            let a = &r.bug;
            let old_ok = match b.old {
                Some(old) => a.old == old,
                None => Descriptor(a.old).kind(cfg, Level(a.level as i8)) == DescriptorKind::Table,
            };
            if a.kind != b.kind as u32
                || a.op != b.op
                || a.level != b.level
                || a.va != b.va
                || !old_ok
                || a.new != b.new
            {
                c.fail(format!(
                    "BUG record differs: expected {:?} at {} L{} VA {:#x} old {} new {:#x}; got {} at {} L{} VA {:#x} old {:#x} new {:#x}",
                    b.kind, op_name(b.op), b.level, b.va,
                    b.old.map_or("<a table>".into(), |o| format!("{o:#x}")), b.new,
                    bug_name(a.kind), op_name(a.op), a.level, a.va, a.old, a.new
                ));
            }
        }
        (Some(Status::Exception), _) => c.fail(format!(
            "guest exception during {}: {} at FAR {:#x}, ELR {:#x}",
            op_name(r.exception.op),
            esr::describe(r.exception.esr),
            r.exception.far,
            r.exception.elr
        )),
        (Some(Status::BadPlan), _) => c.fail("the guest rejected the plan (magic, version or config)"),
        (Some(Status::Running), _) => {
            c.fail(format!("the run never finished ({} of the operations applied)", r.ops_done))
        }
        (None, _) => c.fail(format!("result status {} is not a status", r.status)),
    }
}
