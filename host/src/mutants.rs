//! The bug catalogue run: every variant of `ptcheck_guest::mutation::ALL_VARIANTS`
//! against the built-in plans and N fuzzed plans per regime, with the clean builder
//! in the same run. A variant counts as caught on a regime when at least one plan
//! fails there; every check that failed is listed (checks run independently, so one
//! catching a bug never hides another).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ptcheck_guest::mutation::Variant;
use ptcheck_shared::TranslationConfig;

use crate::backend::Backend;
use crate::fuzz::gen;
use crate::outcome::Class;
use crate::plans;
use crate::run::run_and_verify;

/// One variant on one regime.
#[derive(Debug, Clone)]
pub struct RegimeOutcome {
    /// The regime.
    pub config: TranslationConfig,
    /// Whether the variant can show up here.
    pub applies: bool,
    /// Plans run.
    pub plans: usize,
    /// Plans that failed (the builder was caught).
    pub failed: usize,
    /// Fuzzed (not built-in) plans that failed.
    pub fuzzed_failed: usize,
    /// Plans that could not be checked (bad plan, over capacity, infrastructure).
    pub not_checked: usize,
    /// 1-based position of the first failing plan.
    pub first_catch: Option<usize>,
    /// Every check that failed on some plan.
    pub checks: BTreeSet<&'static str>,
}

/// One variant (or the clean builder) over every regime.
#[derive(Debug, Clone)]
pub struct VariantOutcome {
    /// `None`: the clean builder.
    pub variant: Option<&'static Variant>,
    /// Per regime.
    pub regimes: Vec<RegimeOutcome>,
    /// Wall time.
    pub elapsed: Duration,
}

impl VariantOutcome {
    /// Name for the table.
    pub fn name(&self) -> &'static str {
        self.variant.map_or("clean", |v| v.name)
    }

    /// Regimes where the variant applies.
    pub fn applicable(&self) -> impl Iterator<Item = &RegimeOutcome> {
        self.regimes.iter().filter(|r| r.applies)
    }

    /// Caught on every regime where it applies (clean: nothing failed anywhere).
    pub fn ok(&self) -> bool {
        match self.variant {
            None => self.regimes.iter().all(|r| r.failed == 0 && r.not_checked == 0),
            Some(_) => self.applicable().all(|r| r.failed > 0),
        }
    }

    /// Regimes where a fuzzed plan (not only a built-in one) caught it.
    pub fn caught_by_fuzzing(&self) -> Vec<String> {
        self.regimes.iter().filter(|r| r.fuzzed_failed > 0).map(|r| r.config.to_string()).collect()
    }

    /// Union of the checks that caught it.
    pub fn checks(&self) -> BTreeSet<&'static str> {
        self.regimes.iter().flat_map(|r| r.checks.iter().copied()).collect()
    }

    /// Worst case over the applicable regimes of plans run before the first catch.
    pub fn plans_to_catch(&self) -> Option<usize> {
        self.applicable().map(|r| r.first_catch).collect::<Option<Vec<_>>>()?.into_iter().max()
    }
}

/// Run `variant` (None: clean) on `backend` over `configs`: built-in plans, then
/// `fuzz_count` generated plans of `seed` per regime.
pub fn run_variant(
    backend: &mut dyn Backend,
    variant: Option<&'static Variant>,
    configs: &[TranslationConfig],
    fuzz_count: u64,
    seed: u64,
) -> VariantOutcome {
    let start = Instant::now();
    let mut regimes = Vec::new();
    for &cfg in configs {
        // A lie only the tracer sees applies where it watches the `linux` builder.
        let watched = backend.traced() && backend.variant().builder == ptcheck_guest::registry::LINUX;
        let applies = variant.is_none_or(|v| (v.applies)(&cfg) && (!v.observed_only || watched));
        let mut r = RegimeOutcome {
            config: cfg,
            applies,
            plans: 0,
            failed: 0,
            fuzzed_failed: 0,
            not_checked: 0,
            first_catch: None,
            checks: BTreeSet::new(),
        };
        let builtin = plans::builtin(cfg).into_iter().map(|np| (false, np.plan));
        let fuzzed = (0..fuzz_count).map(|i| (true, gen::generate(seed, i, cfg)));
        for (is_fuzzed, plan) in builtin.chain(fuzzed) {
            r.plans += 1;
            let o = run_and_verify(backend, &plan, seed ^ r.plans as u64);
            match o.class() {
                Class::Passed | Class::NotApplicable => {}
                Class::NotChecked => {
                    r.not_checked += 1;
                    eprintln!(
                        "  NOT CHECKED: {} {cfg} plan {}: {}",
                        variant.map_or("clean", |v| v.name),
                        r.plans,
                        o.outcome
                    );
                }
                Class::BuilderFailed => {
                    r.failed += 1;
                    r.fuzzed_failed += usize::from(is_fuzzed);
                    r.first_catch.get_or_insert(r.plans);
                    r.checks.extend(o.verdict.failed());
                }
            }
        }
        regimes.push(r);
    }
    VariantOutcome { variant, regimes, elapsed: start.elapsed() }
}

