//! Real Linux kernels under test: boot an arm64 kernel under QEMU on a generated
//! memory layout with its RAM shared through a memfd, wait for its init to say it is
//! up, stop the vCPU through the gdbstub, read TTBR1_EL1 and TCR_EL1, walk the tables
//! the kernel built with the same walker as every other run, and judge them.
//!
//! One idea per module: the kernel file (`kernel`), the regime from the registers
//! (`regime`), the boot (`boot`, `accel`, `dtb`, `gdb`), a kernel that does not boot
//! (`crash`), what a boot gives (`inspection`), the checks (`check`), planted faults
//! (`plant`), the command, its reports and reproducers (`command`). This file holds
//! how a kernel is booted (`KernelRun`).

pub mod accel;
mod boot;
pub mod check;
pub mod command;
pub mod costs;
pub mod crash;
pub mod dtb;
pub mod gdb;
pub mod inspection;
mod kernel;
pub mod layout;
mod plant;
mod regime;
pub mod symbols;
pub mod va_space;

pub use boot::{boot_and_inspect, boot_until_stopped, NotUp};
pub use check::judge;
pub use inspection::{Finding, Inspection, LinuxCheck, Severity};
pub use kernel::{check_kernel_bytes, config_va_bits, load_kernel, KernelImage};
pub(crate) use plant::plant;
pub use plant::Plant;
pub use regime::{built_for, regime, root_address};

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

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

    /// What a report of these boots tested (`seeds` of the layout stream; none where
    /// the layout is not generated).
    pub fn tested(&self, command: &str, seeds: &[u64]) -> crate::tested::Tested {
        let mut t =
            crate::tested::of_kernel(command, &self.qemu_binary(), &self.qemu_cpu(), self.trace.is_some(), seeds);
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

#[cfg(test)]
mod tests {
    use super::kernel::IMAGE_MAGIC;
    use super::*;
    use ptcheck_shared::TranslationConfig;

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
