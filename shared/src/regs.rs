//! System-register fields both sides read or write, each defined once (Arm ARM D19):
//! TCR_EL1 as the guest programs it, as the host decodes a real kernel's, and as the
//! tracer follows what the guest writes.

use crate::Granule;

/// TCR_EL1 fields.
pub mod tcr {
    /// T0SZ \[5:0\]: TTBR0's region is 2^(64 - T0SZ) bytes.
    pub const T0SZ_SHIFT: u32 = 0;
    /// T1SZ \[21:16\]: TTBR1's region.
    pub const T1SZ_SHIFT: u32 = 16;
    /// Width of T0SZ / T1SZ.
    pub const TSZ_MASK: u64 = 0x3f;
    /// IRGN0 \[9:8\] = 0b01: inner write-back cacheable walks for TTBR0.
    pub const IRGN0_WB: u64 = 1 << 8;
    /// ORGN0 \[11:10\] = 0b01: outer write-back.
    pub const ORGN0_WB: u64 = 1 << 10;
    /// SH0 \[13:12\] = 0b11: inner shareable.
    pub const SH0_INNER: u64 = 3 << 12;
    /// TG0 \[15:14\]: TTBR0's granule (4K 0b00, 64K 0b01, 16K 0b10).
    pub const TG0_SHIFT: u32 = 14;
    /// EPD1 \[23\]: no walks for TTBR1.
    pub const EPD1: u64 = 1 << 23;
    /// IRGN1 \[25:24\] = 0b01.
    pub const IRGN1_WB: u64 = 1 << 24;
    /// ORGN1 \[27:26\] = 0b01.
    pub const ORGN1_WB: u64 = 1 << 26;
    /// SH1 \[29:28\] = 0b11.
    pub const SH1_INNER: u64 = 3 << 28;
    /// TG1 \[31:30\]: TTBR1's granule (16K 0b01, 4K 0b10, 64K 0b11; see
    /// [`crate::Granule::tcr_tg1`]).
    pub const TG1_SHIFT: u32 = 30;
    /// Width of TG0 / TG1.
    pub const TG_MASK: u64 = 0b11;
    /// IPS \[34:32\]: intermediate physical address size.
    pub const IPS_SHIFT: u32 = 32;
    /// Width of IPS.
    pub const IPS_MASK: u64 = 0b111;
    /// DS \[59\]: 52-bit output addresses with 4K/16K granules (FEAT_LPA2), OA\[51:50\]
    /// in descriptor bits \[9:8\].
    pub const DS: u64 = 1 << 59;
}

/// A TCR_EL1 value, decoded for TTBR1 and TTBR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcr(pub u64);

impl Tcr {
    /// VA bits TTBR1 translates (64 - T1SZ).
    pub const fn va_bits1(self) -> u32 {
        64 - ((self.0 >> tcr::T1SZ_SHIFT) & tcr::TSZ_MASK) as u32
    }

    /// VA bits TTBR0 translates (64 - T0SZ).
    pub const fn va_bits0(self) -> u32 {
        64 - ((self.0 >> tcr::T0SZ_SHIFT) & tcr::TSZ_MASK) as u32
    }

    /// TG1, raw.
    pub const fn tg1(self) -> u64 {
        (self.0 >> tcr::TG1_SHIFT) & tcr::TG_MASK
    }

    /// TTBR1's granule (`None`: TG1 0b00, reserved).
    pub const fn granule1(self) -> Option<Granule> {
        match self.tg1() {
            0b10 => Some(Granule::K4),
            0b01 => Some(Granule::K16),
            0b11 => Some(Granule::K64),
            _ => None,
        }
    }

    /// TTBR0's granule (`None`: TG0 0b11, reserved).
    pub const fn granule0(self) -> Option<Granule> {
        match (self.0 >> tcr::TG0_SHIFT) & tcr::TG_MASK {
            0b00 => Some(Granule::K4),
            0b10 => Some(Granule::K16),
            0b01 => Some(Granule::K64),
            _ => None,
        }
    }

    /// DS: LPA2 descriptors (4K and 16K granules).
    pub const fn ds(self) -> bool {
        self.0 & tcr::DS != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_kernels_tcr_decodes() {
        // Debian 6.1's: TG1 4K, T1SZ 16; TG0 4K, T0SZ 16; no DS.
        let t = Tcr(0x15001f5b5503510);
        assert_eq!((t.va_bits1(), t.granule1(), t.ds()), (48, Some(Granule::K4), false));
        assert_eq!(t.granule0(), Some(Granule::K4));
        for g in [Granule::K4, Granule::K16, Granule::K64] {
            assert_eq!(Tcr(g.tcr_tg1() << tcr::TG1_SHIFT).granule1(), Some(g));
        }
    }
}
