//! Per-config summaries and the JSON report.

use std::collections::BTreeMap;

use crate::outcome::Class;
use crate::run::PlanRun;
use crate::verify::CHECKS;

pub use ptcheck_shared::report::{ConfigReport, FuzzLine, RunReport};

/// An empty line for regime `name`: every check at zero.
pub fn config_line(name: String) -> ConfigReport {
    let checks = CHECKS.iter().map(|c| (c.to_string(), 0)).collect();
    ConfigReport {
        name,
        plans: 0,
        passed: 0,
        failed: 0,
        not_checked: 0,
        not_applicable: 0,
        outcomes: BTreeMap::new(),
        checks,
        hw_probes: 0,
        hw_unsupported: false,
        failures: vec![],
        observed: None,
    }
}

/// Count one plan's outcome into `line`.
pub fn count(line: &mut ConfigReport, plan_name: &str, o: &PlanRun) {
    let v = &o.verdict;
    line.plans += 1;
    line.hw_probes += o.hw_probes;
    line.hw_unsupported |= o.hw_unsupported;
    *line.outcomes.entry(o.outcome.kind().to_string()).or_insert(0) += 1;
    match o.class() {
        Class::Passed => line.passed += 1,
        Class::NotApplicable => line.not_applicable += 1,
        Class::BuilderFailed => line.failed += 1,
        Class::NotChecked => line.not_checked += 1,
    }
    if !o.passed() && o.class() != Class::NotApplicable {
        line.failures.push(format!("{plan_name}: {}", o.describe().trim_end()));
    }
    if let Some(c) = &o.observed {
        line.observed.get_or_insert_with(Default::default).add(c);
    }
    for c in &v.checks {
        let n = line.checks.entry(c.name.to_string()).or_insert(0);
        if c.passed() {
            *n += 1;
        }
    }
}

/// A fuzz run's line of the report.
pub fn fuzz_line(s: &crate::fuzz::Summary) -> FuzzLine {
    FuzzLine {
        plans: s.plans,
        failed: s.failures.len(),
        not_checked: s.unchecked.len(),
        plans_per_s: s.rate(),
        hw_probes: s.hw_probes,
    }
}

/// Peak resident set of this process so far, in MiB (0 where /proc cannot tell).
pub fn peak_rss_mib() -> u64 {
    status_kib("self", "VmHWM:").unwrap_or(0) / 1024
}

/// One KiB figure (`VmHWM:`, `RssAnon:`) of `/proc/<pid>/status` (`pid` "self": this
/// process).
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/status"), field)
}

/// Add to a JSON report of several runs (`--report-append`): the runs already in
/// `path` when `append` and it exists (else none), `push` adds this one, and the
/// whole is written back; what it now holds is returned.
///
/// # Errors
/// The file cannot be read or written, or is not a `what` report.
pub fn append_json<R>(path: &std::path::Path, append: bool, what: &str, push: impl FnOnce(&mut R)) -> anyhow::Result<R>
where
    R: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    use anyhow::Context as _;
    let mut all = R::default();
    if append && path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        all = serde_json::from_str(&text)
            .with_context(|| format!("--report-append: {} is not a {what} report", path.display()))?;
    }
    push(&mut all);
    std::fs::write(path, serde_json::to_string_pretty(&all)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(all)
}

/// A `field:  N kB` line of a /proc file (`/proc/meminfo`, `/proc/PID/status`), in KiB.
pub fn proc_kib(file: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(file).ok()?;
    s.lines().find_map(|l| l.strip_prefix(field))?.split_whitespace().next()?.parse().ok()
}

/// One plan of one regime, for JUnit.
#[derive(Debug, Clone)]
pub struct Case {
    /// The regime ("4k-48").
    pub config: String,
    /// The plan ("pmd-blocks").
    pub plan: String,
    /// How it ended.
    pub class: Class,
    /// One line: the first failing check, or why the plan was not checked.
    pub message: String,
    /// The outcome and any failing checks, in words.
    pub text: String,
}

