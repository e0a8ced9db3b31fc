//! VMSAv8-64 stage-1 descriptors (Arm ARM D8.3): encode and decode table, block and
//! page entries, including the 52-bit output-address layouts.

use crate::config::{OaFormat, TranslationConfig};
use crate::level::Level;
use crate::prot::Prot;

/// One 64-bit translation table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Descriptor(pub u64);

/// What an entry is at a given level, as the hardware walker would read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorKind {
    /// Bit 0 clear: translation fault.
    Invalid,
    /// Points at a next-level table (levels < 3, bits[1:0] = 0b11).
    Table,
    /// A block mapping (bits[1:0] = 0b01 at a level that allows blocks).
    Block,
    /// A page mapping (level 3, bits[1:0] = 0b11).
    Page,
    /// Valid bit set but an encoding this level does not allow: translation fault.
    Reserved,
}

impl Descriptor {
    /// Bit 0: valid.
    pub const VALID: u64 = 1 << 0;
    /// Bit 1: table (levels < 3) or page (level 3); clear means block.
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// Bit 52: contiguous hint.
    pub const CONT: u64 = 1 << 52;
    /// Bit 59 of a table descriptor: PXNTable.
    pub const PXN_TABLE: u64 = 1 << 59;
    /// Bit 60 of a table descriptor: UXNTable.
    pub const UXN_TABLE: u64 = 1 << 60;
    /// Bits [62:61] of a table descriptor: APTable.
    pub const AP_TABLE_MASK: u64 = 0b11 << 61;
    /// Bit 63 of a table descriptor: NSTable.
    pub const NS_TABLE: u64 = 1 << 63;
    /// The hierarchical attribute bits of a table descriptor.
    pub const TABLE_ATTR_MASK: u64 = Self::PXN_TABLE | Self::UXN_TABLE | Self::AP_TABLE_MASK | Self::NS_TABLE;

    /// The zero (invalid) entry every fresh table must be full of.
    pub const ZERO: Descriptor = Descriptor(0);

    /// Encode a table descriptor pointing at `table_pa`.
    pub fn table(cfg: &TranslationConfig, table_pa: u64, table_attrs: u64) -> Descriptor {
        debug_assert!(table_attrs & !Self::TABLE_ATTR_MASK == 0);
        Descriptor(encode_address(cfg, table_pa) | table_attrs | Self::VALID | Self::TABLE_OR_PAGE)
    }

    /// Encode a block (level < 3) or page (level 3) descriptor mapping `pa`.
    /// With LPA2 the shareability bits of `prot` are dropped: they hold OA[51:50] and
    /// shareability comes from TCR_EL1.SH1.
    pub fn leaf(cfg: &TranslationConfig, level: Level, pa: u64, prot: Prot, contiguous: bool) -> Descriptor {
        let mut attrs = prot.0 & Prot::MASK;
        if cfg.oa_format() == OaFormat::Lpa2 {
            attrs &= !Prot::SH_MASK;
        }
        let ty = if level == Level::LEAF { Self::VALID | Self::TABLE_OR_PAGE } else { Self::VALID };
        let cont = if contiguous { Self::CONT } else { 0 };
        Descriptor(encode_address(cfg, pa) | attrs | ty | cont)
    }

    /// Whether the valid bit is set.
    pub const fn is_valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    /// Classify the entry as the walker sees it at `level`.
    pub fn kind(self, cfg: &TranslationConfig, level: Level) -> DescriptorKind {
        if !self.is_valid() {
            return DescriptorKind::Invalid;
        }
        let bit1 = self.0 & Self::TABLE_OR_PAGE != 0;
        match (level == Level::LEAF, bit1) {
            (true, true) => DescriptorKind::Page,
            (true, false) => DescriptorKind::Reserved,
            (false, true) => DescriptorKind::Table,
            (false, false) if cfg.arch_allows_block(level) => DescriptorKind::Block,
            (false, false) => DescriptorKind::Reserved,
        }
    }

    /// The output address (of a block/page) or next-level table address, decoded
    /// from the regime's address layout. Bits below the page size are zero.
    pub fn address(self, cfg: &TranslationConfig) -> u64 {
        decode_address(cfg, self.0)
    }

    /// The leaf attribute bits (with LPA2, SH is reported as inner shareable, which
    /// is what TCR_EL1.SH1 supplies).
    pub fn prot(self, cfg: &TranslationConfig) -> Prot {
        let mut bits = self.0 & Prot::MASK;
        if cfg.oa_format() == OaFormat::Lpa2 {
            bits = (bits & !Prot::SH_MASK) | Prot::SH_INNER;
        }
        Prot(bits)
    }

    /// Whether the contiguous hint is set.
    pub const fn is_contiguous(self) -> bool {
        self.0 & Self::CONT != 0
    }

    /// The table attribute bits (PXNTable, UXNTable, APTable, NSTable).
    pub const fn table_attrs(self) -> u64 {
        self.0 & Self::TABLE_ATTR_MASK
    }
}

