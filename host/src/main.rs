//! `ptcheck`: run the built-in plans on a backend and verify every table they build.
//!
//! Started as `/init` (PID 1) it is the init of the nested-KVM proof instead: see
//! `init_mode`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use ptcheck_host::backend::native::NativeBackend;
use ptcheck_host::backend::qemu::{self, find_in_path, QemuOptions};
use ptcheck_host::backend::vm::VmPolicy;
use ptcheck_host::backend::Backend;
use ptcheck_host::report::{ConfigReport, Report};
use ptcheck_host::run::{run_against, Expectation};
use ptcheck_host::{plans, repro};
use ptcheck_shared::TranslationConfig;

mod init_mode;

#[derive(Parser)]
#[command(name = "ptcheck", about = "Build arm64 stage-1 page tables the Linux way and prove them correct")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the built-in plans and verify them.
    Run(RunArgs),
    /// Verify generated plans; shrink every failure to a reproducer.
    Fuzz(FuzzArgs),
    /// Run a reproducer again; show the failing check and expected vs actual mappings.
    Replay(ReplayArgs),
    /// Measure plans/s on native, QEMU persistent and QEMU boot-per-plan, in one run.
    Bench(BenchArgs),
    /// List the regimes ptcheck knows.
    Configs,
    /// Run the bug catalogue: is every variant caught? (`mutants` builds only.)
    #[cfg(feature = "mutants")]
    Mutants(MutantsArgs),
}

#[cfg(feature = "mutants")]
#[derive(clap::Args)]
struct MutantsArgs {
    /// Where to run (native, qemu; kvm on arm64 hosts).
    #[arg(long, value_enum, default_value = "native")]
    backend: BackendChoice,
    /// Fuzzed plans per regime, after the built-in ones.
    #[arg(long, default_value_t = 40)]
    count: u64,
    /// Seed of the fuzzed plans.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only these variants (comma separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Directory with one guest image per variant, `ptcheck-guest-image-<name>`
    /// (VM backends; `cargo xtask mutants` builds them).
    #[arg(long)]
    guest_dir: Option<PathBuf>,
    /// Just list the variant names, one per line.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    vm: VmArgs,
}