impl Case {
    /// The case for `plan` of `config` that ran as `run`.
    pub fn of(config: &str, plan: &str, run: &PlanRun) -> Case {
        let failures = run.verdict.describe_failures();
        let message = match run.class() {
            Class::BuilderFailed => failures.lines().next().unwrap_or_default().trim().to_string(),
            _ => run.outcome.to_string(),
        };
        Case { config: config.into(), plan: plan.into(), class: run.class(), message, text: run.describe() }
    }
}

/// The whole report: the JSON part (`ptcheck_shared::report::RunReport`, what xtask
/// reads back) and every plan, for `--junit`.
#[derive(Debug)]
pub struct Report {
    /// What `--report` writes.
    pub json: RunReport,
    /// Every plan, for `--junit`.
    pub cases: Vec<Case>,
    /// The failing plans drawn (`run --html`).
    pub pictures: Vec<crate::html::Section>,
}

impl std::ops::Deref for Report {
    type Target = RunReport;
    fn deref(&self) -> &RunReport {
        &self.json
    }
}

impl std::ops::DerefMut for Report {
    fn deref_mut(&mut self) -> &mut RunReport {
        &mut self.json
    }
}

impl Report {
    /// An empty report of what `tested` says.
    pub fn new(tested: ptcheck_shared::report::Tested) -> Report {
        let backend = tested.backend.clone();
        Report {
            json: RunReport { tested, backend, configs: vec![], fuzz: None, vm_checks: vec![] },
            cases: vec![],
            pictures: vec![],
        }
    }

    /// The report as JSON, to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_json(&self, path: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let json = serde_json::to_string_pretty(&self.json)?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write report {}", path.display()))
    }

    /// Every case as JUnit XML, one test suite per regime, to `path`: GitHub and
    /// GitLab show failing plans natively. A plan that could not be checked is an
    /// `error`, a builder failure a `failure`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_junit(&self, path: &std::path::Path, run_name: &str) -> anyhow::Result<()> {
        use anyhow::Context as _;
        use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
        let mut report = quick_junit::Report::new(run_name);
        let properties: Vec<quick_junit::Property> =
            self.tested.pairs().into_iter().map(|(k, v)| quick_junit::Property::new(k, v)).collect();
        let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
        for c in &self.cases {
            let mut status = match c.class {
                Class::Passed => TestCaseStatus::success(),
                Class::BuilderFailed => TestCaseStatus::non_success(NonSuccessKind::Failure),
                Class::NotChecked => TestCaseStatus::non_success(NonSuccessKind::Error),
                Class::NotApplicable => TestCaseStatus::skipped(),
            };
            if c.class != Class::Passed {
                status.set_message(c.message.as_str());
                status.set_description(c.text.as_str());
            }
            let mut case = TestCase::new(c.plan.as_str(), status);
            case.set_classname(format!("ptcheck.{}.{}", self.backend, c.config));
            let suite = suites.entry(&c.config).or_insert_with(|| {
                let mut s = TestSuite::new(format!("{} {}", self.backend, c.config));
                s.add_properties(properties.iter().cloned());
                s
            });
            suite.add_test_case(case);
        }
        report.add_test_suites(suites.into_values());
        let xml = report.to_string().context("cannot render the JUnit report")?;
        std::fs::write(path, xml).with_context(|| format!("cannot write JUnit report {}", path.display()))
    }

    /// Plans that failed, over every config.
    pub fn failed(&self) -> usize {
        self.configs.iter().map(|c| c.failed).sum()
    }

    /// Plans that could not be checked, over every config.
    pub fn not_checked(&self) -> usize {
        self.configs.iter().map(|c| c.not_checked).sum()
    }

    /// The worst class over every plan: what the exit code says.
    pub fn class(&self) -> Class {
        if self.failed() > 0 {
            Class::BuilderFailed
        } else if self.not_checked() > 0 {
            Class::NotChecked
        } else {
            Class::Passed
        }
    }
}
