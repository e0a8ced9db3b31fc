//! `ptcheck`: run the built-in plans on a backend and verify every table they build.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use ptcheck_host::backend::native::NativeBackend;
use ptcheck_host::backend::Backend;
use ptcheck_host::report::{ConfigReport, Report};
use ptcheck_host::{plans, repro, verify};
use ptcheck_shared::TranslationConfig;

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
    /// List the regimes ptcheck knows.
    Configs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    /// KVM if it can run an arm64 guest, else QEMU.
    Auto,
    /// In-process, simulated RAM, no MMU.
    Native,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where to run the plans.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// A regime name (4k-39 … 64k-52, 4k-52@48 for a folded-down variant) or "all".
    #[arg(long, default_value = "all")]
    config: String,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
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

fn open_backend(choice: BackendChoice) -> anyhow::Result<Box<dyn Backend>> {
    match choice {
        BackendChoice::Native => Ok(Box::new(NativeBackend::new())),
        BackendChoice::Auto => bail!(
            "no VM backend is available yet in this build: use --backend native (the QEMU and KVM backends are tracked in their own issues)"
        ),
    }
}

fn run(args: &RunArgs) -> anyhow::Result<bool> {
    let cfgs = configs(&args.config)?;
    let mut backend = open_backend(args.backend)?;
    println!("backend: {}", backend.name());
    println!("{:<11} {:>6} {:>7} {:>7}  failed checks", "config", "plans", "passed", "failed");
    let mut report = Report { backend: backend.name().into(), configs: vec![] };
    for cfg in cfgs {
        let mut line = ConfigReport::new(cfg.to_string());
        let mut failed_checks = std::collections::BTreeSet::new();
        for np in plans::builtin(cfg) {
            let view = backend.run(&np.plan).with_context(|| format!("{cfg} plan {}", np.name))?;
            let verdict = verify::verify(&np.plan, &view);
            line.add(&np.name, &verdict);
            if !verdict.passed() {
                failed_checks.extend(verdict.failed());
                let notes = format!("{cfg} plan {} on {}\n{}", np.name, backend.name(), verdict.describe_failures());
                let path = repro::write(&format!("{cfg}-{}", np.name), &np.plan, &notes)?;
                eprintln!("FAIL {cfg} {}: reproducer {}\n{}", np.name, path.display(), verdict.describe_failures().trim_end());
            }
        }
        let fc: Vec<_> = failed_checks.into_iter().collect();
        println!("{:<11} {:>6} {:>7} {:>7}  {}", line.name, line.plans, line.passed, line.failed, fc.join(","));
        report.configs.push(line);
    }
    let total: usize = report.configs.iter().map(|c| c.plans).sum();
    println!("total: {total} plans, {} passed, {} failed ({} backend)", total - report.failed(), report.failed(), report.backend);
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write report {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(report.failed() == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.cmd {
        Cmd::Run(args) => run(args),
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