#[cfg(feature = "mutants")]
fn mutants(args: &MutantsArgs) -> anyhow::Result<bool> {
    use ptcheck_guest::mutation::ALL_VARIANTS;
    use ptcheck_host::mutants::{run_variant, table};
    if args.list {
        for v in ALL_VARIANTS {
            println!("{}", v.name);
        }
        return Ok(true);
    }
    for name in &args.only {
        if ALL_VARIANTS.iter().all(|v| v.name != *name) {
            bail!("unknown variant '{name}'");
        }
    }
    let variants: Vec<_> = std::iter::once(None)
        .chain(ALL_VARIANTS.iter().filter(|v| args.only.is_empty() || args.only.contains(&v.name.to_string())).map(Some))
        .collect();
    let configs: Vec<TranslationConfig> = TranslationConfig::all().collect();
    let backend_for = |v: Option<&'static ptcheck_guest::mutation::Variant>| -> anyhow::Result<Box<dyn Backend>> {
        let mut vm = VmArgs { mutant: None, ..args.vm.clone() };
        if args.backend == BackendChoice::Native {
            vm.mutant = v.map(|v| v.name.to_string());
            return Ok(Box::new(vm.native()?));
        }
        if let Some(v) = v {
            let dir = args.guest_dir.clone().ok_or_else(|| anyhow::anyhow!("--guest-dir is needed for VM backends: `cargo xtask mutants` builds one image per variant"))?;
            vm.guest = Some(dir.join(format!("ptcheck-guest-image-{}", v.name)));
        }
        Ok(open_backend(args.backend, &vm)?.0)
    };
    let name = backend_for(None)?.name();
    println!("bug catalogue on {name}: built-in plans + {} fuzzed plans (seed {}) per regime, {} regimes", args.count, args.seed, configs.len());
    let mut outcomes = Vec::new();
    for v in variants {
        let mut backend = backend_for(v)?;
        let o = run_variant(backend.as_mut(), v, &configs, args.count, args.seed);
        println!("  {:<22} {}", o.name(), if o.ok() { "ok" } else if v.is_none() { "CLEAN BUILDER FAILED" } else { "NOT CAUGHT everywhere" });
        outcomes.push(o);
    }
    print!("{}", table(&outcomes, name));
    let by_mmu: Vec<_> = outcomes.iter().filter(|o| o.variant.is_some() && o.checks().contains("hw_probe")).map(|o| o.name()).collect();
    if name != "native" {
        println!("caught by the MMU cross-check (hw_probe): {}", if by_mmu.is_empty() { "none".into() } else { by_mmu.join(", ") });
    }
    let ok = outcomes.iter().all(|o| o.ok());
    println!("mutants: {}", if ok { "every variant caught on every regime where it applies; the clean builder passed everything" } else { "FAILED" });
    Ok(ok)
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub(crate) enum BackendChoice {
    /// KVM if it can run an arm64 guest, else QEMU.
    Auto,
    /// In-process, simulated RAM, no MMU.
    Native,
    /// qemu-system-aarch64 software emulation, real (emulated) MMU.
    Qemu,
    /// This host's KVM (aarch64 Linux with /dev/kvm).
    Kvm,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub(crate) enum ModeChoice {
    /// One QEMU boot serves every plan through the mailbox.
    Persistent,
    /// A fresh QEMU for each plan.
    BootPerPlan,
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Where to run the plans.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// A regime name (4k-39 … 64k-52, 4k-52@48 for a folded-down variant) or "all".
    #[arg(long, default_value = "all")]
    pub config: String,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Self-test: verify the first plan of every config against an expectation one
    /// page off. Those plans must fail; proves the backend's failures are real.
    #[arg(long)]
    pub inject_wrong_expectation: bool,
    #[command(flatten)]
    pub vm: VmArgs,
}

#[derive(clap::Args, Clone)]
pub(crate) struct VmArgs {
    /// The guest image (default: $PTCHECK_GUEST_IMAGE, else the xtask build output).
    #[arg(long)]
    pub guest: Option<PathBuf>,
    /// QEMU: persistent guest or one boot per plan.
    #[arg(long, value_enum, default_value = "persistent")]
    pub qemu_mode: ModeChoice,
    /// QEMU `-cpu` model.
    #[arg(long, default_value = "max")]
    pub cpu: String,
    /// Seconds one plan may take before the guest counts as hung.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Run a deliberately broken builder (native backend; `mutants` builds only).
    #[cfg(feature = "mutants")]
    #[arg(long)]
    pub mutant: Option<String>,
}

impl VmArgs {
    #[cfg(feature = "mutants")]
    fn native(&self) -> anyhow::Result<NativeBackend> {
        let Some(name) = &self.mutant else { return Ok(NativeBackend::new()) };
        let names: Vec<_> = ptcheck_guest::mutation::ALL_VARIANTS.iter().map(|v| v.name).collect();
        ptcheck_host::backend::native::mutant_builder(name)
            .map(NativeBackend::with_builder)
            .ok_or_else(|| anyhow::anyhow!("unknown mutant '{name}': one of {}", names.join(", ")))
    }

    #[cfg(not(feature = "mutants"))]
    fn native(&self) -> anyhow::Result<NativeBackend> {
        Ok(NativeBackend::new())
    }

    /// A VM backend cannot run a native mutant: say so rather than run the clean one.
    fn no_mutant(&self) -> anyhow::Result<()> {
        #[cfg(feature = "mutants")]
        if let Some(m) = &self.mutant {
            bail!("--mutant {m} runs on the native backend only: pass --backend native");
        }
        Ok(())
    }
}

#[derive(clap::Args, Clone)]
pub(crate) struct FuzzArgs {
    /// Where to run the plans.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// A regime name or "all" (plans alternate between regimes).
    #[arg(long, default_value = "all")]
    pub config: String,
    /// The run's seed: same seed, same plans, on every machine.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Plans in the run (default: until --time ends, else 1000).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long ("90s", "5m", "1h").
    #[arg(long, value_parser = parse_duration)]
    pub time: Option<Duration>,
    /// Run only shard i of n ("2/4"): n shards together run exactly the plans of one run.
    #[arg(long, default_value = "1/1", value_parser = parse_shard)]
    pub shard: (u64, u64),
    /// Parallel workers (native only; default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub vm: VmArgs,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The reproducer file (target/ptcheck/repro/*.repro).
    file: PathBuf,
    /// Where to run it.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    #[command(flatten)]
    vm: VmArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 90s, 5m or 1h"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("'{s}': the unit must be s, m or h")),
    }
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("'{s}' is not a shard like 1/4 (1 <= i <= n)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

pub(crate) fn fuzz(args: &FuzzArgs) -> anyhow::Result<ptcheck_host::fuzz::Summary> {
    use ptcheck_host::fuzz::{self, FuzzSpec};
    let configs = configs(&args.config)?;
    let count = args.count.or(if args.time.is_some() { None } else { Some(1000) });
    let spec = FuzzSpec { seed: args.seed, configs, count, time: args.time, shard: args.shard.0, shards: args.shard.1 };
    let native = args.backend == BackendChoice::Native;
    let workers = if native { args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())) } else { 1 };
    let (first, why) = open_backend(args.backend, &args.vm)?;
    println!("backend: {} ({why}), {workers} worker{}", first.name(), if workers == 1 { "" } else { "s" });
    let span = count.map_or("until the time budget ends".to_string(), |c| format!("plans 0..{c}"));
    println!(
        "fuzz: seed {}, {span} over {} regime{}, shard {}/{} (generator format {})",
        spec.seed,
        spec.configs.len(),
        if spec.configs.len() == 1 { "" } else { "s" },
        spec.shard,
        spec.shards,
        fuzz::gen::FORMAT
    );
    let spare = std::sync::Mutex::new(Some(first));
    let make = || -> anyhow::Result<Box<dyn Backend>> {
        if let Some(b) = spare.lock().expect("not poisoned").take() {
            return Ok(b);
        }
        Ok(open_backend(args.backend, &args.vm)?.0)
    };
    let progress = !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let summary = fuzz::run(&spec, workers, &make, progress)?;
    println!(
        "fuzz: {} plans in {:.2}s = {:.0} plans/s, {} failure{}, {} MMU-checked pages",
        summary.plans,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary.failures.len(),
        if summary.failures.len() == 1 { "" } else { "s" },
        summary.hw_probes
    );
    for f in &summary.failures {
        println!("  {} index {}: [{}] shrunk {} -> {} ops: {}", f.config, f.index, f.check, f.ops.0, f.ops.1, f.repro.display());
    }
    Ok(summary)
}

