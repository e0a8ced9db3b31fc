//! The regime a stopped kernel runs in, from its translation registers: TCR_EL1's
//! TTBR1 fields (decoded by `shared::regs::Tcr`), the folded-at-run-time name, and the
//! root table in TTBR1_EL1.

use anyhow::bail;
use ptcheck_shared::{KernelConfig, TranslationConfig};

use super::symbols::KernelFacts;

/// The regime TCR_EL1 describes for TTBR1 (TG1, T1SZ, DS).
///
/// # Errors
/// A granule or VA size no kernel configuration has.
pub fn regime(tcr: u64) -> anyhow::Result<TranslationConfig> {
    let t = ptcheck_shared::regs::Tcr(tcr);
    let (va_bits, ds) = (t.va_bits1(), t.ds());
    let kernel = match (t.tg1(), va_bits) {
        (0b10, 39) => KernelConfig::K4Va39,
        (0b10, 48) if !ds => KernelConfig::K4Va48,
        (0b10, 52) => KernelConfig::K4Va52,
        (0b01, 36) => KernelConfig::K16Va36,
        (0b01, 47) if !ds => KernelConfig::K16Va47,
        (0b01, 48) => KernelConfig::K16Va48,
        (0b01, 52) => KernelConfig::K16Va52,
        (0b11, 42) => KernelConfig::K64Va42,
        (0b11, 48) => KernelConfig::K64Va48,
        (0b11, 52) => KernelConfig::K64Va52,
        (tg, va) => bail!("TCR_EL1 {tcr:#x}: TG1 {tg:#b} with {va}-bit VAs is no kernel configuration ptcheck knows"),
    };
    TranslationConfig::new(kernel, va_bits).map_err(|_| anyhow::anyhow!("{va_bits}-bit VAs do not fit {kernel:?}"))
}

/// The regime named for the kernel's build: a 52-bit kernel (its config next to it
/// says `CONFIG_ARM64_VA_BITS=52`, or it has `vabits_actual`) running with fewer VA bits
/// is folded at run time (`4k-52@48`), not a 48-bit build.
pub fn built_for(cfg: TranslationConfig, facts: &KernelFacts, config_va_bits: Option<u32>) -> TranslationConfig {
    use ptcheck_shared::Granule;
    if cfg.va_bits == 52 || (facts.sym("vabits_actual").is_none() && config_va_bits != Some(52)) {
        return cfg;
    }
    let wide = match cfg.granule() {
        Granule::K4 => KernelConfig::K4Va52,
        Granule::K16 => KernelConfig::K16Va52,
        Granule::K64 => KernelConfig::K64Va52,
    };
    TranslationConfig::new(wide, cfg.va_bits).unwrap_or(cfg)
}

/// The root table's physical address in TTBR1_EL1 (BADDR; with 52-bit output
/// addresses PA[51:48] sits in bits [5:2]).
pub fn root_address(cfg: &TranslationConfig, ttbr1: u64) -> u64 {
    let baddr = ttbr1 & 0x0000_ffff_ffff_fffe;
    if cfg.pa_bits() == 52 {
        (baddr & !0x3c) | (((ttbr1 >> 2) & 0xf) << 48)
    } else {
        baddr
    }
}
