//! The JSON reports ptcheck writes and `cargo xtask` reads back, one set of types for
//! both (behind the `report` feature): a renamed field fails to build or to parse,
//! never to be found. The host adds the constructors and the counting.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// For a reader that does not need a report's layout records.
pub use serde::de::IgnoredAny;

/// What a report, JUnit file or reproducer tested.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tested {
    /// `ptcheck <version>`.
    pub ptcheck: String,
    /// The command (`run`, `fuzz`, `linux`, `bench`, `replay`).
    pub command: String,
    /// The backend (`native`, `qemu`, `kvm`).
    pub backend: String,
    /// The builder under test (`linux`, `linux-6.9`, `aarch64-paging`, with a
    /// catalogue variant if one ran), or `kernel` when a real kernel is.
    pub builder: String,
    /// Whether the tracer observed it (QEMU 10 with the plugin).
    pub traced: bool,
    /// The QEMU binary and what `--version` says; `None` without QEMU (native, KVM).
    pub qemu: Option<QemuBinary>,
    /// The `-cpu` model (`host` under KVM, none natively).
    pub cpu: String,
    /// The seeds of the plans or layouts (empty for built-in plans).
    pub seeds: Vec<u64>,
    /// When, UTC, RFC 3339.
    pub date: String,
}

/// A QEMU binary and its version line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuBinary {
    /// The path run.
    pub path: String,
    /// First line of `--version`, or why it could not be read.
    pub version: String,
}

impl Tested {
    /// `key value` pairs, for JUnit properties and reproducer comments.
    pub fn pairs(&self) -> Vec<(String, String)> {
        use alloc::string::ToString as _;
        let mut v = alloc::vec![
            ("ptcheck".to_string(), self.ptcheck.clone()),
            ("command".into(), self.command.clone()),
            ("backend".into(), self.backend.clone()),
            ("builder".into(), self.builder.clone()),
            ("traced".into(), self.traced.to_string()),
            ("cpu".into(), self.cpu.clone()),
            ("date".into(), self.date.clone()),
        ];
        if let Some(q) = &self.qemu {
            v.push(("qemu".into(), q.path.clone()));
            v.push(("qemu-version".into(), q.version.clone()));
        }
        if !self.seeds.is_empty() {
            let s: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
            v.push(("seeds".into(), s.join(" ")));
        }
        v
    }
}

/// `ptcheck run --report`: the built-in plans of every asked regime on one backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// What was tested.
    pub tested: Tested,
    /// Backend that ran the plans.
    pub backend: String,
    /// One entry per regime.
    pub configs: Vec<ConfigReport>,
    /// A fuzz run on the same backend, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuzz: Option<FuzzLine>,
    /// Failure-path checks of the VM backend: (name, passed, what happened).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_checks: Vec<(String, bool, String)>,
}

/// One regime's line of a [`RunReport`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigReport {
    /// Regime name ("4k-52@48" for a folded-down variant).
    pub name: String,
    /// Plans run.
    pub plans: usize,
    /// Plans whose every check passed.
    pub passed: usize,
    /// Plans with at least one failed check: the builder is wrong.
    pub failed: usize,
    /// Plans that could not be checked (bad-plan, over-capacity, infrastructure).
    pub not_checked: usize,
    /// Plans the builder under test cannot express (`n/a`: never counted as passed).
    pub not_applicable: usize,
    /// Outcome kind ("done", "bug", "crash", "bad-plan", "over-capacity",
    /// "infrastructure") -> plans that ended that way.
    pub outcomes: BTreeMap<String, usize>,
    /// Check name -> plans that passed it.
    pub checks: BTreeMap<String, usize>,
    /// Pages whose translation was checked by the MMU (0 when no MMU ran).
    pub hw_probes: u64,
    /// True when the CPU could not run this regime, so only memory was checked.
    pub hw_unsupported: bool,
    /// "plan: outcome, [check] message" for each plan that failed or was not checked.
    pub failures: Vec<String>,
    /// What the tracer counted over the regime's plans (traced runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<crate::trace::Counts>,
}

