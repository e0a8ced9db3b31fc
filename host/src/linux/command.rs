//! `ptcheck linux`: boot one kernel on generated layouts (seeded, sharded like
//! `fuzz`), check each boot's tables, print one line per layout and a per-regime
//! table, write a reproducer per failing layout and, on request, a JSON report.
//! `ptcheck replay` boots a reproducer again ([`replay`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::layout::{generate, Cmdline, Layout, Needs};
use super::{boot_and_inspect, judge, load_kernel, KernelRun, Plant};
use crate::outcome::Class;

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct LinuxCommand {
    /// Kernel, initramfs, `-cpu`, timeout, plant.
    pub run: KernelRun,
    /// Layout stream.
    pub seed: u64,
    /// Layouts in the whole stream.
    pub count: u64,
    /// This shard (1-based) of how many: layouts `index % n == i - 1`.
    pub shard: (u64, u64),
    /// Force every layout's command line.
    pub cmdline: Option<Cmdline>,
    /// Write the JSON report here.
    pub report: Option<ReportFile>,
    /// Where reproducers go.
    pub repro_dir: PathBuf,
    /// Boots at a time.
    pub jobs: usize,
    /// Every layout one bank of this many bytes (`layout::one_bank`) instead of the
    /// generated ones.
    pub ram: Option<u64>,
    /// Write the HTML report (`crate::html`) here.
    pub html: Option<PathBuf>,
}

/// Where the JSON report goes.
#[derive(Clone, Debug)]
pub struct ReportFile {
    /// The file.
    pub path: PathBuf,
    /// Add to the runs already there instead of starting afresh.
    pub append: bool,
}

/// The JSON report (`ptcheck_shared::report`, the types xtask reads back): one entry
/// per (kernel, `-cpu`) run, each layout with this crate's [`Layout`].
pub type LinuxReports = ptcheck_shared::report::LinuxReports<Layout>;
/// One `ptcheck linux` run of the report.
pub type LinuxReport = ptcheck_shared::report::LinuxReport<Layout>;
/// How one layout went.
pub type LayoutRow = ptcheck_shared::report::LayoutRow<Layout>;
pub use ptcheck_shared::report::{LayoutOutcome, RegimeRow};

/// A failing layout, booted again by `ptcheck replay`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinuxRepro {
    /// Always [`REPRO_FORMAT`].
    pub format: String,
    /// The kernel file and what it said it is.
    pub kernel: PathBuf,
    /// See `kernel`.
    pub release: String,
    /// The initramfs.
    pub initrd: PathBuf,
    /// QEMU `-cpu`.
    pub cpu: String,
    /// Where it came from.
    pub seed: u64,
    /// See `seed`.
    pub index: u64,
    /// The planted fault, if it was a test.
    pub plant: Option<Plant>,
    /// The checks that failed.
    pub failed: Vec<String>,
    /// The layout.
    pub layout: Layout,
    /// What wrote it: ptcheck, QEMU binary and version, CPU, seed, date.
    #[serde(default)]
    pub tested: Option<crate::tested::Tested>,
}

/// The `format` of a real-kernel reproducer.
pub const REPRO_FORMAT: &str = "ptcheck-linux-1";

/// Whether `text` is a real-kernel reproducer.
pub fn is_linux_repro(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains(REPRO_FORMAT)
}

struct Booted {
    row: LayoutRow,
    release: Option<String>,
    backend: String,
    /// The layout drawn for `--html`.
    html: crate::html::Section,
}

