//! The HTML reports seen by a real browser: Debian's `chromium`, headless (installed
//! as QEMU is), loads a report, dumps the DOM it built and takes a screenshot; the
//! test asserts on the DOM (the failing range drawn as failing) and that the
//! screenshot is not blank — not only on the HTML string ptcheck wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{ensure, target_dir, Need, Result};

/// The browser: Chromium or Chrome on PATH (GitHub's Ubuntu runners have Chrome, and
/// Ubuntu's `chromium` package is only a snap stub), else Debian's `chromium`,
/// installed as QEMU is.
fn chromium() -> std::result::Result<&'static str, String> {
    const NAMES: [&str; 4] = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];
    if let Some(n) = NAMES.iter().find(|n| crate::tools::on_path(n)) {
        return Ok(n);
    }
    let what = "chromium (the headless browser the HTML test uses)";
    ensure(&[Need { what, present: "bin:chromium", package: "chromium" }])?;
    Ok("chromium")
}

/// `html` as headless Chromium renders it: the DOM after load, and a PNG screenshot.
///
/// # Errors
/// Chromium cannot run, or wrote no screenshot.
pub fn render(html: &Path) -> std::result::Result<(String, PathBuf), String> {
    let browser = chromium()?;
    let html = std::fs::canonicalize(html).map_err(|e| format!("{}: {e}", html.display()))?;
    let url = format!("file://{}", html.display());
    let base = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1600"];
    let dom = Command::new(browser)
        .args(base)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .map_err(|e| format!("cannot run {browser}: {e}"))?;
    if !dom.status.success() {
        return Err(format!("chromium --dump-dom {url} failed: {}", String::from_utf8_lossy(&dom.stderr)));
    }
    let png = html.with_extension("png");
    let _ = std::fs::remove_file(&png);
    let shot = Command::new(browser)
        .args(base)
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .map_err(|e| format!("cannot run {browser}: {e}"))?;
    if !shot.status.success() || !png.is_file() {
        return Err(format!("chromium wrote no screenshot of {url}: {}", String::from_utf8_lossy(&shot.stderr)));
    }
    Ok((String::from_utf8_lossy(&dom.stdout).into_owned(), png))
}

/// The share of a PNG's pixels that are not (near) white.
///
/// # Errors
/// The file is not a PNG this decoder reads.
pub fn inked(png: &Path) -> std::result::Result<f64, String> {
    let f = std::fs::File::open(png).map_err(|e| format!("{}: {e}", png.display()))?;
    let mut reader = png::Decoder::new(f).read_info().map_err(|e| format!("{}: {e}", png.display()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("{}: {e}", png.display()))?;
    let channels = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let (mut ink, mut all) = (0u64, 0u64);
    for p in px.chunks(channels) {
        all += 1;
        if p.iter().take(3).any(|&c| c < 200) {
            ink += 1;
        }
    }
    Ok(ink as f64 / all.max(1) as f64)
}

/// Load `html`, check the DOM holds every one of `want`, and the screenshot is inked.
///
/// # Errors
/// The browser cannot run, a `want` is missing from its DOM, or the screenshot is blank.
pub fn check(html: &Path, want: &[&str]) -> Result {
    let (dom, png) = render(html)?;
    for w in want {
        if !dom.contains(w) {
            return Err(format!("{}: the browser's DOM has no `{w}`", html.display()));
        }
    }
    let ink = inked(&png)?;
    if ink < 0.02 {
        return Err(format!("{}: blank ({:.2}% of its pixels inked)", png.display(), ink * 100.0));
    }
    println!(
        "browser: {} rendered ({} bytes of DOM, {:.1}% inked): {}",
        html.display(),
        dom.len(),
        ink * 100.0,
        png.display()
    );
    Ok(())
}

/// `cargo xtask test`'s browser stage: the replay of a failing reproducer (a
/// catalogue variant's off-by-one end: the model's 6 MiB of blocks, the tables' 4 MiB
/// and pages) drawn with its failing range, and a linux layout (`linux_html`, the
/// planted policy fault) drawn with its failing check and its VA regions labelled.
///
/// # Errors
/// A step could not run, or the browser did not show what the report says.
pub fn stage(linux_html: &Path) -> Result {
    println!("browser: {}", chromium()?);
    let dir = target_dir().join("html");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mutant = ["--backend", "native", "--mutant", "off-by-one-end"];
    // This variant's reproducers from earlier runs go, so the run writes the plain names.
    let repros = crate::tools::root().join("target/ptcheck/repro");
    for e in std::fs::read_dir(&repros).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("run-native-linux-off-by-one-end-4k-48-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let run_html = dir.join("run.html");
    let mut run = crate::tools::ptcheck_command(true);
    run.args(["run", "--config", "4k-48"]).args(mutant).arg("--html").arg(&run_html);
    if run.current_dir(crate::tools::root()).output().map_err(|e| e.to_string())?.status.code() != Some(1) {
        return Err("the off-by-one-end variant did not fail its run (exit 1)".into());
    }
    check(&run_html, &[r#"diff failing" data-va="0xffff100000400000""#, "4k-48 plan pmd-blocks"])?;
    let repro =
        crate::tools::root().join("target/ptcheck/repro/run-native-linux-off-by-one-end-4k-48-pmd-blocks.repro");
    let html = dir.join("replay.html");
    let mut replay = crate::tools::ptcheck_command(true);
    replay.arg("replay").arg(&repro).args(mutant).arg("--html").arg(&html);
    println!("$ ptcheck replay {} {} --html {}", repro.display(), mutant.join(" "), html.display());
    if replay.current_dir(crate::tools::root()).status().map_err(|e| e.to_string())?.code() != Some(1) {
        return Err(format!("replaying {} did not fail (exit 1)", repro.display()));
    }
    // The tables' pages where the model wants the block at 0x…400000: drawn failing.
    check(&html, &[r#"diff failing" data-va="0xffff100000400000""#, r#"class="failing-check">[translation]"#])?;
    if !linux_html.is_file() {
        println!(
            "browser: the linux layout page SKIPPED, NOT checked: the linux stage wrote no {}",
            linux_html.display()
        );
        return Ok(());
    }
    // The failing policy check drawn, and the VA regions labelled, every mapping in one.
    check(
        linux_html,
        &[
            r#"class="failing-check">policy"#,
            r#"diff failing""#,
            r#"class="linear""#,
            r#"class="page"#,
            ">vmemmap</text>",
            ">fixmap</text>",
            "every mapping lies in one",
        ],
    )
}
