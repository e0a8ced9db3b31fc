//! The KVM backend (aarch64 Linux only): ptcheck is its own small VMM on
//! kvm-ioctls / kvm-bindings / vm-memory. No QEMU, no GIC: the guest takes no
//! interrupts; its console is MMIO to the UART address (an exit per byte), and
//! PSCI SYSTEM_OFF / SYSTEM_RESET arrive as system events.

mod regs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use kvm_bindings::{
    kvm_enable_cap, kvm_userspace_memory_region, kvm_vcpu_init, KVM_ARM_VCPU_PSCI_0_2, KVM_CAP_ARM_NISV_TO_USER,
    KVM_EXIT_ARM_NISV, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use ptcheck_shared::abi::layout::{RAM_BASE, RAM_SIZE};

use super::console::{append, tail};
use super::elf;
use super::guest_ram::GuestRam;
use super::vm::{Vm, VmBackend, VmPolicy};

/// The guest's console: PL011 data register page of QEMU `virt`, which the guest
/// also uses under KVM. Nothing backs it, so every access is an MMIO exit.
use ptcheck_shared::abi::layout::UART_PA as UART_PAGE;

/// The signal that kicks the vCPU thread out of KVM_RUN (EINTR).
fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Install a no-op handler for the kick signal: its only job is to interrupt KVM_RUN.
fn install_kick_handler() -> anyhow::Result<()> {
    // SAFETY: sigaction with a zeroed struct, a handler that does nothing, and an
    // empty mask; the handler is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) != 0 {
            bail!("sigaction: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// KVM_CREATE_VM may fail with EINTR on a loaded host: try again.
fn create_vm(kvm: &Kvm) -> anyhow::Result<VmFd> {
    for _ in 0..20 {
        match kvm.create_vm() {
            Ok(vm) => return Ok(vm),
            Err(e) if e.errno() == libc::EINTR => continue,
            Err(e) => return Err(anyhow!("KVM_CREATE_VM failed: {e}")),
        }
    }
    bail!("KVM_CREATE_VM kept failing with EINTR")
}

/// A vCPU thread's end: why it stopped, and the vCPU to reuse.
struct Stopped {
    vcpu: VcpuFd,
    why: String,
}

/// A running vCPU thread.
struct Running {
    handle: JoinHandle<Stopped>,
    stop: Arc<AtomicBool>,
    thread: Arc<AtomicU64>,
}

/// ptcheck's VMM: one VM, one vCPU, reused across boots (`vcpu_init` resets it).
pub struct KvmVm {
    guest_image: PathBuf,
    _vm: VmFd,
    init: kvm_vcpu_init,
    idle: Option<VcpuFd>,
    running: Option<Running>,
    finished: Option<String>,
    console: Arc<Mutex<String>>,
}

/// The backend: plans through the mailbox of a KVM guest.
pub type KvmBackend = VmBackend<KvmVm>;

/// Check that this host's KVM accepts an arm64 vCPU; `Err` says why not.
///
/// # Errors
/// No /dev/kvm, or KVM refuses the VM or the vCPU.
pub fn probe() -> anyhow::Result<()> {
    let kvm = Kvm::new().context("cannot open /dev/kvm")?;
    let vm = create_vm(&kvm)?;
    let mut init = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut init).context("KVM_ARM_PREFERRED_TARGET failed")?;
    let vcpu = vm.create_vcpu(0).context("KVM_CREATE_VCPU failed")?;
    vcpu.vcpu_init(&init).context("KVM_ARM_VCPU_INIT failed")?;
    Ok(())
}

/// The KVM backend for `guest_image`.
///
/// # Errors
/// KVM cannot create the VM or vCPU, guest RAM cannot be registered, no image.
pub fn backend(guest_image: PathBuf, policy: VmPolicy) -> anyhow::Result<KvmBackend> {
    if !guest_image.is_file() {
        bail!("guest image {} not found: build it with `cargo xtask build-guest`", guest_image.display());
    }
    install_kick_handler()?;
    let kvm = Kvm::new().context("cannot open /dev/kvm")?;
    let vm = create_vm(&kvm)?;
    // KVM_CAP_ARM_NISV_TO_USER: an access outside every memslot by an instruction KVM
    // cannot decode (a store pair, say) exits with its address (KVM_EXIT_ARM_NISV)
    // instead of failing KVM_RUN with ENOSYS. Older kernels lack it: then ENOSYS.
    if kvm.check_extension_raw(u64::from(KVM_CAP_ARM_NISV_TO_USER)) > 0 {
        let cap = kvm_enable_cap { cap: KVM_CAP_ARM_NISV_TO_USER, ..Default::default() };
        vm.enable_cap(&cap).context("KVM_ENABLE_CAP(KVM_CAP_ARM_NISV_TO_USER) failed")?;
    }
    let ram = GuestRam::new()?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: RAM_BASE,
        memory_size: RAM_SIZE,
        userspace_addr: ram.host_address(),
    };
    // SAFETY: the region is the mapping `ram` owns; it lives as long as the backend,
    // which also owns the VM (fields drop VM first: `vm` is declared before `ram`).
    unsafe { vm.set_user_memory_region(region) }.context("KVM_SET_USER_MEMORY_REGION failed")?;
    let mut init = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut init).context("KVM_ARM_PREFERRED_TARGET failed")?;
    init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    let vcpu = vm.create_vcpu(0).context("KVM_CREATE_VCPU failed")?;
    let kvm_vm = KvmVm {
        guest_image,
        _vm: vm,
        init,
        idle: Some(vcpu),
        running: None,
        finished: None,
        console: Arc::new(Mutex::new(String::new())),
    };
    VmBackend::with_ram(kvm_vm, ram, policy)
}

