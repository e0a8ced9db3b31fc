//! The steps behind each xtask command.

use std::path::PathBuf;
use std::process::Command;

pub type Result = std::result::Result<(), String>;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().expect("xtask is inside the workspace").to_path_buf()
}

/// Run a command in the workspace root, echoing it; fail with the command line.
pub fn sh(cmd: &mut Command) -> Result {
    let line = format!("{cmd:?}").replace('"', "");
    println!("$ {line}");
    let status = cmd.current_dir(root()).status().map_err(|e| format!("cannot start `{line}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo run` of the host runner with `args`.
fn ptcheck(args: &[&str]) -> Result {
    sh(cargo().args(["run", "--quiet", "--package", "ptcheck-host", "--bin", "ptcheck", "--"]).args(args))
}

pub fn run(args: &[String]) -> Result {
    let mut full: Vec<&str> = vec!["run"];
    full.extend(args.iter().map(String::as_str));
    ptcheck(&full)
}

pub fn test() -> Result {
    sh(cargo().args(["test", "--workspace"]))?;
    let report_dir = root().join("target").join("ptcheck");
    std::fs::create_dir_all(&report_dir).map_err(|e| format!("cannot create {}: {e}", report_dir.display()))?;
    let native = report_dir.join("native.json");
    ptcheck(&["run", "--backend", "native", "--config", "all", "--report", &native.to_string_lossy()])?;
    println!("xtask test: native backend: all built-in plans passed on every config");
    Ok(())
}
