//! Real Linux kernels under test (a first slice): boot an arm64 kernel under QEMU with
//! its RAM shared through a memfd, wait for its init to say it is up, stop the vCPU
//! through the gdbstub, read TTBR1_EL1 and TCR_EL1, and walk the tables the kernel
//! built, with the same walker as every other run.
//!
//! What is judged (structure, not yet a model of the kernel's layout): every reachable
//! table's invalid entries are exactly zero (so every table was cleared before it was
//! linked), no reserved encodings or tables reached twice, and no mapping is both
//! writable and executable at EL1. Table descriptors without UXNTable are listed (the
//! kernel's early fixmap chain has none, by design).

pub mod accel;
mod boot;
pub mod check;
pub mod command;
pub mod crash;
pub mod dtb;
pub mod gdb;
pub mod inspection;
pub mod layout;
pub mod symbols;

pub use boot::{boot_and_inspect, NotUp};
pub use check::judge;
pub use inspection::{Finding, Inspection, LinuxCheck, Severity};

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ptcheck_shared::{KernelConfig, Prot, TranslationConfig};

use crate::backend::guest_ram::GuestRam;
use layout::Layout;
use symbols::KernelFacts;

/// The line the init prints once userspace runs (`init_mode`, `ptcheck_mode=marker`).
pub const UP_MARKER: &str = "PTCHECK-LINUX-UP";

/// How to boot a kernel.
#[derive(Clone, Debug)]
pub struct KernelRun {
    /// The kernel (an arm64 `Image`, or gzip'd as Debian ships it).
    pub kernel: PathBuf,
    /// The initramfs whose `/init` prints [`UP_MARKER`].
    pub initrd: PathBuf,
    /// QEMU `-cpu`.
    pub cpu: String,
    /// How long boot may take.
    pub timeout: Duration,
    /// Test only: corrupt one entry in guest memory before the walk, so the check
    /// that owns that fault must fail.
    pub plant: Option<Plant>,
    /// Trace the boot with the tracer plugin (`None`: `--no-trace`, the system QEMU).
    pub trace: Option<crate::trace::TraceSetup>,
    /// The emulator, when not the system's (untraced) or the tracer's (traced):
    /// benchmarks compare QEMU versions.
    pub qemu: Option<PathBuf>,
    /// TCG or KVM (`accel::choose`: KVM on arm64 hosts when not traced).
    pub accel: accel::Accel,
}

impl KernelRun {
    /// The QEMU that boots it: the one asked for, else the tracer's (traced), else the
    /// system's.
    pub fn qemu_binary(&self) -> PathBuf {
        self.qemu
            .clone()
            .unwrap_or_else(|| self.trace.as_ref().map_or_else(|| crate::trace::qemu_binary(false), |t| t.qemu.clone()))
    }

    /// The initramfs's size: it must be there and not empty.
    ///
    /// # Errors
    /// It cannot be read, or it is empty; the fix named.
    pub fn initrd_size(&self) -> anyhow::Result<u64> {
        let n = std::fs::metadata(&self.initrd)
            .with_context(|| format!("cannot read initramfs {} (cargo xtask linux builds one)", self.initrd.display()))?
            .len();
        if n == 0 {
            bail!("initramfs {} is empty (cargo xtask linux builds one)", self.initrd.display());
        }
        Ok(n)
    }

    /// What a report of these boots tested (`seed` of the layout stream).
    pub fn tested(&self, command: &str, seed: u64) -> crate::tested::Tested {
        let mut t =
            crate::tested::of_kernel(command, &self.qemu_binary(), &self.qemu_cpu(), self.trace.is_some(), &[seed]);
        if self.accel == accel::Accel::Kvm {
            t.backend = "qemu (kvm)".into();
        }
        t
    }

    /// The `-cpu` QEMU is given: the one asked for under TCG, the host's under KVM.
    pub fn qemu_cpu(&self) -> String {
        self.accel.cpu(&self.cpu)
    }
}

/// A fault planted in the kernel's tables (test only): proves a check is real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Plant {
    /// An empty entry of a reachable table becomes non-zero but invalid (zeroing).
    Zeroing,
    /// A linear-map page points one page off (translation).
    Translation,
    /// A read-only page of the kernel image becomes writable (image).
    Image,
    /// A read-only, never-executable leaf becomes writable and executable (image: W+X).
    Wx,
    /// A table under the linear map loses PXNTable (table_bits).
    TableBits,
    /// A linear-map page gains the contiguous bit (policy: a shape the model does not predict).
    Policy,
}

