//! `cargo xtask nested-kvm`: prove the KVM backend on a machine whose own KVM cannot
//! run arm64, by running the host runner inside an arm64 Linux under
//! `qemu-system-aarch64` with EL2 emulated (Debian's arm64 kernels have KVM built in).
//!
//! 1. cross-build `ptcheck` for aarch64-unknown-linux-musl, static, linked by rust-lld;
//! 2. fetch the current `linux-image-cloud-arm64` kernel (`debian.rs`: apt with a private
//!    state and cache; the machine's apt setup is not touched), cached under target/;
//! 3. pack a newc initramfs: /init (ptcheck, which runs as init), /guest.elf, and the
//!    /dev/console and /dev/kvm nodes;
//! 4. boot it; QEMU exits 0 whatever happens inside, so pass/fail is decided from the
//!    report the guest prints between markers, and a timeout is a failure.

use ptcheck_shared::report::RunReport;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::tools::{self, sh, Result};

/// The nested runner's target: a static arm64 Linux binary.
pub const MUSL: &str = "aarch64-unknown-linux-musl";
use ptcheck_shared::abi::{NESTED_REPORT_BEGIN as REPORT_BEGIN, NESTED_REPORT_END as REPORT_END};

pub use crate::flags::NestedKvm;

fn work_dir() -> PathBuf {
    tools::target_dir().join("nested-kvm")
}

