//! The command line of `cargo xtask`, as clap structs: xtask's own flags are typed
//! here; a command that runs `ptcheck` passes ptcheck's flags through untouched and
//! asks ptcheck (`ptcheck needs …`) what they need prepared, so the two never parse
//! the same flags twice.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "ptcheck's build, test, fuzz and bench entry points")]
pub struct Xtask {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Build the aarch64 guest image.
    BuildGuest,
    /// Build what is needed, then run the built-in plans (`ptcheck run`; default:
    /// --backend auto --config all).
    #[command(disable_help_flag = true)]
    Run(Forward),
    /// Every test: lints, unit tests, the QEMU backend tests, every built-in plan on
    /// every config, a short fuzz run on native, QEMU and KVM (nested on x86), real
    /// kernels.
    Test,
    /// Generated plans (`ptcheck fuzz`: --backend --config --seed --count --shard i/n
    /// --time 60s); failures shrink to reproducers.
    #[command(disable_help_flag = true)]
    Fuzz(Forward),
    /// The bug catalogue (`ptcheck mutants`): every variant caught where it applies,
    /// the clean builder passing, in one run.
    #[command(disable_help_flag = true)]
    Mutants(Forward),
    /// Run a reproducer again (`ptcheck replay FILE [--backend B]`), with the expected
    /// vs actual mappings.
    #[command(disable_help_flag = true)]
    Replay(Forward),
    /// Benchmarks: plans/s per backend; --scale, --costs or --trace instead.
    Bench(Bench),
    /// Boot real arm64 kernels on generated memory layouts and check their tables.
    Linux(Box<Linux>),
    /// The KVM backend's matrix inside an emulated arm64 Linux with KVM (EL2 emulated).
    NestedKvm(NestedKvm),
}

/// A command that runs `ptcheck <command>` with these arguments.
#[derive(Args)]
pub struct Forward {
    /// ptcheck's arguments (`cargo run -p ptcheck-host -- <command> --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct Bench {
    /// 1-256 GiB page-granular maps per stage on native and QEMU, and the builder vs
    /// aarch64-paging vs the memory floor (`host/benches/scale.rs`).
    #[arg(long, conflicts_with_all = ["costs", "trace"])]
    pub scale: bool,
    /// With --scale: native only (no QEMU).
    #[arg(long, requires = "scale")]
    pub native_only: bool,
    /// With --scale: the small sizes only.
    #[arg(long, requires = "scale")]
    pub quick: bool,
    /// What building costs per table on linux-6.9 vs linux.
    #[arg(long, conflicts_with = "trace")]
    pub costs: bool,
    /// The tracer's cost side by side: plans/s and Debian 6.12's boot, on the system
    /// QEMU, QEMU 10 untraced and QEMU 10 traced.
    #[arg(long)]
    pub trace: bool,
    /// The kernel developer's loop on Debian's 6.12 source built for all ten regimes:
    /// touch arch/arm64/mm/mmu.c, rebuild every regime and boot two layouts each,
    /// every build then every boot vs each boot while the next regime builds; then a
    /// second copy of the tree built cold vs from the cache.
    #[arg(long, conflicts_with_all = ["scale", "costs", "trace"])]
    pub patch_loop: bool,
    /// The seed series' cost table on the real kernel code: Debian's 6.1 and 6.12 and
    /// small kernels from their sources (4k-48; the ten regimes for 6.12 at 16 GiB),
    /// each counted by `ptcheck kernel-costs` on 16, 64 and 256 GiB with rodata=full,
    /// side by side with the cover letter's published figures and ptcheck's builders.
    #[arg(long, conflicts_with_all = ["scale", "costs", "trace", "patch_loop"])]
    pub linux_costs: bool,
    /// With --linux-costs: two trees to compare instead (before, after), 4k-48.
    #[arg(long, requires = "linux_costs", num_args = 1)]
    pub source: Vec<PathBuf>,
    /// With --linux-costs: the JSON report (default target/linux/costs.json).
    #[arg(long, requires = "linux_costs")]
    pub report: Option<PathBuf>,
    /// With --linux-costs: the bar charts, one HTML page (default target/linux/costs.html).
    #[arg(long, requires = "linux_costs")]
    pub html: Option<PathBuf>,
    /// With --linux-costs: only the 16 GiB slice of Debian's 6.1 and 6.12 (what
    /// `cargo xtask test` runs).
    #[arg(long, requires = "linux_costs")]
    pub slice: bool,
    /// With --patch-loop: the regimes (default all).
    #[arg(long, requires = "patch_loop")]
    pub regimes: Option<String>,
    /// Minimum seconds per figure.
    #[arg(long)]
    pub seconds: Option<u64>,
    /// With --trace: boots per kernel figure.
    #[arg(long, requires = "trace")]
    pub boots: Option<u32>,
}

