//! `cargo xtask bench --patch-loop`: the kernel developer's loop, measured. Debian's
//! 6.12 source built for every regime (warm), then twice: touch
//! arch/arm64/mm/mmu.c, rebuild every regime and boot two layouts each — every build
//! then every boot (how `--build` ran before builds.rs), then each boot while the next
//! regime builds — side by side in one run; then a second copy of the tree (`cp -a`)
//! built cold and from the cache.

use std::path::Path;
use std::time::Instant;

use crate::builds::{build_and_boot, table, Loop, Order, Report};
use crate::kbuild::{build, Built, Cache, Mirrored};

/// The loop's figures for one order: seconds, and the exit class of its table.
fn one_loop(src: &Mirrored, regimes: &[&'static str], order: Order, initrd: &Path) -> Result<(f64, u8), String> {
    let report = crate::tools::target_dir().join("linux").join(format!("patch-loop-{order:?}.json"));
    let _ = std::fs::remove_file(&report);
    let touched = src.tree.join("arch/arm64/mm/mmu.c");
    // The edit a developer makes: the file is newer than every object built from it.
    std::fs::File::options()
        .append(true)
        .open(&touched)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .map_err(|e| format!("cannot touch {}: {e}", touched.display()))?;
    println!("\n== {order:?}: touched {}; rebuilding {} regimes, 2 layouts each", touched.display(), regimes.len());
    let started = Instant::now();
    // The mirror is synced as every run syncs it (part of the loop's cost).
    let src = crate::kbuild::mirror(&crate::kbuild::Source { dir: src.tree.clone(), id: src.id.clone() })?;
    let extra: Vec<String> = ["--seed", "11", "--count", "2", "--report"]
        .into_iter()
        .map(String::from)
        .chain([report.display().to_string(), "--report-append".into()])
        .collect();
    let mut boot = |image: &Path, regime: &str| crate::linux::boot_on_cpus(image, regime, None, initrd, &extra);
    let l = Loop { src: &src, regimes, cache: Cache::On, order };
    let results = build_and_boot(&l, &mut boot)?;
    let secs = started.elapsed().as_secs_f64();
    let json = if report.is_file() { crate::linux::read_report(&report)? } else { Report::default() };
    let class = table(&results, &json);
    println!("{order:?}: {secs:.0}s for {} regimes", regimes.len());
    Ok((secs, class))
}

/// `cargo xtask bench --patch-loop [--regimes R]`: the patch loop on Debian's 6.12
/// source (see `Bench::patch_loop`), each figure measured in this one run.
///
/// # Errors
/// A step could not run, or a regime of the clean tree did not pass.
pub fn bench_patch_loop(sel: &str) -> Result<(), String> {
    let regimes = crate::kbuild::regimes(sel)?;
    let initrd = crate::linux::initramfs()?;
    let src = crate::linux::build_source(None, Some("6.12"), None)?;
    // Warm: every regime built once (not counted; cold the first time on a machine).
    let started = Instant::now();
    for &r in &regimes {
        if let Built::Failed(why) = build(&src, r, Cache::On)? {
            return Err(format!("the clean 6.12 tree does not build {r}: {why}"));
        }
    }
    println!(
        "bench patch-loop: {} regimes built (warming, not counted) in {:.0}s",
        regimes.len(),
        started.elapsed().as_secs_f64()
    );
    let (before, c1) = one_loop(&src, &regimes, Order::Sequential, &initrd)?;
    let (after, c2) = one_loop(&src, &regimes, Order::Pipelined, &initrd)?;
    // A second copy of the same tree (a `cp -a`: new inodes, a new path), one regime,
    // built cold (ccache off) and then from the cache.
    let copy_dir = crate::tools::target_dir().join("linux").join("src").join("patch-loop-copy");
    let _ = std::fs::remove_dir_all(&copy_dir);
    crate::tools::sh(std::process::Command::new("cp").arg("-a").arg(&src.tree).arg(&copy_dir))?;
    let copy = crate::kbuild::mirror(&crate::kbuild::user_source(&copy_dir)?)?;
    let regime = regimes[0];
    let mut copy_secs = Vec::new();
    for cache in [Cache::Off, Cache::On] {
        crate::kbuild::forget_builds(&copy)?;
        let t = Instant::now();
        if let Built::Failed(why) = build(&copy, regime, cache)? {
            return Err(format!("the copy does not build {regime}: {why}"));
        }
        copy_secs.push(t.elapsed().as_secs_f64());
    }
    crate::kbuild::forget_builds(&copy)?;
    let _ = std::fs::remove_dir_all(&copy_dir);
    println!("\nbench patch-loop (Debian 6.12 source; touch arch/arm64/mm/mmu.c, rebuild, boot 2 layouts per regime, {} regimes):", regimes.len());
    println!("  every build, then every boot (before):  {before:>6.0} s");
    println!("  boot while the next regime builds (after): {after:>4.0} s   ({:.2}x)", before / after.max(1e-9));
    println!(
        "  a second copy of the tree, {regime}: cold {:.0} s, from the cache {:.0} s ({:.1}x)",
        copy_secs[0],
        copy_secs[1],
        copy_secs[0] / copy_secs[1].max(1e-9)
    );
    if c1 != 0 || c2 != 0 {
        return Err("a regime of the clean 6.12 tree did not pass (the tables above)".into());
    }
    Ok(())
}
