//! System registers: MMU control, TCR for a plan's regime, ID registers, `AT` probes.

use core::arch::asm;
use ptcheck_shared::regs::tcr;

use ptcheck_shared::{Granule, TranslationConfig};

use crate::bootmap;

/// TCR_EL1 fields for TTBR0 (the boot map) that never change: T0SZ = 25 (39-bit),
/// inner/outer write-back walks, inner shareable, 4K granule; TTBR1 walks disabled
/// (EPD1) until a plan's root is loaded.
const TCR_BOOT: u64 = (25 << tcr::T0SZ_SHIFT)
    | tcr::IRGN0_WB
    | tcr::ORGN0_WB
    | tcr::SH0_INNER
    | tcr::EPD1
    | (25 << tcr::T1SZ_SHIFT)
    | (0b10 << tcr::TG1_SHIFT)
    | (0b101 << tcr::IPS_SHIFT);

/// SCTLR_EL1: RES1 bits of ARMv8.0 plus M (MMU), C (data cache), I (instruction cache).
const SCTLR_RES1: u64 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);
const SCTLR_M: u64 = 1 << 0;
const SCTLR_C: u64 = 1 << 2;
const SCTLR_I: u64 = 1 << 12;

fn tlb_flush_all() {
    // SAFETY: invalidating all EL1 TLB entries is always allowed and has no memory effects.
    unsafe { asm!("dsb ishst", "tlbi vmalle1", "dsb ish", "isb") };
}

/// Turn the MMU and caches on over the boot map.
///
/// # Safety
/// The boot map must be built and must identity-map the running code and stack.
pub unsafe fn enable_mmu() {
    // SAFETY: the caller guarantees the boot map identity-maps what runs next.
    unsafe {
        asm!("msr mair_el1, {0}", in(reg) bootmap::MAIR);
        asm!("msr tcr_el1, {0}", in(reg) TCR_BOOT);
        asm!("msr ttbr0_el1, {0}", in(reg) bootmap::root());
        asm!("isb");
        tlb_flush_all();
        asm!("msr sctlr_el1, {0}", "isb", in(reg) SCTLR_RES1 | SCTLR_M | SCTLR_C | SCTLR_I);
    }
}

/// ID_AA64MMFR0_EL1 and ID_AA64MMFR2_EL1.
pub fn id_regs() -> (u64, u64) {
    let (m0, m2): (u64, u64);
    // SAFETY: reading ID registers has no side effects.
    unsafe { asm!("mrs {0}, id_aa64mmfr0_el1", "mrs {1}, id_aa64mmfr2_el1", out(reg) m0, out(reg) m2) };
    (m0, m2)
}

fn field(v: u64, shift: u32) -> u64 {
    (v >> shift) & 0xf
}

/// ID_AA64MMFR0_EL1.PARange as a number of bits, and its TCR.IPS encoding.
pub fn pa_range(mmfr0: u64) -> (u32, u64) {
    let parange = field(mmfr0, 0).min(6);
    ([32, 36, 40, 42, 44, 48, 52][parange as usize], parange)
}

/// Whether this CPU can translate `cfg` (granule, LPA2 / LVA) for a plan whose
/// physical addresses all lie below `pa_end`.
pub fn supports(cfg: &TranslationConfig, mmfr0: u64, mmfr2: u64, pa_end: u128) -> bool {
    let parange = field(mmfr0, 0);
    let (tgran16, tgran64, tgran4) = (field(mmfr0, 20), field(mmfr0, 24), field(mmfr0, 28));
    let varange = field(mmfr2, 16);
    let granule_ok = match cfg.granule() {
        Granule::K4 => tgran4 != 0xf,
        Granule::K16 => tgran16 != 0,
        Granule::K64 => tgran64 != 0xf,
    };
    let lpa2_ok = !cfg.needs_lpa2()
        || match cfg.granule() {
            Granule::K4 => tgran4 == 1,
            Granule::K16 => tgran16 == 2,
            Granule::K64 => false,
        };
    let lva_ok = !cfg.needs_lva() || varange == 1;
    let pa_ok = pa_end <= 1u128 << pa_range(mmfr0).0 && (cfg.pa_bits() < 52 || parange >= 6);
    granule_ok && lpa2_ok && lva_ok && pa_ok
}

/// Load `root` into TTBR1 with TCR set up for `cfg` (IPS capped at the CPU's PARange).
pub fn enter_ttbr1(cfg: &TranslationConfig, root: u64, mmfr0: u64) {
    let ips: u64 = if cfg.pa_bits() == 52 { 0b110 } else { 0b101 };
    let ips = ips.min(pa_range(mmfr0).1);
    let cleared = TCR_BOOT
        & !tcr::EPD1
        & !(tcr::TSZ_MASK << tcr::T1SZ_SHIFT)
        & !(tcr::TG_MASK << tcr::TG1_SHIFT)
        & !(tcr::IPS_MASK << tcr::IPS_SHIFT);
    let mut tcr = cleared
        | (u64::from(64 - cfg.va_bits) << tcr::T1SZ_SHIFT)
        | (cfg.granule().tcr_tg1() << tcr::TG1_SHIFT)
        | tcr::IRGN1_WB
        | tcr::ORGN1_WB
        | tcr::SH1_INNER
        | (ips << tcr::IPS_SHIFT);
    if cfg.needs_lpa2() {
        tcr |= tcr::DS;
    }
    // TTBR1.BADDR: with 52-bit PAs, bits [51:48] of the base go in TTBR bits [5:2].
    let ttbr1 = (root & 0x0000_ffff_ffff_ffc0) | ((root >> 46) & 0b11_1100);
    // SAFETY: TTBR1 walks only affect TTBR1 addresses, which nothing but the probes
    // touches; the boot map is valid under both DS settings (see bootmap).
    unsafe {
        asm!("msr ttbr1_el1, {0}", "msr tcr_el1, {1}", "isb", in(reg) ttbr1, in(reg) tcr);
    }
    tlb_flush_all();
}

/// Back to the boot TCR: TTBR1 walks off, DS off.
pub fn leave_ttbr1() {
    // SAFETY: as in enter_ttbr1; afterwards no TTBR1 address is used.
    unsafe { asm!("msr tcr_el1, {0}", "isb", in(reg) TCR_BOOT) };
    tlb_flush_all();
}

/// `AT S1E1R` and `AT S1E1W` of `va`: PAR_EL1 after each.
pub fn translate(va: u64) -> (u64, u64) {
    let (r, w): (u64, u64);
    // SAFETY: address translation instructions only write PAR_EL1.
    unsafe {
        asm!("at s1e1r, {va}", "isb", "mrs {r}, par_el1", "at s1e1w, {va}", "isb", "mrs {w}, par_el1",
             va = in(reg) va, r = out(reg) r, w = out(reg) w);
    }
    (r, w)
}
