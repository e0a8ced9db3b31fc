//! [`TableMemory`] under a real MMU: tables are reached only through fixmap slots,
//! exactly like the kernel's early path.

use ptcheck_guest::{TableMemory, TablePtr};
use ptcheck_shared::{LinuxLevel, TranslationConfig};

use crate::bootmap;

/// Fixmap slots for one plan's regime.
pub struct FixmapMemory {
    pub cfg: TranslationConfig,
}

impl FixmapMemory {
    fn entry(ptr: TablePtr, index: usize) -> *mut u64 {
        (ptr.0 + index * 8) as *mut u64
    }
}

impl TableMemory for FixmapMemory {
    fn set_fixmap(&mut self, slot: LinuxLevel, pa: u64) -> TablePtr {
        if self.cfg.is_folded(slot) {
            // The kernel's pXX_set_fixmap of a folded level is NULL.
            return TablePtr::NULL;
        }
        bootmap::set_slot(slot as usize, pa, self.cfg.page_size());
        TablePtr(bootmap::slot_va(slot as usize) as usize)
    }

    fn clear_fixmap(&mut self, slot: LinuxLevel) {
        bootmap::set_slot(slot as usize, 0, 0);
    }

    fn read(&mut self, ptr: TablePtr, index: usize) -> u64 {
        // SAFETY: `ptr` is a fixmap slot VA mapping a whole table page, or NULL — which
        // is unmapped and faults, as a NULL fixmap does in the kernel.
        unsafe { core::ptr::read_volatile(Self::entry(ptr, index)) }
    }

    fn write(&mut self, ptr: TablePtr, index: usize, value: u64) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(Self::entry(ptr, index), value) }
    }

    fn entries(&mut self, ptr: TablePtr, first: usize, n: usize) -> Option<&mut [u64]> {
        if ptr == TablePtr::NULL || first + n > self.cfg.page_size() as usize / 8 {
            return None;
        }
        // SAFETY: a non-NULL `ptr` is a fixmap slot VA mapping a whole table page, which
        // nothing else accesses while the builder holds the slot; `first + n` entries
        // fit in the page (checked above).
        Some(unsafe { core::slice::from_raw_parts_mut(Self::entry(ptr, first), n) })
    }

    fn direct_table(&self, pa: u64) -> Option<core::ptr::NonNull<u64>> {
        // The boot map maps the pool windows identity.
        ptcheck_shared::abi::layout::in_pool_window(pa, self.cfg.page_size())
            .then(|| core::ptr::NonNull::new(pa as *mut u64))
            .flatten()
    }

    /// Zero a table as the kernel's `clear_page` does: `DC ZVA` a block at a time
    /// where DCZID_EL0 allows it (DZP clear; the block, 4 << BS bytes, divides the
    /// table), else one 64-bit store per entry.
    fn clear(&mut self, ptr: TablePtr, bytes: usize) {
        let dczid: u64;
        // SAFETY: reading DCZID_EL0 has no side effects and is allowed at EL1.
        unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid) };
        let block = 4usize << (dczid & 0xf);
        if dczid & (1 << 4) != 0
            || ptr == TablePtr::NULL
            || !bytes.is_multiple_of(block)
            || !ptr.0.is_multiple_of(block)
        {
            for i in 0..bytes / 8 {
                self.write(ptr, i, 0);
            }
            return;
        }
        for off in (0..bytes).step_by(block) {
            // SAFETY: `ptr` is a fixmap slot VA mapping a whole table page as Normal
            // memory, `bytes` of it (whole blocks, checked above) are the table's.
            unsafe { core::arch::asm!("dc zva, {}", in(reg) ptr.0 + off) };
        }
    }

    fn dsb_ishst(&mut self) {
        // SAFETY: a barrier has no memory-safety effect.
        unsafe { core::arch::asm!("dsb ishst") };
    }
}
