//! One self-contained HTML report (`--html FILE`): inline CSS and SVG, no script and
//! nothing fetched. A page is a summary (what was tested, the outcome) and sections;
//! a section can draw a VA space as strips — the model's expectation above the walked
//! tables — coloured by leaf size and permissions, every difference outlined, marked
//! `failing` and linked to the ptdump line it stands for, with a zoomed strip per
//! differing stretch. Written by hand: a page is a few kinds of element, and escaping
//! is the one thing a template engine would have added.

use std::fmt::Write as _;

use ptcheck_shared::{Level, Prot};

use crate::ptdump::{self, Row};

/// `&`, `<`, `>`, `"` escaped for text and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A report page.
#[derive(Default)]
pub struct Page {
    /// The title (the command and its subject).
    pub title: String,
    /// What was tested, one (name, value) per line: builder, backend, kernel, QEMU,
    /// CPU, seed, date.
    pub tested: Vec<(String, String)>,
    /// The outcome line, and whether it is a pass.
    pub outcome: String,
    /// See `outcome`.
    pub passed: bool,
    /// The sections, in order.
    pub sections: Vec<Section>,
}

/// One plan, layout or kernel.
#[derive(Clone, Debug, Default)]
pub struct Section {
    /// Its heading.
    pub title: String,
    /// Facts, one (name, value) per line.
    pub facts: Vec<(String, String)>,
    /// Failing checks, each one line (shown in red).
    pub failing: Vec<String>,
    /// VA strips: expected (if the run had a model) and actual.
    pub strips: Option<Strips>,
    /// A physical strip (a kernel's RAM layout against its linear map).
    pub physical: Option<Physical>,
    /// Blocks of text (a crash's details, the console tail).
    pub text: Vec<(String, String)>,
    /// Bar charts (`bars`), drawn after the facts.
    pub charts: Vec<String>,
}

/// A horizontal bar chart on a log scale: one bar per `(label, value)`, grouped under
/// each group's heading; the value printed at the bar's end.
pub fn bars(title: &str, groups: &[(String, Vec<(String, f64)>)]) -> String {
    let max = groups.iter().flat_map(|(_, b)| b.iter().map(|(_, v)| *v)).fold(1.0f64, f64::max);
    let scale = |v: f64| if v <= 0.0 { 0.0 } else { 640.0 * (1.0 + v.log10()) / (1.0 + max.log10()) };
    let mut out = String::new();
    let mut y = 4.0;
    for (g, bs) in groups {
        let _ = writeln!(out, r#"<text x="0" y="{}" class="label" font-weight="bold">{}</text>"#, y + 12.0, esc(g));
        y += 18.0;
        for (k, (label, v)) in bs.iter().enumerate() {
            let fill = ["#c0392b", "#2a9d8f", "#5b8def", "#f4a261"][k % 4];
            let w = scale(*v).max(1.0);
            let _ = writeln!(
                out,
                r#"<text x="0" y="{}" class="label">{}</text><rect x="300" y="{y}" width="{w:.1}" height="12" fill="{fill}" class="bar" data-value="{v}"/><text x="{:.1}" y="{}" class="label">{v:.2}</text>"#,
                y + 10.0,
                esc(label),
                304.0 + w,
                y + 10.0
            );
            y += 15.0;
        }
        y += 6.0;
    }
    format!(
        r#"<p>{} (log scale)</p><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1004 {y}" class="strip">{out}</svg>"#,
        esc(title)
    )
}

/// Two listings of one VA space.
#[derive(Clone, Debug)]
pub struct Strips {
    /// The model's rows (`None`: a real kernel, which has no model of its whole map).
    pub expected: Option<Vec<Row>>,
    /// The walked tables' rows.
    pub actual: Vec<Row>,
    /// Named VA regions drawn under the strips (linear map, kernel image, …).
    pub regions: Vec<(String, u64, u128)>,
    /// VA ranges a failing check named (a real kernel's findings): the rows they
    /// touch are drawn failing, linked to their lines.
    pub flagged: Vec<(u64, u128)>,
}

/// The `0xA..0xB` VA ranges a finding's text names.
pub fn ranges_named(text: &str) -> Vec<(u64, u128)> {
    let hex = |w: &str| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok();
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == '(' || c == ')')
        .filter_map(|w| w.split_once(".."))
        .filter_map(|(a, b)| Some((hex(a)?, u128::from(hex(b)?))))
        .filter(|(a, b)| u128::from(*a) < *b)
        .collect()
}

