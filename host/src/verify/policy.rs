//! `policy`: block / contiguous / page choice and table count exactly as Linux would
//! make them.

use ptcheck_shared::abi::Status;
use ptcheck_shared::{Level, TranslationConfig};

use super::check::{describe_leaf, Check, Ctx};
use crate::expect::Policy;
use crate::runs::{without, LeafRun};

/// Maximal stretches (va, end, level, contiguous) of leaves of one shape, whatever
/// they map to, with the run each starts in.
fn shapes(cfg: &TranslationConfig, runs: &[LeafRun]) -> Vec<(u128, u128, Level, bool, LeafRun)> {
    let mut out: Vec<(u128, u128, Level, bool, LeafRun)> = Vec::new();
    for r in runs {
        let (va, end, cont) = (u128::from(r.va), r.end(cfg), r.desc.is_contiguous());
        if let Some(last) = out.last_mut() {
            if last.1 == va && last.2 == r.level && last.3 == cont {
                last.1 = end;
                continue;
            }
        }
        out.push((va, end, r.level, cont, *r));
    }
    out
}

/// The `policy` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { cfg, exp, walk: w, result: r, .. } = *cx;
    if exp.policy == Policy::Own {
        return;
    }
    let want = shapes(cfg, &without(cfg, &exp.runs, exp.bug_range));
    let got = shapes(cfg, &without(cfg, &w.runs, exp.bug_range));
    let key = |s: &(u128, u128, Level, bool, LeafRun)| (s.0, s.1, s.2, s.3);
    if want.iter().map(key).ne(got.iter().map(key)) {
        let i = want.iter().zip(&got).take_while(|(a, b)| key(a) == key(b)).count();
        let show = |s: Option<&(u128, u128, Level, bool, LeafRun)>| {
            s.map_or("nothing".into(), |s| {
                format!("VA {:#x}..{:#x}: {}", s.0, s.1, describe_leaf(s.4.level, s.4.desc, cfg))
            })
        };
        c.fail(format!("shapes differ: Linux policy makes {}, tables have {}", show(want.get(i)), show(got.get(i))));
    }
    if r.status() == Some(Status::Done) && r.n_tables as usize != exp.tables {
        c.fail(format!("{} tables allocated; the policy needs {}", r.n_tables, exp.tables));
    }
}
