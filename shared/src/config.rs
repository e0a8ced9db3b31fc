//! The ten Linux arm64 kernel configurations and the translation regime each one
//! runs with (Arm ARM D8.2: VMSAv8-64 translation table format, lookup levels).

use crate::granule::Granule;
use crate::level::{Level, LinuxLevel};

/// A kernel build configuration: granule and `CONFIG_ARM64_VA_BITS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum KernelConfig {
    /// 4K pages, 39-bit VA: 3 levels.
    K4Va39 = 0,
    /// 4K pages, 48-bit VA: 4 levels.
    K4Va48 = 1,
    /// 4K pages, 52-bit VA (FEAT_LPA2): 5 levels.
    K4Va52 = 2,
    /// 16K pages, 36-bit VA: 2 levels.
    K16Va36 = 3,
    /// 16K pages, 47-bit VA: 3 levels.
    K16Va47 = 4,
    /// 16K pages, 48-bit VA: 4 levels, 2-entry root.
    K16Va48 = 5,
    /// 16K pages, 52-bit VA (FEAT_LPA2): 4 levels.
    K16Va52 = 6,
    /// 64K pages, 42-bit VA: 2 levels.
    K64Va42 = 7,
    /// 64K pages, 48-bit VA: 3 levels.
    K64Va48 = 8,
    /// 64K pages, 52-bit VA (FEAT_LVA/LPA): 3 levels.
    K64Va52 = 9,
}

impl KernelConfig {
    /// All ten, in the order reports list them.
    pub const ALL: [KernelConfig; 10] = [
        KernelConfig::K4Va39,
        KernelConfig::K4Va48,
        KernelConfig::K4Va52,
        KernelConfig::K16Va36,
        KernelConfig::K16Va47,
        KernelConfig::K16Va48,
        KernelConfig::K16Va52,
        KernelConfig::K64Va42,
        KernelConfig::K64Va48,
        KernelConfig::K64Va52,
    ];

    /// Decode from the ABI's `u32`.
    pub fn from_u32(v: u32) -> Option<KernelConfig> {
        KernelConfig::ALL.get(v as usize).copied()
    }

    /// The page granule.
    pub const fn granule(self) -> Granule {
        match self {
            KernelConfig::K4Va39 | KernelConfig::K4Va48 | KernelConfig::K4Va52 => Granule::K4,
            KernelConfig::K16Va36 | KernelConfig::K16Va47 | KernelConfig::K16Va48 | KernelConfig::K16Va52 => {
                Granule::K16
            }
            KernelConfig::K64Va42 | KernelConfig::K64Va48 | KernelConfig::K64Va52 => Granule::K64,
        }
    }

    /// The configured (largest) VA size.
    pub const fn va_bits(self) -> u32 {
        match self {
            KernelConfig::K4Va39 => 39,
            KernelConfig::K4Va48 | KernelConfig::K16Va48 | KernelConfig::K64Va48 => 48,
            KernelConfig::K16Va36 => 36,
            KernelConfig::K16Va47 => 47,
            KernelConfig::K64Va42 => 42,
            KernelConfig::K4Va52 | KernelConfig::K16Va52 | KernelConfig::K64Va52 => 52,
        }
    }

    /// The VA size the kernel falls back to on a CPU without LPA2 (4K/16K) or LVA
    /// (64K): the level(s) above it are folded at run time.
    pub const fn fallback_va_bits(self) -> Option<u32> {
        match self {
            KernelConfig::K4Va52 => Some(48),
            KernelConfig::K16Va52 => Some(47),
            KernelConfig::K64Va52 => Some(48),
            _ => None,
        }
    }

    /// The name used on the command line and in reports, e.g. "16k-48".
    pub const fn name(self) -> &'static str {
        match self {
            KernelConfig::K4Va39 => "4k-39",
            KernelConfig::K4Va48 => "4k-48",
            KernelConfig::K4Va52 => "4k-52",
            KernelConfig::K16Va36 => "16k-36",
            KernelConfig::K16Va47 => "16k-47",
            KernelConfig::K16Va48 => "16k-48",
            KernelConfig::K16Va52 => "16k-52",
            KernelConfig::K64Va42 => "64k-42",
            KernelConfig::K64Va48 => "64k-48",
            KernelConfig::K64Va52 => "64k-52",
        }
    }
}