/// Bits of a descriptor that hold address bits [47:page_shift] (and [49:48] with LPA2).
fn inplace_mask(cfg: &TranslationConfig) -> u64 {
    let low = !((1u64 << cfg.granule().page_shift()) - 1);
    let high_bit = match cfg.oa_format() {
        OaFormat::Lpa2 => 50,
        OaFormat::Bits48 | OaFormat::Lpa64k => 48,
    };
    low & ((1u64 << high_bit) - 1)
}

/// Place a physical address into descriptor bits.
pub fn encode_address(cfg: &TranslationConfig, pa: u64) -> u64 {
    let inplace = pa & inplace_mask(cfg);
    match cfg.oa_format() {
        OaFormat::Bits48 => inplace,
        OaFormat::Lpa2 => inplace | (((pa >> 50) & 0b11) << 8),
        OaFormat::Lpa64k => inplace | (((pa >> 48) & 0b1111) << 12),
    }
}

/// Recover a physical address from descriptor bits.
pub fn decode_address(cfg: &TranslationConfig, desc: u64) -> u64 {
    let inplace = desc & inplace_mask(cfg);
    match cfg.oa_format() {
        OaFormat::Bits48 => inplace,
        OaFormat::Lpa2 => inplace | (((desc >> 8) & 0b11) << 50),
        OaFormat::Lpa64k => inplace | (((desc >> 12) & 0b1111) << 48),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TranslationConfig;

    /// Every config: every level's leaf and table descriptors round-trip for aligned
    /// addresses spread over the whole PA range, including the top 52-bit bits.
    #[test]
    fn round_trip_every_config() {
        for cfg in TranslationConfig::all() {
            let pa_top = 1u64 << cfg.pa_bits();
            for lvl in cfg.root_level().0..=3 {
                let level = Level(lvl);
                let align = if lvl == 3 { cfg.page_size() } else { cfg.entry_span(level).min(pa_top / 2) };
                for k in [0u64, 1, 3, 0x5a5, u64::MAX] {
                    let pa = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % pa_top) & !(align - 1);
                    let t = Descriptor::table(&cfg, pa & !(cfg.page_size() - 1), Descriptor::UXN_TABLE);
                    if lvl < 3 {
                        assert_eq!(t.kind(&cfg, level), DescriptorKind::Table, "{cfg} {level}");
                        assert_eq!(t.address(&cfg), pa & !(cfg.page_size() - 1), "{cfg} {level}");
                        assert_eq!(t.table_attrs(), Descriptor::UXN_TABLE);
                    }
                    for prot in [Prot::KERNEL, Prot::KERNEL_ROX, Prot::DEVICE] {
                        for cont in [false, true] {
                            let d = Descriptor::leaf(&cfg, level, pa, prot, cont);
                            assert_eq!(d.address(&cfg), pa, "{cfg} {level} pa={pa:#x}");
                            assert_eq!(d.prot(&cfg), prot, "{cfg} {level}");
                            assert_eq!(d.is_contiguous(), cont);
                            let want = if lvl == 3 {
                                DescriptorKind::Page
                            } else if cfg.arch_allows_block(level) {
                                DescriptorKind::Block
                            } else {
                                DescriptorKind::Reserved
                            };
                            assert_eq!(d.kind(&cfg, level), want, "{cfg} {level}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn high_address_bits_land_where_the_arm_arm_puts_them() {
        let c4 = TranslationConfig::parse("4k-52").unwrap();
        // KERNEL_RO: no DBM (bit 51), so bits [51:50] must be clear.
        let d = Descriptor::leaf(&c4, Level(3), 0xC_0000_0000_1000, Prot::KERNEL_RO, false);
        // OA[51:50] = 0b11 in bits [9:8]; SH bits are not in the descriptor.
        assert_eq!(d.0 & (0b11 << 8), 0b11 << 8);
        assert_eq!(d.0 & (0b11 << 50), 0);
        let d = Descriptor::leaf(&c4, Level(3), 0x1000, Prot::KERNEL, false);
        assert_eq!(d.0 & (0b11 << 8), 0, "LPA2 leaves carry no SH bits");
        let c64 = TranslationConfig::parse("64k-52").unwrap();
        let d = Descriptor::leaf(&c64, Level(3), 0xA_0000_0001_0000, Prot::KERNEL_RO, false);
        assert_eq!((d.0 >> 12) & 0xf, 0xA);
        assert_eq!(d.0 & (0xf << 48), 0);
        let c48 = TranslationConfig::parse("4k-48").unwrap();
        let d = Descriptor::leaf(&c48, Level(2), 0x8000_0020_0000, Prot::KERNEL, false);
        assert_eq!(d.0 & 0x0000_ffff_ffff_f000, 0x8000_0020_0000);
        assert_eq!(d.0 & 0b11, 0b01, "block type");
    }
}
