//! A64 encodings the tracer acts on (Arm ARM C6), and the table-descriptor test.

use ptcheck_shared::trace::{HINT_BUILD_BEGIN, HINT_BUILD_END};

/// The system registers whose `MSR` writes the tracer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysReg {
    /// TTBR0_EL1 (op0=3, op1=0, CRn=2, CRm=0, op2=0).
    Ttbr0,
    /// TTBR1_EL1 (op2=1).
    Ttbr1,
    /// TCR_EL1 (op2=2).
    Tcr,
    /// SCTLR_EL1 (op0=3, op1=0, CRn=1, CRm=0, op2=0).
    Sctlr,
}

/// A barrier or maintenance instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// `DSB <option>`; whether it orders stores for other observers, and whether it
    /// completes TLB maintenance (type full).
    Dsb { orders_stores: bool, completes_tlbi: bool },
    /// `DMB <option>`; likewise.
    Dmb { orders_stores: bool },
    /// `ISB`.
    Isb,
    /// `TLBI <op>{, Xt}` (EL1 operations, op1 = 0; others are counted only).
    Tlbi(Tlbi),
}

/// What a TLBI invalidates, as far as the tlbi and bbm checks need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tlbi {
    /// Every VA (VMALLE1, ASIDE1 — the latter leniently, global entries included —
    /// and the range forms, leniently taken as covering everything).
    All {
        /// Last level only (RVALE1, RVAALE1).
        leaf_only: bool,
    },
    /// One VA from Xt\[43:0\] (VAE1, VAAE1, VALE1, VAALE1).
    Va {
        /// Xt.
        rt: u32,
        /// Last level only (VALE1, VAALE1).
        leaf_only: bool,
    },
    /// Not an EL1 stage-1 operation: counted, covers nothing here.
    Other,
}

impl Tlbi {
    /// `SYS #op1, C8, Cm, #op2, Xt`.
    pub const fn decode(w: u32) -> Tlbi {
        let (op1, crm, op2, rt) = ((w >> 16) & 7, (w >> 8) & 0xf, (w >> 5) & 7, w & 31);
        if op1 != 0 {
            return Tlbi::Other;
        }
        let leaf_only = op2 == 5 || op2 == 7;
        match (crm, op2) {
            (1 | 3 | 7, 0 | 2) => Tlbi::All { leaf_only: false },
            (1 | 3 | 7, 1 | 3 | 5 | 7) => Tlbi::Va { rt, leaf_only },
            (2 | 5 | 6, 1 | 3 | 5 | 7) => Tlbi::All { leaf_only },
            _ => Tlbi::Other,
        }
    }
}

/// The VA a TLBI by VA names: Xt\[43:0\] is VA\[55:12\], sign-extended from bit 55.
pub const fn tlbi_va(xt: u64) -> u64 {
    let va = (xt & ((1 << 44) - 1)) << 12;
    if va & (1 << 55) != 0 {
        va | (0xff << 56)
    } else {
        va
    }
}

/// The guest's build-bracket markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// [`HINT_BUILD_BEGIN`].
    Begin,
    /// [`HINT_BUILD_END`].
    End,
}

/// What one instruction is, for the tracer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// In the load/store class: may store (a memory callback sees whether it did).
    Store {
        /// `STLR{B,H}`: a store-release.
        release: bool,
    },
    /// `DC ZVA, Xt`.
    DcZva {
        /// Xt.
        rt: u32,
    },
    /// `MSR <reg>, Xt`.
    Msr {
        /// Which register.
        reg: SysReg,
        /// Xt.
        rt: u32,
    },
    /// In the load/store class, addressed through SP (Rn = 31: stack pushes, spills,
    /// locals): not watched. No builder writes, clears or links a table through the
    /// stack pointer, and these are a third of a kernel's stores.
    ViaSp,
    /// A general-register load/store of 8, 16 or 32 bits (`STRB`, `STRH`, `STR Wt`,
    /// their atomics): not watched. A descriptor is written by one single-copy-atomic
    /// 64-bit store, so a narrower one links nothing and updates no entry; a narrow
    /// store that dirties a cleared table still shows, as a stale entry, at the link.
    /// A quarter of a kernel's remaining stores.
    Narrow,
    /// A barrier or TLBI.
    Barrier(Barrier),
    /// A build marker.
    Hint(Hint),
    /// Nothing the tracer follows.
    Other,
}