/// A fuzz run's line of a [`RunReport`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FuzzLine {
    /// Plans run.
    pub plans: u64,
    /// Plans that failed a check (shrunk to reproducers).
    pub failed: usize,
    /// Plans that could not be checked, by cause (never shrunk, never reproducers).
    pub not_checked: usize,
    /// Plans per second.
    pub plans_per_s: f64,
    /// Pages checked by the MMU.
    pub hw_probes: u64,
}

/// `ptcheck linux --report`: one entry per (kernel, `-cpu`) run. `L` is the layout
/// record (the host's `Layout`; a reader that does not need it uses
/// `serde::de::IgnoredAny`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinuxReports<L> {
    /// The runs.
    pub runs: Vec<LinuxReport<L>>,
}

impl<L> Default for LinuxReports<L> {
    fn default() -> Self {
        LinuxReports { runs: Vec::new() }
    }
}

/// One `ptcheck linux` run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinuxReport<L> {
    /// What was tested (absent in reports written before it was recorded).
    #[serde(default)]
    pub tested: Option<Tested>,
    /// `linux-6.12`-style id from the kernel's release.
    pub backend: String,
    /// The release (`uname -r`).
    pub release: String,
    /// The kernel file.
    pub kernel: String,
    /// QEMU `-cpu`.
    pub cpu: String,
    /// Seed and count of the layout stream.
    pub seed: u64,
    /// See `seed`.
    pub count: u64,
    /// Per regime.
    pub regimes: BTreeMap<String, RegimeRow>,
    /// Per layout.
    pub layouts: Vec<LayoutRow<L>>,
}

/// How one layout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutOutcome {
    /// Every check passed.
    Passed,
    /// A check failed: the kernel's tables are wrong.
    Failed,
    /// It could not be checked (QEMU would not start or died, a checker limit):
    /// never a pass.
    NotChecked,
    /// The kernel crashed (panic, oops, reboot, power-off, hang) before its init: the
    /// kernel's failure, named with where it stopped.
    Crash,
}

impl core::fmt::Display for LayoutOutcome {
    /// As in the JSON: `passed`, `failed`, `not-checked`, `crash`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LayoutOutcome::Passed => "passed",
            LayoutOutcome::Failed => "failed",
            LayoutOutcome::NotChecked => "not-checked",
            LayoutOutcome::Crash => "crash",
        })
    }
}

/// How one layout went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayoutRow<L> {
    /// Index in the stream.
    pub index: u64,
    /// How it ended.
    pub outcome: LayoutOutcome,
    /// The regime the kernel ran in (from TCR_EL1), or `?`.
    pub regime: String,
    /// Failed checks, or the reason it was not checked.
    pub why: Vec<String>,
    /// Tables walked.
    pub tables: usize,
    /// Seconds from QEMU start to the init marker.
    pub boot_secs: f64,
    /// The reproducer, for a failed layout.
    pub reproducer: Option<String>,
    /// The linear map's shape: bytes mapped per kind of leaf (`L2` blocks, `L3c`
    /// contiguous pages, ...), to compare kernels on the same layout.
    #[serde(default)]
    pub linear_shape: BTreeMap<String, u64>,
    /// With `--count-calls`: each call of the function, counted from its entry to its
    /// return by the tracer.
    #[serde(default)]
    pub calls: Vec<crate::trace::Counts>,
    /// The layout.
    pub layout: L,
}

/// Per regime, summed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RegimeRow {
    /// Layouts booted.
    pub layouts: u64,
    /// Every check passed.
    pub passed: u64,
    /// A check failed.
    pub failed: u64,
    /// Not checked (QEMU failed, ...): never a pass.
    pub not_checked: u64,
    /// The kernel crashed before its init.
    #[serde(default)]
    pub crashed: u64,
    /// Tables walked, summed.
    pub tables_walked: u64,
    /// Mean seconds per boot.
    pub secs_per_boot: f64,
}

/// `ptcheck kernel-costs`' JSON report: one entry per kernel (`--report-append` adds).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CostsReports {
    /// The kernels.
    pub runs: Vec<KernelCosts>,
}

