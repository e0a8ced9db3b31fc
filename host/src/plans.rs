//! The built-in, hand-written plans: for every regime, blocks at every level that
//! allows them, contiguous runs, ranges straddling table boundaries, a range needing
//! every level, the mapping flags, safe permission changes, each forbidden remap, pool
//! exhaustion, and re-entering existing tables through folded levels.

use ptcheck_shared::abi::{MapFlags, MapOp, Plan};
use ptcheck_shared::{Level, Prot, TranslationConfig};

use ptcheck_shared::abi::layout::{POOL_START as POOL_BASE, RAM_BASE};
/// Pages in the default pool.
pub const POOL_PAGES: u64 = 48;

/// A plan with the name reports use for it.
pub struct NamedPlan {
    /// Short, stable name ("pmd-blocks").
    pub name: String,
    /// The plan.
    pub plan: Box<Plan>,
}

struct Set {
    cfg: TranslationConfig,
    out: Vec<NamedPlan>,
}

impl Set {
    /// A new plan with the default pool: two ranges, so allocation crosses a range end.
    fn plan(&mut self, name: &str) -> &mut Plan {
        let page = self.cfg.page_size();
        let mut plan: Box<Plan> = bytemuck::zeroed_box();
        *plan = Plan::new(self.cfg);
        plan.plan_id = self.out.len() as u64 + 1;
        plan.push_pool(POOL_BASE, 8 * page);
        plan.push_pool(POOL_BASE + 0x0100_0000, (POOL_PAGES - 8) * page);
        self.out.push(NamedPlan { name: name.into(), plan });
        &mut self.out.last_mut().expect("just pushed").plan
    }
}

fn map(p: &mut Plan, va: u64, pa: u64, size: u64, prot: Prot, flags: u64) {
    assert!(p.push_op(MapOp { va, pa, size, prot: prot.0, flags }), "built-in plan exceeds MAX_OPS");
}

