//! `cargo xtask linux [--kernel IMAGE | --debian 6.12 [--flavour 4k|16k]] [ptcheck
//! linux args]`: boot a real arm64 kernel and check its tables. By default Debian's
//! arm64 cloud kernel that the nested-KVM stage fetches (bookworm 6.1, 4K pages,
//! 48-bit VA: before the seed's change); `--debian 6.12` fetches trixie's 6.12 (after
//! it; 52-bit VA with LPA2, 4K or 16K pages) through a private apt (only `./boot` is
//! unpacked, cached under target/linux; `debian.rs`). The initramfs's `/init` is the ptcheck runner
//! (static, arm64), which prints the up marker and waits.

use std::path::PathBuf;

use crate::nested_kvm::{cross_build_runner, fetch_kernel, write_initramfs, MUSL};
use crate::tools::{build_guest, cargo, ensure_qemu, guest_image, sh, target_dir, Result};

/// The kernel to boot (named, or the cached Debian one) and the initramfs.
fn prepare(args: &[String]) -> std::result::Result<(PathBuf, PathBuf), String> {
    ensure_qemu()?;
    build_guest()?;
    cross_build_runner()?;
    let value = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let kernel = match (value("--kernel"), value("--debian")) {
        (Some(k), None) => k.into(),
        (None, None) => fetch_kernel()?,
        (None, Some(v)) if v == "6.12" => fetch_trixie(value("--flavour").as_deref().unwrap_or("4k"))?,
        (None, Some(v)) => return Err(format!("--debian {v}: this ptcheck fetches 6.12 (trixie); 6.1 is the default")),
        (Some(_), Some(_)) => return Err("--kernel and --debian name two kernels: give one".into()),
    };
    let dir = target_dir().join("linux");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let initrd = dir.join("init.cpio");
    let runner = target_dir().join(MUSL).join("release").join("ptcheck");
    write_initramfs(&initrd, &runner, &guest_image())?;
    Ok((kernel, initrd))
}

/// Debian trixie's 6.12 arm64 kernel of `flavour` (4k, 16k), unsigned (the signed
/// package only wraps it), cached under target/linux/trixie-<flavour>.
fn fetch_trixie(flavour: &str) -> std::result::Result<PathBuf, String> {
    let meta = match flavour {
        "4k" => "linux-image-arm64",
        "16k" => "linux-image-arm64-16k",
        other => return Err(format!("--flavour {other}: Debian ships 4k and 16k arm64 kernels")),
    };
    crate::debian::fetch_kernel(&crate::debian::DebianKernel {
        dir: target_dir().join("linux").join(format!("trixie-{flavour}")),
        source: Some(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main",
        ),
        meta,
        is_image: |p| p.starts_with("linux-image-6."),
        suffix: "-unsigned",
    })
}

/// `cargo xtask test`'s linux stage: Debian's 6.1 kernel (before the seed's change)
/// passes, and each planted fault fails the check that owns it (exit 1), so the checks
/// are real; then trixie's 6.12 kernels (after it, 4K and 16K with LPA2) must pass. A
/// 6.12 kernel that cannot be fetched is reported SKIPPED, loudly, never as passed.
pub fn stage() -> Result {
    let (kernel, initrd) = prepare(&[])?;
    let ptcheck = |kernel: &std::path::Path, extra: &[&str]| -> std::result::Result<Option<i32>, String> {
        let mut cmd = cargo();
        cmd.args(["run", "--release", "--quiet", "--package", "ptcheck-host", "--bin", "ptcheck", "--", "linux"])
            .arg("--kernel")
            .arg(kernel)
            .arg("--initrd")
            .arg(&initrd)
            .args(extra)
            .current_dir(crate::tools::root());
        println!("$ ptcheck linux --kernel {} {}", kernel.display(), extra.join(" "));
        cmd.status().map(|s| s.code()).map_err(|e| format!("cannot run ptcheck linux: {e}"))
    };
    if ptcheck(&kernel, &[])? != Some(0) {
        return Err("the Debian 6.1 kernel's tables failed a check (see above)".into());
    }
    for plant in ["zeroing", "wx"] {
        if ptcheck(&kernel, &["--plant", plant])? != Some(1) {
            return Err(format!("a planted {plant} fault was not caught"));
        }
    }
    // A broken kernel is named up front (exit 2), not blamed on the kernel's tables
    // after a boot timeout.
    let bytes = std::fs::read(&kernel).map_err(|e| format!("cannot read {}: {e}", kernel.display()))?;
    let truncated = target_dir().join("linux").join("truncated-vmlinuz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])
        .map_err(|e| format!("cannot write {}: {e}", truncated.display()))?;
    if ptcheck(&truncated, &[])? != Some(2) {
        return Err("a truncated kernel was not refused as bad input (exit 2)".into());
    }
    println!("linux stage: the Debian 6.1 kernel passed; planted zeroing and W+X faults were caught; a truncated kernel was refused");
    let mut skipped = Vec::new();
    for flavour in ["4k", "16k"] {
        match fetch_trixie(flavour) {
            Ok(k) => {
                if ptcheck(&k, &[])? != Some(0) {
                    return Err(format!("the Debian 6.12 {flavour} kernel's tables failed a check (see above)"));
                }
                println!("linux stage: the Debian 6.12 {flavour} kernel passed");
            }
            Err(e) => {
                println!("linux stage: SKIPPED the Debian 6.12 {flavour} kernel, NOT checked: {e}");
                skipped.push(flavour);
            }
        }
    }
    if !skipped.is_empty() {
        println!(
            "linux stage: WARNING: {} of the 6.12 kernels were not checked (no Debian archive?); only 6.1 counts as passed",
            skipped.join(", ")
        );
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result {
    let (kernel, initrd) = prepare(args)?;
    // The xtask's own flags stay here; the rest go to `ptcheck linux`.
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if matches!(a.as_str(), "--kernel" | "--debian" | "--flavour") {
            it.next();
        } else {
            rest.push(a.clone());
        }
    }
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--quiet", "--package", "ptcheck-host", "--bin", "ptcheck", "--", "linux"]);
    cmd.arg("--kernel").arg(&kernel).arg("--initrd").arg(&initrd).args(rest);
    sh(&mut cmd)
}
