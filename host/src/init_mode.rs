//! `ptcheck` as `/init` of the small arm64 Linux that `cargo xtask nested-kvm` boots:
//! mount devtmpfs (for /dev/kvm), run the whole matrix on the KVM backend with the
//! guest image at `/guest.elf`, print the JSON report between markers on the console,
//! power off. QEMU exits 0 whatever happened, so the host decides from the report.
//!
//! `ptcheck_self_test=wrong-expectation` on the kernel command line (passed to init as
//! an environment variable) adds the wrong-expectation self-test.

use std::path::PathBuf;

use ptcheck_shared::abi::{NESTED_REPORT_BEGIN as REPORT_BEGIN, NESTED_REPORT_END as REPORT_END};

/// Whether this process is PID 1 started as /init.
pub fn is_init() -> bool {
    std::process::id() == 1 && std::env::args().next().is_some_and(|a| a.ends_with("init"))
}

#[cfg(target_os = "linux")]
fn mount(source: &str, target: &str, fstype: &str) {
    use std::ffi::CString;
    let _ = std::fs::create_dir_all(target);
    let (s, t, f) = (CString::new(source).unwrap(), CString::new(target).unwrap(), CString::new(fstype).unwrap());
    // SAFETY: valid NUL-terminated strings; a failed mount is reported, not fatal
    // (the archive also carries the device nodes).
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        println!("ptcheck init: mount {fstype} on {target}: {}", std::io::Error::last_os_error());
    }
}

#[cfg(target_os = "linux")]
fn power_off() -> ! {
    // SAFETY: sync and reboot(POWER_OFF) as PID 1 at the end of the run.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    std::process::exit(0)
}

/// The VM backend's failure paths, for real: a guest that never answers must be
/// ended by the watchdog, and a plan that makes the guest touch memory that is not RAM
/// must fail with the address named. Each is (name, passed, what happened).
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
fn vm_checks() -> Vec<(String, bool, String)> {
    use ptcheck_host::backend::vm::{VmError, VmPolicy};
    use ptcheck_shared::abi::{MapOp, Plan};
    use ptcheck_shared::{Prot, TranslationConfig};
    let mut out = Vec::new();
    let policy = VmPolicy { plan_timeout: std::time::Duration::from_secs(10), ..VmPolicy::default() };
    let mut b = match ptcheck_host::backend::kvm::backend(PathBuf::from("/guest.elf"), policy) {
        Ok(b) => b,
        Err(e) => return vec![("kvm backend".into(), false, format!("{e:#}"))],
    };
    let started = std::time::Instant::now();
    let hang = b.hang(std::time::Duration::from_secs(3));
    let msg = hang.as_ref().err().map(|e| format!("{e:#}")).unwrap_or_else(|| "the guest answered".into());
    let first = msg.lines().next().unwrap_or("").to_string();
    let hung = hang.as_ref().err().and_then(|e| e.downcast_ref::<VmError>());
    let ok = matches!(hung, Some(VmError::Hung { after, killed, .. })
        if after.as_secs() == 3 && killed == "the KVM vCPU thread")
        && started.elapsed().as_secs() < 10;
    println!("ptcheck init: watchdog: {first} ({:.1}s)", started.elapsed().as_secs_f64());
    out.push(("watchdog".into(), ok, first));
    let cfg = TranslationConfig::parse("4k-48").expect("known config");
    let mut plan = Plan::new(cfg);
    plan.plan_id = 77;
    plan.push_pool(0x10_0000_0000, 16 * cfg.page_size());
    plan.push_op(MapOp { va: cfg.va_start(), pa: 0x8000_0000, size: cfg.page_size(), prot: Prot::KERNEL.0, flags: 0 });
    // Straight to the backend: plan validation would (rightly) refuse a pool outside
    // the pool window before the guest ever touched it.
    use ptcheck_host::backend::Backend as _;
    let (named, first) = match b.run(&plan) {
        Err(e) => match e.downcast_ref::<VmError>() {
            Some(VmError::Died { why, idle: false, .. }) => (why.contains("0x1000000000"), why.clone()),
            _ => (false, format!("{e:#}").lines().next().unwrap_or("").to_string()),
        },
        Ok(view) => (false, format!("status {} FAR {:#x}", view.result.status, view.result.exception.far)),
    };
    println!("ptcheck init: non-RAM access: {first}");
    out.push(("non-ram access".into(), named, first));
    out
}

#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
fn vm_checks() -> Vec<(String, bool, String)> {
    Vec::new()
}

