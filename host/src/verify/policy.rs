//! `policy`: block / contiguous / page choice and table count exactly as Linux would
//! make them.

use ptcheck_shared::abi::Status;
use ptcheck_shared::{Descriptor, Level};

use super::check::{describe_leaf, Check, Ctx};

/// The `policy` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { cfg, exp, walk: w, result: r, .. } = *cx;
    let in_bug = |va: u64, size: u64| cx.in_bug(va, size);
    let want: Vec<_> = exp.leaves().into_iter().filter(|&(va, l, _)| !in_bug(va, cfg.entry_span(l))).collect();
    let got: Vec<_> = w.leaves.iter().filter(|l| !in_bug(l.va, l.size)).map(|l| (l.va, l.level, l.desc)).collect();
    let shape =
        |v: &[(u64, Level, Descriptor)]| v.iter().map(|&(va, l, d)| (va, l, d.is_contiguous())).collect::<Vec<_>>();
    let (ws, gs) = (shape(&want), shape(&got));
    if ws != gs {
        let i = ws.iter().zip(&gs).take_while(|(a, b)| a == b).count();
        let show = |v: &[(u64, Level, Descriptor)]| {
            v.get(i).map_or("nothing".into(), |&(va, l, d)| format!("VA {va:#x}: {}", describe_leaf(l, d, cfg)))
        };
        c.fail(format!("leaf {i} differs: Linux policy makes {}, tables have {}", show(&want), show(&got)));
    }
    if r.status() == Some(Status::Done) && r.n_allocs as usize != exp.tables {
        c.fail(format!("{} tables allocated; the policy needs {}", r.n_allocs, exp.tables));
    }
}
