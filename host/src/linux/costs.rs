//! `ptcheck kernel-costs`: what a real kernel's early page-table code executes,
//! counted by the tracer instruction by instruction — `map_mem()` (where the kernel
//! has it out of line) and all of `paging_init()` — on one bank of each RAM size with
//! `rodata=full` (a page-granular linear map: the seed's cover letter's case). Each
//! boot is ended by the tracer as `paging_init()` returns, so nothing sized by RAM
//! after it (memmap init) is paid for. Beside each row: ptcheck's own `linux-6.9` and
//! `linux` builders mapping the same RAM page by page in the same regime.
//!
//! Where the functions are comes from the kernel itself: one untraced boot on 1 GiB to
//! its init (no KASLR, as every costs boot), whose `/init` prints their kallsyms
//! addresses, and where the fixmap's PTE table is (the leaf tables inside the image).

use std::path::PathBuf;

use anyhow::bail;
use ptcheck_shared::report::{CostsReports, CostsRow, KernelCosts, LayoutOutcome};
use ptcheck_shared::trace::{per_table as per, Call, Counts};

use super::layout::{one_bank, Cmdline, Layout, Needs};
use super::{boot_and_inspect, boot_until_stopped, load_kernel, KernelImage, KernelRun};
use crate::outcome::Class;

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct CostsCommand {
    /// The kernel, initramfs, `-cpu`, timeout; traced (the counts are the tracer's).
    pub run: KernelRun,
    /// RAM sizes, one bank each.
    pub sizes: Vec<u64>,
    /// What to call the kernel in the table (default: its release).
    pub label: Option<String>,
    /// The JSON report, and whether to add to the kernels already in it.
    pub report: Option<super::command::ReportFile>,
    /// Draw every kernel of the report (or this one alone) as bar charts here.
    pub html: Option<PathBuf>,
}

/// The RAM of the boot that finds the symbols.
const PROBE_RAM: u64 = 1 << 30;

/// Where the kernel's functions and fixmap are, from its 1 GiB boot.
struct Probe {
    release: String,
    regime: ptcheck_shared::TranslationConfig,
    map_mem: Option<u64>,
    paging_init: u64,
    map_mem_note: Option<String>,
    fixmap: Result<(u64, u64), String>,
}

/// A size's layout: one bank, `rodata=full`, checked before anything boots.
fn layout_of(size: u64, needs: Needs) -> anyhow::Result<Layout> {
    let mut l = one_bank(size, needs).map_err(anyhow::Error::msg)?;
    l.cmdline = Cmdline::RodataFull;
    // Stopped at paging_init: the page tables (a page-granular map: size / 512), the
    // tracer's records for the frames written, QEMU and the kernel's early allocations.
    let need = size / 256 + (2 << 30);
    if let Some(avail) = crate::report::proc_kib("/proc/meminfo", "MemAvailable:").map(|k| k << 10) {
        if avail < need {
            bail!(
                "--ram {} GiB: counting it to paging_init's return takes about {} MiB here and this machine has {} \
                 MiB available: use a smaller --ram",
                size >> 30,
                need >> 20,
                avail >> 20
            );
        }
    }
    Ok(l)
}

/// Boot on 1 GiB to the init and read where `map_mem`, `paging_init` and the fixmap's
/// PTE table are.
fn probe(run: &KernelRun, image: &KernelImage, needs: Needs) -> anyhow::Result<Probe> {
    let mut untraced = run.clone();
    untraced.trace = None;
    let layout = one_bank(PROBE_RAM, needs).map_err(anyhow::Error::msg)?;
    let (i, _ram) = boot_and_inspect(&untraced, image, &layout).map_err(|e| {
        e.context("the kernel did not reach its init on 1 GiB, so where its functions are is not known")
    })?;
    let map = super::symbols::SystemMap::find(&run.kernel);
    let find = |name: &str| i.facts.sym(name).or_else(|| map.as_ref().and_then(|m| m.address(name)));
    let Some(paging_init) = find("paging_init") else {
        bail!(
            "neither map_mem nor paging_init is in the kernel's symbols (no kallsyms, and no System.map next to \
             it): cannot count"
        )
    };
    let map_mem = find("map_mem");
    let map_mem_note = map_mem.is_none().then(|| {
        "map_mem is not in the kernel's symbols (static, inlined into paging_init): paging_init counted for both".into()
    });
    let fixmap = fixmap_ptes(&i, map.as_ref(), &layout);
    Ok(Probe {
        release: i.facts.release.clone().unwrap_or_else(|| "release not printed".into()),
        regime: i.cfg,
        map_mem,
        paging_init,
        map_mem_note,
        fixmap,
    })
}

