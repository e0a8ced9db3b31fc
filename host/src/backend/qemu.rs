//! The QEMU backend: the guest image runs under `qemu-system-aarch64 -M virt -cpu max`
//! in software emulation, with guest RAM shared through a memfd.
//!
//! Persistent mode (the default) boots once and sends every plan through the mailbox;
//! boot-per-plan mode starts a fresh QEMU for each plan (only for measuring the cost).

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use ptcheck_shared::abi::layout::RAM_SIZE;

use super::console::{append, tail};
use super::guest_ram::GuestRam;
use super::vm::{Vm, VmBackend, VmPolicy};

/// Everything the QEMU backend needs to know.
#[derive(Clone, Debug)]
pub struct QemuOptions {
    /// The emulator binary.
    pub qemu: PathBuf,
    /// The guest ELF (`cargo xtask build-guest`).
    pub guest_image: PathBuf,
    /// `-cpu` model.
    pub cpu: String,
    /// Timeouts, and persistent or boot-per-plan (the same policy every VM has).
    pub policy: VmPolicy,
    /// Trace every build with the tracer plugin (`--trace`): its QEMU replaces `qemu`.
    pub trace: Option<crate::trace::TraceSetup>,
}

impl QemuOptions {
    /// Defaults: `qemu-system-aarch64` from PATH, `-cpu max`, persistent.
    pub fn new(guest_image: PathBuf) -> Self {
        QemuOptions {
            qemu: PathBuf::from("qemu-system-aarch64"),
            guest_image,
            cpu: "max".into(),
            policy: VmPolicy::default(),
            trace: None,
        }
    }
}

/// Make the child get SIGKILL when this process dies (panic, Ctrl-C, kill -9), so no
/// emulator outlives its runner.
pub fn die_with_parent(cmd: &mut Process) {
    // SAFETY: prctl is async-signal-safe, the only call made between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Find `name` on PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A running QEMU; killed and reaped on drop.
struct Running {
    child: Child,
    console: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copy what QEMU and the guest console print into `into`.
fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            append(&into, &String::from_utf8_lossy(&buf[..n]));
        }
    });
}

/// Runs the guest image in `qemu-system-aarch64`.
pub struct QemuVm {
    opts: QemuOptions,
    running: Option<Running>,
    /// The tracer's output, followed plan by plan (when traced).
    trace: Option<crate::trace::Follower>,
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        self.kill();
        if let Some(t) = &self.trace {
            let _ = std::fs::remove_file(t.path());
        }
    }
}

/// The backend: plans through the mailbox of a QEMU guest.
pub type QemuBackend = VmBackend<QemuVm>;

impl QemuVm {
    /// Check the emulator and image exist; nothing starts yet.
    ///
    /// # Errors
    /// Missing QEMU or guest image, with the command that fixes it.
    pub fn new(mut opts: QemuOptions) -> anyhow::Result<Self> {
        if let Some(t) = &opts.trace {
            opts.qemu = t.qemu.clone();
        }
        if !opts.qemu.is_file() {
            let Some(found) = find_in_path(&opts.qemu.to_string_lossy()) else {
                bail!("{} not found: install it with `apt-get install qemu-system-arm`", opts.qemu.display());
            };
            opts.qemu = found;
        }
        if !opts.guest_image.is_file() {
            bail!("guest image {} not found: build it with `cargo xtask build-guest`", opts.guest_image.display());
        }
        // QEMU would take anything as a raw image and wait forever: check it first.
        super::elf::inspect(&opts.guest_image)?;
        let trace = opts.trace.as_ref().map(|_| {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::trace::Follower::new(
                std::env::temp_dir().join(format!("ptcheck-trace-{}-{n}.jsonl", std::process::id())),
            )
        });
        Ok(QemuVm { opts, running: None, trace })
    }

    /// The process id of the running QEMU, if any.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }
}

/// The QEMU backend for `opts`.
///
/// # Errors
/// Missing QEMU or guest image, or guest RAM that cannot be set up.
pub fn backend(opts: QemuOptions) -> anyhow::Result<QemuBackend> {
    let policy = opts.policy;
    VmBackend::new(QemuVm::new(opts)?, policy)
}

impl Vm for QemuVm {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn start(&mut self, ram: &GuestRam) -> anyhow::Result<()> {
        self.kill();
        let mem = format!("memory-backend-file,id=mem,size={RAM_SIZE},mem-path={},share=on", ram.child_path());
        let mut cmd = Process::new(&self.opts.qemu);
        crate::trace::use_own_files(&mut cmd, &self.opts.qemu);
        if let (Some(t), Some(f)) = (&self.opts.trace, &mut self.trace) {
            use ptcheck_shared::abi::layout::{POOL_END, POOL_HIGH_END, POOL_HIGH_START, POOL_START, RAM_BASE};
            f.rewind();
            let arg = t.plugin_arg(&crate::trace::PluginArgs {
                out: f.path(),
                ram: &ram.child_path(),
                ram_base: RAM_BASE,
                ram_size: RAM_SIZE,
                page_shift: 12,
                tables: &[(POOL_START, POOL_END), (POOL_HIGH_START, POOL_HIGH_END)],
                links_all: true,
            })?;
            cmd.arg("-plugin").arg(arg);
        }
        // -m must equal the backend size (QEMU 7.2 refuses to start otherwise).
        cmd.args(["-M", "virt,memory-backend=mem", "-m", &format!("{}M", RAM_SIZE >> 20)])
            .args(["-cpu", &self.opts.cpu, "-smp", "1", "-object", &mem])
            .args(["-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot", "-serial", "stdio"])
            .arg("-kernel")
            .arg(&self.opts.guest_image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", self.opts.qemu.display()))?;
        let console = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("stdout is piped"), console.clone());
        collect(child.stderr.take().expect("stderr is piped"), console.clone());
        self.running = Some(Running { child, console });
        Ok(())
    }

    fn stopped(&mut self) -> Option<String> {
        let r = self.running.as_mut()?;
        match r.child.try_wait() {
            Ok(Some(status)) => Some(format!("QEMU exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait for QEMU: {e}")),
        }
    }

    fn kill(&mut self) {
        // Dropping `Running` kills and reaps the process.
        self.running = None;
    }

    fn is_running(&self) -> bool {
        self.running.is_some()
    }

    fn describe(&self) -> String {
        self.pid().map_or("QEMU".into(), |pid| format!("QEMU (pid {pid})"))
    }

    fn console_tail(&self) -> String {
        self.running.as_ref().map(|r| tail(&r.console)).unwrap_or_default()
    }

    fn traced(&self) -> bool {
        self.trace.is_some()
    }

    fn take_observed(&mut self) -> Option<Result<crate::trace::Observed, String>> {
        self.trace.as_mut().map(crate::trace::Follower::last_bracket)
    }

    fn qemu_binary(&self) -> Option<std::path::PathBuf> {
        Some(self.opts.qemu.clone())
    }

    fn cpu(&self) -> String {
        self.opts.cpu.clone()
    }
}