/// A booted layout drawn for `--html`: the RAM layout against the linear map, the
/// walked TTBR1 space by region, the failing checks and findings.
fn html_section(
    index: u64,
    layout: &Layout,
    i: &super::Inspection,
    findings: &[super::Finding],
) -> crate::html::Section {
    use crate::html::{Physical, Section, Strips};
    let rows = crate::ptdump::rows(&i.cfg, &i.walk.runs);
    let (lo, hi) = (super::check::page_offset(&i.cfg), super::check::linear_end(&i.cfg));
    let regions = super::va_space::of_kernel(&i.cfg, &i.facts, &i.walk);
    let unlabelled = super::va_space::outside(&regions, &i.cfg, &i.walk);
    let mut ranges: Vec<(String, String, u64, u64)> = Vec::new();
    for b in &layout.banks {
        ranges.push(("bank".into(), "bank".into(), b.start, b.end));
    }
    for n in &layout.no_map {
        ranges.push(("no-map".into(), "no-map".into(), n.start, n.end));
    }
    let image_end = i.facts.iomem.get("Kernel_data").map_or(layout.kernel + (2 << 20), |d| d.1);
    ranges.push(("kernel".into(), "kernel loaded".into(), layout.kernel, image_end));
    for r in rows.iter().filter(|r| r.va >= lo && r.end <= u128::from(hi)) {
        let len = (r.end - u128::from(r.va)) as u64;
        match ranges.last_mut() {
            Some(last) if last.0 == "linear" && last.3 == r.pa => last.3 = r.pa + len,
            _ => ranges.push(("linear".into(), "linear map".into(), r.pa, r.pa + len)),
        }
    }
    let failing: Vec<String> = findings
        .iter()
        .filter(|f| f.failed() || f.not_checked())
        .map(|f| format!("{}{}: {}", if f.failed() { "" } else { "NOT CHECKED " }, f.check, f.what))
        .collect();
    let mut log = String::new();
    log_findings(&mut log, findings);
    Section {
        title: format!("layout {index}: {}", i.cfg),
        facts: vec![
            ("layout".into(), layout.describe()),
            ("kernel".into(), i.facts.release.clone().unwrap_or_default()),
            ("TCR_EL1 / TTBR1_EL1".into(), format!("{:#x} / {:#x}", i.tcr, i.ttbr1)),
            ("tables walked".into(), i.walk.tables.len().to_string()),
            (
                "regions drawn".into(),
                match unlabelled.first() {
                    None => format!(
                        "every mapping lies in one ({})",
                        i.facts.release.as_deref().unwrap_or("release unknown: the 6.9+ layout")
                    ),
                    Some((a, b)) => format!(
                        "{} leaf runs lie outside every region drawn (the first {a:#x}..{:#x}): the layout assumed \
                         for this release is wrong here",
                        unlabelled.len(),
                        *b as u64
                    ),
                },
            ),
            ("boot".into(), format!("{:.1} s to init", i.boot_secs)),
        ],
        failing,
        strips: Some(Strips {
            expected: None,
            actual: rows,
            regions,
            flagged: findings.iter().filter(|f| f.failed()).flat_map(|f| crate::html::ranges_named(&f.what)).collect(),
        }),
        physical: Some(Physical { ranges }),
        text: vec![("findings".into(), log)],
        charts: Vec::new(),
    }
}

/// `--count-calls`' line: each call of `name`, what it executed.
fn describe_calls(name: &str, calls: &[ptcheck_shared::trace::Counts]) -> String {
    if calls.is_empty() {
        return format!("{name}: no call returned before the check point (not counted)");
    }
    let each: Vec<String> = calls
        .iter()
        .map(|c| {
            format!(
                "{} instructions, {} TLBI, {} DSB, {} DMB, {} ISB, {} stores, {} DC ZVA, {} links",
                c.insns,
                c.tlbi,
                c.dsb,
                c.dmb,
                c.isb,
                c.ram_stores,
                c.dc_zva,
                c.total_links()
            )
        })
        .collect();
    format!("{name}: {} call(s): {}", calls.len(), each.join("; "))
}

