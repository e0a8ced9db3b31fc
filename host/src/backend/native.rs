//! The native backend: the builder runs in-process over simulated RAM. Fastest, and
//! the reference the VM backends must agree with; it has no MMU, so no hardware probes.

use bytemuck::Zeroable;
use ptcheck_guest::{TableMemory, TablePtr};
use ptcheck_shared::abi::{ExceptionRecord, FaultRecord, Phase, Plan, PoolRange, RunResult, Status};
use ptcheck_shared::{LinuxLevel, TranslationConfig};

use super::{Backend, PhysMemory, RunView, Variant};
use crate::POOL_POISON;

/// Sparse simulated physical memory: a list of backed ranges.
#[derive(Default)]
pub struct SimRam {
    regions: Vec<(u64, Vec<u64>)>,
}

impl SimRam {
    /// Back every pool range of `plan`, filled with [`POOL_POISON`].
    pub fn for_pool(pool: &[PoolRange]) -> SimRam {
        let regions = pool.iter().map(|r| (r.base, vec![POOL_POISON; (r.size / 8) as usize])).collect();
        SimRam { regions }
    }

    /// The region holding all of `[pa, pa + 8n)`, and the word index of `pa` in it.
    fn locate(&self, pa: u64, n: usize) -> Option<(usize, usize)> {
        self.regions.iter().enumerate().find_map(|(r, (base, words))| {
            let start = (pa.checked_sub(*base)? / 8) as usize;
            (start + n <= words.len()).then_some((r, start))
        })
    }

    fn words_mut(&mut self, pa: u64, n: usize) -> Option<&mut [u64]> {
        let (r, start) = self.locate(pa, n)?;
        Some(&mut self.regions[r].1[start..start + n])
    }

    fn words(&self, pa: u64, n: usize) -> Option<&[u64]> {
        let (r, start) = self.locate(pa, n)?;
        Some(&self.regions[r].1[start..start + n])
    }
}

impl PhysMemory for SimRam {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        self.words(pa, 1).map(|w| w[0])
    }

    fn read_words(&self, pa: u64, out: &mut [u64]) -> bool {
        self.words(pa, out.len()).map(|s| out.copy_from_slice(s)).is_some()
    }
}

/// Fixmap slots over [`SimRam`]. Slot pointers are opaque handles; the null pointer of
/// a folded level faults like it does in the guest (recorded, access dropped).
pub struct NativeMemory<'r> {
    cfg: TranslationConfig,
    ram: &'r mut SimRam,
    slots: [Option<u64>; 5],
    /// Each pool range: (base PA, words, the words' address), for builders that keep
    /// direct pointers to their tables.
    direct: Vec<(u64, usize, *mut u64)>,
    /// Faulting accesses: (slot pointer + offset, slot level).
    pub faults: Vec<(u64, LinuxLevel)>,
}

const SLOT_BASE: usize = 0xf1c0_0000;
const SLOT_STRIDE: usize = 0x10_0000;

impl<'r> NativeMemory<'r> {
    /// Fixmap slots for regime `cfg` over `ram`.
    pub fn new(cfg: TranslationConfig, ram: &'r mut SimRam) -> Self {
        let direct = ram.regions.iter_mut().map(|(base, words)| (*base, words.len(), words.as_mut_ptr())).collect();
        NativeMemory { cfg, ram, slots: [None; 5], direct, faults: Vec::new() }
    }

    fn resolve(&mut self, ptr: TablePtr, offset: u64) -> Option<u64> {
        let slot = ptr.0.checked_sub(SLOT_BASE).map(|d| d / SLOT_STRIDE).filter(|&s| s < 5);
        let pa = slot.and_then(|s| self.slots[s]).filter(|_| offset < self.cfg.page_size());
        match pa {
            Some(pa) => Some(pa + offset),
            None => {
                let level = slot.and_then(|s| LinuxLevel::from_u8(s as u8)).unwrap_or(LinuxLevel::Pgd);
                self.faults.push((ptr.0 as u64 + offset, level));
                None
            }
        }
    }
}