/// Physical ranges, each with a name and a class (`bank`, `no-map`, `kernel`,
/// `linear`).
#[derive(Clone, Debug)]
pub struct Physical {
    /// `(class, label, start, end)`.
    pub ranges: Vec<(String, String, u64, u64)>,
}

const WIDTH: f64 = 1000.0;
const GAP: f64 = 6.0;

/// The class and colour of a row: its leaf size, then its permissions.
fn kind(r: &Row) -> (&'static str, &'static str) {
    match (r.level, r.cont) {
        (l, _) if l.0 <= 1 => ("block-l1", "#1f3b8c"),
        (l, true) if l != Level::LEAF => ("block-cont", "#3d6fd6"),
        (l, false) if l != Level::LEAF => ("block-l2", "#5b8def"),
        (_, true) => ("page-cont", "#2a9d8f"),
        _ => ("page", "#8fd694"),
    }
}

fn perm(p: Prot) -> (&'static str, &'static str) {
    let ro = p.0 & Prot::RDONLY != 0;
    let nx = p.0 & Prot::PXN != 0;
    match (ro, nx) {
        (false, true) => ("rw-nx", "#f4a261"),
        (true, true) => ("ro-nx", "#9e9e9e"),
        (true, false) => ("ro-x", "#7b2cbf"),
        (false, false) => ("rw-x", "#d00000"),
    }
}

/// A compressed VA axis: the stretches something maps (gaps between them under 1/64
/// of the stretch merged), each a share of the width growing with log2 of its size,
/// and a fixed break between stretches; linear inside one.
struct Axis {
    /// `(start, end, x0, x1)`.
    spans: Vec<(u128, u128, f64, f64)>,
}

impl Axis {
    fn new(mut ranges: Vec<(u128, u128)>) -> Axis {
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::new();
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1 + (last.1 - last.0) / 64 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let weight = |(a, b): (u128, u128)| ((b - a).max(1) as f64).log2().max(12.0) - 11.0;
        let total: f64 = merged.iter().map(|&s| weight(s)).sum::<f64>().max(1.0);
        let room = WIDTH - GAP * merged.len().saturating_sub(1) as f64;
        let mut x = 0.0;
        let spans = merged
            .iter()
            .map(|&(a, b)| {
                let w = room * weight((a, b)) / total;
                let s = (a, b, x, x + w);
                x += w + GAP;
                s
            })
            .collect();
        Axis { spans }
    }

    /// x of `va` (clamped into its stretch).
    fn x(&self, va: u128) -> f64 {
        for &(a, b, x0, x1) in &self.spans {
            if va >= a && va <= b {
                return x0 + (x1 - x0) * ((va - a) as f64 / (b - a).max(1) as f64);
            }
        }
        self.spans.iter().rev().find(|s| s.1 <= va).map_or(0.0, |s| s.3)
    }
}

