//! `cargo xtask linux [--kernel IMAGE | --debian 6.1|6.12 [--flavour 4k|16k]] [ptcheck
//! linux args]`: boot real arm64 kernels on generated memory layouts and check the
//! tables they built. By default Debian's kernels on both sides of the seed's change:
//! bookworm's 6.1 (4K, 48-bit VA) and trixie's 6.12 (52-bit VA with LPA2, 4K and 16K
//! pages), each 6.12 one on `-cpu max` (4k-52, 16k-52) and `-cpu max,lpa2=off`
//! (folded at run time: 4k-52@48, 16k-52@47); all fetched through a private apt (only
//! `./boot` is unpacked, cached under target/linux; `debian.rs`). The initramfs's
//! `/init` is the ptcheck runner (static, arm64), which prints the kernel's release and
//! symbols, then the up marker, and waits.

use std::path::{Path, PathBuf};

use crate::builds::Report;
use crate::flags::Linux;
use crate::nested_kvm::{cross_build_runner, write_initramfs, MUSL};
use crate::tools::{build_guest, cargo, ensure_qemu, guest_image, target_dir, Result};

/// A Debian arm64 kernel ptcheck knows how to fetch.
struct Debian {
    /// "6.1" or "6.12".
    version: &'static str,
    /// "4k" or "16k".
    flavour: &'static str,
    /// The suite.
    suite: &'static str,
    /// Its meta package.
    meta: &'static str,
    /// The `-cpu` models to boot it on (each gives one regime).
    cpus: &'static [&'static str],
}

pub(crate) const CPU: &str = "max,pauth-impdef=on";
pub(crate) const CPU_NO_LPA2: &str = "max,pauth-impdef=on,lpa2=off";

const DEBIAN: &[Debian] = &[
    // Before the seed's change (6.10): 4K pages, 48-bit VA.
    Debian { version: "6.1", flavour: "4k", suite: "bookworm", meta: "linux-image-arm64", cpus: &[CPU] },
    // After it: 52-bit VA with LPA2; without LPA2 the same kernel folds to 48/47 bits.
    Debian { version: "6.12", flavour: "4k", suite: "trixie", meta: "linux-image-arm64", cpus: &[CPU, CPU_NO_LPA2] },
    Debian {
        version: "6.12",
        flavour: "16k",
        suite: "trixie",
        meta: "linux-image-arm64-16k",
        cpus: &[CPU, CPU_NO_LPA2],
    },
];

/// Debian's `version` kernel of `flavour` ("6.1" or "6.12"; "4k" or "16k"), fetched.
///
/// # Errors
/// Not one Debian ships, or the fetch failed.
pub(crate) fn fetch_debian(version: &str, flavour: &str) -> std::result::Result<PathBuf, String> {
    let d = DEBIAN
        .iter()
        .find(|d| d.version == version && d.flavour == flavour)
        .ok_or(format!("Debian ships no {version} {flavour} kernel ptcheck knows"))?;
    fetch(d)
}

fn fetch(d: &Debian) -> std::result::Result<PathBuf, String> {
    let source = format!(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian {} main",
        d.suite
    );
    crate::debian::fetch_kernel(&crate::debian::DebianKernel {
        dir: target_dir().join("linux").join(format!("{}-{}", d.suite, d.flavour)),
        source: Some(&source),
        meta: d.meta,
        is_image: |p| p.starts_with("linux-image-6."),
        suffix: "-unsigned",
    })
}

/// What a traced run needs: QEMU 10 (plugin API v4; Debian bookworm's 7.2 has v1,
/// where DC ZVA is invisible and registers cannot be read), fetched from
/// bookworm-backports and unpacked under target/qemu (`debian.rs fetch_qemu`), and the
/// tracer plugin (`host/tracer`), built. Both are named in the environment every
/// later `cargo()` command inherits (`PTCHECK_QEMU_TRACE`, `PTCHECK_TRACER`). The
/// system QEMU stays what untraced runs use (it is also what provides the libraries).
///
/// # Errors
/// The fetch or the build fails: one line saying which.
pub(crate) fn ensure_tracing() -> Result {
    ensure_qemu()?;
    if let Some(why) = tracing_skipped() {
        println!("TRACING SKIPPED ($PTCHECK_NO_TRACE: {why}): the observed checks do not run and are not counted");
        return Ok(());
    }
    let qemu = crate::debian::fetch_qemu(&target_dir().join("qemu"))?;
    crate::tools::sh(cargo().args(["build", "--release", "--quiet", "--package", "ptcheck-tracer"]))?;
    let plugin = target_dir().join("release").join("libptcheck_tracer.so");
    println!("tracing: {} with {}", qemu.display(), plugin.display());
    // SAFETY: xtask is single-threaded here; nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("PTCHECK_QEMU_TRACE", &qemu);
        std::env::set_var("PTCHECK_TRACER", &plugin);
    }
    Ok(())
}

