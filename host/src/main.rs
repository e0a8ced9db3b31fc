//! `ptcheck`: run the built-in plans on a backend and verify every table they build.
//!
//! Started as `/init` (PID 1) it is the init of the nested-KVM proof instead: see
//! `init_mode`.

use std::collections::{BTreeMap, BTreeSet};
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
use ptcheck_host::outcome::Class;
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
        .chain(
            ALL_VARIANTS.iter().filter(|v| args.only.is_empty() || args.only.contains(&v.name.to_string())).map(Some),
        )
        .collect();
    let configs: Vec<TranslationConfig> = TranslationConfig::all().collect();
    let backend_for = |v: Option<&'static ptcheck_guest::mutation::Variant>| -> anyhow::Result<Box<dyn Backend>> {
        let mut vm = VmArgs { mutant: None, ..args.vm.clone() };
        if args.backend == BackendChoice::Native {
            vm.mutant = v.map(|v| v.name.to_string());
            return Ok(Box::new(vm.native()?));
        }
        if let Some(v) = v {
            let dir = args.guest_dir.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "--guest-dir is needed for VM backends: `cargo xtask mutants` builds one image per variant"
                )
            })?;
            vm.guest = Some(dir.join(format!("ptcheck-guest-image-{}", v.name)));
        }
        Ok(open_backend(args.backend, &vm)?.0)
    };
    let name = backend_for(None)?.name();
    println!(
        "bug catalogue on {name}: built-in plans + {} fuzzed plans (seed {}) per regime, {} regimes",
        args.count,
        args.seed,
        configs.len()
    );
    let mut outcomes = Vec::new();
    for v in variants {
        let mut backend = backend_for(v)?;
        let o = run_variant(backend.as_mut(), v, &configs, args.count, args.seed);
        println!(
            "  {:<22} {}",
            o.name(),
            if o.ok() {
                "ok"
            } else if v.is_none() {
                "CLEAN BUILDER FAILED"
            } else {
                "NOT CAUGHT everywhere"
            }
        );
        outcomes.push(o);
    }
    print!("{}", table(&outcomes, name));
    let by_mmu: Vec<_> =
        outcomes.iter().filter(|o| o.variant.is_some() && o.checks().contains("hw_probe")).map(|o| o.name()).collect();
    if name != "native" {
        println!(
            "caught by the MMU cross-check (hw_probe): {}",
            if by_mmu.is_empty() { "none".into() } else { by_mmu.join(", ") }
        );
    }
    println!("regimes where fuzzed plans (not only built-in ones) caught the variant:");
    for o in outcomes.iter().filter(|o| o.variant.is_some()) {
        let regimes = o.caught_by_fuzzing();
        println!("  {:<22} {}", o.name(), if regimes.is_empty() { "none".into() } else { regimes.join(" ") });
    }
    let ok = outcomes.iter().all(|o| o.ok());
    println!(
        "mutants: {}",
        if ok {
            "every variant caught on every regime where it applies; the clean builder passed everything"
        } else {
            "FAILED"
        }
    );
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
    /// Seconds one plan may take before the guest counts as hung (1 to 86400).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
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
    /// Parallel workers (native only; default: one per core; 1 to 256).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
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
    let per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("'{s}': the unit must be s, m or h")),
    };
    // A year is more than any run needs; past it the number is a typo.
    const MAX_SECS: u64 = 366 * 24 * 3600;
    match n.checked_mul(per_unit) {
        Some(secs) if secs > 0 && secs <= MAX_SECS => Ok(Duration::from_secs(secs)),
        Some(0) => Err(format!("'{s}': a duration of 0 checks nothing")),
        _ => Err(format!("'{s}' is longer than a year: use at most {}h", MAX_SECS / 3600)),
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
    if args.count == Some(0) {
        bail!("--count 0 checks nothing: give at least 1 plan");
    }
    let count = args.count.or(if args.time.is_some() { None } else { Some(1000) });
    let native = args.backend == BackendChoice::Native;
    let workers = if native {
        args.jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from)
    } else {
        1
    };
    let (first, why) = open_backend(args.backend, &args.vm)?;
    let spec = FuzzSpec {
        seed: args.seed,
        configs,
        count,
        time: args.time,
        shard: args.shard.0,
        shards: args.shard.1,
        label: builder_label(first.name(), &args.vm),
    };
    if spec.planned() == Some(0) {
        bail!(
            "shard {}/{} of {} plans holds no plan: use fewer shards or more plans",
            spec.shard,
            spec.shards,
            count.unwrap_or(0)
        );
    }
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
        "fuzz: {} plans in {:.2}s = {:.0} plans/s, {} failure{}, {} not checked, {} MMU-checked pages",
        summary.plans,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary.failures.len(),
        if summary.failures.len() == 1 { "" } else { "s" },
        summary.unchecked.len(),
        summary.hw_probes
    );
    for f in &summary.failures {
        println!(
            "  {} index {}: [{}] shrunk {} -> {} ops: {}",
            f.config,
            f.index,
            f.check,
            f.ops.0,
            f.ops.1,
            f.repro_text()
        );
    }
    let mut causes: BTreeMap<String, usize> = BTreeMap::new();
    for u in &summary.unchecked {
        *causes.entry(u.outcome.to_string()).or_insert(0) += 1;
    }
    for (cause, n) in &causes {
        println!("  not checked ({n} plan{}): {cause}", if *n == 1 { "" } else { "s" });
    }
    if let Some(why) = &summary.gave_up {
        println!("fuzz: stopped early: {why}");
    }
    if summary.checked() == 0 {
        println!("fuzz: 0 plans checked: nothing was verified (is the time budget too short?)");
    }
    println!("outcome: {}", verdict_line(summary.class()));
    Ok(summary)
}

