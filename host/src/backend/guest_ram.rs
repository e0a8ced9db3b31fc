//! Guest RAM shared with a VM: a memfd the host maps with vm-memory and hands to QEMU
//! (`mem-path=/proc/self/fd/N`, `share=on`) or registers with KVM.
//!
//! A memfd has no name in /dev/shm and is freed when the last process holding it
//! exits, so nothing outlives a run however it ends.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;

use anyhow::{bail, Context as _};
use bytemuck::Pod;
use ptcheck_shared::abi::layout::{RAM_BASE, RAM_SIZE};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

use super::PhysMemory;

/// The guest's RAM, `[RAM_BASE, RAM_BASE + size)` (`RAM_SIZE` for the ptcheck guest).
pub struct GuestRam {
    mem: GuestMemoryMmap,
    file: File,
    size: u64,
}

impl GuestRam {
    /// A fresh, zero-filled RAM (sparse: only touched pages use memory).
    ///
    /// # Errors
    /// When the memfd cannot be created, sized or mapped.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_size(RAM_SIZE)
    }

    /// A fresh, zero-filled RAM of `size` bytes from `RAM_BASE` (sparse).
    ///
    /// # Errors
    /// When the memfd cannot be created, sized or mapped.
    pub fn with_size(size: u64) -> anyhow::Result<Self> {
        // No MFD_CLOEXEC: QEMU must inherit the descriptor to open /proc/self/fd/N.
        // SAFETY: memfd_create with a NUL-terminated name and no flags.
        let fd = unsafe { libc::memfd_create(c"ptcheck-guest-ram".as_ptr(), 0) };
        if fd < 0 {
            bail!("memfd_create failed: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size).context("cannot size the guest RAM memfd")?;
        let region = (GuestAddress(RAM_BASE), size as usize, Some(FileOffset::new(file.try_clone()?, 0)));
        let mem = GuestMemoryMmap::from_ranges_with_files([region]).context("cannot map guest RAM")?;
        Ok(GuestRam { mem, file, size })
    }

    /// Where RAM_BASE is mapped in this process (for KVM_SET_USER_MEMORY_REGION).
    pub fn host_address(&self) -> u64 {
        use vm_memory::GuestMemoryBackend as _;
        self.mem.get_host_address(GuestAddress(RAM_BASE)).map_or(0, |p| p as u64)
    }

    /// The path a child process opens to share this RAM.
    pub fn child_path(&self) -> String {
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }

    /// Whether `[pa, pa + len)` is RAM.
    pub fn contains(&self, pa: u64, len: u64) -> bool {
        pa >= RAM_BASE && pa.checked_add(len).is_some_and(|e| e <= RAM_BASE + self.size)
    }

    /// Write a plain-old-data record at `pa`.
    ///
    /// # Errors
    /// When the record does not fit in RAM.
    pub fn write<T: Pod>(&self, pa: u64, value: &T) -> anyhow::Result<()> {
        self.write_bytes(pa, bytemuck::bytes_of(value))
    }

    /// Write raw bytes at `pa`.
    ///
    /// # Errors
    /// When the bytes do not fit in RAM.
    pub fn write_bytes(&self, pa: u64, bytes: &[u8]) -> anyhow::Result<()> {
        self.mem.write_slice(bytes, GuestAddress(pa)).with_context(|| format!("guest RAM write at {pa:#x}"))
    }

    /// Read raw bytes at `pa`.
    ///
    /// # Errors
    /// When the range is not RAM.
    pub fn read_bytes(&self, pa: u64, bytes: &mut [u8]) -> anyhow::Result<()> {
        self.mem.read_slice(bytes, GuestAddress(pa)).with_context(|| format!("guest RAM read at {pa:#x}"))
    }

    /// Fill `[pa, pa + len)` with copies of `word`.
    ///
    /// # Errors
    /// When the range is not RAM.
    pub fn fill(&self, pa: u64, len: u64, word: u64) -> anyhow::Result<()> {
        const CHUNK: usize = 64 * 1024;
        let buf: Vec<u8> = std::iter::repeat_n(word.to_le_bytes(), CHUNK / 8).flatten().collect();
        let mut off = 0;
        while off < len {
            let n = (len - off).min(CHUNK as u64) as usize;
            self.write_bytes(pa + off, &buf[..n])?;
            off += n as u64;
        }
        Ok(())
    }

    /// Load a u64 with acquire ordering (pairs with the guest's release store).
    ///
    /// # Errors
    /// When `pa` is not RAM.
    pub fn load_acquire(&self, pa: u64) -> anyhow::Result<u64> {
        self.mem.load(GuestAddress(pa), Ordering::Acquire).with_context(|| format!("guest RAM load at {pa:#x}"))
    }

    /// Store a u64 with release ordering (pairs with the guest's acquire load).
    ///
    /// # Errors
    /// When `pa` is not RAM.
    pub fn store_release(&self, pa: u64, value: u64) -> anyhow::Result<()> {
        self.mem
            .store(value, GuestAddress(pa), Ordering::Release)
            .with_context(|| format!("guest RAM store at {pa:#x}"))
    }
}

impl PhysMemory for GuestRam {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        if !self.contains(pa, 8) {
            return None;
        }
        self.mem.read_obj::<u64>(GuestAddress(pa)).ok()
    }

    fn read_words(&self, pa: u64, out: &mut [u64]) -> bool {
        self.contains(pa, 8 * out.len() as u64) && self.read_bytes(pa, bytemuck::cast_slice_mut(out)).is_ok()
    }
}
