//! Every run ends with a named outcome: hostile plans are `bad-plan` or
//! `over-capacity` (the same on native and QEMU), broken setups fail before any plan
//! runs, infrastructure failures are counted apart and never written as builder
//! reproducers. The QEMU tests need the guest image (`cargo xtask test` runs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptcheck_host::backend::native::NativeBackend;
use ptcheck_host::backend::qemu::{self, QemuOptions};
use ptcheck_host::backend::{Backend, RunView};
use ptcheck_host::expect::expected;
use ptcheck_host::fuzz::{self, gen, FuzzSpec};
use ptcheck_host::outcome::{Class, Outcome};
use ptcheck_host::repro;
use ptcheck_host::run::run_and_verify;
use ptcheck_shared::abi::{BugKind, Plan, Status};
use ptcheck_shared::TranslationConfig;

const KERNEL: u64 = 0x0068_0000_0000_0700;

fn image() -> PathBuf {
    std::env::var_os("PTCHECK_GUEST_IMAGE").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/aarch64-unknown-none/release/ptcheck-guest-image"),
        PathBuf::from,
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ptcheck-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (name, reproducer text, outcome kind, words the outcome must contain)
fn hostile() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let plan = |cfg: &str, pools: &[(u64, u64)], maps: &[(u64, u64, u64, u64, u64)]| {
        let mut s = format!("ptcheck-repro 2\nconfig {cfg}\n");
        for (b, z) in pools {
            s += &format!("pool {b:#x} {z:#x}\n");
        }
        for (va, pa, size, prot, flags) in maps {
            s += &format!("map {va:#x} {pa:#x} {size:#x} {prot:#x} {flags:#x}\n");
        }
        s
    };
    let pool = [(0x4400_0000, 0x10_0000)];
    let va = 0xffff_0000_0000_0000;
    vec![
        (
            "remap",
            plan("4k-48", &pool, &[(va, 0x8000_0000, 0x1000, KERNEL, 0), (va, 0x8000_1000, 0x1000, KERNEL, 0)]),
            "bug",
            "bug unsafe-change at op 1",
        ),
        (
            "below-range",
            plan("64k-52@48", &pool, &[(0xfff0_0000_0000_0000, 0x8000_0000, 0x1_0000, KERNEL, 0)]),
            "bad-plan",
            "below the kernel (TTBR1) range of 64k-52@48",
        ),
        (
            "unaligned",
            plan("4k-48", &pool, &[(va + 0x800, 0x8000_0000, 0x1000, KERNEL, 0)]),
            "bad-plan",
            "not 4K-page aligned",
        ),
        ("size-0", plan("4k-48", &pool, &[(va, 0x8000_0000, 0, KERNEL, 0)]), "bad-plan", "has size 0"),
        (
            "unknown-flags",
            plan("4k-48", &pool, &[(va, 0x8000_0000, 0x1000, KERNEL, 0x10)]),
            "bad-plan",
            "unknown bits 0x10",
        ),
        (
            "unknown-prot",
            plan("4k-48", &pool, &[(va, 0x8000_0000, 0x1000, KERNEL | 1 << 63, 0)]),
            "bad-plan",
            "not leaf attributes",
        ),
        ("pa-too-big", plan("4k-48", &pool, &[(va, 1 << 48, 0x1000, KERNEL, 0)]), "bad-plan", "48-bit PA size"),
        (
            "va-wraps",
            plan("4k-48", &pool, &[(u64::MAX - 0xfff, 0x8000_0000, 0x2000, KERNEL, 0)]),
            "bad-plan",
            "past the top of the address space",
        ),
        (
            "pool-wraps",
            plan("4k-48", &[(0xffff_ffff_ffff_f000, 0x2000)], &[(va, 0x8000_0000, 0x1000, KERNEL, 0)]),
            "bad-plan",
            "wraps around",
        ),
        (
            "pool-4tib",
            plan("4k-48", &[(0x4400_0000, 1 << 42)], &[(va, 0x8000_0000, 0x1000, KERNEL, 0)]),
            "bad-plan",
            "leaves the pool window",
        ),
        (
            "pools-overlap",
            plan("4k-48", &[(0x4400_0000, 0x1_0000), (0x4400_8000, 0x1_0000)], &[(va, 0x8000_0000, 0x1000, KERNEL, 0)]),
            "bad-plan",
            "overlaps pool 0",
        ),
        (
            "pool-over-image",
            plan("4k-48", &[(0x4020_0000, 0x1_0000)], &[(va, 0x8000_0000, 0x1000, KERNEL, 0)]),
            "bad-plan",
            "leaves the pool window",
        ),
        (
            "pool-over-mailbox",
            plan("4k-48", &[(0x4100_0000, 0x1_0000)], &[(va, 0x8000_0000, 0x1000, KERNEL, 0)]),
            "bad-plan",
            "leaves the pool window",
        ),
        (
            "pool-outside-ram",
            plan("4k-48", &[(0x10_0000_0000, 0x1_0000)], &[(va, 0x8000_0000, 0x1000, KERNEL, 0)]),
            "bad-plan",
            "leaves the pool window",
        ),
        (
            // The example: once silently truncated at 1024 tables, now whole.
            "16-gib-of-pages",
            plan("4k-48", &[(0x4400_0000, 0x400_0000)], &[(va, 0x8000_0000, 0x4_0000_0000, KERNEL, 3)]),
            "done",
            "done",
        ),
        (
            "2-tib-of-pages",
            plan("4k-48", &[(0xC000_0000, 0x1_8000_0000)], &[(va, 0x8000_0000, 0x200_0000_0000, KERNEL, 3)]),
            "over-capacity",
            "over-capacity tables: needed 1048576, held 262144",
        ),
    ]
}

