//! MMU probes: which VAs the guest translates with `AT` (and loads through), which
//! RAM pages get a tag, and the `hw_probe` check that compares three views of every
//! probed page: the plan's expectation, the host walker's answer, and the MMU's.

use ptcheck_shared::abi::layout::{in_tag_region, tag, MAIR_EL1};
use ptcheck_shared::abi::{Plan, ProbeRecord, RunResult};
use ptcheck_shared::{Level, Prot, TranslationConfig};

use crate::expect::{Expected, ModelEntry};
use crate::verify::Check;
use crate::walker::Walk;

/// What a VA translates to, in one view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte at the VA.
    pub pa: u64,
    /// Attribute bits of the leaf.
    pub prot: Prot,
}

/// The plan's expectation for `va`.
pub fn expected_at(cfg: &TranslationConfig, exp: &Expected, va: u64) -> Option<Translation> {
    (cfg.root_level().0..=3).find_map(|l| {
        let level = Level(l);
        let span = cfg.entry_span(level);
        match exp.entries.get(&(level, va & !(span - 1)))? {
            ModelEntry::Leaf(d) => {
                Some(Translation { pa: (d.address(cfg) & !(span - 1)) + (va & (span - 1)), prot: d.prot(cfg) })
            }
            ModelEntry::Table { .. } => None,
        }
    })
}

/// The host walker's answer for `va`.
pub fn walked_at(cfg: &TranslationConfig, w: &Walk, va: u64) -> Option<Translation> {
    let i = w.leaves.partition_point(|l| l.va <= va).checked_sub(1)?;
    let l = &w.leaves[i];
    (va - l.va < l.size).then(|| Translation { pa: l.pa + (va - l.va), prot: l.desc.prot(cfg) })
}

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
        if va >= cfg.va_start() && in_bug(va) && expected_at(&cfg, exp, va).is_some() {
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
        .filter_map(|&va| expected_at(&cfg, exp, va))
        .map(|t| t.pa & !(page - 1))
        .filter(|&pa| in_tag_region(pa))
        .collect();
    pages.sort_unstable();
    pages.dedup();
    pages
}

/// FSC of a translation fault at any level (0x2b is level -1, with LPA2).
fn is_translation_fault(fsc: u64) -> bool {
    (0x04..=0x07).contains(&fsc) || fsc == 0x2b
}

fn mair_attr(prot: Prot) -> u64 {
    (MAIR_EL1 >> (8 * prot.attr_index())) & 0xff
}

/// PAR_EL1 in words.
fn show_par(par: u64) -> String {
    if par & 1 == 0 {
        format!("PA {:#x} attr {:#04x}", par & 0x000f_ffff_ffff_f000, par >> 56)
    } else {
        format!("fault ({})", crate::esr::fault_status((par >> 1) & 0x3f))
    }
}

fn show(t: Option<Translation>) -> String {
    t.map_or("unmapped".into(), |t| format!("PA {:#x} prot {:#x}", t.pa, t.prot.0))
}

/// The `hw_probe` check.
pub fn check(cfg: &TranslationConfig, plan: &Plan, exp: &Expected, w: &Walk, r: &RunResult) -> Check {
    let mut c = Check::new("hw_probe");
    if r.hw_flags & RunResult::HW_UNSUPPORTED != 0 {
        return c; // reported as hw_unsupported, never as probed
    }
    if r.hw_flags & RunResult::HW_PROBED == 0 {
        c.fail(format!("{} probes requested, but the guest did not run them", plan.n_probes));
        return c;
    }
    if r.probes().len() != plan.probes().len() {
        c.fail(format!("{} probes requested, {} recorded", plan.probes().len(), r.probes().len()));
    }
    let page = cfg.page_size();
    for (rec, &va) in r.probes().iter().zip(plan.probes()) {
        let ProbeRecord { par, par_w, loaded, flags, .. } = *rec;
        let (want, walked) = (expected_at(cfg, exp, va), walked_at(cfg, w, va));
        let mmu = (par & 1 == 0).then_some(par & 0x000f_ffff_ffff_f000 | (va & 0xfff));
        let mut problems = Vec::new();
        if rec.va != va {
            problems.push(format!("record is for VA {:#x}", rec.va));
        }
        if want != walked {
            problems.push("the host walker disagrees with the plan".to_string());
        }
        match want {
            None => {
                if par & 1 == 0 || !is_translation_fault((par >> 1) & 0x3f) {
                    problems.push("the MMU does not give a translation fault".into());
                }
            }
            Some(t) => {
                if mmu != Some(t.pa) {
                    problems.push("the MMU translates elsewhere".into());
                } else if par >> 56 != mair_attr(t.prot) {
                    problems.push(format!("memory attributes {:#04x}, expected {:#04x}", par >> 56, mair_attr(t.prot)));
                }
                let writable = t.prot.0 & Prot::RDONLY == 0;
                if writable != (par_w & 1 == 0) {
                    problems.push(format!(
                        "AT S1E1W says {}, expected {}",
                        show_par(par_w),
                        if writable { "writable" } else { "read-only" }
                    ));
                }
                let page_pa = t.pa & !(page - 1);
                if in_tag_region(page_pa) && mmu == Some(t.pa) {
                    if flags & ProbeRecord::LOADED == 0 {
                        problems.push("the tag was not loaded".into());
                    } else if loaded != tag(page_pa) {
                        problems.push(format!("loaded {loaded:#x} through the mapping, tag is {:#x}", tag(page_pa)));
                    }
                }
            }
        }
        if !problems.is_empty() {
            c.fail(format!(
                "VA {va:#x}: {} — plan: {}; walker: {}; MMU: {}",
                problems.join(", "),
                show(want),
                show(walked),
                show_par(par)
            ));
        }
    }
    c
}