/// Whether a DSB/DMB option (CRm: domain in \[3:2\], type in \[1:0\]) orders stores for
/// another observer: type ST (0b10) or full (0b11), domain not non-shareable (0b01).
const fn orders_stores(crm: u32) -> bool {
    let (domain, ty) = (crm >> 2, crm & 3);
    ty >= 2 && domain != 1
}

impl Insn {
    /// Classify one instruction word.
    pub const fn decode(w: u32) -> Insn {
        let crm = (w >> 8) & 0xf;
        if w & 0xFFFF_F0FF == 0xD503_309F {
            return Insn::Barrier(Barrier::Dsb { orders_stores: orders_stores(crm), completes_tlbi: crm & 3 == 3 });
        }
        if w & 0xFFFF_F0FF == 0xD503_30BF {
            return Insn::Barrier(Barrier::Dmb { orders_stores: orders_stores(crm) });
        }
        if w & 0xFFFF_F0FF == 0xD503_30DF {
            return Insn::Barrier(Barrier::Isb);
        }
        // SYS #op1, C8, Cm, #op2, Xt.
        if w & 0xFFF8_F000 == 0xD508_8000 {
            return Insn::Barrier(Barrier::Tlbi(Tlbi::decode(w)));
        }
        if w & 0xFFFF_FFE0 == 0xD50B_7420 {
            return Insn::DcZva { rt: w & 31 };
        }
        let reg = match w & 0xFFFF_FFE0 {
            0xD518_2000 => Some(SysReg::Ttbr0),
            0xD518_2020 => Some(SysReg::Ttbr1),
            0xD518_2040 => Some(SysReg::Tcr),
            0xD518_1000 => Some(SysReg::Sctlr),
            _ => None,
        };
        if let Some(reg) = reg {
            return Insn::Msr { reg, rt: w & 31 };
        }
        // HINT #imm (CRm:op2).
        if w & 0xFFFF_F01F == 0xD503_201F {
            let imm = (w >> 5) & 0x7f;
            if imm == HINT_BUILD_BEGIN {
                return Insn::Hint(Hint::Begin);
            }
            if imm == HINT_BUILD_END {
                return Insn::Hint(Hint::End);
            }
            return Insn::Other;
        }
        // Loads and stores: op0 = x1x0 in bits [28:25].
        if (w >> 25) & 0b0101 == 0b0100 {
            // Rn is bits [9:5] throughout the class (literal loads keep an offset
            // there, but they never store).
            if (w >> 5) & 31 == 31 {
                return Insn::ViaSp;
            }
            // Load/store register (all addressing forms, atomics): size [31:30], 111 in
            // [29:27], V in [26]; size 0b11 is 64-bit.
            if (w >> 27) & 7 == 0b111 && (w >> 26) & 1 == 0 && w >> 30 != 0b11 {
                return Insn::Narrow;
            }
            return Insn::Store { release: w & 0x3FFF_FC00 == 0x089F_FC00 };
        }
        Insn::Other
    }
}