/// Where the fixmap's PTE tables are (physical `[lo, hi)`): the kernel's `bm_pte`, from
/// its System.map (to the next symbol) or kallsyms (`bm_pte.end`, the init prints the
/// next symbol's address), placed through `_text` (no KASLR: the image runs where it
/// was loaded). Without the symbol (a kernel without CONFIG_KALLSYMS_ALL, such as
/// Debian's 6.1): the leaf tables reachable at the init that lie in the image's bss
/// (`__bss_start`..`_end`, or "Kernel data"), which is where `bm_pte` is and where
/// freed init memory (which later tables may reuse) is not.
fn fixmap_ptes(
    i: &super::Inspection,
    map: Option<&super::symbols::SystemMap>,
    layout: &Layout,
) -> Result<(u64, u64), String> {
    let f = &i.facts;
    let text = f.sym("_text").or_else(|| map.map(|m| m.text_start()));
    let from_map = map.and_then(|m| m.symbol("bm_pte").and_then(|a| Some((a, m.next_after(a)?))));
    let from_kallsyms = f.sym("bm_pte").zip(f.sym("bm_pte.end"));
    if let (Some(text), Some((a, b))) = (text, from_map.or(from_kallsyms)) {
        let pa = |va: u64| layout.kernel + (va - text);
        return Ok((pa(a), pa(b)));
    }
    let (lo, hi) = match (text, f.sym("__bss_start"), f.sym("_end"), f.iomem.get("Kernel_data")) {
        (Some(t), Some(b), Some(e), _) => (layout.kernel + (b - t), layout.kernel + (e - t)),
        (_, _, _, Some(d)) => *d,
        _ => return Err("no bm_pte, bss or kernel data in the symbols: fixmap writes not counted".into()),
    };
    let page = i.cfg.granule().page_size();
    let mut leaves: Vec<u64> = i
        .walk
        .tables
        .iter()
        .filter(|t| t.level == ptcheck_shared::Level(3) && t.pa >= lo && t.pa < hi)
        .map(|t| t.pa)
        .collect();
    leaves.sort_unstable();
    match (leaves.first(), leaves.last()) {
        (Some(&a), Some(&b)) if b - a < 8 * page => Ok((a, b + page)),
        (Some(_), Some(_)) => Err(format!(
            "leaf tables in the kernel's data at {} places ({lo:#x}..{hi:#x}) and no bm_pte symbol: which is the \
             fixmap's is not known, fixmap writes not counted",
            leaves.len()
        )),
        _ => {
            Err(format!("no leaf table in the kernel's data ({lo:#x}..{hi:#x}) at the init: fixmap writes not counted"))
        }
    }
}

/// The largest resident set (KiB) of any QEMU this process has waited for.
fn children_peak_kib() -> Option<u64> {
    // SAFETY: getrusage writes one `rusage` into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN covers every waited-for child.
    let r = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    (r == 0).then_some(ru.ru_maxrss as u64)
}