fn replay(args: &ReplayArgs) -> anyhow::Result<bool> {
    use ptcheck_host::{expect, ptdump, repro};
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let r = repro::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let cfg = r.plan.config().expect("parse checked the config");
    let (mut backend, why) = open_backend(args.backend, &args.vm)?;
    println!("replay {}: {cfg}, {} operations, on {} ({why})", args.file.display(), r.plan.n_ops, backend.name());
    let mut plan = r.plan.clone();
    let (outcome, walk) = ptcheck_host::run::run_for_listing(backend.as_mut(), &mut plan, 1)?;
    let exp = expect::expected(&plan).expect("a valid plan has an expectation");
    let want = ptdump::rows(&cfg, exp.leaves());
    let got = ptdump::rows(&cfg, walk.leaves.iter().map(|l| (l.va, l.level, l.desc)));
    let (listing, differing) = ptdump::diff(&want, &got);
    println!("mappings (- expected only, + in the tables only): {differing} differing line{}", if differing == 1 { "" } else { "s" });
    print!("{listing}");
    if outcome.verdict.passed() {
        println!("every check passes: the failure does not reproduce here");
        return Ok(true);
    }
    print!("{}", outcome.verdict.describe_failures());
    let failed = outcome.verdict.failed();
    println!("failing checks: {}", failed.join(", "));
    for recorded in &r.fails {
        let again = failed.contains(&recorded.as_str());
        println!("recorded failure [{recorded}]: {}", if again { "reproduced" } else { "NOT reproduced" });
    }
    Ok(false)
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Minimum seconds per backend.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    #[command(flatten)]
    vm: VmArgs,
}

