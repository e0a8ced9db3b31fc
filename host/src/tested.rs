//! What a report or reproducer tested, written into every one of them: which ptcheck,
//! command, backend, builder, QEMU (binary and version), CPU model, seeds and when,
//! so a file read by someone who did not run the command says how to run it again.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The provenance block of a JSON report, a reproducer, or JUnit properties.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tested {
    /// `ptcheck <version>`.
    pub ptcheck: String,
    /// The command (`run`, `fuzz`, `linux`, `bench`, `replay`).
    pub command: String,
    /// The backend (`native`, `qemu`, `kvm`).
    pub backend: String,
    /// The builder under test (`linux`, `linux-6.9`, `aarch64-paging`, or a catalogue
    /// variant), or `kernel` when a real kernel is.
    pub builder: String,
    /// Whether the tracer observed it (QEMU 10 with the plugin).
    pub traced: bool,
    /// The QEMU binary and what `--version` says; `None` without QEMU (native, KVM).
    pub qemu: Option<QemuBinary>,
    /// The `-cpu` model (or `host` under KVM, `none` natively).
    pub cpu: String,
    /// The seeds of the plans or layouts (empty for built-in plans).
    pub seeds: Vec<u64>,
    /// When, UTC, RFC 3339.
    pub date: String,
}

/// A QEMU binary and its version line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuBinary {
    /// The path run.
    pub path: String,
    /// First line of `--version`, or why it could not be read.
    pub version: String,
}

impl QemuBinary {
    /// `path` and its `--version` line.
    pub fn of(path: &Path) -> QemuBinary {
        let version = std::process::Command::new(path)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
            .unwrap_or_else(|| format!("({} --version gave nothing)", path.display()));
        QemuBinary { path: path.display().to_string(), version }
    }
}

impl Tested {
    /// For `command` on `backend` (whose builder, trace, QEMU and CPU it reports),
    /// with `seeds`; dated now.
    pub fn new(command: &str, backend: &dyn crate::backend::Backend, seeds: &[u64]) -> Tested {
        let builder = builder_of(backend).unwrap_or_else(|| "linux".into());
        let builder = match variant_name(backend.variant().mutation) {
            Some(m) => format!("{builder} (catalogue variant {m})"),
            None => builder,
        };
        Tested {
            ptcheck: format!("ptcheck {}", env!("CARGO_PKG_VERSION")),
            command: command.into(),
            backend: backend.name().into(),
            builder,
            traced: backend.traced(),
            qemu: backend.qemu_binary().map(|p| QemuBinary::of(&p)),
            cpu: backend.cpu(),
            seeds: seeds.to_vec(),
            date: now(),
        }
    }

    /// For a real kernel booted by `qemu` on `cpu`.
    pub fn kernel(command: &str, qemu: &Path, cpu: &str, traced: bool, seeds: &[u64]) -> Tested {
        Tested {
            ptcheck: format!("ptcheck {}", env!("CARGO_PKG_VERSION")),
            command: command.into(),
            backend: "qemu".into(),
            builder: "kernel".into(),
            traced,
            qemu: Some(QemuBinary::of(qemu)),
            cpu: cpu.into(),
            seeds: seeds.to_vec(),
            date: now(),
        }
    }

    /// `key value` pairs, for JUnit properties and reproducer comments.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("ptcheck".to_string(), self.ptcheck.clone()),
            ("command".into(), self.command.clone()),
            ("backend".into(), self.backend.clone()),
            ("builder".into(), self.builder.clone()),
            ("traced".into(), self.traced.to_string()),
            ("cpu".into(), self.cpu.clone()),
            ("date".into(), self.date.clone()),
        ];
        if let Some(q) = &self.qemu {
            v.push(("qemu".into(), q.path.clone()));
            v.push(("qemu-version".into(), q.version.clone()));
        }
        if !self.seeds.is_empty() {
            let s: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
            v.push(("seeds".into(), s.join(" ")));
        }
        v
    }
}

/// The builder `backend` runs, when not `linux` (what a reproducer records).
pub fn builder_of(backend: &dyn crate::backend::Backend) -> Option<String> {
    ptcheck_guest::registry::by_id(backend.variant().builder).map(|b| b.name.to_string()).filter(|n| n != "linux")
}

/// A bug-catalogue variant's name (`None`: the clean builder).
fn variant_name(id: u32) -> Option<String> {
    if id == 0 {
        return None;
    }
    #[cfg(feature = "mutants")]
    if let Some(v) = ptcheck_guest::mutation::ALL_VARIANTS.iter().find(|v| v.id == id) {
        return Some(v.name.to_string());
    }
    Some(format!("#{id}"))
}

/// Now, UTC, to the second.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_qemu_is_said_not_hidden() {
        let q = QemuBinary::of(Path::new("/nonexistent/qemu-system-aarch64"));
        assert!(q.version.contains("gave nothing"), "{q:?}");
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        let d = now();
        assert!(d.ends_with('Z') && d.len() == 20, "{d}");
    }
}