/// What one exit means for the run loop.
enum Next {
    Continue,
    Stop(String),
    /// KVM_EXIT_ARM_NISV: the address is in `kvm_run`, read once the exit is released.
    NotRam,
}

fn not_ram(addr: u64) -> String {
    format!("the guest accessed {addr:#x}, which is neither RAM nor the console")
}

fn handle_exit(exit: VcpuExit<'_>, console: &Mutex<String>) -> Next {
    match exit {
        VcpuExit::MmioWrite(addr, data) if addr & !0xfff == UART_PAGE => {
            if addr == UART_PAGE {
                append(console, &String::from_utf8_lossy(&data[..1]));
            }
            Next::Continue
        }
        // UARTFR reads 0: transmit FIFO never full.
        VcpuExit::MmioRead(addr, data) if addr & !0xfff == UART_PAGE => {
            data.fill(0);
            Next::Continue
        }
        VcpuExit::MmioWrite(addr, _) | VcpuExit::MmioRead(addr, _) => {
            Next::Stop(format!("{} (MMIO exit)", not_ram(addr)))
        }
        VcpuExit::Unsupported(KVM_EXIT_ARM_NISV) => Next::NotRam,
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _) => Next::Stop("powered off (PSCI SYSTEM_OFF)".into()),
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _) => {
            Next::Stop("reset (PSCI SYSTEM_RESET): treated as a failure".into())
        }
        VcpuExit::Intr => Next::Continue,
        other => Next::Stop(format!("unexpected KVM exit {other:?}")),
    }
}

fn run_vcpu(mut vcpu: VcpuFd, stop: Arc<AtomicBool>, thread: Arc<AtomicU64>, console: Arc<Mutex<String>>) -> Stopped {
    // SAFETY: pthread_self has no preconditions.
    thread.store(unsafe { libc::pthread_self() } as u64, Ordering::Release);
    loop {
        if stop.load(Ordering::Acquire) {
            return Stopped { vcpu, why: "stopped by the watchdog".into() };
        }
        let next = match vcpu.run() {
            Ok(exit) => handle_exit(exit, &console),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Next::Continue,
            Err(e) if e.errno() == libc::ENOSYS => Next::Stop(
                "KVM_RUN failed with ENOSYS: the guest accessed memory outside guest RAM with an instruction KVM cannot emulate (this kernel cannot say where: no KVM_CAP_ARM_NISV_TO_USER)".into(),
            ),
            Err(e) => Next::Stop(format!("KVM_RUN failed: {e}")),
        };
        match next {
            Next::Continue => {}
            Next::Stop(why) => return Stopped { vcpu, why },
            Next::NotRam => {
                // SAFETY: the last exit was KVM_EXIT_ARM_NISV, so `arm_nisv` is the
                // union member the kernel filled in.
                let ipa = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.arm_nisv.fault_ipa };
                return Stopped { vcpu, why: format!("{} (KVM_EXIT_ARM_NISV)", not_ram(ipa)) };
            }
        }
    }
}

impl KvmVm {
    /// Get the vCPU back from a finished thread.
    fn reap(&mut self) {
        if let Some(r) = self.running.take() {
            match r.handle.join() {
                Ok(s) => {
                    self.finished = Some(s.why);
                    self.idle = Some(s.vcpu);
                }
                Err(_) => self.finished = Some("the vCPU thread panicked".into()),
            }
        }
    }
}

impl Vm for KvmVm {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn start(&mut self, ram: &GuestRam) -> anyhow::Result<()> {
        self.kill();
        let vcpu = self.idle.take().ok_or_else(|| anyhow!("the vCPU was lost with a panicked thread"))?;
        let entry = elf::load(ram, &self.guest_image)?;
        // KVM_ARM_VCPU_INIT again resets the vCPU (same target and features).
        vcpu.vcpu_init(&self.init).context("KVM_ARM_VCPU_INIT failed")?;
        for (id, value) in [(regs::PC, entry), (regs::PSTATE, regs::PSTATE_EL1H_DAIF), (regs::x(0), 0)] {
            vcpu.set_one_reg(id, &value.to_le_bytes()).with_context(|| format!("KVM_SET_ONE_REG {id:#x} failed"))?;
        }
        if let Ok(mut c) = self.console.lock() {
            c.clear();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = Arc::new(AtomicU64::new(0));
        let (s, t, c) = (stop.clone(), thread.clone(), self.console.clone());
        let handle = std::thread::Builder::new().name("ptcheck-vcpu0".into()).spawn(move || run_vcpu(vcpu, s, t, c))?;
        self.finished = None;
        self.running = Some(Running { handle, stop, thread });
        Ok(())
    }

    fn stopped(&mut self) -> Option<String> {
        if self.running.as_ref().is_some_and(|r| r.handle.is_finished()) {
            self.reap();
        }
        if self.running.is_some() {
            None
        } else {
            self.finished.clone()
        }
    }

    fn kill(&mut self) {
        let Some(r) = &self.running else { return };
        r.stop.store(true, Ordering::Release);
        // Kick until it leaves KVM_RUN: a signal that lands just before the thread
        // re-enters KVM_RUN is lost, so keep sending until the thread has ended.
        for _ in 0..1000 {
            if r.handle.is_finished() {
                break;
            }
            let tid = r.thread.load(Ordering::Acquire);
            if tid != 0 {
                // SAFETY: `tid` is the live vCPU thread (it has not finished).
                unsafe { libc::pthread_kill(tid as libc::pthread_t, kick_signal()) };
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.reap();
    }

    fn is_running(&self) -> bool {
        self.running.is_some()
    }

    fn describe(&self) -> String {
        "the KVM vCPU thread".into()
    }

    fn console_tail(&self) -> String {
        tail(&self.console)
    }
}