fn guest_image(arg: &Option<PathBuf>) -> PathBuf {
    if let Some(p) = arg {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("PTCHECK_GUEST_IMAGE") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("aarch64-unknown-none").join("release").join("ptcheck-guest-image")
}

fn configs(sel: &str) -> anyhow::Result<Vec<TranslationConfig>> {
    if sel == "all" {
        return Ok(TranslationConfig::all().collect());
    }
    let Some(cfg) = TranslationConfig::parse(sel) else {
        let names: Vec<String> = TranslationConfig::all().map(|c| c.to_string()).collect();
        bail!("unknown config '{sel}': use one of {} or all", names.join(", "));
    };
    Ok(vec![cfg])
}

fn policy(vm: &VmArgs) -> VmPolicy {
    VmPolicy {
        plan_timeout: Duration::from_secs(vm.timeout),
        boot_per_plan: vm.qemu_mode == ModeChoice::BootPerPlan,
        ..VmPolicy::default()
    }
}

fn qemu_backend(vm: &VmArgs) -> anyhow::Result<Box<dyn Backend>> {
    let mut opts = QemuOptions::new(guest_image(&vm.guest));
    opts.cpu = vm.cpu.clone();
    opts.policy = policy(vm);
    Ok(Box::new(qemu::backend(opts)?))
}

/// Whether this host's KVM can run the arm64 guest; `Err` says why not.
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
fn kvm_usable() -> anyhow::Result<()> {
    ptcheck_host::backend::kvm::probe()
}

#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
fn kvm_usable() -> anyhow::Result<()> {
    if std::path::Path::new("/dev/kvm").exists() {
        bail!("/dev/kvm is this {} host's KVM, which cannot run an arm64 guest", std::env::consts::ARCH)
    }
    bail!("no /dev/kvm, and this is not an arm64 Linux host")
}

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
fn kvm_backend(vm: &VmArgs) -> anyhow::Result<Box<dyn Backend>> {
    Ok(Box::new(ptcheck_host::backend::kvm::backend(guest_image(&vm.guest), policy(vm))?))
}

#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
fn kvm_backend(vm: &VmArgs) -> anyhow::Result<Box<dyn Backend>> {
    let _ = policy(vm);
    Err(kvm_usable().expect_err("never usable here")).context("the KVM backend needs an arm64 Linux host with /dev/kvm")
}

/// The backend, and why it was chosen.
pub(crate) fn open_backend(choice: BackendChoice, vm: &VmArgs) -> anyhow::Result<(Box<dyn Backend>, String)> {
    match choice {
        BackendChoice::Native => Ok((Box::new(vm.native()?), "requested".into())),
        _ if vm.no_mutant().is_err() => Err(vm.no_mutant().expect_err("just checked")),
        BackendChoice::Qemu => Ok((qemu_backend(vm)?, "requested".into())),
        BackendChoice::Kvm => Ok((kvm_backend(vm)?, "requested".into())),
        BackendChoice::Auto => match kvm_usable() {
            Ok(()) => Ok((kvm_backend(vm)?, "auto: /dev/kvm accepts an arm64 vCPU".into())),
            Err(why) => {
                if find_in_path("qemu-system-aarch64").is_none() {
                    bail!("no backend can run the arm64 guest (KVM: {why:#}; qemu-system-aarch64 not found): install QEMU with `apt-get install qemu-system-arm`, or use --backend native");
                }
                Ok((qemu_backend(vm)?, format!("auto: KVM not usable ({why:#}), falling back to QEMU software emulation")))
            }
        },
    }
}

/// Run the matrix and print the table; the report says what passed.
pub(crate) fn run_matrix(args: &RunArgs) -> anyhow::Result<Report> {
    let cfgs = configs(&args.config)?;
    let (mut backend, why) = open_backend(args.backend, &args.vm)?;
    println!("backend: {} ({why})", backend.name());
    println!("{:<11} {:>6} {:>7} {:>7} {:>10}  failed checks", "config", "plans", "passed", "failed", "hw_probes");
    let mut report = Report { backend: backend.name().into(), configs: vec![], fuzz: None, vm_checks: vec![] };
    for cfg in cfgs {
        let mut line = ConfigReport::new(cfg.to_string());
        let mut failed_checks = BTreeSet::new();
        for (i, mut np) in plans::builtin(cfg).into_iter().enumerate() {
            let seed = np.plan.plan_id;
            let expect = if args.inject_wrong_expectation && i == 0 { Expectation::WrongByOnePage } else { Expectation::AsPlanned };
            let outcome = run_against(backend.as_mut(), &mut np.plan, seed, expect);
            line.add(&np.name, &outcome);
            let verdict = &outcome.verdict;
            if !verdict.passed() {
                failed_checks.extend(verdict.failed());
                let notes = format!("{cfg} plan {} on {}\n{}", np.name, backend.name(), verdict.describe_failures());
                let path = repro::write(&format!("{cfg}-{}", np.name), &np.plan, &verdict.failed(), &notes)?;
                eprintln!("FAIL {cfg} {}: reproducer {}\n{}", np.name, path.display(), verdict.describe_failures().trim_end());
            }
        }
        let fc: Vec<_> = failed_checks.into_iter().collect();
        let hw = if line.hw_unsupported {
            "unsupported".to_string()
        } else if backend.has_mmu() {
            line.hw_probes.to_string()
        } else {
            "no MMU".to_string()
        };
        println!("{:<11} {:>6} {:>7} {:>7} {:>10}  {}", line.name, line.plans, line.passed, line.failed, hw, fc.join(","));
        report.configs.push(line);
    }
    let total: usize = report.configs.iter().map(|c| c.plans).sum();
    println!("total: {total} plans, {} passed, {} failed ({} backend)", total - report.failed(), report.failed(), report.backend);
    Ok(report)
}

fn run(args: &RunArgs) -> anyhow::Result<bool> {
    let report = run_matrix(args)?;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write report {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(report.failed() == 0)
}

fn bench(args: &BenchArgs) -> anyhow::Result<bool> {
    use ptcheck_host::bench::{measure, Figure};
    use ptcheck_host::fuzz::{self, FuzzSpec};
    let min = Duration::from_secs(args.seconds);
    let n: usize = TranslationConfig::all().map(|c| plans::builtin(c).len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("one run, side by side: the {n} built-in plans and the default fuzz mix (every plan verified; VM runs include MMU probes)");
    let fuzz_figure = |label: &str, workers: usize, make: &(dyn Fn() -> anyhow::Result<Box<dyn Backend>> + Sync)| {
        let spec = FuzzSpec { seed: 1, configs: TranslationConfig::all().collect(), count: None, time: Some(min), shard: 1, shards: 1 };
        fuzz::run(&spec, workers, make, false).map(|s| Figure { label: label.into(), plans: s.plans, elapsed: s.elapsed, failed: s.failures.len() as u64 })
    };
    let native = || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(NativeBackend::new())) };
    let persistent = VmArgs { qemu_mode: ModeChoice::Persistent, ..args.vm.clone() };
    let boot_per_plan = VmArgs { qemu_mode: ModeChoice::BootPerPlan, ..args.vm.clone() };
    let figures = vec![
        measure("native built-in", &mut NativeBackend::new(), min, u64::MAX),
        fuzz_figure(&format!("native fuzz x{cores}"), cores, &native)?,
        measure("qemu persistent built-in", qemu_backend(&persistent)?.as_mut(), min, u64::MAX),
        fuzz_figure("qemu persistent fuzz", 1, &|| qemu_backend(&persistent))?,
        measure("qemu boot-per-plan built-in", qemu_backend(&boot_per_plan)?.as_mut(), min, 200),
    ];
    println!("{:<30} {:>8} {:>9} {:>11} {:>7}", "backend / plans", "plans", "seconds", "plans/s", "failed");
    for f in &figures {
        println!("{:<30} {:>8} {:>9.2} {:>11.1} {:>7}", f.label, f.plans, f.elapsed.as_secs_f64(), f.rate(), f.failed);
    }
    let r = |i: usize| figures[i].rate();
    println!(
        "ratios (built-in plans): native / qemu persistent = {:.1}x; qemu persistent / boot-per-plan = {:.1}x",
        r(0) / r(2),
        r(2) / r(4)
    );
    Ok(figures.iter().all(|f| f.failed == 0))
}

fn main() -> ExitCode {
    if init_mode::is_init() {
        init_mode::main();
    }
    let cli = Cli::parse();
    let outcome = match &cli.cmd {
        Cmd::Run(args) => run(args),
        Cmd::Fuzz(args) => fuzz(args).map(|s| s.failures.is_empty()),
        Cmd::Replay(args) => replay(args),
        Cmd::Bench(args) => bench(args),
        #[cfg(feature = "mutants")]
        Cmd::Mutants(args) => mutants(args),
        Cmd::Configs => {
            for c in TranslationConfig::all() {
                println!("{c:<10} {} levels, root {}, {}-bit PA", c.levels(), c.root_level(), c.pa_bits());
            }
            Ok(true)
        }
    };
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ptcheck: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
