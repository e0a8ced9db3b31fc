//! `cargo xtask bench --linux-costs [--report F] [--source A --source B] [--slice]`:
//! the seed series' cost table, on the real kernel code. Each kernel is counted by
//! `ptcheck kernel-costs` (traced, `rodata=full`, one bank per size, stopped as
//! `paging_init()` returns) and the kernels' rows are then put side by side: before →
//! after ratios, the cover letter's published milliseconds for the nearest machine,
//! and ptcheck's own `linux-6.9` → `linux` builders on the same map.

use std::path::{Path, PathBuf};

use ptcheck_shared::report::{CostsReports, CostsRow, KernelCosts};
use ptcheck_shared::trace::{per_table as per, Counts};

use crate::kbuild::{build, Built, Cache};
use crate::linux::{CPU, CPU_NO_LPA2};

/// What to count.
pub struct CostsBench {
    /// Two trees to compare (before, after), built for 4k-48; none: Debian's kernels
    /// and sources.
    pub sources: Vec<PathBuf>,
    /// The JSON report (default target/linux/costs.json).
    pub report: Option<PathBuf>,
    /// Only the 16 GiB slice on Debian's 6.1 and 6.12 (`cargo xtask test`).
    pub slice: bool,
    /// The HTML page of bar charts (default target/linux/costs.html).
    pub html: Option<PathBuf>,
}

/// One kernel to count: its name in the table, the file, its `-cpu`, the sizes.
struct Kernel {
    label: String,
    image: PathBuf,
    cpu: &'static str,
    sizes: &'static [&'static str],
}

const ALL_SIZES: &[&str] = &["16G", "64G", "256G"];
const ONE_SIZE: &[&str] = &["16G"];

/// The seed's cover letters (v3, `map_mem()` on hardware, ms; ../shared/REFERENCE.md):
/// RAM in GiB, the machine, before the series (6.9-rc), after it.
const PUBLISHED: &[(u64, &str, u64, u64)] = &[
    (16, "Apple M2 VM 16G", 168, 10),
    (64, "Ampere Altra VM 64G", 2198, 104),
    (256, "Ampere Altra VM 256G", 8644, 438),
    (512, "Ampere Altra metal 512G", 17447, 1223),
];

/// A small kernel from `tree` (Debian's `version` when `tree` is `None`) for `regime`.
fn small(tree: Option<&Path>, version: &str, regime: &str) -> Result<PathBuf, String> {
    let src = match tree {
        Some(t) => crate::linux::build_source(Some(&t.display().to_string()), None, None)?,
        None => crate::linux::build_source(None, Some(version), None)?,
    };
    match build(&src, regime, Cache::On)? {
        Built::Image(p) => Ok(p),
        Built::NotOffered(why) | Built::Failed(why) => Err(format!("{} for {regime}: {why}", src.tree.display())),
    }
}

/// The kernels `b` asks for.
fn kernels(b: &CostsBench) -> Result<Vec<Kernel>, String> {
    let mut out = Vec::new();
    if !b.sources.is_empty() {
        if b.sources.len() != 2 {
            return Err("--source: give two trees, before and after (--source A --source B)".into());
        }
        for (tag, t) in ["before", "after"].iter().zip(&b.sources) {
            let image = small(Some(t), "", "4k-48")?;
            out.push(Kernel { label: format!("{tag}: {} 4k-48", t.display()), image, cpu: CPU, sizes: ALL_SIZES });
        }
        return Ok(out);
    }
    let sizes = if b.slice { ONE_SIZE } else { ALL_SIZES };
    // Debian's 6.12 is built for 52-bit VAs; without LPA2 it runs with 48 bits, four
    // levels, as 6.1 does: the two compared like for like.
    let debian = |v: &str, cpu| -> Result<Kernel, String> {
        Ok(Kernel { label: format!("Debian {v}"), image: crate::linux::fetch_debian(v, "4k")?, cpu, sizes })
    };
    out.push(debian("6.1", CPU)?);
    out.push(debian("6.12", CPU_NO_LPA2)?);
    if b.slice {
        return Ok(out);
    }
    out.push(Kernel { label: "6.1 small 4k-48".into(), image: small(None, "6.1", "4k-48")?, cpu: CPU, sizes });
    out.push(Kernel { label: "6.12 small 4k-48".into(), image: small(None, "6.12", "4k-48")?, cpu: CPU, sizes });
    for r in crate::kbuild::regimes("all")?.into_iter().filter(|r| *r != "4k-48") {
        let image = small(None, "6.12", r)?;
        out.push(Kernel { label: format!("6.12 small {r}"), image, cpu: CPU, sizes: ONE_SIZE });
    }
    Ok(out)
}

