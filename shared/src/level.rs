//! Lookup levels, both as the architecture numbers them and as Linux names them.
//!
//! The architecture numbers levels -1..=3 (level -1 exists only with 52-bit VAs on
//! 4K, FEAT_LPA2). Linux names its tables pgd/p4d/pud/pmd/pte; with fewer than five
//! levels some names are *folded*: they exist in the code but have no table of their
//! own, and their "entry" is the entry of the level above. The 2025 kernel change to
//! pass a table type instead of a shift to `pgtable_alloc` exists because shifts
//! cannot tell folded levels apart, so here levels are always named, never inferred.

/// An architectural lookup level, -1..=3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(pub i8);

impl Level {
    /// The last level: only pages (or invalid entries) live here.
    pub const LEAF: Level = Level(3);

    /// The next level down.
    pub const fn next(self) -> Level {
        Level(self.0 + 1)
    }

    /// Index of this level in a 5-element array (level -1 is index 0).
    pub const fn index(self) -> usize {
        (self.0 + 1) as usize
    }
}

impl core::fmt::Display for Level {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "L{}", self.0)
    }
}

/// Linux's names for the five table levels, top first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LinuxLevel {
    /// Page global directory: always present, always the root.
    Pgd = 0,
    /// Fourth-level directory: present only with 5 levels.
    P4d = 1,
    /// Page upper directory: present with 4 or 5 levels.
    Pud = 2,
    /// Page middle directory: present with 3 or more levels.
    Pmd = 3,
    /// Page table: always present, level 3.
    Pte = 4,
}

impl LinuxLevel {
    /// All five, top first.
    pub const ALL: [LinuxLevel; 5] =
        [LinuxLevel::Pgd, LinuxLevel::P4d, LinuxLevel::Pud, LinuxLevel::Pmd, LinuxLevel::Pte];

    /// Decode from the ABI's `u8`.
    pub const fn from_u8(v: u8) -> Option<LinuxLevel> {
        match v {
            0 => Some(LinuxLevel::Pgd),
            1 => Some(LinuxLevel::P4d),
            2 => Some(LinuxLevel::Pud),
            3 => Some(LinuxLevel::Pmd),
            4 => Some(LinuxLevel::Pte),
            _ => None,
        }
    }

    /// The level below (Pte has none).
    pub const fn below(self) -> Option<LinuxLevel> {
        LinuxLevel::from_u8(self as u8 + 1)
    }

    /// The architectural level this name would have in a full 5-level regime.
    /// Pgd is special: it always takes the root level (see `TranslationConfig::hw_level`).
    pub const fn unfolded_level(self) -> Level {
        Level(self as i8 - 1)
    }

    /// Lower-case name as used by the kernel.
    pub const fn name(self) -> &'static str {
        match self {
            LinuxLevel::Pgd => "pgd",
            LinuxLevel::P4d => "p4d",
            LinuxLevel::Pud => "pud",
            LinuxLevel::Pmd => "pmd",
            LinuxLevel::Pte => "pte",
        }
    }
}
