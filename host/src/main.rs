//! `ptcheck`: parse the command line and dispatch to the library. Every command ends
//! with an exit code from [`Class`]: 0 passed, 1 the builder failed a check, 2 not
//! checked (bad plan, over capacity, infrastructure, bad usage).
//!
//! Started as `/init` (PID 1) it is the init of the nested-KVM proof instead: see
//! `init_mode`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ptcheck_host::backend::open::{open, BackendChoice};
use ptcheck_host::fuzz::command::{verdict_line, FuzzCommand};
use ptcheck_host::fuzz::FuzzSpec;
use ptcheck_host::matrix::{run_matrix, MatrixOptions};
use ptcheck_host::outcome::Class;
use ptcheck_shared::TranslationConfig;

mod args;
mod init_mode;

#[cfg(feature = "mutants")]
use args::MutantsArgs;
use args::{configs, Cli, Cmd, FuzzArgs, RunArgs};

fn run(args: &RunArgs) -> anyhow::Result<Class> {
    let configs = configs(&args.config)?;
    let backend = args.vm.options(args.backend);
    let (mut b, why) = open(&backend)?;
    println!("backend: {} ({why})", b.name());
    let label = backend.label(b.name());
    let report = run_matrix(
        b.as_mut(),
        &MatrixOptions {
            configs,
            inject_wrong_expectation: args.inject_wrong_expectation,
            label,
            pictures: args.html.is_some(),
        },
    );
    if let Some(path) = &args.html {
        let summary = ptcheck_host::html::Section {
            title: format!("{} regimes on {}", report.configs.len(), report.backend),
            facts: report
                .configs
                .iter()
                .map(|c| {
                    let line = format!(
                        "{} plans: {} passed, {} failed, {} not checked, {} n/a",
                        c.plans, c.passed, c.failed, c.not_checked, c.not_applicable
                    );
                    (c.name.clone(), line)
                })
                .collect(),
            failing: report
                .configs
                .iter()
                .flat_map(|c| c.failures.iter().map(move |f| format!("{}: {f}", c.name)))
                .collect(),
            ..Default::default()
        };
        let page = ptcheck_host::html::Page {
            title: format!("ptcheck run on {}", report.backend),
            tested: report.tested.pairs(),
            outcome: verdict_line(report.class()).to_string(),
            passed: report.class() == Class::Passed,
            sections: std::iter::once(summary).chain(report.pictures.iter().cloned()).collect(),
        };
        page.write(path)?;
        println!("html: {}", path.display());
    }
    if let Some(path) = &args.report {
        report.write_json(path)?;
        println!("report: {}", path.display());
    }
    if let Some(path) = &args.junit {
        report.write_junit(path, "ptcheck run")?;
        println!("junit: {}", path.display());
    }
    println!("outcome: {}", verdict_line(report.class()));
    Ok(report.class())
}

fn fuzz(args: &FuzzArgs) -> anyhow::Result<Class> {
    let cmd = FuzzCommand {
        plans: FuzzSpec {
            seed: args.seed,
            configs: configs(&args.config)?,
            count: args.count,
            time: args.time,
            shard: args.shard.0,
            shards: args.shard.1,
            label: String::new(),
        },
        jobs: args.jobs.map(usize::from),
        progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        differential: args.differential.clone(),
        report: args.report.clone(),
    };
    let backend = args.vm.options(args.backend);
    let summary = ptcheck_host::fuzz::command::fuzz(&cmd, &backend)?;
    if let Some(path) = &args.html {
        fuzz_page(&summary, &backend, args.seed)?.write(path)?;
        println!("html: {}", path.display());
    }
    Ok(summary.class())
}

/// `fuzz --html`: the run's counts, then each failure's shrunk reproducer drawn (the
/// first 16), run again on a backend of the same options.
fn fuzz_page(
    s: &ptcheck_host::fuzz::Summary,
    backend: &ptcheck_host::backend::open::BackendOptions,
    seed: u64,
) -> anyhow::Result<ptcheck_host::html::Page> {
    use ptcheck_host::html::{plan_section, Page, Section};
    let (mut b, _) = open(backend)?;
    let tested = ptcheck_host::tested::of_backend("fuzz", b.as_ref(), &[seed]);
    let mut sections = vec![Section {
        title: format!("{} plans, seed {seed}", s.plans),
        facts: vec![
            ("failed".into(), s.failures.len().to_string()),
            ("not checked".into(), s.unchecked.len().to_string()),
            ("n/a".into(), s.not_applicable.to_string()),
            ("plans/s".into(), format!("{:.0}", s.rate())),
        ],
        failing: s
            .failures
            .iter()
            .map(|f| format!("{} plan {}: [{}] {}", f.config, f.index, f.check, f.repro_text()))
            .collect(),
        ..Section::default()
    }];
    for f in s.failures.iter().take(16) {
        let Ok(path) = &f.repro else { continue };
        let text = std::fs::read_to_string(path)?;
        let r = ptcheck_host::repro::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let title = format!("{} plan {} (shrunk {} -> {} ops): {}", f.config, f.index, f.ops.0, f.ops.1, f.check);
        sections
            .push(plan_section(b.as_mut(), &r.plan, title, vec![("reproducer".into(), path.display().to_string())]).0);
    }
    Ok(Page {
        title: format!("ptcheck fuzz on {}", b.name()),
        tested: tested.pairs(),
        outcome: verdict_line(s.class()).to_string(),
        passed: s.class() == Class::Passed,
        sections,
    })
}