/// The table: one line per variant.
pub fn table(outcomes: &[VariantOutcome], backend: &str) -> String {
    let mut s = format!("| variant | applies on | caught ({backend}) | checks that caught it | plans to catch | time |\n|---|---|---|---|---|---|\n");
    for o in outcomes {
        let total = o.regimes.len();
        let applicable: Vec<_> = o.applicable().collect();
        let na: Vec<String> = o.regimes.iter().filter(|r| !r.applies).map(|r| r.config.to_string()).collect();
        let applies = if na.is_empty() {
            format!("all {total}")
        } else {
            format!("{} (n/a: {})", applicable.len(), na.join(" "))
        };
        let caught = match o.variant {
            None => format!(
                "{} failures, {} not checked, in {} plans",
                o.regimes.iter().map(|r| r.failed).sum::<usize>(),
                o.regimes.iter().map(|r| r.not_checked).sum::<usize>(),
                o.regimes.iter().map(|r| r.plans).sum::<usize>()
            ),
            Some(_) => {
                let n = applicable.iter().filter(|r| r.failed > 0).count();
                format!("{} {n}/{}", if n == applicable.len() { "yes" } else { "NO" }, applicable.len())
            }
        };
        let checks = o.checks().into_iter().collect::<Vec<_>>().join(", ");
        let plans = o.variant.map_or("-".into(), |_| o.plans_to_catch().map_or("-".into(), |p| p.to_string()));
        s.push_str(&format!(
            "| {} | {applies} | {caught} | {} | {plans} | {:.1}s |\n",
            o.name(),
            if checks.is_empty() { "-".into() } else { checks },
            o.elapsed.as_secs_f64()
        ));
    }
    s
}

/// What `ptcheck mutants` runs.
#[derive(Clone, Debug)]
pub struct CatalogueOptions {
    /// Fuzzed plans per regime, after the built-in ones.
    pub count: u64,
    /// Seed of the fuzzed plans.
    pub seed: u64,
    /// Only these variants (empty: all).
    pub only: Vec<String>,
}

/// Run the catalogue on the backend `backend` asks for: every variant must be caught
/// where it applies and the clean builder must pass, in one run. Prints the table.
///
/// VM backends run one guest image with the catalogue (`cargo xtask mutants` builds
/// it); the plan selects the variant.
///
/// # Errors
/// An unknown variant name, or a backend that cannot be made (a guest image without
/// the catalogue says so).
pub fn catalogue(opts: &CatalogueOptions, backend: &crate::backend::open::BackendOptions) -> anyhow::Result<bool> {
    use crate::backend::open::open;
    use ptcheck_guest::mutation::ALL_VARIANTS;
    for name in &opts.only {
        if ALL_VARIANTS.iter().all(|v| v.name != *name) {
            anyhow::bail!("unknown variant '{name}'");
        }
    }
    let family = ptcheck_guest::registry::by_name(&backend.builder).map(|b| b.policy);
    if family != Some(ptcheck_guest::registry::Policy::Linux) {
        anyhow::bail!(
            "the bug catalogue mutates the linux builders (linux, linux-6.9), not '{}': pass --builder linux or linux-6.9",
            backend.builder
        );
    }
    let chosen = ALL_VARIANTS.iter().filter(|v| opts.only.is_empty() || opts.only.iter().any(|o| o == v.name));
    let variants: Vec<Option<&'static Variant>> = std::iter::once(None).chain(chosen.map(Some)).collect();
    let configs: Vec<TranslationConfig> = TranslationConfig::all().collect();
    let backend_for = |v: Option<&'static Variant>| -> anyhow::Result<Box<dyn Backend>> {
        let b = crate::backend::open::BackendOptions { mutant: v.map(|v| v.name.to_string()), ..backend.clone() };
        Ok(open(&b)?.0)
    };
    let name = backend_for(None)?.name();
    println!(
        "bug catalogue on {name}: built-in plans + {} fuzzed plans (seed {}) per regime, {} regimes",
        opts.count,
        opts.seed,
        configs.len()
    );
    let mut outcomes = Vec::new();
    for v in variants {
        let mut b = backend_for(v)?;
        let o = run_variant(b.as_mut(), v, &configs, opts.count, opts.seed);
        let verdict = match (o.ok(), v) {
            (true, _) => "ok",
            (false, None) => "CLEAN BUILDER FAILED",
            (false, Some(_)) => "NOT CAUGHT everywhere",
        };
        println!("  {:<22} {verdict}", o.name());
        outcomes.push(o);
    }
    print!("{}", table(&outcomes, name));
    if name != "native" {
        let by_mmu: Vec<_> = outcomes
            .iter()
            .filter(|o| o.variant.is_some() && o.checks().contains("hw_probe"))
            .map(|o| o.name())
            .collect();
        println!(
            "caught by the MMU cross-check (hw_probe): {}",
            if by_mmu.is_empty() { "none".into() } else { by_mmu.join(", ") }
        );
    }
    println!("regimes where fuzzed plans (not only built-in ones) caught the variant:");
    for o in outcomes.iter().filter(|o| o.variant.is_some()) {
        let regimes = o.caught_by_fuzzing();
        println!("  {:<22} {}", o.name(), if regimes.is_empty() { "none".into() } else { regimes.join(" ") });
    }
    let ok = outcomes.iter().all(VariantOutcome::ok);
    println!(
        "mutants: {}",
        if ok {
            "every variant caught on every regime where it applies; the clean builder passed everything"
        } else {
            "FAILED"
        }
    );
    Ok(ok)
}