fn outcome_on(backend: &mut dyn Backend, text: &str) -> Outcome {
    let r = repro::parse(text).unwrap();
    let plan = r.plan.clone();
    run_and_verify(backend, &plan, 1).outcome
}

#[test]
fn hostile_plans_get_a_named_outcome_on_native() {
    let mut b = NativeBackend::new();
    for (name, text, kind, words) in hostile() {
        let o = outcome_on(&mut b, &text);
        assert_eq!(o.kind(), kind, "{name}: {o}");
        assert!(o.to_string().contains(words), "{name}: '{o}' lacks '{words}'");
        let class = if matches!(kind, "bug" | "done") { Class::Passed } else { Class::NotChecked };
        let plan = repro::parse(&text).unwrap().plan;
        assert_eq!(run_and_verify(&mut b, &plan, 1).class(), class, "{name}");
    }
}

#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn hostile_plans_get_the_same_outcome_on_qemu() {
    let mut native = NativeBackend::new();
    let mut q = qemu::backend(QemuOptions::new(image())).unwrap();
    for (name, text, _, _) in hostile() {
        let (a, b) = (outcome_on(&mut native, &text), outcome_on(&mut q, &text));
        assert_eq!(a, b, "{name}: native and QEMU disagree");
    }
    assert!(q.boots <= 1, "a rejected plan never reaches (or reboots) the guest");
}

/// Validation is the host's; the builder still refuses bad operations itself when
/// handed one directly (the kernel's own checks).
#[test]
fn the_builder_refuses_a_misaligned_op_on_its_own() {
    let text = &hostile().into_iter().find(|h| h.0 == "unaligned").unwrap().1;
    let plan = repro::parse(text).unwrap().plan;
    let mut b = NativeBackend::new();
    let view: RunView<'_> = b.run(&plan).unwrap();
    assert_eq!(view.result.status(), Some(Status::Bug));
    assert_eq!(view.result.bug.kind, BugKind::Misaligned as u32);
}

