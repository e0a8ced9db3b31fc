//! The steps behind each xtask command.

use ptcheck_shared::report::Needs;

use crate::flags::Bench;
use crate::tools::{
    build_guest, build_mutants_image, cargo, ensure_lint_tools, ensure_qemu, ensure_target, mutants_image, sh,
    target_dir, Result, GUEST_TARGET,
};

fn ptcheck_build(args: &[&str], catalogue: bool) -> Result {
    sh(crate::tools::ptcheck_command(catalogue).args(args))
}

/// What `ptcheck <args>` needs prepared, answered by ptcheck's own parser (`ptcheck
/// needs`), so xtask never reads ptcheck's flags itself.
fn needs(args: &[String]) -> std::result::Result<Needs, String> {
    let mut cmd = crate::tools::ptcheck_command(false);
    cmd.arg("needs").args(args).stderr(std::process::Stdio::inherit());
    let out = cmd.output().map_err(|e| format!("cannot run ptcheck needs: {e}"))?;
    if !out.status.success() {
        return Err(format!("ptcheck needs {} failed ({})", args.join(" "), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("ptcheck needs answered '{line}': {e}"))
}

/// `ptcheck <sub> args`, with what it needs set up first (the guest image, QEMU where
/// KVM cannot run it, the tracer, the bug catalogue and its guest image), exactly as
/// `test` does.
pub fn forward(sub: &str, args: &[String]) -> Result {
    let mut full: Vec<String> = vec![sub.into()];
    full.extend(args.iter().cloned());
    let needs = needs(&full)?;
    if needs.guest_image {
        build_guest()?;
    }
    if needs.qemu {
        ensure_qemu()?;
    }
    if needs.tracing {
        crate::linux::ensure_tracing()?;
    }
    if needs.catalogue_image {
        build_mutants_image()?;
        full.extend(["--guest".into(), mutants_image().to_string_lossy().into_owned()]);
    }
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    ptcheck_build(&refs, needs.catalogue)
}

/// `cargo xtask bench [--seconds N]`: plans/s per backend. `--scale [--native-only]
/// [--quick]`: machine-sized maps per stage, and the builder against aarch64-paging and
/// the memory floor (`host/benches/scale.rs`). `--costs`: per-table building costs.
/// `--trace`: the tracer's cost.
pub fn bench(b: &Bench) -> Result {
    if b.scale {
        if !b.native_only {
            ensure_qemu()?;
            build_guest()?;
        }
        let mut cmd = cargo();
        cmd.args(["bench", "--package", "ptcheck-host", "--bench", "scale", "--"]);
        if !b.native_only {
            cmd.arg("--qemu");
        }
        if b.quick {
            cmd.arg("--quick");
        }
        return sh(&mut cmd);
    }
    if b.costs {
        return ptcheck_build(&["bench", "--costs"], false);
    }
    if b.linux_costs {
        let c = crate::linux_costs::CostsBench {
            sources: b.source.clone(),
            report: b.report.clone(),
            slice: b.slice,
            html: b.html.clone(),
        };
        return crate::linux_costs::bench(&c).map(|_| ());
    }
    if b.patch_loop {
        return crate::patch_loop::bench_patch_loop(b.regimes.as_deref().unwrap_or("all"));
    }
    if b.trace {
        return crate::linux::bench_trace(&b.forwarded());
    }
    forward("bench", &b.forwarded())
}

/// `cargo fmt --check`, then clippy with warnings denied on every build the project
/// has: the host workspace, the guest image (aarch64-unknown-none) and the KVM backend
/// (arm64 Linux only).
fn lint() -> Result {
    ensure_lint_tools()?;
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    let clippy = |what: &[&str]| sh(cargo().args(["clippy", "--release"]).args(what).args(["--", "-D", "warnings"]));
    clippy(&["--workspace", "--all-targets", "--features", "ptcheck-host/mutants"])?;
    ensure_target(GUEST_TARGET)?;
    clippy(&["--package", "ptcheck-guest", "--bin", "ptcheck-guest-image", "--target", GUEST_TARGET])?;
    let musl = crate::nested_kvm::MUSL;
    ensure_target(musl)?;
    clippy(&["--package", "ptcheck-host", "--all-targets", "--features", "mutants", "--target", musl])
}

pub fn test() -> Result {
    // Formatting and lints first: they are part of the test.
    lint()?;
    ensure_qemu()?;
    build_guest()?;
    // Every test, the QEMU ones (ignored by plain `cargo test`) included.
    // One host build for everything below: the test build has the bug catalogue
    // (tests need it); runs without --mutant use the clean builder all the same.
    sh(cargo().args([
        "test",
        "--release",
        "--workspace",
        "--features",
        "ptcheck-host/mutants",
        "--",
        "--include-ignored",
    ]))?;
    let ptcheck = |args: &[&str]| ptcheck_build(args, true);
    let reports = target_dir().join("ptcheck");
    std::fs::create_dir_all(&reports).map_err(|e| format!("cannot create {}: {e}", reports.display()))?;
    for backend in ["native", "qemu"] {
        let report = reports.join(format!("{backend}.json"));
        ptcheck(&["run", "--backend", backend, "--config", "all", "--report", &report.to_string_lossy()])?;
    }
    // Observed, not self-reported: every builder on QEMU with the tracer (QEMU 10), and
    // the catalogue's lying variants caught by what it saw.
    crate::linux::ensure_tracing()?;
    let traced = crate::linux::tracing_skipped().is_none();
    for builder in ["linux", "linux-6.9", "aarch64-paging"].into_iter().filter(|_| traced) {
        let report = reports.join(format!("qemu-traced-{builder}.json"));
        let r = report.to_string_lossy();
        ptcheck(&["run", "--backend", "qemu", "--config", "all", "--trace", "--builder", builder, "--report", &r])?;
    }
    let mutants = |args: &[&str]| forward("mutants", &args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    if traced {
        mutants(&["--backend", "qemu", "--trace"])?;
    }
    // A short fuzz run per backend (fixed seed: CI must be reproducible).
    ptcheck(&["fuzz", "--backend", "native", "--config", "all", "--seed", "1", "--count", "5000"])?;
    ptcheck(&["fuzz", "--backend", "qemu", "--config", "all", "--seed", "1", "--count", "500"])?;
    // The other builders: linux-6.9 bit-identical to linux, aarch64-paging
    // translation-identical (a short slice; the 20,000-plan runs are in the README).
    ptcheck(&["fuzz", "--backend", "native", "--builder", "linux-6.9", "--differential", "linux", "--count", "2000"])?;
    let ap = ["--builder", "aarch64-paging", "--differential", "linux", "--config", "4k-48"];
    ptcheck(&[&["fuzz", "--backend", "qemu", "--count", "300"][..], &ap].concat())?;
    // The bug catalogue: every variant caught, the clean builder clean.
    mutants(&["--backend", "native"])?;
    mutants(&["--backend", "native", "--builder", "linux-6.9"])?;
    mutants(&["--backend", "qemu"])?;
    let kvm = kvm_stage(&reports)?;
    // Real kernels' tables (Debian 6.1 and 6.12, a small 6.12 kernel, a traced kernel
    // plant; `linux::stage` fetches and builds them), and planted faults.
    crate::linux::stage()?;
    // The HTML reports as a browser shows them: a failing replay, a failing layout.
    crate::browser::stage(&crate::tools::target_dir().join("linux").join("plant-policy.html"))?;
    // The seed's cost table's slice: Debian 6.1 vs 6.12 on 16 GiB, counted by the tracer.
    match crate::linux::tracing_skipped() {
        None => {
            crate::linux_costs::slice()?;
            // Its bar charts, as the browser draws them.
            let html = crate::tools::target_dir().join("linux").join("costs.html");
            crate::browser::check(&html, &["TLBI per table", r#"class="bar" data-value=""#])?;
        }
        Some(why) => println!("linux-costs slice SKIPPED ({why}): it counts through the tracer; NOT run, not counted"),
    }
    println!(
        "xtask test: unit and QEMU tests passed; every built-in plan passed on every config on native, QEMU and {kvm}{}",
        match crate::linux::tracing_skipped() {
            None => "; traced on QEMU 10: every builder, the catalogue, Debian's kernels, a kernel plant and the \
                     16 GiB cost slice"
                .to_string(),
            Some(why) => format!("; WARNING: TRACING SKIPPED ({why}): the observed checks were NOT run"),
        }
    );
    Ok(())
}

/// KVM: directly where this host's KVM runs arm64 guests, else inside an emulated
/// arm64 Linux (nested), including the proof that a failure there fails the run.
fn kvm_stage(reports: &std::path::Path) -> std::result::Result<&'static str, String> {
    let report = reports.join("kvm.json");
    if cfg!(all(target_arch = "aarch64", target_os = "linux")) && std::path::Path::new("/dev/kvm").exists() {
        println!("KVM stage: this is an arm64 host with /dev/kvm: running the KVM backend directly");
        ptcheck_build(&["run", "--backend", "kvm", "--config", "all", "--report", &report.to_string_lossy()], true)?;
        return Ok("KVM (direct)");
    }
    println!("KVM stage: this {} host's KVM cannot run arm64 guests: proving the KVM backend nested, inside an emulated arm64 Linux", std::env::consts::ARCH);
    let run = |self_test, report| crate::nested_kvm::NestedKvm {
        report: Some(report),
        self_test,
        timeout: std::time::Duration::from_secs(900),
    };
    crate::nested_kvm::run(&run(false, report))?;
    let self_test = crate::nested_kvm::run_nested(&run(true, reports.join("kvm-self-test.json")))
        .map_err(|e| format!("the nested self-test failed for the wrong reason: {e}"))?;
    if self_test.failed_plans == 0 {
        return Err("the nested self-test passed: failures on KVM would not reach the exit code".into());
    }
    println!(
        "KVM stage: the wrong-expectation self-test failed {} plans on KVM, as it must: {}",
        self_test.failed_plans, self_test.summary
    );
    Ok("KVM (nested)")
}