fn boot_one(run: &KernelRun, image: &super::KernelImage, layout: Layout, index: u64, log: &mut String) -> Booted {
    use std::fmt::Write as _;
    let row_layout = layout.clone();
    match boot_and_inspect(run, image, &layout) {
        Ok((i, ram)) => {
            let findings = judge(&i, &layout, &ram);
            let failed = failed_checks(&findings);
            let _ = writeln!(
                log,
                "    [kernel] {}; {} of {} symbols from /proc/kallsyms{}; stopped at EL{}, TCR_EL1 {:#x}, TTBR1_EL1 {:#x}",
                i.facts.release.as_deref().unwrap_or("release not printed"),
                i.facts.symbols.len(),
                super::symbols::WANTED.len(),
                {
                    let missing: Vec<&str> =
                        super::symbols::WANTED.iter().copied().filter(|n| i.facts.sym(n).is_none()).collect();
                    if missing.is_empty() { String::new() } else { format!(" (not listed: {})", missing.join(" ")) }
                },
                i.el,
                i.tcr,
                i.ttbr1
            );
            log_findings(log, &findings);
            let calls: Vec<_> = i
                .observed
                .as_ref()
                .and_then(|o| o.as_ref().ok())
                .map(|o| o.calls.iter().map(|c| c.counts).collect())
                .unwrap_or_default();
            if let Some((name, _)) = run.trace.as_ref().and_then(|t| t.brackets.first()) {
                let _ = writeln!(log, "    [calls] {}", describe_calls(name, &calls));
            }
            let unchecked: Vec<String> =
                findings.iter().filter(|f| f.not_checked()).map(|f| format!("{}: {}", f.check, f.what)).collect();
            Booted {
                row: LayoutRow {
                    index,
                    outcome: if !failed.is_empty() {
                        LayoutOutcome::Failed
                    } else if !unchecked.is_empty() {
                        LayoutOutcome::NotChecked
                    } else {
                        LayoutOutcome::Passed
                    },
                    regime: i.cfg.to_string(),
                    why: if failed.is_empty() { unchecked } else { failed },
                    tables: i.walk.tables.len(),
                    boot_secs: i.boot_secs,
                    reproducer: None,
                    linear_shape: linear_shape(&i),
                    calls,
                    layout,
                },
                release: i.facts.release.clone(),
                backend: i.facts.backend_id(),
                html: html_section(index, &row_layout, &i, &findings),
            }
        }
        Err(e) => {
            // Findings the tracer made before the kernel stopped fail the layout; the
            // boot's failure is said too.
            let not_up_seen = e.downcast_ref::<super::NotUp>();
            let seen = not_up_seen.map(super::NotUp::findings).unwrap_or_default();
            let crash =
                e.downcast_ref::<super::crash::Crash>().cloned().or_else(|| not_up_seen.and_then(|n| n.crash.clone()));
            if let Some(c) = &crash {
                let _ = writeln!(log, "    [crash] {}", c.summary);
                for d in &c.details {
                    let _ = writeln!(log, "    [crash]   {d}");
                }
            }
            let failed = failed_checks(&seen);
            log_findings(log, &seen);
            if !failed.is_empty() {
                let _ = writeln!(
                    log,
                    "    [boot] the kernel did not reach its init: {}",
                    format!("{e:#}").lines().next().unwrap_or("")
                );
            }
            let mut b = not_up(index, layout, failed, &e, crash.as_ref());
            b.html.text.push(("the kernel did not reach its init".into(), format!("{e:#}")));
            if let Some(c) = &crash {
                b.html.text.push((
                    "crash".into(),
                    std::iter::once(c.summary.clone()).chain(c.details.clone()).collect::<Vec<_>>().join("\n"),
                ));
            }
            b
        }
    }
}

/// The checks that failed, in order, each named once per run of findings.
fn failed_checks(findings: &[super::Finding]) -> Vec<String> {
    let mut v: Vec<String> = findings.iter().filter(|f| f.failed()).map(|f| f.check.to_string()).collect();
    v.dedup();
    v
}

/// One line per finding: `[check] FAIL …`, `[check] NOT CHECKED …` or information.
fn log_findings(log: &mut String, findings: &[super::Finding]) {
    use std::fmt::Write as _;
    for f in findings {
        let tag = match f.severity {
            super::inspection::Severity::Failed => "FAIL ",
            super::inspection::Severity::NotChecked => "NOT CHECKED ",
            super::inspection::Severity::Info => "",
        };
        let _ = writeln!(log, "    [{}] {tag}{}", f.check, f.what);
    }
}

/// A layout whose kernel did not reach its init: failed when the tracer had already
/// seen the builder break a rule (`failed`), else not checked.
fn not_up(
    index: u64,
    layout: Layout,
    failed: Vec<String>,
    e: &anyhow::Error,
    crash: Option<&super::crash::Crash>,
) -> Booted {
    let (outcome, why) = match crash {
        _ if !failed.is_empty() => (LayoutOutcome::Failed, failed),
        Some(c) => (LayoutOutcome::Crash, vec![c.summary.clone()]),
        None => (LayoutOutcome::NotChecked, vec![format!("{e:#}")]),
    };
    let html = crate::html::Section {
        title: format!("layout {index}: {outcome}"),
        facts: vec![("layout".into(), layout.describe())],
        failing: why.clone(),
        ..crate::html::Section::default()
    };
    Booted {
        html,
        row: LayoutRow {
            index,
            outcome,
            regime: "?".into(),
            why,
            tables: 0,
            boot_secs: 0.0,
            reproducer: None,
            linear_shape: BTreeMap::new(),
            calls: Vec::new(),
            layout,
        },
        release: None,
        backend: "linux-?".into(),
    }
}

