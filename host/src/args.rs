//! The command line: clap structs and the parsers for durations and shards. Each
//! command's arguments turn into the library's option structs here; `main.rs` only
//! dispatches.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use ptcheck_host::backend::open::{BackendChoice, BackendOptions};
use ptcheck_host::backend::vm::VmPolicy;
use ptcheck_shared::report::Needs;
use ptcheck_shared::TranslationConfig;

#[derive(Parser)]
#[command(name = "ptcheck", about = "Build arm64 stage-1 page tables the Linux way and prove them correct")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Run the built-in plans and verify them.
    Run(RunArgs),
    /// Verify generated plans; shrink every failure to a reproducer.
    Fuzz(FuzzArgs),
    /// Run a reproducer again: its outcome, expected vs actual mappings, failing checks.
    Replay(ReplayArgs),
    /// Measure plans/s on native, QEMU persistent and QEMU boot-per-plan, in one run.
    Bench(BenchArgs),
    /// List the regimes ptcheck knows.
    Configs,
    /// Boot a real arm64 kernel, stop it once its init is up, and check its tables.
    Linux(LinuxArgs),
    /// Count what a real kernel's map_mem() and paging_init() execute (TLBIs by op,
    /// DSBs, ISBs, fixmap PTE writes, tables, instructions), traced, with rodata=full
    /// on one bank of each --ram size, each boot ended as paging_init() returns.
    KernelCosts(KernelCostsArgs),
    /// Run the bug catalogue: is every variant caught? (`mutants` builds only.)
    Mutants(MutantsArgs),
    /// What a command line needs prepared (guest image, QEMU, tracer, catalogue), as
    /// JSON: `cargo xtask` asks instead of parsing ptcheck's flags.
    #[command(hide = true)]
    Needs(NeedsArgs),
}

/// How a VM runs: persistent or one boot per plan.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub(crate) enum ModeChoice {
    /// One QEMU boot serves every plan through the mailbox.
    Persistent,
    /// A fresh QEMU for each plan.
    BootPerPlan,
}

#[derive(clap::Args, Clone)]
pub(crate) struct VmArgs {
    /// The guest image (default: $PTCHECK_GUEST_IMAGE, else the xtask build output).
    #[arg(long)]
    pub(crate) guest: Option<PathBuf>,
    /// QEMU: persistent guest or one boot per plan.
    #[arg(long, value_enum, default_value = "persistent")]
    pub(crate) qemu_mode: ModeChoice,
    /// QEMU `-cpu` model.
    #[arg(long, default_value = "max")]
    pub(crate) cpu: String,
    /// Seconds one plan may take before the guest counts as hung (1 to 86400).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) timeout: u64,
    /// The builder under test: linux (after the seed's change; the default), linux-6.9
    /// (before it), aarch64-paging. `replay` defaults to the reproducer's builder.
    #[arg(long)]
    pub(crate) builder: Option<String>,
    /// Run a bug-catalogue variant instead of the clean builder (`mutants` builds only;
    /// VM backends need the catalogue guest image `cargo xtask mutants` builds).
    #[arg(long)]
    pub(crate) mutant: Option<String>,
    /// Observe every build with the tracer plugin (QEMU 10; `cargo xtask` fetches it):
    /// adds the zeroed_at_link, ordered_link and observed checks.
    #[arg(long)]
    pub(crate) trace: bool,
}

