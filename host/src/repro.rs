//! Reproducer files: a failing plan as text, to read, edit and run again
//! (`cargo xtask replay FILE`).
//!
//! Format 2, one item per line; `#` starts a comment; numbers are decimal or `0x` hex
//! (format 1 files, which have no `outcome` line, are read too):
//! ```text
//! ptcheck-repro 2                      first line, always
//! config 4k-52@48                      the regime (exactly one)
//! origin <seed> <index> <format>       optional: where a fuzzed plan came from
//! outcome <words>                      optional: how the run ended when written
//! builder <name>                       optional: the builder it ran on (default linux)
//! fails <check>                        optional, repeatable: what failed when written
//! pool <base> <size>                   table pool ranges, in order
//! map <va> <pa> <size> <prot> <flags>  create_pgd_mapping calls, in order
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use ptcheck_shared::abi::{MapOp, Plan, MAX_OPS, MAX_POOL_RANGES};
use ptcheck_shared::TranslationConfig;

/// The format this code writes (it reads this one and format 1).
pub const REPRO_FORMAT: u32 = 2;

/// A reproducer.
#[derive(Clone)]
pub struct Repro {
    /// The plan.
    pub plan: Box<Plan>,
    /// (seed, index, generator format) of a fuzzed plan.
    pub origin: Option<(u64, u64, u32)>,
    /// Checks that failed when it was written.
    pub fails: Vec<String>,
    /// How the run ended when it was written ([`crate::outcome::Outcome`] as text).
    pub outcome: Option<String>,
    /// The builder it ran on, when not `linux`.
    pub builder: Option<String>,
    /// It ran with the tracer (`--trace`): a failure of an observed check replays only
    /// traced, so replay traces it again.
    pub traced: bool,
    /// What wrote it (written as `# tested` comments; not read back).
    pub tested: Option<crate::tested::Tested>,
}

/// Why a reproducer could not be read: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Render `r` as format 1, with `notes` as comment lines.
pub fn render(r: &Repro, notes: &str) -> String {
    let mut s = format!("ptcheck-repro {REPRO_FORMAT}\n");
    for line in notes.lines() {
        let _ = writeln!(s, "# {line}");
    }
    for (k, v) in r.tested.iter().flat_map(crate::tested::Tested::pairs) {
        let _ = writeln!(s, "# tested {k}: {}", v.replace('\n', " "));
    }
    if let Some(cfg) = r.plan.config() {
        let _ = writeln!(s, "config {cfg}");
    }
    if let Some((seed, index, format)) = r.origin {
        let _ = writeln!(s, "origin {seed} {index} {format}");
    }
    if let Some(builder) = &r.builder {
        let _ = writeln!(s, "builder {builder}");
    }
    if r.traced {
        let _ = writeln!(s, "traced");
    }
    if let Some(outcome) = &r.outcome {
        let _ = writeln!(s, "outcome {}", outcome.replace(['\n', '#'], " "));
    }
    for check in &r.fails {
        let _ = writeln!(s, "fails {check}");
    }
    for p in r.plan.pool() {
        let _ = writeln!(s, "pool {:#x} {:#x}", p.base, p.size);
    }
    for o in r.plan.ops() {
        let _ = writeln!(s, "map {:#x} {:#x} {:#x} {:#x} {:#x}", o.va, o.pa, o.size, o.prot, o.flags);
    }
    s
}

fn number(word: Option<&str>, field: &str, line: usize) -> Result<u64, ParseError> {
    let err = |message: String| ParseError { line, message };
    let w = word.ok_or_else(|| err(format!("missing field <{field}>")))?;
    let parsed = match w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => w.parse(),
    };
    parsed.map_err(|_| err(format!("<{field}> is '{w}', not a number")))
}

