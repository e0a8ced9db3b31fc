//! zeroed_at_link and ordered_link: what the tracer saw the kernel do from reset to the
//! stop, judged link by link (`trace/`, `host/tracer`).
//!
//! - zeroed_at_link: when a table is linked, each of its entries is zero or was
//!   written during the trace — never stale or poison content (the top 64 MiB of every
//!   bank is poisoned before boot, where early tables come from).
//! - ordered_link: a link into a live tree (the MMU on, the parent reachable from
//!   TTBR0/1) has something between the table's last write (a store or `DC ZVA`) and
//!   the linking store that orders them for a table walk: a store-ordering `DSB` (what
//!   arm64's `init_clear_pgtable` issues), a `DMB` (generic `pmd_install`'s
//!   `smp_wmb`), or a store-release link. A tree built while not live is ordered by the
//!   DSB before its TTBR write, which the kernel issues in `cpu_replace_ttbr1`.

use ptcheck_shared::trace::{Counts, Link, OrderedBy};

use crate::trace::Observed;

use super::ctx::{fail, info, unchecked, Ctx};
use crate::linux::inspection::{Finding, LinuxCheck};

/// Most failing links printed per check.
const SHOWN: usize = 8;

/// The observed checks (zeroed_at_link, ordered_link, bbm, tlbi); `NOT CHECKED` when
/// the trace is not whole or past a limit; nothing when the boot was not traced.
pub(crate) fn observed(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let o = match &c.i.observed {
        None => return,
        Some(Err(e)) => {
            for check in LinuxCheck::OBSERVED {
                out.push(unchecked(check, format!("the trace is not whole: {e}")));
            }
            return;
        }
        Some(Ok(o)) => o,
    };
    let Some(counts) = o.counts else {
        for check in LinuxCheck::OBSERVED {
            out.push(unchecked(check, "the tracer sent no summary".into()));
        }
        return;
    };
    if counts.links_dropped > 0 {
        for check in LinuxCheck::OBSERVED {
            out.push(unchecked(
                check,
                format!("over-capacity: {} links past the tracer's limits were not judged", counts.links_dropped),
            ));
        }
        return;
    }
    zeroed_at_link(c, o, out);
    ordered_link(c, o, out);
    for check in [Live::Bbm, Live::Tlbi] {
        live_changes(c, o, &counts, check, out);
    }
    counted(o, &counts, out);
}

/// zeroed_at_link: every link whose table held stale entries.
fn zeroed_at_link(c: &Ctx<'_>, o: &Observed, out: &mut Vec<Finding>) {
    let stale: Vec<&Link> = o.links.iter().filter(|l| l.stale > 0).collect();
    for l in stale.iter().take(SHOWN) {
        out.push(fail(
            LinuxCheck::ZeroedAtLink,
            format!(
                "table {:#x}{} linked at entry {:#x}{} by {} with {} entries neither zero nor written since reset: \
                 {:#x} holds {:#x}",
                l.table_pa,
                c.in_image(l.table_pa),
                l.entry_pa,
                c.in_image(l.entry_pa),
                c.pc(l.pc, l.insn),
                l.stale,
                l.first_stale_pa,
                l.first_stale_value
            ),
        ));
    }
    if stale.len() > SHOWN {
        out.push(fail(LinuxCheck::ZeroedAtLink, format!("... and {} more tables", stale.len() - SHOWN)));
    }
}

/// ordered_link: every link into a live tree with nothing ordering the table's last
/// write before it; generic vmemmap populate's are a kernel finding, not failed.
fn ordered_link(c: &Ctx<'_>, o: &Observed, out: &mut Vec<Finding>) {
    let (generic, unordered): (Vec<&Link>, Vec<&Link>) = o
        .links
        .iter()
        .filter(|l| l.live && l.ordered_by == OrderedBy::Nothing)
        .partition(|l| c.in_vmemmap_populate(l.pc, l.entry_pa).is_some());
    for l in generic.iter().take(SHOWN) {
        out.push(info(
            LinuxCheck::OrderedLink,
            format!(
                "kernel finding (generic mm/sparse-vmemmap.c, not the arm64 mapping code): table {:#x} linked at \
                 entry {:#x} by {} in {} with nothing ordering its memset ({}) before the link; arm64's \
                 p?d_populate issues its dsb(ishst) after the store",
                l.table_pa,
                l.entry_pa,
                c.pc(l.pc, l.insn),
                c.in_vmemmap_populate(l.pc, l.entry_pa).unwrap_or("?"),
                c.pc(l.last_write_pc, l.last_write_insn)
            ),
        ));
    }
    for l in unordered.iter().take(SHOWN) {
        out.push(fail(
            LinuxCheck::OrderedLink,
            format!(
                "table {:#x} linked into a live tree at entry {:#x} by {}, and nothing orders its last write \
                 ({} to {:#x}) before that: no DSB/DMB that orders stores, not a store-release",
                l.table_pa,
                l.entry_pa,
                c.pc(l.pc, l.insn),
                c.pc(l.last_write_pc, l.last_write_insn),
                l.last_write_pa
            ),
        ));
    }
    if unordered.len() > SHOWN {
        out.push(fail(LinuxCheck::OrderedLink, format!("... and {} more links", unordered.len() - SHOWN)));
    }
}