/// Run the bench; the kernels' reports, read back.
///
/// # Errors
/// A kernel could not be fetched or built, or `ptcheck kernel-costs` failed to run.
pub fn bench(b: &CostsBench) -> Result<CostsReports, String> {
    let initrd = crate::linux::initramfs()?;
    let report = b.report.clone().unwrap_or_else(|| crate::tools::target_dir().join("linux").join("costs.json"));
    let _ = std::fs::remove_file(&report);
    let html = b.html.clone().unwrap_or_else(|| report.with_extension("html"));
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    for k in kernels(b)? {
        let mut cmd = crate::tools::ptcheck_command(false);
        cmd.arg("kernel-costs").arg("--kernel").arg(&k.image).arg("--initrd").arg(&initrd).args(["--cpu", k.cpu]);
        for s in k.sizes {
            cmd.args(["--ram", s]);
        }
        cmd.args(["--label", &k.label]).arg("--report").arg(&report).arg("--report-append").arg("--html").arg(&html);
        println!(
            "\n$ ptcheck kernel-costs --kernel {} --ram {} --label '{}'",
            k.image.display(),
            k.sizes.join(" --ram "),
            k.label
        );
        let code = cmd.status().map_err(|e| format!("cannot run ptcheck kernel-costs: {e}"))?.code();
        if code != Some(0) {
            failed.push(format!("{} (exit {})", k.label, code.map_or("none".into(), |c| c.to_string())));
        }
    }
    let text = std::fs::read_to_string(&report).map_err(|e| format!("{}: {e}", report.display()))?;
    let all: CostsReports = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", report.display()))?;
    println!("\n{}", table(&all));
    println!(
        "linux-costs: {} kernels in {:.0}s; report {}",
        all.runs.len(),
        started.elapsed().as_secs_f64(),
        report.display()
    );
    if !failed.is_empty() {
        return Err(format!("not every size was counted: {}", failed.join(", ")));
    }
    Ok(all)
}

fn ratio(before: f64, after: f64) -> String {
    if after == 0.0 {
        format!("{before:.2} → 0")
    } else {
        format!("{before:.2} → {after:.2} ({:.1}x)", before / after)
    }
}

/// The side-by-side tables: every kernel and size; then before → after.
pub fn table(all: &CostsReports) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| kernel | regime | RAM | counted | tables | insns | TLBI (by op) | DSB | DMB | ISB | fixmap PTE writes | per table: TLBI / DSB / ISB / fixmap / insns | emulated ms (TCG, traced) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for k in &all.runs {
        for r in &k.rows {
            let Some((f, call)) = r.counted() else {
                let _ = writeln!(
                    s,
                    "| {} | {} | {}G | {}: {} |",
                    k.label,
                    k.regime,
                    r.ram >> 30,
                    r.outcome,
                    r.why.join("; ")
                );
                continue;
            };
            let (c, ns) = (call.counts, call.emulated_ns);
            let ops: Vec<String> = c.tlbis_by_op().map(|(n, k)| format!("{n} {k}")).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {}G | {f} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {:.0} |",
                k.label,
                k.regime,
                r.ram >> 30,
                c.table_links,
                c.insns,
                c.tlbi,
                ops.join(", "),
                c.dsb,
                c.dmb,
                c.isb,
                c.fixmap_writes,
                c.per_table(),
                ns as f64 / 1e6
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| before → after | RAM | TLBI per table | DSB per table | ISB per table | insns (total) | cover letter, published (not measured here) | ptcheck linux-6.9 → linux: TLBI / DSB per table |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for (a, b) in pairs(all) {
        for ra in &a.rows {
            let Some(rb) = b.rows.iter().find(|r| r.ram == ra.ram) else { continue };
            let (Some((_, ca)), Some((_, cb))) = (ra.counted(), rb.counted()) else { continue };
            let (ca, cb) = (ca.counts, cb.counts);
            let gib = ra.ram >> 30;
            let published = PUBLISHED
                .iter()
                .min_by_key(|p| p.0.abs_diff(gib))
                .map(|(_, m, x, y)| format!("{m}: {x} → {y} ms ({:.0}x)", *x as f64 / *y as f64))
                .unwrap_or_default();
            let builders = match (rb.builders.first(), rb.builders.get(1)) {
                (Some(x), Some(y)) => format!(
                    "{:.2} / {:.2} → {:.2} / {:.2}",
                    per(x.tlbis, x.tables),
                    per(x.dsbs, x.tables),
                    per(y.tlbis, y.tables),
                    per(y.dsbs, y.tables)
                ),
                _ => "not run".into(),
            };
            let (ta, tb) = (ca.table_links, cb.table_links);
            let _ = writeln!(
                s,
                "| {} → {} | {gib}G | {} | {} | {} | {} → {} ({:.1}x) | {published} | {builders} |",
                a.label,
                b.label,
                ratio(per(ca.tlbi, ta), per(cb.tlbi, tb)),
                ratio(per(ca.dsb, ta), per(cb.dsb, tb)),
                ratio(per(ca.isb, ta), per(cb.isb, tb)),
                ca.insns,
                cb.insns,
                ca.insns as f64 / cb.insns.max(1) as f64,
            );
        }
    }
    s
}

/// The before → after pairs among the kernels counted: Debian 6.1 → 6.12, small 6.1
/// → 6.12 (same regime), the two `--source` trees.
fn pairs(all: &CostsReports) -> Vec<(&KernelCosts, &KernelCosts)> {
    let find = |l: &str| all.runs.iter().find(|k| k.label == l);
    let mut out = Vec::new();
    for (a, b) in [("Debian 6.1", "Debian 6.12"), ("6.1 small 4k-48", "6.12 small 4k-48")] {
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            out.push((a, b));
        }
    }
    let before = all.runs.iter().find(|k| k.label.starts_with("before: "));
    let after = all.runs.iter().find(|k| k.label.starts_with("after: "));
    if let (Some(a), Some(b)) = (before, after) {
        out.push((a, b));
    }
    out
}

