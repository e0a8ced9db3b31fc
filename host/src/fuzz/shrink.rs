//! Shrinking a failing plan to a small one that still fails the same check: drop
//! operations, shrink sizes, merge adjacent banks and pool ranges, each step re-run on
//! the same backend.

use ptcheck_shared::abi::{MapOp, Plan};

fn with_ops(plan: &Plan, ops: &[MapOp]) -> Box<Plan> {
    let mut p = Box::new(*plan);
    p.n_ops = 0;
    for op in ops {
        p.push_op(*op);
    }
    p
}

/// The smallest plan found that `fails`, trying at most `budget` candidates.
pub fn shrink(plan: &Plan, mut fails: impl FnMut(&Plan) -> bool, budget: usize) -> Box<Plan> {
    let page = plan.config().map_or(4096, |c| c.page_size());
    let mut best = Box::new(*plan);
    let tries = std::cell::Cell::new(0usize);
    let mut attempt = |candidate: Box<Plan>, best: &mut Box<Plan>| -> bool {
        tries.set(tries.get() + 1);
        if tries.get() > budget {
            return false;
        }
        if fails(&candidate) {
            *best = candidate;
            return true;
        }
        false
    };
    loop {
        let mut progress = false;
        // Drop operations, latest first (later ones usually depend on earlier ones).
        let mut i = best.n_ops as usize;
        while i > 0 {
            i -= 1;
            if best.n_ops <= 1 {
                break;
            }
            let mut ops = best.ops().to_vec();
            ops.remove(i);
            progress |= attempt(with_ops(&best, &ops), &mut best);
        }
        // Shrink sizes: one page, then halves.
        for i in 0..best.n_ops as usize {
            let size = best.ops[i].size;
            for new in [page, (size / 2) / page * page] {
                if new >= page && new < size {
                    let mut ops = best.ops().to_vec();
                    ops[i].size = new;
                    if attempt(with_ops(&best, &ops), &mut best) {
                        progress = true;
                        break;
                    }
                }
            }
        }
        // Merge banks: two operations that continue each other (VA and PA) with the
        // same attributes and flags become one.
        let mut i = 0;
        while i + 1 < best.n_ops as usize {
            let (a, b) = (best.ops[i], best.ops[i + 1]);
            let continues = a.va.wrapping_add(a.size) == b.va && a.pa.wrapping_add(a.size) == b.pa;
            if continues && a.prot == b.prot && a.flags == b.flags {
                let mut ops = best.ops().to_vec();
                ops[i].size += b.size;
                ops.remove(i + 1);
                if attempt(with_ops(&best, &ops), &mut best) {
                    progress = true;
                    continue;
                }
            }
            i += 1;
        }
        // Merge the pool into one range of the same size.
        if best.n_pool > 1 {
            let mut p = Box::new(*best);
            let total: u64 = best.pool().iter().map(|r| r.size).sum();
            p.n_pool = 0;
            p.push_pool(best.pool[0].base, total);
            progress |= attempt(p, &mut best);
        }
        if !progress || tries.get() > budget {
            return best;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptcheck_shared::{Prot, TranslationConfig};

    /// A predicate that fails while the plan still maps 4 pages starting at `va` in one
    /// operation: only merging the two adjacent banks can reach a single-op plan.
    #[test]
    fn adjacent_banks_merge() {
        let cfg = TranslationConfig::parse("4k-48").unwrap();
        let (va, page) = (cfg.va_start(), cfg.page_size());
        let mut plan = Box::new(Plan::new(cfg));
        plan.push_pool(0x4400_0000, 16 * page);
        for k in 0..2 {
            plan.push_op(MapOp {
                va: va + k * 2 * page,
                pa: 0x8000_0000 + k * 2 * page,
                size: 2 * page,
                prot: Prot::KERNEL.0,
                flags: 0,
            });
        }
        let covers = |p: &Plan| p.ops().iter().map(|o| o.size).sum::<u64>() == 4 * page && p.ops()[0].va == va;
        let small = shrink(&plan, covers, 100);
        assert_eq!(small.n_ops, 1);
        assert_eq!((small.ops[0].va, small.ops[0].size), (va, 4 * page));
    }
}
