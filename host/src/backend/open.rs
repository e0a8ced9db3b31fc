//! The one factory: which backend runs the plans, chosen from [`BackendOptions`] and
//! checked once ([`Backend::preflight`]) before the first plan.

use std::path::PathBuf;

use anyhow::bail;

use super::native::NativeBackend;
use super::qemu::{self, find_in_path, QemuOptions};
use super::vm::VmPolicy;
use super::{Backend, Variant};

/// Where plans run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum BackendChoice {
    /// KVM if it can run an arm64 guest, else QEMU.
    Auto,
    /// In-process, simulated RAM, no MMU.
    Native,
    /// qemu-system-aarch64 software emulation, real (emulated) MMU.
    Qemu,
    /// This host's KVM (aarch64 Linux with /dev/kvm).
    Kvm,
}

/// Everything that decides how a backend is made.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// Which backend.
    pub choice: BackendChoice,
    /// The guest image (`None`: `$PTCHECK_GUEST_IMAGE`, else the xtask build output).
    pub guest: Option<PathBuf>,
    /// QEMU `-cpu` model.
    pub cpu: String,
    /// Timeouts, and persistent or boot-per-plan.
    pub policy: VmPolicy,
    /// A bug-catalogue variant to run instead of the clean builder (`mutants` builds
    /// only; a VM needs a guest image with the catalogue).
    pub mutant: Option<String>,
    /// The builder under test (`ptcheck_guest::registry`): "linux" unless named.
    pub builder: String,
    /// Observe every build with the tracer (QEMU only).
    pub trace: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            choice: BackendChoice::Auto,
            guest: None,
            cpu: "max".into(),
            policy: VmPolicy::default(),
            mutant: None,
            builder: "linux".into(),
            trace: false,
        }
    }
}

