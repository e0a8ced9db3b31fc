//! The patch loop: a tree built for many regimes and every kernel booted as soon as it
//! is built, then one row per regime — built, booted, checked, crashed or not built,
//! with the reason.
//!
//! A build (make -j on every core) and a boot (QEMU's TCG thread) overlap: while
//! regime n boots, regime n+1 builds, so the serial parts of each (the vmlinux links
//! and kallsyms passes, one QEMU thread) share the two cores instead of taking turns.
//! `Order::Sequential` (every build, then every boot) is what `bench --patch-loop`
//! compares it with.

use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use crate::kbuild::{build, Built, Cache, Mirrored};

/// When the boots run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Order {
    /// Each kernel boots while the next one builds.
    Pipelined,
    /// Every build first, then every boot.
    Sequential,
}

/// How one regime went.
pub struct RegimeResult {
    /// The regime built for.
    pub regime: &'static str,
    /// How its build ended.
    pub build: Built,
    /// Seconds its build took.
    pub build_secs: f64,
    /// Per CPU it was booted on: the `-cpu` and `ptcheck linux`'s exit code.
    pub booted: Vec<(String, i32)>,
}

/// What one pass of the loop builds and boots.
pub struct Loop<'a> {
    /// The tree.
    pub src: &'a Mirrored,
    /// The regimes, built in this order.
    pub regimes: &'a [&'static str],
    /// Whether compiles go through ccache.
    pub cache: Cache,
    /// When the boots run.
    pub order: Order,
}

/// Boots the kernel built for a regime (its Image, the regime) on every `-cpu` it
/// runs on: each `-cpu` and `ptcheck linux`'s exit code.
pub type Boot<'a> = &'a mut dyn FnMut(&Path, &str) -> Result<Vec<(String, i32)>, String>;

