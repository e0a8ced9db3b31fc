//! Translation granules (Arm ARM D8.2): the page size and therefore the table geometry.

/// The translation granule selected by TCR_EL1.TG1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4 KiB pages, 512 entries per table.
    K4,
    /// 16 KiB pages, 2048 entries per table.
    K16,
    /// 64 KiB pages, 8192 entries per table.
    K64,
}

impl Granule {
    /// log2 of the page size.
    pub const fn page_shift(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    /// Page size in bytes; also the size of every full table.
    pub const fn page_size(self) -> u64 {
        1 << self.page_shift()
    }

    /// VA bits resolved by one full table: a table is one page of 8-byte entries.
    pub const fn bits_per_level(self) -> u32 {
        self.page_shift() - 3
    }

    /// Short name used in configuration names ("4k", "16k", "64k").
    pub const fn name(self) -> &'static str {
        match self {
            Granule::K4 => "4k",
            Granule::K16 => "16k",
            Granule::K64 => "64k",
        }
    }

    /// TCR_EL1.TG1 encoding (note: TG1 encodes differently from TG0).
    pub const fn tcr_tg1(self) -> u64 {
        match self {
            Granule::K4 => 0b10,
            Granule::K16 => 0b01,
            Granule::K64 => 0b11,
        }
    }
}
