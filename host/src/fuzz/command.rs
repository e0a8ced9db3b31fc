//! `ptcheck fuzz`: open the backend(s), run a [`FuzzSpec`], print the summary with
//! every failure's reproducer and every unchecked plan's cause.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{bail, Context as _};

use super::{gen, run_against, FuzzSpec, Reference, Summary};
use crate::backend::open::{open, BackendChoice, BackendOptions};
use crate::backend::Backend;
use crate::differential::Likeness;
use crate::outcome::Class;

/// What a fuzz command asks for.
#[derive(Clone, Debug)]
pub struct FuzzCommand {
    /// Which plans: seed, regimes, count (`None`: until `time` ends, else 1000), time,
    /// shard. Its `label` is set from the backend when the run opens it.
    pub plans: FuzzSpec,
    /// Native workers (`None`: one per core); VM backends use one guest.
    pub jobs: Option<usize>,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
    /// Also run every plan on this builder and compare the tables.
    pub differential: Option<String>,
    /// Write a JSON report (what was tested and the run's counts) here.
    pub report: Option<std::path::PathBuf>,
}

/// The last line of a run: what the exit code means.
pub fn verdict_line(class: Class) -> &'static str {
    match class {
        Class::Passed | Class::NotApplicable => "every plan checked passed (exit 0)",
        Class::BuilderFailed => "the builder failed a check (exit 1)",
        Class::NotChecked => "some plans could not be checked: see the causes above (exit 2)",
    }
}

/// Run the fuzz command on the backend `backend` asks for.
///
/// # Errors
/// Nothing to run (`--count 0`, an empty shard), or no backend could be made.
pub fn fuzz(cmd: &FuzzCommand, backend: &BackendOptions) -> anyhow::Result<Summary> {
    if cmd.plans.count == Some(0) {
        bail!("--count 0 checks nothing: give at least 1 plan");
    }
    let count = cmd.plans.count.or(if cmd.plans.time.is_some() { None } else { Some(1000) });
    let workers = if backend.choice == BackendChoice::Native {
        cmd.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    } else {
        1
    };
    let (first, why) = open(backend)?;
    let tested = crate::tested::of_backend("fuzz", &*first, &[cmd.plans.seed]);
    let spec = FuzzSpec { count, label: backend.label(first.name()), ..cmd.plans.clone() };
    if spec.planned() == Some(0) {
        bail!(
            "shard {}/{} of {} plans holds no plan: use fewer shards or more plans",
            spec.shard,
            spec.shards,
            count.unwrap_or(0)
        );
    }
    println!("backend: {} ({why}), {workers} worker{}", first.name(), if workers == 1 { "" } else { "s" });
    let span = count.map_or("until the time budget ends".to_string(), |c| format!("plans 0..{c}"));
    let regimes = spec.configs.len();
    println!(
        "fuzz: seed {}, {span} over {regimes} regime{}, shard {}/{} (generator format {})",
        spec.seed,
        if regimes == 1 { "" } else { "s" },
        spec.shard,
        spec.shards,
        gen::FORMAT
    );
    let spare = Mutex::new(Some(first));
    let make = || -> anyhow::Result<Box<dyn Backend>> {
        if let Some(b) = spare.lock().expect("not poisoned").take() {
            return Ok(b);
        }
        Ok(open(backend)?.0)
    };
    let reference_opts =
        cmd.differential.as_ref().map(|name| BackendOptions { builder: name.clone(), mutant: None, ..backend.clone() });
    let make_reference = || -> anyhow::Result<Box<dyn Backend>> {
        Ok(open(reference_opts.as_ref().expect("only made with --differential"))?.0)
    };
    let reference = match &cmd.differential {
        None => None,
        Some(name) => {
            let policy = |n: &str| ptcheck_guest::registry::by_name(n).map(|b| b.policy);
            let likeness = if policy(name).is_some() && policy(name) == policy(&backend.builder) {
                Likeness::Bits
            } else {
                Likeness::Translations
            };
            println!(
                "differential: every plan that passes runs on {name} too; the tables must be {}",
                if likeness == Likeness::Bits { "bit-identical" } else { "translation-identical" }
            );
            Some(Reference { make: &make_reference, likeness, name: name.clone() })
        }
    };
    let summary = run_against(&spec, workers, &make, reference.as_ref(), cmd.progress)?;
    if let Some(path) = &cmd.report {
        let report = crate::report::RunReport {
            backend: tested.backend.clone(),
            tested,
            configs: Vec::new(),
            fuzz: Some(crate::report::fuzz_line(&summary)),
            vm_checks: Vec::new(),
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("report: {}", path.display());
    }
    print_summary(&summary);
    Ok(summary)
}

fn print_summary(s: &Summary) {
    println!(
        "fuzz: {} plans in {:.2}s = {:.0} plans/s, {} failure{}, {} not checked, {} n/a, {} MMU-checked pages",
        s.plans,
        s.elapsed.as_secs_f64(),
        s.rate(),
        s.failures.len(),
        if s.failures.len() == 1 { "" } else { "s" },
        s.unchecked.len(),
        s.not_applicable,
        s.hw_probes
    );
    for f in &s.failures {
        println!(
            "  {} index {}: [{}] shrunk {} -> {} ops: {}",
            f.config,
            f.index,
            f.check,
            f.ops.0,
            f.ops.1,
            f.repro_text()
        );
    }
    let mut causes: BTreeMap<String, usize> = BTreeMap::new();
    for u in &s.unchecked {
        *causes.entry(u.outcome.to_string()).or_insert(0) += 1;
    }
    for (cause, n) in &causes {
        println!("  not checked ({n} plan{}): {cause}", if *n == 1 { "" } else { "s" });
    }
    if let Some(why) = &s.gave_up {
        println!("fuzz: stopped early: {why}");
    }
    if s.checked() == 0 {
        println!("fuzz: 0 plans checked: nothing was verified (is the time budget too short?)");
    }
    println!("outcome: {}", verdict_line(s.class()));
}
