//! The steps behind each xtask command.

use std::path::PathBuf;
use std::process::Command;

pub type Result = std::result::Result<(), String>;

const GUEST_TARGET: &str = "aarch64-unknown-none";

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().expect("xtask is inside the workspace").to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Where `build-guest` puts the image.
pub fn guest_image() -> PathBuf {
    target_dir().join(GUEST_TARGET).join("release").join("ptcheck-guest-image")
}

/// Run a command in the workspace root, echoing it; fail with the command line.
pub fn sh(cmd: &mut Command) -> Result {
    let line = format!("{cmd:?}").replace('"', "");
    println!("$ {line}");
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let status = cmd.status().map_err(|e| format!("cannot start `{line}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.env("PTCHECK_GUEST_IMAGE", guest_image());
    c
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// QEMU is needed: install it where we can (root with apt), else say exactly how.
pub fn ensure_qemu() -> Result {
    if on_path("qemu-system-aarch64") {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions. (std has no safe wrapper; one call is not
    // worth a dependency.)
    let root = unsafe { geteuid() } == 0;
    if !root || !on_path("apt-get") {
        return Err("qemu-system-aarch64 not found: install it with `sudo apt-get install qemu-system-arm`".into());
    }
    println!("qemu-system-aarch64 not found: installing qemu-system-arm");
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "qemu-system-arm"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

extern "C" {
    fn geteuid() -> u32;
}

/// Whether `rustup` lists `what` (a target or component) as installed.
fn rustup_has(kind: &str, what: &str) -> bool {
    Command::new("rustup").args([kind, "list", "--installed"]).current_dir(root()).output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == what || l.starts_with(&format!("{what}-")))
    })
}

/// The rustup target `target` for the pinned toolchain: rust-toolchain.toml lists it,
/// but a preinstalled or linked toolchain does not install listed targets.
pub fn ensure_target(target: &str) -> Result {
    if rustup_has("target", target) {
        return Ok(());
    }
    println!("rust target {target} not installed: installing it with rustup");
    sh(Command::new("rustup").args(["target", "add", target]))
}

/// rustfmt and clippy, which `cargo xtask test` runs first.
fn ensure_lint_tools() -> Result {
    for c in ["rustfmt", "clippy"] {
        if !rustup_has("component", c) {
            println!("rust component {c} not installed: installing it with rustup");
            sh(Command::new("rustup").args(["component", "add", c]))?;
        }
    }
    Ok(())
}

pub fn build_guest() -> Result {
    ensure_target(GUEST_TARGET)?;
    sh(cargo().args([
        "build",
        "--release",
        "--package",
        "ptcheck-guest",
        "--bin",
        "ptcheck-guest-image",
        "--target",
        GUEST_TARGET,
    ]))?;
    println!("guest image: {}", guest_image().display());
    Ok(())
}

/// `cargo run` of the host runner with `args` (release: fuzzing wants the speed).
fn ptcheck(args: &[&str]) -> Result {
    // Broken builders exist only in a `mutants` build.
    let mutants = args.first() == Some(&"mutants") || args.iter().any(|a| a.starts_with("--mutant"));
    ptcheck_build(args, mutants)
}

fn ptcheck_build(args: &[&str], mutants_build: bool) -> Result {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--quiet", "--package", "ptcheck-host", "--bin", "ptcheck"]);
    if mutants_build {
        cmd.args(["--features", "mutants"]);
    }
    sh(cmd.arg("--").args(args))
}

/// Whether a VM run may need QEMU: `--backend qemu`, or `auto` where this host's KVM
/// cannot run an arm64 guest.
fn needs_qemu(args: &[String]) -> bool {
    let backend = args
        .windows(2)
        .find(|w| w[0] == "--backend")
        .map(|w| w[1].as_str())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--backend=")));
    match backend {
        Some("kvm") => false,
        Some("qemu") => true,
        _ => !(cfg!(all(target_arch = "aarch64", target_os = "linux")) && std::path::Path::new("/dev/kvm").exists()),
    }
}

/// Commands that may use a VM backend need the guest image (and maybe QEMU).
fn uses_vm(args: &[String]) -> bool {
    !(args.windows(2).any(|w| w[0] == "--backend" && w[1] == "native") || args.iter().any(|a| a == "--backend=native"))
}

/// `ptcheck <sub> args`, setting up what a VM needs first (the guest image, QEMU
/// where KVM cannot run it), exactly as `test` does.
fn forward(sub: &str, args: &[String]) -> Result {
    if uses_vm(args) {
        build_guest()?;
        if needs_qemu(args) {
            ensure_qemu()?;
        }
    }
    let mut full: Vec<&str> = vec![sub];
    full.extend(args.iter().map(String::as_str));
    ptcheck(&full)
}

pub fn fuzz(args: &[String]) -> Result {
    forward("fuzz", args)
}

pub fn replay(args: &[String]) -> Result {
    if args.is_empty() {
        return Err(
            "replay needs a reproducer file: cargo xtask replay target/ptcheck/repro/NAME.repro [--backend ...]".into(),
        );
    }
    forward("replay", args)
}

pub fn run(args: &[String]) -> Result {
    forward("run", args)
}

/// `cargo xtask mutants [--backend B] [ptcheck mutants args]`: for a VM backend,
/// first build one guest image per catalogue variant.
pub fn mutants(args: &[String]) -> Result {
    let mut full: Vec<String> = vec!["mutants".into()];
    full.extend(args.iter().cloned());
    let backend = args.windows(2).find(|w| w[0] == "--backend").map_or("native", |w| w[1].as_str());
    if backend != "native" {
        ensure_qemu()?;
        build_guest()?;
        let dir = target_dir().join("mutants");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let list = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "run",
                "--release",
                "--quiet",
                "--package",
                "ptcheck-host",
                "--bin",
                "ptcheck",
                "--features",
                "mutants",
                "--",
                "mutants",
                "--list",
            ])
            .current_dir(root())
            .output()
            .map_err(|e| format!("cannot list the variants: {e}"))?;
        if !list.status.success() {
            return Err(format!("cannot list the variants: {}", String::from_utf8_lossy(&list.stderr)));
        }
        for name in String::from_utf8_lossy(&list.stdout).lines() {
            let feature = format!("mutant-{name}");
            sh(cargo().args([
                "build",
                "--release",
                "--package",
                "ptcheck-guest",
                "--bin",
                "ptcheck-guest-image",
                "--target",
                GUEST_TARGET,
                "--features",
                &feature,
            ]))?;
            let image = dir.join(format!("ptcheck-guest-image-{name}"));
            std::fs::copy(guest_image(), &image).map_err(|e| format!("cannot copy the {name} image: {e}"))?;
        }
        // Leave the clean image in place for everything else.
        build_guest()?;
        full.extend(["--guest-dir".into(), dir.to_string_lossy().into_owned()]);
    }
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    ptcheck(&refs)
}

pub fn bench(args: &[String]) -> Result {
    ensure_qemu()?;
    build_guest()?;
    let mut full: Vec<&str> = vec!["bench"];
    full.extend(args.iter().map(String::as_str));
    ptcheck(&full)
}

pub fn test() -> Result {
    // Formatting and lints first: they are part of the test.
    ensure_lint_tools()?;
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    sh(cargo().args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--features",
        "ptcheck-host/mutants",
        "--",
        "-D",
        "warnings",
    ]))?;
    ensure_target(GUEST_TARGET)?;
    sh(cargo().args([
        "clippy",
        "--release",
        "--package",
        "ptcheck-guest",
        "--bin",
        "ptcheck-guest-image",
        "--target",
        GUEST_TARGET,
        "--",
        "-D",
        "warnings",
    ]))?;
    ensure_qemu()?;
    build_guest()?;
    // Every test, the QEMU ones (ignored by plain `cargo test`) included.
    // One host build for everything below: the test build has the bug catalogue
    // (tests need it); runs without --mutant use the clean builder all the same.
    sh(cargo().args([
        "test",
        "--release",
        "--workspace",
        "--features",
        "ptcheck-host/mutants",
        "--",
        "--include-ignored",
    ]))?;
    let ptcheck = |args: &[&str]| ptcheck_build(args, true);
    let reports = target_dir().join("ptcheck");
    std::fs::create_dir_all(&reports).map_err(|e| format!("cannot create {}: {e}", reports.display()))?;
    for backend in ["native", "qemu"] {
        let report = reports.join(format!("{backend}.json"));
        ptcheck(&["run", "--backend", backend, "--config", "all", "--report", &report.to_string_lossy()])?;
    }
    // A short fuzz run per backend (fixed seed: CI must be reproducible).
    ptcheck(&["fuzz", "--backend", "native", "--config", "all", "--seed", "1", "--count", "5000"])?;
    ptcheck(&["fuzz", "--backend", "qemu", "--config", "all", "--seed", "1", "--count", "500"])?;
    // The bug catalogue: every variant caught, the clean builder clean.
    mutants(&["--backend".into(), "native".into()])?;
    mutants(&["--backend".into(), "qemu".into()])?;
    let kvm = kvm_stage(&reports)?;
    println!(
        "xtask test: unit and QEMU tests passed; every built-in plan passed on every config on native, QEMU and {kvm}"
    );
    Ok(())
}

