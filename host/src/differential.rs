//! Differential checking: the same plan on two builders. `linux-6.9` and `linux` differ
//! only in how a new table gets cleared, so their tables must be bit-identical; a
//! builder with another policy must at least translate every address the same way.

use ptcheck_shared::abi::Plan;

use crate::backend::Backend;
use crate::walker::walk;

/// How alike the two builders' tables must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Likeness {
    /// The same table pages, holding the same words.
    Bits,
    /// The same translation of every VA (PA and attributes), whatever the shapes.
    Translations,
}

/// What the tables of one run were: every table page reached from the root (PA and
/// words) and the mapped ranges (va, end, pa, attributes).
struct Snapshot {
    status: u32,
    bug: (u32, u32),
    tables: Vec<(u64, Vec<u64>)>,
    ranges: Vec<(u128, u128, u128, u64)>,
}

fn snapshot(b: &mut dyn Backend, plan: &Plan) -> anyhow::Result<Snapshot> {
    let cfg = plan.config().ok_or_else(|| anyhow::anyhow!("the plan header is not valid"))?;
    let view = b.run(plan)?;
    let r = view.result;
    let w = if r.root_pa != 0 { walk(&cfg, r.root_pa, view.ram) } else { Default::default() };
    let tables = w
        .tables
        .iter()
        .map(|t| {
            let mut words = vec![0u64; cfg.entries(t.level)];
            let _ = view.ram.read_words(t.pa, &mut words);
            (t.pa, words)
        })
        .collect();
    let mut ranges: Vec<(u128, u128, u128, u64)> = Vec::new();
    for run in &w.runs {
        let (va, pa, prot) = (u128::from(run.va), u128::from(run.pa(&cfg)), run.prot(&cfg).0);
        match ranges.last_mut() {
            Some(last) if last.1 == va && last.2 + (last.1 - last.0) == pa && last.3 == prot => {
                last.1 = run.end(&cfg);
            }
            _ => ranges.push((va, run.end(&cfg), pa, prot)),
        }
    }
    Ok(Snapshot { status: r.status, bug: (r.bug.kind, r.bug.op), tables, ranges })
}

/// Run `plan` on `a` and on `b`; `Some(why)` when their tables differ as `likeness`
/// forbids (or one run ended differently).
///
/// # Errors
/// A backend failed (infrastructure).
pub fn compare(
    plan: &Plan,
    a: &mut dyn Backend,
    b: &mut dyn Backend,
    likeness: Likeness,
) -> anyhow::Result<Option<String>> {
    let (x, y) = (snapshot(a, plan)?, snapshot(b, plan)?);
    let done = ptcheck_shared::abi::Status::Done as u32;
    if likeness == Likeness::Translations && (x.status != done || y.status != done) {
        // Builders of different policies agree only on what both complete: a plan one
        // of them refuses (Linux's BUG rules) has no common answer to compare.
        return Ok(None);
    }
    if (x.status, x.bug) != (y.status, y.bug) {
        return Ok(Some(format!(
            "the runs ended differently: status {} BUG {:?} vs status {} BUG {:?}",
            x.status, x.bug, y.status, y.bug
        )));
    }
    if likeness == Likeness::Bits {
        if x.tables.len() != y.tables.len() {
            return Ok(Some(format!("{} tables vs {}", x.tables.len(), y.tables.len())));
        }
        for ((pa, words), (pb, wb)) in x.tables.iter().zip(&y.tables) {
            if pa != pb {
                return Ok(Some(format!("table {pa:#x} vs {pb:#x} in walk order")));
            }
            if let Some(i) = words.iter().zip(wb).position(|(u, v)| u != v) {
                return Ok(Some(format!("table {pa:#x} entry {i}: {:#x} vs {:#x}", words[i], wb[i])));
            }
        }
    }
    if x.ranges != y.ranges {
        let i = x.ranges.iter().zip(&y.ranges).take_while(|(u, v)| u == v).count();
        let show = |r: Option<&(u128, u128, u128, u64)>| {
            r.map_or("nothing".to_string(), |r| format!("VA {:#x}..{:#x} -> PA {:#x} prot {:#x}", r.0, r.1, r.2, r.3))
        };
        return Ok(Some(format!("translations differ: {} vs {}", show(x.ranges.get(i)), show(y.ranges.get(i)))));
    }
    Ok(None)
}