/// The kernel's release and the addresses of the symbols the real-kernel checks use
/// (`linux::symbols::WANTED`), one `PTCHECK-SYM name addr` line each, read from
/// /proc/kallsyms (PID 1 is root, so the addresses are real).
#[cfg(target_os = "linux")]
fn print_kernel_facts() {
    use ptcheck_host::linux::symbols::{
        COSTS, EARLY_MAP_RANGE, IOMEM_PREFIX, RELEASE_PREFIX, SYMBOL_PREFIX, VMEMMAP_POPULATE, WANTED,
    };
    use std::io::BufRead as _;
    if let Ok(r) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        println!("{RELEASE_PREFIX} {}", r.trim());
    }
    // "Kernel code" and "Kernel data" (physical): the image's sections for kernels
    // whose kallsyms lists text symbols only (no CONFIG_KALLSYMS_ALL).
    if let Ok(iomem) = std::fs::read_to_string("/proc/iomem") {
        for line in iomem.lines() {
            let (range, name) = line.trim().split_once(" : ").unwrap_or(("", ""));
            if let (Some((a, b)), "Kernel code" | "Kernel data") = (range.split_once('-'), name) {
                println!("{IOMEM_PREFIX} {} {a} {b}", name.replace(' ', "_"));
            }
        }
    }
    let Ok(f) = std::fs::File::open("/proc/kallsyms") else {
        println!("ptcheck init: cannot read /proc/kallsyms: the image checks will say so");
        return;
    };
    let mut found = std::collections::BTreeMap::new();
    // A wanted function's end is the next symbol's address (kallsyms lists text in
    // address order): printed as `name.end`.
    let mut open: Option<(String, u64)> = None;
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        let mut it = line.split_whitespace();
        let (Some(addr), Some(_kind), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
        let a = u64::from_str_radix(addr, 16).unwrap_or(0);
        if let Some((n, _)) = open.take_if(|(_, start)| a > *start) {
            found.entry(format!("{n}.end")).or_insert_with(|| addr.to_string());
        }
        if it.next().is_none()
            && (WANTED.contains(&name)
                || VMEMMAP_POPULATE.contains(&name)
                || COSTS.contains(&name)
                || name == EARLY_MAP_RANGE)
        {
            found.entry(name.to_string()).or_insert_with(|| addr.to_string());
            open = Some((name.to_string(), a));
        }
    }
    for (name, addr) in found {
        println!("{SYMBOL_PREFIX} {name} {addr}");
    }
}

/// Run as init; never returns.
#[cfg(target_os = "linux")]
pub fn main() -> ! {
    use ptcheck_host::backend::open::{open, BackendOptions};
    use ptcheck_host::backend::vm::VmPolicy;
    use ptcheck_host::fuzz::command::{fuzz, FuzzCommand};
    use ptcheck_host::matrix::{run_matrix, MatrixOptions};
    use ptcheck_shared::TranslationConfig;
    mount("devtmpfs", "/dev", "devtmpfs");
    mount("proc", "/proc", "proc");
    // Test fixtures for the crash naming: a kernel that resets or powers off before
    // its init is up (what a reboot loop or a stray power-off looks like from outside).
    match std::env::var("ptcheck_mode").as_deref() {
        Ok("reboot") => {
            // SAFETY: reboot(2) with a valid command; it does not return on success.
            unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_RESTART) };
        }
        Ok("poweroff") => {
            // SAFETY: as above.
            unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF) };
        }
        _ => {}
    }
    if std::env::var("ptcheck_mode").is_ok_and(|m| m == "marker") {
        // A real kernel under test: name the kernel and where its image sections are
        // (the host checks their mappings), say userspace runs, then wait to be stopped.
        print_kernel_facts();
        println!("{}", ptcheck_host::linux::UP_MARKER);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    let self_test = std::env::var("ptcheck_self_test").is_ok_and(|v| v == "wrong-expectation");
    println!(
        "ptcheck init: running the matrix on KVM{}",
        if self_test { " with the wrong-expectation self-test" } else { "" }
    );
    let backend = BackendOptions {
        guest: Some(PathBuf::from("/guest.elf")),
        policy: VmPolicy { plan_timeout: std::time::Duration::from_secs(120), ..VmPolicy::default() },
        ..BackendOptions::default()
    };
    let configs: Vec<TranslationConfig> = TranslationConfig::all().collect();
    let report = open(&backend).map(|(mut b, why)| {
        println!("backend: {} ({why})", b.name());
        let label = backend.label(b.name());
        run_matrix(
            b.as_mut(),
            &MatrixOptions { configs: configs.clone(), inject_wrong_expectation: self_test, label, pictures: false },
        )
    });
    match report {
        Ok(mut report) => {
            let cmd = FuzzCommand {
                plans: ptcheck_host::fuzz::FuzzSpec {
                    seed: 1,
                    configs,
                    count: Some(260),
                    time: None,
                    shard: 1,
                    shards: 1,
                    label: String::new(),
                },
                jobs: None,
                progress: false,
                differential: None,
                report: None,
            };
            match fuzz(&cmd, &backend) {
                Ok(s) => report.fuzz = Some(ptcheck_host::report::fuzz_line(&s)),
                Err(e) => println!("ptcheck init: fuzz error: {e:#}"),
            }
            report.vm_checks = vm_checks();
            let json = serde_json::to_string(&report.json).unwrap_or_default();
            println!("{REPORT_BEGIN}\n{json}\n{REPORT_END}");
        }
        Err(e) => println!("ptcheck init: error: {e:#}"),
    }
    power_off()
}