/// One function's counts in one line.
pub fn describe(c: &Counts) -> String {
    let ops: Vec<String> = c.tlbis_by_op().map(|(n, k)| format!("{n} {k}")).collect();
    format!(
        "{} insns, {} TLBI ({}), {} DSB, {} DMB, {} ISB, {} fixmap PTE writes, {} tables linked, {} descriptor \
         writes; per table (TLBI / DSB / ISB / fixmap / insns) {}",
        c.insns,
        c.tlbi,
        if ops.is_empty() { "none".to_string() } else { ops.join(", ") },
        c.dsb,
        c.dmb,
        c.isb,
        c.fixmap_writes,
        c.table_links,
        c.table_writes,
        c.per_table()
    )
}

/// Run `cmd`: the probe boot, then one boot per size.
///
/// # Errors
/// Bad input, named in one line before any traced boot: no tracer, no sizes, a size
/// the machine cannot hold, a kernel that does not boot or has no symbols to bracket.
pub fn run(cmd: &CostsCommand) -> anyhow::Result<Class> {
    let Some(trace) = cmd.run.trace.clone() else {
        bail!("kernel-costs counts through the tracer: it needs QEMU 10 and the plugin (cargo xtask fetches them)")
    };
    let mut sizes = cmd.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        bail!("kernel-costs: no --ram size given (16G, 64G, 256G)");
    }
    let image = load_kernel(&cmd.run.kernel)?;
    let needs = Needs { image_size: image.image_size.next_multiple_of(64 << 20), initrd_size: cmd.run.initrd_size()? };
    let layouts: Vec<(u64, Layout)> =
        sizes.iter().map(|&s| layout_of(s, needs).map(|l| (s, l))).collect::<anyhow::Result<_>>()?;
    let p = match probe(&cmd.run, &image, needs) {
        Ok(p) => p,
        Err(e) => {
            // A kernel that crashes before its init never reaches map_mem: a crash,
            // named as any boot's, never a row of zeros.
            let Some(c) = e.downcast_ref::<super::crash::Crash>() else { return Err(e) };
            println!("kernel-costs: the 1 GiB boot that finds the symbols crashed: {}", c.summary);
            for d in &c.details {
                println!("  {d}");
            }
            println!("outcome: crash before paging_init could be counted (exit 1)");
            return Ok(Class::BuilderFailed);
        }
    };
    let label = cmd.label.clone().unwrap_or_else(|| p.release.clone());
    println!(
        "kernel-costs: {label}: {} on {}, paging_init at {:#x}, map_mem {}; fixmap PTEs {}",
        p.release,
        p.regime,
        p.paging_init,
        p.map_mem.map_or_else(|| "not in the symbols (inlined)".to_string(), |a| format!("at {a:#x}")),
        match &p.fixmap {
            Ok((a, b)) => format!("at {a:#x}..{b:#x}"),
            Err(e) => e.clone(),
        }
    );
    if let Some(n) = &p.map_mem_note {
        println!("kernel-costs: {n}");
    }
    let mut t = trace;
    t.brackets = p.map_mem.iter().map(|&a| ("map_mem".to_string(), a)).collect();
    t.brackets.push(("paging_init".into(), p.paging_init));
    t.stop = Some(p.paging_init);
    t.fixmap = p.fixmap.clone().ok();
    let mut run = cmd.run.clone();
    run.trace = Some(t);
    let mut rows = Vec::new();
    for (size, layout) in layouts {
        rows.push(count_one(&run, &image, &p, size, &layout));
    }
    let report = KernelCosts {
        tested: Some(cmd.run.tested("kernel-costs", &[])),
        kernel: cmd.run.kernel.display().to_string(),
        release: p.release.clone(),
        label,
        regime: p.regime.to_string(),
        map_mem: p.map_mem,
        map_mem_note: p.map_mem_note.clone(),
        fixmap: p.fixmap.clone(),
        rows,
    };
    let class = verdict(&report);
    let all = match &cmd.report {
        Some(f) => {
            let all = crate::report::append_json(&f.path, f.append, "kernel-costs", |all: &mut CostsReports| {
                all.runs.push(report)
            })?;
            println!("report: {}", f.path.display());
            all
        }
        None => CostsReports { runs: vec![report] },
    };
    if let Some(path) = &cmd.html {
        costs_page(&all, class).write(path)?;
        println!("html: {}", path.display());
    }
    Ok(class)
}

