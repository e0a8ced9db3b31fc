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

/// apt options for a private, one-architecture view of the sources.
fn apt_options(apt: &Path, source: Option<&Path>, arch: &str) -> Vec<String> {
    let d = apt.display();
    let mut opts = vec![
        format!("Dir::State={d}/state"),
        format!("Dir::State::status={d}/state/status"),
        format!("Dir::Cache={d}/cache"),
        format!("APT::Architecture={arch}"),
        format!("APT::Architectures={arch}"),
        "APT::Sandbox::User=root".into(),
    ];
    if let Some(list) = source {
        opts.push(format!("Dir::Etc::SourceList={}", list.display()));
        opts.push(format!("Dir::Etc::SourceParts={d}/etc/none"));
    }
    opts.into_iter().flat_map(|o| ["-o".to_string(), o]).collect()
}

/// A private apt state under `dir/apt` for `source` (or the machine's sources) and
/// `arch`, updated; the options that select it.
///
/// # Errors
/// The directories cannot be made, or `apt-get update` fails (offline).
fn apt_update(dir: &Path, source: Option<&str>, arch: &str) -> Result<Vec<String>, String> {
    let mkdir = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("cannot create {}: {e}", p.display()));
    let apt = dir.join("apt");
    for sub in ["state/lists/partial", "cache/archives/partial", "etc"] {
        mkdir(&apt.join(sub))?;
    }
    let status = apt.join("state/status");
    if !status.exists() {
        fs::write(&status, "").map_err(|e| format!("cannot create {}: {e}", status.display()))?;
    }
    let list = match source {
        Some(line) => {
            let list = apt.join("etc/sources.list");
            fs::write(&list, format!("{line}\n")).map_err(|e| format!("cannot write {}: {e}", list.display()))?;
            Some(list)
        }
        None => None,
    };
    let opts = apt_options(&apt, list.as_deref(), arch);
    sh(Command::new("apt-get").args(&opts).args(["update", "-qq"]))?;
    Ok(opts)
}