/// Bytes of the linear map per leaf kind (`L1`, `L2`, `L2c`, `L3`, `L3c`).
fn linear_shape(i: &super::Inspection) -> BTreeMap<String, u64> {
    let (lo, hi) = (super::check::page_offset(&i.cfg), super::check::linear_end(&i.cfg));
    let mut out = BTreeMap::new();
    for r in i.walk.runs.iter().filter(|r| r.va >= lo && r.va < hi) {
        let key = format!("L{}{}", r.level.0, if r.desc.is_contiguous() { "c" } else { "" });
        *out.entry(key).or_insert(0) += r.bytes(&i.cfg) as u64;
    }
    out
}

/// Where a run's layouts come from.
#[derive(Clone, Copy)]
enum Layouts<'a> {
    /// The seeded stream (`layout::generate`).
    Generated { seed: u64, needs: Needs },
    /// `--ram`: the one bank, made and checked once, for every index.
    OneBank(&'a Layout),
}

impl Layouts<'_> {
    /// Layout `k`.
    fn get(self, k: u64) -> Layout {
        match self {
            Layouts::Generated { seed, needs } => generate(seed, k, needs),
            Layouts::OneBank(l) => l.clone(),
        }
    }
}

/// Boot layout `k` of `cmd`'s stream, judge it, write its reproducer if it failed;
/// everything it says goes into the returned text (printed whole: jobs interleave).
fn layout_job(cmd: &LinuxCommand, image: &super::KernelImage, layouts: Layouts<'_>, k: u64) -> (Booted, String) {
    use std::fmt::Write as _;
    let mut log = String::new();
    let mut layout = layouts.get(k);
    if let Some(c) = cmd.cmdline {
        layout.cmdline = c;
    }
    let _ = writeln!(log, "layout {k}: {}", layout.describe());
    let mut b = boot_one(&cmd.run, image, layout, k, &mut log);
    // A failed check or a crash: a reproducer (replay boots the layout again).
    if matches!(b.row.outcome, LayoutOutcome::Failed | LayoutOutcome::Crash) {
        let r = LinuxRepro {
            format: REPRO_FORMAT.into(),
            kernel: std::fs::canonicalize(&cmd.run.kernel).unwrap_or(cmd.run.kernel.clone()),
            release: b.release.clone().unwrap_or_default(),
            initrd: std::fs::canonicalize(&cmd.run.initrd).unwrap_or(cmd.run.initrd.clone()),
            cpu: cmd.run.cpu.clone(),
            seed: cmd.seed,
            index: k,
            plant: cmd.run.plant,
            failed: b.row.why.clone(),
            layout: b.row.layout.clone(),
            tested: Some(cmd.run.tested("linux", &[cmd.seed])),
        };
        let stem = format!("linux-{}-{}-seed{}-{k}", b.backend, b.row.regime, cmd.seed).replace('?', "unknown");
        let text = serde_json::to_string_pretty(&r).unwrap_or_default();
        match crate::repro::write_unique(&cmd.repro_dir, &stem, "linux.json", &text) {
            Ok(p) => b.row.reproducer = Some(p.display().to_string()),
            Err(e) => {
                let _ = writeln!(log, "    cannot write the reproducer: {e:#}");
            }
        }
    }
    let r = &b.row;
    let _ = writeln!(
        log,
        "  -> {} {}{}{}",
        r.regime,
        match r.outcome {
            LayoutOutcome::Passed => "PASSED".to_string(),
            LayoutOutcome::Failed => format!("FAILED ({})", r.why.join(", ")),
            LayoutOutcome::NotChecked => format!("NOT CHECKED: {}", r.why.join("; ")),
            LayoutOutcome::Crash => format!("CRASH: {}", r.why.join("; ")),
        },
        if r.tables > 0 { format!(", {} tables, booted in {:.1}s", r.tables, r.boot_secs) } else { String::new() },
        r.reproducer.as_ref().map_or(String::new(), |p| format!("; reproducer {p}"))
    );
    (b, log)
}

