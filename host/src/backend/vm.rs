//! What every VM backend shares: guest RAM, the mailbox protocol, boot/hang/exception
//! handling. A hypervisor only supplies a [`Vm`]: how to start the guest, how to tell
//! it has stopped, how to kill it. (QEMU: a child process; KVM: a vCPU thread.)

use std::time::Duration;

use anyhow::bail;
use ptcheck_shared::abi::mailbox::{Command, Mailbox};
use ptcheck_shared::abi::{Plan, RunResult, Status};

use super::guest_ram::GuestRam;
use super::mailbox::{self, Wait};
use super::{Backend, RunView, Variant};

/// One way of running the guest image's vCPU.
pub trait Vm: Send {
    /// Backend name for reports ("qemu", "kvm").
    fn name(&self) -> &'static str;
    /// Start the guest from its entry point over `ram` (the mailbox is already reset).
    ///
    /// # Errors
    /// The hypervisor could not start it.
    fn start(&mut self, ram: &GuestRam) -> anyhow::Result<()>;
    /// `Some(reason)` once the vCPU has stopped (powered off, crashed, exited).
    fn stopped(&mut self) -> Option<String>;
    /// Stop the vCPU now and wait until it has; nothing may outlive this.
    fn kill(&mut self);
    /// Whether a started guest is still there.
    fn is_running(&self) -> bool;
    /// "QEMU (pid 123)" / "the KVM vCPU thread": what `kill` ends.
    fn describe(&self) -> String;
    /// The last lines the guest printed.
    fn console_tail(&self) -> String;
    /// Whether the tracer watches the guest.
    fn traced(&self) -> bool {
        false
    }
    /// What the tracer saw of the plan that just ran (`None`: not traced).
    fn take_observed(&mut self) -> Option<Result<crate::trace::Observed, String>> {
        None
    }
    /// The QEMU binary that runs the guest (`None`: not QEMU).
    fn qemu_binary(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// The CPU model the guest runs on (KVM: the host's).
    fn cpu(&self) -> String {
        "host".into()
    }
}

/// How a VM failed: the backend's errors, typed so callers never match on text. The
/// message's first line is the cause; the guest console's last lines follow.
#[derive(Debug)]
pub enum VmError {
    /// The guest did not get ready after boot: it stopped, or the boot timeout passed.
    Boot {
        /// Why, in words.
        why: String,
        /// The console's last lines.
        console: String,
    },
    /// The guest did not answer a request within `after`: the watchdog ended `killed`.
    Hung {
        /// How long the host waited.
        after: Duration,
        /// What was killed ("QEMU (pid 123)", "the KVM vCPU thread").
        killed: String,
        /// The console's last lines.
        console: String,
    },
    /// The vCPU stopped on its own, while running a plan or (`idle`) between plans.
    Died {
        /// How it stopped ("QEMU exited (signal: 9)", "the guest accessed …").
        why: String,
        /// It died between plans, not during one.
        idle: bool,
        /// The console's last lines.
        console: String,
    },
}

impl std::fmt::Display for VmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let console = match self {
            VmError::Boot { why, console } => {
                write!(f, "{why}")?;
                console
            }
            VmError::Hung { after, killed, console } => {
                write!(f, "the guest did not answer within {after:?}: guest hung, killed {killed}")?;
                console
            }
            VmError::Died { why, idle: true, console } => {
                write!(f, "{why} between plans: the guest died while idle; the next plan boots a fresh guest")?;
                console
            }
            VmError::Died { why, idle: false, console } => {
                write!(f, "{why} while running the plan")?;
                console
            }
        };
        if console.is_empty() {
            Ok(())
        } else {
            write!(f, "\n--- guest console ---\n{console}")
        }
    }
}

impl std::error::Error for VmError {}

/// Timeouts and boot policy.
#[derive(Clone, Copy, Debug)]
pub struct VmPolicy {
    /// How long one plan may take before the guest counts as hung.
    pub plan_timeout: Duration,
    /// How long boot may take.
    pub boot_timeout: Duration,
    /// Power off after every plan (only for measuring what a boot costs).
    pub boot_per_plan: bool,
}

impl Default for VmPolicy {
    fn default() -> Self {
        VmPolicy { plan_timeout: Duration::from_secs(30), boot_timeout: Duration::from_secs(20), boot_per_plan: false }
    }
}

/// A [`Backend`] that runs plans in a guest on some [`Vm`].
pub struct VmBackend<V: Vm> {
    /// The hypervisor side.
    pub vm: V,
    ram: GuestRam,
    policy: VmPolicy,
    seq: u64,
    result: Box<RunResult>,
    /// The builder (and catalogue variant) run for every plan.
    variant: Variant,
    /// Boots so far (benchmarks and tests read it).
    pub boots: u64,
    /// What the tracer saw of the last plan.
    observed: Option<Result<crate::trace::Observed, String>>,
}

impl<V: Vm> VmBackend<V> {
    /// A backend over `vm` with its own, fresh guest RAM.
    ///
    /// # Errors
    /// Guest RAM cannot be set up.
    pub fn new(vm: V, policy: VmPolicy) -> anyhow::Result<Self> {
        Self::with_ram(vm, GuestRam::new()?, policy)
    }

    /// A backend over `vm` and the RAM it was built for (KVM registers it up front).
    ///
    /// # Errors
    /// None today; kept fallible for hypervisors that check the RAM.
    pub fn with_ram(vm: V, ram: GuestRam, policy: VmPolicy) -> anyhow::Result<Self> {
        Ok(VmBackend {
            vm,
            ram,
            policy,
            seq: 0,
            result: bytemuck::zeroed_box(),
            variant: Variant::default(),
            boots: 0,
            observed: None,
        })
    }

