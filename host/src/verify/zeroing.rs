//! `zeroing`: every entry not expected to be valid is exactly 0, and pool pages the
//! builder never allocated still hold the poison.

use std::collections::HashSet;

use ptcheck_shared::Level;

use super::check::{Check, Ctx};
use crate::expect::ModelEntry;
use crate::walker::AnomalyKind;
use crate::POISON;

/// The `zeroing` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { cfg, plan, exp, walk: w, result: r, ram, .. } = *cx;
    let in_bug = |va: u64, size: u64| cx.in_bug(va, size);
    for a in &w.nonzero_invalid {
        c.fail(format!(
            "L{} entry at {:#x} (VA {:#x}) is {:#x}: neither valid nor zero",
            a.level.0, a.entry_pa, a.va, a.value
        ));
    }
    // A reserved encoding is not a valid expected entry either: it must have been 0.
    for a in w.anomalies.iter().filter(|a| a.kind == AnomalyKind::Reserved) {
        c.fail(format!(
            "L{} entry at {:#x} (VA {:#x}) is {:#x}: a reserved encoding, not zero",
            a.level.0, a.entry_pa, a.va, a.value
        ));
    }
    for l in w.leaves.iter().filter(|l| !in_bug(l.va, l.size)) {
        if !exp.entries.contains_key(&(l.level, l.va)) {
            c.fail(format!("L{} VA {:#x}: valid entry {:#x} that no operation asked for", l.level.0, l.va, l.desc.0));
        }
    }
    for t in w.tables.iter().skip(1) {
        let key = (Level(t.level.0 - 1), t.va);
        if !matches!(exp.entries.get(&key), Some(ModelEntry::Table { .. })) && !in_bug(t.va, cfg.entry_span(key.0)) {
            c.fail(format!(
                "L{} VA {:#x}: table descriptor {:#x} that no operation needed",
                key.0 .0, t.va, t.parent_desc.0
            ));
        }
    }
    let allocated: HashSet<u64> = r.allocs().iter().map(|a| a.pa).collect();
    let page = cfg.page_size();
    let mut words = vec![0u64; (page / 8) as usize];
    for range in plan.pool() {
        let mut pa = range.base.next_multiple_of(page);
        while pa + page <= range.base + range.size {
            if !allocated.contains(&pa) {
                let first_bad =
                    if ram.read_words(pa, &mut words) { words.iter().position(|&w| w != POISON) } else { Some(0) };
                if let Some(i) = first_bad {
                    c.fail(format!("pool page {pa:#x} was never allocated but was written (offset {:#x})", i * 8));
                }
            }
            pa += page;
        }
    }
}