/// Build the tree for each regime and `boot` each Image, in the loop's order.
///
/// # Errors
/// A tool failed (not the tree's fault: make missing, a disk full) or `boot` failed to
/// run at all; a regime that does not compile is a row, not an error.
pub fn build_and_boot(l: &Loop, boot: Boot) -> Result<Vec<RegimeResult>, String> {
    let Loop { src, regimes, cache, order } = *l;
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let builder = s.spawn(move || -> Result<(), String> {
            for &r in regimes {
                let started = Instant::now();
                let end = build(src, r, cache)?;
                let secs = started.elapsed().as_secs_f64();
                match &end {
                    Built::Image(i) => println!("built {r} from {} in {secs:.0}s: {}", src.id, i.display()),
                    Built::NotOffered(why) => println!("{r}: NOT BUILT, {} does not offer it: {why}", src.id),
                    Built::Failed(why) => println!("{r}: NOT BUILT, the build failed: {why}"),
                }
                if tx.send(RegimeResult { regime: r, build: end, build_secs: secs, booted: Vec::new() }).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut results = Vec::new();
        let mut boot_one = |mut r: RegimeResult| -> Result<RegimeResult, String> {
            if let Built::Image(image) = &r.build {
                r.booted = boot(image, r.regime)?;
            }
            Ok(r)
        };
        let mut failed = None;
        for r in rx.iter() {
            if order == Order::Sequential {
                results.push(r);
                continue;
            }
            match boot_one(r) {
                Ok(r) => results.push(r),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(rx);
        let built = builder.join().map_err(|_| "the build thread panicked".to_string())?;
        if let Some(e) = failed {
            return Err(e);
        }
        built?;
        if order == Order::Sequential {
            results = results.into_iter().map(&mut boot_one).collect::<Result<_, _>>()?;
        }
        Ok(results)
    })
}

/// `ptcheck linux`'s JSON report, as the types it is written from (layouts skipped):
/// what xtask reads back (`linux::read_report`).
pub type Report = ptcheck_shared::report::LinuxReports<ptcheck_shared::report::IgnoredAny>;

/// The patch loop's table, one row per regime, from `results` and the run's `report`;
/// the exit class: 0 every regime passed (or is not offered), 1 a regime failed a
/// check, crashed or did not build, 2 one could not be checked.
pub fn table(results: &[RegimeResult], report: &Report) -> u8 {
    println!("\n{:<10} {:<14} {:>6} {:>8} {:>7}  verdict", "regime", "build", "booted", "checked", "crashed");
    let mut worst = 0u8;
    for r in results {
        let (build, verdict, class) = match &r.build {
            Built::NotOffered(why) => ("not offered".to_string(), format!("not offered: {why}"), 0),
            Built::Failed(why) => ("NOT BUILT".to_string(), format!("NOT BUILT: {why}"), 1),
            Built::Image(image) => {
                for (cpu, code) in &r.booted {
                    let run =
                        report.runs.iter().find(|run| same_file(Path::new(&run.kernel), image) && run.cpu == *cpu);
                    let (label, verdict, counts, class) = verdict(r.regime, cpu, *code, run);
                    println!(
                        "{label:<10} {:<14} {:>6} {:>8} {:>7}  {verdict}",
                        format!("built {:.0}s", r.build_secs),
                        counts.0,
                        counts.1,
                        counts.2
                    );
                    worst = worse(worst, class);
                }
                continue;
            }
        };
        println!("{:<10} {build:<14} {:>6} {:>8} {:>7}  {verdict}", r.regime, "-", "-", "-");
        worst = worse(worst, class);
    }
    worst
}

/// One boot's row: its label (the regime, `@48`/`@47` where it folded at run time),
/// verdict, (booted, checked, crashed) and class.
fn verdict(
    regime: &str,
    cpu: &str,
    code: i32,
    run: Option<&ptcheck_shared::report::LinuxReport<ptcheck_shared::report::IgnoredAny>>,
) -> (String, String, (String, String, String), u8) {
    use ptcheck_shared::report::LayoutOutcome::*;
    let folded = cpu.contains("lpa2=off");
    let mut label = regime.to_string();
    let rows: Vec<_> = run.map(|r| r.layouts.iter().collect()).unwrap_or_default();
    if folded {
        // The regime it ran in, from its TCR, when a layout got that far.
        match rows.iter().map(|l| l.regime.as_str()).find(|g| g.contains('@')) {
            Some(g) => label = g.to_string(),
            // (What the kernel folds to without LPA2: 4K to 48 bits, 16K to 47.)
            None => label.push_str(if regime.starts_with("16k") { "@47" } else { "@48" }),
        }
    }
    let count = |o| rows.iter().filter(|l| l.outcome == o).count();
    let (passed, failed, crashed, unchecked) = (count(Passed), count(Failed), count(Crash), count(NotChecked));
    let first_why = |o| rows.iter().find(|l| l.outcome == o).map(|l| l.why.join(", ")).unwrap_or_default();
    let (verdict, class) = if rows.is_empty() {
        (format!("NOT CHECKED: ptcheck linux exited {code} with no layout reported (see above)"), 2)
    } else if crashed > 0 {
        (format!("CRASHED: {}", first_why(Crash)), 1)
    } else if failed > 0 {
        (format!("FAILED: {}", first_why(Failed)), 1)
    } else if unchecked > 0 {
        (format!("NOT CHECKED: {}", first_why(NotChecked)), 2)
    } else {
        (format!("passed ({passed} layouts)"), 0)
    };
    let counts = ((rows.len() - unchecked).to_string(), format!("{passed}/{}", passed + failed), crashed.to_string());
    (label, verdict, counts, class)
}

/// 1 (a finding) outranks 2 (not checked) outranks 0.
pub fn worse(a: u8, b: u8) -> u8 {
    match (a, b) {
        (1, _) | (_, 1) => 1,
        (2, _) | (_, 2) => 2,
        _ => 0,
    }
}

/// Whether two paths name one file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