/// Debian's `linux-source-<version>` from `suite`, unpacked once under
/// `target/linux/src/` (the tree and its id, `debian-<package version>`); offline, a
/// tree unpacked before.
///
/// # Errors
/// Neither the archive nor a cached tree.
pub(crate) fn fetch_source(dir: &Path, suite: &str, version: &str) -> Result<(PathBuf, String), String> {
    let package = format!("linux-source-{version}");
    let cached = || {
        fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| p.join(".ptcheck-unpacked").is_file()).map(|p| {
            let id = format!("debian-{}", p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            (p.join(&package), id)
        })
    };
    let source = format!(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian {suite} main"
    );
    let opts = match apt_update(dir, Some(&source), "arm64") {
        Ok(o) => o,
        Err(e) => {
            return cached()
                .ok_or(format!("{e}: cannot fetch {package} and no tree is unpacked under {}", dir.display()))
        }
    };
    let show = output(Command::new("apt-cache").args(&opts).args(["show", "--no-all-versions", &package]))?;
    let ver = show
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .ok_or(format!("{suite} has no {package}"))?
        .trim()
        .to_string();
    let home = dir.join(&ver);
    let tree = home.join(&package);
    let id = format!("debian-{ver}");
    if home.join(".ptcheck-unpacked").is_file() {
        println!("source: {} (cached)", tree.display());
        return Ok((tree, id));
    }
    let _ = fs::remove_dir_all(&home);
    fs::create_dir_all(&home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
    let deb = download_deb(&opts, &package, &home)?;
    // The package holds the tarball; only the tree is kept.
    let script = format!(
        "dpkg-deb --fsys-tarfile '{deb}' | tar -xO ./usr/src/{package}.tar.xz | tar -xJ -C '{home}'",
        deb = deb.display(),
        home = home.display()
    );
    sh(Command::new("sh").args(["-c", &script]))?;
    let _ = fs::remove_file(&deb);
    if !tree.join("Makefile").is_file() {
        return Err(format!("{package} did not unpack to {}", tree.display()));
    }
    fs::write(home.join(".ptcheck-unpacked"), "").map_err(|e| e.to_string())?;
    println!("source: {}", tree.display());
    Ok((tree, id))
}

/// `apt-get download package` into `dir` (with the private apt `opts`): the .deb.
///
/// # Errors
/// apt fails, or leaves no .deb.
fn download_deb(opts: &[String], package: &str, dir: &Path) -> Result<PathBuf, String> {
    sh(Command::new("apt-get").args(opts).args(["download", package]).current_dir(dir))?;
    fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or(format!("apt-get download {package} left no .deb"))
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
    let cached = || fs::read_dir(&k.dir).ok()?.flatten().map(|e| e.path().join("vmlinuz")).find(|p| p.is_file());
    let opts = match apt_update(&k.dir, k.source, "arm64") {
        Ok(opts) => opts,
        // Offline: a kernel fetched before still serves.
        Err(e) => {
            return cached().ok_or(format!(
                "{e}: cannot fetch {} and no kernel is cached under {}",
                k.meta,
                k.dir.display()
            ))
        }
    };
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
    let deb = download_deb(&opts, &package, &download)?;
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

/// The QEMU whose plugin API the tracer needs (v4: QEMU 10.0), from Debian
/// bookworm-backports: `qemu-system-arm`, `-common` and `-data` for the machine's
/// architecture, unpacked (never installed) under `dir/<version>/`; offline, one
/// unpacked before. Returns the emulator binary; its data directory is
/// `<root>/usr/share/qemu` next to it.
///
/// # Errors
/// Neither the archive nor an unpacked copy.
pub(crate) fn fetch_qemu(dir: &Path) -> Result<PathBuf, String> {
    const PACKAGES: [&str; 3] = ["qemu-system-arm", "qemu-system-common", "qemu-system-data"];
    let binary = |home: &Path| home.join("usr/bin/qemu-system-aarch64");
    let cached = || {
        fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join(".ptcheck-unpacked").is_file())
            .map(|p| binary(&p))
    };
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?.trim().to_string();
    let source = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main";
    let opts = match apt_update(dir, Some(source), &arch) {
        Ok(o) => o,
        Err(e) => {
            return cached().ok_or(format!("{e}: cannot fetch QEMU 10 and none is unpacked under {}", dir.display()))
        }
    };
    let show = output(Command::new("apt-cache").args(&opts).args(["show", "--no-all-versions", PACKAGES[0]]))?;
    let ver = show
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .ok_or("bookworm-backports has no qemu-system-arm")?
        .trim()
        .replace(':', "_");
    let home = dir.join(&ver);
    if home.join(".ptcheck-unpacked").is_file() {
        return Ok(binary(&home));
    }
    let _ = fs::remove_dir_all(&home);
    let debs = home.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    for p in PACKAGES {
        let one = debs.join(p);
        fs::create_dir_all(&one).map_err(|e| e.to_string())?;
        let deb = download_deb(&opts, p, &one)?;
        sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&home))?;
    }
    let _ = fs::remove_dir_all(&debs);
    let bin = binary(&home);
    // Its shared libraries are the system QEMU's (installed first) plus a few: say which
    // are missing rather than fail later inside a run.
    let ldd = output(Command::new("ldd").arg(&bin))?;
    let missing: Vec<&str> = ldd.lines().filter(|l| l.contains("not found")).map(|l| l.trim()).collect();
    if !missing.is_empty() {
        return Err(format!("{} lacks shared libraries: {}", bin.display(), missing.join(", ")));
    }
    fs::write(home.join(".ptcheck-unpacked"), "").map_err(|e| e.to_string())?;
    println!("QEMU for tracing: {}", bin.display());
    Ok(bin)
}
