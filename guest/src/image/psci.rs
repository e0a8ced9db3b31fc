//! PSCI calls (Arm DEN0022) through the HVC conduit: what QEMU `virt` without EL2
//! and KVM both provide.

use core::arch::asm;

/// PSCI function id of SYSTEM_OFF (SMC32 calling convention).
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

/// Power the machine off; never returns.
pub fn system_off() -> ! {
    // SAFETY: PSCI SYSTEM_OFF does not return; x0 is clobbered by the call.
    unsafe { asm!("hvc #0", in("x0") PSCI_SYSTEM_OFF, options(noreturn)) }
}
