//! zeroing: every invalid entry of every reachable table is exactly zero.

use ptcheck_shared::{Descriptor, Level};

use super::ctx::{fail, info, Ctx};
use crate::linux::inspection::{Finding, LinuxCheck};

/// zeroing: every invalid entry of every reachable table is exactly 0, except KFENCE's
/// guard pages, each a page descriptor of its own linear-map page with only the valid
/// bit cleared.
pub(crate) fn zeroing(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    let is_guard = |a: &crate::walker::Anomaly| {
        let (Some(k), Some(o)) = (c.kfence, c.offset) else { return false };
        let d = Descriptor(a.value | Descriptor::VALID);
        a.level == Level::LEAF
            && (k.start..k.end).contains(&a.va)
            && d.kind(cfg, a.level) == ptcheck_shared::descriptor::DescriptorKind::Page
            && d.address(cfg) == a.va.wrapping_sub(o)
    };
    let bad: Vec<_> = c.i.walk.nonzero_invalid.iter().filter(|a| !is_guard(a)).collect();
    for a in bad.iter().take(5) {
        out.push(fail(
            LinuxCheck::Zeroing,
            format!(
                "L{} entry at {:#x} (VA {:#x}) is {:#x}: neither valid nor zero",
                a.level.0, a.entry_pa, a.va, a.value
            ),
        ));
    }
    if bad.len() > 5 {
        out.push(fail(LinuxCheck::Zeroing, format!("... and {} more", bad.len() - 5)));
    }
    let guards = c.i.walk.nonzero_invalid.len() - bad.len();
    if guards > 0 {
        out.push(info(
            LinuxCheck::Zeroing,
            format!("{guards} KFENCE guard PTEs (valid bit cleared) exempt in the pool"),
        ));
    }
}