/// The next-level table a descriptor points to, if `v` is a table descriptor as
/// builders write them: bits\[1:0\] = 0b11, bits\[11:2\] zero (a page descriptor has AF,
/// bit 10) except OA\[51:50\] in bits \[9:8\] with LPA2 (TCR.DS), bits between 12 and the
/// granule zero; 64K keeps OA\[51:48\] in bits \[15:12\] (FEAT_LPA).
pub const fn table_target(v: u64, page_shift: u32, lpa2: bool) -> Option<u64> {
    if v & 3 != 3 {
        return None;
    }
    let low_ignored = if lpa2 { 0xffc & !0x300 } else { 0xffc };
    if v & low_ignored != 0 {
        return None;
    }
    let top = if lpa2 { 50 } else { 48 };
    let inplace = v & ((1u64 << top) - 1) & !((1u64 << page_shift) - 1);
    match page_shift {
        16 => Some(inplace | (((v >> 12) & 0xf) << 48)),
        _ if v & ((1u64 << page_shift) - 1) & 0xf000 != 0 => None,
        _ if lpa2 => Some(inplace | (((v >> 8) & 3) << 50)),
        _ => Some(inplace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        // dsb ishst, dsb ish, dsb nshst, dmb ishst, isb, tlbi vae1is x0, dc zva x3.
        let dsb = |orders_stores, completes_tlbi| Insn::Barrier(Barrier::Dsb { orders_stores, completes_tlbi });
        assert_eq!(Insn::decode(0xD5033A9F), dsb(true, false));
        assert_eq!(Insn::decode(0xD5033B9F), dsb(true, true));
        assert_eq!(Insn::decode(0xD503369F), dsb(false, false));
        assert_eq!(Insn::decode(0xD50339BF), Insn::Barrier(Barrier::Dmb { orders_stores: false }));
        assert_eq!(Insn::decode(0xD5033ABF), Insn::Barrier(Barrier::Dmb { orders_stores: true }));
        assert_eq!(Insn::decode(0xD5033FDF), Insn::Barrier(Barrier::Isb));
        // tlbi vae1is, x0; tlbi vmalle1; tlbi vaale1is, x2; tlbi rvae1is, x1.
        assert_eq!(Insn::decode(0xD508_8320), Insn::Barrier(Barrier::Tlbi(Tlbi::Va { rt: 0, leaf_only: false })));
        assert_eq!(Insn::decode(0xD508_871F), Insn::Barrier(Barrier::Tlbi(Tlbi::All { leaf_only: false })));
        assert_eq!(Insn::decode(0xD508_83E2), Insn::Barrier(Barrier::Tlbi(Tlbi::Va { rt: 2, leaf_only: true })));
        assert_eq!(Insn::decode(0xD508_8221), Insn::Barrier(Barrier::Tlbi(Tlbi::All { leaf_only: false })));
        assert_eq!(tlbi_va(0x0000_0fff_ffff_fe00), 0xffff_ffff_ffe0_0000);
        assert_eq!(Insn::decode(0xD50B_7423), Insn::DcZva { rt: 3 });
        // msr ttbr1_el1, x1; msr tcr_el1, x2; stlr x1, [x0]; str x1, [x0]; ldr x1, [x0].
        assert_eq!(Insn::decode(0xD518_2021), Insn::Msr { reg: SysReg::Ttbr1, rt: 1 });
        assert_eq!(Insn::decode(0xD518_2042), Insn::Msr { reg: SysReg::Tcr, rt: 2 });
        assert_eq!(Insn::decode(0xC89F_FC01), Insn::Store { release: true });
        assert_eq!(Insn::decode(0xF900_0001), Insn::Store { release: false });
        // stp x29, x30, [sp, #-16]!; str x0, [sp, #8].
        assert_eq!(Insn::decode(0xA9BF_7BFD), Insn::ViaSp);
        assert_eq!(Insn::decode(0xF900_07E0), Insn::ViaSp);
        // strb w1, [x0]; strh w1, [x0, #2]; str w1, [x0, x2]; stlrb w1, [x0] is an
        // exclusive-class store and stays watched; str q0, [x0]; stp x1, x2, [x0].
        assert_eq!(Insn::decode(0x3900_0001), Insn::Narrow);
        assert_eq!(Insn::decode(0x7900_0401), Insn::Narrow);
        assert_eq!(Insn::decode(0xB822_6801), Insn::Narrow);
        assert_eq!(Insn::decode(0x089F_FC01), Insn::Store { release: true });
        assert_eq!(Insn::decode(0x3D80_0000), Insn::Store { release: false });
        assert_eq!(Insn::decode(0xA900_0801), Insn::Store { release: false });
        assert_eq!(Insn::decode(0xD503_201F), Insn::Other);
        assert_eq!(Insn::decode(0xD503_2F5F), Insn::Hint(Hint::Begin));
    }

    #[test]
    fn table_descriptors() {
        assert_eq!(table_target(0x0018_0000_4400_3003, 12, false), Some(0x4400_3000));
        // A page descriptor (AF set) is not a table; nor a block.
        assert_eq!(table_target(0x0040_0000_4400_3403, 12, false), None);
        assert_eq!(table_target(0x4400_0001, 12, false), None);
        // 16K: bits [13:12] are not address bits.
        assert_eq!(table_target(0x4400_1003, 14, false), None);
        assert_eq!(table_target(0x4400_4003, 14, false), Some(0x4400_4000));
        // LPA2: OA[51:50] from bits [9:8]; 64K: OA[51:48] from [15:12].
        assert_eq!(table_target(0x4400_3303, 12, true), Some(0x000c_0000_4400_3000));
        assert_eq!(table_target(0x4401_f003, 16, false), Some(0x000f_0000_4401_0000));
    }
}
