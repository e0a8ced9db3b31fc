//! MMU probes: which VAs the guest translates with `AT` (and loads through), and which
//! RAM pages get a tag. The `hw_probe` check that judges them is in
//! `verify/hw_probe.rs`.

use ptcheck_shared::abi::layout::in_tag_region;
use ptcheck_shared::abi::Plan;

use crate::expect::Expected;

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
    let leaves = exp.leaves();
    let in_bug = |va: u64| exp.bug_range.is_some_and(|(s, e)| va >= s && (e == 0 || va < e));
    let ops_run = exp.bug.map_or(plan.n_ops as usize, |b| (b.op as usize).min(plan.n_ops as usize));
    for op in plan.ops()[..ops_run].iter().filter(|op| op.size >= page) {
        let last = op.va.wrapping_add(op.size - page);
        vas.extend([op.va, last]);
        let inside: Vec<_> = leaves
            .iter()
            .filter(|(va, l, _)| *va <= last && va.wrapping_add(cfg.entry_span(*l) - 1) >= op.va)
            .collect();
        let step = inside.len().div_ceil(LEAF_SAMPLES).max(1);
        for (va, l, _) in inside.iter().step_by(step) {
            vas.extend([*va, va.wrapping_add(cfg.entry_span(*l) - page)]);
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