/// The two checks on changes to live tables.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Live {
    /// Break-before-make.
    Bbm,
    /// TLB invalidation before reuse.
    Tlbi,
}

/// bbm or tlbi: the tracer's findings of that kind; 6.9+'s pi/map_kernel.c remap of
/// the relocated kernel's text is a kernel finding, not failed.
fn live_changes(c: &Ctx<'_>, o: &Observed, counts: &Counts, which: Live, out: &mut Vec<Finding>) {
    use crate::linux::symbols::EARLY_MAP_RANGE;
    use ptcheck_shared::trace::Violation;
    let check = if which == Live::Bbm { LinuxCheck::Bbm } else { LinuxCheck::Tlbi };
    if counts.live_over_capacity > 0 {
        out.push(unchecked(
            check,
            format!("over-capacity: {} live tables past the tracer's shadow limit", counts.live_over_capacity),
        ));
        return;
    }
    let ours = |v: Violation| (v == Violation::UsedBeforeInvalidated) == (which == Live::Tlbi);
    let (early, fs): (Vec<_>, Vec<_>) = o.findings.iter().filter(|f| ours(f.violation)).partition(|f| {
        f.violation == Violation::RemadeBeforeInvalidated
            && c.in_function(f.pc, EARLY_MAP_RANGE)
            && c.in_function(f.change_pc, EARLY_MAP_RANGE)
    });
    if let Some(f) = early.first() {
        out.push(info(
            check,
            format!(
                "kernel finding (arch/arm64/kernel/pi/map_kernel.c, the relocated kernel's text remap): {} \
                 entries unmapped and remapped by {EARLY_MAP_RANGE} after `tlbi vmalle1; isb` with no DSB \
                 completing the TLBI, e.g. {}",
                early.len(),
                crate::trace::describe(f, &|pc, insn| c.pc(pc, insn))
            ),
        ));
    }
    for f in fs.iter().take(SHOWN) {
        out.push(fail(check, crate::trace::describe(f, &|pc, insn| c.pc(pc, insn))));
    }
    let total = if which == Live::Bbm { counts.bbm } else { counts.tlbi_findings };
    let sent = (early.len() + fs.len()) as u64;
    if !fs.is_empty() && total > fs.len().min(SHOWN) as u64 {
        out.push(fail(check, format!("... {total} in all")));
    } else if fs.is_empty() && total > sent {
        // The tracer sends only the first findings: those past it are unknown.
        out.push(unchecked(check, format!("{} findings past the tracer's message limit were not seen", total - sent)));
    }
}

/// What the tracer counted, as information lines.
fn counted(o: &Observed, counts: &Counts, out: &mut Vec<Finding>) {
    out.push(info(
        LinuxCheck::Tlbi,
        format!(
            "{} stores changed live tables; {} needed a TLBI, {} were covered by one and a DSB",
            counts.live_changes, counts.invalidations_needed, counts.invalidations_done
        ),
    ));
    let n = counts.total_links();
    out.push(info(
        LinuxCheck::OrderedLink,
        format!(
            "{n} links observed: {} after a DSB, {} after a DMB, {} store-release, {} with nothing to order, {} \
             unordered ({} of them in a tree not yet live); {} candidates never in a live tree; {} stores, {} DC ZVA, \
             {} DSB, {} DMB, {} ISB, {} TLBI",
            counts.links[0],
            counts.links[1],
            counts.links[2],
            counts.links[3],
            counts.links[4],
            o.links.iter().filter(|l| !l.live && l.ordered_by == OrderedBy::Nothing).count(),
            counts.unconfirmed,
            counts.ram_stores,
            counts.dc_zva,
            counts.dsb,
            counts.dmb,
            counts.isb,
            counts.tlbi
        ),
    ));
}