impl VmArgs {
    pub(crate) fn options(&self, choice: BackendChoice) -> BackendOptions {
        BackendOptions {
            choice,
            guest: self.guest.clone(),
            cpu: self.cpu.clone(),
            policy: VmPolicy {
                plan_timeout: Duration::from_secs(self.timeout),
                boot_per_plan: self.qemu_mode == ModeChoice::BootPerPlan,
                ..VmPolicy::default()
            },
            mutant: self.mutant.clone(),
            builder: self.builder.clone().unwrap_or_else(|| "linux".into()),
            trace: self.trace,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Where to run the plans.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) backend: BackendChoice,
    /// A regime name (4k-39 … 64k-52, 4k-52@48 for a folded-down variant) or "all".
    #[arg(long, default_value = "all")]
    pub(crate) config: String,
    /// Write the JSON report here.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Write a JUnit XML report here (one test case per plan and regime).
    #[arg(long)]
    pub(crate) junit: Option<PathBuf>,
    /// Write a self-contained HTML report here (per regime; each failing plan drawn).
    #[arg(long)]
    pub(crate) html: Option<PathBuf>,
    /// Self-test: verify the first plan of every config against an expectation one
    /// page off. Those plans must fail; proves the backend's failures are real.
    #[arg(long)]
    pub(crate) inject_wrong_expectation: bool,
    #[command(flatten)]
    pub(crate) vm: VmArgs,
}

#[derive(clap::Args)]
pub(crate) struct FuzzArgs {
    /// Where to run the plans.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) backend: BackendChoice,
    /// A regime name or "all" (plans alternate between regimes).
    #[arg(long, default_value = "all")]
    pub(crate) config: String,
    /// The run's seed: same seed, same plans, on every machine.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Plans in the run (default: until --time ends, else 1000).
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Stop after this long ("90s", "5m", "1h").
    #[arg(long, value_parser = parse_duration)]
    pub(crate) time: Option<Duration>,
    /// Run only shard i of n ("2/4"): n shards together run exactly the plans of one run.
    #[arg(long, default_value = "1/1", value_parser = parse_shard)]
    pub(crate) shard: (u64, u64),
    /// Parallel workers (native only; default: one per core; 1 to 256).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) jobs: Option<u16>,
    /// Run every plan on this builder too and require the same tables (`linux` and
    /// `linux-6.9`: bit-identical; others: the same translations).
    #[arg(long)]
    pub(crate) differential: Option<String>,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Write a JSON report (what was tested: builder, backend, QEMU, CPU, seed; the
    /// run's counts) here.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Write a self-contained HTML report here (each failure's reproducer drawn).
    #[arg(long)]
    pub(crate) html: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) vm: VmArgs,
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// The reproducer file (target/ptcheck/repro/*.repro, or one written by hand).
    pub(crate) file: PathBuf,
    /// Where to run it.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) backend: BackendChoice,
    #[command(flatten)]
    pub(crate) vm: VmArgs,
    /// Also write a self-contained HTML report (expected vs actual drawn) here.
    #[arg(long)]
    pub(crate) html: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Minimum seconds per figure (1 to 3600).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) seconds: u64,
    /// Instead: what building costs per table (fixmap sets and clears, TLB
    /// invalidations, barriers, clears, writes) on linux-6.9 vs linux.
    #[arg(long)]
    pub(crate) costs: bool,
    /// Instead: the tracer's cost, side by side (system QEMU, QEMU 10 untraced, QEMU 10
    /// traced): built-in plans/s, and with --kernel/--initrd a real kernel's boot.
    #[arg(long)]
    pub(crate) trace_cost: bool,
    /// With --trace-cost: the kernel to boot.
    #[arg(long, requires = "initrd")]
    pub(crate) kernel: Option<PathBuf>,
    /// With --trace-cost: its initramfs.
    #[arg(long, requires = "kernel")]
    pub(crate) initrd: Option<PathBuf>,
    /// With --trace-cost: boots per kernel figure (1 to 20).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) boots: u32,
    #[command(flatten)]
    pub(crate) vm: VmArgs,
}