impl BackendOptions {
    /// The guest image path this run uses.
    pub fn guest_image(&self) -> PathBuf {
        if let Some(p) = &self.guest {
            return p.clone();
        }
        if let Some(p) = std::env::var_os("PTCHECK_GUEST_IMAGE") {
            return PathBuf::from(p);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
        target.join("aarch64-unknown-none").join("release").join("ptcheck-guest-image")
    }

    /// Names the backend and builder in reproducer file names: "native-clean",
    /// "native-skip-zero", "qemu-clean", "qemu-<guest image name>".
    pub fn label(&self, backend: &str) -> String {
        let b = &self.builder;
        if let Some(m) = &self.mutant {
            return format!("{backend}-{b}-{m}");
        }
        match &self.guest {
            Some(g) if backend != "native" => {
                format!("{backend}-{b}-{}", g.file_name().map_or("guest".into(), |n| n.to_string_lossy().into_owned()))
            }
            _ => format!("{backend}-{b}-clean"),
        }
    }
}

/// The backend `opts` asks for, and why it was chosen, checked once before the first
/// plan: a broken setup is one error line, never a plan failure.
///
/// # Errors
/// The backend cannot be made or does not pass its preflight (missing QEMU, a bad
/// guest image or CPU model, a guest that does not answer): one line with the fix.
pub fn open(opts: &BackendOptions) -> anyhow::Result<(Box<dyn Backend>, String)> {
    let (mut backend, why) = choose(opts)?;
    backend.preflight()?;
    Ok((backend, why))
}

/// The builder and catalogue variant `opts` names.
fn variant(opts: &BackendOptions) -> anyhow::Result<Variant> {
    use ptcheck_guest::registry::{by_name, BUILDERS};
    let builder = by_name(&opts.builder).map(|b| b.id).ok_or_else(|| {
        let names: Vec<_> = BUILDERS.iter().map(|b| b.name).collect();
        anyhow::anyhow!("unknown builder '{}': one of {}", opts.builder, names.join(", "))
    })?;
    let mutation = mutation(opts)?;
    if mutation != 0 && by_name(&opts.builder).map(|b| b.policy) != Some(ptcheck_guest::registry::Policy::Linux) {
        bail!("--mutant mutates the linux builders (linux, linux-6.9), not '{}'", opts.builder);
    }
    Ok(Variant { builder, mutation })
}

/// The catalogue id of `opts.mutant` (0: the clean builder).
fn mutation(opts: &BackendOptions) -> anyhow::Result<u32> {
    let Some(name) = &opts.mutant else { return Ok(0) };
    #[cfg(feature = "mutants")]
    {
        let names: Vec<_> = ptcheck_guest::mutation::ALL_VARIANTS.iter().map(|v| v.name).collect();
        ptcheck_guest::mutation::by_name(name)
            .map(|v| v.id)
            .ok_or_else(|| anyhow::anyhow!("unknown mutant '{name}': one of {}", names.join(", ")))
    }
    #[cfg(not(feature = "mutants"))]
    bail!("--mutant {name}: this ptcheck was built without the bug catalogue (`cargo xtask mutants` builds one)")
}

fn native(opts: &BackendOptions) -> anyhow::Result<Box<dyn Backend>> {
    Ok(Box::new(NativeBackend::with_variant(variant(opts)?)))
}

fn qemu_backend(opts: &BackendOptions) -> anyhow::Result<Box<dyn Backend>> {
    let mut q = QemuOptions::new(opts.guest_image());
    q.cpu = opts.cpu.clone();
    q.policy = opts.policy;
    if opts.trace {
        q.trace = Some(crate::trace::setup()?);
    }
    Ok(Box::new(qemu::backend(q)?.with_variant(variant(opts)?)))
}

/// Whether this host's KVM can run the arm64 guest; `Err` says why not.
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
pub fn kvm_usable() -> anyhow::Result<()> {
    super::kvm::probe()
}

/// Whether this host's KVM can run the arm64 guest; `Err` says why not.
#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
pub fn kvm_usable() -> anyhow::Result<()> {
    if std::path::Path::new("/dev/kvm").exists() {
        bail!("/dev/kvm is this {} host's KVM, which cannot run an arm64 guest", std::env::consts::ARCH)
    }
    bail!("no /dev/kvm, and this is not an arm64 Linux host")
}

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
fn kvm_backend(opts: &BackendOptions) -> anyhow::Result<Box<dyn Backend>> {
    Ok(Box::new(super::kvm::backend(opts.guest_image(), opts.policy)?.with_variant(variant(opts)?)))
}

#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
fn kvm_backend(_: &BackendOptions) -> anyhow::Result<Box<dyn Backend>> {
    let why = kvm_usable().expect_err("never usable here");
    bail!("the KVM backend needs an arm64 Linux host with /dev/kvm: {why:#}")
}

fn choose(opts: &BackendOptions) -> anyhow::Result<(Box<dyn Backend>, String)> {
    if opts.trace && matches!(opts.choice, BackendChoice::Native | BackendChoice::Kvm) {
        bail!("--trace observes the guest under QEMU's TCG: use --backend qemu (or auto where KVM is not usable)");
    }
    match opts.choice {
        BackendChoice::Native => Ok((native(opts)?, "requested".into())),
        BackendChoice::Qemu => Ok((qemu_backend(opts)?, "requested".into())),
        BackendChoice::Kvm => Ok((kvm_backend(opts)?, "requested".into())),
        BackendChoice::Auto => match kvm_usable() {
            Ok(()) => Ok((kvm_backend(opts)?, "auto: /dev/kvm accepts an arm64 vCPU".into())),
            Err(why) => {
                if find_in_path("qemu-system-aarch64").is_none() && !opts.trace {
                    bail!(
                        "no backend can run the arm64 guest (KVM: {why:#}; qemu-system-aarch64 not found): install \
                         QEMU with `apt-get install qemu-system-arm` (`cargo xtask run` does), or use --backend native"
                    );
                }
                let why = format!("auto: KVM not usable ({why:#}), falling back to QEMU software emulation");
                Ok((qemu_backend(opts)?, why))
            }
        },
    }
}