/// The call of the function at `entry` among `calls`.
fn call_of(calls: &[Call], entry: u64) -> Option<Call> {
    calls.iter().find(|c| c.entry == entry).copied()
}

/// One size's boot, counted, and the builders beside it.
fn count_one(run: &KernelRun, image: &KernelImage, p: &Probe, size: u64, layout: &Layout) -> CostsRow {
    let mut row = CostsRow {
        ram: size,
        outcome: LayoutOutcome::Passed,
        why: Vec::new(),
        map_mem: None,
        paging_init: None,
        secs: 0.0,
        qemu_peak_kib: None,
        ptcheck_peak_kib: None,
        builders: Vec::new(),
    };
    match boot_until_stopped(run, image, layout) {
        Ok((o, secs)) => {
            row.paging_init = call_of(&o.calls, p.paging_init);
            row.map_mem = p.map_mem.and_then(|a| call_of(&o.calls, a));
            row.secs = secs;
            if row.paging_init.is_none_or(|c| c.counts.insns == 0) {
                row.outcome = LayoutOutcome::NotChecked;
                row.why.push("the tracer stopped without paging_init's counts: not counted".into());
            }
        }
        Err(e) => {
            let crash = e.downcast_ref::<super::crash::Crash>().cloned();
            row.outcome = if crash.is_some() { LayoutOutcome::Crash } else { LayoutOutcome::NotChecked };
            row.why.push(crash.map_or_else(|| format!("{e:#}"), |c| c.summary));
        }
    }
    row.qemu_peak_kib = children_peak_kib();
    row.ptcheck_peak_kib = crate::report::status_kib("self", "VmHWM:");
    match crate::bench::builders_on_page_map(p.regime, size) {
        Ok(b) => row.builders = b,
        Err(e) => row.why.push(format!("ptcheck's builders: {e:#}")),
    }
    print_row(&row);
    row
}

fn print_row(r: &CostsRow) {
    let gib = r.ram >> 30;
    if r.outcome != LayoutOutcome::Passed {
        println!("  {gib} GiB: {}: {}", r.outcome, r.why.join("; "));
        return;
    }
    let mib = |k: Option<u64>| k.map_or("?".to_string(), |k| (k >> 10).to_string());
    println!(
        "  {gib} GiB: stopped at paging_init's return after {:.1}s (traced, emulated); peak RSS QEMU {} MiB, ptcheck {} MiB",
        r.secs,
        mib(r.qemu_peak_kib),
        mib(r.ptcheck_peak_kib)
    );
    for (name, c) in [("map_mem", r.map_mem), ("paging_init", r.paging_init)] {
        if let Some(c) = c {
            println!(
                "    {name}: {} ({:.1} ms emulated wall time, TCG with the tracer: not hardware time)",
                describe(&c.counts),
                c.emulated_ns as f64 / 1e6
            );
        }
    }
    for b in &r.builders {
        println!(
            "    ptcheck's {}: {} tables; per table {:.2} TLBI, {:.2} DSB, {:.2} fixmap sets, {:.2} clears, {:.1} \
             descriptor writes",
            b.builder,
            b.tables,
            per(b.tlbis, b.tables),
            per(b.dsbs, b.tables),
            per(b.fixmap_sets, b.tables),
            per(b.fixmap_clears, b.tables),
            per(b.descriptor_writes, b.tables)
        );
    }
    for w in &r.why {
        println!("    {w}");
    }
}

