//! Runs of like leaves: how the walker and the model hold mappings, so that a
//! 256 GiB page-granular map is a handful of runs per table, not 64 M records.
//!
//! A [`LeafRun`] is `count` consecutive entries of one level whose descriptors are all
//! the first one's with the output address advanced by the entry span: same
//! attributes, same contiguous bit, physically contiguous.

use ptcheck_shared::{Descriptor, Level, Prot, TranslationConfig};

/// The descriptor bits that hold the output address in `cfg`'s format.
pub fn oa_mask(cfg: &TranslationConfig) -> u64 {
    ptcheck_shared::descriptor::encode_address(cfg, (1 << 52) - 1)
}

/// `count` like leaves at `level` from `va`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRun {
    /// First VA.
    pub va: u64,
    /// Entries in the run (at least 1).
    pub count: u64,
    /// Level of the entries.
    pub level: Level,
    /// The first entry's descriptor.
    pub desc: Descriptor,
}

impl LeafRun {
    /// Bytes one entry maps.
    pub fn span(&self, cfg: &TranslationConfig) -> u64 {
        cfg.entry_span(self.level)
    }

    /// One past the last VA (u128: a run may end at the top of the address space).
    pub fn end(&self, cfg: &TranslationConfig) -> u128 {
        u128::from(self.va) + u128::from(self.count) * u128::from(self.span(cfg))
    }

    /// Bytes mapped.
    pub fn bytes(&self, cfg: &TranslationConfig) -> u128 {
        u128::from(self.count) * u128::from(self.span(cfg))
    }

    /// Output address of the first entry (block-aligned).
    pub fn pa(&self, cfg: &TranslationConfig) -> u64 {
        self.desc.address(cfg) & !(self.span(cfg) - 1)
    }

    /// Attributes.
    pub fn prot(&self, cfg: &TranslationConfig) -> Prot {
        self.desc.prot(cfg)
    }

    /// The descriptor of entry `i` of the run.
    pub fn desc_at(&self, cfg: &TranslationConfig, i: u64) -> Descriptor {
        if i == 0 {
            return self.desc;
        }
        let pa = self.pa(cfg) + i * self.span(cfg);
        Descriptor::leaf(cfg, self.level, pa, self.prot(cfg), self.desc.is_contiguous())
    }

    /// The run's entries from entry `i` on.
    pub fn from(&self, cfg: &TranslationConfig, i: u64) -> LeafRun {
        LeafRun {
            va: self.va + i * self.span(cfg),
            count: self.count - i,
            level: self.level,
            desc: self.desc_at(cfg, i),
        }
    }

    /// The run's first `n` entries.
    pub fn first(&self, n: u64) -> LeafRun {
        LeafRun { count: n, ..*self }
    }

    /// Whether entry (`va`, `level`, `desc`) continues this run.
    pub fn continued_by(&self, cfg: &TranslationConfig, va: u64, level: Level, desc: Descriptor) -> bool {
        level == self.level
            && u128::from(va) == self.end(cfg)
            && desc.0 & !oa_mask(cfg) == self.desc.0 & !oa_mask(cfg)
            && desc.address(cfg) & !(self.span(cfg) - 1) == self.pa(cfg).wrapping_add(self.count * self.span(cfg))
    }

    /// Every entry as (va, level, descriptor): for small plans and tests only.
    pub fn leaves<'a>(&'a self, cfg: &'a TranslationConfig) -> impl Iterator<Item = (u64, Level, Descriptor)> + 'a {
        (0..self.count).map(move |i| (self.va + i * self.span(cfg), self.level, self.desc_at(cfg, i)))
    }
}

/// Append the entry (`va`, `level`, `desc`) to `runs`, extending the last run when it
/// continues it.
pub fn push_leaf(cfg: &TranslationConfig, runs: &mut Vec<LeafRun>, va: u64, level: Level, desc: Descriptor) {
    if let Some(last) = runs.last_mut() {
        if last.continued_by(cfg, va, level, desc) {
            last.count += 1;
            return;
        }
    }
    runs.push(LeafRun { va, count: 1, level, desc });
}

/// Append `run` to `runs`, merging it into the last run when it continues it.
pub fn push_run(cfg: &TranslationConfig, runs: &mut Vec<LeafRun>, run: LeafRun) {
    if let Some(last) = runs.last_mut() {
        if last.continued_by(cfg, run.va, run.level, run.desc) {
            last.count += run.count;
            return;
        }
    }
    runs.push(run);
}

/// The parts of `runs` outside `[start, end)` (`end == 0`: the top of the address
/// space), cut at entry boundaries.
pub fn without(cfg: &TranslationConfig, runs: &[LeafRun], range: Option<(u64, u64)>) -> Vec<LeafRun> {
    let Some((s, e)) = range else { return runs.to_vec() };
    let (s, e) = (u128::from(s), if e == 0 { 1u128 << 64 } else { u128::from(e) });
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let (a, b, span) = (u128::from(r.va), r.end(cfg), u128::from(r.span(cfg)));
        if b <= s || a >= e {
            out.push(*r);
            continue;
        }
        // Entries wholly before the range, and wholly after it.
        let before = if s > a { ((s - a) / span) as u64 } else { 0 };
        if before > 0 {
            out.push(r.first(before));
        }
        let after_first = if e < b { (e - a).div_ceil(span) as u64 } else { r.count };
        if after_first < r.count {
            out.push(r.from(cfg, after_first));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_and_cut() {
        let cfg = TranslationConfig::parse("4k-48").unwrap();
        let page = |va: u64, pa: u64| (va, Level(3), Descriptor::leaf(&cfg, Level(3), pa, Prot::KERNEL, false));
        let mut runs = Vec::new();
        for i in 0..10 {
            let (va, l, d) = page(0xffff_0000_0000_0000 + i * 4096, 0x8000_0000 + i * 4096);
            push_leaf(&cfg, &mut runs, va, l, d);
        }
        let (va, l, d) = page(0xffff_0000_0000_a000, 0x9000_0000); // PA jumps: a new run
        push_leaf(&cfg, &mut runs, va, l, d);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].count, 10);
        assert_eq!(runs[0].desc_at(&cfg, 3), page(0, 0x8000_3000).2);
        let cut = without(&cfg, &runs, Some((0xffff_0000_0000_2000, 0xffff_0000_0000_4000)));
        let shape: Vec<_> = cut.iter().map(|r| (r.va, r.count)).collect();
        assert_eq!(shape, vec![(0xffff_0000_0000_0000, 2), (0xffff_0000_0000_4000, 6), (0xffff_0000_0000_a000, 1)]);
        assert_eq!(cut[1].pa(&cfg), 0x8000_4000);
    }
}