/// One strip of rows at height `y`, each row a rect with its classes; the differing
/// ones (`marks[i]`) outlined, classed `diff failing`, linked to their ptdump line.
fn strip(out: &mut String, axis: &Axis, rows: &[(Row, Option<usize>)], y: f64, label: &str) {
    let _ = writeln!(out, r#"<text x="0" y="{}" class="label">{}</text>"#, y - 4.0, esc(label));
    for (r, mark) in rows {
        let (x0, x1) = (axis.x(u128::from(r.va)), axis.x(r.end));
        let w = (x1 - x0).max(0.5);
        let (k, fill) = kind(r);
        let (p, band) = perm(r.prot);
        let title = esc(&ptdump::line(r));
        let rect = format!(
            r#"<rect x="{x0:.2}" y="{y}" width="{w:.2}" height="18" fill="{fill}" class="{k} {p}{}" data-va="{:#x}" data-end="{:#x}"><title>{title}</title></rect><rect x="{x0:.2}" y="{}" width="{w:.2}" height="4" fill="{band}"/>"#,
            if mark.is_some() { " diff failing" } else { "" },
            r.va,
            r.end as u64,
            y + 18.0
        );
        match mark {
            Some(n) => {
                let _ = writeln!(
                    out,
                    r##"<a href="#l-{n}">{rect}<rect x="{:.2}" y="{}" width="{:.2}" height="26" fill="none" stroke="#e00" stroke-width="2"/></a>"##,
                    x0 - 1.0,
                    y - 2.0,
                    w + 2.0
                );
            }
            None => {
                let _ = writeln!(out, "{rect}");
            }
        }
    }
}

/// The strips' SVG over `lo..hi` (everything when `None`) and the ptdump listing.
fn strips_svg(s: &Strips, window: Option<(u128, u128)>, marks: &Marks) -> String {
    let inside = |r: &Row| window.is_none_or(|(lo, hi)| r.end > lo && u128::from(r.va) < hi);
    let pick = |rows: &[Row], m: &[Option<usize>]| -> Vec<(Row, Option<usize>)> {
        rows.iter().zip(m).filter(|(r, _)| inside(r)).map(|(r, m)| (r.clone(), *m)).collect()
    };
    let actual = pick(&s.actual, &marks.actual);
    let expected = s.expected.as_ref().map(|e| pick(e, &marks.expected)).unwrap_or_default();
    let mut ranges: Vec<(u128, u128)> =
        actual.iter().chain(&expected).map(|(r, _)| (u128::from(r.va), r.end)).collect();
    if let Some((lo, hi)) = window {
        ranges = ranges.into_iter().map(|(a, b)| (a.max(lo), b.min(hi))).collect();
    }
    if ranges.is_empty() {
        return "<p>nothing mapped here</p>".into();
    }
    let axis = Axis::new(ranges);
    let mut out = String::new();
    let mut y = 16.0;
    if s.expected.is_some() {
        strip(&mut out, &axis, &expected, y, "expected (the model)");
        y += 44.0;
    }
    strip(&mut out, &axis, &actual, y, "actual (the walked tables)");
    y += 40.0;
    for (name, a, b) in &s.regions {
        let (a, b) = (u128::from(*a), *b);
        if window.is_some_and(|(lo, hi)| b <= lo || a >= hi) || axis.spans.iter().all(|s| b <= s.0 || a >= s.1) {
            continue;
        }
        let (x0, x1) = (axis.x(a), axis.x(b));
        // A label near the right edge ends at its region's end, inside the picture.
        let (tx, anchor) = if x0 > WIDTH - 200.0 { (x1.min(WIDTH), "end") } else { (x0, "start") };
        let _ = writeln!(
            out,
            r#"<rect x="{x0:.2}" y="{y}" width="{:.2}" height="6" class="region"/><text x="{tx:.2}" y="{}" class="label" text-anchor="{anchor}">{}</text>"#,
            (x1 - x0).max(1.0),
            y + 17.0,
            esc(name)
        );
        y += 22.0;
    }
    for &(a, b, x0, x1) in axis.spans.iter().filter(|s| s.3 - s.2 > 150.0) {
        let _ = writeln!(
            out,
            r#"<text x="{x0:.2}" y="{}" class="addr">{:#x}</text><text x="{x1:.2}" y="{}" class="addr" text-anchor="end">{:#x}</text>"#,
            y + 12.0,
            a as u64,
            y + 24.0,
            b as u64
        );
    }
    format!(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="-2 0 1004 {}" class="strip">{out}</svg>"#, y + 30.0)
}

/// Which rows differ, as line numbers of the diff listing.
struct Marks {
    expected: Vec<Option<usize>>,
    actual: Vec<Option<usize>>,
    /// The diff listing: (mark, row, line number).
    lines: Vec<(&'static str, Row)>,
}

fn marks(s: &Strips) -> Marks {
    let Some(exp) = &s.expected else {
        let hit = |r: &Row| s.flagged.iter().any(|&(a, b)| r.end > u128::from(a) && u128::from(r.va) < b);
        return Marks {
            expected: Vec::new(),
            actual: s.actual.iter().enumerate().map(|(n, r)| hit(r).then_some(n)).collect(),
            lines: s.actual.iter().map(|r| (if hit(r) { "! " } else { "  " }, r.clone())).collect(),
        };
    };
    let (mut m, mut i, mut j) =
        (Marks { expected: vec![None; exp.len()], actual: vec![None; s.actual.len()], lines: Vec::new() }, 0, 0);
    while i < exp.len() || j < s.actual.len() {
        let n = m.lines.len();
        match (exp.get(i), s.actual.get(j)) {
            (Some(e), Some(a)) if e == a => {
                m.lines.push(("  ", e.clone()));
                i += 1;
                j += 1;
            }
            (Some(e), Some(a)) if (e.va, e.end) <= (a.va, a.end) => {
                m.lines.push(("- ", e.clone()));
                m.expected[i] = Some(n);
                i += 1;
            }
            (Some(e), None) => {
                m.lines.push(("- ", e.clone()));
                m.expected[i] = Some(n);
                i += 1;
            }
            (_, Some(a)) => {
                m.lines.push(("+ ", a.clone()));
                m.actual[j] = Some(n);
                j += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    m
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;max-width:1100px;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}\
table.facts td{padding:1px 10px 1px 0;vertical-align:top}table.facts td:first-child{color:#666}\
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c00;font-weight:bold}\
ul.failing li{color:#c00}svg.strip{width:100%;height:auto;border:1px solid #eee;margin:.5em 0}\
.label{font-size:11px;fill:#444}.addr{font-size:9px;fill:#777;font-family:monospace}\
rect.region{fill:#bbb}pre{font-size:11px;background:#fafafa;padding:6px;overflow-x:auto}\
pre span.minus{background:#fdd}pre span.plus{background:#dfd}pre span.flagged{background:#fdd}pre span:target{outline:2px solid #e00}\
.legend span{display:inline-block;padding:0 6px;margin-right:4px;color:#fff;font-size:11px}";

/// The legend of colours.
fn legend() -> String {
    let kinds = [
        ("#1f3b8c", "L1 block"),
        ("#5b8def", "L2 block"),
        ("#3d6fd6", "contiguous blocks"),
        ("#2a9d8f", "contiguous pages"),
        ("#8fd694", "pages"),
    ];
    let perms = [("#f4a261", "RW NX"), ("#9e9e9e", "ro NX"), ("#7b2cbf", "ro x"), ("#d00000", "RW x")];
    let mut s = String::from(r#"<p class="legend">leaf: "#);
    for (c, n) in kinds {
        let _ = write!(s, r#"<span style="background:{c}">{n}</span>"#);
    }
    s.push_str(" &nbsp; permissions (the band below): ");
    for (c, n) in perms {
        let _ = write!(s, r#"<span style="background:{c}">{n}</span>"#);
    }
    s.push_str(r#" &nbsp; <span style="background:#fff;color:#e00;border:2px solid #e00">differs</span></p>"#);
    s
}

fn facts(out: &mut String, f: &[(String, String)]) {
    if f.is_empty() {
        return;
    }
    out.push_str(r#"<table class="facts">"#);
    for (k, v) in f {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</table>\n");
}

/// A section's HTML; `id` makes its anchors unique in the page.
fn section(out: &mut String, s: &Section, id: usize) {
    let _ = writeln!(out, r#"<section id="s{id}"><h2>{}</h2>"#, esc(&s.title));
    facts(out, &s.facts);
    if !s.failing.is_empty() {
        out.push_str(r#"<ul class="failing">"#);
        for f in &s.failing {
            let _ = write!(out, r#"<li class="failing-check">{}</li>"#, esc(f));
        }
        out.push_str("</ul>\n");
    }
    for c in &s.charts {
        out.push_str(c);
    }
    if let Some(p) = &s.physical {
        out.push_str(&physical_svg(p));
    }
    if let Some(st) = &s.strips {
        let m = marks(st);
        // Zoom: each differing stretch on its own, ±1/8 of it around, linked from here.
        let mut zooms: Vec<(u128, u128)> = Vec::new();
        for (mark, r) in &m.lines {
            if *mark != "  " {
                let (a, b) = (u128::from(r.va), r.end);
                match zooms.last_mut() {
                    Some(z) if a <= z.1 => z.1 = z.1.max(b),
                    _ => zooms.push((a, b)),
                }
            }
        }
        if !zooms.is_empty() {
            out.push_str("<p>zoom into:");
            for (k, (a, b)) in zooms.iter().enumerate().take(16) {
                let _ = write!(out, r##" <a href="#s{id}-z{k}" class="zoom">{:#x}..{:#x}</a>"##, *a as u64, *b as u64);
            }
            out.push_str("</p>\n");
        }
        out.push_str(&strips_svg(st, None, &m).replace("href=\"#l-", &format!("href=\"#s{id}-l-")));
        for (k, (a, b)) in zooms.iter().enumerate().take(16) {
            let pad = (b - a) / 8;
            let _ = writeln!(out, r#"<h3 id="s{id}-z{k}">zoom {}: {:#x}..{:#x}</h3>"#, k + 1, *a as u64, *b as u64);
            let w = (a.saturating_sub(pad), b + pad);
            out.push_str(&strips_svg(st, Some(w), &m).replace("href=\"#l-", &format!("href=\"#s{id}-l-")));
        }
        let different = m.lines.iter().filter(|(k, _)| *k != "  ").count();
        let _ = writeln!(
            out,
            "<p>{} lines, {different} {}:</p><pre>",
            m.lines.len(),
            if st.expected.is_some() {
                "differing (- expected only, + in the tables only)"
            } else {
                "named by a failing check (!)"
            }
        );
        for (n, (mark, r)) in m.lines.iter().enumerate() {
            let class = match *mark {
                "- " => "minus",
                "+ " => "plus",
                "! " => "flagged",
                _ => "same",
            };
            let _ = writeln!(out, r#"<span id="s{id}-l-{n}" class="{class}">{mark}{}</span>"#, esc(&ptdump::line(r)));
        }
        out.push_str("</pre>\n");
    }
    for (t, body) in &s.text {
        let _ = writeln!(out, "<h3>{}</h3><pre>{}</pre>", esc(t), esc(body));
    }
    out.push_str("</section>\n");
}

/// A strip of physical ranges (linear scale over their span).
fn physical_svg(p: &Physical) -> String {
    let lo = p.ranges.iter().map(|r| r.2).min().unwrap_or(0);
    let hi = p.ranges.iter().map(|r| r.3).max().unwrap_or(1).max(lo + 1);
    let x = |a: u64| WIDTH * (a - lo) as f64 / (hi - lo) as f64;
    let mut out = String::new();
    let rows = ["bank", "no-map", "kernel", "linear"];
    for (k, class) in rows.iter().enumerate() {
        let y = 14.0 + 26.0 * k as f64;
        let _ = writeln!(out, r#"<text x="0" y="{}" class="label">{class}</text>"#, y - 2.0);
        for (c, label, a, b) in p.ranges.iter().filter(|r| r.0 == *class) {
            let fill = match c.as_str() {
                "bank" => "#cfe3ff",
                "no-map" => "#555",
                "kernel" => "#f4a261",
                _ => "#2a9d8f",
            };
            let _ = writeln!(
                out,
                r#"<rect x="{:.2}" y="{y}" width="{:.2}" height="12" fill="{fill}" class="{c}"><title>{} {a:#x}..{b:#x}</title></rect>"#,
                x(*a),
                (x(*b) - x(*a)).max(0.5),
                esc(label)
            );
        }
    }
    let _ = writeln!(
        out,
        r#"<text x="0" y="122" class="addr">{lo:#x}</text><text x="1000" y="122" class="addr" text-anchor="end">{hi:#x}</text>"#
    );
    format!(
        r#"<p>RAM layout (physical) against the linear map:</p><svg xmlns="http://www.w3.org/2000/svg" viewBox="-2 0 1004 130" class="strip">{out}</svg>"#
    )
}

impl Page {
    /// The whole document.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
            esc(&self.title),
            esc(&self.title)
        );
        let _ = writeln!(
            out,
            r#"<p id="outcome" class="{}">outcome: {}</p>"#,
            if self.passed { "pass" } else { "fail" },
            esc(&self.outcome)
        );
        facts(&mut out, &self.tested);
        if self.sections.iter().any(|s| s.strips.is_some()) {
            out.push_str(&legend());
        }
        for (i, s) in self.sections.iter().enumerate() {
            section(&mut out, s, i);
        }
        out.push_str("</body></html>\n");
        out
    }

    /// Write the document to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        std::fs::write(path, self.render()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }
}

/// Run `plan` on `backend` once more for its listing and draw it: the model's rows
/// above the walked tables', the failing checks, `facts`; and the run's class.
pub fn plan_section(
    backend: &mut dyn crate::backend::Backend,
    plan: &ptcheck_shared::abi::Plan,
    title: String,
    facts: Vec<(String, String)>,
) -> (Section, crate::outcome::Class) {
    let listing = crate::run::run_for_listing(backend, plan, 1);
    let strips = match (plan.config(), &listing.expected, &listing.walk) {
        (Some(cfg), Some(exp), Some(walk)) => Some(Strips {
            expected: Some(ptdump::rows(&cfg, &exp.runs)),
            actual: ptdump::rows(&cfg, &walk.runs),
            regions: Vec::new(),
            flagged: Vec::new(),
        }),
        _ => None,
    };
    let run = &listing.run;
    let mut failing: Vec<String> =
        run.verdict.describe_failures().lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if failing.is_empty() && run.class() != crate::outcome::Class::Passed {
        failing.push(run.outcome.to_string());
    }
    let section = Section { title, facts, failing, strips, ..Section::default() };
    (section, run.class())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(va: u64, len: u64, level: i8) -> Row {
        Row {
            va,
            end: u128::from(va + len),
            pa: 0x4000_0000 + va,
            level: Level(level),
            prot: Prot::KERNEL,
            cont: false,
        }
    }

    #[test]
    fn a_difference_is_drawn_failing_and_linked_to_its_line() {
        let expected = vec![row(0x1000_0000, 0x20_0000, 2), row(0x2000_0000, 0x1000, 3)];
        let mut actual = expected.clone();
        actual[0] = row(0x1000_0000, 0x20_0000, 3);
        let page = Page {
            title: "replay <x>".into(),
            outcome: "failed".into(),
            sections: vec![Section {
                title: "plan".into(),
                strips: Some(Strips { expected: Some(expected), actual, regions: vec![], flagged: vec![] }),
                ..Section::default()
            }],
            ..Page::default()
        };
        let html = page.render();
        assert!(html.contains("replay &lt;x&gt;"), "escaped");
        // The block expected and the pages found are both failing, each linked.
        assert_eq!(html.matches(r#"diff failing" data-va="0x10000000""#).count(), 4, "main strip and zoom, both rows");
        assert!(html.contains(r##"href="#s0-l-0""##) && html.contains(r#"id="s0-l-0" class="minus""#));
        assert!(html.contains(r#"id="s0-z0""#), "a zoom of the differing stretch");
        assert!(html.contains(r##"<a href="#s0-z0" class="zoom">"##), "linked from above the strips");
        assert!(!html.contains("<script"), "no script");
    }

    #[test]
    fn a_kernel_finding_flags_the_rows_it_names() {
        assert_eq!(
            ranges_named("policy: kernel 0xfff0000015200000..0xfff00000153f1000 L3 contiguous, model x"),
            [(0xfff0_0000_1520_0000, 0xfff0_0000_153f_1000)]
        );
        let rows = vec![row(0x1000_0000, 0x1000, 3), row(0x2000_0000, 0x1000, 3)];
        let st = Strips { expected: None, actual: rows, regions: vec![], flagged: vec![(0x2000_0000, 0x2000_0800)] };
        let page = Page { sections: vec![Section { strips: Some(st), ..Section::default() }], ..Page::default() };
        let html = page.render();
        assert!(
            html.contains(r#"diff failing" data-va="0x20000000""#)
                && !html.contains(r#"failing" data-va="0x10000000""#)
        );
        assert!(html.contains(r#"id="s0-l-1" class="flagged""#));
    }

    #[test]
    fn bars_carry_their_values() {
        let svg = bars("per table", &[("16 GiB".into(), vec![("6.1 TLBI".into(), 33.0), ("6.12 TLBI".into(), 1.0)])]);
        assert!(svg.contains(r#"data-value="33""#) && svg.contains(r#"data-value="1""#));
    }

    #[test]
    fn the_axis_keeps_small_stretches_visible_and_in_order() {
        let a = Axis::new(vec![(0x1000, 0x2000), (1 << 40, (1 << 40) + (1 << 30))]);
        assert!(a.x(0x2000) - a.x(0x1000) > 20.0, "a 4 KiB stretch still gets room");
        assert!(a.x(1 << 40) > a.x(0x2000));
        assert!(a.x((1 << 40) + (1 << 30)) <= WIDTH + 0.01);
    }
}
