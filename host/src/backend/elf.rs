//! Loading the guest ELF into guest RAM, as QEMU's `-kernel` does: every PT_LOAD
//! segment at its physical address, the rest of its memory size zeroed.

use std::path::Path;

use anyhow::{bail, Context as _};
use goblin::elf::{program_header::PT_LOAD, Elf};

use super::guest_ram::GuestRam;

const FIX: &str = "rebuild it with `cargo xtask build-guest`";

/// A checked guest image: its bytes, entry point and loadable segments.
pub struct Image {
    bytes: Vec<u8>,
    /// Entry point.
    pub entry: u64,
    /// (physical address, file range, memory size) of each PT_LOAD segment.
    segments: Vec<(u64, std::ops::Range<usize>, u64)>,
}

/// Read and check `path`: an aarch64 ELF64 whose every loadable segment is in the
/// file and inside guest RAM, with its entry point in one of them.
///
/// # Errors
/// Unreadable, not an ELF, not aarch64, truncated, or a segment outside guest RAM: the
/// message names the file and the fix.
pub fn inspect(path: &Path) -> anyhow::Result<Image> {
    use ptcheck_shared::abi::layout::{RAM_BASE, RAM_SIZE};
    let bytes = std::fs::read(path).with_context(|| format!("cannot read guest image {}", path.display()))?;
    let elf = Elf::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("guest image {} is not an ELF file ({e}): {FIX}", path.display()))?;
    if elf.header.e_machine != goblin::elf::header::EM_AARCH64 || !elf.is_64 {
        bail!("guest image {} is not an aarch64 ELF: {FIX}", path.display());
    }
    let mut segments = Vec::new();
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD && p.p_memsz > 0) {
        let in_ram = ph.p_paddr >= RAM_BASE
            && ph.p_paddr.checked_add(ph.p_memsz).is_some_and(|e| e <= RAM_BASE + RAM_SIZE)
            && ph.p_filesz <= ph.p_memsz;
        if !in_ram {
            bail!(
                "guest image {}: segment at {:#x} (+{:#x}) is outside guest RAM: {FIX}",
                path.display(),
                ph.p_paddr,
                ph.p_memsz
            );
        }
        let range =
            usize::try_from(ph.p_offset).ok().and_then(|o| Some(o..o.checked_add(usize::try_from(ph.p_filesz).ok()?)?));
        let Some(range) = range.filter(|r| r.end <= bytes.len()) else {
            bail!(
                "guest image {} is truncated (segment at {:#x} ends past the file): {FIX}",
                path.display(),
                ph.p_paddr
            );
        };
        segments.push((ph.p_paddr, range, ph.p_memsz));
    }
    let entry = elf.entry;
    if !segments.iter().any(|(pa, r, _)| entry >= *pa && entry < pa + r.len() as u64) {
        bail!("guest image {}: the entry point {entry:#x} is in no loaded segment: {FIX}", path.display());
    }
    Ok(Image { bytes, entry, segments })
}

/// Load `path` into `ram`; returns the entry point.
///
/// # Errors
/// As [`inspect`].
pub fn load(ram: &GuestRam, path: &Path) -> anyhow::Result<u64> {
    let image = inspect(path)?;
    for (pa, range, memsz) in &image.segments {
        let data = &image.bytes[range.clone()];
        let (pa, filesz) = (*pa, data.len() as u64);
        ram.write_bytes(pa, data)?;
        if *memsz > filesz {
            ram.fill(pa + filesz, memsz - filesz, 0)?;
        }
    }
    Ok(image.entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::PhysMemory;
    use ptcheck_shared::abi::layout::IMAGE_BASE;

    #[test]
    fn rejects_what_is_not_an_aarch64_elf() {
        let ram = GuestRam::new().unwrap();
        let err = load(&ram, Path::new("/proc/self/exe")).unwrap_err().to_string();
        assert!(err.contains("not an aarch64 ELF"), "{err}");
        let err = load(&ram, Path::new("/etc/hostname")).unwrap_err().to_string();
        assert!(err.contains("not an ELF") || err.contains("cannot read"), "{err}");
    }

    #[test]
    #[ignore = "needs the guest image: run by `cargo xtask test`"]
    fn loads_the_guest_image_at_its_link_address() {
        let image = std::env::var_os("PTCHECK_GUEST_IMAGE").expect("xtask sets PTCHECK_GUEST_IMAGE");
        let ram = GuestRam::new().unwrap();
        let entry = load(&ram, Path::new(&image)).unwrap();
        assert_eq!(entry, IMAGE_BASE, "the entry is _start at the start of .text");
        // The first instruction is `ldr x1, =__stack_top`: an LDR (literal), 0x58xxxxxx.
        let word = ram.read_u64(IMAGE_BASE).unwrap() as u32;
        assert_eq!(word >> 24, 0x58, "{word:#x}");
    }
}
