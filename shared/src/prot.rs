//! Attribute bits of a leaf mapping: what the kernel calls a `pgprot`.
//!
//! Bit positions are those of stage-1 block/page descriptors (Arm ARM D8.3.2); the
//! software meaning (RDONLY = AP[2], WRITE = DBM) is the arm64 kernel's.

/// Attribute bits of a block/page descriptor, without type, address or contiguous bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prot(pub u64);

impl Prot {
    /// AttrIndx[2:0], bits [4:2]: index into MAIR_EL1.
    pub const ATTR_INDX_MASK: u64 = 0b111 << 2;
    /// NS, bit 5 (ignored at non-secure EL1; kept so it round-trips).
    pub const NS: u64 = 1 << 5;
    /// AP[1], bit 6: EL0 access.
    pub const USER: u64 = 1 << 6;
    /// AP[2], bit 7: read-only (the kernel's PTE_RDONLY).
    pub const RDONLY: u64 = 1 << 7;
    /// SH[1:0], bits [9:8]. With LPA2 these bits hold OA[51:50] instead.
    pub const SH_MASK: u64 = 0b11 << 8;
    /// Inner shareable.
    pub const SH_INNER: u64 = 0b11 << 8;
    /// Access flag, bit 10.
    pub const AF: u64 = 1 << 10;
    /// not-Global, bit 11.
    pub const NG: u64 = 1 << 11;
    /// DBM, bit 51: the kernel's PTE_WRITE.
    pub const WRITE: u64 = 1 << 51;
    /// Privileged execute-never, bit 53.
    pub const PXN: u64 = 1 << 53;
    /// Unprivileged execute-never, bit 54.
    pub const UXN: u64 = 1 << 54;
    /// Software bits [58:55].
    pub const SW_MASK: u64 = 0b1111 << 55;

    /// Every bit a `Prot` may carry.
    pub const MASK: u64 = Self::ATTR_INDX_MASK
        | Self::NS
        | Self::USER
        | Self::RDONLY
        | Self::SH_MASK
        | Self::AF
        | Self::NG
        | Self::WRITE
        | Self::PXN
        | Self::UXN
        | Self::SW_MASK;

    /// MAIR index of Normal write-back memory (the kernel's MT_NORMAL).
    pub const MT_NORMAL: u64 = 0;
    /// MAIR index of Normal Tagged memory (MT_NORMAL_TAGGED).
    pub const MT_NORMAL_TAGGED: u64 = 1;
    /// MAIR index of Normal non-cacheable memory (MT_NORMAL_NC).
    pub const MT_NORMAL_NC: u64 = 2;
    /// MAIR index of Device-nGnRE (MT_DEVICE_nGnRE).
    pub const MT_DEVICE_NGNRE: u64 = 4;

    const fn base(attr: u64) -> u64 {
        Self::AF | Self::SH_INNER | (attr << 2)
    }

    /// PAGE_KERNEL: read/write, never executable.
    pub const KERNEL: Prot = Prot(Self::base(Self::MT_NORMAL) | Self::PXN | Self::UXN | Self::WRITE);
    /// PAGE_KERNEL_RO.
    pub const KERNEL_RO: Prot = Prot(Self::base(Self::MT_NORMAL) | Self::PXN | Self::UXN | Self::RDONLY);
    /// PAGE_KERNEL_ROX: kernel text.
    pub const KERNEL_ROX: Prot = Prot(Self::base(Self::MT_NORMAL) | Self::UXN | Self::RDONLY);
    /// PAGE_KERNEL_EXEC.
    pub const KERNEL_EXEC: Prot = Prot(Self::base(Self::MT_NORMAL) | Self::UXN | Self::WRITE);
    /// PAGE_KERNEL with Normal-Tagged memory.
    pub const KERNEL_TAGGED: Prot = Prot(Self::base(Self::MT_NORMAL_TAGGED) | Self::PXN | Self::UXN | Self::WRITE);
    /// Device-nGnRE, read/write, never executable.
    pub const DEVICE: Prot = Prot(Self::base(Self::MT_DEVICE_NGNRE) | Self::PXN | Self::UXN | Self::WRITE);

    /// Whether only attribute bits are set.
    pub const fn is_valid(self) -> bool {
        self.0 & !Self::MASK == 0
    }

    /// The MAIR index.
    pub const fn attr_index(self) -> u64 {
        (self.0 & Self::ATTR_INDX_MASK) >> 2
    }
}
