//! The Linux-policy builder.
//!
//! Structure follows the kernel's early mapping path, one function per Linux level:
//! `map` walks the pgd entries, then p4d → pud → pmd → pte. A folded level has no table
//! of its own: its "entry" *is* the parent entry (the kernel's `pXX_offset` of a folded
//! level returns the pointer it was given), so [`Builder::descend`] passes the parent
//! entry straight through and never asks for a folded level's fixmap slot.
//!
//! Policy (what the kernel does, restated):
//! * a new table is taken from the pool, mapped through its level's fixmap slot,
//!   cleared, followed by `dsb ishst`, and only then linked into its parent with
//!   UXNTable (and PXNTable when NO_EXEC_MAPPINGS);
//! * a level-2 block when `addr`, `next` and `phys` are all block aligned, a level-1
//!   block likewise but only with 4K pages; never with NO_BLOCK_MAPPINGS;
//! * the contiguous bit on every entry of a run whose `addr`, `next` and `phys` are all
//!   aligned to the run, unless NO_CONT_MAPPINGS;
//! * a live entry may only change as `pgattr_change_is_safe` allows; a block is never
//!   split and never replaces a table. Violations end the plan with a [`BugRecord`].

use ptcheck_shared::abi::{builder_id, BugKind, BugRecord, MapFlags, MapOp, Plan, RunResult, Status};
use ptcheck_shared::descriptor::DescriptorKind;
use ptcheck_shared::{Descriptor, Level, LinuxLevel, Prot, TranslationConfig};

use crate::memory::{TableMemory, TablePtr};
use crate::mutation;
use crate::pool::TablePool;

/// Operation index recorded before the first operation (root creation).
pub const NO_OP: u32 = u32::MAX;
pub use ptcheck_shared::abi::NO_LEVEL;

type Outcome = Result<(), BugRecord>;

/// Run every operation of `plan`, writing what happened into `result`.
///
/// Never panics on bad input: a malformed plan ends with `Status::BadPlan`, a refused
/// operation with `Status::Bug` and the [`BugRecord`]. `plan.mutation` selects a
/// bug-catalogue variant in a `mutants` build; any other build (and any unknown id)
/// refuses such a plan with `Status::BadPlan`.
pub fn run_plan<M: TableMemory>(plan: &Plan, mem: &mut M, result: &mut RunResult) {
    if plan.mutation == mutation::NONE {
        return run_plan_with::<M, { mutation::NONE }>(plan, mem, result);
    }
    #[cfg(feature = "mutants")]
    if let Some(run) = variants::<M>().get(plan.mutation as usize) {
        return run(plan, mem, result);
    }
    result.reset(plan.plan_id);
    result.status = Status::BadPlan as u32;
}

/// Run `plan` with the builder broken by `MUTATION` (tests pick a variant by type).
#[cfg(feature = "mutants")]
pub fn run_plan_mutant<M: TableMemory, const MUTATION: u32>(plan: &Plan, mem: &mut M, result: &mut RunResult) {
    run_plan_with::<M, MUTATION>(plan, mem, result)
}

/// One builder per catalogue id, indexed by id (0 is the clean builder).
#[cfg(feature = "mutants")]
fn variants<M: TableMemory>() -> [fn(&Plan, &mut M, &mut RunResult); 16] {
    const _: () = assert!(mutation::ALL_VARIANTS.len() + 1 == 16, "one builder per catalogue id");
    [
        run_plan_with::<M, 0>,
        run_plan_with::<M, 1>,
        run_plan_with::<M, 2>,
        run_plan_with::<M, 3>,
        run_plan_with::<M, 4>,
        run_plan_with::<M, 5>,
        run_plan_with::<M, 6>,
        run_plan_with::<M, 7>,
        run_plan_with::<M, 8>,
        run_plan_with::<M, 9>,
        run_plan_with::<M, 10>,
        run_plan_with::<M, 11>,
        run_plan_with::<M, 12>,
        run_plan_with::<M, 13>,
        run_plan_with::<M, 14>,
        run_plan_with::<M, 15>,
    ]
}