/// The last line of a run: what the exit code means.
fn verdict_line(class: Class) -> &'static str {
    match class {
        Class::Passed => "every plan checked passed (exit 0)",
        Class::BuilderFailed => "the builder failed a check (exit 1)",
        Class::NotChecked => "some plans could not be checked: see the causes above (exit 2)",
    }
}

/// Names the backend and builder in reproducer names: "native-clean",
/// "native-skip-zero", "qemu-clean", "qemu-<guest image name>".
fn builder_label(backend: &str, vm: &VmArgs) -> String {
    #[cfg(feature = "mutants")]
    if let Some(m) = &vm.mutant {
        return format!("{backend}-{m}");
    }
    match &vm.guest {
        Some(g) if backend != "native" => {
            format!("{backend}-{}", g.file_name().map_or("guest".into(), |n| n.to_string_lossy().into_owned()))
        }
        _ => format!("{backend}-clean"),
    }
}

fn replay(args: &ReplayArgs) -> anyhow::Result<Class> {
    use ptcheck_host::{ptdump, repro};
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let r = repro::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let cfg = r.plan.config().ok_or_else(|| anyhow::anyhow!("{}: the config is not valid", args.file.display()))?;
    let (mut backend, why) = open_backend(args.backend, &args.vm)?;
    println!("replay {}: {cfg}, {} operations, on {} ({why})", args.file.display(), r.plan.n_ops, backend.name());
    let plan = r.plan.clone();
    let started = std::time::Instant::now();
    let (run, walk) = ptcheck_host::run::run_for_listing(backend.as_mut(), &plan, 1);
    println!("outcome: {}", run.outcome);
    if let Some(recorded) = &r.outcome {
        let same = *recorded == run.outcome.to_string();
        println!("recorded outcome: {recorded} ({})", if same { "the same" } else { "DIFFERENT" });
    }
    if run.outcome.checked() {
        if let Some(exp) = ptcheck_host::expect::expected(&plan) {
            let want = ptdump::rows(&cfg, exp.leaves());
            let walk = walk.unwrap_or_default();
            let got = ptdump::rows(&cfg, walk.leaves.iter().map(|l| (l.va, l.level, l.desc)));
            let (listing, differing) = ptdump::diff(&want, &got);
            println!(
                "mappings (- expected only, + in the tables only): {differing} differing line{}",
                if differing == 1 { "" } else { "s" }
            );
            print!("{listing}");
        }
    }
    let class = run.class();
    match class {
        Class::Passed => {
            let bug = matches!(run.outcome, ptcheck_host::outcome::Outcome::Bug { .. });
            println!(
                "every check passes{}{}",
                if bug { ": the model expects exactly this BUG" } else { "" },
                if r.fails.is_empty() { "" } else { "; the recorded failure does not reproduce here" }
            );
        }
        Class::BuilderFailed => {
            print!("{}", run.verdict.describe_failures());
            let failed = run.verdict.failed();
            println!("failing checks: {}", failed.join(", "));
            for recorded in &r.fails {
                let again = failed.contains(&recorded.as_str());
                println!("recorded failure [{recorded}]: {}", if again { "reproduced" } else { "NOT reproduced" });
            }
        }
        Class::NotChecked => println!("not checked: no check was run on this plan (exit 2)"),
    }
    println!("replay: {:.2}s", started.elapsed().as_secs_f64());
    Ok(class)
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

/// The backend, and why it was chosen, checked once before the first plan
/// ([`Backend::preflight`]): a broken setup is one error line, never a plan failure.
pub(crate) fn open_backend(choice: BackendChoice, vm: &VmArgs) -> anyhow::Result<(Box<dyn Backend>, String)> {
    let (mut backend, why) = choose_backend(choice, vm)?;
    backend.preflight()?;
    Ok((backend, why))
}

fn choose_backend(choice: BackendChoice, vm: &VmArgs) -> anyhow::Result<(Box<dyn Backend>, String)> {
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
                Ok((
                    qemu_backend(vm)?,
                    format!("auto: KVM not usable ({why:#}), falling back to QEMU software emulation"),
                ))
            }
        },
    }
}

