//! What a report or reproducer tested, written into every one of them: which ptcheck,
//! command, backend, builder, QEMU (binary and version), CPU model, seeds and when,
//! so a file read by someone who did not run the command says how to run it again.

use std::path::Path;

pub use ptcheck_shared::report::{QemuBinary, Tested};

/// `path` and its `--version` line, asked once per binary and process: every report
/// and reproducer of a run names the same QEMU.
pub fn qemu_binary(path: &Path) -> QemuBinary {
    static ASKED: std::sync::Mutex<Vec<QemuBinary>> = std::sync::Mutex::new(Vec::new());
    let key = path.display().to_string();
    let mut asked = ASKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(q) = asked.iter().find(|q| q.path == key) {
        return q.clone();
    }
    let version = std::process::Command::new(path)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("({} --version gave nothing)", path.display()));
    let q = QemuBinary { path: key, version };
    asked.push(q.clone());
    q
}

/// For `command` on `backend` (whose builder, trace, QEMU and CPU it reports), with
/// `seeds`; dated now.
pub fn of_backend(command: &str, backend: &dyn crate::backend::Backend, seeds: &[u64]) -> Tested {
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
        qemu: backend.qemu_binary().map(|p| qemu_binary(&p)),
        cpu: backend.cpu(),
        seeds: seeds.to_vec(),
        date: now(),
    }
}

/// For a real kernel booted by `qemu` on `cpu`.
pub fn of_kernel(command: &str, qemu: &Path, cpu: &str, traced: bool, seeds: &[u64]) -> Tested {
    Tested {
        ptcheck: format!("ptcheck {}", env!("CARGO_PKG_VERSION")),
        command: command.into(),
        backend: "qemu".into(),
        builder: "kernel".into(),
        traced,
        qemu: Some(qemu_binary(qemu)),
        cpu: cpu.into(),
        seeds: seeds.to_vec(),
        date: now(),
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
        let q = qemu_binary(Path::new("/nonexistent/qemu-system-aarch64"));
        assert!(q.version.contains("gave nothing"), "{q:?}");
    }

    #[test]
    fn layout_outcomes_keep_their_json_spelling() {
        use ptcheck_shared::report::LayoutOutcome as L;
        let words: Vec<String> =
            [L::Passed, L::Failed, L::NotChecked].iter().map(|o| serde_json::to_string(o).unwrap()).collect();
        assert_eq!(words, ["\"passed\"", "\"failed\"", "\"not-checked\""]);
        assert_eq!(serde_json::from_str::<L>("\"not-checked\"").unwrap(), L::NotChecked);
        assert_eq!(L::NotChecked.to_string(), "not-checked");
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        let d = now();
        assert!(d.ends_with('Z') && d.len() == 20, "{d}");
    }
}
