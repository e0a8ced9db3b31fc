//! Tracing: which QEMU and tracer plugin run (`setup`), the `-plugin` argument, and
//! reading back what the plugin observed (`host/tracer` writes
//! [`ptcheck_shared::trace::Message`] lines). The checks that judge it live with the
//! others (`linux/check/observed.rs`).
//!
//! The plugin needs QEMU's plugin API v4 (QEMU 10.0: register reads and store values).
//! Debian bookworm's QEMU 7.2 has v1, where `DC ZVA` — the kernel's `clear_page` —
//! never reaches a memory callback; `cargo xtask` fetches 10.0 from bookworm-backports
//! and names it in `PTCHECK_QEMU_TRACE`. Untraced runs keep the system QEMU.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use ptcheck_shared::trace::{Counts, Finding, Link, Message, Violation};

/// The QEMU and plugin a traced run uses.
#[derive(Clone, Debug)]
pub struct TraceSetup {
    /// The emulator.
    pub qemu: PathBuf,
    /// `qemu --version`'s first line.
    pub version: String,
    /// The plugin (`libptcheck_tracer.so`).
    pub plugin: PathBuf,
    /// Functions to count from entry to return (`--count-calls`, `kernel-costs`):
    /// each one's name and entry VA.
    pub brackets: Vec<(String, u64)>,
    /// One of `brackets`' entries: the tracer ends QEMU once its call returns.
    pub stop: Option<u64>,
    /// Where the fixmap's PTE tables are (`[lo, hi)`, physical): stores there are
    /// counted.
    pub fixmap: Option<(u64, u64)>,
}

/// The oldest QEMU whose plugin API (v4) the tracer is built for.
const QEMU_MIN: (u32, u32) = (10, 0);

/// `X.Y` of "QEMU emulator version X.Y.Z …".
fn parse_version(line: &str) -> Option<(u32, u32)> {
    let v = line.split("version ").nth(1)?;
    let mut it = v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The system QEMU, or for tracing the one xtask fetched (`PTCHECK_QEMU_TRACE`).
pub fn qemu_binary(traced: bool) -> PathBuf {
    match std::env::var_os("PTCHECK_QEMU_TRACE") {
        Some(p) if traced => PathBuf::from(p),
        _ => PathBuf::from("qemu-system-aarch64"),
    }
}

/// `-L DIR` for an unpacked QEMU (`…/usr/bin/qemu-system-aarch64` → `…/usr/share/qemu`).
pub fn data_dir(qemu: &Path) -> Option<PathBuf> {
    let d = qemu.parent()?.parent()?.join("share/qemu");
    d.is_dir().then_some(d)
}

/// Point an unpacked QEMU at its own data (`-L`) and modules (`QEMU_MODULE_DIR`:
/// else it tries the system QEMU's, built for another version, and warns).
pub fn use_own_files(cmd: &mut Command, qemu: &Path) {
    let Some(usr) = qemu.parent().and_then(Path::parent) else { return };
    if let Some(d) = data_dir(qemu) {
        cmd.arg("-L").arg(d);
    }
    let modules = std::fs::read_dir(usr.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("qemu"))
        .find(|p| p.is_dir());
    if let Some(m) = modules {
        cmd.env("QEMU_MODULE_DIR", m);
    }
}

/// Find the QEMU and plugin for a traced run, and check QEMU's plugin API suffices.
///
/// # Errors
/// One line each: no plugin built, QEMU missing or too old (with the version found and
/// the fix: `cargo xtask` fetches QEMU 10, or `--no-trace`).
pub fn setup() -> anyhow::Result<TraceSetup> {
    let plugin = match std::env::var_os("PTCHECK_TRACER") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.with_file_name("libptcheck_tracer.so"),
    };
    if !plugin.is_file() {
        bail!("the tracer plugin {} is not built: `cargo xtask linux` builds it, or pass --no-trace", plugin.display());
    }
    let qemu = qemu_binary(true);
    let out = Command::new(&qemu).arg("--version").output().with_context(|| {
        format!("cannot run {} for tracing: `cargo xtask linux` fetches QEMU 10, or pass --no-trace", qemu.display())
    })?;
    let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    match parse_version(&version) {
        Some(v) if v >= QEMU_MIN => {}
        _ => bail!(
            "{} is \"{version}\": its plugin API is older than v4 (QEMU 10.0), which the tracer needs; \
             `cargo xtask linux` fetches QEMU 10 (bookworm-backports, under target/qemu), or pass --no-trace",
            qemu.display()
        ),
    }
    Ok(TraceSetup { qemu, version, plugin, brackets: Vec::new(), stop: None, fixmap: None })
}

