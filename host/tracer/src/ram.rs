//! Guest RAM, read from the memfd ptcheck shares with QEMU.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::Path;

/// A read-only mapping of guest RAM.
pub struct Ram {
    ptr: *const u8,
    base: u64,
    size: u64,
}

// SAFETY: the mapping is read-only for the plugin's lifetime and never unmapped; reads
// are volatile, so sharing the pointer between threads is sound.
unsafe impl Send for Ram {}

impl Ram {
    /// Map `path` (`size` bytes of guest RAM starting at guest-physical `base`).
    ///
    /// # Errors
    /// The file cannot be opened or mapped.
    pub fn open(path: &Path, base: u64, size: u64) -> Result<Ram, String> {
        let f = File::open(path).map_err(|e| format!("cannot open guest RAM {}: {e}", path.display()))?;
        let len = usize::try_from(size).map_err(|_| "guest RAM larger than the address space".to_string())?;
        // SAFETY: a fresh shared read-only mapping of an open file; the result is checked.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return Err(format!("cannot map guest RAM {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        Ok(Ram { ptr: p.cast(), base, size })
    }

    /// Whether `[pa, pa + len)` is RAM.
    pub fn contains(&self, pa: u64, len: u64) -> bool {
        pa >= self.base && pa.checked_add(len).is_some_and(|e| e <= self.base + self.size)
    }

    /// The aligned 64-bit word at `pa`, if it is RAM.
    pub fn read_u64(&self, pa: u64) -> Option<u64> {
        if !pa.is_multiple_of(8) || !self.contains(pa, 8) {
            return None;
        }
        // SAFETY: inside the mapping (checked above) and aligned; the guest may be writing
        // it concurrently, hence volatile.
        Some(unsafe { self.ptr.add((pa - self.base) as usize).cast::<u64>().read_volatile() })
    }

    /// Guest-physical base.
    pub fn base(&self) -> u64 {
        self.base
    }
}
