//! `ptcheck replay FILE`: run a reproducer (fuzzed, or written by hand) again and say
//! how it ended first, then the expected vs walked mappings and the failing checks.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::backend::open::{open, BackendOptions};
use crate::outcome::{Class, Outcome};
use crate::run::run_for_listing;
use crate::{ptdump, repro};

/// Replay `file` on the backend `backend` asks for; returns the plan's class.
///
/// # Errors
/// The file cannot be read or parsed (line and field named), or no backend can run it.
pub fn replay(
    file: &Path,
    backend: &BackendOptions,
    builder: Option<&str>,
    html: Option<&Path>,
) -> anyhow::Result<Class> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if crate::linux::command::is_linux_repro(&text) {
        let timeout = backend.policy.plan_timeout.max(Duration::from_secs(120));
        return crate::linux::command::replay(file, &text, timeout, html);
    }
    let r = repro::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // The builder: as asked, else the one the reproducer ran on, else linux.
    let chosen = builder.or(r.builder.as_deref()).unwrap_or("linux").to_string();
    // A traced failure (an observed check) replays only traced.
    if r.traced && !backend.trace {
        println!("replay: {} was written by a traced run: tracing again (QEMU 10 and the tracer)", file.display());
    }
    let backend = &BackendOptions { builder: chosen, trace: backend.trace || r.traced, ..backend.clone() };
    let cfg = r.plan.config().ok_or_else(|| anyhow::anyhow!("{}: the config is not valid", file.display()))?;
    let (mut b, why) = open(backend)?;
    println!(
        "replay {}: {cfg}, {} operations, builder {}, on {} ({why})",
        file.display(),
        r.plan.n_ops,
        backend.builder,
        b.name()
    );
    let started = std::time::Instant::now();
    let listing = run_for_listing(b.as_mut(), &r.plan, 1);
    let took = started.elapsed();
    let run = &listing.run;
    println!("outcome: {}", run.outcome);
    if let Some(recorded) = &r.outcome {
        let same = *recorded == run.outcome.to_string();
        println!("recorded outcome: {recorded} ({})", if same { "the same" } else { "DIFFERENT" });
    }
    if let (Some(exp), Some(walk)) = (&listing.expected, &listing.walk) {
        let want = ptdump::rows(&cfg, &exp.runs);
        let got = ptdump::rows(&cfg, &walk.runs);
        let (text, differing) = ptdump::diff(&want, &got);
        let s = if differing == 1 { "" } else { "s" };
        println!("mappings (- expected only, + in the tables only): {differing} differing line{s}");
        print!("{text}");
    }
    let class = run.class();
    if let Some(path) = html {
        let tested = crate::tested::of_backend("replay", b.as_ref(), &[r.plan.plan_id]);
        let facts = vec![
            ("reproducer".into(), file.display().to_string()),
            ("recorded outcome".into(), r.outcome.clone().unwrap_or_default()),
            ("recorded failures".into(), r.fails.join(", ")),
        ];
        let title = format!("{cfg}: {} operations, builder {}", r.plan.n_ops, backend.builder);
        let (section, _) = crate::html::plan_section(b.as_mut(), &r.plan, title, facts);
        let page = crate::html::Page {
            title: format!("ptcheck replay {}", file.display()),
            tested: tested.pairs(),
            outcome: match class {
                Class::BuilderFailed => format!("{}: failing checks {}", run.outcome, run.verdict.failed().join(", ")),
                _ => format!("{} ({class:?})", run.outcome),
            },
            passed: class == Class::Passed,
            sections: vec![section],
        };
        page.write(path)?;
        println!("html: {}", path.display());
    }
    match class {
        Class::Passed => {
            let bug = matches!(run.outcome, Outcome::Bug { .. });
            println!(
                "every check passes{}{}",
                if bug { ": the model expects exactly this BUG" } else { "" },
                if r.fails.is_empty() { "" } else { "; the recorded failure does not reproduce here" }
            );
        }
        Class::BuilderFailed => {
            print!("{}", run.verdict.describe_failures());
            let failed = run.verdict.failed();
            println!("failing checks: {}", failed.join(", "));
            for recorded in &r.fails {
                let again = failed.contains(&recorded.as_str());
                println!("recorded failure [{recorded}]: {}", if again { "reproduced" } else { "NOT reproduced" });
            }
        }
        Class::NotChecked => println!("not checked: no check was run on this plan (exit 2)"),
        Class::NotApplicable => println!("n/a: the builder cannot express this plan; nothing was checked"),
    }
    println!(
        "replay: the plan took {:.2}s (the guest booted before); peak RSS {} MiB",
        took.as_secs_f64(),
        crate::report::peak_rss_mib()
    );
    Ok(class)
}
