//! The bug catalogue: deliberate builder bugs, each a real mistake someone could make
//! in this code.
//!
//! This file is the catalogue's one home: each variant's id, name and where it can
//! show up. The builder is generic over `const MUTATION: u32` and each variant is one
//! `if MUTATION == …` at the place the mistake would be made; the clean builder is
//! `MUTATION == NONE`. A plan selects a variant with [`ptcheck_shared::abi::Plan::mutation`],
//! honoured only by builds with the `mutants` cargo feature (tests, `cargo xtask
//! mutants`); a normal build refuses such a plan, so no normal build can run one.

use ptcheck_shared::{Granule, Level, LinuxLevel, OaFormat, TranslationConfig};

/// The correct builder.
pub const NONE: u32 = 0;
/// A new table is linked without being cleared.
pub const SKIP_ZERO: u32 = 1;
/// A new table is cleared only after it is linked into its parent.
pub const ZERO_AFTER_LINK: u32 = 2;
/// At a folded level, the table is reached through that level's (NULL) fixmap accessor.
pub const FOLDED_FIXMAP: u32 = 3;
/// The pointer into a freshly allocated table is not advanced by the address's index.
pub const MISSING_INDEX: u32 = 4;
/// The contiguous bit is set when `addr` and `next` are aligned, whatever `phys` is.
pub const CONT_MISALIGNED: u32 = 5;
/// Blocks are used despite NO_BLOCK_MAPPINGS.
pub const BLOCK_IGNORES_FLAG: u32 = 6;
/// Level-1 blocks are written with 16K and 64K pages too.
pub const PUD_BLOCK_ANY_GRANULE: u32 = 7;
/// The attribute-change rule lets the output address change.
pub const UNSAFE_REMAP_ALLOWED: u32 = 8;
/// UXNTable/PXNTable are not set on new tables.
pub const TABLE_BITS_DROPPED: u32 = 9;
/// A range ending exactly on a block boundary loses its last page.
pub const OFF_BY_ONE_END: u32 = 10;
/// Re-entering an existing table takes its address with the parent level's block mask.
pub const STALE_EXISTING_TABLE: u32 = 11;
/// The high output-address bits of the 52-bit descriptor formats are dropped.
pub const LPA2_OA_BITS: u32 = 12;
/// No `dsb ishst` between clearing a table and linking it (the seed's barrier).
pub const MISSING_BARRIER: u32 = 13;
/// Records the `dsb ishst` after a clear without issuing it: the record lies.
pub const LIE_BARRIER: u32 = 14;
/// Records a new (non-root) table's clear without clearing it: the record lies.
pub const LIE_CLEAR: u32 = 15;

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// The `MUTATION` value.
    pub id: u32,
    /// Name on the command line and in the `mutant-<name>` guest feature.
    pub name: &'static str,
    /// What it breaks, in one line.
    pub breaks: &'static str,
    /// Which regimes it can show up on, in words.
    pub shows_on: &'static str,
    /// Whether it can show up on `cfg`.
    pub applies: fn(&TranslationConfig) -> bool,
    /// Shows only in what the tracer observes (its record is a lie), and only for the
    /// `linux` builder: linux-6.9 clears through FIX_PTE, whose clear_fixmap issues
    /// real DSBs after the clear.
    pub observed_only: bool,
}

fn any(_: &TranslationConfig) -> bool {
    true
}

fn has_folded_level(cfg: &TranslationConfig) -> bool {
    LinuxLevel::ALL.iter().any(|&l| cfg.is_folded(l))
}

fn has_non_4k_level1(cfg: &TranslationConfig) -> bool {
    cfg.granule() != Granule::K4 && cfg.has_level(Level(1))
}

fn has_52bit_oa(cfg: &TranslationConfig) -> bool {
    cfg.oa_format() != OaFormat::Bits48
}

/// The catalogue, clean builder excluded.
pub const ALL_VARIANTS: &[Variant] = &[
    Variant {
        id: SKIP_ZERO,
        name: "skip-zero",
        breaks: "new tables keep whatever the allocator left (the pre-change assumption)",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: ZERO_AFTER_LINK,
        name: "zero-after-link",
        breaks: "a walker can see a linked table before it is cleared",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: FOLDED_FIXMAP,
        name: "folded-fixmap",
        breaks: "a folded level's NULL fixmap accessor is used: compiles, does not boot",
        shows_on: "configs with a folded level",
        applies: has_folded_level,
        observed_only: false,
    },
    Variant {
        id: MISSING_INDEX,
        name: "missing-index",
        breaks: "entries of a fresh table land from entry 0, not at the address's index",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: CONT_MISALIGNED,
        name: "cont-misaligned",
        breaks: "contiguous runs whose output addresses are not aligned to the run",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: BLOCK_IGNORES_FLAG,
        name: "block-ignores-flag",
        breaks: "blocks where NO_BLOCK_MAPPINGS asked for pages",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: PUD_BLOCK_ANY_GRANULE,
        name: "pud-block-any-granule",
        breaks: "level-1 blocks the kernel never uses (reserved without LPA2)",
        shows_on: "16K/64K configs with a level 1",
        applies: has_non_4k_level1,
        observed_only: false,
    },
    Variant {
        id: UNSAFE_REMAP_ALLOWED,
        name: "unsafe-remap-allowed",
        breaks: "a live mapping's output address is changed instead of refused",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: TABLE_BITS_DROPPED,
        name: "table-bits-dropped",
        breaks: "UXNTable/PXNTable missing: hierarchical execute-never lost",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: OFF_BY_ONE_END,
        name: "off-by-one-end",
        breaks: "the last page before a block boundary is left unmapped",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: STALE_EXISTING_TABLE,
        name: "stale-existing-table",
        breaks: "an existing table is re-entered at the wrong address",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: LPA2_OA_BITS,
        name: "lpa2-oa-bits",
        breaks: "OA[51:48/50] dropped: 52-bit physical addresses wrap below 256 TiB",
        shows_on: "52-bit configs (4k-52, 16k-52, 64k-52)",
        applies: has_52bit_oa,
        observed_only: false,
    },
    Variant {
        id: MISSING_BARRIER,
        name: "missing-barrier",
        breaks: "no dsb ishst between clearing a table and linking it",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
    Variant {
        id: LIE_BARRIER,
        name: "lie-barrier",
        breaks: "records the dsb ishst after a clear but never issues it (its own record says ordered)",
        shows_on: "all, traced (the linux builder)",
        applies: any,
        observed_only: true,
    },
    Variant {
        id: LIE_CLEAR,
        name: "lie-clear",
        breaks: "records a new table's clear but never clears it (its own record says zeroed)",
        shows_on: "all",
        applies: any,
        observed_only: false,
    },
];

/// The variant called `name`.
pub fn by_name(name: &str) -> Option<&'static Variant> {
    ALL_VARIANTS.iter().find(|v| v.name == name)
}

/// The variant with id `id` (`None` for the clean builder and unknown ids).
pub fn by_id(id: u32) -> Option<&'static Variant> {
    ALL_VARIANTS.iter().find(|v| v.id == id)
}

/// Ids run from 1 to the number of variants: the builder's dispatch table relies on it.
const _: () = {
    let mut i = 0;
    while i < ALL_VARIANTS.len() {
        assert!(ALL_VARIANTS[i].id as usize == i + 1, "variant ids must be 1, 2, 3, … in order");
        i += 1;
    }
};