/// Why tracing is switched off for this machine (`PTCHECK_NO_TRACE=<reason>`: a host
/// with no QEMU whose plugin API is v4 and no Debian 10.0 that runs there, such as
/// GitHub's Ubuntu runners), said loudly wherever it matters.
pub(crate) fn tracing_skipped() -> Option<String> {
    std::env::var("PTCHECK_NO_TRACE").ok().filter(|v| !v.is_empty())
}

/// The initramfs (the runner as /init), rebuilt so it matches this tree.
pub(crate) fn initramfs() -> std::result::Result<PathBuf, String> {
    ensure_qemu()?;
    ensure_tracing()?;
    build_guest()?;
    cross_build_runner()?;
    let dir = target_dir().join("linux");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let initrd = dir.join("init.cpio");
    let runner = target_dir().join(MUSL).join("release").join("ptcheck");
    write_initramfs(&initrd, &runner, &guest_image())?;
    Ok(initrd)
}

/// `cargo xtask bench --trace [--seconds N] [--boots N]`: the tracer's cost, side by
/// side in one run (`ptcheck bench --trace-cost`): built-in plans on the system QEMU,
/// QEMU 10 untraced and traced, then Debian's 6.12 4K kernel booted on each.
pub(crate) fn bench_trace(args: &[String]) -> Result {
    let initrd = initramfs()?;
    let kernel = fetch(&DEBIAN[1])?;
    let mut cmd = crate::tools::ptcheck_command(false);
    cmd.arg("bench")
        .arg("--trace-cost")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initrd)
        .args(args.iter().filter(|a| *a != "--trace"));
    crate::tools::sh(&mut cmd)
}

/// `ptcheck linux --kernel K --initrd I --cpu C <extra>`; its exit code.
pub(crate) fn ptcheck(
    kernel: &Path,
    initrd: &Path,
    cpu: &str,
    extra: &[String],
) -> std::result::Result<Option<i32>, String> {
    let mut cmd = crate::tools::ptcheck_command(false);
    cmd.arg("linux")
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .args(["--cpu", cpu])
        .args(extra)
        .args(tracing_skipped().map(|_| "--no-trace"))
        .current_dir(crate::tools::root());
    println!("$ ptcheck linux --kernel {} --cpu {cpu} {}", kernel.display(), extra.join(" "));
    cmd.status().map(|s| s.code()).map_err(|e| format!("cannot run ptcheck linux: {e}"))
}

