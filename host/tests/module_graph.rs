//! No import cycles between modules, in any crate of the workspace: each module's
//! `crate::…` and `super::…` paths are resolved to the module file they name, and the
//! graph must be acyclic. Re-exports (`pub use`) in a crate root or `mod.rs` are
//! aliases: a path through one counts as a use of the module it re-exports.
//!
//! `cargo test -p ptcheck-host --test module_graph -- --nocapture` prints the graph;
//! docs/ARCHITECTURE.md shows it, and the second test fails when the two differ.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One crate (or binary) to check: its root file.
const ROOTS: [(&str, &str); 6] = [
    ("shared", "shared/src/lib.rs"),
    ("guest", "guest/src/lib.rs"),
    ("guest-image", "guest/src/image/main.rs"),
    ("host", "host/src/lib.rs"),
    ("ptcheck", "host/src/main.rs"),
    ("xtask", "xtask/src/main.rs"),
];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Code without comments (doc comments name paths that are not uses) and without the
/// inline unit-test module at the end of a file (its `super::` is the file itself).
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The modules a file declares with `mod name;` (not inline `mod name {`).
fn declared(text: &str) -> Vec<String> {
    code(text)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("pub mod ").or(l.strip_prefix("mod ")).or(l.strip_prefix("pub(crate) mod "))?;
            rest.strip_suffix(';').map(|n| n.trim().to_string())
        })
        .collect()
}

/// Every module of a crate: its path (`["backend", "qemu"]`) and file.
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(Vec::<String>::new(), root.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = if path.is_empty() || file.ends_with("mod.rs") {
            file.parent().unwrap().to_path_buf()
        } else {
            file.with_extension("")
        };
        for name in declared(&text) {
            let mut child = path.clone();
            child.push(name.clone());
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            let f = if flat.exists() { flat } else { nested };
            todo.push((child, f));
        }
        out.insert(path, file);
    }
    out
}

/// `a::b::{c, d::e}` → `a::b::c`, `a::b::d::e` (one level of braces).
fn expand(path: &str) -> Vec<String> {
    match path.find('{') {
        None => vec![path.to_string()],
        Some(i) => {
            let (prefix, rest) = path.split_at(i);
            let inner = rest.trim_start_matches('{').trim_end_matches('}');
            inner.split(',').map(|p| format!("{prefix}{}", p.trim())).filter(|p| !p.ends_with("::")).collect()
        }
    }
}

/// The paths a file names starting at `crate::` or `super::`.
fn paths(text: &str) -> Vec<(String, bool)> {
    let text = code(text);
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            let before = text[..i].chars().next_back().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == '$' {
                continue;
            }
            let mut depth = 0;
            let end = text[i..]
                .char_indices()
                .find(|&(_, c)| match c {
                    '{' => {
                        depth += 1;
                        false
                    }
                    '}' if depth > 0 => {
                        depth -= 1;
                        false
                    }
                    c if depth > 0 => !(c.is_alphanumeric() || "_:, \n".contains(c)),
                    c => !(c.is_alphanumeric() || c == '_' || c == ':'),
                })
                .map_or(text.len(), |(j, _)| i + j);
            let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
            let reexport = text[line_start..i].trim_start().starts_with("pub use");
            for p in expand(&text[i..end].replace(['\n', ' '], "")) {
                out.push((p, reexport));
            }
        }
    }
    out
}

