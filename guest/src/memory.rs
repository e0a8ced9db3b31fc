//! How the builder touches table memory: only through fixmap-style slots, like the
//! kernel's early path (`pXX_set_fixmap` / `pXX_clear_fixmap`).

use ptcheck_shared::LinuxLevel;

/// Where a fixmap slot maps its table: a virtual address in the guest, an opaque
/// handle on the host. `NULL` is what the kernel's `pXX_set_fixmap` returns for a
/// folded level; any access through it faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePtr(pub usize);

impl TablePtr {
    /// The null pointer of a folded level's fixmap accessor.
    pub const NULL: TablePtr = TablePtr(0);
}

/// Table memory as the builder sees it.
pub trait TableMemory {
    /// Map the table page at `pa` through the fixmap slot of level `slot`.
    /// Returns [`TablePtr::NULL`] when `slot` is a folded level of the current regime:
    /// the kernel defines `pXX_set_fixmap` as NULL for folded levels.
    fn set_fixmap(&mut self, slot: LinuxLevel, pa: u64) -> TablePtr;
    /// Unmap the slot.
    fn clear_fixmap(&mut self, slot: LinuxLevel);
    /// Read entry `index` of the table at `ptr`.
    fn read(&mut self, ptr: TablePtr, index: usize) -> u64;
    /// Write entry `index` of the table at `ptr`.
    fn write(&mut self, ptr: TablePtr, index: usize, value: u64);
    /// Entries `first..first + n` of the table at `ptr` as one slice, for writing many
    /// in a row; `None` where the memory offers no such view (the builder then goes
    /// entry by entry, and a NULL `ptr` faults there as it must).
    fn entries(&mut self, ptr: TablePtr, first: usize, n: usize) -> Option<&mut [u64]> {
        let _ = (ptr, first, n);
        None
    }
    /// A lasting direct pointer to the pool page at `pa`, for builders that keep
    /// pointers to their tables (`aarch64-paging`); `None` outside the pool.
    fn direct_table(&self, pa: u64) -> Option<core::ptr::NonNull<u64>> {
        let _ = pa;
        None
    }
    /// Zero `bytes` bytes at `ptr` (`clear_page`).
    fn clear(&mut self, ptr: TablePtr, bytes: usize);
    /// `dsb ishst`: make earlier table writes visible to the table walker.
    fn dsb_ishst(&mut self);
}