/// How output addresses (and next-level table addresses) are laid out in a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OaFormat {
    /// 48-bit OA: address bits [47:page_shift] in place.
    Bits48,
    /// FEAT_LPA2 with TCR_EL1.DS=1 (4K/16K): OA[49:page_shift] in place, OA[51:50] in
    /// descriptor bits [9:8]; shareability moves from the descriptor to TCR.SH1.
    Lpa2,
    /// FEAT_LPA with 64K pages: OA[47:16] in place, OA[51:48] in descriptor bits [15:12].
    Lpa64k,
}

/// A translation regime the builder can target: a kernel configuration and the VA size
/// it actually runs with (smaller than configured when a 52-bit kernel runs "folded
/// down" on a CPU without LPA2/LVA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TranslationConfig {
    /// What the kernel was built for.
    pub kernel: KernelConfig,
    /// Effective VA bits (== `kernel.va_bits()` unless folded down).
    pub va_bits: u32,
}

/// Why a (kernel config, VA bits) pair is not a regime Linux runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedVaBits;

impl TranslationConfig {
    /// The configuration as built, with its full VA size.
    pub const fn full(kernel: KernelConfig) -> Self {
        TranslationConfig { kernel, va_bits: kernel.va_bits() }
    }

    /// The run-time folded-down variant of a 52-bit configuration.
    pub const fn folded_down(kernel: KernelConfig) -> Option<Self> {
        match kernel.fallback_va_bits() {
            Some(va_bits) => Some(TranslationConfig { kernel, va_bits }),
            None => None,
        }
    }

    /// Build from ABI fields, rejecting pairs Linux never runs with.
    ///
    /// # Errors
    /// [`UnsupportedVaBits`] unless `va_bits` is the configured size or its fallback.
    pub fn new(kernel: KernelConfig, va_bits: u32) -> Result<Self, UnsupportedVaBits> {
        if va_bits == kernel.va_bits() || Some(va_bits) == kernel.fallback_va_bits() {
            Ok(TranslationConfig { kernel, va_bits })
        } else {
            Err(UnsupportedVaBits)
        }
    }

    /// Every regime ptcheck covers: the ten configurations, then the three
    /// folded-down variants.
    pub fn all() -> impl Iterator<Item = TranslationConfig> {
        KernelConfig::ALL
            .iter()
            .map(|&k| TranslationConfig::full(k))
            .chain(KernelConfig::ALL.iter().filter_map(|&k| TranslationConfig::folded_down(k)))
    }

    /// Whether this is the run-time fallback of a 52-bit configuration.
    pub const fn is_folded_down(&self) -> bool {
        self.va_bits != self.kernel.va_bits()
    }

    /// The granule.
    pub const fn granule(&self) -> Granule {
        self.kernel.granule()
    }

    /// Page size in bytes.
    pub const fn page_size(&self) -> u64 {
        self.granule().page_size()
    }

    /// Number of lookup levels: ceil((va_bits - page_shift) / bits_per_level).
    pub const fn levels(&self) -> u32 {
        let g = self.granule();
        (self.va_bits - g.page_shift()).div_ceil(g.bits_per_level())
    }

    /// The level of the root table (TTBR1 points at it).
    pub const fn root_level(&self) -> Level {
        Level(4 - self.levels() as i8)
    }

    /// Lowest VA bit resolved at `level` (= log2 of the span one entry maps).
    pub const fn level_shift(&self, level: Level) -> u32 {
        let g = self.granule();
        g.page_shift() + (3 - level.0) as u32 * g.bits_per_level()
    }

    /// Bytes one entry at `level` covers.
    pub const fn entry_span(&self, level: Level) -> u64 {
        1 << self.level_shift(level)
    }

    /// VA bits indexed at `level`: a full table below the root, fewer at the root
    /// (e.g. 1 bit, 2 entries, at level 0 of 16k-48).
    pub const fn index_bits(&self, level: Level) -> u32 {
        let top = self.level_shift(level) + self.granule().bits_per_level();
        if top > self.va_bits {
            self.va_bits - self.level_shift(level)
        } else {
            self.granule().bits_per_level()
        }
    }

    /// Entries in a table at `level`.
    pub const fn entries(&self, level: Level) -> usize {
        1 << self.index_bits(level)
    }

