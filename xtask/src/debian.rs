//! Debian's arm64 kernels, fetched with apt using a private state and cache under
//! target/ (the machine's apt setup is never touched), unpacked (`./boot` only: the
//! modules would be hundreds of MiB for nothing) and cached per package.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::sh;

/// Which Debian kernel to fetch, and where.
pub(crate) struct DebianKernel<'a> {
    /// apt state and the cached kernels (`<dir>/<package>/vmlinuz`).
    pub dir: PathBuf,
    /// A sources.list line, or `None` for the machine's own sources.
    pub source: Option<&'a str>,
    /// The meta package whose dependency names the current kernel image package.
    pub meta: &'a str,
    /// Which of the meta package's dependencies is the kernel image.
    pub is_image: fn(&str) -> bool,
    /// Appended to that dependency to name the package fetched (`-unsigned`, or "").
    pub suffix: &'a str,
}

/// apt options for a private, arm64-only view of the sources.
fn apt_options(apt: &Path, source: Option<&Path>) -> Vec<String> {
    let d = apt.display();
    let mut opts = vec![
        format!("Dir::State={d}/state"),
        format!("Dir::State::status={d}/state/status"),
        format!("Dir::Cache={d}/cache"),
        "APT::Architecture=arm64".into(),
        "APT::Architectures=arm64".into(),
        "APT::Sandbox::User=root".into(),
    ];
    if let Some(list) = source {
        opts.push(format!("Dir::Etc::SourceList={}", list.display()));
        opts.push(format!("Dir::Etc::SourceParts={d}/etc/none"));
    }
    opts.into_iter().flat_map(|o| ["-o".to_string(), o]).collect()
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let line = format!("{cmd:?}").replace('"', "");
    println!("$ {line}");
    let out = cmd.output().map_err(|e| format!("cannot start `{line}`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{line}` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The current kernel `k` names, fetched once and cached; offline, any kernel cached
/// before.
///
/// # Errors
/// apt cannot reach the archive and nothing is cached, or the package has no kernel.
pub(crate) fn fetch_kernel(k: &DebianKernel) -> Result<PathBuf, String> {
    let mkdir = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("cannot create {}: {e}", p.display()));
    let apt = k.dir.join("apt");
    for sub in ["state/lists/partial", "cache/archives/partial", "etc"] {
        mkdir(&apt.join(sub))?;
    }
    let status = apt.join("state/status");
    if !status.exists() {
        fs::write(&status, "").map_err(|e| format!("cannot create {}: {e}", status.display()))?;
    }
    let list = match k.source {
        Some(line) => {
            let list = apt.join("etc/sources.list");
            fs::write(&list, format!("{line}\n")).map_err(|e| format!("cannot write {}: {e}", list.display()))?;
            Some(list)
        }
        None => None,
    };
    let opts = apt_options(&apt, list.as_deref());
    let cached = || fs::read_dir(&k.dir).ok()?.flatten().map(|e| e.path().join("vmlinuz")).find(|p| p.is_file());
    if let Err(e) = sh(Command::new("apt-get").args(&opts).args(["update", "-qq"])) {
        // Offline: a kernel fetched before still serves.
        return cached().ok_or(format!(
            "{e}: cannot fetch {} and no kernel is cached under {}",
            k.meta,
            k.dir.display()
        ));
    }
    // The meta package names the one ABI version the mirror has now.
    let deps = output(Command::new("apt-cache").args(&opts).args(["depends", k.meta]))?;
    let image = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| (k.is_image)(p))
        .ok_or(format!("{} names no kernel image package", k.meta))?;
    let package = format!("{image}{}", k.suffix);
    let kernel = k.dir.join(&package).join("vmlinuz");
    if kernel.is_file() && k.dir.join(&package).join("config").is_file() {
        println!("kernel: {} (cached)", kernel.display());
        return Ok(kernel);
    }
    let download = k.dir.join("download");
    let _ = fs::remove_dir_all(&download);
    mkdir(&download)?;
    sh(Command::new("apt-get").args(&opts).args(["download", &package]).current_dir(&download))?;
    let deb = fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or(format!("apt-get download {package} left no .deb"))?;
    let script = format!("dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' ./boot", deb.display(), download.display());
    sh(Command::new("sh").args(["-c", &script]))?;
    let vmlinuz = fs::read_dir(download.join("boot"))
        .map_err(|e| format!("{package}: no /boot in the package: {e}"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .ok_or(format!("{package} has no vmlinuz"))?;
    mkdir(&k.dir.join(&package))?;
    fs::copy(&vmlinuz, &kernel).map_err(|e| format!("cannot copy the kernel: {e}"))?;
    // Its config too, for people reading a finding (which options the kernel has).
    let config = vmlinuz.with_file_name(
        vmlinuz.file_name().map_or_else(String::new, |n| n.to_string_lossy().replacen("vmlinuz-", "config-", 1)),
    );
    let _ = fs::copy(config, k.dir.join(&package).join("config"));
    let _ = fs::remove_dir_all(&download);
    println!("kernel: {}", kernel.display());
    Ok(kernel)
}