pub(crate) fn cross_build_runner() -> Result {
    tools::ensure_target(MUSL)?;
    sh(tools::cargo()
        .args(["build", "--release", "--package", "ptcheck-host", "--bin", "ptcheck", "--target", MUSL])
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld")
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS", "-C target-feature=+crt-static"))
}

/// The current Debian arm64 cloud kernel image (from the machine's own sources),
/// fetched once and cached.
pub(crate) fn fetch_kernel() -> std::result::Result<PathBuf, String> {
    crate::debian::fetch_kernel(&crate::debian::DebianKernel {
        dir: work_dir(),
        source: None,
        meta: "linux-image-cloud-arm64",
        is_image: |p| p.starts_with("linux-image-") && p.ends_with("-cloud-arm64"),
        suffix: "",
    })
}

/// newc archive: /init, /guest.elf, /dev, /proc, /dev/console (5,1), /dev/kvm (10,232).
pub(crate) fn write_initramfs(path: &Path, init: &Path, guest: &Path) -> std::result::Result<(), String> {
    use cpio::newc::{trailer, Builder};
    let io = |e: std::io::Error| format!("writing {}: {e}", path.display());
    let mut out = std::io::BufWriter::new(fs::File::create(path).map_err(io)?);
    let mut ino = 1;
    let mut entry = |out: &mut std::io::BufWriter<fs::File>, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| {
        ino += 1;
        let b = Builder::new(name).ino(ino).mode(mode).nlink(1).rdev_major(rdev.0).rdev_minor(rdev.1);
        let mut w = b.write(out, data.len() as u32);
        w.write_all(data)?;
        w.finish().map(|_| ())
    };
    for dir in ["dev", "proc"] {
        entry(&mut out, dir, 0o040755, (0, 0), &[]).map_err(io)?;
    }
    entry(&mut out, "dev/console", 0o020600, (5, 1), &[]).map_err(io)?;
    entry(&mut out, "dev/kvm", 0o020660, (10, 232), &[]).map_err(io)?;
    let read = |p: &Path| fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    entry(&mut out, "init", 0o100755, (0, 0), &read(init)?).map_err(io)?;
    entry(&mut out, "guest.elf", 0o100644, (0, 0), &read(guest)?).map_err(io)?;
    trailer(&mut out).map_err(io)?;
    out.flush().map_err(io)
}

/// Lines worth showing live: the hypervisor coming up, and everything ptcheck says.
fn interesting(line: &str, in_report: bool) -> bool {
    !in_report && (line.contains("kvm [") || line.contains("ptcheck") || !line.starts_with('['))
}

/// What a nested run proved: every regime ran on KVM with MMU probes, the fuzz run
/// and the failure-path checks happened; `failed_plans` says how many plans failed
/// (the self-test makes some fail on purpose).
pub struct Nested {
    /// Plans that failed a check or could not be checked, built-in and fuzzed.
    pub failed_plans: u64,
    /// One line for the log.
    pub summary: String,
}

/// Judge the report: KVM ran every regime, the MMU checked pages, the fuzz run and the
/// failure-path checks happened. `Err` when the run itself is not what it must be.
fn judge(report: &RunReport) -> std::result::Result<Nested, String> {
    if report.backend != "kvm" {
        return Err(format!("the nested run used the {} backend, not kvm", report.backend));
    }
    let configs = &report.configs;
    let (mut failed, mut probes, mut unsupported) = (0, 0, Vec::new());
    for c in configs {
        failed += c.failed + c.not_checked;
        probes += c.hw_probes;
        if c.hw_unsupported {
            unsupported.push(c.name.clone());
        } else if c.hw_probes == 0 {
            return Err(format!("{}: no page was checked by the MMU", c.name));
        }
    }
    if configs.len() != 13 {
        return Err(format!("the report lists {} regimes, expected 13", configs.len()));
    }
    let Some(fuzz) = &report.fuzz else { return Err("the nested run made no fuzz run on KVM".into()) };
    let (fuzz_plans, fuzz_failed) = (fuzz.plans, fuzz.failed + fuzz.not_checked);
    if fuzz_plans == 0 {
        return Err("the nested run made no fuzz run on KVM".into());
    }
    failed += fuzz_failed;
    // The KVM backend's failure paths, exercised inside: (name, passed, detail).
    if report.vm_checks.len() < 2 {
        return Err("the nested run did not exercise the KVM watchdog and fault paths".into());
    }
    if let Some((name, _, detail)) = report.vm_checks.iter().find(|c| !c.1) {
        return Err(format!("KVM {name} check failed: {detail}"));
    }
    let summary = format!(
        "backend kvm, {} regimes, {failed} failed plans, {probes} MMU-checked pages, fuzz {fuzz_plans} plans ({fuzz_failed} failed, {:.0} plans/s), watchdog and non-RAM fault checks passed{}",
        configs.len(),
        fuzz.plans_per_s,
        if unsupported.is_empty() { String::new() } else { format!(", NOT PROBED (CPU lacks them): {}", unsupported.join(" ")) }
    );
    Ok(Nested { failed_plans: failed as u64, summary })
}

/// `cargo xtask nested-kvm`: the nested run, failing when any plan failed on KVM.
pub fn run(o: &NestedKvm) -> Result {
    let n = run_nested(o)?;
    if n.failed_plans > 0 {
        return Err(format!("{}: {} plans failed on KVM", n.summary, n.failed_plans));
    }
    Ok(())
}

/// Boot the nested Linux, run the matrix and fuzz on its KVM, and judge the report.
pub fn run_nested(o: &NestedKvm) -> std::result::Result<Nested, String> {
    tools::ensure_qemu()?;
    tools::build_guest()?;
    cross_build_runner()?;
    let kernel = fetch_kernel()?;
    let dir = work_dir();
    let initramfs = dir.join("init.cpio");
    let runner = tools::target_dir().join(MUSL).join("release").join("ptcheck");
    write_initramfs(&initramfs, &runner, &tools::guest_image())?;
    let mut append = String::from("console=ttyAMA0 panic=-1");
    if o.self_test {
        append.push_str(" ptcheck_self_test=wrong-expectation");
    }
    let mut cmd = Command::new("qemu-system-aarch64");
    // pauth-impdef=on: QARMA pointer auth is 3-4x slower to emulate.
    cmd.args(["-M", "virt,virtualization=on,gic-version=3", "-cpu", "max,pauth-impdef=on", "-smp", "2", "-m", "2G"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initramfs)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    println!("$ {}", format!("{cmd:?}").replace('"', ""));
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let log_path = dir.join("console.log");
    let mut log = fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let (mut json, mut in_report, mut kvm_line) = (None, false, false);
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                let line = line.trim_end_matches('\r').to_string();
                kvm_line |= line.contains("kvm [") && line.contains("initialized");
                if interesting(&line, in_report) {
                    println!("  | {line}");
                }
                if line == REPORT_BEGIN {
                    in_report = true;
                } else if line == REPORT_END {
                    in_report = false;
                } else if in_report {
                    json = Some(line);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > o.timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the nested run did not finish within {:?}: killed QEMU (console: {})",
                o.timeout,
                log_path.display()
            ));
        }
    }
    let _ = child.wait();
    println!("nested run: {:.1}s, console log {}", start.elapsed().as_secs_f64(), log_path.display());
    if !kvm_line {
        return Err(format!("the nested kernel never said KVM was initialised (see {})", log_path.display()));
    }
    let json = json.ok_or(format!("the nested run printed no report (see {})", log_path.display()))?;
    let report: RunReport =
        serde_json::from_str(&json).map_err(|e| format!("the nested report is not a ptcheck run report: {e}"))?;
    if let Some(path) = &o.report {
        let pretty = serde_json::to_string_pretty(&report).unwrap_or(json);
        fs::write(path, pretty + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("report: {}", path.display());
    }
    let verdict = judge(&report)?;
    println!("nested-kvm: {}", verdict.summary);
    Ok(verdict)
}