/// Read format 1.
///
/// # Errors
/// The first line or field at fault, in words.
pub fn parse(text: &str) -> Result<Repro, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()));
    let header = lines.by_ref().find(|(_, l)| !l.is_empty());
    match header {
        Some((_, l)) if l == format!("ptcheck-repro {REPRO_FORMAT}") || l == "ptcheck-repro 1" => {}
        Some((n, l)) if l.starts_with("ptcheck-repro") => {
            return Err(ParseError {
                line: n,
                message: format!("'{l}': this ptcheck reads formats 1 and {REPRO_FORMAT}"),
            })
        }
        Some((n, _)) => {
            return Err(ParseError {
                line: n,
                message: format!("not a reproducer: the first line must be 'ptcheck-repro {REPRO_FORMAT}'"),
            })
        }
        None => return Err(ParseError { line: 0, message: "empty reproducer".into() }),
    }
    let (mut cfg, mut origin, mut fails, mut outcome, mut builder) = (None, None, Vec::new(), None, None);
    let mut traced = false;
    let (mut pool, mut ops) = (Vec::new(), Vec::new());
    for (n, l) in lines.filter(|(_, l)| !l.is_empty()) {
        let mut w = l.split_whitespace();
        let keyword = w.next().unwrap_or("");
        let expect_end = |w: &mut std::str::SplitWhitespace<'_>| match w.next() {
            Some(extra) => {
                Err(ParseError { line: n, message: format!("unexpected '{extra}' after the {keyword} fields") })
            }
            None => Ok(()),
        };
        match keyword {
            "config" => {
                let name = w.next().ok_or(ParseError { line: n, message: "missing field <name>".into() })?;
                let c = TranslationConfig::parse(name)
                    .ok_or_else(|| ParseError { line: n, message: format!("unknown config '{name}'") })?;
                if cfg.replace(c).is_some() {
                    return Err(ParseError { line: n, message: "a second config line".into() });
                }
            }
            "origin" => {
                let seed = number(w.next(), "seed", n)?;
                let index = number(w.next(), "index", n)?;
                let format = number(w.next(), "format", n)?;
                origin = Some((seed, index, u32::try_from(format).unwrap_or(u32::MAX)));
            }
            "builder" => {
                let name = w.next().ok_or(ParseError { line: n, message: "missing field <name>".into() })?;
                builder = Some(name.to_string());
            }
            "traced" => traced = true,
            "outcome" => {
                outcome = Some(w.by_ref().collect::<Vec<_>>().join(" "));
            }
            "fails" => {
                fails.push(w.next().ok_or(ParseError { line: n, message: "missing field <check>".into() })?.to_string())
            }
            "pool" => pool.push((number(w.next(), "base", n)?, number(w.next(), "size", n)?)),
            "map" => ops.push(MapOp {
                va: number(w.next(), "va", n)?,
                pa: number(w.next(), "pa", n)?,
                size: number(w.next(), "size", n)?,
                prot: number(w.next(), "prot", n)?,
                flags: number(w.next(), "flags", n)?,
            }),
            other => {
                return Err(ParseError {
                    line: n,
                    message: format!(
                        "unknown keyword '{other}' (config, origin, builder, traced, outcome, fails, pool, map)"
                    ),
                })
            }
        }
        expect_end(&mut w)?;
        if pool.len() > MAX_POOL_RANGES {
            return Err(ParseError { line: n, message: format!("more than {MAX_POOL_RANGES} pool ranges") });
        }
        if ops.len() > MAX_OPS {
            return Err(ParseError { line: n, message: format!("more than {MAX_OPS} map lines") });
        }
    }
    let cfg = cfg.ok_or(ParseError { line: 0, message: "no config line".into() })?;
    let mut plan: Box<Plan> = bytemuck::zeroed_box();
    *plan = Plan::new(cfg);
    plan.plan_id = 1;
    for (base, size) in pool {
        plan.push_pool(base, size);
    }
    for op in ops {
        plan.push_op(op);
    }
    Ok(Repro { plan, origin, fails, outcome, builder, traced, tested: None })
}

/// Where reproducers go: `ptcheck/repro/` under `$CARGO_TARGET_DIR`, else under the
/// workspace's `target/` when run by cargo (tests run in `host/`), else `./target`.
pub fn dir() -> PathBuf {
    let target = match (std::env::var_os("CARGO_TARGET_DIR"), std::env::var_os("CARGO_MANIFEST_DIR")) {
        (Some(t), _) => PathBuf::from(t),
        (None, Some(m)) if PathBuf::from(&m).join("../Cargo.toml").is_file() => {
            PathBuf::from(m).parent().map_or_else(|| PathBuf::from("target"), |p| p.join("target"))
        }
        _ => PathBuf::from("target"),
    };
    target.join("ptcheck").join("repro")
}

/// Write `r` as `<stem>.repro` under [`dir`]; an existing file is never overwritten:
/// the name gains `-2`, `-3`, … instead.
///
/// # Errors
/// When the directory or file cannot be written.
pub fn write_repro(stem: &str, r: &Repro, notes: &str) -> anyhow::Result<PathBuf> {
    write_repro_in(&dir(), stem, r, notes)
}