/// The per-table trace is coherent for every plan that runs to the end: one record
/// per table the model expects, each allocated, cleared, barriered and linked in that
/// order (the root: never linked).
#[test]
fn every_table_has_a_coherent_trace() {
    let mut b = NativeBackend::new();
    let mut done = 0;
    for cfg in TranslationConfig::all() {
        for i in 0..60 {
            let plan = gen::generate(5, i, cfg);
            let exp = expected(&plan).unwrap();
            let view = b.run(&plan).unwrap();
            let r = view.result;
            if r.status() != Some(Status::Done) {
                continue;
            }
            done += 1;
            assert_eq!(r.tables().len(), exp.tables, "{cfg} plan {i}");
            for t in r.tables() {
                assert!(t.seq_alloc < t.seq_zero && t.seq_zero < t.seq_barrier, "{cfg} plan {i}: {t:?}");
                if t.pa == r.root_pa {
                    assert_eq!(t.links, 0);
                } else {
                    assert!(t.seq_barrier < t.seq_link && t.links == 1, "{cfg} plan {i}: {t:?}");
                }
            }
        }
    }
    assert!(done > 400, "only {done} plans ran to the end");
}

/// A backend whose every third run fails like a dead QEMU.
struct Flaky {
    inner: NativeBackend,
    runs: u64,
}

impl Backend for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn run_tagged(&mut self, plan: &Plan, tags: &[u64]) -> anyhow::Result<RunView<'_>> {
        self.runs += 1;
        if self.runs.is_multiple_of(3) {
            anyhow::bail!("QEMU exited (signal: 9 (SIGKILL)) while running the plan");
        }
        self.inner.run_tagged(plan, tags)
    }
}

#[test]
fn infrastructure_failures_are_counted_apart_and_never_shrunk() {
    let dir = scratch("infra");
    std::env::set_var("CARGO_TARGET_DIR", &dir);
    let make = || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(Flaky { inner: NativeBackend::new(), runs: 0 })) };
    let spec = FuzzSpec {
        seed: 1,
        configs: TranslationConfig::all().collect(),
        count: Some(60),
        time: None,
        shard: 1,
        shards: 1,
        label: "flaky-clean".into(),
    };
    let s = fuzz::run(&spec, 1, &make, false).unwrap();
    assert_eq!(s.failures.len(), 0, "the clean builder never fails a check");
    assert_eq!(s.unchecked.len(), 20, "every third plan");
    assert!(s.unchecked.iter().all(|u| matches!(&u.outcome, Outcome::Infrastructure(w) if w.contains("QEMU exited"))));
    assert_eq!(s.class(), Class::NotChecked);
    assert_eq!(s.plans, 60);
    assert!(!dir.join("ptcheck/repro").exists(), "no reproducer for an infrastructure failure");

    // A backend that always fails: the worker gives up after three in a row.
    struct Dead;
    impl Backend for Dead {
        fn name(&self) -> &'static str {
            "dead"
        }
        fn run_tagged(&mut self, _: &Plan, _: &[u64]) -> anyhow::Result<RunView<'_>> {
            anyhow::bail!("the guest stopped before it was ready")
        }
    }
    let make = || -> anyhow::Result<Box<dyn Backend>> { Ok(Box::new(Dead)) };
    let s = fuzz::run(&FuzzSpec { count: Some(1000), ..spec }, 1, &make, false).unwrap();
    assert_eq!((s.plans, s.checked()), (3, 0));
    assert!(s.gave_up.as_deref().is_some_and(|w| w.contains("3 infrastructure failures in a row")));
    assert_eq!(s.class(), Class::NotChecked);
}

#[test]
fn huge_counts_are_counted_not_enumerated() {
    let spec = |count, shard, shards| FuzzSpec {
        seed: 1,
        configs: vec![TranslationConfig::parse("4k-48").unwrap()],
        count,
        time: None,
        shard,
        shards,
        label: String::new(),
    };
    assert_eq!(spec(Some(u64::MAX), 1, 1).planned(), Some(u64::MAX));
    assert_eq!(spec(Some(10), 3, 4).planned(), Some(2)); // 2, 6
    assert_eq!(spec(Some(2), 3, 4).planned(), Some(0));
    let s = spec(Some(10), 3, 4);
    assert_eq!((s.nth_mine(0), s.nth_mine(1), s.nth_mine(2)), (Some(2), Some(6), None));
    assert_eq!(spec(None, 2, 2).nth_mine(u64::MAX), None, "overflow ends the run, never wraps");
}