    /// Bytes in a table at `level` (the root may be smaller than a page; it must
    /// still be aligned to its own size, and the kernel allocates it a whole page).
    pub const fn table_bytes(&self, level: Level) -> u64 {
        (self.entries(level) * 8) as u64
    }

    /// Index of `va` in the table at `level`.
    pub const fn index(&self, level: Level, va: u64) -> usize {
        ((va >> self.level_shift(level)) as usize) & (self.entries(level) - 1)
    }

    /// Whether `level` exists in this regime.
    pub const fn has_level(&self, level: Level) -> bool {
        level.0 >= self.root_level().0 && level.0 <= 3
    }

    /// Which architectural level the Linux level `l` is, or `None` when it is folded.
    pub const fn hw_level(&self, l: LinuxLevel) -> Option<Level> {
        match l {
            LinuxLevel::Pgd => Some(self.root_level()),
            _ => {
                let lvl = l.unfolded_level();
                if lvl.0 > self.root_level().0 {
                    Some(lvl)
                } else {
                    None
                }
            }
        }
    }

    /// Whether the Linux level `l` is folded into the one above it.
    pub const fn is_folded(&self, l: LinuxLevel) -> bool {
        self.hw_level(l).is_none()
    }

    /// Block size the *kernel's* policy uses at `level`, if any: PMD blocks at level 2
    /// for every granule, PUD blocks at level 1 only with 4K (`pud_sect_supported`).
    pub const fn kernel_block_size(&self, level: Level) -> Option<u64> {
        match level.0 {
            2 => Some(self.entry_span(level)),
            1 if matches!(self.granule(), Granule::K4) => Some(self.entry_span(level)),
            _ => None,
        }
    }

    /// Whether the architecture allows a block descriptor at `level` in this regime
    /// (Arm ARM D8.3.1): 4K at L1/L2 (+L0 with DS), 16K at L2 (+L1 with DS), 64K at L2
    /// (+L1 with 52-bit OA). What a walker must accept, wider than the kernel's policy.
    pub const fn arch_allows_block(&self, level: Level) -> bool {
        let wide = self.va_bits == 52;
        match (self.granule(), level.0) {
            (_, 2) => true,
            (Granule::K4, 1) => true,
            (Granule::K4, 0) | (Granule::K16, 1) | (Granule::K64, 1) => wide,
            _ => false,
        }
    }

    /// Entries in a contiguous run at `level` (CONT_PTE at 3, CONT_PMD at 2).
    pub const fn cont_entries(&self, level: Level) -> Option<u64> {
        match (self.granule(), level.0) {
            (Granule::K4, 3) => Some(16),
            (Granule::K16, 3) => Some(128),
            (Granule::K64, 3) => Some(32),
            (Granule::K4, 2) => Some(16),
            (Granule::K16, 2) => Some(32),
            (Granule::K64, 2) => Some(32),
            _ => None,
        }
    }

    /// Bytes covered by a contiguous run at `level`.
    pub const fn cont_span(&self, level: Level) -> Option<u64> {
        match self.cont_entries(level) {
            Some(n) => Some(n * self.entry_span(level)),
            None => None,
        }
    }

    /// The descriptor output-address layout.
    pub const fn oa_format(&self) -> OaFormat {
        match (self.va_bits, self.granule()) {
            (52, Granule::K64) => OaFormat::Lpa64k,
            (52, _) => OaFormat::Lpa2,
            _ => OaFormat::Bits48,
        }
    }

    /// Physical address size: 52 bits with LPA/LPA2, 48 otherwise.
    pub const fn pa_bits(&self) -> u32 {
        if self.va_bits == 52 {
            52
        } else {
            48
        }
    }

    /// Lowest TTBR1 (kernel) address: the top `2^va_bits` bytes of the address space.
    pub const fn va_start(&self) -> u64 {
        !0u64 << self.va_bits
    }

    /// Whether the regime needs FEAT_LPA2 (TCR_EL1.DS=1).
    pub const fn needs_lpa2(&self) -> bool {
        matches!(self.oa_format(), OaFormat::Lpa2)
    }

    /// Whether the regime needs 52-bit VAs with 64K pages (FEAT_LVA).
    pub const fn needs_lva(&self) -> bool {
        self.va_bits == 52 && matches!(self.granule(), Granule::K64)
    }