/// The arm64 Image header's magic, at offset 56.
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// Checks that `bytes` are an arm64 kernel QEMU can boot: an `Image` (magic "ARM\x64"
/// at offset 56), or a gzip stream that unpacks, whole, to one (Debian's `vmlinuz`;
/// QEMU unpacks it itself, so a truncated one would only show as a kernel that never
/// comes up).
///
/// # Errors
/// One line naming what the file is instead and what to do.
pub fn check_kernel_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    unpacked_image(bytes).map(|_| ())
}

/// The arm64 Image in `bytes`: `None` when `bytes` is one already, else the image a
/// gzip stream unpacks to ([`check_kernel_bytes`] says what is wrong otherwise).
fn unpacked_image(bytes: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut image = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut image).map_err(|e| {
            anyhow::anyhow!("is a gzip stream that does not unpack ({e}): truncated or corrupt; fetch or copy it again")
        })?;
        if image.get(56..60) != Some(IMAGE_MAGIC) {
            bail!("is gzip'd but does not unpack to an arm64 kernel Image (no ARM\\x64 magic at offset 56)");
        }
        return Ok(Some(image));
    }
    match bytes.get(56..60) {
        Some(m) if m == IMAGE_MAGIC => check_efi_stub_whole(bytes).map(|()| None),
        _ if bytes.starts_with(b"\x7fELF") => {
            bail!("is an ELF file (vmlinux?), not an Image: give arch/arm64/boot/Image (or Image.gz)")
        }
        _ if bytes.len() < 64 => bail!("is {} bytes: too short for an arm64 kernel Image header", bytes.len()),
        _ => bail!("is not an arm64 kernel Image (no ARM\\x64 magic at offset 56, not gzip'd)"),
    }
}

/// An Image built with the EFI stub (every distribution kernel) starts with "MZ" and
/// carries a PE header whose section table says how long the file is: a shorter file
/// was truncated. An Image without the stub has nothing to compare against.
fn check_efi_stub_whole(bytes: &[u8]) -> anyhow::Result<()> {
    if !bytes.starts_with(b"MZ") {
        return Ok(());
    }
    let pe = goblin::pe::PE::parse(bytes)
        .map_err(|e| anyhow::anyhow!("has a PE (EFI stub) header that does not parse ({e}): truncated or corrupt"))?;
    let end =
        pe.sections.iter().map(|s| u64::from(s.pointer_to_raw_data) + u64::from(s.size_of_raw_data)).max().unwrap_or(0);
    if (bytes.len() as u64) < end {
        bail!("is {} bytes but its EFI stub's sections end at {end}: truncated; fetch or copy it again", bytes.len());
    }
    Ok(())
}

/// The regime TCR_EL1 describes for TTBR1 (TG1, T1SZ, DS).
///
/// # Errors
/// A granule or VA size no kernel configuration has.
pub fn regime(tcr: u64) -> anyhow::Result<TranslationConfig> {
    let t = ptcheck_shared::regs::Tcr(tcr);
    let (va_bits, ds) = (t.va_bits1(), t.ds());
    let kernel = match (t.tg1(), va_bits) {
        (0b10, 39) => KernelConfig::K4Va39,
        (0b10, 48) if !ds => KernelConfig::K4Va48,
        (0b10, 52) => KernelConfig::K4Va52,
        (0b01, 36) => KernelConfig::K16Va36,
        (0b01, 47) if !ds => KernelConfig::K16Va47,
        (0b01, 48) => KernelConfig::K16Va48,
        (0b01, 52) => KernelConfig::K16Va52,
        (0b11, 42) => KernelConfig::K64Va42,
        (0b11, 48) => KernelConfig::K64Va48,
        (0b11, 52) => KernelConfig::K64Va52,
        (tg, va) => bail!("TCR_EL1 {tcr:#x}: TG1 {tg:#b} with {va}-bit VAs is no kernel configuration ptcheck knows"),
    };
    TranslationConfig::new(kernel, va_bits).map_err(|_| anyhow::anyhow!("{va_bits}-bit VAs do not fit {kernel:?}"))
}