/// The module a path names: its longest prefix that is a module.
fn resolve(mods: &BTreeMap<Vec<String>, PathBuf>, from: &[String], path: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let mut base: Vec<String> = match *parts.first()? {
        "crate" => Vec::new(),
        // `super` of module a::b (a/b.rs or a/b/mod.rs alike) is a.
        "super" => from[..from.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    for part in &parts[1..] {
        if *part == "super" {
            base.pop();
            continue;
        }
        let mut next = base.clone();
        next.push(part.to_string());
        if mods.contains_key(&next) {
            base = next;
        } else {
            break;
        }
    }
    Some(base)
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "(root)".into()
    } else {
        m.join("::")
    }
}

/// The workspace's module graph, crate by crate (`  module -> used, used`); panics on
/// an import cycle, naming it.
fn workspace_graph() -> String {
    let ws = workspace();
    let mut report = String::new();
    for (krate, root) in ROOTS {
        let mods = modules(&ws.join(root));
        // Aliases: `pub use a::b::Name` in a facade (root or mod.rs) → Name is module a::b.
        let mut alias: BTreeMap<(Vec<String>, String), Vec<String>> = BTreeMap::new();
        for (m, file) in &mods {
            let text = std::fs::read_to_string(file).unwrap();
            for line in code(&text).lines().filter(|l| l.trim_start().starts_with("pub use ")) {
                let body = line.trim_start().trim_start_matches("pub use ").trim_end_matches(';');
                for p in expand(body) {
                    let mut target = m.clone();
                    let segs: Vec<&str> = p.split("::").collect();
                    for s in &segs[..segs.len() - 1] {
                        target.push(s.to_string());
                    }
                    let last = segs.last().unwrap().split(" as ").last().unwrap().trim().to_string();
                    if mods.contains_key(&target) {
                        alias.insert((m.clone(), last), target);
                    }
                }
            }
        }
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (m, file) in &mods {
            let text = std::fs::read_to_string(file).unwrap();
            for (p, reexport) in paths(&text) {
                if reexport {
                    continue;
                }
                let Some(mut target) = resolve(&mods, m, &p) else { continue };
                // A path through a facade's re-export names the module re-exported.
                let rest: Vec<&str> = p.split("::").collect();
                if let Some(next) = rest.iter().skip_while(|s| **s == "crate" || **s == "super").nth(target.len()) {
                    if let Some(real) = alias.get(&(target.clone(), next.to_string())) {
                        target = real.clone();
                    }
                }
                if &target != m {
                    edges.entry(m.clone()).or_default().insert(target);
                }
            }
            // Bare paths into the modules this file declares (`shrink::shrink(…)`).
            let body = code(&text);
            for child in declared(&text) {
                let pat = format!("{child}::");
                let used = body.match_indices(&pat).any(|(i, _)| {
                    let before = body[..i].chars().next_back().unwrap_or(' ');
                    !(before.is_alphanumeric()
                        || before == '_'
                        || before == ':'
                        || body[..i].trim_end().ends_with("pub use"))
                });
                if used {
                    let mut target = m.clone();
                    target.push(child);
                    edges.entry(m.clone()).or_default().insert(target);
                }
            }
        }
        // Depth-first search for a cycle.
        fn visit(
            m: &Vec<String>,
            edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
            state: &mut BTreeMap<Vec<String>, u8>,
            stack: &mut Vec<Vec<String>>,
        ) -> Option<Vec<Vec<String>>> {
            match state.get(m) {
                Some(1) => {
                    let i = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[i..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(2) => return None,
                _ => {}
            }
            state.insert(m.clone(), 1);
            stack.push(m.clone());
            for t in edges.get(m).into_iter().flatten() {
                if let Some(c) = visit(t, edges, state, stack) {
                    return Some(c);
                }
            }
            stack.pop();
            state.insert(m.clone(), 2);
            None
        }
        let mut state = BTreeMap::new();
        for m in mods.keys() {
            if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
                let names: Vec<String> = cycle.iter().map(|c| name(c)).collect();
                panic!("{krate}: import cycle {}", names.join(" -> "));
            }
        }
        report.push_str(&format!("{krate}:\n"));
        for (m, ts) in &edges {
            let ts: Vec<String> = ts.iter().map(|t| name(t)).collect();
            report.push_str(&format!("  {} -> {}\n", name(m), ts.join(", ")));
        }
        assert!(mods.len() > 1 || krate == "shared", "{krate}: found only {} modules", mods.len());
    }
    report
}

#[test]
fn no_module_depends_on_itself_through_others() {
    println!("{}", workspace_graph());
}

const BEGIN: &str = "<!-- module-graph: begin -->";
const END: &str = "<!-- module-graph: end -->";

/// docs/ARCHITECTURE.md shows the graph this test computes, between its markers, and
/// fails when the two differ: the document cannot drift from the code.
/// `PTCHECK_BLESS=1 cargo test -p ptcheck-host --test module_graph` rewrites it.
#[test]
fn architecture_md_shows_the_module_graph_as_it_is() {
    let path = workspace().join("docs/ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{}: no {BEGIN} … {END} block", path.display());
    };
    let shown = &doc[b + BEGIN.len()..e];
    let want = format!("\n```text\n{}```\n", workspace_graph());
    if shown == want {
        return;
    }
    if std::env::var_os("PTCHECK_BLESS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &doc[..b + BEGIN.len()], &doc[e..])).unwrap();
        return;
    }
    let (old, new): (Vec<&str>, Vec<&str>) = (shown.lines().collect(), want.lines().collect());
    let gone: Vec<&&str> = old.iter().filter(|l| !new.contains(l)).collect();
    let added: Vec<&&str> = new.iter().filter(|l| !old.contains(l)).collect();
    panic!(
        "docs/ARCHITECTURE.md's module graph is stale.\nshown but not in the code:\n{}\nin the code but not \
         shown:\n{}\nfix the document, or rewrite the block: PTCHECK_BLESS=1 cargo test -p ptcheck-host --test \
         module_graph",
        gone.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"),
        added.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    );
}