/// KVM: directly where this host's KVM runs arm64 guests, else inside an emulated
/// arm64 Linux (nested), including the proof that a failure there fails the run.
fn kvm_stage(reports: &std::path::Path) -> std::result::Result<&'static str, String> {
    let report = reports.join("kvm.json");
    if cfg!(all(target_arch = "aarch64", target_os = "linux")) && std::path::Path::new("/dev/kvm").exists() {
        println!("KVM stage: this is an arm64 host with /dev/kvm: running the KVM backend directly");
        ptcheck_build(&["run", "--backend", "kvm", "--config", "all", "--report", &report.to_string_lossy()], true)?;
        return Ok("KVM (direct)");
    }
    println!("KVM stage: this {} host's KVM cannot run arm64 guests: proving the KVM backend nested, inside an emulated arm64 Linux", std::env::consts::ARCH);
    let run = |self_test, report| crate::nested_kvm::NestedKvm {
        report: Some(report),
        self_test,
        timeout: std::time::Duration::from_secs(900),
    };
    crate::nested_kvm::run(&run(false, report))?;
    match crate::nested_kvm::run(&run(true, reports.join("kvm-self-test.json"))) {
        Err(e) if e.contains("plans failed on KVM") => {
            println!("KVM stage: the wrong-expectation self-test failed the nested run, as it must: {e}")
        }
        Err(e) => return Err(format!("the nested self-test failed for the wrong reason: {e}")),
        Ok(()) => return Err("the nested self-test passed: failures on KVM would not reach the exit code".into()),
    }
    Ok("KVM (nested)")
}
