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

pub mod gdb;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use ptcheck_shared::{KernelConfig, Prot, TranslationConfig};

use crate::backend::guest_ram::GuestRam;
use crate::walker::{walk, AnomalyKind, Walk};

/// The line the init prints once userspace runs (`init_mode`, `ptcheck_mode=marker`).
pub const UP_MARKER: &str = "PTCHECK-LINUX-UP";

/// How to boot a kernel.
#[derive(Clone, Debug)]
pub struct KernelRun {
    /// The kernel (an arm64 `Image`, or gzip'd as Debian ships it).
    pub kernel: PathBuf,
    /// The initramfs whose `/init` prints [`UP_MARKER`].
    pub initrd: PathBuf,
    /// Guest RAM in MiB.
    pub ram_mib: u64,
    /// QEMU `-cpu`.
    pub cpu: String,
    /// Extra kernel command line.
    pub append: String,
    /// How long boot may take.
    pub timeout: Duration,
    /// Test only: corrupt one entry in guest memory before the walk, so the check
    /// that owns that fault must fail.
    pub plant: Option<Plant>,
}

/// A fault planted in the kernel's tables (test only): proves a check is real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Plant {
    /// An empty entry of a reachable table becomes non-zero but invalid.
    Zeroing,
    /// A read-only, never-executable leaf becomes writable and executable.
    Wx,
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
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut image = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut image).map_err(|e| {
            anyhow::anyhow!("is a gzip stream that does not unpack ({e}): truncated or corrupt; fetch or copy it again")
        })?;
        if image.get(56..60) != Some(IMAGE_MAGIC) {
            bail!("is gzip'd but does not unpack to an arm64 kernel Image (no ARM\\x64 magic at offset 56)");
        }
        return Ok(());
    }
    match bytes.get(56..60) {
        Some(m) if m == IMAGE_MAGIC => check_efi_stub_whole(bytes),
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

/// [`check_kernel_bytes`] on the kernel file and a readable, non-empty initramfs,
/// before QEMU starts.
///
/// # Errors
/// One line naming the file, what is wrong and the fix.
pub fn check_inputs(run: &KernelRun) -> anyhow::Result<()> {
    let bytes = std::fs::read(&run.kernel).with_context(|| format!("cannot read kernel {}", run.kernel.display()))?;
    check_kernel_bytes(&bytes).map_err(|e| anyhow::anyhow!("kernel {} {e}", run.kernel.display()))?;
    let initrd = std::fs::metadata(&run.initrd)
        .with_context(|| format!("cannot read initramfs {} (cargo xtask linux builds one)", run.initrd.display()))?;
    if !initrd.is_file() || initrd.len() == 0 {
        bail!("initramfs {} is empty or not a file (cargo xtask linux builds one)", run.initrd.display());
    }
    Ok(())
}

/// What one boot left for the checks.
pub struct Inspection {
    /// The regime, read from TCR_EL1.
    pub cfg: TranslationConfig,
    /// TTBR1_EL1 as read.
    pub ttbr1: u64,
    /// TCR_EL1 as read.
    pub tcr: u64,
    /// The exception level the vCPU stopped in (0: the init, 1: the kernel).
    pub el: u64,
    /// The tables, walked from TTBR1.
    pub walk: Walk,
    /// Seconds from QEMU start to the marker.
    pub boot_secs: f64,
}

/// The regime TCR_EL1 describes for TTBR1 (TG1, T1SZ, DS).
///
/// # Errors
/// A granule or VA size no kernel configuration has.
pub fn regime(tcr: u64) -> anyhow::Result<TranslationConfig> {
    let va_bits = 64 - ((tcr >> 16) & 0x3f) as u32;
    let ds = tcr & (1 << 59) != 0;
    let kernel = match ((tcr >> 30) & 0b11, va_bits) {
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

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Boot `run`, stop the kernel once its init is up, read where its tables are and
/// walk them. QEMU is killed before this returns, whatever happened.
///
/// # Errors
/// QEMU cannot start, the kernel does not reach init in time (the console's last
/// lines say why), or the gdbstub cannot be read.
pub fn boot_and_inspect(run: &KernelRun) -> anyhow::Result<(Inspection, GuestRam)> {
    check_inputs(run)?;
    let ram = GuestRam::with_size(run.ram_mib << 20)?;
    let port = free_port()?;
    let size = run.ram_mib << 20;
    let mem = format!("memory-backend-file,id=mem,size={size},mem-path={},share=on", ram.child_path());
    let append = format!("console=ttyAMA0 panic=-1 ptcheck_mode=marker {}", run.append);
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-M", "virt,memory-backend=mem", "-m", &format!("{}M", run.ram_mib), "-object", &mem])
        .args(["-cpu", &run.cpu, "-smp", "1", "-nodefaults", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio", "-no-reboot", "-nic", "none", "-gdb", &format!("tcp:127.0.0.1:{port}")])
        .arg("-kernel")
        .arg(&run.kernel)
        .arg("-initrd")
        .arg(&run.initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::backend::qemu::die_with_parent(&mut cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().context("cannot start qemu-system-aarch64 (install qemu-system-arm)")?;
    let (tx, rx) = mpsc::channel();
    for out in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let result = (|| {
        let mut tail: Vec<String> = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains(UP_MARKER) => break,
                Ok(line) => {
                    tail.push(line);
                    if tail.len() > 12 {
                        tail.remove(0);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("QEMU exited before the kernel's init was up; the console's last lines:\n{}", tail.join("\n"))
                }
            }
            if start.elapsed() > run.timeout {
                bail!(
                    "the kernel's init was not up within {:?}; the console's last lines:\n{}",
                    run.timeout,
                    tail.join("\n")
                );
            }
        }
        let boot_secs = start.elapsed().as_secs_f64();
        let mut g = gdb::Gdb::connect(port, Duration::from_secs(5))?;
        g.interrupt()?;
        g.load_registers()?;
        let (ttbr1, tcr, cpsr) = (g.read_register("TTBR1_EL1")?, g.read_register("TCR_EL1")?, g.read_register("cpsr")?);
        let cfg = regime(tcr)?;
        let root = root_address(&cfg, ttbr1);
        if let Some(p) = run.plant {
            plant(&cfg, root, &ram, p)?;
        }
        let walk = walk(&cfg, root, &ram);
        Ok(Inspection { cfg, ttbr1, tcr, el: (cpsr >> 2) & 0b11, walk, boot_secs })
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.map(|i| (i, ram))
}

/// Plant `p` in the tables under `root` (test only).
fn plant(cfg: &TranslationConfig, root: u64, ram: &GuestRam, p: Plant) -> anyhow::Result<()> {
    use crate::backend::PhysMemory as _;
    let w = walk(cfg, root, ram);
    match p {
        Plant::Zeroing => {
            // The first empty entry of the last table reached.
            let t = w.tables.last().context("no table to plant in")?;
            let n = cfg.entries(t.level) as u64;
            let pa = (0..n).map(|i| t.pa + 8 * i).find(|&pa| ram.read_u64(pa) == Some(0)).context("no empty entry")?;
            ram.write(pa, &0xdead_0000u64)?;
        }
        Plant::Wx => {
            // The first read-only, never-executable page: make it RW and executable.
            let r = w
                .runs
                .iter()
                .find(|r| r.level == ptcheck_shared::Level::LEAF && r.prot(cfg).0 & Prot::RDONLY != 0)
                .context("no read-only page")?;
            let pa = w.entry_pa(cfg, r.level, r.va).context("no table holds it")?;
            let desc = ram.read_u64(pa).context("unreadable entry")?;
            ram.write(pa, &(desc & !(Prot::RDONLY | Prot::PXN)))?;
        }
    }
    Ok(())
}

/// One judgement on a kernel's tables.
pub struct Finding {
    /// The check ("zeroing", "structure", "wx", "uxn_table").
    pub check: &'static str,
    /// Whether it is a failure (else information).
    pub failure: bool,
    /// In words.
    pub what: String,
}

/// Judge what [`boot_and_inspect`] found.
pub fn judge(i: &Inspection) -> Vec<Finding> {
    let mut out = Vec::new();
    let w = &i.walk;
    // Stopped in the kernel (EL1) or its init (EL0), TTBR1_EL1 is what translates
    // kernel addresses; at EL2 (a VHE kernel) it would not be.
    if i.el > 1 {
        out.push(Finding {
            check: "structure",
            failure: true,
            what: format!("the vCPU stopped at EL{}: TTBR1_EL1 is not the kernel's live table base there", i.el),
        });
    }
    for a in w.nonzero_invalid.iter().take(5) {
        out.push(Finding {
            check: "zeroing",
            failure: true,
            what: format!(
                "L{} entry at {:#x} (VA {:#x}) is {:#x}: neither valid nor zero",
                a.level.0, a.entry_pa, a.va, a.value
            ),
        });
    }
    if w.nonzero_invalid.len() > 5 {
        out.push(Finding {
            check: "zeroing",
            failure: true,
            what: format!("... and {} more", w.nonzero_invalid.len() - 5),
        });
    }
    for a in &w.anomalies {
        let failure = a.kind != AnomalyKind::TableReachedTwice;
        out.push(Finding {
            check: "structure",
            failure,
            what: format!("{} at L{} VA {:#x} (entry {:#x} = {:#x})", a.what(), a.level.0, a.va, a.entry_pa, a.value),
        });
    }
    let cfg = &i.cfg;
    for r in &w.runs {
        let p = r.prot(cfg);
        if p.0 & Prot::RDONLY == 0 && p.0 & Prot::PXN == 0 {
            out.push(Finding {
                check: "wx",
                failure: true,
                what: format!(
                    "VA {:#x}..{:#x} -> PA {:#x} is writable and executable at EL1",
                    r.va,
                    r.end(cfg),
                    r.pa(cfg)
                ),
            });
        }
    }
    let no_uxn: Vec<String> = w
        .tables
        .iter()
        .skip(1)
        .filter(|t| t.parent_desc.0 & ptcheck_shared::Descriptor::UXN_TABLE == 0)
        .map(|t| format!("{} table for VA {:#x}", t.level, t.va))
        .collect();
    if !no_uxn.is_empty() {
        out.push(Finding {
            check: "uxn_table",
            failure: false,
            what: format!(
                "{} table descriptors without UXNTable (the early fixmap chain has none): {}",
                no_uxn.len(),
                no_uxn.join(", ")
            ),
        });
    }
    out
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