#[test]
fn reproducers_are_never_overwritten() {
    let dir = scratch("names");
    let plan = gen::generate(1, 0, TranslationConfig::parse("4k-48").unwrap());
    let r = |fails: &str| repro::Repro {
        plan: plan.clone(),
        origin: None,
        fails: vec![fails.into()],
        outcome: None,
        builder: None,
        traced: false,
        tested: None,
    };
    let a = repro::write_repro_in(&dir, "fuzz-native-clean-4k-48-s1-i0", &r("ordering"), "").unwrap();
    let b = repro::write_repro_in(&dir, "fuzz-native-clean-4k-48-s1-i0", &r("zeroing"), "").unwrap();
    assert_ne!(a, b);
    assert!(std::fs::read_to_string(&a).unwrap().contains("fails ordering"));
    assert!(std::fs::read_to_string(&b).unwrap().contains("fails zeroing"));
    // A directory that cannot be written is an error, never an empty path.
    let blocked = dir.join("file");
    std::fs::write(&blocked, "").unwrap();
    assert!(repro::write_repro_in(&blocked, "x", &r("ordering"), "").is_err());
}

fn ptcheck(args: &[&str], target: &Path) -> (i32, String, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ptcheck"))
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .env("PTCHECK_GUEST_IMAGE", image())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text, start.elapsed())
}

#[test]
fn cli_input_never_panics_and_zero_plans_is_an_error() {
    let dir = scratch("cli");
    let cases: [(&[&str], i32, &str); 5] = [
        (&["fuzz", "--backend", "native", "--count", "0"], 2, "--count 0 checks nothing"),
        (&["fuzz", "--backend", "native", "--time", "99999999999999999h"], 2, "longer than a year"),
        (&["fuzz", "--backend", "native", "--time", "0s"], 2, "checks nothing"),
        (&["fuzz", "--backend", "native", "--jobs", "100000", "--count", "1"], 2, "not in 1..=256"),
        (&["fuzz", "--backend", "native", "--count", "18446744073709551615", "--time", "1s"], 0, "outcome: every plan"),
    ];
    for (args, rc, words) in cases {
        let (code, text, took) = ptcheck(args, &dir);
        assert_eq!(code, rc, "{args:?}: {text}");
        assert!(text.contains(words), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
    }
    // A reader that goes away: no panic, the process ends on SIGPIPE like any tool.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ptcheck"))
        .args(["fuzz", "--backend", "native", "--count", "200000", "--no-progress"])
        .env("CARGO_TARGET_DIR", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn replay_names_the_outcome_first() {
    let dir = scratch("replay");
    for (name, text, kind, words) in hostile() {
        let file = dir.join(format!("{name}.repro"));
        std::fs::write(&file, &text).unwrap();
        let (code, out, _) = ptcheck(&["replay", &file.to_string_lossy(), "--backend", "native"], &dir);
        let first = out.lines().find(|l| l.starts_with("outcome: ")).unwrap_or_default();
        assert!(first.contains(words), "{name}: {out}");
        assert_eq!(code, if matches!(kind, "bug" | "done") { 0 } else { 2 }, "{name}: {out}");
    }
}

/// A broken setup is one line naming the cause, exit 2, within seconds; no plan runs
/// and no reproducer is written.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn broken_setups_fail_before_any_plan() {
    let dir = scratch("setup");
    let not_elf = dir.join("not-elf");
    std::fs::write(&not_elf, b"#!/bin/sh\necho this is no guest\n").unwrap();
    let truncated = dir.join("truncated.elf");
    std::fs::write(&truncated, &std::fs::read(image()).unwrap()[..3000]).unwrap();
    let (ne, tr) = (not_elf.to_string_lossy().into_owned(), truncated.to_string_lossy().into_owned());
    let fuzz = ["fuzz", "--backend", "qemu", "--config", "4k-48", "--count", "5"];
    let cases: [(Vec<&str>, &str); 5] = [
        ([&fuzz[..], &["--guest", &ne]].concat(), "is not an ELF file"),
        ([&fuzz[..], &["--guest", &tr]].concat(), "rebuild it with `cargo xtask build-guest`"),
        ([&fuzz[..], &["--cpu", "bogus"]].concat(), "unable to find CPU model 'bogus'"),
        ([&fuzz[..], &["--timeout", "0"]].concat(), "0 is not in 1..=86400"),
        (vec!["run", "--backend", "qemu", "--config", "4k-48", "--cpu", "bogus"], "unable to find CPU model"),
    ];
    for (args, words) in cases {
        let (code, text, took) = ptcheck(&args, &dir);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains(words), "{args:?}: {text}");
        assert!(!text.contains("FAIL") && !text.contains("reproducer"), "{args:?}: {text}");
        assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
    }
    assert!(!dir.join("ptcheck/repro").exists(), "no reproducers for a broken setup");
}

/// QEMU stopped (SIGSTOP) under a running backend: the plan is `infrastructure`
/// (the watchdog fired), not a builder failure; QEMU killed (SIGKILL) between plans:
/// the next plan says so (`infrastructure`, never silent). Either way the plan after
/// that boots a fresh guest and passes.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn stopped_or_killed_qemu_is_infrastructure_and_the_next_plan_recovers() {
    let mut opts = QemuOptions::new(image());
    opts.policy.plan_timeout = Duration::from_secs(1);
    let mut b = qemu::backend(opts).unwrap();
    let cfg = TranslationConfig::parse("4k-48").unwrap();
    let mut plans = ptcheck_host::plans::builtin(cfg).into_iter().map(|np| np.plan);
    assert!(run_and_verify(&mut b, &plans.next().unwrap(), 1).passed());
    let pid = b.vm.pid().expect("QEMU runs") as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    // A signal lands asynchronously: wait until every QEMU thread is stopped ('T').
    let stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('T'))
        })
    };
    let t = Instant::now();
    while !stopped() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(stopped(), "QEMU {pid} did not stop");
    let o = run_and_verify(&mut b, &plans.next().unwrap(), 1);
    assert_eq!(o.outcome.kind(), "infrastructure", "{}", o.describe());
    assert!(o.outcome.to_string().contains("did not answer within 1s"), "{}", o.outcome);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the stopped QEMU {pid} was killed and reaped");
    assert!(run_and_verify(&mut b, &plans.next().unwrap(), 1).passed());
    let pid = b.vm.pid().expect("QEMU runs again") as i32;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    let o = run_and_verify(&mut b, &plans.next().unwrap(), 1);
    assert_eq!(o.outcome.kind(), "infrastructure", "{}", o.describe());
    assert!(o.outcome.to_string().contains("between plans"), "{}", o.outcome);
    let o = run_and_verify(&mut b, &plans.next().unwrap(), 1);
    assert!(o.passed(), "{}", o.describe());
    assert_eq!(b.boots, 3);
}