/// [`write_repro`] into `dir`.
///
/// # Errors
/// When the directory or file cannot be written.
pub fn write_repro_in(dir: &std::path::Path, stem: &str, r: &Repro, notes: &str) -> anyhow::Result<PathBuf> {
    write_unique(dir, stem, "repro", &render(r, notes))
}

/// Write `text` as `<stem>.<ext>` in `dir` (created if need be), never over an
/// existing file: the name gains `-2`, `-3`, … instead.
///
/// # Errors
/// When the directory or file cannot be written.
pub fn write_unique(dir: &std::path::Path, stem: &str, ext: &str, text: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let safe: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    for n in 1u32.. {
        let name = if n == 1 { format!("{safe}.{ext}") } else { format!("{safe}-{n}.{ext}") };
        let path = dir.join(name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
        }
    }
    unreachable!("u32 names run out before a directory does")
}

/// Write a plain plan (no origin) that failed on `backend` as a reproducer: the
/// builder and whether it was traced come from the backend.
///
/// # Errors
/// When the directory or file cannot be written.
pub fn write(
    stem: &str,
    plan: &Plan,
    run: &crate::run::PlanRun,
    backend: &dyn crate::backend::Backend,
    notes: &str,
) -> anyhow::Result<PathBuf> {
    let r = Repro {
        plan: Box::new(*plan),
        origin: None,
        fails: run.verdict.failed().iter().map(|s| s.to_string()).collect(),
        outcome: Some(run.outcome.to_string()),
        builder: crate::tested::builder_of(backend),
        traced: backend.traced(),
        tested: Some(crate::tested::of_backend("run", backend, &[])),
    };
    write_repro(stem, &r, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        "ptcheck-repro 1\n# note\nconfig 16k-47\norigin 1 2 1\nfails ordering\npool 0x44000000 0x10000\nmap 0xffff800000000000 0x80000000 0x4000 0x68000000000703 0\n".into()
    }

    #[test]
    fn round_trips() {
        let r = parse(&sample()).unwrap();
        assert_eq!(r.plan.config().unwrap().to_string(), "16k-47");
        assert_eq!(
            (r.origin, r.fails.clone(), r.plan.n_ops, r.plan.n_pool),
            (Some((1, 2, 1)), vec!["ordering".to_string()], 1, 1)
        );
        let again = parse(&render(&r, "x")).unwrap();
        assert_eq!(bytemuck::bytes_of(&*again.plan), bytemuck::bytes_of(&*r.plan));
    }

    #[test]
    fn a_traced_run_is_recorded_and_read_back() {
        let mut r = parse(&sample()).unwrap();
        assert!(!r.traced);
        r.traced = true;
        let text = render(&r, "lie-barrier caught by ordered_link");
        assert!(text.lines().any(|l| l == "traced"), "{text}");
        assert!(parse(&text).unwrap().traced);
    }

    #[test]
    fn malformed_input_names_the_line_and_field() {
        let cases = [
            ("", "empty reproducer"),
            ("hello\n", "line 1: not a reproducer"),
            ("ptcheck-repro 9\n", "line 1: 'ptcheck-repro 9': this ptcheck reads formats 1 and 2"),
            ("ptcheck-repro 1\nconfig 4k-40\n", "line 2: unknown config '4k-40'"),
            ("ptcheck-repro 1\nconfig 4k-48\nmap 0x1 0x2\n", "line 3: missing field <size>"),
            ("ptcheck-repro 1\nconfig 4k-48\nmap 0x1 0x2 zz 0 0\n", "line 3: <size> is 'zz', not a number"),
            ("ptcheck-repro 1\nconfig 4k-48\npool 0x1 0x2 0x3\n", "line 3: unexpected '0x3' after the pool fields"),
            ("ptcheck-repro 1\nmap 0x1 0x2 0x3 0 0\n", "no config line"),
            ("ptcheck-repro 1\nconfig 4k-48\nfrobnicate\n", "line 3: unknown keyword 'frobnicate'"),
        ];
        for (text, want) in cases {
            let e = parse(text).err().unwrap_or_else(|| panic!("{text:?} parsed"));
            assert!(e.to_string().starts_with(want), "{text:?}: got '{e}'");
        }
        // Truncated at every byte: an error or a plan, never a panic.
        let s = sample();
        for cut in 0..s.len() {
            let _ = parse(&s[..cut]);
        }
    }
}
