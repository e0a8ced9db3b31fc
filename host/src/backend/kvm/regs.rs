//! KVM register ids for the vCPU state ptcheck sets (`KVM_SET_ONE_REG`).
//!
//! A core register id is `KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
//! (offset of the field in struct kvm_regs / 4)` (Documentation/virt/kvm/api.rst,
//! "ARM64 registers"). `struct kvm_regs` starts with `struct user_pt_regs`:
//! `u64 regs[31]; u64 sp; u64 pc; u64 pstate;` so regs[n] is at byte 8n, pc at 256,
//! pstate at 264.

use kvm_bindings::{KVM_REG_ARM64, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64};

const CORE: u64 = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64;

/// `kvm_regs.regs.regs[n]` (Xn): byte offset 8n.
pub const fn x(n: u64) -> u64 {
    CORE | (8 * n / 4)
}

/// `kvm_regs.regs.pc`: byte offset 256.
pub const PC: u64 = CORE | (256 / 4);

/// `kvm_regs.regs.pstate`: byte offset 264.
pub const PSTATE: u64 = CORE | (264 / 4);

/// PSTATE at entry: EL1h (M[3:0] = 0b0101) with D, A, I, F masked (bits 9..6).
pub const PSTATE_EL1H_DAIF: u64 = 0x3c5;

#[cfg(test)]
mod tests {
    #[test]
    fn ids_match_the_kernel_abi() {
        assert_eq!(super::x(0), 0x6030_0000_0010_0000);
        assert_eq!(super::x(1), 0x6030_0000_0010_0002);
        assert_eq!(super::PC, 0x6030_0000_0010_0040);
        assert_eq!(super::PSTATE, 0x6030_0000_0010_0042);
    }
}