pub(crate) fn run_plan_with<M: TableMemory, const MUTATION: u32>(plan: &Plan, mem: &mut M, result: &mut RunResult) {
    result.reset(plan.plan_id);
    let cfg = match plan.config() {
        Some(cfg) if plan.is_well_formed() => cfg,
        _ => {
            result.status = Status::BadPlan as u32;
            return;
        }
    };
    let mut b = Builder::<M, MUTATION> {
        cfg,
        before_change: plan.builder == builder_id::LINUX_6_9,
        mem,
        pool: TablePool::new(plan.pool(), cfg.page_size()),
        result,
        op: NO_OP,
        flags: 0,
        prot: Prot(0),
        slot_pa: [0; 5],
    };
    let outcome = b.create_root().and_then(|root| {
        for (i, op) in plan.ops().iter().enumerate() {
            b.op = i as u32;
            b.map(root, op)?;
            b.result.ops_done = i as u32 + 1;
        }
        Ok(())
    });
    match outcome {
        Ok(()) => b.result.status = Status::Done as u32,
        Err(bug) => {
            b.result.bug = bug;
            b.result.status = Status::Bug as u32;
        }
    }
}

/// An entry of some table, reached through a fixmap slot.
#[derive(Clone, Copy, Debug)]
struct Entry {
    ptr: TablePtr,
    index: usize,
    /// Architectural level of the table holding the entry.
    level: Level,
    /// Slot the table is mapped through.
    slot: LinuxLevel,
}

/// What a level does with one of its entries and the stretch of VA it covers.
type EntryFn<B> = fn(&mut B, Entry, Span) -> Outcome;

/// A stretch of VA being mapped: `[addr, end)` (`end` 0: the top of the address
/// space), the PA `addr` maps to, and whether it lies in a contiguous run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    addr: u64,
    end: u64,
    phys: u64,
    cont: bool,
}

impl Span {
    /// The span cut at every `size` boundary (`pXX_addr_end` each), each piece with
    /// its PA; at least one piece.
    fn split(self, size: u64) -> Split {
        Split { rest: Some(self), size }
    }
}

/// [`Span::split`]'s pieces.
struct Split {
    rest: Option<Span>,
    size: u64,
}

impl Iterator for Split {
    type Item = Span;
    fn next(&mut self) -> Option<Span> {
        let s = self.rest?;
        let next = addr_end(s.addr, s.end, self.size);
        self.rest =
            (next != s.end).then(|| Span { addr: next, phys: s.phys.wrapping_add(next.wrapping_sub(s.addr)), ..s });
        Some(Span { end: next, ..s })
    }
}

struct Builder<'a, M: TableMemory, const MUTATION: u32> {
    cfg: TranslationConfig,
    /// Linux 6.9's path: the allocator clears each new table through the FIX_PTE slot
    /// (its clear's TLB flush is the barrier); the builder maps it again to populate.
    before_change: bool,
    mem: &'a mut M,
    pool: TablePool<'a>,
    result: &'a mut RunResult,
    op: u32,
    flags: u64,
    prot: Prot,
    /// What each fixmap slot maps now, for the trace.
    slot_pa: [u64; 5],
}

/// `pXX_addr_end`: the end of the entry (of size `span`) holding `addr`, or `end` if
/// sooner. Written so that a range ending at the top of the address space (end == 0)
/// works.
fn addr_end(addr: u64, end: u64, span: u64) -> u64 {
    let boundary = (addr & !(span - 1)).wrapping_add(span);
    if boundary.wrapping_sub(1) < end.wrapping_sub(1) {
        boundary
    } else {
        end
    }
}

fn aligned(x: u64, size: u64) -> bool {
    x & (size - 1) == 0
}

/// The kernel's `pgattr_change_is_safe`: may a live entry `old` become `new`?
fn pgattr_change_is_safe(old: u64, new: u64) -> bool {
    // Creating or taking down a mapping is always safe.
    if old & Descriptor::VALID == 0 || new & Descriptor::VALID == 0 {
        return true;
    }
    // Live contiguous runs may not be touched at all.
    if (old | new) & Descriptor::CONT != 0 {
        return false;
    }
    // nG -> global would leave stale non-global TLB entries.
    if old & !new & Prot::NG != 0 {
        return false;
    }
    let mut may_change = Prot::PXN | Prot::RDONLY | Prot::WRITE | Prot::NG;
    let normal = |d: u64| matches!(Prot(d).attr_index(), Prot::MT_NORMAL | Prot::MT_NORMAL_TAGGED);
    if normal(old) && normal(new) {
        may_change |= Prot::ATTR_INDX_MASK;
    }
    (old ^ new) & !may_change == 0
}

