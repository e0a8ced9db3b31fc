//! The boot identity map (TTBR0, 4K granule, 39-bit, start level 1) and the fixmap.
//!
//! Mapped: the UART (2 MiB device block), the image and the host<->guest area (2 MiB
//! blocks from RAM base to `SHARED_END`), one level-3 table of fixmap slots, and the
//! pool windows, identity (2 MiB and 1 GiB blocks): the `linux` builders reach tables
//! only through the fixmap slots, but a builder that keeps pointers to its tables
//! (`aarch64-paging`) needs them mapped. Not mapped: the tag region, and VA 0 (so a
//! NULL fixmap faults).
//!
//! Descriptors carry no shareability bits: with TCR_EL1.DS=1 (LPA2 plans) bits [9:8]
//! are address bits, with DS=0 they are SH. Zero is right in both formats, so one boot
//! map serves every plan; shareability then comes from TCR.SH0 (DS=1) or is
//! non-shareable (DS=0, single CPU; under KVM stage 2 makes it inner shareable).

use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};

use ptcheck_shared::abi::layout::{
    FIXMAP_SLOT, FIXMAP_VA, POOL_END, POOL_HIGH_END, POOL_HIGH_START, POOL_START, RAM_BASE, SHARED_END,
};
use ptcheck_shared::{Descriptor, Prot};

const PAGE: u64 = 4096;
const BLOCK_2M: u64 = 2 << 20;
// Descriptor bits, from their one home in `shared`: a table or page descriptor
// (bits [1:0] = 0b11), a block (0b01), and the attributes the boot map uses.
const TABLE: u64 = Descriptor::VALID | Descriptor::TABLE_OR_PAGE;
const BLOCK: u64 = Descriptor::VALID;
const AF: u64 = Prot::AF;
const PXN: u64 = Prot::PXN;
const UXN: u64 = Prot::UXN;
const ATTR_NORMAL: u64 = Prot::MT_NORMAL << 2;
const ATTR_DEVICE: u64 = Prot::MT_DEVICE_NGNRE << 2;
use ptcheck_shared::abi::layout::UART_PA as UART_BASE;

/// MAIR_EL1 (the kernel's MT_* indices).
pub const MAIR: u64 = ptcheck_shared::abi::layout::MAIR_EL1;

#[repr(C, align(4096))]
struct Table([u64; 512]);

static mut L1: Table = Table([0; 512]);
static mut L2_LOW: Table = Table([0; 512]);
static mut L2_RAM: Table = Table([0; 512]);
static mut L3_FIXMAP: Table = Table([0; 512]);

/// Physical (= virtual, identity) address of the TTBR0 root.
pub fn root() -> u64 {
    addr_of_mut!(L1) as u64
}

/// Fill the boot tables. Runs with the MMU off, before anything else touches them.
///
/// # Safety
/// Call once, with the MMU off and no other user of the tables.
pub unsafe fn build() {
    // SAFETY: single caller before the MMU is on (contract above); the statics are
    // only reached through these raw pointers.
    unsafe {
        let (l1, low, ram) = (&mut *addr_of_mut!(L1), &mut *addr_of_mut!(L2_LOW), &mut *addr_of_mut!(L2_RAM));
        l1.0[0] = addr_of_mut!(L2_LOW) as u64 | TABLE;
        l1.0[(RAM_BASE >> 30) as usize] = addr_of_mut!(L2_RAM) as u64 | TABLE;
        low.0[(UART_BASE / BLOCK_2M) as usize] = UART_BASE | BLOCK | AF | ATTR_DEVICE | PXN | UXN;
        let mut pa = RAM_BASE;
        while pa < SHARED_END {
            ram.0[((pa >> 21) & 511) as usize] = pa | BLOCK | AF | ATTR_NORMAL | UXN;
            pa += BLOCK_2M;
        }
        ram.0[((FIXMAP_VA >> 21) & 511) as usize] = addr_of_mut!(L3_FIXMAP) as u64 | TABLE;
        let mut pa = POOL_START;
        while pa < POOL_END {
            ram.0[((pa >> 21) & 511) as usize] = pa | BLOCK | AF | ATTR_NORMAL | PXN | UXN;
            pa += BLOCK_2M;
        }
        let mut gib = POOL_HIGH_START >> 30;
        while gib < POOL_HIGH_END >> 30 {
            l1.0[gib as usize] = (gib << 30) | BLOCK | AF | ATTR_NORMAL | PXN | UXN;
            gib += 1;
        }
        // Written with caches off: push the lines out so cacheable walks see them.
        for t in [root(), addr_of_mut!(L2_LOW) as u64, addr_of_mut!(L2_RAM) as u64, addr_of_mut!(L3_FIXMAP) as u64] {
            let mut a = t;
            while a < t + PAGE {
                asm!("dc civac, {a}", a = in(reg) a);
                a += 64;
            }
        }
        asm!("dsb sy");
    }
}

/// The VA of fixmap slot `slot`.
pub fn slot_va(slot: usize) -> u64 {
    FIXMAP_VA + slot as u64 * FIXMAP_SLOT
}

/// Point fixmap slot `slot` at `bytes` bytes of physical memory from `pa` (or unmap it
/// with `bytes == 0`), then invalidate the slot's TLB entries. A slot still mapped (a
/// build that stopped at a BUG never cleared it) is broken first — unmapped and
/// invalidated — so a remap is never valid-to-valid (break-before-make; the tracer's
/// `bbm` check found the direct remap).
pub fn set_slot(slot: usize, pa: u64, bytes: u64) {
    let per_slot = (FIXMAP_SLOT / PAGE) as usize;
    let ptes = || (0..per_slot).map(|i| slot * per_slot + i);
    // SAFETY: the indices are inside L3_FIXMAP (slot < 5, 16 PTEs per slot); only this
    // CPU writes the boot tables.
    let mapped = ptes().any(|i| unsafe { core::ptr::read_volatile(addr_of!(L3_FIXMAP.0[i])) } != 0);
    if bytes != 0 && mapped {
        write_slot(slot, 0, 0);
    }
    write_slot(slot, pa, bytes);
}

fn write_slot(slot: usize, pa: u64, bytes: u64) {
    let per_slot = (FIXMAP_SLOT / PAGE) as usize;
    let pages = (bytes / PAGE) as usize;
    for i in 0..per_slot {
        let pte = if i < pages { (pa + i as u64 * PAGE) | TABLE | AF | ATTR_NORMAL | PXN | UXN } else { 0 };
        // SAFETY: the index is inside L3_FIXMAP (slot < 5, 16 PTEs per slot); only this
        // CPU writes the boot tables.
        unsafe { core::ptr::write_volatile(addr_of_mut!(L3_FIXMAP.0[slot * per_slot + i]), pte) };
    }
    // SAFETY: TLB maintenance for the slot's pages; barriers order it against the PTE
    // writes above and the accesses that follow.
    unsafe {
        asm!("dsb ishst");
        for i in 0..per_slot {
            asm!("tlbi vae1, {x}", x = in(reg) (slot_va(slot) + i as u64 * PAGE) >> 12);
        }
        asm!("dsb ish", "isb");
    }
}