/// Every built-in plan for `cfg`.
pub fn builtin(cfg: TranslationConfig) -> Vec<NamedPlan> {
    let mut s = Set { cfg, out: Vec::new() };
    let page = cfg.page_size();
    let pmd = cfg.entry_span(Level(2));
    let cont_pte = cfg.cont_span(Level(3)).expect("every granule has CONT_PTE");
    let cont_pmd = cfg.cont_span(Level(2)).expect("every granule has CONT_PMD");
    // Sixteen regions of the kernel half; region 8 starts exactly between two root
    // entries and is kept for the straddling plan.
    let region = |k: u64| cfg.va_start() + k * ((1u64 << cfg.va_bits) / 16);
    let (k, ro, rox, dev) = (Prot::KERNEL, Prot::KERNEL_RO, Prot::KERNEL_ROX, Prot::DEVICE);
    let no_block_cont = MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS;

    map(s.plan("pmd-blocks"), region(1), 0x8000_0000, 3 * pmd, k, 0);
    if let Some(pud) = cfg.kernel_block_size(Level(1)) {
        map(s.plan("pud-block"), region(2), 0x4000_0000, pud + pmd + page, k, 0);
    }
    map(s.plan("cont-pte"), region(3), 0x9000_0000, 2 * cont_pte + 3 * page, k, 0);
    map(s.plan("cont-pmd"), region(4), 0x4_0000_0000, cont_pmd + pmd, k, 0);
    {
        let p = s.plan("straddle");
        map(p, region(8) - 3 * page, 0x7000_0000 - 3 * page, 6 * page, k, 0);
        map(p, region(5) + pmd - 2 * page, 0x9100_0000 + page, pmd + 4 * page, k, 0);
    }
    {
        let p = s.plan("all-levels");
        map(p, u64::MAX - page + 1, 0x4100_0000, page, k, 0);
        map(p, cfg.va_start(), 0x4110_0000, page, rox, 0);
    }
    map(
        s.plan("no-block-cont-exec"),
        region(6),
        0x8000_0000,
        pmd + cont_pte,
        k,
        MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS | MapFlags::NO_EXEC_MAPPINGS,
    );
    {
        // The kernel image: text, rodata, data at page granularity, a linear map of
        // one RAM bank, then rodata made read-only (mark_rodata_ro).
        let p = s.plan("kernel-image");
        let (text, rodata, data) = (cont_pte + 2 * page, 5 * page, 3 * page);
        let img = region(7);
        let img_pa = RAM_BASE + 0x20_0000.max(page);
        map(p, img, img_pa, text, rox, no_block_cont);
        map(p, img + text, img_pa + text, rodata, k, no_block_cont);
        map(p, img + text + rodata, img_pa + text + rodata, data, k, no_block_cont);
        map(p, region(9), RAM_BASE, 2 * pmd + cont_pte, k, MapFlags::NO_EXEC_MAPPINGS);
        map(p, img + text, img_pa + text, rodata, ro, no_block_cont);
    }
    {
        let p = s.plan("safe-changes");
        map(p, region(10), 0x8000_0000, pmd, k, 0);
        map(p, region(10), 0x8000_0000, pmd, ro, 0);
        map(p, region(10) + pmd, 0x9000_0000, 2 * page, k, MapFlags::NO_CONT_MAPPINGS);
        map(p, region(10) + pmd, 0x9000_0000, 2 * page, Prot::KERNEL_TAGGED, 0);
        map(p, region(10) + pmd, 0x9000_0000, page, Prot(Prot::KERNEL_TAGGED.0 | Prot::NG), 0);
    }
    {
        // Re-enter existing tables (the kernel's "else" path) through every folded level.
        let p = s.plan("reenter-existing");
        let r = region(11);
        map(p, r, 0xa000_0000, page, k, 0);
        map(p, r + 5 * page, 0xa000_0000 + 5 * page, page, k, 0);
        map(p, r + pmd + page, 0xa000_0000 + pmd + page, page, k, 0);
        map(p, r + page, 0xa000_0000 + page, 4 * page, k, 0);
        map(p, r + 6 * page, 0xa000_0000 + 6 * page, pmd, k, 0);
    }
    if cfg.has_level(Level(1)) {
        // One whole level-1 span, aligned: a PUD block with 4K, level-2 blocks (and
        // contiguous runs) otherwise; never a level-1 block on 16K/64K.
        let l1 = cfg.entry_span(Level(1));
        map(s.plan("l1-span"), region(0) + l1, l1, l1, k, 0);
    }
    if cfg.pa_bits() == 52 {
        let p = s.plan("high-pa");
        map(p, region(12), 0x000f_0000_0000_0000, pmd, k, 0);
        map(p, region(12) + pmd, 0x000c_0000_0000_0000 + page, page, k, 0);
    }

    // Forbidden remaps: each must end in the exact BUG.
    let r = region(13);
    {
        let p = s.plan("bug-oa-change");
        map(p, r, 0x8000_0000, page, k, 0);
        map(p, r, 0x8000_0000 + page, page, k, 0);
    }
    {
        let p = s.plan("bug-cont-touched");
        map(p, r, 0x9000_0000, cont_pte, k, 0);
        map(p, r + page, 0x9000_0000 + page, page, ro, 0);
    }
    {
        let p = s.plan("bug-ng-to-global");
        map(p, r, 0x8000_0000, page, Prot(k.0 | Prot::NG), 0);
        map(p, r, 0x8000_0000, page, k, 0);
    }
    {
        let p = s.plan("bug-type-change");
        map(p, r, 0x8000_0000, page, k, 0);
        map(p, r, 0x8000_0000, page, dev, 0);
    }
    {
        let p = s.plan("bug-block-over-table");
        map(p, r, 0x8000_0000, page, k, 0);
        map(p, r, 0x8000_0000, pmd, k, 0);
    }
    {
        let p = s.plan("bug-split-block");
        map(p, r, 0x8000_0000, pmd, k, 0);
        map(p, r + 2 * page, 0x8000_0000 + 2 * page, page, ro, 0);
    }
    {
        // Two pages in different root entries need two full chains of tables.
        let p = s.plan("bug-pool-exhausted");
        p.n_pool = 0;
        p.push_pool(POOL_BASE, cfg.levels() as u64 * page);
        map(p, region(1), 0x8000_0000, page, k, 0);
        map(p, region(14), 0x8000_0000, page, k, 0);
    }
    s.out
}
