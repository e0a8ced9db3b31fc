//! MMU probes: which VAs the guest translates with `AT` (and loads through), and which
//! RAM pages get a tag. The `hw_probe` check that judges them is in
//! `verify/hw_probe.rs`.

use ptcheck_shared::abi::layout::in_tag_region;
use ptcheck_shared::abi::Plan;

use crate::expect::Expected;
use crate::runs::LeafRun;

/// Deterministic xorshift for sampling (no dependency needed for a sampler this small).
struct Sampler(u64);
impl Sampler {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Leaves per operation whose first and last pages are probed.
const LEAF_SAMPLES: usize = 24;
/// Random pages probed per operation.
const RANDOM_SAMPLES: u64 = 4;

/// Fill `plan.probes`: per operation its first and last page, the first and last page
/// of (a spread of) its leaves — every block and contiguous-run boundary — and a seeded
/// random sample; then a few addresses that must not be mapped.
pub fn choose(plan: &mut Plan, exp: &Expected, seed: u64) {
    let Some(cfg) = plan.config() else { return };
    let page = cfg.page_size();
    let mut rng = Sampler(seed | 1);
    let mut vas: Vec<u64> = Vec::new();
    let in_bug = |va: u64| exp.bug_range.is_some_and(|(s, e)| va >= s && (e == 0 || va < e));
    let ops_run = exp.bug.map_or(plan.n_ops as usize, |b| (b.op as usize).min(plan.n_ops as usize));
    for op in plan.ops()[..ops_run].iter().filter(|op| op.size >= page) {
        let last = op.va.wrapping_add(op.size - page);
        vas.extend([op.va, last]);
        // The leaves the operation touches, as (run, first entry, past the last entry).
        let (lo, hi) = (u128::from(op.va), u128::from(last) + u128::from(page));
        let first_run = exp.runs.partition_point(|r| r.end(&cfg) <= lo);
        let inside: Vec<(&LeafRun, u64, u64)> = exp.runs[first_run..]
            .iter()
            .take_while(|r| u128::from(r.va) < hi)
            .map(|r| {
                let span = u128::from(r.span(&cfg));
                let i0 = (lo.saturating_sub(u128::from(r.va)) / span) as u64;
                let i1 = ((hi - u128::from(r.va)).div_ceil(span) as u64).min(r.count);
                (r, i0, i1)
            })
            .collect();
        let total: u64 = inside.iter().map(|(_, i0, i1)| i1 - i0).sum();
        let step = total.div_ceil(LEAF_SAMPLES as u64).max(1);
        let mut k = 0u64; // index among the operation's leaves
        for (r, i0, i1) in inside {
            let span = r.span(&cfg);
            let mut i = i0 + (k.next_multiple_of(step) - k);
            while i < i1 {
                let va = r.va + i * span;
                vas.extend([va, va.wrapping_add(span - page)]);
                i += step;
            }
            k += i1 - i0;
        }
        for _ in 0..RANDOM_SAMPLES {
            vas.push(op.va.wrapping_add((rng.next() % (op.size / page)) * page));
        }
        vas.push(op.va.wrapping_add(op.size)); // just past the end: often unmapped
    }
    // Never-mapped addresses: below the kernel half, and a spread of the top region.
    vas.push(cfg.va_start() - page);
    let top = cfg.va_start() + 15 * ((1u64 << cfg.va_bits) / 16);
    vas.extend((0..4).map(|k| top + k * 7 * page));
    let mut seen = std::collections::HashSet::new();
    plan.n_probes = 0;
    for va in vas {
        if va >= cfg.va_start() && in_bug(va) && exp.at(&cfg, va).is_some() {
            continue; // the refused operation may have left these half-written
        }
        if va % page == 0 && seen.insert(va) && !plan.push_probe(va) {
            break;
        }
    }
}

/// Page-aligned PAs of probed pages in the tag region: the host writes their tags.
pub fn tag_pages(plan: &Plan, exp: &Expected) -> Vec<u64> {
    let Some(cfg) = plan.config() else { return vec![] };
    let page = cfg.page_size();
    let mut pages: Vec<u64> = plan
        .probes()
        .iter()
        .filter_map(|&va| exp.at(&cfg, va))
        .map(|t| t.pa & !(page - 1))
        .filter(|&pa| in_tag_region(pa))
        .collect();
    pages.sort_unstable();
    pages.dedup();
    pages
}
