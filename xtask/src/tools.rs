//! Tools every xtask step uses: paths, running commands, and setting up what a fresh
//! machine lacks (rustup targets and components, QEMU), each said before it is done.

use std::path::PathBuf;
use std::process::Command;

pub type Result = std::result::Result<(), String>;

pub const GUEST_TARGET: &str = "aarch64-unknown-none";

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

/// `cargo run` of the `ptcheck` binary (release; with the bug catalogue when
/// `mutants`), up to its `--`: the caller adds ptcheck's arguments. The one place
/// xtask says how ptcheck is run.
pub fn ptcheck_command(mutants: bool) -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--quiet", "--package", "ptcheck-host", "--bin", "ptcheck"]);
    if mutants {
        cmd.args(["--features", "mutants"]);
    }
    cmd.arg("--");
    cmd
}

pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A tool a step needs: present when `present` holds, else Debian's `package` has it.
pub struct Need {
    /// What the user is told is missing.
    pub what: &'static str,
    /// A file that exists when it is installed (a binary on PATH is `bin:NAME`).
    pub present: &'static str,
    /// The Debian package.
    pub package: &'static str,
}

fn need_met(n: &Need) -> bool {
    match n.present.strip_prefix("bin:") {
        Some(bin) => on_path(bin),
        None => std::path::Path::new(n.present).exists(),
    }
}

/// Install what `needs` lack where we can (root with apt), else say exactly what to
/// install.
pub fn ensure(needs: &[Need]) -> Result {
    let missing: Vec<&Need> = needs.iter().filter(|n| !need_met(n)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    let what: Vec<&str> = missing.iter().map(|n| n.what).collect();
    // SAFETY: geteuid has no preconditions. (std has no safe wrapper; one call is not
    // worth a dependency.)
    let root = unsafe { geteuid() } == 0;
    if !root || !on_path("apt-get") {
        return Err(format!(
            "{} not found: install it with `sudo apt-get install {}`",
            what.join(", "),
            packages.join(" ")
        ));
    }
    println!("{} not found: installing {}", what.join(", "), packages.join(" "));
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// QEMU is needed: install it where we can (root with apt), else say exactly how.
pub fn ensure_qemu() -> Result {
    ensure(&[Need { what: "qemu-system-aarch64", present: "bin:qemu-system-aarch64", package: "qemu-system-arm" }])
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
pub fn ensure_lint_tools() -> Result {
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

/// Where `mutants_image` puts the guest image with the bug catalogue.
pub fn mutants_image() -> PathBuf {
    target_dir().join("mutants").join("ptcheck-guest-image-mutants")
}

/// Build the guest image with the bug catalogue (every variant, chosen per plan) next
/// to the normal one, which is rebuilt clean so nothing else ever runs a catalogue
/// image by accident.
pub fn build_mutants_image() -> Result {
    ensure_target(GUEST_TARGET)?;
    let guest =
        ["build", "--release", "--package", "ptcheck-guest", "--bin", "ptcheck-guest-image", "--target", GUEST_TARGET];
    sh(cargo().args(guest).args(["--features", "mutants"]))?;
    let image = mutants_image();
    let dir = image.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::copy(guest_image(), &image).map_err(|e| format!("cannot copy the catalogue image: {e}"))?;
    build_guest()?;
    println!("guest image with the bug catalogue: {}", image.display());
    Ok(())
}
