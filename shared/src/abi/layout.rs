//! Where things live in guest physical memory (QEMU `virt` / our KVM VM: RAM at 1 GiB).
//!
//! ```text
//! 0x4000_0000    RAM base: QEMU puts the DTB here (needs 1 MiB free below the image)
//! 0x4020_0000    guest image (text, data, bss with the boot tables, stack)
//! 0x4100_0000    mailbox                  ─┐ host<->guest area, identity mapped,
//! 0x4101_0000    plan                      │ cacheable, by the boot map
//! 0x4110_0000    result                   ─┘
//! 0x4200_0000    fixmap slots (VA only: five 64 KiB windows, PTEs rewritten per use)
//! 0x4400_0000    pool window (64 MiB)  ─┐ table pools: never in the boot map,
//! 0x4800_0000    tag region             │ reached only through fixmap slots
//! 0xC000_0000    high pool window      ─┘ (6 GiB: machine-sized plans)
//! 0x2_4000_0000  end of RAM (8 GiB, a sparse memfd: only what is touched is memory)
//! ```
//!
//! Probed pages in the tag region hold a host-written tag the guest loads back.

/// The PL011 UART of QEMU `virt` (the KVM backend traps the same page as MMIO).
pub const UART_PA: u64 = 0x0900_0000;
/// PL011 flag register offset (UARTFR; bit 5 TXFF: transmit FIFO full).
pub const UART_FR_OFFSET: u64 = 0x18;

/// First byte of guest RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Guest RAM size: backed by a sparse memfd, so untouched RAM costs nothing.
pub const RAM_SIZE: u64 = 8 << 30;
/// Where the guest image is linked (guest/link.ld must agree).
pub const IMAGE_BASE: u64 = 0x4020_0000;
/// The mailbox.
pub const MAILBOX_PA: u64 = 0x4100_0000;
/// The plan.
pub const PLAN_PA: u64 = 0x4101_0000;
/// The result.
pub const RESULT_PA: u64 = 0x4110_0000;
/// End of the host<->guest area.
pub const SHARED_END: u64 = 0x4200_0000;
/// First fixmap slot VA; slot `n` (a `LinuxLevel`) is at `FIXMAP_VA + n * FIXMAP_SLOT`.
pub const FIXMAP_VA: u64 = 0x4200_0000;
/// Bytes per fixmap slot: the largest table page (64K).
pub const FIXMAP_SLOT: u64 = 0x1_0000;
/// Table pools lie in `[POOL_START, POOL_END)` or `[POOL_HIGH_START, POOL_HIGH_END)`.
pub const POOL_START: u64 = 0x4400_0000;
/// End of the pool window.
pub const POOL_END: u64 = 0x4800_0000;
/// Probed pages in `[TAG_START, TAG_END)` hold a tag.
pub const TAG_START: u64 = 0x4800_0000;
/// End of the tag region.
pub const TAG_END: u64 = 0xC000_0000;
/// The high pool window, for plans whose tables do not fit the first one.
pub const POOL_HIGH_START: u64 = 0xC000_0000;
/// End of the high pool window: the end of RAM.
pub const POOL_HIGH_END: u64 = RAM_BASE + RAM_SIZE;

/// Whether `[base, base + size)` lies inside one pool window.
pub const fn in_pool_window(base: u64, size: u64) -> bool {
    let Some(end) = base.checked_add(size) else { return false };
    (base >= POOL_START && end <= POOL_END) || (base >= POOL_HIGH_START && end <= POOL_HIGH_END)
}

/// The tag the host writes into the first word of the probed page at `pa`.
pub const fn tag(pa: u64) -> u64 {
    0x7467_0000_0000_0000 ^ pa
}

/// Whether `pa` lies in the tag region.
pub const fn in_tag_region(pa: u64) -> bool {
    pa >= TAG_START && pa < TAG_END
}

// The result must fit between its address and the end of the host<->guest area.
const _: () = assert!(core::mem::size_of::<super::RunResult>() as u64 <= SHARED_END - RESULT_PA);
const _: () = assert!(core::mem::size_of::<super::Plan>() as u64 <= RESULT_PA - PLAN_PA);

/// MAIR_EL1 the guest programs: the kernel's MT_* indices. 0 Normal write-back, 1
/// "Normal-Tagged" (plain write-back: MTE is not enabled), 2 Normal non-cacheable,
/// 3 Device-nGnRnE, 4 Device-nGnRE.
pub const MAIR_EL1: u64 = (0xff | (0xff << 8) | (0x44 << 16)) | (0x04 << 32);
