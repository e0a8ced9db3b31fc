//! The live regime (TTBR0/1_EL1, TCR_EL1, SCTLR_EL1 as the guest last wrote them) and a
//! stage-1 walk through guest RAM, to find the PA a `DC ZVA` zeroes (Arm ARM D8.2).

use crate::ram::Ram;
use ptcheck_shared::regs::Tcr;
use ptcheck_shared::Granule;

/// The registers the tracer follows, and the descriptor format in force.
#[derive(Clone, Copy, Debug, Default)]
pub struct Regs {
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub sctlr: u64,
    /// The kernel half's granule shift: TCR_EL1.TG1 once written, else the hint.
    pub page_shift: u32,
    /// Set by a build bracket (the guest's regime), overriding TCR until its end:
    /// (granule shift, LPA2 descriptors).
    pub fixed: Option<(u32, bool)>,
}

/// TCR_EL1.TG0 as a page shift (4K for the reserved encoding).
fn tg0_shift(tcr: u64) -> u32 {
    Tcr(tcr).granule0().map_or(12, Granule::page_shift)
}

/// TCR_EL1.TG1 as a page shift (4K for the reserved encoding).
fn tg1_shift(tcr: u64) -> u32 {
    Tcr(tcr).granule1().map_or(12, Granule::page_shift)
}

impl Regs {
    /// `MSR TCR_EL1`.
    pub fn set_tcr(&mut self, v: u64) {
        self.tcr = v;
        self.page_shift = tg1_shift(v);
    }

    /// The granule shift table descriptors are read with now.
    pub fn shift(&self) -> u32 {
        self.fixed.map_or(self.page_shift, |f| f.0)
    }

    /// Whether descriptors carry OA\[51:50\] in bits \[9:8\] (LPA2, TCR.DS = 1).
    pub fn lpa2(&self) -> bool {
        self.fixed.map_or(Tcr(self.tcr).ds(), |f| f.1)
    }
}

/// A descriptor's output address for a granule of `shift`.
fn oa(desc: u64, shift: u32, lpa2: bool) -> u64 {
    let top = if lpa2 { 50 } else { 48 };
    let inplace = desc & ((1u64 << top) - 1) & !((1u64 << shift) - 1);
    match shift {
        16 => inplace | (((desc >> 12) & 0xf) << 48),
        _ if lpa2 => inplace | (((desc >> 8) & 3) << 50),
        _ => inplace,
    }
}

/// The PA `va` translates to under the registers as last written, reading the tables
/// from `ram`; `None` when it does not (a fault the instruction itself would take).
pub fn translate(ram: &Ram, r: &Regs, va: u64) -> Option<u64> {
    if r.sctlr & 1 == 0 {
        return Some(va);
    }
    let mut t = root(r, (va >> 55) & 1 == 1)?;
    loop {
        let idx = (va >> t.entry_shift) & (t.bytes / 8 - 1);
        let desc = ram.read_u64(t.pa + 8 * idx)?;
        if desc & 1 == 0 {
            return None;
        }
        if t.below == 0 || desc & 2 == 0 {
            let span = (1u64 << t.entry_shift) - 1;
            return Some((oa(desc, t.shift, t.lpa2) & !span) | (va & span));
        }
        t = t.child(idx, desc);
    }
}

/// The root table TTBR0 (`upper` false) or TTBR1 names under TCR_EL1 as last written:
/// its address (BADDR, with 52-bit PAs' bits \[51:48\] from TTBR\[5:2\]), the VA it
/// starts at, its levels and descriptor format. `None` when TCR does not define one.
fn root(r: &Regs, upper: bool) -> Option<TableAt> {
    let (ttbr, va_bits, shift) = if upper {
        (r.ttbr1, Tcr(r.tcr).va_bits1(), tg1_shift(r.tcr))
    } else {
        (r.ttbr0, Tcr(r.tcr).va_bits0(), tg0_shift(r.tcr))
    };
    if r.tcr == 0 || va_bits <= shift || va_bits > 52 {
        return None;
    }
    let lpa2 = Tcr(r.tcr).ds() && shift != 16;
    let wide = lpa2 || (shift == 16 && va_bits == 52);
    let pa =
        if wide { (ttbr & 0x0000_ffff_ffff_ffc0) | (((ttbr >> 2) & 0xf) << 48) } else { ttbr & 0x0000_ffff_ffff_fffe };
    let bpl = shift - 3;
    let levels = (va_bits - shift).div_ceil(bpl);
    let root_bits = va_bits - shift - (levels - 1) * bpl;
    Some(TableAt {
        pa,
        bytes: 8 << root_bits,
        va: if upper { !0u64 << va_bits } else { 0 },
        entry_shift: shift + (levels - 1) * bpl,
        below: levels - 1,
        shift,
        lpa2,
    })
}

/// One table found by [`tables`].
#[derive(Clone, Copy, Debug)]
pub struct TableAt {
    /// Where it is, and its size.
    pub pa: u64,
    /// See `pa`.
    pub bytes: u64,
    /// The VA its entry 0 maps.
    pub va: u64,
    /// log2 of the span one entry maps.
    pub entry_shift: u32,
    /// Levels below this one (0: its entries are pages).
    pub below: u32,
    /// The granule's shift and LPA2 format, to decode its entries.
    pub shift: u32,
    /// See `shift`.
    pub lpa2: bool,
}

impl TableAt {
    /// The table a table descriptor `d` in entry `index` of this one points to.
    pub fn child(&self, index: u64, d: u64) -> TableAt {
        let bpl = self.shift - 3;
        TableAt {
            pa: oa(d, self.shift, self.lpa2),
            bytes: 1 << self.shift,
            va: self.va.wrapping_add(index << self.entry_shift),
            entry_shift: self.entry_shift - bpl,
            below: self.below - 1,
            shift: self.shift,
            lpa2: self.lpa2,
        }
    }
}

/// Every table reachable from TTBR0 (`upper` false) or TTBR1 under the registers as
/// last written, root included, each visited once per path to it. Returns `false`
/// when the registers do not define a walk.
pub fn tables(ram: &Ram, r: &Regs, upper: bool, visit: &mut dyn FnMut(&TableAt)) -> bool {
    let Some(root) = root(r, upper) else { return false };
    let mut stack = vec![root];
    // A tree whose entries point back up (or everywhere) must not keep QEMU here.
    let mut budget = 1u32 << 22;
    while let Some(t) = stack.pop() {
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        visit(&t);
        if t.below == 0 {
            continue;
        }
        for i in 0..t.bytes / 8 {
            let Some(d) = ram.read_u64(t.pa + 8 * i) else { break };
            if d & 3 == 3 {
                stack.push(t.child(i, d));
            }
        }
    }
    true
}
