//! `translation`: every mapped VA gives the expected PA and attributes, and nothing
//! else is mapped.

use ptcheck_shared::Prot;

use super::check::{Check, Ctx};

/// Maximal runs (va, end, pa, prot) of a leaf list, merged where VA and PA continue.
fn runs(items: impl Iterator<Item = (u64, u64, u64, Prot)>) -> Vec<(u128, u128, u128, Prot)> {
    let mut out: Vec<(u128, u128, u128, Prot)> = Vec::new();
    for (va, size, pa, prot) in items {
        let (va, pa) = (u128::from(va), u128::from(pa));
        if let Some(last) = out.last_mut() {
            if last.1 == va && last.2 + (last.1 - last.0) == pa && last.3 == prot {
                last.1 += u128::from(size);
                continue;
            }
        }
        out.push((va, va + u128::from(size), pa, prot));
    }
    out
}

/// The `translation` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { cfg, exp, walk: w, .. } = *cx;
    let in_bug = |va: u64, size: u64| cx.in_bug(va, size);
    let want = runs(exp.leaves().into_iter().filter_map(|(va, level, d)| {
        let size = cfg.entry_span(level);
        (!in_bug(va, size)).then(|| (va, size, d.address(cfg), d.prot(cfg)))
    }));
    let got = runs(w.leaves.iter().filter(|l| !in_bug(l.va, l.size)).map(|l| (l.va, l.size, l.pa, l.desc.prot(cfg))));
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