/// `cargo xtask test`'s linux stage: Debian's 6.1 (before the seed's change) and 6.12
/// (after it, 4K and 16K) pass on two layouts each per CPU; each planted fault fails
/// the check that owns it (exit 1), so the checks are real; a truncated kernel is
/// refused up front (exit 2). A kernel that cannot be fetched is SKIPPED, loudly, and
/// never counted as passed.
pub fn stage() -> Result {
    let initrd = initramfs()?;
    let mut skipped = Vec::new();
    let mut first = None;
    for d in DEBIAN {
        let kernel = match fetch(d) {
            Ok(k) => k,
            Err(e) => {
                println!("linux stage: SKIPPED Debian {} {}, NOT checked: {e}", d.version, d.flavour);
                skipped.push(format!("{} {}", d.version, d.flavour));
                continue;
            }
        };
        for cpu in d.cpus {
            let args = ["--seed", "11", "--count", "2"].map(String::from);
            if ptcheck(&kernel, &initrd, cpu, &args)? != Some(0) {
                return Err(format!(
                    "Debian {} {} on -cpu {cpu}: the kernel's tables failed a check (see above)",
                    d.version, d.flavour
                ));
            }
        }
        println!("linux stage: Debian {} {} passed on 2 layouts per CPU", d.version, d.flavour);
        // The plants go on the 6.12 4K kernel when there is one: rodata=on with its
        // KFENCE pool gives blocks, contiguous runs and guard pages at once.
        if first.is_none() || (d.version, d.flavour) == ("6.12", "4k") {
            first = Some(kernel);
        }
    }
    small_kernel(&initrd, &mut skipped)?;
    let Some(kernel) = first else {
        return Err(format!(
            "linux stage: no Debian kernel could be fetched ({}): nothing was checked",
            skipped.join(", ")
        ));
    };
    // One planted fault per check, on a layout with rodata=on and KFENCE (blocks,
    // contiguous runs and the pool all present).
    // Each fault must fail the check that owns it (named in the report), and its
    // reproducer must boot to the same failure.
    let report = target_dir().join("linux").join("plant-report.json");
    for (plant, check) in [
        ("zeroing", "zeroing"),
        ("translation", "translation"),
        ("image", "image"),
        ("wx", "image"),
        ("table-bits", "table_bits"),
        ("policy", "policy"),
    ] {
        let _ = std::fs::remove_file(&report);
        let html = target_dir().join("linux").join(format!("plant-{plant}.html"));
        let args = ["--seed", "11", "--count", "1", "--cmdline", "rodata-on", "--plant", plant, "--report"]
            .map(String::from)
            .into_iter()
            .chain([report.display().to_string(), "--html".into(), html.display().to_string()])
            .collect::<Vec<_>>();
        if ptcheck(&kernel, &initrd, CPU, &args)? != Some(1) {
            return Err(format!("a planted {plant} fault was not caught"));
        }
        let json = read_report(&report)?;
        let row =
            json.runs.first().and_then(|r| r.layouts.first()).ok_or(format!("{}: no layout", report.display()))?;
        let failed: Vec<&str> = row.why.iter().map(String::as_str).collect();
        if !failed.contains(&check) {
            return Err(format!("a planted {plant} fault failed {failed:?}, not the {check} check"));
        }
        if plant == "zeroing" {
            let repro = row.reproducer.as_deref().ok_or("the failing layout left no reproducer")?;
            let mut cmd = crate::tools::ptcheck_command(false);
            cmd.args(["replay", repro]);
            println!("$ ptcheck replay {repro}");
            let code = cmd.current_dir(crate::tools::root()).status().map_err(|e| e.to_string())?.code();
            if code != Some(1) {
                return Err(format!("replaying {repro} exited {code:?}, not 1 (the recorded failure)"));
            }
        }
    }
    let bytes = std::fs::read(&kernel).map_err(|e| format!("cannot read {}: {e}", kernel.display()))?;
    let truncated = target_dir().join("linux").join("truncated-vmlinuz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])
        .map_err(|e| format!("cannot write {}: {e}", truncated.display()))?;
    if ptcheck(&truncated, &initrd, CPU, &[])? != Some(2) {
        return Err("a truncated kernel was not refused as bad input (exit 2)".into());
    }
    crashes(&initrd)?;
    println!(
        "linux stage: every planted fault failed its own check (zeroing, translation, image, wx, table-bits, policy); \
         a reproducer replayed to the same failure; a truncated kernel was refused; a hung, an exception-looping, a \
         panicking, a resetting and a powering-off kernel ended crash, named; the seed's first version crashed, named"
    );
    if !skipped.is_empty() {
        println!(
            "linux stage: WARNING: {} NOT checked (no Debian archive?): not counted as passed",
            skipped.join(", ")
        );
    }
    Ok(())
}

/// Kernels that do not boot end `crash` (exit 1), named: Debian's 6.12 Image with its
/// first branch made `b .` hangs with the MMU off (found from the absence of progress,
/// long before the timeout), and with an initramfs that is junk it panics (no root).
fn crashes(initrd: &Path) -> Result {
    let kernel = fetch(&DEBIAN[1])?;
    let mut bytes = std::fs::read(&kernel).map_err(|e| format!("cannot read {}: {e}", kernel.display()))?;
    if bytes.get(56..60) != Some(b"ARM\x64".as_slice()) {
        return Err(format!("{} is not a raw arm64 Image: cannot make the hanging kernel", kernel.display()));
    }
    let exception_loop = exception_loop_image(&bytes);
    // code1 (offset 4) is the branch to the kernel's entry: `b .` instead.
    bytes[4..8].copy_from_slice(&0x1400_0000u32.to_le_bytes());
    let dir = target_dir().join("linux");
    let spin = dir.join("spin-Image");
    let looping = dir.join("exception-loop-Image");
    std::fs::write(&looping, &exception_loop).map_err(|e| format!("cannot write {}: {e}", looping.display()))?;
    let junk = dir.join("junk.cpio");
    std::fs::write(&spin, &bytes).map_err(|e| format!("cannot write {}: {e}", spin.display()))?;
    std::fs::write(&junk, [0x5au8; 4096]).map_err(|e| format!("cannot write {}: {e}", junk.display()))?;
    let report = dir.join("crash-report.json");
    for (what, k, i, kind, cmdline) in [
        ("a hanging kernel", &spin, initrd, "hang", None),
        ("a kernel in an exception loop", &looping, initrd, "exception-loop", None),
        ("a kernel with no root", &kernel, junk.as_path(), "panic", None),
        ("a kernel that resets", &kernel, initrd, "reboot", Some("runner-reboots")),
        ("a kernel that powers off", &kernel, initrd, "power-off", Some("runner-powers-off")),
    ] {
        let _ = std::fs::remove_file(&report);
        let mut args: Vec<String> =
            ["--seed", "11", "--count", "1", "--report", &report.to_string_lossy()].map(String::from).into();
        if let Some(c) = cmdline {
            args.extend(["--cmdline".into(), c.into()]);
        }
        let started = std::time::Instant::now();
        if ptcheck(k, i, CPU, &args)? != Some(1) {
            return Err(format!("{what} did not end crash (exit 1)"));
        }
        let json = read_report(&report)?;
        let row = json.runs.first().and_then(|r| r.layouts.first()).ok_or("the crash report has no layout")?;
        let why = row.why.first().cloned().unwrap_or_default();
        if row.outcome != ptcheck_shared::report::LayoutOutcome::Crash || !why.starts_with(kind) {
            return Err(format!("{what} ended {} ({why}), not a {kind} crash", row.outcome));
        }
        println!("linux stage: {what} ended crash in {:.0}s: {why}", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `image` (a raw arm64 Image) made to loop through an exception handler with the MMU
/// off: code1 branches to Image+0x1000, which points VBAR_EL1 at a vector table at
/// Image+0x1800 and executes UDF; every vector runs 31 NOPs and ERETs back to the UDF.
/// The PC moves through the handler; the kernel makes no progress.
fn exception_loop_image(image: &[u8]) -> Vec<u8> {
    const NOP: u32 = 0xd503_201f;
    let mut out = image.to_vec();
    let mut put = |off: usize, insn: u32| out[off..off + 4].copy_from_slice(&insn.to_le_bytes());
    put(4, 0x1400_0000 | ((0x1000 - 4) / 4)); // b Image+0x1000
    put(0x1000, 0x1000_4000); // adr x0, .+0x800 (Image+0x1800)
    put(0x1004, 0xd518_c000); // msr vbar_el1, x0
    put(0x1008, 0xd503_3fdf); // isb
    put(0x100c, 0x0000_0000); // udf #0: an exception (EC 0, unknown) every time
    put(0x1010, 0x17ff_ffff); // b .-4 (never reached)
    for entry in (0x1800..0x2000).step_by(0x80) {
        for i in 0..31 {
            put(entry + 4 * i, NOP);
        }
        put(entry + 0x7c, 0xd69f_03e0); // eret: back to the UDF
    }
    out
}

/// The tree `--build` builds: `--source DIR` or Debian's `--debian` version (6.12
/// unless named), planted with `--plant-tree` when asked, mirrored (kbuild.rs).
pub(crate) fn build_source(
    source: Option<&str>,
    debian: Option<&str>,
    plant: Option<&str>,
) -> std::result::Result<crate::kbuild::Mirrored, String> {
    use crate::kbuild::{debian_source, ensure_toolchain, mirror, planted_source, user_source};
    let mut src = match (source, debian) {
        (Some(dir), None) => user_source(Path::new(dir))?,
        (None, v) => {
            ensure_toolchain()?;
            debian_source(v.unwrap_or("6.12"))?
        }
        (Some(_), Some(_)) => return Err("--source and --debian name two trees: give one".into()),
    };
    ensure_toolchain()?;
    if let Some(p) = plant {
        src = planted_source(&src, p)?;
    }
    mirror(&src)
}

/// The `-cpu` models a kernel built for `regime` boots on: the 52-bit ones also
/// without LPA2, where they fold to 48 or 47 bits at run time (the folded regimes).
pub fn cpus(regime: &str, given: Option<&str>) -> Vec<String> {
    match given {
        Some(c) => vec![c.to_string()],
        None if regime.ends_with("-52") && !regime.starts_with("64k") => vec![CPU.into(), CPU_NO_LPA2.into()],
        None => vec![CPU.into()],
    }
}

/// Boot `image` (built for `regime`) on each of its CPUs (`cpus`): each `-cpu` and
/// `ptcheck linux`'s exit code (2 when it gave none).
pub(crate) fn boot_on_cpus(
    image: &Path,
    regime: &str,
    given: Option<&str>,
    initrd: &Path,
    extra: &[String],
) -> std::result::Result<Vec<(String, i32)>, String> {
    let mut out = Vec::new();
    for cpu in cpus(regime, given) {
        let code = ptcheck(image, initrd, &cpu, extra)?.unwrap_or(2);
        out.push((cpu, code));
    }
    Ok(out)
}

/// `--build SEL`: the tree built for every regime of `sel`, each kernel booted with
/// `extra` as soon as it is built (builds.rs), then one row per regime; the exit class.
fn build_and_check(
    o: &Linux,
    src: &crate::kbuild::Mirrored,
    sel: &str,
    initrd: &Path,
    extra: &[String],
    report: &str,
) -> std::result::Result<u8, String> {
    let regimes = crate::kbuild::regimes(sel)?;
    let mut boot = |image: &Path, regime: &str| boot_on_cpus(image, regime, o.cpu.as_deref(), initrd, extra);
    let l = crate::builds::Loop {
        src,
        regimes: &regimes,
        cache: crate::kbuild::Cache::On,
        order: crate::builds::Order::Pipelined,
    };
    let results = crate::builds::build_and_boot(&l, &mut boot)?;
    let json = if Path::new(report).is_file() { read_report(Path::new(report))? } else { Report::default() };
    println!("{} ({}), {} regimes:", src.id, src.tree.display(), results.len());
    Ok(crate::builds::table(&results, &json))
}

/// The stage's small kernel: Debian's 6.12 source built for 64k-48 (a regime Debian
/// ships no kernel for) must boot on two layouts, in that regime, and pass. No source
/// reachable: SKIPPED, loudly.
fn small_kernel(initrd: &Path, skipped: &mut Vec<String>) -> Result {
    use crate::kbuild::{debian_source, ensure_toolchain};
    ensure_toolchain()?;
    let src = match debian_source("6.12") {
        Ok(s) => s,
        Err(e) => {
            println!("linux stage: SKIPPED the small 64k-48 kernel, NOT checked: {e}");
            skipped.push("small 64k-48".into());
            return Ok(());
        }
    };
    let started = std::time::Instant::now();
    let mirrored = crate::kbuild::mirror(&src)?;
    let (code, json) = boot_built(&mirrored, initrd, 2, &[])?;
    println!("linux stage: built and booted 64k-48 from {} in {:.0}s", src.id, started.elapsed().as_secs_f64());
    if code != Some(0) {
        return Err("the small 64k-48 kernel's tables failed a check (see above)".into());
    }
    let regimes: Vec<&String> = json.runs.iter().flat_map(|r| r.regimes.keys()).collect();
    if regimes.len() != 1 || regimes[0] != "64k-48" {
        return Err(format!("the kernel built for 64k-48 ran in {regimes:?}"));
    }
    println!("linux stage: the small 64k-48 kernel (6.12 source) passed on 2 layouts");
    if tracing_skipped().is_none() {
        count_calls(&mirrored, initrd)?;
    }
    seed_v1(&src, initrd)?;
    if let Some(why) = tracing_skipped() {
        println!("linux stage: SKIPPED the traced kernel plant (no-clear-barrier), NOT checked: {why}");
        skipped.push("the traced kernel plant".into());
        return Ok(());
    }
    // A kernel plant, traced: the same source without init_clear_pgtable's barrier
    // must fail ordered_link, which only the observed instruction stream can see.
    let planted = crate::kbuild::planted_source(&src, "no-clear-barrier")?;
    let (code, json) = boot_built(&crate::kbuild::mirror(&planted)?, initrd, 1, &[])?;
    if code != Some(1) {
        return Err("the no-clear-barrier kernel plant did not fail (exit 1)".into());
    }
    let why = json.runs.first().and_then(|r| r.layouts.first()).map(|l| l.why.clone()).unwrap_or_default();
    if !why.iter().any(|w| w == "ordered_link") {
        return Err(format!("the no-clear-barrier kernel plant failed {why:?}, not ordered_link"));
    }
    println!("linux stage: the no-clear-barrier kernel plant (64k-48) failed ordered_link, traced");
    Ok(())
}

/// `--count-calls map_mem` on the small 64k-48 kernel: map_mem is inlined, so its
/// caller paging_init is counted; the call must return before the check point and
/// have executed instructions, cleared tables (DC ZVA) and linked them.
fn count_calls(src: &crate::kbuild::Mirrored, initrd: &Path) -> Result {
    let (code, json) = boot_built(src, initrd, 1, &["--count-calls", "map_mem"])?;
    if code != Some(0) {
        return Err("the --count-calls boot did not pass".into());
    }
    let calls = json.runs.first().and_then(|r| r.layouts.first()).map(|l| l.calls.clone()).unwrap_or_default();
    match calls.as_slice() {
        [c] if c.insns > 0 && c.dc_zva > 0 && c.total_links() > 0 => {
            println!(
                "linux stage: --count-calls map_mem counted paging_init on 64k-48: {} instructions, {} TLBI, {} DSB, \
                 {} DC ZVA, {} links",
                c.insns,
                c.tlbi,
                c.dsb,
                c.dc_zva,
                c.total_links()
            );
            Ok(())
        }
        other => Err(format!("--count-calls map_mem on 64k-48 counted {other:?}: one call with work in it expected")),
    }
}

/// The seed's first version of the patch on 64k-48, where the PUD is folded: it
/// compiles ("all compiles, but doesn't boot") and must end `crash`, the faulting
/// function named from the System.map. Only mmu.c is compiled (the mirror's cache).
fn seed_v1(src: &crate::kbuild::Source, initrd: &Path) -> Result {
    let planted = crate::kbuild::mirror(&crate::kbuild::planted_source(src, "seed-v1")?)?;
    let (code, json) = boot_built(&planted, initrd, 1, &[])?;
    let row = json.runs.first().and_then(|r| r.layouts.first()).ok_or("the seed-v1 boot reported no layout")?;
    let why = row.why.join("; ");
    if code != Some(1) || row.outcome != ptcheck_shared::report::LayoutOutcome::Crash {
        return Err(format!("the seed's first version on 64k-48 ended {} ({why}), not crash", row.outcome));
    }
    if !why.contains("create_pgd_mapping") {
        return Err(format!("the seed's first version crashed, but the crash does not name the builder: {why}"));
    }
    println!("linux stage: the seed's first version on 64k-48 crashed, named: {why}");
    Ok(())
}

/// `src` built for 64k-48 and booted on `count` layouts of seed 11, with `extra`
/// `ptcheck linux` flags: its exit code and its JSON report.
fn boot_built(
    src: &crate::kbuild::Mirrored,
    initrd: &Path,
    count: u32,
    extra: &[&str],
) -> std::result::Result<(Option<i32>, Report), String> {
    use crate::kbuild::{build, Built, Cache};
    let image = match build(src, "64k-48", Cache::On)? {
        Built::Image(i) => i,
        Built::NotOffered(why) | Built::Failed(why) => return Err(format!("{} would not build 64k-48: {why}", src.id)),
    };
    let report = target_dir().join("linux").join("small-report.json");
    let _ = std::fs::remove_file(&report);
    let args: Vec<String> = ["--seed".into(), "11".into(), "--count".into(), count.to_string(), "--report".into()]
        .into_iter()
        .chain([report.display().to_string()])
        .chain(extra.iter().map(|a| a.to_string()))
        .collect();
    let code = ptcheck(&image, initrd, CPU, &args)?;
    Ok((code, read_report(&report)?))
}

/// Read `path` as a `ptcheck linux` report.
pub(crate) fn read_report(path: &Path) -> std::result::Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: no report: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not a ptcheck linux report: {e}", path.display()))
}

/// `--compare A B`: two reports over the same seed (6.1 vs 6.12, a tree vs its
/// parent): per regime and layout, a different outcome is a finding (exit 1); a
/// different linear-map shape is reported, not failed.
fn compare(a: &str, b: &str) -> Result {
    let (ja, jb) = (read_report(Path::new(a))?, read_report(Path::new(b))?);
    // (regime, layout index) -> (backend, outcome, shape)
    let rows = |j: &Report| {
        let mut m = std::collections::BTreeMap::new();
        for run in &j.runs {
            for l in &run.layouts {
                m.insert((l.regime.clone(), l.index), (run.backend.clone(), l.outcome, l.linear_shape.clone()));
            }
        }
        m
    };
    let (ra, rb) = (rows(&ja), rows(&jb));
    let (mut same, mut shape, mut findings) = (0, 0, Vec::new());
    for (key, (na, oa, sa)) in &ra {
        let Some((nb, ob, sb)) = rb.get(key) else { continue };
        if oa != ob {
            findings.push(format!("{} layout {}: {na} {oa}, {nb} {ob}", key.0, key.1));
        } else if sa != sb {
            shape += 1;
            println!("{} layout {}: shape {na} {sa:?} vs {nb} {sb:?} (reported, not failed)", key.0, key.1);
        } else {
            same += 1;
        }
    }
    // The regimes of `x`'s layouts that `y` lacks, as a list for people.
    let only_in = |x: &std::collections::BTreeMap<(String, u64), _>,
                   y: &std::collections::BTreeMap<(String, u64), _>| {
        let r: std::collections::BTreeSet<&str> =
            x.keys().filter(|k| !y.contains_key(*k)).map(|k| k.0.as_str()).collect();
        if r.is_empty() {
            "none".to_string()
        } else {
            r.into_iter().collect::<Vec<_>>().join(" ")
        }
    };
    println!(
        "compare: {} layouts in both: {same} the same, {shape} the same outcome with a different shape, {} different outcomes; regimes only in {a}: {}; only in {b}: {}",
        same + shape + findings.len(),
        findings.len(),
        only_in(&ra, &rb),
        only_in(&rb, &ra)
    );
    for f in &findings {
        println!("FINDING: {f}");
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(format!("{} layouts differ in outcome between the two kernels", findings.len()))
    }
}

pub fn run(o: &Linux) -> Result {
    if let Some([a, b]) = o.compare.as_deref() {
        return compare(&a.to_string_lossy(), &b.to_string_lossy());
    }
    // `--build SEL` (or `--fuzz [--regime R]`: all regimes by default): small kernels
    // built from a tree, each booted as it is built.
    let build_sel = o.build.clone().or_else(|| o.regime.clone()).or_else(|| o.fuzz.then(|| "all".to_string()));
    let kernels = match &build_sel {
        Some(_) => Vec::new(),
        None => kernels(o)?,
    };
    let n_kernels = match &build_sel {
        Some(sel) => crate::kbuild::regimes(sel)?.len(),
        None => kernels.len(),
    };
    // The tree first: a bad --source is one line before anything is built.
    let tree = match &build_sel {
        Some(_) => {
            let source = o.source.as_ref().map(|p| p.to_string_lossy().into_owned());
            Some(build_source(source.as_deref(), o.debian.map(|d| d.as_str()), o.plant_tree.as_deref())?)
        }
        None => None,
    };
    let initrd = initramfs()?;
    // --fuzz: --count is the whole stream, spread over the kernels (each gets its share
    // of the layouts, the same seed).
    let count = if o.fuzz {
        let total = o.count.unwrap_or(200);
        let per = total.div_ceil(n_kernels as u64).max(1);
        println!("linux --fuzz: {total} layouts over {n_kernels} kernels: {per} each");
        Some(per)
    } else {
        o.count
    };
    // Always a report (the one asked for, else target/linux/last-report.json): the
    // closing summary reads it.
    let report = o.report.as_ref().map_or_else(
        || target_dir().join("linux").join("last-report.json").display().to_string(),
        |r| r.display().to_string(),
    );
    let _ = std::fs::remove_file(&report);
    let mut extra = o.forwarded(count);
    extra.extend(["--report".into(), report.clone(), "--report-append".into()]);
    let started = std::time::Instant::now();
    let worst = if let (Some(sel), Some(src)) = (&build_sel, &tree) {
        let class = build_and_check(o, src, sel, &initrd, &extra, &report)?;
        summarize(Some(Path::new(&report)), started.elapsed());
        class
    } else {
        let mut worst = 0;
        for (kernel, cpus) in &kernels {
            let given = o.cpu.iter();
            for cpu in given.chain(cpus.iter()).take(if o.cpu.is_some() { 1 } else { usize::MAX }) {
                let code = ptcheck(kernel, &initrd, cpu, &extra)?.unwrap_or(2);
                worst = crate::builds::worse(
                    worst,
                    match code {
                        0 => 0,
                        1 => 1,
                        _ => 2,
                    },
                );
            }
        }
        summarize(Some(Path::new(&report)), started.elapsed());
        worst
    };
    match worst {
        0 => Ok(()),
        1 => Err("a kernel's tables failed a check, a kernel crashed or a regime did not build (the table above; reproducers named)".into()),
        _ => Err("some layouts were not checked (see above): not a pass".into()),
    }
}

/// The kernels a `linux` command line asks for, with the CPUs to boot each on: small
/// kernels built for `--build`/`--fuzz` regimes, `--kernel`, or Debian's.
fn kernels(o: &Linux) -> std::result::Result<Vec<(PathBuf, Vec<String>)>, String> {
    if o.source.is_some() {
        return Err("--source builds a tree: say which regimes with --build <regimes|all>".into());
    }
    if o.plant_tree.is_some() {
        return Err("--plant-tree builds a planted tree: say which regimes with --build <regimes|all>".into());
    }
    if let Some(k) = &o.kernel {
        return Ok(vec![(k.clone(), vec![o.cpu.clone().unwrap_or(CPU.into())])]);
    }
    let debian = o.debian.map(|d| d.as_str());
    let flavour = o.flavour.as_deref();
    let chosen: Vec<&Debian> = DEBIAN
        .iter()
        .filter(|d| debian.is_none_or(|v| v == d.version))
        .filter(|d| flavour.is_none_or(|f| f == d.flavour))
        .collect();
    if chosen.is_empty() {
        return Err(format!(
            "--debian {} --flavour {}: ptcheck fetches 6.1 4k, 6.12 4k and 6.12 16k",
            debian.unwrap_or_default(),
            flavour.unwrap_or_default()
        ));
    }
    let mut out = Vec::new();
    for d in chosen {
        match fetch(d) {
            Ok(k) => out.push((k, d.cpus.iter().map(|c| c.to_string()).collect())),
            Err(e) => println!("linux: SKIPPED Debian {} {}, NOT checked: {e}", d.version, d.flavour),
        }
    }
    if out.is_empty() {
        return Err("no Debian kernel could be fetched: nothing was checked".into());
    }
    Ok(out)
}

/// The whole run in one line: layouts, outcomes and layouts/s over every kernel.
fn summarize(report: Option<&Path>, took: std::time::Duration) {
    let Some(Ok(json)) = report.map(read_report) else {
        return;
    };
    let runs = json.runs;
    let (mut layouts, mut passed, mut failed, mut unchecked, mut crashed) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for r in runs.iter().flat_map(|run| run.regimes.values()) {
        layouts += r.layouts;
        passed += r.passed;
        failed += r.failed;
        unchecked += r.not_checked;
        crashed += r.crashed;
    }
    let secs = took.as_secs_f64();
    println!(
        "linux: {} kernel runs, {layouts} layouts: {passed} passed, {failed} failed, {crashed} crashed, {unchecked} not checked, in {secs:.0}s \
         ({:.2} layouts/s overall: boots, walks and checks; builds and fetches not counted)",
        runs.len(),
        layouts as f64 / secs.max(1e-9)
    );
}