impl<M: TableMemory, const MUTATION: u32> Builder<'_, M, MUTATION> {
    fn bug(&self, kind: BugKind, level: i32, va: u64, old: u64, new: u64) -> BugRecord {
        BugRecord { kind: kind as u32, op: self.op, level, reserved: 0, va, old, new }
    }

    fn set_fixmap(&mut self, slot: LinuxLevel, pa: u64) -> TablePtr {
        self.slot_pa[slot as usize] = pa;
        self.result.note_fixmap_set(slot as usize);
        // __set_fixmap: the PTE write, then dsb ishst; isb.
        self.result.costs.fixmap_sets += 1;
        self.result.costs.dsbs += 1;
        self.mem.set_fixmap(slot, pa)
    }

    fn clear_fixmap(&mut self, slot: LinuxLevel) {
        // clear_fixmap: the PTE clear, then flush_tlb_kernel_range (dsb; tlbi; dsb).
        self.result.costs.fixmap_clears += 1;
        self.result.costs.tlb_invalidations += 1;
        self.result.costs.dsbs += 2;
        self.mem.clear_fixmap(slot);
    }

    fn read(&mut self, e: Entry) -> u64 {
        self.mem.read(e.ptr, e.index)
    }

    /// `__pXX_populate`: link a table into entry `e`.
    fn link(&mut self, e: Entry, desc: Descriptor, table: usize) {
        let entry_pa = self.slot_pa[e.slot as usize] + (e.index as u64) * 8;
        self.result.note_link(table, entry_pa, desc.0, e.slot as u8);
        self.result.costs.descriptor_writes += 1;
        self.mem.write(e.ptr, e.index, desc.0);
    }

    /// `init_clear_pgtable`: clear the table, then make the zeroes visible to walks.
    fn init_clear_pgtable(&mut self, ptr: TablePtr, table: usize) {
        let bytes = self.cfg.page_size();
        // (The lie spares the root, record 0: its clear is not followed by a link.)
        if MUTATION != mutation::LIE_CLEAR || table == 0 {
            self.mem.clear(ptr, bytes as usize);
        }
        self.result.note_zero(table, bytes as u32);
        self.result.costs.table_clears += 1;
        if MUTATION != mutation::MISSING_BARRIER {
            if MUTATION != mutation::LIE_BARRIER {
                self.mem.dsb_ishst();
            }
            self.result.note_barrier();
            self.result.costs.dsbs += 1;
        }
    }

    /// `pgtable_alloc(type)`: one page from the pool; the page and its trace record.
    /// (The host checks before the run that the plan's tables fit the record, so a
    /// full record is never what ends a plan it accepted.)
    fn alloc(&mut self, ll: LinuxLevel, level: Level, va: u64) -> Result<(u64, usize), BugRecord> {
        let exhausted = self.bug(BugKind::PoolExhausted, level.0 as i32, va, 0, 0);
        let pa = self.pool.alloc().ok_or(exhausted)?;
        let record = self.result.push_table(pa, self.op, ll as u8).ok_or(exhausted)?;
        Ok((pa, record))
    }

    /// Linux 6.9's `early_pgtable_alloc`: clear the new page through the FIX_PTE slot
    /// (free whatever level is being built), memset, clear the slot; "implicit
    /// barriers also ensure the zeroed page is visible to the page table walker".
    fn clear_through_fix_pte(&mut self, pa: u64, record: usize) {
        let bytes = self.cfg.page_size();
        let ptr = self.set_fixmap(LinuxLevel::Pte, pa);
        if MUTATION != mutation::SKIP_ZERO {
            if MUTATION != mutation::LIE_CLEAR || record == 0 {
                self.mem.clear(ptr, bytes as usize);
            }
            self.result.note_zero(record, bytes as u32);
            self.result.costs.table_clears += 1;
        }
        self.clear_fixmap(LinuxLevel::Pte);
        if MUTATION != mutation::MISSING_BARRIER {
            self.mem.dsb_ishst();
            self.result.note_barrier();
        }
    }

    fn create_root(&mut self) -> Result<u64, BugRecord> {
        let (root, record) = self.alloc(LinuxLevel::Pgd, self.cfg.root_level(), 0)?;
        if self.before_change {
            self.clear_through_fix_pte(root, record);
            self.result.root_pa = root;
            return Ok(root);
        }
        let ptr = self.set_fixmap(LinuxLevel::Pgd, root);
        self.init_clear_pgtable(ptr, record);
        self.clear_fixmap(LinuxLevel::Pgd);
        self.result.root_pa = root;
        Ok(root)
    }

    /// `__create_pgd_mapping`: validate, then walk the pgd entries of the range.
    fn map(&mut self, root: u64, op: &MapOp) -> Outcome {
        let cfg = self.cfg;
        let page = cfg.page_size();
        let refuse = |b: &Self, kind| Err(b.bug(kind, NO_LEVEL, op.va, 0, 0));
        if op.size == 0 || !aligned(op.va | op.pa | op.size, page) {
            return refuse(self, BugKind::Misaligned);
        }
        if !Prot(op.prot).is_valid() || op.flags & !MapFlags::ALL != 0 {
            return refuse(self, BugKind::BadProt);
        }
        let end = op.va.wrapping_add(op.size);
        let pa_end = op.pa.checked_add(op.size);
        if op.va < cfg.va_start() || (end != 0 && end <= op.va) || pa_end.is_none_or(|e| e > 1u64 << cfg.pa_bits()) {
            return refuse(self, BugKind::OutOfRange);
        }
        self.flags = op.flags;
        self.prot = Prot(op.prot);
        let pmd = cfg.entry_span(Level(2));
        let end =
            if MUTATION == mutation::OFF_BY_ONE_END && op.size > page && aligned(end, pmd) { end - page } else { end };

        let level = cfg.root_level();
        let pgd = self.set_fixmap(LinuxLevel::Pgd, root);
        for piece in (Span { addr: op.va, end, phys: op.pa, cont: false }).split(cfg.entry_span(level)) {
            let e = Entry { ptr: pgd, index: cfg.index(level, piece.addr), level, slot: LinuxLevel::Pgd };
            self.p4d_entry(e, piece)?;
        }
        self.clear_fixmap(LinuxLevel::Pgd);
        Ok(())
    }

    /// Visit the entries of Linux level `ll` covering `[addr, end)` below `parent`.
    ///
    /// Folded level: the parent entry is this level's entry, visited once for the
    /// whole range. Otherwise the level's table (allocated if the parent is empty) is
    /// mapped through the level's fixmap slot and its entries visited, grouped into
    /// contiguous runs where the level has them.
    fn descend(&mut self, ll: LinuxLevel, parent: Entry, span: Span, body: EntryFn<Self>) -> Outcome {
        let cfg = self.cfg;
        let Span { addr, end, phys, .. } = span;
        let whole = Span { cont: false, ..span };
        let Some(level) = cfg.hw_level(ll) else {
            if MUTATION == mutation::FOLDED_FIXMAP {
                // "pgtable folding hell": reach the folded level through its own
                // fixmap accessor, which the kernel defines as NULL.
                let table = Descriptor(self.read(parent)).address(&cfg);
                let ptr = self.set_fixmap(ll, table);
                let e = Entry { ptr, index: cfg.index(parent.level, addr), level: parent.level, slot: ll };
                let r = body(self, e, whole);
                self.clear_fixmap(ll);
                return r;
            }
            return body(self, parent, whole);
        };
        let (ptr, fresh) = self.table_for(parent, ll, level, addr)?;
        let entry_span = cfg.entry_span(level);
        let no_cont = self.flags & MapFlags::NO_CONT_MAPPINGS != 0;
        // The kernel: `ptep = pte_set_fixmap(phys); ptep += pte_index(addr)`, then ptep++.
        let mut index = if MUTATION == mutation::MISSING_INDEX && fresh { 0 } else { cfg.index(level, addr) };
        let (mut addr, mut phys) = (addr, phys);
        loop {
            // One contiguous-run chunk (the whole range where the level has no runs).
            // (With NO_CONT_MAPPINGS every chunk decides the same: one chunk.)
            let run_end = match cfg.cont_span(level) {
                Some(run) if !no_cont => addr_end(addr, end, run),
                _ => end,
            };
            let checked = if MUTATION == mutation::CONT_MISALIGNED { addr | run_end } else { addr | run_end | phys };
            let cont = !no_cont && cfg.cont_span(level).is_some_and(|run| aligned(checked, run));
            if ll == LinuxLevel::Pte {
                // `init_pte`: every entry of the chunk is a page.
                let n = (run_end.wrapping_sub(addr) / entry_span) as usize;
                self.set_pages(Entry { ptr, index, level, slot: ll }, n, addr, phys, cont)?;
                index += n;
                phys = phys.wrapping_add(run_end.wrapping_sub(addr));
                addr = run_end;
                if addr == end {
                    break;
                }
                continue;
            }
            for piece in (Span { addr, end: run_end, phys, cont }).split(entry_span) {
                let e = Entry { ptr, index, level, slot: ll };
                index += 1;
                body(self, e, piece)?;
            }
            phys = phys.wrapping_add(run_end.wrapping_sub(addr));
            addr = run_end;
            if addr == end {
                break;
            }
        }
        self.clear_fixmap(ll);
        Ok(())
    }

    /// The table below `parent` for Linux level `ll` (at architectural `level`):
    /// the existing one, or a new, cleared one linked into `parent` (then `true`).
    fn table_for(
        &mut self,
        parent: Entry,
        ll: LinuxLevel,
        level: Level,
        addr: u64,
    ) -> Result<(TablePtr, bool), BugRecord> {
        let cfg = self.cfg;
        let entry_va = addr & !(cfg.entry_span(parent.level) - 1);
        let old = self.read(parent);
        if old == 0 {
            let (pa, record) = self.alloc(ll, level, entry_va)?;
            if self.before_change && MUTATION != mutation::ZERO_AFTER_LINK {
                self.clear_through_fix_pte(pa, record);
            }
            let ptr = self.set_fixmap(ll, pa);
            let mut attrs = Descriptor::UXN_TABLE;
            if self.flags & MapFlags::NO_EXEC_MAPPINGS != 0 {
                attrs |= Descriptor::PXN_TABLE;
            }
            if MUTATION == mutation::TABLE_BITS_DROPPED {
                attrs = 0;
            }
            let desc = Descriptor(self.drop_high_oa(Descriptor::table(&cfg, pa, attrs).0));
            if self.before_change {
                // __pXX_populate, then pXX_set_fixmap_offset: the table is already clear
                // (zero-after-link clears it through FIX_PTE only now).
                self.link(parent, desc, record);
                if MUTATION == mutation::ZERO_AFTER_LINK {
                    self.clear_through_fix_pte(pa, record);
                }
                return Ok((ptr, true));
            }
            match MUTATION {
                mutation::SKIP_ZERO => self.link(parent, desc, record),
                mutation::ZERO_AFTER_LINK => {
                    self.link(parent, desc, record);
                    self.init_clear_pgtable(ptr, record);
                }
                _ => {
                    self.init_clear_pgtable(ptr, record);
                    self.link(parent, desc, record);
                }
            }
            return Ok((ptr, true));
        }
        let desc = Descriptor(old);
        match desc.kind(&cfg, parent.level) {
            DescriptorKind::Table => {
                let mut table = desc.address(&cfg);
                if MUTATION == mutation::STALE_EXISTING_TABLE {
                    // As if the entry were a block of the parent's level.
                    table &= !(cfg.entry_span(parent.level) - 1);
                }
                Ok((self.set_fixmap(ll, table), false))
            }
            DescriptorKind::Block => Err(self.bug(BugKind::SplitBlock, parent.level.0 as i32, entry_va, old, 0)),
            _ => Err(self.bug(BugKind::BadEntry, parent.level.0 as i32, entry_va, old, 0)),
        }
    }

    /// The `lpa2-oa-bits` mutation: output-address bits above 48 lost in encoding.
    fn drop_high_oa(&self, desc: u64) -> u64 {
        if MUTATION != mutation::LPA2_OA_BITS {
            return desc;
        }
        match self.cfg.oa_format() {
            ptcheck_shared::OaFormat::Lpa2 => desc & !(0b11 << 8),
            ptcheck_shared::OaFormat::Lpa64k => desc & !(0b1111 << 12),
            ptcheck_shared::OaFormat::Bits48 => desc,
        }
    }

    /// Write a block or page into `e`, if the change is safe.
    fn set_leaf(&mut self, e: Entry, addr: u64, phys: u64, cont: bool) -> Outcome {
        let new = self.drop_high_oa(Descriptor::leaf(&self.cfg, e.level, phys, self.prot, cont).0);
        let old = self.read(e);
        let level = e.level.0 as i32;
        if Descriptor(old).kind(&self.cfg, e.level) == DescriptorKind::Table {
            return Err(self.bug(BugKind::ReplaceTable, level, addr, old, new));
        }
        let checked_old = if MUTATION == mutation::UNSAFE_REMAP_ALLOWED {
            // Compare as if the old entry already had the new output address.
            let oa = |pa| ptcheck_shared::descriptor::encode_address(&self.cfg, pa);
            (old ^ oa(Descriptor(old).address(&self.cfg))) | oa(phys)
        } else {
            old
        };
        if !pgattr_change_is_safe(checked_old, new) {
            return Err(self.bug(BugKind::UnsafeChange, level, addr, old, new));
        }
        self.mem.write(e.ptr, e.index, new);
        self.result.costs.descriptor_writes += 1;
        Ok(())
    }

    /// `n` pages from entry `first` on, mapping `phys` onwards: the kernel's
    /// `init_pte` loop. Over a direct view of the table (when the memory offers one
    /// and the output addresses advance inside the in-place OA field) the loop is a
    /// read, a compare and a write per entry; otherwise entry by entry.
    fn set_pages(&mut self, first: Entry, n: usize, addr: u64, phys: u64, cont: bool) -> Outcome {
        let cfg = self.cfg;
        let page = cfg.page_size();
        let len = n as u64 * page;
        let linear = match cfg.oa_format() {
            ptcheck_shared::OaFormat::Bits48 => true,
            ptcheck_shared::OaFormat::Lpa2 => phys >> 50 == (phys + len - 1) >> 50,
            ptcheck_shared::OaFormat::Lpa64k => phys >> 48 == (phys + len - 1) >> 48,
        };
        let plain = MUTATION != mutation::UNSAFE_REMAP_ALLOWED && MUTATION != mutation::LPA2_OA_BITS;
        if plain && linear && n > 0 {
            let new0 = Descriptor::leaf(&cfg, Level::LEAF, phys, self.prot, cont).0;
            if let Some(entries) = self.mem.entries(first.ptr, first.index, n) {
                // Entries still empty (a fresh table, the common case): nothing to
                // check, so one plain store per entry.
                if entries.iter().all(|&e| e == 0) {
                    for (i, e) in (0u64..).zip(entries.iter_mut()) {
                        *e = new0 + i * page;
                    }
                    self.result.costs.descriptor_writes += n as u64;
                    return Ok(());
                }
                let mut refused = None;
                for (i, e) in (0u64..).zip(entries.iter_mut()) {
                    let (old, new) = (*e, new0 + i * page);
                    if old != 0 && !pgattr_change_is_safe(old, new) {
                        refused = Some((i, old, new));
                        break;
                    }
                    *e = new;
                }
                let written = refused.map_or(n as u64, |(i, ..)| i);
                self.result.costs.descriptor_writes += written;
                return match refused {
                    Some((i, old, new)) => Err(self.bug(BugKind::UnsafeChange, 3, addr + i * page, old, new)),
                    None => Ok(()),
                };
            }
        }
        for i in 0..n {
            let e = Entry { index: first.index + i, ..first };
            let k = i as u64 * page;
            self.set_leaf(e, addr.wrapping_add(k), phys.wrapping_add(k), cont)?;
        }
        Ok(())
    }

    fn block_allowed(&self, addr: u64, next: u64, phys: u64, size: Option<u64>) -> bool {
        let no_block = self.flags & MapFlags::NO_BLOCK_MAPPINGS != 0 && MUTATION != mutation::BLOCK_IGNORES_FLAG;
        !no_block && size.is_some_and(|s| aligned(addr | next | phys, s))
    }

    /// A pgd entry: its p4d entries.
    fn p4d_entry(&mut self, e: Entry, s: Span) -> Outcome {
        self.descend(LinuxLevel::P4d, e, s, Self::pud_table)
    }

    /// A p4d entry: its pud entries.
    fn pud_table(&mut self, e: Entry, s: Span) -> Outcome {
        self.descend(LinuxLevel::Pud, e, s, Self::pud_entry)
    }

    /// A pud entry: a 1G block (4K only, `pud_sect_supported`) or a pmd table.
    fn pud_entry(&mut self, e: Entry, s: Span) -> Outcome {
        let pud_block = if MUTATION == mutation::PUD_BLOCK_ANY_GRANULE && self.cfg.has_level(Level(1)) {
            Some(self.cfg.entry_span(Level(1)))
        } else {
            self.cfg.kernel_block_size(Level(1))
        };
        if self.block_allowed(s.addr, s.end, s.phys, pud_block) {
            return self.set_leaf(e, s.addr, s.phys, false);
        }
        self.descend(LinuxLevel::Pmd, e, s, Self::pmd_entry)
    }

    /// A pmd entry: a block (contiguous when its run is aligned) or a pte table.
    fn pmd_entry(&mut self, e: Entry, s: Span) -> Outcome {
        if self.block_allowed(s.addr, s.end, s.phys, self.cfg.kernel_block_size(Level(2))) {
            return self.set_leaf(e, s.addr, s.phys, s.cont);
        }
        self.descend(LinuxLevel::Pte, e, s, Self::pte_entry)
    }

    /// A pte entry: a page.
    fn pte_entry(&mut self, e: Entry, s: Span) -> Outcome {
        self.set_leaf(e, s.addr, s.phys, s.cont)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_end_handles_the_top_of_the_address_space() {
        assert_eq!(addr_end(0xffff_ffff_ffe0_0000, 0, 1 << 21), 0);
        assert_eq!(addr_end(0xffff_ffff_ffc0_0000, 0, 1 << 21), 0xffff_ffff_ffe0_0000);
        assert_eq!(addr_end(0x1000, 0x3000, 1 << 21), 0x3000);
    }

    #[test]
    fn a_span_splits_at_every_boundary_with_its_pas() {
        let s = Span { addr: 0x1f_f000, end: 0x40_1000, phys: 0x8000_0000, cont: true };
        let want = [
            (0x1f_f000, 0x20_0000, 0x8000_0000),
            (0x20_0000, 0x40_0000, 0x8000_1000),
            (0x40_0000, 0x40_1000, 0x8020_1000),
        ];
        assert!(s.split(1 << 21).map(|p| (p.addr, p.end, p.phys)).eq(want));
        assert!(s.split(1 << 21).all(|p| p.cont));
        // To the top of the address space (end 0), and a span inside one block.
        let top = Span { addr: 0xffff_ffff_ffc0_0000, end: 0, phys: 0, cont: false };
        assert!(top.split(1 << 21).map(|p| p.end).eq([0xffff_ffff_ffe0_0000, 0]));
        let one = Span { addr: 0x1000, end: 0x3000, phys: 0, cont: false };
        assert_eq!(one.split(1 << 21).count(), 1);
    }

    #[test]
    fn attribute_change_rule() {
        let page =
            |p: Prot| Descriptor::leaf(&TranslationConfig::parse("4k-48").unwrap(), Level(3), 0x4000_0000, p, false).0;
        assert!(pgattr_change_is_safe(0, page(Prot::KERNEL)));
        assert!(pgattr_change_is_safe(page(Prot::KERNEL), page(Prot::KERNEL_RO)));
        assert!(pgattr_change_is_safe(page(Prot::KERNEL), page(Prot::KERNEL_TAGGED)));
        assert!(!pgattr_change_is_safe(page(Prot::KERNEL), page(Prot::DEVICE)));
        assert!(!pgattr_change_is_safe(page(Prot::KERNEL), page(Prot::KERNEL) + 0x1000), "OA change");
        assert!(!pgattr_change_is_safe(page(Prot::KERNEL) | Descriptor::CONT, page(Prot::KERNEL) | Descriptor::CONT));
        assert!(!pgattr_change_is_safe(page(Prot(Prot::KERNEL.0 | Prot::NG)), page(Prot::KERNEL)), "nG -> global");
        assert!(pgattr_change_is_safe(page(Prot::KERNEL), page(Prot(Prot::KERNEL.0 | Prot::NG))));
    }
}