/// A bbm or tlbi finding in words (PCs as the plugin gives them; `name` may add a
/// symbol).
pub fn describe(f: &Finding, name: &dyn Fn(u64, u32) -> String) -> String {
    let entry = format!("entry {:#x} (VA {:#x}, {} KiB)", f.entry_pa, f.va, (1u64 << f.span_shift) >> 10);
    match f.violation {
        Violation::ValidToValid => format!(
            "{entry} changed from {:#x} to {:#x} by {} without break-before-make (invalid, TLBI, DSB)",
            f.old,
            f.new,
            name(f.pc, f.insn)
        ),
        Violation::RemadeBeforeInvalidated => format!(
            "{entry} broken by {} ({:#x} -> {:#x}) and made valid again ({:#x}) by {} before a TLBI covering it \
             completed",
            name(f.change_pc, f.change_insn),
            f.old,
            0,
            f.new,
            name(f.pc, f.insn)
        ),
        Violation::UsedBeforeInvalidated => format!(
            "{entry} changed by {} ({:#x} -> {:#x}), then VA {:#x} accessed by {} before a TLBI covering it completed",
            name(f.change_pc, f.change_insn),
            f.old,
            f.new,
            f.access_va,
            name(f.pc, f.insn)
        ),
    }
}

/// What the plugin is told.
pub struct PluginArgs<'a> {
    /// Where it writes.
    pub out: &'a Path,
    /// Guest RAM's file as QEMU opens it, base and size.
    pub ram: &'a str,
    /// See `ram`.
    pub ram_base: u64,
    /// See `ram`.
    pub ram_size: u64,
    /// The granule until TCR_EL1 says otherwise.
    pub page_shift: u32,
    /// Windows linked tables lie in (empty: all of RAM).
    pub tables: &'a [(u64, u64)],
    /// Every link, not only doubtful ones.
    pub links_all: bool,
}

impl TraceSetup {
    /// The `-plugin` option's value.
    pub fn plugin_arg(&self, a: &PluginArgs<'_>) -> anyhow::Result<String> {
        let out = a.out.to_string_lossy();
        if out.contains(',') || self.plugin.to_string_lossy().contains(',') {
            bail!("{} or {} has a comma, which QEMU's -plugin option cannot take", out, self.plugin.display());
        }
        let mut s = format!(
            "{},out={out},ram={},ram_base={:#x},ram_size={:#x},page_shift={}",
            self.plugin.display(),
            a.ram,
            a.ram_base,
            a.ram_size,
            a.page_shift
        );
        for (lo, hi) in a.tables {
            s += &format!(",tables={lo:#x}-{hi:#x}");
        }
        if a.links_all {
            s += ",links=all";
        }
        for (_, entry) in &self.brackets {
            s += &format!(",bracket={entry:#x}");
        }
        if let Some(entry) = self.stop {
            s += &format!(",stop={entry:#x}");
        }
        if let Some((lo, hi)) = self.fixmap {
            s += &format!(",fixmap={lo:#x}-{hi:#x}");
        }
        Ok(s)
    }
}

/// What one traced run (or bracket) observed.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The links the plugin sent.
    pub links: Vec<Link>,
    /// Its bbm and tlbi findings (the first of each bracket; all are counted).
    pub findings: Vec<Finding>,
    /// The bracketed functions' calls (`bracket=`), each one's counts from its entry
    /// to its return, in the order they returned.
    pub calls: Vec<ptcheck_shared::trace::Call>,
    /// The tracer ended QEMU when this function returned (`stop=`).
    pub stopped: Option<u64>,
    /// The last table writes before QEMU exited, oldest first (empty when it was
    /// killed rather than ended).
    pub recent: Vec<ptcheck_shared::trace::TableWrite>,
    /// Its counts; `None` when it sent none (QEMU did not exit cleanly, or the
    /// plugin failed): the trace is not whole.
    pub counts: Option<Counts>,
}

