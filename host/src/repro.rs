//! Reproducer files: a failing plan written as text, so it can be read, edited and
//! run again.
//!
//! Format 1, one item per line, `#` starts a comment:
//! ```text
//! ptcheck-repro 1
//! config 4k-52@48
//! pool <base> <size>
//! map <va> <pa> <size> <prot> <flags>
//! probe <va>
//! ```
//! Numbers are hexadecimal with `0x`. Failures are written as comments.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ptcheck_shared::abi::Plan;

/// Render `plan` as a format-1 reproducer, with `notes` as comment lines.
pub fn render(plan: &Plan, notes: &str) -> String {
    let mut s = String::from("ptcheck-repro 1\n");
    for line in notes.lines() {
        let _ = writeln!(s, "# {line}");
    }
    if let Some(cfg) = plan.config() {
        let _ = writeln!(s, "config {cfg}");
    }
    for r in plan.pool() {
        let _ = writeln!(s, "pool {:#x} {:#x}", r.base, r.size);
    }
    for o in plan.ops() {
        let _ = writeln!(s, "map {:#x} {:#x} {:#x} {:#x} {:#x}", o.va, o.pa, o.size, o.prot, o.flags);
    }
    for va in plan.probes() {
        let _ = writeln!(s, "probe {va:#x}");
    }
    s
}

/// Where reproducers go: `$CARGO_TARGET_DIR` or `./target`, then `ptcheck/repro/`.
pub fn dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("ptcheck").join("repro")
}

/// Write a reproducer named `<stem>.repro` under [`dir`].
///
/// # Errors
/// When the directory or file cannot be written.
pub fn write(stem: &str, plan: &Plan, notes: &str) -> anyhow::Result<PathBuf> {
    let dir = dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let safe: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let path = dir.join(format!("{safe}.repro"));
    std::fs::write(&path, render(plan, notes)).with_context(|| format!("cannot write {}", Path::new(&path).display()))?;
    Ok(path)
}
