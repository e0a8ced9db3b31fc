//! The plan generator: every plan is a pure function of (seed, index, regime) and of
//! [`FORMAT`]. Change what it generates and you must bump `FORMAT`; the golden test
//! in `host/tests/fuzz.rs` says so when you forget.
//!
//! Layouts look like what the kernel maps at boot, then worse: RAM banks with holes
//! and odd alignments and their linear map, a kernel image split into text / rodata /
//! data at page granularity, device windows, ranges straddling table boundaries, the
//! later rodata read-only change, sometimes a forbidden remap or a pool that runs out.
//! Sizes and alignments are weighted toward block boundaries (block - page, block,
//! block + page).

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use ptcheck_shared::abi::layout::{POOL_END, POOL_START, RAM_BASE, TAG_START};

/// RAM banks of generated plans start below this PA (inside the tag region, so their
/// probed pages carry tags); fixed, whatever the guest RAM size, for every format.
const BANKS_END: u64 = 0x8000_0000;
use ptcheck_shared::abi::{MapFlags, MapOp, Plan};
use ptcheck_shared::{Level, Prot, TranslationConfig};

use crate::expect::expected;

/// Generator format: part of every plan's identity.
///
/// * 1: the first.
/// * 2: high physical addresses on 52-bit regimes set output-address bits 50 and 51
///   too, not only bit 48 (format 1 never reached the bits LPA2 keeps apart).
pub const FORMAT: u32 = 2;

/// Every format this generator can still produce, oldest first.
pub const FORMATS: [u32; 2] = [1, 2];

/// Deterministic randomness for one plan, from a seed built byte by byte (not through
/// any library's seed expansion, which may change between versions).
pub struct Rng(ChaCha8Rng);

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream for plan `index` of `seed` on `cfg`, in generator format `format`.
    pub fn new(seed: u64, index: u64, cfg: &TranslationConfig, format: u32) -> Self {
        let words = [seed, index, ((cfg.kernel as u64) << 8) | u64::from(cfg.va_bits), u64::from(format)];
        let mut bytes = [0u8; 32];
        let mut acc = 0u64;
        for (i, w) in words.iter().enumerate() {
            acc = splitmix(acc ^ w);
            bytes[8 * i..8 * i + 8].copy_from_slice(&acc.to_le_bytes());
        }
        Rng(ChaCha8Rng::from_seed(bytes))
    }

    /// Uniform in `0..n` (n > 0); multiply-shift, so it is the same everywhere.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// True with `percent`% probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `xs`.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// The regime's interesting sizes.
struct Geometry {
    cfg: TranslationConfig,
    page: u64,
    cont_pte: u64,
    pmd: u64,
    cont_pmd: u64,
    pud: Option<u64>,
    /// A sixteenth of the kernel VA space: one slot per purpose.
    slot: u64,
    /// PAs are drawn below this (high PAs only now and then).
    pa_limit: u64,
}

impl Geometry {
    fn new(cfg: TranslationConfig) -> Self {
        Geometry {
            cfg,
            page: cfg.page_size(),
            cont_pte: cfg.cont_span(Level(3)).unwrap_or(cfg.page_size()),
            pmd: cfg.entry_span(Level(2)),
            cont_pmd: cfg.cont_span(Level(2)).unwrap_or(cfg.entry_span(Level(2))),
            pud: cfg.kernel_block_size(Level(1)),
            slot: (1u64 << cfg.va_bits) / 16,
            pa_limit: 1 << 40,
        }
    }

    fn slot_va(&self, k: u64) -> u64 {
        self.cfg.va_start() + k * self.slot
    }

    /// A size weighted toward block and contiguous-run boundaries.
    fn size(&self, r: &mut Rng) -> u64 {
        let p = self.page;
        let mut choices =
            vec![p, 2 * p, 3 * p, 7 * p, self.cont_pte - p, self.cont_pte, self.cont_pte + p, 2 * self.cont_pte];
        choices.extend([self.pmd - p, self.pmd, self.pmd + p, 2 * self.pmd, 3 * self.pmd + self.cont_pte]);
        choices.extend([self.cont_pmd, self.cont_pmd + self.pmd, self.cont_pmd - self.pmd]);
        if let Some(pud) = self.pud {
            choices.extend([pud, pud + self.pmd + p, 2 * pud]);
        }
        r.pick(&choices).clamp(p, self.slot / 2)
    }

    /// An alignment a layout might have.
    fn align(&self, r: &mut Rng) -> u64 {
        let mut choices = vec![self.page, self.cont_pte, self.pmd, self.pmd, self.cont_pmd];
        if let Some(pud) = self.pud {
            choices.push(pud);
        }
        r.pick(&choices)
    }