/// Exit code: every size counted 0; a crash 1 (the kernel's); anything not counted 2.
fn verdict(k: &KernelCosts) -> Class {
    let crashed = k.rows.iter().filter(|r| r.outcome == LayoutOutcome::Crash).count();
    let uncounted = k.rows.iter().filter(|r| r.outcome == LayoutOutcome::NotChecked).count();
    let (class, words) = if crashed > 0 {
        (
            Class::BuilderFailed,
            format!("{crashed} of {} sizes crashed before paging_init returned (exit 1)", k.rows.len()),
        )
    } else if uncounted > 0 {
        (Class::NotChecked, format!("{uncounted} of {} sizes not counted (exit 2: not a result)", k.rows.len()))
    } else {
        (Class::Passed, format!("{} sizes counted (exit 0)", k.rows.len()))
    };
    println!("outcome: {words}");
    class
}

/// One count of a function's [`Counts`].
type Metric = fn(&Counts) -> u64;

/// Every kernel of `all` as bar charts: per size, each kernel's TLBIs, DSBs, ISBs and
/// fixmap writes per table (and ptcheck's builders' TLBIs and DSBs), then a table.
fn costs_page(all: &CostsReports, class: Class) -> crate::html::Page {
    use crate::html::{bars, Page, Section};
    let mut sizes: Vec<u64> = all.runs.iter().flat_map(|k| k.rows.iter().map(|r| r.ram)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let counted = |r: &CostsRow| r.counted().map(|(_, c)| c);
    let mut sections = Vec::new();
    for size in sizes {
        let mut charts = Vec::new();
        let metrics: [(&str, Metric); 4] =
            [("TLBI", |c| c.tlbi), ("DSB", |c| c.dsb), ("ISB", |c| c.isb), ("fixmap PTE writes", |c| c.fixmap_writes)];
        for (name, f) in metrics {
            let mut group = Vec::new();
            for k in &all.runs {
                for r in k.rows.iter().filter(|r| r.ram == size) {
                    if let Some(c) = counted(r) {
                        group.push((format!("{} ({})", k.label, k.regime), per(f(&c.counts), c.counts.table_links)));
                    }
                }
            }
            if let Some(b) = all.runs.iter().flat_map(|k| &k.rows).find(|r| r.ram == size).map(|r| &r.builders) {
                for x in b.iter().filter(|_| name == "TLBI" || name == "DSB") {
                    let v = if name == "TLBI" { x.tlbis } else { x.dsbs };
                    group.push((format!("ptcheck's {} builder", x.builder), per(v, x.tables)));
                }
            }
            charts.push((format!("{name} per table"), group));
        }
        let failing: Vec<String> = all
            .runs
            .iter()
            .flat_map(|k| {
                k.rows.iter().filter(|r| r.ram == size && r.outcome != LayoutOutcome::Passed).map(move |r| (k, r))
            })
            .map(|(k, r)| format!("{}: {}: {}", k.label, r.outcome, r.why.join("; ")))
            .collect();
        let rows: Vec<String> = all
            .runs
            .iter()
            .flat_map(|k| k.rows.iter().filter(|r| r.ram == size).map(move |r| (k, r)))
            .filter_map(|(k, r)| counted(r).map(|c| (k, c)))
            .map(|(k, c)| {
                format!(
                    "{} ({}): {}; emulated {:.0} ms",
                    k.label,
                    k.regime,
                    describe(&c.counts),
                    c.emulated_ns as f64 / 1e6
                )
            })
            .collect();
        sections.push(Section {
            title: format!("{} GiB, rodata=full, counted to paging_init's return", size >> 30),
            failing,
            charts: vec![bars(&format!("{} GiB", size >> 30), &charts)],
            text: vec![("counts".into(), rows.join("\n"))],
            ..Section::default()
        });
    }
    Page {
        title: format!("ptcheck kernel-costs: {} kernels", all.runs.len()),
        tested: all.runs.first().and_then(|k| k.tested.as_ref()).map(|t| t.pairs()).unwrap_or_default(),
        outcome: format!("{class:?} (the last kernel run); emulated times are TCG with the tracer, not hardware time"),
        passed: class == Class::Passed,
        sections,
    }
}