    /// Short name: "4k-52" for the full config, "4k-52@48" for its folded-down variant.
    pub fn write_name(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        if self.is_folded_down() {
            write!(f, "{}@{}", self.kernel.name(), self.va_bits)
        } else {
            f.write_str(self.kernel.name())
        }
    }

    /// Parse "4k-48" or "4k-52@48".
    pub fn parse(s: &str) -> Option<TranslationConfig> {
        let (base, va) = match s.split_once('@') {
            Some((b, v)) => (b, Some(v.parse::<u32>().ok()?)),
            None => (s, None),
        };
        let kernel = *KernelConfig::ALL.iter().find(|k| k.name() == base)?;
        TranslationConfig::new(kernel, va.unwrap_or(kernel.va_bits())).ok()
    }
}

impl core::fmt::Display for TranslationConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.write_name(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str) -> TranslationConfig {
        TranslationConfig::parse(name).unwrap()
    }

    #[test]
    fn levels_and_roots_match_the_kernel_table() {
        // (name, levels, root level, root entries)
        let want = [
            ("4k-39", 3, 1, 512),
            ("4k-48", 4, 0, 512),
            ("4k-52", 5, -1, 16),
            ("16k-36", 2, 2, 2048),
            ("16k-47", 3, 1, 2048),
            ("16k-48", 4, 0, 2),
            ("16k-52", 4, 0, 32),
            ("64k-42", 2, 2, 8192),
            ("64k-48", 3, 1, 64),
            ("64k-52", 3, 1, 1024),
            ("4k-52@48", 4, 0, 512),
            ("16k-52@47", 3, 1, 2048),
            ("64k-52@48", 3, 1, 64),
        ];
        for (name, levels, root, entries) in want {
            let c = cfg(name);
            assert_eq!(c.levels(), levels, "{name}");
            assert_eq!(c.root_level(), Level(root), "{name}");
            assert_eq!(c.entries(c.root_level()), entries, "{name}");
        }
        assert_eq!(TranslationConfig::all().count(), 13);
    }

    #[test]
    fn folding_matches_linux() {
        use LinuxLevel::*;
        let folded = |n: &str| -> [bool; 5] {
            let c = cfg(n);
            LinuxLevel::ALL.map(|l| c.is_folded(l))
        };
        assert_eq!(folded("4k-39"), [false, true, true, false, false]);
        assert_eq!(folded("4k-48"), [false, true, false, false, false]);
        assert_eq!(folded("4k-52"), [false, false, false, false, false]);
        assert_eq!(folded("16k-36"), [false, true, true, true, false]);
        assert_eq!(folded("16k-48"), [false, true, false, false, false]);
        assert_eq!(folded("16k-52@47"), [false, true, true, false, false]);
        assert_eq!(cfg("4k-39").hw_level(Pgd), Some(Level(1)));
        assert_eq!(cfg("16k-36").hw_level(Pgd), Some(Level(2)));
        assert_eq!(cfg("4k-52").hw_level(P4d), Some(Level(0)));
    }

    #[test]
    fn block_and_cont_sizes() {
        const M: u64 = 1 << 20;
        assert_eq!(cfg("4k-48").kernel_block_size(Level(2)), Some(2 * M));
        assert_eq!(cfg("4k-48").kernel_block_size(Level(1)), Some(1024 * M));
        assert_eq!(cfg("16k-47").kernel_block_size(Level(2)), Some(32 * M));
        assert_eq!(cfg("16k-47").kernel_block_size(Level(1)), None);
        assert_eq!(cfg("64k-48").kernel_block_size(Level(2)), Some(512 * M));
        assert_eq!(cfg("4k-48").cont_span(Level(3)), Some(64 * 1024));
        assert_eq!(cfg("16k-48").cont_span(Level(3)), Some(2 * M));
        assert_eq!(cfg("64k-48").cont_span(Level(3)), Some(2 * M));
        assert_eq!(cfg("4k-48").cont_span(Level(2)), Some(32 * M));
        assert_eq!(cfg("16k-48").cont_span(Level(2)), Some(1024 * M));
        assert_eq!(cfg("64k-48").cont_span(Level(2)), Some(16 * 1024 * M));
    }

    #[test]
    fn parse_rejects_unknown() {
        assert!(TranslationConfig::parse("4k-40").is_none());
        assert!(TranslationConfig::parse("4k-48@39").is_none());
        assert!(TranslationConfig::parse("4k-52@47").is_none());
    }
}
