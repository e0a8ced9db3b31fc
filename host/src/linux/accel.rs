//! Which accelerator boots a real kernel. The checks read guest memory (a shared
//! memfd) and the translation registers (through the gdbstub) once the kernel is up;
//! neither needs TCG. So on an arm64 Linux host whose `/dev/kvm` works, an untraced
//! boot runs under KVM (seconds instead of a minute); a traced one needs TCG, since the
//! tracer is a TCG plugin. Everywhere else it is TCG.
//!
//! The KVM path is chosen by [`choose`] and tested here only as a choice: this project's
//! machines are x86, whose KVM cannot run arm64 (README).

/// A QEMU accelerator for a kernel boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's emulator (every host; the tracer needs it).
    Tcg,
    /// The host's KVM (arm64 Linux hosts with `/dev/kvm`).
    Kvm,
}

/// The accelerator chosen, and why (printed with the run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The accelerator.
    pub accel: Accel,
    /// In words.
    pub why: String,
}

/// The accelerator for a boot: KVM when `kvm` (the host's KVM can run an arm64 vCPU,
/// else why not) says so and the boot is not `traced`, else TCG.
pub fn choose(traced: bool, kvm: Result<(), String>) -> Choice {
    match (traced, kvm) {
        (true, Ok(())) => Choice {
            accel: Accel::Tcg,
            why: "tcg: tracing (the tracer is a TCG plugin), though this host's KVM could boot it".into(),
        },
        (true, Err(_)) => Choice { accel: Accel::Tcg, why: "tcg: tracing (the tracer is a TCG plugin)".into() },
        (false, Ok(())) => {
            Choice { accel: Accel::Kvm, why: "kvm: this arm64 host's /dev/kvm (not traced: no TCG needed)".into() }
        }
        (false, Err(why)) => Choice { accel: Accel::Tcg, why: format!("tcg: no usable KVM ({why})") },
    }
}

/// [`choose`] on this host.
pub fn choose_here(traced: bool) -> Choice {
    choose(traced, crate::backend::open::kvm_usable().map_err(|e| format!("{e:#}")))
}

impl Accel {
    /// QEMU's `-accel` argument.
    pub fn qemu_args(self) -> [&'static str; 2] {
        match self {
            Accel::Tcg => ["-accel", "tcg"],
            Accel::Kvm => ["-accel", "kvm"],
        }
    }

    /// The `-cpu` QEMU gets for the one `asked`: under KVM the vCPU is the host's
    /// (`host`; TCG's model properties such as `lpa2=off` do not exist there).
    pub fn cpu(self, asked: &str) -> String {
        match self {
            Accel::Tcg => asked.to_string(),
            Accel::Kvm => "host".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_untraced_where_it_can_run_arm64() {
        assert_eq!(choose(false, Ok(())).accel, Accel::Kvm);
        assert_eq!(choose(true, Ok(())).accel, Accel::Tcg);
        let no = choose(false, Err("no /dev/kvm".into()));
        assert_eq!(no.accel, Accel::Tcg);
        assert!(no.why.contains("no /dev/kvm"), "{}", no.why);
        assert_eq!(choose(true, Err("x".into())).accel, Accel::Tcg);
    }

    #[test]
    fn qemu_gets_the_accelerator_and_the_right_cpu() {
        assert_eq!(Accel::Kvm.qemu_args(), ["-accel", "kvm"]);
        assert_eq!(Accel::Tcg.qemu_args(), ["-accel", "tcg"]);
        assert_eq!(Accel::Kvm.cpu("max,pauth-impdef=on,lpa2=off"), "host");
        assert_eq!(Accel::Tcg.cpu("max,lpa2=off"), "max,lpa2=off");
    }

    /// This host: x86 (or no /dev/kvm) boots under TCG; an arm64 host with KVM under
    /// KVM. Asserts the real answer for the machine it runs on.
    #[test]
    fn this_host_chooses_by_its_kvm() {
        let expect = if crate::backend::open::kvm_usable().is_ok() { Accel::Kvm } else { Accel::Tcg };
        assert_eq!(choose_here(false).accel, expect);
        assert_eq!(choose_here(true).accel, Accel::Tcg);
    }
}
