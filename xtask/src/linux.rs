//! `cargo xtask linux [--kernel IMAGE] [ptcheck linux args]`: boot a real arm64 kernel
//! and check its tables. Without `--kernel`: Debian's arm64 cloud kernel that the
//! nested-KVM stage fetches (bookworm 6.1, 4K pages, 48-bit VA: before the seed's
//! change). The initramfs's `/init` is the ptcheck runner (static, arm64), which
//! prints the up marker and waits.

use std::path::PathBuf;

use crate::nested_kvm::{cross_build_runner, fetch_kernel, write_initramfs, MUSL};
use crate::tools::{build_guest, cargo, ensure_qemu, guest_image, sh, target_dir, Result};

/// The kernel to boot (named, or the cached Debian one) and the initramfs.
fn prepare(args: &[String]) -> std::result::Result<(PathBuf, PathBuf), String> {
    ensure_qemu()?;
    build_guest()?;
    cross_build_runner()?;
    let kernel = match args.windows(2).find(|w| w[0] == "--kernel") {
        Some(w) => w[1].clone().into(),
        None => fetch_kernel()?,
    };
    let dir = target_dir().join("linux");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let initrd = dir.join("init.cpio");
    let runner = target_dir().join(MUSL).join("release").join("ptcheck");
    write_initramfs(&initrd, &runner, &guest_image())?;
    Ok((kernel, initrd))
}

/// `cargo xtask test`'s linux stage: Debian's 6.1 kernel passes, and each planted
/// fault fails the check that owns it (exit 1), so the checks are real.
pub fn stage() -> Result {
    let (kernel, initrd) = prepare(&[])?;
    let ptcheck = |extra: &[&str]| -> std::result::Result<Option<i32>, String> {
        let mut cmd = cargo();
        cmd.args(["run", "--release", "--quiet", "--package", "ptcheck-host", "--bin", "ptcheck", "--", "linux"])
            .arg("--kernel")
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd)
            .args(extra)
            .current_dir(crate::tools::root());
        println!("$ ptcheck linux {}", extra.join(" "));
        cmd.status().map(|s| s.code()).map_err(|e| format!("cannot run ptcheck linux: {e}"))
    };
    if ptcheck(&[])? != Some(0) {
        return Err("the Debian kernel's tables failed a check (see above)".into());
    }
    for plant in ["zeroing", "wx"] {
        if ptcheck(&["--plant", plant])? != Some(1) {
            return Err(format!("a planted {plant} fault was not caught"));
        }
    }
    println!("linux stage: the Debian 6.1 kernel passed; planted zeroing and W+X faults were caught");
    Ok(())
}

pub fn run(args: &[String]) -> Result {
    let (kernel, initrd) = prepare(args)?;
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--quiet", "--package", "ptcheck-host", "--bin", "ptcheck", "--", "linux"]);
    if !args.iter().any(|a| a == "--kernel") {
        cmd.arg("--kernel").arg(&kernel);
    }
    cmd.arg("--initrd").arg(&initrd).args(args);
    sh(&mut cmd)
}
