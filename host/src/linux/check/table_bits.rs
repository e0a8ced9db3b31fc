//! table_bits: the hierarchical attributes of every table descriptor.

use ptcheck_shared::{Descriptor, Level, Prot};

use super::ctx::{fail, info, linear_end, page_offset, unchecked, Ctx};
use crate::linux::inspection::{Finding, LinuxCheck};
use crate::linux::layout::Range;

/// table_bits: UXNTable everywhere but the early fixmap tables; PXNTable under the
/// linear map; nothing hierarchical above an executable leaf.
pub(crate) fn table_bits(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    let w = &c.i.walk;
    let bss =
        c.sections().ok().map(|s| Range { start: s.bss.wrapping_sub(s.voffset), end: s.end.wrapping_sub(s.voffset) });
    if bss.is_none() {
        out.push(unchecked(
            LinuxCheck::TableBits,
            "the image's bss is unknown (no /proc/kallsyms or /proc/iomem), so the early fixmap tables are too".into(),
        ));
        return;
    }
    let (lo, hi) = (page_offset(cfg), linear_end(cfg));
    let (mut fixmap, mut no_uxn, mut no_pxn, mut kfence_tables) = (0, Vec::new(), Vec::new(), Vec::new());
    for t in w.tables.iter().skip(1) {
        let d = t.parent_desc.0;
        let span = cfg.entries(t.level) as u64 * cfg.entry_span(t.level);
        if d & Descriptor::UXN_TABLE == 0 {
            if bss.is_some_and(|b| (b.start..b.end).contains(&t.pa)) {
                fixmap += 1;
            } else {
                no_uxn.push(format!("{} table at PA {:#x} for VA {:#x}", t.level, t.pa, t.va));
            }
        }
        let last = t.va.wrapping_add(span - 1);
        if t.va >= lo && last < hi && last >= t.va && d & Descriptor::PXN_TABLE == 0 {
            let what = format!("{} table at PA {:#x} for VA {:#x}", t.level, t.pa, t.va);
            if t.level == Level::LEAF && c.kfence.is_some_and(|k| k.start <= last && t.va < k.end) {
                kfence_tables.push(what);
            } else {
                no_pxn.push(what);
            }
        }
    }
    for (what, list) in [
        ("without UXNTable (outside the early fixmap tables in bss)", &no_uxn),
        ("under the linear map without PXNTable", &no_pxn),
    ] {
        if !list.is_empty() {
            let shown: Vec<&str> = list.iter().take(4).map(String::as_str).collect();
            out.push(fail(
                LinuxCheck::TableBits,
                format!("{} table descriptors {what}: {}", list.len(), shown.join("; ")),
            ));
        }
    }
    // Above an executable leaf, no table may take execution or write away.
    for r in w.runs.iter().filter(|r| r.prot(cfg).0 & Prot::PXN == 0) {
        for t in w.tables.iter().skip(1) {
            let span = cfg.entries(t.level) as u64 * cfg.entry_span(t.level);
            let covers = r.va >= t.va && r.va - t.va < span;
            if covers && t.parent_desc.0 & (Descriptor::PXN_TABLE | Descriptor::AP_TABLE_MASK) != 0 {
                out.push(fail(
                    LinuxCheck::TableBits,
                    format!(
                        "{} table for VA {:#x} has PXNTable/APTable ({:#x}) above executable VA {:#x}",
                        t.level, t.va, t.parent_desc.0, r.va
                    ),
                ));
            }
        }
    }
    if !kfence_tables.is_empty() {
        out.push(info(
            LinuxCheck::TableBits,
            format!(
                "kernel difference: {} linear-map table(s) first made for the KFENCE pool lack PXNTable ({}): \
                 this kernel maps the pool without NO_EXEC_MAPPINGS (later kernels pass it); its pages are PXN",
                kfence_tables.len(),
                kfence_tables.join("; ")
            ),
        ));
    }
    if fixmap > 0 {
        out.push(info(
            LinuxCheck::TableBits,
            format!("{fixmap} early-fixmap tables (in bss) without UXNTable, as the kernel builds them"),
        ));
    }
}