impl TableMemory for NativeMemory<'_> {
    fn set_fixmap(&mut self, slot: LinuxLevel, pa: u64) -> TablePtr {
        if self.cfg.is_folded(slot) {
            return TablePtr::NULL;
        }
        self.slots[slot as usize] = Some(pa);
        TablePtr(SLOT_BASE + slot as usize * SLOT_STRIDE)
    }

    fn clear_fixmap(&mut self, slot: LinuxLevel) {
        self.slots[slot as usize] = None;
    }

    fn read(&mut self, ptr: TablePtr, index: usize) -> u64 {
        match self.resolve(ptr, index as u64 * 8) {
            Some(pa) => self.ram.read_u64(pa).unwrap_or(0),
            None => 0,
        }
    }

    fn write(&mut self, ptr: TablePtr, index: usize, value: u64) {
        if let Some(pa) = self.resolve(ptr, index as u64 * 8) {
            if let Some(w) = self.ram.words_mut(pa, 1) {
                w[0] = value;
            }
        }
    }

    fn direct_table(&self, pa: u64) -> Option<std::ptr::NonNull<u64>> {
        let page_words = (self.cfg.page_size() / 8) as usize;
        self.direct.iter().find_map(|&(base, words, ptr)| {
            let i = usize::try_from(pa.checked_sub(base)? / 8).ok()?;
            // SAFETY: `i + page_words <= words` keeps the result inside the range's
            // allocation, which lives (unmoved: SimRam is not resized during a run) as
            // long as this memory; a builder using direct pointers uses nothing else.
            (pa.is_multiple_of(8) && i + page_words <= words)
                .then(|| unsafe { std::ptr::NonNull::new_unchecked(ptr.add(i)) })
        })
    }

    fn entries(&mut self, ptr: TablePtr, first: usize, n: usize) -> Option<&mut [u64]> {
        let slot = ptr.0.checked_sub(SLOT_BASE).map(|d| d / SLOT_STRIDE).filter(|&s| s < 5)?;
        let pa = self.slots[slot]?;
        if (first + n) as u64 * 8 > self.cfg.page_size() {
            return None;
        }
        self.ram.words_mut(pa + first as u64 * 8, n)
    }

    fn clear(&mut self, ptr: TablePtr, bytes: usize) {
        // One fault for the first byte, as the guest would take.
        if let Some(pa) = self.resolve(ptr, 0) {
            let n = bytes.min(self.cfg.page_size() as usize) / 8;
            if let Some(words) = self.ram.words_mut(pa, n) {
                words.fill(0);
            }
        }
    }

    fn dsb_ishst(&mut self) {}
}

/// A builder entry point: the clean [`ptcheck_guest::run_plan`], or a mutant in tests.
pub type BuildFn = for<'a> fn(&Plan, &mut NativeMemory<'a>, &mut RunResult);

/// ESR_EL1 of a data abort at the current EL (EC 0x25, IL) with a level-3
/// translation fault (DFSC 0b000111): what the guest would take for a NULL fixmap.
pub const ESR_DABT_TRANSLATION_L3: u64 = (0x25 << 26) | (1 << 25) | 0b000111;

fn clean_builder(plan: &Plan, mem: &mut NativeMemory<'_>, result: &mut RunResult) {
    ptcheck_guest::run_plan(plan, mem, result)
}

/// Runs plans in-process.
pub struct NativeBackend {
    build: BuildFn,
    variant: Variant,
    ram: SimRam,
    result: Box<RunResult>,
}

impl NativeBackend {
    /// The backend with the clean builder.
    pub fn new() -> Self {
        Self::with_builder(clean_builder)
    }

    /// The backend with a specific builder (tests use this to plant bugs).
    pub fn with_builder(build: BuildFn) -> Self {
        NativeBackend { build, variant: Variant::default(), ram: SimRam::default(), result: bytemuck::zeroed_box() }
    }

    /// The backend running bug-catalogue variant `id` of the `linux` builder for
    /// every plan (`ptcheck_guest::mutation`; honoured by builds with the catalogue).
    pub fn with_mutation(id: u32) -> Self {
        Self::with_variant(Variant { builder: 0, mutation: id })
    }

    /// The backend running `variant` (a registry builder, maybe a catalogue variant).
    pub fn with_variant(variant: Variant) -> Self {
        NativeBackend { variant, ..Self::new() }
    }
}

impl Default for NativeBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn variant(&self) -> Variant {
        self.variant
    }

    fn run_tagged(&mut self, plan: &Plan, _tag_pages: &[u64]) -> anyhow::Result<RunView<'_>> {
        let cfg = plan.config().ok_or_else(|| anyhow::anyhow!("plan header is not a valid ptcheck plan"))?;
        self.ram = SimRam::for_pool(plan.pool());
        let mut mem = NativeMemory::new(cfg, &mut self.ram);
        (self.build)(&self.variant.apply(plan), &mut mem, &mut self.result);
        // A fault is what the guest would take as a synchronous exception: report it
        // the same way, with every faulting access in the trace.
        if let Some(&(far, _)) = mem.faults.first() {
            let faults = std::mem::take(&mut mem.faults);
            // The memory layer cannot tell which operation was running: u32::MAX.
            for (va, slot) in faults {
                self.result.push_fault(FaultRecord { addr: va, op: u32::MAX, slot: slot as u32 });
            }
            self.result.status = Status::Exception as u32;
            self.result.exception = ExceptionRecord {
                esr: ESR_DABT_TRANSLATION_L3,
                far,
                op: u32::MAX,
                phase: Phase::Build as u32,
                ..ExceptionRecord::zeroed()
            };
        }
        Ok(RunView { result: &self.result, ram: &self.ram, observed: None })
    }
}
