//! `ptcheck run`: every built-in plan of every asked regime on one backend, a table
//! line per regime, a reproducer per failing plan, and the [`Report`].

use std::collections::BTreeSet;

use ptcheck_shared::TranslationConfig;

use crate::backend::Backend;
use crate::outcome::Class;
use crate::plans;
use crate::report::{config_line, count, Case, Report};
use crate::repro;
use crate::run::{run_against, Expectation};

/// What a matrix run covers.
#[derive(Clone, Debug)]
pub struct MatrixOptions {
    /// Regimes, in report order.
    pub configs: Vec<TranslationConfig>,
    /// Self-test: verify the first plan of every regime against an expectation one page
    /// off; those plans must fail (proves the backend's failures are real).
    pub inject_wrong_expectation: bool,
    /// Names the backend and builder in reproducer names.
    pub label: String,
    /// Draw every failing plan (`--html`: run once more for its listing).
    pub pictures: bool,
}

/// Run the matrix on `backend`, printing the table; the report says what passed.
pub fn run_matrix(backend: &mut dyn Backend, opts: &MatrixOptions) -> Report {
    let label = &opts.label;
    println!(
        "{:<11} {:>6} {:>7} {:>7} {:>7} {:>5} {:>10}  failed checks / outcomes not checked",
        "config", "plans", "passed", "failed", "n/chk", "n/a", "hw_probes"
    );
    let mut report = Report::new(crate::tested::of_backend("run", &*backend, &[]));
    for &cfg in &opts.configs {
        let mut line = config_line(cfg.to_string());
        let mut failed_checks = BTreeSet::new();
        for (i, np) in plans::builtin(cfg).into_iter().enumerate() {
            let seed = np.plan.plan_id;
            let expect = if opts.inject_wrong_expectation && i == 0 {
                Expectation::WrongByOnePage
            } else {
                Expectation::AsPlanned
            };
            let run = run_against(backend, &np.plan, seed, expect);
            count(&mut line, &np.name, &run);
            report.cases.push(Case::of(&cfg.to_string(), &np.name, &run));
            match run.class() {
                Class::Passed => {}
                Class::NotApplicable => {}
                Class::NotChecked => {
                    failed_checks.insert(run.outcome.kind());
                    eprintln!("NOT CHECKED {cfg} {}: {}", np.name, run.outcome);
                }
                Class::BuilderFailed => {
                    let verdict = &run.verdict;
                    failed_checks.extend(verdict.failed());
                    let notes = format!("{cfg} plan {} on {} ({label})\n{}", np.name, backend.name(), run.describe());
                    let stem = format!("run-{label}-{cfg}-{}", np.name);
                    let written = repro::write(&stem, &np.plan, &run, &*backend, &notes);
                    let path = written.map_or_else(|e| format!("NOT WRITTEN: {e:#}"), |p| p.display().to_string());
                    eprintln!("FAIL {cfg} {}: reproducer {path}\n{}", np.name, run.describe().trim_end());
                    if opts.pictures {
                        let facts = vec![("reproducer".to_string(), path.clone())];
                        let title = format!("{cfg} plan {}: {}", np.name, verdict.failed().join(", "));
                        report.pictures.push(crate::html::plan_section(backend, &np.plan, title, facts).0);
                    }
                }
            }
        }
        let fc: Vec<_> = failed_checks.into_iter().collect();
        let hw = if line.not_applicable == line.plans {
            "n/a".to_string()
        } else if line.hw_unsupported {
            "unsupported".to_string()
        } else if backend.has_mmu() {
            line.hw_probes.to_string()
        } else {
            "no MMU".to_string()
        };
        println!(
            "{:<11} {:>6} {:>7} {:>7} {:>7} {:>5} {:>10}  {}",
            line.name,
            line.plans,
            line.passed,
            line.failed,
            line.not_checked,
            line.not_applicable,
            hw,
            fc.join(",")
        );
        report.configs.push(line);
    }
    if backend.traced() {
        let mut all = ptcheck_shared::trace::Counts::default();
        for c in report.configs.iter().filter_map(|c| c.observed.as_ref()) {
            all.add(c);
        }
        let mut line = String::new();
        let _ = all.describe(&mut line);
        println!("observed (tracer): {line}");
    }
    let total: usize = report.configs.iter().map(|c| c.plans).sum();
    let passed: usize = report.configs.iter().map(|c| c.passed).sum();
    let na: usize = report.configs.iter().map(|c| c.not_applicable).sum();
    println!(
        "total: {total} plans, {passed} passed, {} failed, {} not checked, {na} n/a ({} backend)",
        report.failed(),
        report.not_checked(),
        report.backend
    );
    report
}
