//! The checks on what the tracer observed of one build (QEMU with `--trace`), not on
//! what the builder says of itself:
//! - `zeroed_at_link`: at its link, every entry of the table is zero or was written in
//!   this build (the host poisons the pool before each plan);
//! - `ordered_link`: between the table's last write and the store that links it, a
//!   store-ordering DSB (Linux's rule: `init_clear_pgtable`'s `dsb(ishst)`, held to the
//!   Linux-policy builders) — or, for a builder of its own policy, a DMB or a
//!   store-release link (aarch64-paging's rule);
//! - `observed`: the observed links and the builder's `TableRecord`s agree — the same
//!   tables linked at the same entries with the same descriptors, in the same order, and
//!   what the record claims (cleared; a barrier between clear and link) was executed.

use ptcheck_shared::trace::{Link, OrderedBy};

use super::check::{Check, Ctx};
use crate::expect::Policy;
use crate::trace::Observed;

fn ordered_name(o: OrderedBy) -> &'static str {
    match o {
        OrderedBy::Dsb => "a DSB",
        OrderedBy::Dmb => "a DMB",
        OrderedBy::Release => "the link's store-release",
        OrderedBy::NoWrite => "nothing to order (no write this build)",
        OrderedBy::Nothing => "nothing",
    }
}

fn at(l: &Link) -> String {
    format!(
        "table {:#x} linked at entry {:#x} (= {:#x}) by PC {:#x} ({:#010x})",
        l.table_pa, l.entry_pa, l.value, l.pc, l.insn
    )
}

/// `bbm` (`tlbi` false) or `tlbi` (true): every finding the tracer made on a live table
/// (the guest's own map and fixmap during a build).
pub(super) fn live(o: &Observed, tlbi: bool, c: &mut Check) {
    use ptcheck_shared::trace::Violation;
    for f in o.findings.iter().filter(|f| (f.violation == Violation::UsedBeforeInvalidated) == tlbi) {
        c.fail(crate::trace::describe(f, &|pc, insn| format!("PC {pc:#x} ({insn:#010x})")));
    }
}

/// `zeroed_at_link`.
pub(super) fn zeroed_at_link(o: &Observed, c: &mut Check) {
    for l in o.links.iter().filter(|l| l.stale > 0) {
        c.fail(format!(
            "{}: {} entries neither zero nor written in this build; {:#x} holds {:#x}",
            at(l),
            l.stale,
            l.first_stale_pa,
            l.first_stale_value
        ));
    }
}

/// `ordered_link`, by the builder's rule.
pub(super) fn ordered_link(cx: &Ctx<'_>, o: &Observed, c: &mut Check) {
    let linux = cx.exp.policy != Policy::Own;
    for l in &o.links {
        let ok = match l.ordered_by {
            OrderedBy::Dsb | OrderedBy::NoWrite => true,
            OrderedBy::Dmb | OrderedBy::Release => !linux,
            OrderedBy::Nothing => false,
        };
        if !ok {
            let rule = if linux {
                "a Linux-policy builder must issue dsb(ishst) (init_clear_pgtable)"
            } else {
                "needs a DSB, a DMB or a store-release link"
            };
            c.fail(format!(
                "{}: the table's last write (PC {:#x} ({:#010x}) to {:#x}) is ordered before it by {}; {rule}",
                at(l),
                l.last_write_pc,
                l.last_write_insn,
                l.last_write_pa,
                ordered_name(l.ordered_by)
            ));
        }
    }
}

/// `observed`: the stream against the builder's own record.
pub(super) fn agrees(cx: &Ctx<'_>, o: &Observed, c: &mut Check) {
    let mut recorded: Vec<_> = cx.result.tables().iter().filter(|t| t.links > 0 && t.linux_level != u8::MAX).collect();
    if recorded.is_empty() && cx.result.tables().iter().any(|t| t.linux_level == u8::MAX) {
        // A builder that links its tables itself records no links: nothing to compare.
        return;
    }
    recorded.sort_by_key(|t| t.seq_link);
    // The first observed store of each recorded link, in order.
    let mut seen = Vec::new();
    for t in &recorded {
        match o.links.iter().position(|l| l.entry_pa == t.link_entry && l.value == t.link_value) {
            None => c.fail(format!(
                "the record says table {:#x} was linked at entry {:#x} with {:#x}, but no such store was executed",
                t.pa, t.link_entry, t.link_value
            )),
            Some(i) => {
                let l = &o.links[i];
                seen.push((i, t.pa));
                let claims_barrier = t.seq_barrier != 0 && t.seq_barrier > t.seq_zero && t.seq_barrier < t.seq_link;
                if claims_barrier && !matches!(l.ordered_by, OrderedBy::Dsb | OrderedBy::NoWrite) {
                    c.fail(format!(
                        "the record says a barrier ordered table {:#x}'s clear before its link; executed: {}",
                        t.pa,
                        ordered_name(l.ordered_by)
                    ));
                }
                if t.seq_zero != 0 && t.seq_zero < t.seq_link && l.stale > 0 {
                    c.fail(format!(
                        "the record says table {:#x} was cleared before its link; at the link {} entries held what was there before",
                        t.pa, l.stale
                    ));
                }
            }
        }
    }
    if seen.windows(2).any(|w| w[0].0 > w[1].0) {
        c.fail("the tables were linked in another order than the record says".to_string());
    }
    for l in &o.links {
        if !recorded.iter().any(|t| t.link_entry == l.entry_pa && t.link_value == l.value) {
            c.fail(format!("{}: a link the builder's record does not list", at(l)));
        }
    }
}
