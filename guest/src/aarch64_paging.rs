//! The `aarch64-paging` builder: Google's no_std crate (0.12, 4K granule), run on the
//! plan's operations with its tables taken from the plan's pool.
//!
//! Its policy is not Linux's: it picks its own blocks and contiguous runs, never
//! refuses a remap of tables that are not live (it overwrites, splitting blocks as
//! needed), and sets no hierarchical attributes on table descriptors. The adapter
//! only translates: each operation becomes one `map_range` with the operation's
//! attributes (ptcheck's `Prot` bits are the architectural ones the crate names) and
//! constraints (NO_BLOCK_MAPPINGS, NO_CONT_MAPPINGS). Every table it asks for is a
//! pool page, cleared before it is handed over, as `Translation::allocate_table`
//! requires; the per-table trace records the allocation and the clear (the crate's
//! own links are not visible to the adapter).

use core::cell::{Cell, RefCell};
use core::ptr::NonNull;

use aarch64_paging::descriptor::{El1Attributes, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, PageTable, Translation, VaRange};
use aarch64_paging::Mapping;
use ptcheck_shared::abi::{BugKind, BugRecord, MapFlags, Plan, RunResult, Status};
use ptcheck_shared::{Granule, OaFormat, TranslationConfig};

use crate::memory::TableMemory;
use crate::pool::TablePool;

const PAGE: u64 = 4096;

/// Whether the crate can build `cfg`'s tables: 4K granule, a root at level 0 or
/// below (no level -1), the 48-bit descriptor format (no LPA2).
pub fn supports(cfg: &TranslationConfig) -> bool {
    cfg.granule() == Granule::K4 && cfg.root_level().0 >= 0 && cfg.oa_format() == OaFormat::Bits48
}

/// Why the crate cannot take `plan`, if it cannot: its `MemoryRegion` ends exclusive
/// in a `usize`, so no region can end at the top of the address space.
pub fn refuses(plan: &Plan) -> Option<&'static str> {
    let cfg = plan.config()?;
    if !supports(&cfg) {
        return Some("aarch64-paging builds 4K-granule tables with a root at level 0 or below and 48-bit descriptors");
    }
    plan.ops()
        .iter()
        .any(|op| op.va.checked_add(op.size).is_none())
        .then_some("aarch64-paging's MemoryRegion cannot end at the top of the address space (2^64)")
}

/// A page for the crate should the pool run out after all: `allocate_table` cannot
/// fail. The adapter refuses an operation whose worst case the pool cannot cover
/// before the crate starts it, so this is a last resort, and the run then ends as
/// pool-exhausted.
#[repr(C, align(4096))]
struct Spare([u64; 512]);

/// The crate's `Translation`: tables from the pool, reached directly.
struct PoolTranslation<'a, 'r, M: TableMemory> {
    mem: &'a M,
    pool: TablePool<'a>,
    result: &'a RefCell<&'r mut RunResult>,
    op: Cell<u32>,
    spare: NonNull<u64>,
    exhausted: Cell<bool>,
}

impl<M: TableMemory> Translation<El1Attributes> for PoolTranslation<'_, '_, M> {
    fn allocate_table(&mut self) -> (NonNull<PageTable<El1Attributes>>, PhysicalAddress) {
        let Some(pa) = self.pool.alloc() else {
            self.exhausted.set(true);
            return (self.spare.cast(), PhysicalAddress(self.spare.as_ptr() as usize));
        };
        let Some(ptr) = self.mem.direct_table(pa) else {
            self.exhausted.set(true);
            return (self.spare.cast(), PhysicalAddress(self.spare.as_ptr() as usize));
        };
        // SAFETY: `ptr` is the pool page at `pa`, mapped for direct access, whole and
        // used by nothing else: the pool hands each page out once.
        unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, (PAGE / 8) as usize) };
        let mut r = self.result.borrow_mut();
        if let Some(i) = r.push_table(pa, self.op.get(), u8::MAX) {
            r.note_zero(i, PAGE as u32);
            r.costs.table_clears += 1;
            r.note_barrier();
        }
        (ptr.cast(), PhysicalAddress(pa as usize))
    }

    unsafe fn deallocate_table(&mut self, _page_table: NonNull<PageTable<El1Attributes>>) {
        // Pool pages are never returned: the tables stay for the host to check.
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<El1Attributes>> {
        if pa.0 == self.spare.as_ptr() as usize {
            return self.spare.cast();
        }
        self.mem.direct_table(pa.0 as u64).unwrap_or(self.spare).cast()
    }
}

/// The most new tables mapping `[va, end)` to `pa` can need below an empty entry of
/// level `l` covering it: for each level from `l` down to the leaves' parents, one per
/// entry the range touches, less the entries it covers whole with output aligned to
/// them where a block may go.
fn fresh_tables(cfg: &TranslationConfig, l: i8, va: u128, end: u128, pa: u128, no_block: bool) -> u64 {
    (l..3)
        .map(|l| {
            let span = u128::from(cfg.entry_span(ptcheck_shared::Level(l)));
            let touched = (end - 1) / span - va / span + 1;
            let block_level = l >= 1 && !no_block && (va % span) == (pa % span);
            let whole = if block_level { (end / span).saturating_sub(va.div_ceil(span)) } else { 0 };
            (touched - whole) as u64
        })
        .sum()
}

