//! Loading the guest ELF into guest RAM, as QEMU's `-kernel` does: every PT_LOAD
//! segment at its physical address, the rest of its memory size zeroed.

use std::path::Path;

use anyhow::{bail, Context as _};
use goblin::elf::{program_header::PT_LOAD, Elf};

use super::guest_ram::GuestRam;

/// Load `path` into `ram`; returns the entry point.
///
/// # Errors
/// Unreadable or malformed ELF, not aarch64, or a segment outside RAM.
pub fn load(ram: &GuestRam, path: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read guest image {}", path.display()))?;
    let elf = Elf::parse(&bytes).with_context(|| format!("{} is not an ELF file", path.display()))?;
    if elf.header.e_machine != goblin::elf::header::EM_AARCH64 || !elf.is_64 {
        bail!("{} is not an aarch64 ELF: rebuild it with `cargo xtask build-guest`", path.display());
    }
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD && p.p_memsz > 0) {
        if !ram.contains(ph.p_paddr, ph.p_memsz) {
            bail!("{}: segment at {:#x} (+{:#x}) is outside guest RAM", path.display(), ph.p_paddr, ph.p_memsz);
        }
        let data = bytes
            .get(ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize)
            .with_context(|| format!("{}: truncated segment at {:#x}", path.display(), ph.p_paddr))?;
        ram.write_bytes(ph.p_paddr, data)?;
        if ph.p_memsz > ph.p_filesz {
            ram.fill(ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz, 0)?;
        }
    }
    Ok(elf.entry)
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
