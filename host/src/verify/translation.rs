//! `translation`: every mapped VA gives the expected PA and attributes, and nothing
//! else is mapped.

use ptcheck_shared::{Prot, TranslationConfig};

use super::check::{Check, Ctx};
use crate::runs::{without, LeafRun};

/// Maximal ranges (va, end, pa, prot) of leaf runs, merged where VA and PA continue.
fn ranges(cfg: &TranslationConfig, runs: &[LeafRun]) -> Vec<(u128, u128, u128, Prot)> {
    let mut out: Vec<(u128, u128, u128, Prot)> = Vec::new();
    for r in runs {
        let (va, pa, prot) = (u128::from(r.va), u128::from(r.pa(cfg)), r.prot(cfg));
        if let Some(last) = out.last_mut() {
            if last.1 == va && last.2 + (last.1 - last.0) == pa && last.3 == prot {
                last.1 += r.bytes(cfg);
                continue;
            }
        }
        out.push((va, va + r.bytes(cfg), pa, prot));
    }
    out
}

/// The `translation` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { cfg, exp, walk: w, .. } = *cx;
    let want = ranges(cfg, &without(cfg, &exp.runs, exp.bug_range));
    let got = ranges(cfg, &without(cfg, &w.runs, exp.bug_range));
    if want != got {
        let i = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
        let show = |r: Option<&(u128, u128, u128, Prot)>| {
            r.map_or("nothing".to_string(), |r| {
                format!("VA {:#x}..{:#x} -> PA {:#x} prot {:#x}", r.0, r.1, r.2, r.3 .0)
            })
        };
        c.fail(format!("first difference: expected {}, tables map {}", show(want.get(i)), show(got.get(i))));
    }
    for a in &w.anomalies {
        c.fail(format!("{} at L{} VA {:#x} (entry {:#x} = {:#x})", a.what(), a.level.0, a.va, a.entry_pa, a.value));
    }
}