#[derive(clap::Args)]
pub(crate) struct MutantsArgs {
    /// Where to run (native, qemu; kvm on arm64 hosts).
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) backend: BackendChoice,
    /// Fuzzed plans per regime, after the built-in ones.
    #[arg(long, default_value_t = 40)]
    pub(crate) count: u64,
    /// Seed of the fuzzed plans.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Only these variants (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Just list the variant names, one per line.
    #[arg(long)]
    pub(crate) list: bool,
    #[command(flatten)]
    pub(crate) vm: VmArgs,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    // A year is more than any run needs; past it the number is a typo.
    const MAX_SECS: u64 = 366 * 24 * 3600;
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 90s, 5m or 1h"))?;
    let per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("'{s}': the unit must be s, m or h")),
    };
    match n.checked_mul(per_unit) {
        Some(0) => Err(format!("'{s}': a duration of 0 checks nothing")),
        Some(secs) if secs <= MAX_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(format!("'{s}' is longer than a year: use at most {}h", MAX_SECS / 3600)),
    }
}

pub(crate) fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("'{s}' is not a shard like 1/4 (1 <= i <= n)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

pub(crate) fn configs(sel: &str) -> anyhow::Result<Vec<TranslationConfig>> {
    if sel == "all" {
        return Ok(TranslationConfig::all().collect());
    }
    let Some(cfg) = TranslationConfig::parse(sel) else {
        let names: Vec<String> = TranslationConfig::all().map(|c| c.to_string()).collect();
        bail!("unknown config '{sel}': use one of {} or all", names.join(", "));
    };
    Ok(vec![cfg])
}

/// The kernel a real-kernel command boots (`linux`, `kernel-costs`).
#[derive(clap::Args)]
pub(crate) struct KernelArgs {
    /// The kernel (arm64 Image, or gzip'd as Debian ships it).
    #[arg(long)]
    pub(crate) kernel: PathBuf,
    /// The initramfs (`cargo xtask linux` builds it): its /init prints the kernel's
    /// symbols and the up marker.
    #[arg(long)]
    pub(crate) initrd: PathBuf,
    /// QEMU -cpu.
    #[arg(long, default_value = "max,pauth-impdef=on")]
    pub(crate) cpu: String,
}

#[derive(clap::Args)]
pub(crate) struct LinuxArgs {
    #[command(flatten)]
    pub(crate) k: KernelArgs,
    /// Layout stream seed (layouts are RAM banks with holes and odd edges, no-map
    /// regions, the kernel's place, the command line, KASLR; the same seed and index
    /// give the same layout anywhere).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Layouts in the stream (1 to 1000000).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) count: u64,
    /// Run only shard i of n ("2/4") of the stream.
    #[arg(long, default_value = "1/1", value_parser = parse_shard)]
    pub(crate) shard: (u64, u64),
    /// Boot every layout with this command line instead of the generated one.
    #[arg(long, value_enum)]
    pub(crate) cmdline: Option<ptcheck_host::linux::layout::Cmdline>,
    /// Write a JSON report (per regime and per layout) here.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Boots at a time (default: one per core; each QEMU is one vCPU thread).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) jobs: Option<u64>,
    /// Add this run to the runs already in `--report` (one report over several kernels).
    #[arg(long, requires = "report")]
    pub(crate) report_append: bool,
    /// Test only: plant a fault in the tables before the check (it must then fail).
    #[arg(long, value_enum, hide = true)]
    pub(crate) plant: Option<ptcheck_host::linux::Plant>,
    /// Seconds the kernel may take to reach init (1 to 600).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) timeout: u64,
    /// Do not trace the boot (the tracer plugin on QEMU 10 watches every store,
    /// barrier and TLBI from reset: zeroed_at_link, ordered_link); runs the system QEMU.
    #[arg(long)]
    pub(crate) no_trace: bool,
    /// Count what one kernel function executes from its entry to its return, traced:
    /// instructions, TLBIs, DSBs, DMBs, ISBs, stores, links (`map_mem`; where it is
    /// inlined, its caller `paging_init` is counted, and said). Needs the kernel's
    /// System.map next to it (a kernel built here).
    #[arg(long, value_name = "FUNCTION", conflicts_with = "no_trace")]
    pub(crate) count_calls: Option<String>,
    /// Every layout one bank of this much RAM (`16G`, `64G`, `256G`; a sparse memfd:
    /// only what the kernel touches costs) at the bottom of RAM, nothing reserved, no
    /// KASLR, the default command line: the sizes the seed's cover letter measured.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) ram: Option<u64>,
    /// Also write a self-contained HTML report (each layout drawn) here.
    #[arg(long)]
    pub(crate) html: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct KernelCostsArgs {
    #[command(flatten)]
    pub(crate) k: KernelArgs,
    /// RAM sizes, one bank each (repeat: --ram 16G --ram 64G --ram 256G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, required = true)]
    pub(crate) ram: Vec<u64>,
    /// The kernel's name in the table (default: its release).
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Add this kernel to the kernels already in --report.
    #[arg(long, requires = "report")]
    pub(crate) report_append: bool,
    /// Draw the report's kernels (all of them, with --report-append) as bar charts in
    /// one self-contained HTML page here.
    #[arg(long)]
    pub(crate) html: Option<PathBuf>,
    /// Seconds each boot may take to reach paging_init's return (1 to 900).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=900))]
    pub(crate) timeout: u64,
}

/// `16G`, `512M`, `1T` or bytes, as a byte count.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let (num, shift) = match t.as_bytes().last() {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        Some(b'T') => (&t[..t.len() - 1], 40),
        _ => (t.as_str(), 0),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (16G, 512M, or bytes)"))?;
    n.checked_shl(shift).filter(|v| v >> shift == n && n > 0).ok_or_else(|| format!("'{s}': zero or too big"))
}

#[derive(clap::Args)]
pub(crate) struct NeedsArgs {
    /// The ptcheck command line to answer for (`run --backend qemu --trace`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

/// What `command` (a ptcheck command line without the program name) needs prepared,
/// decided on the parsed arguments, as the command itself will see them.
pub(crate) fn needs(command: &[String]) -> Needs {
    let argv = std::iter::once("ptcheck".to_string()).chain(command.iter().cloned());
    let Ok(cli) = Cli::try_parse_from(argv) else {
        return Needs { unparsed: true, ..Needs::default() };
    };
    let vm = |choice: BackendChoice, vm: &VmArgs, traced: bool, catalogue: bool| {
        let in_vm = choice != BackendChoice::Native;
        Needs {
            guest_image: in_vm,
            qemu: match choice {
                BackendChoice::Qemu => true,
                BackendChoice::Auto => ptcheck_host::backend::open::kvm_usable().is_err(),
                BackendChoice::Native | BackendChoice::Kvm => false,
            },
            tracing: in_vm && (vm.trace || traced),
            catalogue,
            catalogue_image: in_vm && catalogue && vm.guest.is_none(),
            unparsed: false,
        }
    };
    match &cli.cmd {
        Cmd::Run(a) => vm(a.backend, &a.vm, false, a.vm.mutant.is_some()),
        Cmd::Fuzz(a) => vm(a.backend, &a.vm, false, a.vm.mutant.is_some()),
        Cmd::Replay(a) => {
            let text = std::fs::read_to_string(&a.file).unwrap_or_default();
            if ptcheck_host::linux::command::is_linux_repro(&text) {
                // A kernel boot: QEMU, traced where the tracer can be had.
                return Needs { qemu: true, tracing: true, ..Needs::default() };
            }
            let traced = ptcheck_host::repro::parse(&text).is_ok_and(|r| r.traced);
            vm(a.backend, &a.vm, traced, a.vm.mutant.is_some())
        }
        Cmd::Mutants(a) => vm(a.backend, &a.vm, false, true),
        Cmd::Bench(a) if a.costs => Needs::default(),
        Cmd::Bench(a) => vm(BackendChoice::Qemu, &a.vm, a.trace_cost, a.vm.mutant.is_some()),
        Cmd::Linux(a) => Needs { qemu: true, tracing: !a.no_trace, ..Needs::default() },
        Cmd::KernelCosts(_) => Needs { qemu: true, tracing: true, ..Needs::default() },
        Cmd::Configs | Cmd::Needs(_) => Needs::default(),
    }
}