    /// An address in `[lo, hi)` on a random alignment, sometimes one page off it.
    fn place(&self, r: &mut Rng, lo: u64, hi: u64) -> u64 {
        // Aligned in absolute terms: the first multiple of `a` at or above `lo`.
        let mut a = self.align(r);
        while a > self.page && lo.next_multiple_of(a) + a > hi {
            a /= 2;
        }
        let first = lo.next_multiple_of(a);
        let n = ((hi - first) / a).max(1);
        let base = first + r.below(n) * a;
        match r.below(10) {
            0 | 1 if base + self.page < hi => base + self.page,
            2 if base >= lo + self.page => base - self.page,
            _ => base,
        }
    }

    /// Leaves an operation can create, roughly: bounds the cost of a plan.
    fn leaves(&self, op: &MapOp) -> u64 {
        if op.flags & MapFlags::NO_BLOCK_MAPPINGS != 0 {
            return op.size / self.page;
        }
        let blocks: Vec<u128> = self.pud.into_iter().chain([self.pmd]).map(u128::from).collect();
        // u128: a range may end at the top of the address space.
        self.estimate(&blocks, u128::from(op.va), u128::from(op.pa), u128::from(op.size)) as u64
    }

    /// Largest blocks first: the aligned middle in blocks, the edges with smaller ones.
    fn estimate(&self, blocks: &[u128], va: u128, pa: u128, size: u128) -> u128 {
        let Some((&block, smaller)) = blocks.split_first() else { return size / u128::from(self.page) };
        if size == 0 || !(va ^ pa).is_multiple_of(block) {
            return self.estimate(smaller, va, pa, size);
        }
        let head = (va.next_multiple_of(block) - va).min(size);
        let tail = if head == size { 0 } else { (va + size) % block };
        let middle = (size - head - tail) / block;
        middle + self.estimate(smaller, va, pa, head) + self.estimate(smaller, va + size - tail, pa + size - tail, tail)
    }
}

struct Builder<'g> {
    g: &'g Geometry,
    ops: Vec<MapOp>,
    budget: u64,
    used: u64,
}

impl Builder<'_> {
    /// Add `op` if it fits the plan's leaf budget.
    fn push(&mut self, op: MapOp) -> bool {
        let cost = self.g.leaves(&op);
        if op.size == 0 || self.used + cost > self.budget || self.ops.len() >= 48 {
            return false;
        }
        self.used += cost;
        self.ops.push(op);
        true
    }
}

fn flags(r: &mut Rng) -> u64 {
    r.pick(&[
        0,
        0,
        MapFlags::NO_EXEC_MAPPINGS,
        MapFlags::NO_CONT_MAPPINGS,
        MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS,
        MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS | MapFlags::NO_EXEC_MAPPINGS,
    ])
}

/// Plan `index` of `seed` for `cfg`, in the current [`FORMAT`].
pub fn generate(seed: u64, index: u64, cfg: TranslationConfig) -> Box<Plan> {
    generate_format(FORMAT, seed, index, cfg)
}