/// A range to map: `[va, end)` to `pa` onwards.
#[derive(Clone, Copy)]
struct Range {
    va: u128,
    end: u128,
    pa: u128,
}

impl<M: TableMemory> PoolTranslation<'_, '_, M> {
    /// The most new tables mapping `r` can need, given the tables already there:
    /// walked from the table at `table` (level `l`), only where the range goes.
    fn tables_needed(&self, cfg: &TranslationConfig, table: u64, l: i8, r: Range, no_block: bool) -> u64 {
        let Some(ptr) = self.mem.direct_table(table) else { return u64::MAX };
        let span = u128::from(cfg.entry_span(ptcheck_shared::Level(l)));
        let mut need = 0u64;
        let mut a = r.va;
        while a < r.end {
            let next = r.end.min((a / span + 1) * span);
            let index = ((a / span) % 512) as usize;
            // SAFETY: `ptr` points at a whole 512-entry table page of the pool.
            let desc = unsafe { ptr.as_ptr().add(index).read() };
            let p = r.pa + (a - r.va);
            let whole = a.is_multiple_of(span) && next - a == span && p.is_multiple_of(span);
            let sub = Range { va: a, end: next, pa: p };
            if l < 3 && desc & 0b11 == 0b11 {
                need = need.saturating_add(self.tables_needed(cfg, desc & 0x0000_ffff_ffff_f000, l + 1, sub, no_block));
            } else if l < 3 && !(l >= 1 && !no_block && whole) {
                need = need.saturating_add(1 + fresh_tables(cfg, l + 1, a, next, p, no_block));
            }
            a = next;
        }
        need
    }
}

fn refuse(result: &mut RunResult, op: u32, va: u64, kind: BugKind, detail: u64) {
    result.bug = BugRecord { kind: kind as u32, op, level: 4, reserved: 0, va, old: 0, new: detail };
    result.status = Status::Bug as u32;
}

/// Build `plan` with aarch64-paging.
pub fn run<M: TableMemory>(plan: &Plan, mem: &mut M, result: &mut RunResult) {
    result.reset(plan.plan_id);
    let cfg = match plan.config() {
        Some(cfg) if plan.is_well_formed() && refuses(plan).is_none() => cfg,
        _ => {
            result.status = Status::BadPlan as u32;
            return;
        }
    };
    let mut spare = Spare([0; 512]);
    let result = RefCell::new(result);
    let translation = PoolTranslation {
        mem: &*mem,
        pool: TablePool::new(plan.pool(), PAGE),
        result: &result,
        op: Cell::new(u32::MAX),
        spare: NonNull::from(&mut spare.0).cast(),
        exhausted: Cell::new(false),
    };
    let root_level = cfg.root_level().0 as usize;
    let mut mapping = Mapping::with_asid_and_va_range(translation, 0, root_level, El1And0, VaRange::Upper);
    let mut outcome = Ok(());
    for (i, op) in plan.ops().iter().enumerate() {
        mapping.translation().op.set(i as u32);
        let no_block = op.flags & MapFlags::NO_BLOCK_MAPPINGS != 0;
        let root = mapping.root_address().0 as u64;
        let (va, end, pa) = (u128::from(op.va), u128::from(op.va) + u128::from(op.size), u128::from(op.pa));
        let t = mapping.translation();
        if t.pool.remaining() < t.tables_needed(&cfg, root, cfg.root_level().0, Range { va, end, pa }, no_block) {
            outcome = Err((i as u32, op.va, BugKind::PoolExhausted, 0));
            break;
        }
        let mut constraints = Constraints::empty();
        if op.flags & MapFlags::NO_BLOCK_MAPPINGS != 0 {
            constraints |= Constraints::NO_BLOCK_MAPPINGS;
        }
        if op.flags & MapFlags::NO_CONT_MAPPINGS != 0 {
            constraints |= Constraints::NO_CONTIGUOUS_HINT;
        }
        let flags = El1Attributes::from_bits_retain(op.prot as usize) | El1Attributes::VALID;
        let region = MemoryRegion::new(op.va as usize, (op.va + op.size) as usize);
        let mapped = mapping.map_range(&region, PhysicalAddress(op.pa as usize), flags, constraints);
        if mapping.translation().exhausted.get() {
            outcome = Err((i as u32, op.va, BugKind::PoolExhausted, 0));
            break;
        }
        if let Err(e) = mapped {
            // The crate refused the operation: recorded, for the checks to judge.
            let code = match e {
                aarch64_paging::MapError::AddressRange(_) => 1,
                aarch64_paging::MapError::InvalidVirtualAddress(_) => 2,
                aarch64_paging::MapError::RegionBackwards(_) => 3,
                aarch64_paging::MapError::PteUpdateFault(_) => 4,
                aarch64_paging::MapError::InvalidFlags(_) => 5,
                aarch64_paging::MapError::BreakBeforeMakeViolation(_) => 6,
            };
            outcome = Err((i as u32, op.va, BugKind::BadEntry, code));
            break;
        }
        result.borrow_mut().ops_done = i as u32 + 1;
    }
    let root = mapping.root_address().0 as u64;
    drop(mapping);
    let result = result.into_inner();
    result.root_pa = root;
    match outcome {
        Ok(()) => result.status = Status::Done as u32,
        Err((op, va, kind, code)) => refuse(result, op, va, kind, code),
    }
}