impl Bench {
    /// The flags `ptcheck bench` takes from this command line.
    pub fn forwarded(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = self.seconds {
            out.extend(["--seconds".to_string(), s.to_string()]);
        }
        if let Some(b) = self.boots {
            out.extend(["--boots".to_string(), b.to_string()]);
        }
        out
    }
}

/// Which Debian kernel release.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum, Debug)]
pub enum DebianVersion {
    /// bookworm's 6.1: before the seed's change.
    #[value(name = "6.1")]
    V6_1,
    /// trixie's 6.12: after it.
    #[value(name = "6.12")]
    V6_12,
}

impl DebianVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            DebianVersion::V6_1 => "6.1",
            DebianVersion::V6_12 => "6.12",
        }
    }
}

#[derive(Args)]
pub struct Linux {
    /// Two reports of the same seed: different outcomes are findings.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"], exclusive = true)]
    pub compare: Option<Vec<PathBuf>>,
    /// Your kernel image (arm64 Image or vmlinuz).
    #[arg(long, conflicts_with_all = ["debian", "build"])]
    pub kernel: Option<PathBuf>,
    /// Debian's kernel (default: 6.1 and 6.12), or with --build Debian's source.
    #[arg(long, value_enum)]
    pub debian: Option<DebianVersion>,
    /// Debian's flavour: 4k or 16k (6.12 only).
    #[arg(long, value_parser = ["4k", "16k"])]
    pub flavour: Option<String>,
    /// QEMU -cpu (default: each kernel's own list).
    #[arg(long)]
    pub cpu: Option<String>,
    /// The JSON report (default: target/linux/last-report.json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Small kernels from source for these regimes ("all" or a comma list).
    #[arg(long)]
    pub build: Option<String>,
    /// Your kernel tree (built out of tree, never written to); with --build or --fuzz.
    #[arg(long, conflicts_with = "debian")]
    pub source: Option<PathBuf>,
    /// A tree derived from the source with a planted fault; with --build or --fuzz.
    #[arg(long)]
    pub plant_tree: Option<String>,
    /// The layout stream on small kernels for every regime asked (default all).
    #[arg(long)]
    pub fuzz: bool,
    /// With --fuzz: the regimes.
    #[arg(long, requires = "fuzz")]
    pub regime: Option<String>,
    /// Layout stream seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Layouts per kernel (with --fuzz: over all kernels).
    #[arg(long)]
    pub count: Option<u64>,
    /// Run only shard i of n ("2/4").
    #[arg(long)]
    pub shard: Option<String>,
    /// Boot every layout with this command line instead of the generated one.
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Boots at a time.
    #[arg(long)]
    pub jobs: Option<u64>,
    /// Seconds a kernel may take to reach init.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Do not trace the boots.
    #[arg(long)]
    pub no_trace: bool,
    /// After `--`: more `ptcheck linux` arguments, passed as they are.
    #[arg(last = true)]
    pub ptcheck: Vec<String>,
}

impl Linux {
    /// The flags `ptcheck linux` takes from this command line (all but the kernel,
    /// CPU and report, which the xtask sets per kernel), with `count` layouts.
    pub fn forwarded(&self, count: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        let mut flag = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                out.extend([name.to_string(), v]);
            }
        };
        flag("--seed", self.seed.map(|s| s.to_string()));
        flag("--count", count.map(|c| c.to_string()));
        flag("--shard", self.shard.clone());
        flag("--cmdline", self.cmdline.clone());
        flag("--jobs", self.jobs.map(|j| j.to_string()));
        flag("--timeout", self.timeout.map(|t| t.to_string()));
        if self.no_trace {
            out.push("--no-trace".into());
        }
        out.extend(self.ptcheck.iter().cloned());
        out
    }
}

/// `nested-kvm`: the options of one nested run.
#[derive(Args, Clone)]
pub struct NestedKvm {
    /// Write the run's JSON report here (on the host).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Verify the first plan of every regime against a wrong expectation inside: the
    /// run must then fail, proving failures on KVM reach the exit code.
    #[arg(long)]
    pub self_test: bool,
    /// Give up (and fail) after this many seconds.
    #[arg(long = "timeout", value_name = "SECS", default_value = "900", value_parser = seconds)]
    pub timeout: Duration,
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse().map(Duration::from_secs).map_err(|_| format!("'{s}' is not a number of seconds"))
}
