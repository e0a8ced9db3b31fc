//! Backends: where a plan is run. Each returns the same view: the guest's
//! [`RunResult`] and read access to its physical memory, so the verifier never knows
//! which one ran.

pub mod console;
pub mod elf;
pub mod guest_ram;
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
pub mod kvm;
pub mod mailbox;
pub mod native;
pub mod open;
pub mod qemu;
pub mod vm;

use ptcheck_shared::abi::{Plan, RunResult};

/// Which builder a backend runs for every plan: a registry builder
/// (`ptcheck_guest::registry`) and a bug-catalogue variant of it (0: clean).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variant {
    /// `Plan::builder`.
    pub builder: u32,
    /// `Plan::mutation`.
    pub mutation: u32,
}

impl Variant {
    /// `plan` as this variant runs it (a copy only when it differs from the default).
    pub fn apply<'p>(&self, plan: &'p Plan) -> std::borrow::Cow<'p, Plan> {
        if *self == Variant::default() {
            return std::borrow::Cow::Borrowed(plan);
        }
        let mut p = *plan;
        p.builder = self.builder;
        p.mutation = self.mutation;
        std::borrow::Cow::Owned(p)
    }
}

/// Read access to the physical memory a plan ran in.
pub trait PhysMemory {
    /// The 64-bit word at `pa`, or `None` when `pa` is not backed by memory.
    fn read_u64(&self, pa: u64) -> Option<u64>;

    /// Fill `out` with the words from `pa` on; `false` if any of them is not memory.
    /// (Whole tables and pool pages are read this way: override it with a copy.)
    fn read_words(&self, pa: u64, out: &mut [u64]) -> bool {
        for (i, w) in out.iter_mut().enumerate() {
            match self.read_u64(pa + 8 * i as u64) {
                Some(v) => *w = v,
                None => return false,
            }
        }
        true
    }
}

/// What a run leaves behind for the verifier.
pub struct RunView<'a> {
    /// The result record as the builder wrote it.
    pub result: &'a RunResult,
    /// The memory the tables are in.
    pub ram: &'a dyn PhysMemory,
    /// What the tracer observed of the build (`None`: not traced; `Err`: the record
    /// is not whole).
    pub observed: Option<&'a Result<crate::trace::Observed, String>>,
}

/// A place to run plans: in-process, QEMU or KVM.
pub trait Backend: Send {
    /// Name used in reports ("native", "qemu", "kvm").
    fn name(&self) -> &'static str;

    /// Whether plans run under a real (or emulated) MMU, so probes mean something.
    fn has_mmu(&self) -> bool {
        false
    }

    /// Whether the tracer observes each build (QEMU with `--trace`).
    fn traced(&self) -> bool {
        false
    }

    /// The QEMU binary that runs the guest (`None`: native, KVM).
    fn qemu_binary(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// The CPU model plans run on (native: none, the builder runs in-process).
    fn cpu(&self) -> String {
        "none (in-process, no MMU)".into()
    }

    /// The builder (and catalogue variant) this backend runs for every plan.
    fn variant(&self) -> Variant {
        Variant::default()
    }

    /// Make sure plans can run at all, once per run, before the first plan: a VM boots
    /// its guest and waits for it to answer the mailbox.
    ///
    /// # Errors
    /// One line naming the cause and the fix (bad guest image, QEMU refused the CPU
    /// model, the guest never answered).
    fn preflight(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Run one plan: poison its pool, write `tag_pages` (PAs whose first word must hold
    /// `layout::tag(pa)`), build, probe.
    ///
    /// # Errors
    /// Infrastructure failures only (VM could not start, hung, died); a builder that
    /// refuses an operation or a guest exception is a normal result.
    fn run_tagged(&mut self, plan: &Plan, tag_pages: &[u64]) -> anyhow::Result<RunView<'_>>;

    /// Run one plan with no tagged pages.
    ///
    /// # Errors
    /// As [`Backend::run_tagged`].
    fn run(&mut self, plan: &Plan) -> anyhow::Result<RunView<'_>> {
        self.run_tagged(plan, &[])
    }
}