/// The regime named for the kernel's build: a 52-bit kernel (its config next to it
/// says `CONFIG_ARM64_VA_BITS=52`, or it has `vabits_actual`) running with fewer VA bits
/// is folded at run time (`4k-52@48`), not a 48-bit build.
pub fn built_for(cfg: TranslationConfig, facts: &KernelFacts, config_va_bits: Option<u32>) -> TranslationConfig {
    use ptcheck_shared::Granule;
    if cfg.va_bits == 52 || (facts.sym("vabits_actual").is_none() && config_va_bits != Some(52)) {
        return cfg;
    }
    let wide = match cfg.granule() {
        Granule::K4 => KernelConfig::K4Va52,
        Granule::K16 => KernelConfig::K16Va52,
        Granule::K64 => KernelConfig::K64Va52,
    };
    TranslationConfig::new(wide, cfg.va_bits).unwrap_or(cfg)
}

/// `CONFIG_ARM64_VA_BITS` from the kernel's config, if one sits next to it (`config`,
/// `config-*` as Debian and ptcheck's cache keep it, or `.config` of the build tree the
/// Image is in).
pub fn config_va_bits(kernel: &std::path::Path) -> Option<u32> {
    let dir = kernel.parent()?;
    let mut candidates = vec![dir.join("config"), dir.join("../../../.config")];
    if let Ok(rd) = std::fs::read_dir(dir) {
        candidates.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("config-"))),
        );
    }
    candidates.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("CONFIG_ARM64_VA_BITS=").and_then(|v| v.trim().parse().ok()))
    })
}

/// The root table's physical address in TTBR1_EL1 (BADDR; with 52-bit output
/// addresses PA[51:48] sits in bits [5:2]).
pub fn root_address(cfg: &TranslationConfig, ttbr1: u64) -> u64 {
    let baddr = ttbr1 & 0x0000_ffff_ffff_fffe;
    if cfg.pa_bits() == 52 {
        (baddr & !0x3c) | (((ttbr1 >> 2) & 0xf) << 48)
    } else {
        baddr
    }
}

/// A kernel ready for QEMU's loader: the raw Image (unpacked if it was gzip'd) and the
/// size the boot protocol says it needs (`image_size` in the header, bss included).
pub struct KernelImage {
    /// The raw Image's bytes.
    pub bytes: Vec<u8>,
    /// The file, when it is the raw Image itself (QEMU's loader reads it in place;
    /// a gzip'd one is unpacked into the boot's temporary directory).
    pub raw_path: Option<PathBuf>,
    /// Bytes from the load address the kernel uses (at least the file).
    pub image_size: u64,
    /// The granule the header's flags name (12 when unstated): the tracer's until the
    /// kernel writes TCR_EL1.
    page_shift: u32,
}

impl KernelImage {
    /// The page shift the Image header states.
    pub fn page_shift(&self) -> u32 {
        self.page_shift
    }
}

/// Read and check `path` ([`check_kernel_bytes`]), unpacking a gzip'd one.
///
/// # Errors
/// Unreadable, or not a whole arm64 kernel (one line naming which).
pub fn load_kernel(path: &std::path::Path) -> anyhow::Result<KernelImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read kernel {}", path.display()))?;
    let (bytes, raw_path) =
        match unpacked_image(&bytes).map_err(|e| anyhow::anyhow!("kernel {} {e}", path.display()))? {
            Some(image) => (image, None),
            None => (bytes, Some(std::fs::canonicalize(path)?)),
        };
    // Header (Documentation/arch/arm64/booting.rst): text_offset at 8, image_size at 16.
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    if word(8) != 0 {
        bail!(
            "kernel {} has text_offset {:#x}: ptcheck loads kernels at 2 MiB boundaries (text_offset 0, Linux 5.10+)",
            path.display(),
            word(8)
        );
    }
    let image_size = word(16).max(bytes.len() as u64);
    // flags, bits [2:1]: the kernel's page size (1: 4K, 2: 16K, 3: 64K; 0: unstated).
    let page_shift = match (word(24) >> 1) & 3 {
        2 => 14,
        3 => 16,
        _ => 12,
    };
    Ok(KernelImage { bytes, raw_path, image_size, page_shift })
}