    /// Run `variant` for every plan; a catalogue variant needs a guest image with the
    /// catalogue (checked by [`Backend::preflight`]).
    pub fn with_variant(mut self, variant: Variant) -> Self {
        self.variant = variant;
        self
    }

    fn boot(&mut self) -> anyhow::Result<()> {
        self.vm.kill();
        mailbox::reset(&self.ram)?;
        self.seq = 0;
        self.vm.start(&self.ram)?;
        self.boots += 1;
        let vm = &mut self.vm;
        if let Err(e) = mailbox::wait_ready(&self.ram, self.policy.boot_timeout, || vm.stopped()) {
            // Let the console readers catch the hypervisor's last words (QEMU says why
            // it refused to start on stderr just before it exits).
            std::thread::sleep(Duration::from_millis(50));
            let console = vm.console_tail();
            vm.kill();
            return Err(VmError::Boot { why: format!("{e:#}"), console }.into());
        }
        Ok(())
    }

    fn ensure_booted(&mut self) -> anyhow::Result<()> {
        if !self.vm.is_running() {
            return self.boot();
        }
        if let Some(why) = self.vm.stopped() {
            // Nothing of ours stopped it (an exception or boot-per-plan shuts it down
            // through `shutdown`): say so, once; the next plan boots a fresh guest.
            let console = self.vm.console_tail();
            self.vm.kill();
            return Err(VmError::Died { why, idle: true, console }.into());
        }
        Ok(())
    }

    /// Send `command` and wait for the answer; a timeout kills the guest.
    fn request(&mut self, command: Command, timeout: Duration) -> anyhow::Result<Wait> {
        self.seq += 1;
        mailbox::submit(&self.ram, self.seq, command)?;
        let vm = &mut self.vm;
        match mailbox::wait_response(&self.ram, self.seq, timeout, || vm.stopped()) {
            Ok(w) => Ok(w),
            Err(_) => {
                let (console, killed) = (vm.console_tail(), vm.describe());
                vm.kill();
                Err(VmError::Hung { after: timeout, killed, console }.into())
            }
        }
    }

    /// Ask the guest to spin forever, then wait `timeout`: proves the watchdog.
    ///
    /// # Errors
    /// Always, once the watchdog fires (or if the guest cannot boot).
    pub fn hang(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.ensure_booted()?;
        self.request(Command::Hang, timeout).map(|_| ())
    }

    /// Power the guest off and wait for it to stop.
    pub fn shutdown(&mut self) {
        if self.vm.is_running() && self.vm.stopped().is_none() {
            let _ = self.request(Command::PowerOff, Duration::from_secs(5));
            for _ in 0..500 {
                if self.vm.stopped().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.vm.kill();
    }
}

impl<V: Vm> Drop for VmBackend<V> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<V: Vm> Backend for VmBackend<V> {
    fn name(&self) -> &'static str {
        self.vm.name()
    }

    fn has_mmu(&self) -> bool {
        true
    }

    fn traced(&self) -> bool {
        self.vm.traced()
    }

    fn qemu_binary(&self) -> Option<std::path::PathBuf> {
        self.vm.qemu_binary()
    }

    fn cpu(&self) -> String {
        self.vm.cpu()
    }

    fn variant(&self) -> Variant {
        self.variant
    }

    fn preflight(&mut self) -> anyhow::Result<()> {
        if self.policy.plan_timeout.is_zero() {
            bail!("the plan timeout is 0: give --timeout at least 1 (seconds)");
        }
        let booted = self.ensure_booted().map_err(|e| {
            let text = format!("{e:#}");
            let mut first = text.lines().next().unwrap_or("").to_string();
            // QEMU's own complaint ("qemu-system-aarch64: unable to find CPU model …").
            if let Some(said) = text.lines().find(|l| l.starts_with("qemu-system")) {
                first = format!("{first}: {}", said.trim());
            }
            anyhow::anyhow!(
                "the {} guest did not boot and answer the mailbox: {first} (check --cpu and --guest; rebuild the image with `cargo xtask build-guest`)",
                self.vm.name()
            )
        });
        booted?;
        if self.variant.mutation != 0 && mailbox::features(&self.ram)? & Mailbox::CATALOGUE == 0 {
            bail!(
                "the guest image has no bug catalogue, so it cannot run a --mutant: `cargo xtask mutants` builds one \
                 (target/mutants/ptcheck-guest-image-mutants)"
            );
        }
        Ok(())
    }

    fn run_tagged(&mut self, plan: &Plan, tag_pages: &[u64]) -> anyhow::Result<RunView<'_>> {
        self.ensure_booted()?;
        mailbox::prepare(&self.ram, &self.variant.apply(plan), tag_pages)?;
        if let Wait::Gone(why) = self.request(Command::RunPlan, self.policy.plan_timeout)? {
            let console = self.vm.console_tail();
            self.vm.kill();
            return Err(VmError::Died { why, idle: false, console }.into());
        }
        mailbox::read_result(&self.ram, &mut self.result)?;
        self.observed = self.vm.take_observed();
        // After an exception the guest powers itself off; boot-per-plan always does.
        if self.result.status() == Some(Status::Exception) || self.policy.boot_per_plan {
            self.shutdown();
        }
        Ok(RunView { result: &self.result, ram: &self.ram, observed: self.observed.as_ref() })
    }
}