/// Run the matrix and print the table; the report says what passed.
pub(crate) fn run_matrix(args: &RunArgs) -> anyhow::Result<Report> {
    let cfgs = configs(&args.config)?;
    let (mut backend, why) = open_backend(args.backend, &args.vm)?;
    println!("backend: {} ({why})", backend.name());
    let label = builder_label(backend.name(), &args.vm);
    println!(
        "{:<11} {:>6} {:>7} {:>7} {:>7} {:>10}  failed checks / outcomes not checked",
        "config", "plans", "passed", "failed", "n/chk", "hw_probes"
    );
    let mut report = Report { backend: backend.name().into(), configs: vec![], fuzz: None, vm_checks: vec![] };
    for cfg in cfgs {
        let mut line = ConfigReport::new(cfg.to_string());
        let mut failed_checks = BTreeSet::new();
        for (i, np) in plans::builtin(cfg).into_iter().enumerate() {
            let seed = np.plan.plan_id;
            let expect = if args.inject_wrong_expectation && i == 0 {
                Expectation::WrongByOnePage
            } else {
                Expectation::AsPlanned
            };
            let run = run_against(backend.as_mut(), &np.plan, seed, expect);
            line.add(&np.name, &run);
            match run.class() {
                Class::Passed => {}
                Class::NotChecked => {
                    failed_checks.insert(run.outcome.kind());
                    eprintln!("NOT CHECKED {cfg} {}: {}", np.name, run.outcome);
                }
                Class::BuilderFailed => {
                    let verdict = &run.verdict;
                    failed_checks.extend(verdict.failed());
                    let notes = format!("{cfg} plan {} on {} ({label})\n{}", np.name, backend.name(), run.describe());
                    let stem = format!("run-{label}-{cfg}-{}", np.name);
                    let written = repro::write(&stem, &np.plan, &verdict.failed(), &run.outcome.to_string(), &notes);
                    let path = written.map_or_else(|e| format!("NOT WRITTEN: {e:#}"), |p| p.display().to_string());
                    eprintln!("FAIL {cfg} {}: reproducer {path}\n{}", np.name, run.describe().trim_end());
                }
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
        println!(
            "{:<11} {:>6} {:>7} {:>7} {:>7} {:>10}  {}",
            line.name,
            line.plans,
            line.passed,
            line.failed,
            line.not_checked,
            hw,
            fc.join(",")
        );
        report.configs.push(line);
    }
    let total: usize = report.configs.iter().map(|c| c.plans).sum();
    let passed: usize = report.configs.iter().map(|c| c.passed).sum();
    println!(
        "total: {total} plans, {passed} passed, {} failed, {} not checked ({} backend)",
        report.failed(),
        report.not_checked(),
        report.backend
    );
    Ok(report)
}

fn run(args: &RunArgs) -> anyhow::Result<Class> {
    let report = run_matrix(args)?;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write report {}", path.display()))?;
        println!("report: {}", path.display());
    }
    println!("outcome: {}", verdict_line(report.class()));
    Ok(report.class())
}

fn bench(args: &BenchArgs) -> anyhow::Result<bool> {
    use ptcheck_host::bench::{measure, Figure};
    use ptcheck_host::fuzz::{self, FuzzSpec};
    let min = Duration::from_secs(args.seconds);
    let n: usize = TranslationConfig::all().map(|c| plans::builtin(c).len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("one run, side by side: the {n} built-in plans and the default fuzz mix (every plan verified; VM runs include MMU probes)");
    let fuzz_figure = |label: &str, workers: usize, make: &(dyn Fn() -> anyhow::Result<Box<dyn Backend>> + Sync)| {
        let spec = FuzzSpec {
            seed: 1,
            configs: TranslationConfig::all().collect(),
            count: None,
            time: Some(min),
            shard: 1,
            shards: 1,
            label: "bench".into(),
        };
        fuzz::run(&spec, workers, make, false).map(|s| Figure {
            label: label.into(),
            plans: s.plans,
            elapsed: s.elapsed,
            failed: s.failures.len() as u64,
        })
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
    // Die quietly on a closed pipe (`ptcheck … | head`) like every Unix tool, instead
    // of panicking in println!.
    // SAFETY: restoring the default disposition of SIGPIPE, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let pass_or = |ok: bool, fail: Class| if ok { Class::Passed } else { fail };
    let outcome = match &cli.cmd {
        Cmd::Run(args) => run(args),
        Cmd::Fuzz(args) => fuzz(args).map(|s| s.class()),
        Cmd::Replay(args) => replay(args),
        Cmd::Bench(args) => bench(args).map(|ok| pass_or(ok, Class::BuilderFailed)),
        #[cfg(feature = "mutants")]
        Cmd::Mutants(args) => mutants(args).map(|ok| pass_or(ok, Class::BuilderFailed)),
        Cmd::Configs => {
            for c in TranslationConfig::all() {
                println!("{c:<10} {} levels, root {}, {}-bit PA", c.levels(), c.root_level(), c.pa_bits());
            }
            Ok(Class::Passed)
        }
    };
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(class) => ExitCode::from(class.exit_code()),
        Err(e) => {
            // One line: the cause and the fix.
            eprintln!("ptcheck: error: {}", format!("{e:#}").replace('\n', " | "));
            ExitCode::from(2)
        }
    }
}