#[cfg(feature = "mutants")]
fn mutants(args: &MutantsArgs) -> anyhow::Result<bool> {
    use ptcheck_host::mutants::{catalogue, CatalogueOptions};
    if args.list {
        for v in ptcheck_guest::mutation::ALL_VARIANTS {
            println!("{}", v.name);
        }
        return Ok(true);
    }
    let opts = CatalogueOptions { count: args.count, seed: args.seed, only: args.only.clone() };
    catalogue(&opts, &args.vm.options(args.backend))
}

fn linux(args: &args::LinuxArgs) -> anyhow::Result<Class> {
    use ptcheck_host::linux::command::{run, LinuxCommand};
    use ptcheck_host::linux::KernelRun;
    let mut trace = if args.no_trace { None } else { Some(ptcheck_host::trace::setup()?) };
    if let (Some(t), Some(name)) = (&mut trace, &args.count_calls) {
        let (used, entry, why) = ptcheck_host::linux::symbols::bracket(&args.k.kernel, name)?;
        println!("counting calls of {used} at {entry:#x}{why}");
        t.brackets = vec![(used, entry)];
    }
    match &trace {
        Some(t) => println!("tracing with {} ({}), plugin {}", t.qemu.display(), t.version, t.plugin.display()),
        None => println!("not tracing (--no-trace): the observed checks (zeroed_at_link, ordered_link) do not run"),
    }
    let accel = ptcheck_host::linux::accel::choose_here(trace.is_some());
    println!("accelerator: {}", accel.why);
    run(&LinuxCommand {
        run: KernelRun {
            accel: accel.accel,
            kernel: args.k.kernel.clone(),
            initrd: args.k.initrd.clone(),
            cpu: args.k.cpu.clone(),
            timeout: Duration::from_secs(args.timeout),
            plant: args.plant,
            trace,
            qemu: None,
        },
        seed: args.seed,
        count: args.count,
        shard: args.shard,
        cmdline: args.cmdline,
        ram: args.ram,
        html: args.html.clone(),
        report: args
            .report
            .clone()
            .map(|path| ptcheck_host::linux::command::ReportFile { path, append: args.report_append }),
        repro_dir: ptcheck_host::repro::dir(),
        jobs: args.jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |j| j as usize),
    })
}

fn kernel_costs(args: &args::KernelCostsArgs) -> anyhow::Result<Class> {
    use ptcheck_host::linux::costs::{run, CostsCommand};
    let trace = ptcheck_host::trace::setup()?;
    println!("tracing with {} ({}), plugin {}", trace.qemu.display(), trace.version, trace.plugin.display());
    run(&CostsCommand {
        run: ptcheck_host::linux::KernelRun {
            accel: ptcheck_host::linux::accel::Accel::Tcg,
            kernel: args.k.kernel.clone(),
            initrd: args.k.initrd.clone(),
            cpu: args.k.cpu.clone(),
            timeout: Duration::from_secs(args.timeout),
            plant: None,
            trace: Some(trace),
            qemu: None,
        },
        sizes: args.ram.clone(),
        label: args.label.clone(),
        html: args.html.clone(),
        report: args
            .report
            .clone()
            .map(|path| ptcheck_host::linux::command::ReportFile { path, append: args.report_append }),
    })
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
    let pass_or_fail = |ok: bool| if ok { Class::Passed } else { Class::BuilderFailed };
    let outcome = match &cli.cmd {
        Cmd::Run(args) => run(args),
        Cmd::Fuzz(args) => fuzz(args),
        Cmd::Replay(args) => ptcheck_host::replay::replay(
            &args.file,
            &args.vm.options(args.backend),
            args.vm.builder.as_deref(),
            args.html.as_deref(),
        ),
        Cmd::Bench(args) if args.costs => ptcheck_host::bench::costs().map(pass_or_fail),
        Cmd::Bench(args) if args.trace_cost => {
            let b = ptcheck_host::bench::TraceBench {
                min: Duration::from_secs(args.seconds),
                kernel: args.kernel.clone().zip(args.initrd.clone()),
                boots: args.boots,
            };
            ptcheck_host::bench::bench_trace(&b, &args.vm.options(BackendChoice::Qemu)).map(pass_or_fail)
        }
        Cmd::Bench(args) => {
            let backend = args.vm.options(BackendChoice::Qemu);
            ptcheck_host::bench::bench(Duration::from_secs(args.seconds), &backend).map(pass_or_fail)
        }
        #[cfg(feature = "mutants")]
        Cmd::Mutants(args) => mutants(args).map(pass_or_fail),
        #[cfg(not(feature = "mutants"))]
        Cmd::Mutants(_) => Err(anyhow::anyhow!(
            "this ptcheck was built without the bug catalogue: `cargo xtask mutants` builds and runs one"
        )),
        Cmd::Needs(args) => serde_json::to_string(&args::needs(&args.command)).map_err(Into::into).map(|json| {
            println!("{json}");
            Class::Passed
        }),
        Cmd::Linux(args) => linux(args),
        Cmd::KernelCosts(args) => kernel_costs(args),
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