/// Plan `index` of `seed` for `cfg` as generator format `format` made it (one of
/// [`FORMATS`]; an unknown format is treated as the current one).
pub fn generate_format(format: u32, seed: u64, index: u64, cfg: TranslationConfig) -> Box<Plan> {
    let g = Geometry::new(cfg);
    let r = &mut Rng::new(seed, index, &cfg, format);
    let mut b = Builder { g: &g, ops: Vec::new(), budget: if r.chance(20) { 2048 } else { 192 }, used: 0 };
    let (page, pmd) = (g.page, g.pmd);
    let high_pa = cfg.pa_bits() == 52 && r.chance(15);

    // RAM banks with holes, and their linear map (slots 1..=4).
    let banks = 1 + r.below(3);
    let mut pa = if r.chance(50) { g.place(r, TAG_START, BANKS_END) } else { g.place(r, RAM_BASE, g.pa_limit / 2) };
    if high_pa {
        pa |= if format == 1 { 1 << 48 } else { r.pick(&[1 << 48, 1 << 50, 1 << 51, 0b11 << 50]) };
    }
    // Real RAM banks usually start on a large boundary.
    if r.chance(25) {
        pa = pa.next_multiple_of(g.pud.unwrap_or(g.cont_pmd));
    }
    let first_pa = pa;
    let linear = g.slot_va(1) + if r.chance(30) { page } else { 0 };
    for _ in 0..banks {
        let size = g.size(r);
        let va = linear + (pa - first_pa);
        if va + size > g.slot_va(5) {
            break;
        }
        b.push(MapOp { va, pa, size, prot: Prot::KERNEL.0, flags: flags(r) });
        pa += size + if r.chance(50) { g.size(r) } else { 0 };
    }

    // The kernel image (slot 8): text, rodata, data, page granular.
    let image = if r.chance(75) {
        let va = g.place(r, g.slot_va(8), g.slot_va(8) + g.slot / 2);
        let pa = first_pa + page * r.below(64);
        let fl = MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS;
        let (text, rodata, data) = (page * (1 + r.below(40)), page * (1 + r.below(12)), page * (1 + r.below(12)));
        b.push(MapOp { va, pa, size: text, prot: Prot::KERNEL_ROX.0, flags: fl });
        b.push(MapOp { va: va + text, pa: pa + text, size: rodata, prot: Prot::KERNEL.0, flags: fl });
        b.push(MapOp { va: va + text + rodata, pa: pa + text + rodata, size: data, prot: Prot::KERNEL.0, flags: fl });
        Some((va + text, pa + text, rodata))
    } else {
        None
    };

    // Device windows (slot 11).
    for _ in 0..r.below(3) {
        let va = g.place(r, g.slot_va(11), g.slot_va(12) - pmd.max(g.cont_pmd));
        let pa = g.place(r, 0x0800_0000, 0x4000_0000);
        let size = r.pick(&[page, 4 * page, g.cont_pte, pmd]);
        b.push(MapOp { va, pa, size, prot: Prot::DEVICE.0, flags: MapFlags::NO_EXEC_MAPPINGS });
    }

    // A range straddling a table boundary at some level (slot 12 or the root split).
    if r.chance(60) {
        // Slot 8 starts between two root entries; slot 12 plus a span is a boundary
        // at the level of that span.
        let step = r.pick(&[pmd, g.cont_pmd, cfg.entry_span(Level(1))]).min(g.slot / 2);
        let boundary = if r.chance(25) { g.slot_va(8) } else { g.slot_va(12) + step };
        let before = page * (1 + r.below(4));
        let size = before + page * (1 + r.below(4)) + if r.chance(20) { pmd } else { 0 };
        let pa = g.place(r, RAM_BASE, g.pa_limit / 2);
        b.push(MapOp { va: boundary - before, pa, size, prot: Prot::KERNEL.0, flags: flags(r) });
    }

    // The very top of the address space needs every level.
    if r.chance(15) {
        b.push(MapOp {
            va: u64::MAX - page + 1,
            pa: g.place(r, RAM_BASE, g.pa_limit / 2),
            size: page,
            prot: Prot::KERNEL.0,
            flags: 0,
        });
    }

    // mark_rodata_ro: a safe permission change.
    if let Some((va, pa, size)) = image {
        let fl = MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS;
        b.push(MapOp { va, pa, size, prot: Prot::KERNEL_RO.0, flags: fl });
    }

    // Now and then a remap the rules forbid: the BUG is then the expected result.
    if r.chance(12) && !b.ops.is_empty() {
        let victim = b.ops[r.below(b.ops.len() as u64) as usize];
        let mut op = MapOp { size: page, ..victim };
        match r.below(3) {
            0 => op.pa += page,
            1 => op.prot = Prot::DEVICE.0,
            _ => op.prot = Prot(victim.prot).0 & !Prot::NG,
        }
        b.push(op);
    }
    if b.ops.is_empty() {
        b.push(MapOp { va: g.slot_va(1), pa: RAM_BASE, size: page, prot: Prot::KERNEL.0, flags: 0 });
    }

    let mut plan: Box<Plan> = bytemuck::zeroed_box();
    *plan = Plan::new(cfg);
    plan.plan_id = index;
    for op in &b.ops {
        plan.push_op(*op);
    }
    size_pool(&mut plan, r, &g);
    plan
}

/// Give the plan the pool it needs (plus a little), or, now and then, too little.
fn size_pool(plan: &mut Plan, r: &mut Rng, g: &Geometry) {
    let page = g.page;
    let window = (POOL_END - POOL_START) / page;
    plan.push_pool(POOL_START, window * page);
    let needed = expected(plan).map_or(1, |e| e.tables as u64).max(1);
    let pages = if r.chance(8) && needed > 1 { needed - 1 - r.below(needed - 1) } else { needed + r.below(3) };
    let pages = pages.min(window);
    plan.n_pool = 0;
    // One to three ranges, page aligned, inside the pool window.
    let ranges = 1 + r.below(3).min(pages.saturating_sub(1));
    let mut base = POOL_START + r.below(window.saturating_sub(pages + 2 * ranges).max(1)) * page;
    let mut left = pages;
    for i in 0..ranges {
        let take = if i + 1 == ranges { left } else { 1 + r.below(left - (ranges - i - 1)) };
        plan.push_pool(base, take * page);
        base += (take + 1) * page;
        left -= take;
    }
}