/// Plant `p` in the tables `i` walked (test only).
fn plant(i: &Inspection, layout: &Layout, ram: &GuestRam, p: Plant) -> anyhow::Result<()> {
    use crate::backend::PhysMemory as _;
    use ptcheck_shared::Descriptor;
    let (cfg, w) = (&i.cfg, &i.walk);
    let (lo, hi) = (check::page_offset(cfg), check::linear_end(cfg));
    let linear_page = || {
        w.runs
            .iter()
            .find(|r| r.level == ptcheck_shared::Level::LEAF && r.va >= lo && r.va < hi && !r.desc.is_contiguous())
    };
    let rewrite = |va: u64, level: ptcheck_shared::Level, f: &dyn Fn(u64) -> u64| -> anyhow::Result<()> {
        let pa = w.entry_pa(cfg, level, va).context("no table holds it")?;
        let desc = ram.read_u64(pa).context("unreadable entry")?;
        ram.write(pa, &f(desc))
    };
    let page = cfg.page_size();
    match p {
        Plant::Zeroing => {
            // The first empty entry of the last table reached.
            let t = w.tables.last().context("no table to plant in")?;
            let n = cfg.entries(t.level) as u64;
            let pa = (0..n).map(|i| t.pa + 8 * i).find(|&pa| ram.read_u64(pa) == Some(0)).context("no empty entry")?;
            ram.write(pa, &0xdead_0000u64)
        }
        Plant::Translation => {
            let r = linear_page().context("no linear-map page")?;
            rewrite(r.va, r.level, &|d| d ^ page)
        }
        Plant::Image => {
            // The first page of rodata (however the checks find it) becomes writable.
            let ctx = check::Ctx::new(i, layout, &i.facts, ram);
            let va = ctx.sections().map_err(anyhow::Error::msg)?.rodata.next_multiple_of(page);
            rewrite(va, w.run_at(cfg, va).context("rodata unmapped")?.level, &|d| d & !Prot::RDONLY)
        }
        Plant::Wx => {
            // The first read-only, never-executable page: make it RW and executable.
            let r = w
                .runs
                .iter()
                .find(|r| r.level == ptcheck_shared::Level::LEAF && r.prot(cfg).0 & Prot::RDONLY != 0)
                .context("no read-only page")?;
            rewrite(r.va, r.level, &|d| d & !(Prot::RDONLY | Prot::PXN))
        }
        Plant::TableBits => {
            let t = w
                .tables
                .iter()
                .skip(1)
                .find(|t| t.va >= lo && t.va < hi && t.parent_desc.0 & Descriptor::PXN_TABLE != 0)
                .context("no table under the linear map")?;
            rewrite(t.va, ptcheck_shared::Level(t.level.0 - 1), &|d| d & !Descriptor::PXN_TABLE)
        }
        Plant::Policy => {
            let r = linear_page().context("no linear-map page")?;
            rewrite(r.va, r.level, &|d| d | Descriptor::CONT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcr_names_the_regime() {
        // The Debian 6.1 cloud kernel: TG1 4K, T1SZ 16.
        assert_eq!(regime(0x15001f5b5503510).unwrap().to_string(), "4k-48");
        let tcr = |tg1: u64, t1sz: u64, ds: bool| (tg1 << 30) | (t1sz << 16) | (u64::from(ds) << 59);
        assert_eq!(regime(tcr(0b10, 12, true)).unwrap().to_string(), "4k-52");
        assert_eq!(regime(tcr(0b01, 17, false)).unwrap().to_string(), "16k-47");
        assert_eq!(regime(tcr(0b11, 22, false)).unwrap().to_string(), "64k-42");
        assert!(regime(tcr(0b10, 30, false)).is_err(), "34-bit VAs are no kernel configuration");
    }

    #[test]
    fn ttbr1_gives_the_root() {
        let cfg = TranslationConfig::parse("4k-48").unwrap();
        assert_eq!(root_address(&cfg, 0x0002_0000_4158_f001), 0x4158_f000);
        let lpa2 = TranslationConfig::parse("4k-52").unwrap();
        assert_eq!(root_address(&lpa2, 0x4158_f000 | (0b0011 << 2)), 0x0003_0000_4158_f000);
    }

    #[test]
    fn only_whole_arm64_kernels_boot() {
        use std::io::Write as _;
        let mut image = vec![0u8; 4096];
        image[56..60].copy_from_slice(IMAGE_MAGIC);
        check_kernel_bytes(&image).unwrap();
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let packed = gz(&image);
        check_kernel_bytes(&packed).unwrap();
        let err = |b: &[u8]| check_kernel_bytes(b).unwrap_err().to_string();
        assert!(err(&packed[..packed.len() - 10]).contains("truncated or corrupt"));
        assert!(err(&gz(b"#!/bin/sh\n")).contains("does not unpack to an arm64 kernel Image"));
        assert!(err(b"\x7fELF\x02\x01\x01").contains("ELF"));
        assert!(err(&[]).contains("too short"));
        assert!(err(&[0u8; 4096]).contains("no ARM"));
    }
}
