//! `zeroing`: every entry not expected to be valid is exactly 0, and pool pages the
//! builder never allocated still hold the poison.

use std::collections::HashSet;

use ptcheck_shared::Level;
use ptcheck_shared::{Descriptor, TranslationConfig};

use super::check::{Check, Ctx};
use crate::expect::Policy;
use crate::runs::{without, LeafRun};
use crate::walker::AnomalyKind;
use crate::POOL_POISON;

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
    // (A builder of its own policy picks its own levels: `translation` holds it to
    // mapping nothing unasked-for; the Linux model knows every entry's level.)
    let linux = exp.policy == Policy::Linux;
    if let Some((va, level, desc)) =
        first_unasked(cfg, &without(cfg, &w.runs, exp.bug_range), &exp.runs).filter(|_| linux)
    {
        c.fail(format!("L{} VA {va:#x}: valid entry {:#x} that no operation asked for", level.0, desc.0));
    }
    for t in w.tables.iter().skip(1) {
        let key = (Level(t.level.0 - 1), t.va);
        if linux && !exp.table_entries.contains_key(&key) && !in_bug(t.va, cfg.entry_span(key.0)) {
            c.fail(format!(
                "L{} VA {:#x}: table descriptor {:#x} that no operation needed",
                key.0 .0, t.va, t.parent_desc.0
            ));
        }
    }
    let allocated: HashSet<u64> = r.tables().iter().map(|a| a.pa).collect();
    let page = cfg.page_size();
    let mut words = vec![0u64; (page / 8) as usize];
    for range in plan.pool() {
        let mut pa = range.base.next_multiple_of(page);
        while pa + page <= range.base + range.size {
            if !allocated.contains(&pa) {
                let first_bad =
                    if ram.read_words(pa, &mut words) { words.iter().position(|&w| w != POOL_POISON) } else { Some(0) };
                if let Some(i) = first_bad {
                    c.fail(format!("pool page {pa:#x} was never allocated but was written (offset {:#x})", i * 8));
                }
            }
            pa += page;
        }
    }
}

/// The first walked leaf that no expected run of its level covers: (va, level, desc).
fn first_unasked(cfg: &TranslationConfig, walked: &[LeafRun], want: &[LeafRun]) -> Option<(u64, Level, Descriptor)> {
    for r in walked {
        let span = u128::from(r.span(cfg));
        let mut covered = u128::from(r.va);
        let end = r.end(cfg);
        let mut i = want.partition_point(|w| w.end(cfg) <= covered);
        while covered < end {
            match want.get(i) {
                Some(w) if u128::from(w.va) <= covered && w.level == r.level => {
                    covered = w.end(cfg).min(end);
                    i += 1;
                }
                Some(w) if u128::from(w.va) <= covered => {
                    i += 1;
                    if w.end(cfg) > covered {
                        break; // another level maps this VA: not what was asked
                    }
                }
                _ => break,
            }
        }
        if covered < end {
            let k = ((covered - u128::from(r.va)) / span) as u64;
            return Some((covered as u64, r.level, r.desc_at(cfg, k)));
        }
    }
    None
}