/// Run `cmd`.
///
/// # Errors
/// Bad input (kernel, initramfs, shard), named in one line.
/// Whether a guest of `size` bytes of RAM can boot to its init here: RAM is a sparse
/// memfd, so only what the kernel touches costs — its page tables (a page-granular
/// linear map: size / 512) and its memmap (64 bytes per 4 KiB page: size / 64).
///
/// # Errors
/// MemAvailable is smaller than that and a GiB: one line, before any boot.
fn fits_here(size: u64) -> anyhow::Result<()> {
    let need = size / 64 + size / 512 + (1 << 30);
    let avail = crate::report::proc_kib("/proc/meminfo", "MemAvailable:").map(|kib| kib << 10);
    match avail {
        Some(a) if a < need => anyhow::bail!(
            "--ram {} GiB: a kernel touches about {} MiB of it (tables and memmap) and this machine has {} MiB \
             available: use a smaller --ram",
            size >> 30,
            need >> 20,
            a >> 20
        ),
        _ => Ok(()),
    }
}

pub fn run(cmd: &LinuxCommand) -> anyhow::Result<Class> {
    let image = load_kernel(&cmd.run.kernel)?;
    let initrd_size = cmd.run.initrd_size()?;
    // Layouts are made for the image size rounded up to 64 MiB, so every kernel up to
    // that size (6.1 and 6.12, Debian's and small ones) boots the very same layouts
    // for a seed: a difference between them is the kernels', not the layouts'.
    let needs = Needs { image_size: image.image_size.next_multiple_of(64 << 20), initrd_size };
    let one_bank = match cmd.ram {
        Some(size) => {
            let l = super::layout::one_bank(size, needs).map_err(anyhow::Error::msg)?;
            fits_here(size)?;
            Some(l)
        }
        None => None,
    };
    let layouts = match &one_bank {
        Some(l) => Layouts::OneBank(l),
        None => Layouts::Generated { seed: cmd.seed, needs },
    };
    let (i, n) = cmd.shard;
    let indices: Vec<u64> = (0..cmd.count).filter(|k| k % n == i - 1).collect();
    println!(
        "linux: {} ({} MiB image), -cpu {}, seed {}, layouts {} of {} (shard {i}/{n})",
        cmd.run.kernel.display(),
        image.image_size >> 20,
        cmd.run.cpu,
        cmd.seed,
        indices.len(),
        cmd.count
    );
    let started = std::time::Instant::now();
    let jobs = cmd.jobs.clamp(1, indices.len().max(1));
    let booted = boot_layouts(cmd, &image, layouts, indices, jobs)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "linux: {} layouts in {secs:.1}s = {:.2} layouts/s ({jobs} at a time)",
        booted.rows.len(),
        booted.rows.len() as f64 / secs.max(1e-9)
    );
    let report = LinuxReport {
        tested: Some(cmd.run.tested("linux", &[cmd.seed])),
        backend: booted.backend,
        release: booted.release.unwrap_or_default(),
        kernel: cmd.run.kernel.display().to_string(),
        cpu: cmd.run.cpu.clone(),
        seed: cmd.seed,
        count: cmd.count,
        regimes: regime_rows(&booted.rows),
        layouts: booted.rows,
    };
    let all = add_to_report(cmd.report.as_ref(), report.clone())?;
    print_table(&all.runs);
    let class = verdict(&report);
    if let Some(path) = &cmd.html {
        let page = crate::html::Page {
            title: format!("ptcheck linux: {}", cmd.run.kernel.display()),
            tested: report.tested.as_ref().map(|t| t.pairs()).unwrap_or_default(),
            outcome: {
                let count = |o| report.layouts.iter().filter(|l| l.outcome == o).count();
                format!(
                    "{} layouts: {} passed, {} failed a check, {} crashed, {} not checked",
                    report.layouts.len(),
                    count(LayoutOutcome::Passed),
                    count(LayoutOutcome::Failed),
                    count(LayoutOutcome::Crash),
                    count(LayoutOutcome::NotChecked)
                )
            },
            passed: class == Class::Passed,
            sections: std::iter::once(crate::html::Section {
                title: format!("{} per regime", report.release),
                facts: report
                    .regimes
                    .iter()
                    .map(|(name, r)| {
                        let line = format!(
                            "{} layouts: {} passed, {} failed, {} crashed, {} not checked; {:.1} s per boot",
                            r.layouts, r.passed, r.failed, r.crashed, r.not_checked, r.secs_per_boot
                        );
                        (name.clone(), line)
                    })
                    .collect(),
                ..crate::html::Section::default()
            })
            .chain(booted.sections.into_iter().map(|(_, s)| s))
            .collect(),
        };
        page.write(path)?;
        println!("html: {}", path.display());
    }
    Ok(class)
}