/// What one kernel's early page-table code executed, per RAM size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelCosts {
    /// What was tested.
    pub tested: Option<Tested>,
    /// The kernel file, and what it said it is (`uname -r`).
    pub kernel: String,
    /// See `kernel`.
    pub release: String,
    /// A label the caller gave it (`6.1 small 4k-48`), or the release.
    pub label: String,
    /// The regime it ran in (from TCR_EL1 at its init, 1 GiB boot).
    pub regime: String,
    /// Whether `map_mem` could be bracketed (it is in the kernel's symbols), and if
    /// not, why and what was counted instead.
    pub map_mem: Option<u64>,
    /// See `map_mem`.
    pub map_mem_note: Option<String>,
    /// Where the fixmap's PTE tables are (physical), or why fixmap writes are not
    /// counted.
    pub fixmap: Result<(u64, u64), String>,
    /// One row per RAM size.
    pub rows: Vec<CostsRow>,
}

/// One boot, stopped when `paging_init()` returned.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CostsRow {
    /// Bytes of RAM, one bank.
    pub ram: u64,
    /// `passed`: counted; `crash` / `not-checked`: never reached the stop, `why` says.
    pub outcome: LayoutOutcome,
    /// Why it was not counted.
    pub why: Vec<String>,
    /// `map_mem()`'s call (absent where it is inlined).
    pub map_mem: Option<crate::trace::Call>,
    /// `paging_init()`'s call.
    pub paging_init: Option<crate::trace::Call>,
    /// Seconds from QEMU's start to the stop (emulated, traced).
    pub secs: f64,
    /// The largest resident set of QEMU (KiB) and of ptcheck itself: what such a
    /// layout costs this machine.
    pub qemu_peak_kib: Option<u64>,
    /// See `qemu_peak_kib`.
    pub ptcheck_peak_kib: Option<u64>,
    /// ptcheck's own builders (`linux-6.9`, `linux`) mapping the same RAM page by
    /// page in the same regime, as they count themselves.
    #[serde(default)]
    pub builders: Vec<BuilderCosts>,
}

impl CostsRow {
    /// What the cost tables show for this row, when it was counted: `map_mem`'s call
    /// where the kernel has it out of line, else `paging_init`'s (which then holds
    /// `map_mem` inlined), with the function's name.
    pub fn counted(&self) -> Option<(&'static str, crate::trace::Call)> {
        if self.outcome != LayoutOutcome::Passed {
            return None;
        }
        match (self.map_mem, self.paging_init) {
            (Some(c), _) => Some(("map_mem", c)),
            (None, Some(c)) => Some(("paging_init", c)),
            _ => None,
        }
    }
}

/// What one of ptcheck's builders counted building one map.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BuilderCosts {
    /// `linux-6.9` or `linux`.
    pub builder: String,
    /// Tables it built.
    pub tables: u64,
    /// Fixmap slots set and cleared.
    pub fixmap_sets: u64,
    /// See `fixmap_sets`.
    pub fixmap_clears: u64,
    /// TLB invalidations, `dsb`s, table clears and descriptors written.
    pub tlbis: u64,
    /// See `tlbis`.
    pub dsbs: u64,
    /// See `tlbis`.
    pub table_clears: u64,
    /// See `tlbis`.
    pub descriptor_writes: u64,
}

/// What a `ptcheck` command line needs prepared before it runs. `ptcheck needs
/// <command line>` answers from ptcheck's own parser, so `cargo xtask` never parses
/// ptcheck's flags itself (one parser: a new flag cannot be missed by the other).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// The guest image: the command runs plans in a VM.
    pub guest_image: bool,
    /// QEMU: the QEMU backend, `auto` where this host's KVM cannot run arm64, a kernel.
    pub qemu: bool,
    /// QEMU 10 and the tracer plugin: `--trace`, a traced reproducer, a kernel boot.
    pub tracing: bool,
    /// A ptcheck built with the bug catalogue: `mutants`, `--mutant`.
    pub catalogue: bool,
    /// The catalogue's guest image, to be given as `--guest` (a VM runs a catalogue
    /// variant and no `--guest` was given).
    pub catalogue_image: bool,
    /// The command line does not parse: running it makes ptcheck say why.
    pub unparsed: bool,
}