/// `cargo xtask test`'s slice: Debian's 6.1 and 6.12 on 16 GiB (fetched by the linux
/// stage already: nothing is built). Asserts what the
/// counts must show: non-zero; 6.12 issuing fewer TLBIs per table than 6.1; and
/// ptcheck's builders against the kernels — `linux` issues 6.12's TLBIs per table
/// exactly, and 6.1 issues more than `linux-6.9`, the known difference (6.1 remaps
/// the PTE table through the fixmap for every contiguous range, and barriers every
/// PTE: the series' first two patches, which ptcheck's `linux-6.9` does not restate).
///
/// # Errors
/// Any of those not so, named with the figures.
pub fn slice() -> Result<(), String> {
    let all = bench(&CostsBench { sources: Vec::new(), report: None, slice: true, html: None })?;
    let row = |label: &str| -> Result<(Counts, CostsRow), String> {
        let k = all.runs.iter().find(|k| k.label == label).ok_or(format!("{label} was not counted"))?;
        let r = k.rows.first().ok_or(format!("{label}: no row"))?;
        let c = r.counted().ok_or(format!("{label}: {}: {}", r.outcome, r.why.join("; ")))?.1.counts;
        Ok((c, r.clone()))
    };
    let (old, old_row) = row("Debian 6.1")?;
    let (new, new_row) = row("Debian 6.12")?;
    for (l, c) in [("6.1", &old), ("6.12", &new)] {
        if c.insns == 0 || c.tlbi == 0 || c.dsb == 0 || c.table_links == 0 || c.fixmap_writes == 0 {
            return Err(format!("Debian {l} at 16 GiB counted zeros: {c:?}"));
        }
    }
    let tlbi = |c: &Counts| c.per_table().tlbi;
    if tlbi(&new) >= tlbi(&old) {
        return Err(format!(
            "6.12 issued {:.2} TLBIs per table, 6.1 {:.2}: the series' cut is not seen",
            tlbi(&new),
            tlbi(&old)
        ));
    }
    let builder = |r: &CostsRow, name: &str| -> Result<f64, String> {
        let b = r.builders.iter().find(|b| b.builder == name).ok_or(format!("ptcheck's {name} builder did not run"))?;
        Ok(per(b.tlbis, b.tables))
    };
    let (linux, linux_69) = (builder(&new_row, "linux")?, builder(&old_row, "linux-6.9")?);
    if (tlbi(&new) - linux).abs() > 0.05 {
        return Err(format!(
            "6.12 issues {:.2} TLBIs per table and ptcheck's linux builder {linux:.2}: they should match",
            tlbi(&new)
        ));
    }
    if tlbi(&old) <= linux_69 {
        return Err(format!(
            "6.1 issues {:.2} TLBIs per table, ptcheck's linux-6.9 {linux_69:.2}: the known difference (6.1 remaps per \
             contiguous range) is not seen",
            tlbi(&old)
        ));
    }
    println!(
        "linux-costs slice: 16 GiB, TLBIs per table 6.1 {:.2} → 6.12 {:.2}; ptcheck's linux {linux:.2} matches 6.12; \
         linux-6.9 {linux_69:.2} < 6.1's (known: 6.1 remaps the PTE table through the fixmap per contiguous range)",
        tlbi(&old),
        tlbi(&new)
    );
    Ok(())
}