/// The grandchildren of `pid` named qemu-system-aarch64.
fn qemu_children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            if comm.trim().starts_with("qemu-system") {
                out.push(c);
            }
        }
    }
    out
}

/// `ptcheck fuzz` on QEMU with QEMU killed under it: the plan in flight is counted
/// as infrastructure with its cause, fuzzing goes on on a fresh guest, the run exits
/// 2, and no reproducer is written.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn fuzz_survives_a_killed_qemu_and_says_so() {
    let dir = scratch("killed");
    let child = Command::new(env!("CARGO_BIN_EXE_ptcheck"))
        .args(["fuzz", "--backend", "qemu", "--config", "all", "--time", "6s", "--no-progress"])
        .env("CARGO_TARGET_DIR", &dir)
        .env("PTCHECK_GUEST_IMAGE", image())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut killed = 0;
    let start = Instant::now();
    while killed < 2 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1500));
        for q in qemu_children(child.id()) {
            // SAFETY: kill(2) on a process of this test's own child.
            if unsafe { libc::kill(q, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(killed >= 1, "never found QEMU to kill: {text}");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("not checked") && text.contains("infrastructure qemu backend"), "{text}");
    assert!(text.contains("QEMU exited"), "{text}");
    assert!(text.contains("0 failures"), "a killed QEMU is never the builder's failure: {text}");
    assert!(!dir.join("ptcheck/repro").exists(), "no reproducer for a killed QEMU: {text}");
}

/// `--junit`: one test case per plan and regime; a failing plan is a `failure` with
/// the failing check as its message, and the exit code says the builder failed.
#[test]
fn junit_lists_every_plan_and_names_failures() {
    let dir = scratch("junit");
    let xml = dir.join("r.xml");
    let json = dir.join("r.json");
    let (code, text, _) = ptcheck(
        &[
            "run",
            "--backend",
            "native",
            "--config",
            "4k-48",
            "--inject-wrong-expectation",
            "--junit",
            &xml.to_string_lossy(),
            "--report",
            &json.to_string_lossy(),
        ],
        &dir,
    );
    assert_eq!(code, 1, "{text}");
    let xml = std::fs::read_to_string(&xml).unwrap();
    let plans = ptcheck_host::plans::builtin(TranslationConfig::parse("4k-48").unwrap()).len();
    assert_eq!(xml.matches("<testcase ").count(), plans, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.contains("<failure message=\"[translation]"), "{xml}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["configs"][0]["failed"], 1);
    let outcomes = &report["configs"][0]["outcomes"];
    let n = |k: &str| outcomes[k].as_u64().unwrap_or(0) as usize;
    assert_eq!(n("done") + n("bug"), plans, "{outcomes}");
    assert!(n("bug") >= 6, "the built-in forbidden remaps end in a BUG: {outcomes}");
}

/// Every report says what it tested: the JSON's `tested` block and the JUnit
/// properties name ptcheck, the command, backend, builder, CPU and date.
#[test]
fn reports_say_what_they_tested() {
    let dir = scratch("tested");
    let (xml, json) = (dir.join("r.xml"), dir.join("r.json"));
    let args = ["run", "--backend", "native", "--builder", "linux-6.9", "--config", "16k-47", "--junit"];
    let (code, text, _) =
        ptcheck(&[&args[..], &[&*xml.to_string_lossy(), "--report", &json.to_string_lossy()]].concat(), &dir);
    assert_eq!(code, 0, "{text}");
    let report: ptcheck_host::tested::Tested = {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        serde_json::from_value(v["tested"].clone()).unwrap()
    };
    assert_eq!((report.command.as_str(), report.backend.as_str()), ("run", "native"));
    assert_eq!(report.builder, "linux-6.9");
    assert!(report.ptcheck.starts_with("ptcheck ") && report.date.ends_with('Z'), "{report:?}");
    assert_eq!(report.qemu, None, "native runs no QEMU");
    let xml = std::fs::read_to_string(&xml).unwrap();
    for (k, v) in report.pairs() {
        assert!(xml.contains(&format!("<property name=\"{k}\" value=\"{v}\"/>")), "{k} missing: {xml}");
    }
}

/// A plan as long as a big server's memblock: 4096 operations (here one page each, in
/// different 2 MiB regions) is checked whole on native and QEMU.
#[test]
#[ignore = "needs the guest image and QEMU: run by `cargo xtask test`"]
fn four_thousand_operations_are_checked_whole() {
    let cfg = TranslationConfig::parse("4k-48").unwrap();
    let mut plan: Box<Plan> = bytemuck::zeroed_box();
    *plan = Plan::new(cfg);
    plan.plan_id = 4096;
    plan.push_pool(0x4400_0000, 0x400_0000);
    for i in 0..ptcheck_shared::abi::MAX_OPS as u64 {
        let op = ptcheck_shared::abi::MapOp {
            va: cfg.va_start() + i * (2 << 20),
            pa: 0x8000_0000 + i * 4096,
            size: 4096,
            prot: KERNEL,
            flags: 0,
        };
        assert!(plan.push_op(op));
    }
    assert!(!plan.push_op(plan.ops[0]), "MAX_OPS is the limit");
    let mut q = qemu::backend(QemuOptions::new(image())).unwrap();
    for b in [&mut NativeBackend::new() as &mut dyn Backend, &mut q] {
        let o = run_and_verify(b, &plan, 1);
        assert!(o.passed(), "{}: {}", b.name(), o.describe());
    }
}