/// What the boots of one run gave: a row per layout (in index order), the kernel's
/// release and the backend that booted it.
struct Boots {
    rows: Vec<LayoutRow>,
    release: Option<String>,
    backend: String,
    /// Each layout drawn (`--html`), by index.
    sections: Vec<(u64, crate::html::Section)>,
}

/// Boots `indices`' layouts `jobs` at a time, printing each layout's log as it ends;
/// three layouts in a row that could not boot stop the run (the setup, not the
/// kernel).
fn boot_layouts(
    cmd: &LinuxCommand,
    image: &super::KernelImage,
    layouts: Layouts<'_>,
    indices: Vec<u64>,
    jobs: usize,
) -> anyhow::Result<Boots> {
    let mut out = Boots { rows: Vec::new(), release: None, backend: "linux-?".to_string(), sections: Vec::new() };
    let mut consecutive_infra = 0;
    let queue = std::sync::Mutex::new(indices.into_iter());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<(Booted, String)>();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (queue, stop) = (&queue, &stop);
            scope.spawn(move || loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Some(k) = queue.lock().map(|mut q| q.next()).unwrap_or(None) else { break };
                let booted = layout_job(cmd, image, layouts, k);
                if tx.send(booted).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (b, log) in rx {
            print!("{log}");
            if out.release.is_none() {
                out.release.clone_from(&b.release);
            }
            if b.row.tables > 0 {
                out.backend = b.backend.clone();
            }
            // Only a boot that failed for the setup counts: a crash is the kernel's verdict.
            let infra = b.row.tables == 0 && b.row.outcome == LayoutOutcome::NotChecked;
            consecutive_infra = if infra { consecutive_infra + 1 } else { 0 };
            if cmd.html.is_some() {
                out.sections.push((b.row.index, b.html));
            }
            out.rows.push(b.row);
            if consecutive_infra >= 3 && !stop.swap(true, std::sync::atomic::Ordering::Relaxed) {
                println!(
                    "linux: 3 layouts in a row could not be booted: stopping (the setup, not the kernel's tables)"
                );
            }
        }
        Ok(())
    })?;
    out.rows.sort_by_key(|r| r.index);
    out.sections.sort_by_key(|(k, _)| *k);
    Ok(out)
}

/// The layouts' outcomes summed per regime.
fn regime_rows(rows: &[LayoutRow]) -> BTreeMap<String, RegimeRow> {
    let mut regimes: BTreeMap<String, RegimeRow> = BTreeMap::new();
    for r in rows {
        let e = regimes.entry(r.regime.clone()).or_default();
        e.layouts += 1;
        match r.outcome {
            LayoutOutcome::Passed => e.passed += 1,
            LayoutOutcome::Failed => e.failed += 1,
            LayoutOutcome::NotChecked => e.not_checked += 1,
            LayoutOutcome::Crash => e.crashed += 1,
        }
        e.tables_walked += r.tables as u64;
        e.secs_per_boot += r.boot_secs;
    }
    for (regime, e) in regimes.iter_mut() {
        let booted = rows.iter().filter(|r| &r.regime == regime && r.boot_secs > 0.0).count();
        e.secs_per_boot = if booted > 0 { e.secs_per_boot / booted as f64 } else { 0.0 };
    }
    regimes
}

/// `report` with the runs already in `file` when appending, written to `file` when
/// one was asked for.
fn add_to_report(file: Option<&ReportFile>, report: LinuxReport) -> anyhow::Result<LinuxReports> {
    match file {
        Some(f) => crate::report::append_json(&f.path, f.append, "ptcheck linux", |all: &mut LinuxReports| {
            all.runs.push(report)
        }),
        None => Ok(LinuxReports { runs: vec![report] }),
    }
}