/// Read a trace file: the whole run as one [`Observed`] per bracket (a real kernel has
/// one, from reset to exit).
///
/// # Errors
/// The file is missing or a line is not a message (a plugin of another version).
pub fn read(path: &Path) -> anyhow::Result<Vec<Observed>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("the tracer wrote no {}", path.display()))?;
    let (out, hello) = parse(&text).with_context(|| path.display().to_string())?;
    if !hello {
        bail!("{} has no greeting from the tracer: it did not start", path.display());
    }
    Ok(out)
}

/// The brackets in `text` (whole lines), and whether the greeting was among them.
///
/// # Errors
/// A line is not a message (a plugin of another version).
pub fn parse(text: &str) -> anyhow::Result<(Vec<Observed>, bool)> {
    let mut out = vec![Observed::default()];
    let mut hello = false;
    for (n, line) in text.lines().enumerate() {
        let m: Message = serde_json::from_str(line)
            .with_context(|| format!("line {}: not a tracer message (a plugin of another version?)", n + 1))?;
        let cur = out.last_mut().expect("never empty");
        match m {
            Message::Hello { .. } => hello = true,
            Message::Begin => {
                if cur.counts.is_some() || !cur.links.is_empty() {
                    out.push(Observed::default());
                }
            }
            Message::Link(l) => cur.links.push(l),
            Message::Finding(f) => cur.findings.push(f),
            Message::TableWrite(w) => cur.recent.push(w),
            Message::Function(c) => cur.calls.push(c),
            Message::Stopped { entry } => {
                // After the summary: it belongs to the bracket that summary ended.
                let n = out.len();
                let ended = if n > 1 && out[n - 1].counts.is_none() { n - 2 } else { n - 1 };
                out[ended].stopped = Some(entry);
            }
            Message::Summary(c) => {
                cur.counts = Some(c);
                out.push(Observed::default());
            }
        }
    }
    if out.len() > 1 && out.last().is_some_and(|o| o.counts.is_none() && o.links.is_empty()) {
        out.pop();
    }
    Ok((out, hello))
}

/// A trace file read as it grows: each call returns the bracket completed since the
/// last one.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    offset: u64,
}

impl Follower {
    /// Follow `path` from its start.
    pub fn new(path: PathBuf) -> Self {
        Follower { path, offset: 0 }
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Start again (the file was created anew).
    pub fn rewind(&mut self) {
        self.offset = 0;
    }

    /// The last bracket written since the previous call: `Err` when none ended (no
    /// summary: the build did not reach its end marker, or the plugin failed).
    pub fn last_bracket(&mut self) -> Result<Observed, String> {
        use std::io::{Read as _, Seek as _};
        let mut f = std::fs::File::open(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        f.seek(std::io::SeekFrom::Start(self.offset)).map_err(|e| e.to_string())?;
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(|e| e.to_string())?;
        // Only whole lines; a partial last one is read next time.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        let (brackets, _) = parse(&text[..whole]).map_err(|e| format!("{}: {e:#}", self.path.display()))?;
        brackets
            .into_iter()
            .rev()
            .find(|b| b.counts.is_some())
            .ok_or_else(|| "the tracer sent no summary for this build".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_after_the_summary_marks_the_bracket_it_ended() {
        use ptcheck_shared::trace::Call;
        let line = |m: &Message| serde_json::to_string(m).unwrap();
        let call = Call { entry: 0x10, counts: Counts { insns: 7, ..Counts::default() }, emulated_ns: 1 };
        let text = [
            line(&Message::Hello { built_for: 4, qemu_min: 4, qemu_cur: 4 }),
            line(&Message::Function(call)),
            line(&Message::Summary(Counts::default())),
            line(&Message::Stopped { entry: 0x10 }),
        ]
        .join("\n");
        let (brackets, hello) = parse(&text).unwrap();
        assert!(hello);
        assert_eq!(brackets.len(), 1);
        assert_eq!(brackets[0].stopped, Some(0x10));
        assert_eq!(brackets[0].calls, [call]);
        // Without the stop, nothing says the tracer ended QEMU.
        let (unstopped, _) = parse(&text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
        assert_eq!(unstopped[0].stopped, None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)"), Some((10, 0)));
        assert_eq!(parse_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u18)"), Some((7, 2)));
        assert!(parse_version("QEMU emulator version 7.2.15").unwrap() < QEMU_MIN);
        assert_eq!(parse_version("nonsense"), None);
    }
}
