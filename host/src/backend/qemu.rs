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
use std::time::Duration;

use anyhow::{bail, Context as _};
use ptcheck_shared::abi::layout::RAM_SIZE;
use ptcheck_shared::abi::mailbox::Command;
use ptcheck_shared::abi::{Plan, RunResult, Status};

use super::guest_ram::GuestRam;
use super::mailbox::{self, Wait};
use super::{Backend, RunView};

/// How plans reach the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuMode {
    /// One boot serves many plans through the mailbox.
    Persistent,
    /// A fresh QEMU per plan.
    BootPerPlan,
}

/// Everything the QEMU backend needs to know.
#[derive(Clone, Debug)]
pub struct QemuOptions {
    /// The emulator binary.
    pub qemu: PathBuf,
    /// The guest ELF (`cargo xtask build-guest`).
    pub guest_image: PathBuf,
    /// `-cpu` model.
    pub cpu: String,
    /// How long one plan may take before the guest counts as hung.
    pub plan_timeout: Duration,
    /// How long boot may take.
    pub boot_timeout: Duration,
    /// Persistent or boot-per-plan.
    pub mode: QemuMode,
}

impl QemuOptions {
    /// Defaults: `qemu-system-aarch64` from PATH, `-cpu max`, persistent.
    pub fn new(guest_image: PathBuf) -> Self {
        QemuOptions {
            qemu: PathBuf::from("qemu-system-aarch64"),
            guest_image,
            cpu: "max".into(),
            plan_timeout: Duration::from_secs(30),
            boot_timeout: Duration::from_secs(20),
            mode: QemuMode::Persistent,
        }
    }
}

/// Find `name` on PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A running QEMU; killed and reaped on drop.
struct Vm {
    child: Child,
    console: Arc<Mutex<String>>,
}

impl Vm {
    /// `Some(reason)` once QEMU has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("QEMU exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait for QEMU: {e}")),
        }
    }

    fn console_tail(&self) -> String {
        let text = self.console.lock().map(|c| c.clone()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keep the last 64 KiB of what QEMU and the guest console print.
fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = into.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 65536 {
                    let cut = s.len() - 65536;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
                    s.drain(..cut);
                }
            }
        }
    });
}

/// Runs plans in an emulated arm64 guest.
pub struct QemuBackend {
    opts: QemuOptions,
    ram: GuestRam,
    vm: Option<Vm>,
    seq: u64,
    result: Box<RunResult>,
    /// Boots so far (for benchmarks and tests).
    pub boots: u64,
}

impl QemuBackend {
    /// Check the emulator and image exist; boot lazily on the first plan.
    ///
    /// # Errors
    /// Missing QEMU or guest image, or guest RAM that cannot be set up.
    pub fn new(mut opts: QemuOptions) -> anyhow::Result<Self> {
        if !opts.qemu.is_file() {
            let Some(found) = find_in_path(&opts.qemu.to_string_lossy()) else {
                bail!("{} not found: install it with `apt-get install qemu-system-arm`", opts.qemu.display());
            };
            opts.qemu = found;
        }
        if !opts.guest_image.is_file() {
            bail!("guest image {} not found: build it with `cargo xtask build-guest`", opts.guest_image.display());
        }
        Ok(QemuBackend { opts, ram: GuestRam::new()?, vm: None, seq: 0, result: bytemuck::zeroed_box(), boots: 0 })
    }

    /// The console of the current (or last) guest, for diagnostics.
    pub fn console_tail(&self) -> String {
        self.vm.as_ref().map(Vm::console_tail).unwrap_or_default()
    }

    fn boot(&mut self) -> anyhow::Result<()> {
        self.vm = None;
        mailbox::reset(&self.ram)?;
        self.seq = 0;
        let mem = format!("memory-backend-file,id=mem,size={RAM_SIZE},mem-path={},share=on", self.ram.child_path());
        let mut cmd = Process::new(&self.opts.qemu);
        cmd.args(["-M", "virt,memory-backend=mem", "-m", &format!("{}M", RAM_SIZE >> 20)])
            .args(["-cpu", &self.opts.cpu, "-smp", "1", "-object", &mem])
            .args(["-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot", "-serial", "stdio"])
            .arg("-kernel")
            .arg(&self.opts.guest_image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill QEMU if we die
        // (panic, Ctrl-C, kill -9), so no emulator outlives its runner.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", self.opts.qemu.display()))?;
        let console = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("stdout is piped"), console.clone());
        collect(child.stderr.take().expect("stderr is piped"), console.clone());
        let mut vm = Vm { child, console };
        self.boots += 1;
        if let Err(e) = mailbox::wait_ready(&self.ram, self.opts.boot_timeout, || vm.exited()) {
            let tail = vm.console_tail();
            bail!("{e}\n--- guest console ---\n{tail}");
        }
        self.vm = Some(vm);
        Ok(())
    }

    /// Send `command` and wait for the answer.
    fn request(&mut self, command: Command, timeout: Duration) -> anyhow::Result<Wait> {
        let vm = self.vm.as_mut().expect("booted");
        self.seq += 1;
        mailbox::submit(&self.ram, self.seq, command)?;
        match mailbox::wait_response(&self.ram, self.seq, timeout, || vm.exited()) {
            Ok(w) => Ok(w),
            Err(e) => {
                let tail = vm.console_tail();
                let pid = vm.child.id();
                self.vm = None; // kills and reaps QEMU
                bail!("{e}: guest hung, killed QEMU (pid {pid})\n--- guest console ---\n{tail}")
            }
        }
    }

    /// Ask the guest to spin forever, then wait `timeout`: proves the watchdog.
    ///
    /// # Errors
    /// Always, once the watchdog fires (or if the guest cannot boot).
    pub fn hang(&mut self, timeout: Duration) -> anyhow::Result<()> {
        if self.vm.is_none() {
            self.boot()?;
        }
        self.request(Command::Hang, timeout).map(|_| ())
    }

    /// The process id of the running QEMU, if any.
    pub fn pid(&self) -> Option<u32> {
        self.vm.as_ref().map(|v| v.child.id())
    }

    /// Power the guest off and wait for QEMU to exit.
    pub fn shutdown(&mut self) {
        if self.vm.is_some() {
            let _ = self.request(Command::PowerOff, Duration::from_secs(5));
            if let Some(vm) = self.vm.as_mut() {
                for _ in 0..500 {
                    if vm.exited().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            self.vm = None;
        }
    }
}

impl Drop for QemuBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Backend for QemuBackend {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn has_mmu(&self) -> bool {
        true
    }

    fn run_tagged(&mut self, plan: &Plan, tag_pages: &[u64]) -> anyhow::Result<RunView<'_>> {
        let alive = self.vm.as_mut().is_some_and(|vm| vm.exited().is_none());
        if !alive {
            self.boot()?;
        }
        mailbox::prepare(&self.ram, plan, tag_pages)?;
        match self.request(Command::RunPlan, self.opts.plan_timeout)? {
            Wait::Answered => {}
            Wait::Gone(why) => {
                let tail = self.console_tail();
                self.vm = None;
                bail!("{why} while running the plan\n--- guest console ---\n{tail}");
            }
        }
        mailbox::read_result(&self.ram, &mut self.result)?;
        // After an exception the guest powers itself off; boot-per-plan always does.
        if self.result.status() == Some(Status::Exception) || self.opts.mode == QemuMode::BootPerPlan {
            self.shutdown();
        }
        Ok(RunView { result: &self.result, ram: &self.ram })
    }
}
