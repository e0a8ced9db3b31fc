//! What one boot of a real kernel leaves for the checks, and what they say about it.

use ptcheck_shared::TranslationConfig;

use super::symbols::KernelFacts;
use crate::walker::Walk;

/// What one boot left for the checks.
pub struct Inspection {
    /// The regime, read from TCR_EL1.
    pub cfg: TranslationConfig,
    /// TTBR1_EL1 as read.
    pub ttbr1: u64,
    /// TCR_EL1 as read.
    pub tcr: u64,
    /// MAIR_EL1 as read (what each AttrIndx means).
    pub mair: u64,
    /// The exception level the vCPU stopped in (0: the init, 1: the kernel).
    pub el: u64,
    /// The tables, walked from TTBR1.
    pub walk: Walk,
    /// What the kernel said about itself on the console.
    pub facts: KernelFacts,
    /// Seconds from QEMU start to the marker.
    pub boot_secs: f64,
    /// What the tracer observed from reset to the stop (`None`: not traced; an error:
    /// the trace is not whole, so its checks cannot run).
    pub observed: Option<Result<crate::trace::Observed, String>>,
    /// The kernel's System.map, when it was built here (names the tracer's PCs).
    pub system_map: Option<super::symbols::SystemMap>,
    /// QEMU's peak resident set at the stop, in KiB (the tracer's memory shows here).
    pub qemu_peak_kib: Option<u64>,
    /// QEMU's anonymous resident memory at the stop, in KiB: its heap and the
    /// tracer's state, without guest RAM (a shared memfd, which the tracer's own
    /// read-only mapping of it counts a second time in the resident set).
    pub qemu_anon_kib: Option<u64>,
}

/// A check on a real kernel's tables, by name (the plan side's is `CheckName`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinuxCheck {
    /// The walk itself: TTBRs, TCR and every table readable.
    Structure,
    /// Every table's unused entries are zero.
    Zeroing,
    /// The linear map covers exactly the memory the layout gives the kernel.
    Translation,
    /// The kernel image is mapped where it was loaded, with its sections' permissions.
    Image,
    /// UXNTable / PXNTable as the kernel sets them.
    TableBits,
    /// Leaf sizes (blocks, contiguous runs, pages) as the command line asks.
    Policy,
    /// (traced) Every linked table held only zeroes or the kernel's writes at its link.
    ZeroedAtLink,
    /// (traced) A barrier ordered each table's last write before its link.
    OrderedLink,
    /// (traced) Live entries changed only with break-before-make.
    Bbm,
    /// (traced) Changed live translations invalidated before reuse.
    Tlbi,
}

impl LinuxCheck {
    /// The checks only the tracer's instruction stream can make.
    pub const OBSERVED: [LinuxCheck; 4] =
        [LinuxCheck::ZeroedAtLink, LinuxCheck::OrderedLink, LinuxCheck::Bbm, LinuxCheck::Tlbi];

    /// The name reports, reproducers and the console use.
    pub const fn as_str(self) -> &'static str {
        match self {
            LinuxCheck::Structure => "structure",
            LinuxCheck::Zeroing => "zeroing",
            LinuxCheck::Translation => "translation",
            LinuxCheck::Image => "image",
            LinuxCheck::TableBits => "table_bits",
            LinuxCheck::Policy => "policy",
            LinuxCheck::ZeroedAtLink => "zeroed_at_link",
            LinuxCheck::OrderedLink => "ordered_link",
            LinuxCheck::Bbm => "bbm",
            LinuxCheck::Tlbi => "tlbi",
        }
    }
}

impl core::fmt::Display for LinuxCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One judgement on a kernel's tables.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// The check.
    pub check: LinuxCheck,
    /// What it means for the layout.
    pub severity: Severity,
    /// In words.
    pub what: String,
}

/// What a [`Finding`] means: one of three, never two at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Information (a count, a kernel finding reported and not failed).
    Info,
    /// The check failed: the kernel's tables are wrong.
    Failed,
    /// The check could not run (what it needs is missing): never a pass.
    NotChecked,
}

impl Finding {
    /// Whether the check failed.
    pub fn failed(&self) -> bool {
        self.severity == Severity::Failed
    }

    /// Whether the check could not run.
    pub fn not_checked(&self) -> bool {
        self.severity == Severity::NotChecked
    }
}