/// The run's outcome from its regimes' counts, printed in one line: any failure
/// fails, anything not checked (or nothing passed) is not a pass.
fn verdict(report: &LinuxReport) -> Class {
    let (failed, not_checked, passed) =
        report.regimes.values().fold((0, 0, 0), |a, r| (a.0 + r.failed, a.1 + r.not_checked, a.2 + r.passed));
    let crashed: u64 = report.regimes.values().map(|r| r.crashed).sum();
    let (class, words) = if failed > 0 || crashed > 0 {
        (Class::BuilderFailed, format!("{failed} layouts failed a check, {crashed} crashed (exit 1)"))
    } else if not_checked > 0 || passed == 0 {
        (Class::NotChecked, format!("{not_checked} layouts not checked, {passed} passed (exit 2: not a pass)"))
    } else {
        (Class::Passed, format!("every check passed on {passed} layouts (exit 0)"))
    };
    println!("outcome: {words}");
    class
}

/// The per-kernel, per-regime table.
pub fn print_table(reports: &[LinuxReport]) {
    println!("| kernel | -cpu | regime | layouts | passed | failed | crashed | not checked | tables walked | s/boot |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for rep in reports {
        for (regime, r) in &rep.regimes {
            println!(
                "| {} ({}) | {} | {regime} | {} | {} | {} | {} | {} | {} | {:.1} |",
                rep.backend,
                rep.release,
                rep.cpu,
                r.layouts,
                r.passed,
                r.failed,
                r.crashed,
                r.not_checked,
                r.tables_walked,
                r.secs_per_boot
            );
        }
    }
}

/// Boot a real-kernel reproducer again: same kernel, initramfs, CPU, layout.
///
/// # Errors
/// The file does not parse, or names files that are gone.
pub fn replay(file: &Path, text: &str, timeout: Duration, html: Option<&Path>) -> anyhow::Result<Class> {
    let r: LinuxRepro =
        serde_json::from_str(text).with_context(|| format!("{}: not a {REPRO_FORMAT} reproducer", file.display()))?;
    println!(
        "replay {}: {} ({}), -cpu {}, layout {} of seed {}; recorded failures: {}",
        file.display(),
        r.kernel.display(),
        r.release,
        r.cpu,
        r.index,
        r.seed,
        r.failed.join(", ")
    );
    println!("layout: {}", r.layout.describe());
    let trace = match crate::trace::setup() {
        Ok(t) => Some(t),
        Err(e) => {
            println!("NOT TRACED: {e:#}");
            None
        }
    };
    let accel = super::accel::choose_here(trace.is_some());
    println!("accelerator: {}", accel.why);
    let run = KernelRun {
        kernel: r.kernel.clone(),
        initrd: r.initrd.clone(),
        cpu: r.cpu.clone(),
        timeout,
        plant: r.plant,
        accel: accel.accel,
        trace,
        qemu: None,
    };
    if let Some(p) = r.plant {
        println!("planted: {p:?} (a test fault, planted again)");
    }
    let image = load_kernel(&r.kernel)?;
    let mut log = String::new();
    let b = boot_one(&run, &image, r.layout.clone(), r.index, &mut log);
    print!("{log}");
    if let Some(path) = html {
        let page = crate::html::Page {
            title: format!("ptcheck replay {}", file.display()),
            tested: run.tested("replay", &[r.seed]).pairs(),
            outcome: format!("{}: {}", b.row.outcome, b.row.why.join("; ")),
            passed: b.row.outcome == LayoutOutcome::Passed,
            sections: vec![b.html.clone()],
        };
        page.write(path)?;
        println!("html: {}", path.display());
    }
    // A crash is the same when it is the same kind (a hang's PC may differ).
    let kind = |why: &[String]| why.first().map(|w| super::crash::kind_word(w).to_string());
    let same = b.row.why == r.failed || (b.row.outcome == LayoutOutcome::Crash && kind(&b.row.why) == kind(&r.failed));
    println!(
        "outcome: {} ({})",
        match b.row.outcome {
            LayoutOutcome::Passed => "every check passed".to_string(),
            LayoutOutcome::Failed => format!("failed: {}", b.row.why.join(", ")),
            LayoutOutcome::NotChecked => format!("not checked: {}", b.row.why.join("; ")),
            LayoutOutcome::Crash => format!("crashed: {}", b.row.why.join("; ")),
        },
        if same { "as recorded" } else { "DIFFERENT from the recording" }
    );
    Ok(Class::from(b.row.outcome))
}
