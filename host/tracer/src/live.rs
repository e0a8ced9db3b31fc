//! Live tables: a shadow of every table reachable from TTBR0/1 (walked at each TTBR
//! write, extended by links into live tables), so a store into one is seen with the
//! value it replaced; and the break-before-make and TLB-maintenance state per entry.
//!
//! - bbm (Arm ARM D8.16, herdtools7 `aarch64bbm.cat`): a valid descriptor replaced by a
//!   valid one with another output address, AttrIndx, shareability, contiguous bit or
//!   kind (block/table) needs invalid, TLBI, DSB in between; an entry made invalid is
//!   not made valid again until a TLBI covering it has completed.
//! - tlbi: a live leaf removed, or changed in address, attributes or to fewer
//!   permissions, is invalidated by a TLBI covering its VA and completed by a DSB
//!   before that VA is accessed again (stores and DC ZVA are what the tracer sees;
//!   loads are not instrumented). Permission increases need no TLBI.

use std::collections::HashMap;

use crate::walk::TableAt;

/// One entry change that still needs its TLBI (and the DSB completing it).
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub entry_pa: u64,
    pub va: u64,
    pub span_shift: u32,
    pub old: u64,
    pub new: u64,
    pub pc: u64,
    pub insn: u32,
    /// A table entry changed: last-level-only TLBIs do not cover it.
    pub table: bool,
    /// Covered by a TLBI, awaiting a DSB.
    pub covered: bool,
}

/// What a store into a live table amounted to.
pub enum Change {
    /// Nothing the checks care about.
    None,
    /// A valid to valid change that needed a break.
    ValidToValid { p: Pending },
    /// An entry made valid again while its break was not yet invalidated.
    Remade { p: Pending, pending: Pending },
}

/// The live tables' shadows and the pending invalidations.
#[derive(Default)]
pub struct Live {
    /// Frame PA -> (table, its entries in this frame, the first entry's index).
    frames: HashMap<u64, (TableAt, Vec<u64>, u64)>,
    pending: Vec<Pending>,
    /// Which VAs a pending entry may cover, so that the check on every store is one
    /// load: see [`VaFilter`].
    filter: VaFilter,
}

/// A counting filter over the pending entries' VAs: 65536 buckets of 4 KiB (aliased
/// every 256 MiB), each counting the pending spans that touch it, and a count of spans
/// wider than the 256 MiB the buckets cover. A VA whose bucket is zero (and no wide span)
/// is in no pending span; otherwise the list is scanned.
struct VaFilter {
    buckets: Vec<u16>,
    wide: u32,
}

const BUCKET_SHIFT: u32 = 12;
const BUCKETS: u64 = 1 << 16;

impl Default for VaFilter {
    fn default() -> Self {
        VaFilter { buckets: vec![0; BUCKETS as usize], wide: 0 }
    }
}

impl VaFilter {
    fn bucket(va: u64) -> usize {
        ((va >> BUCKET_SHIFT) % BUCKETS) as usize
    }

    /// Add (`up`) or remove a pending span.
    fn update(&mut self, p: &Pending, up: bool) {
        let span = p.span_shift.saturating_sub(BUCKET_SHIFT);
        if span >= 16 {
            self.wide = if up { self.wide + 1 } else { self.wide.saturating_sub(1) };
            return;
        }
        let first = p.va >> BUCKET_SHIFT;
        for b in first..first + (1u64 << span) {
            let c = &mut self.buckets[(b % BUCKETS) as usize];
            *c = if up { c.saturating_add(1) } else { c.saturating_sub(1) };
        }
    }

    fn may_cover(&self, va: u64) -> bool {
        self.wide > 0 || self.buckets[Self::bucket(va)] > 0
    }
}

/// Most pending invalidations held; past it, the oldest are judged covered (counted).
pub const MAX_PENDING: usize = 4096;

fn attrs_differ(old: u64, new: u64, lpa2: bool) -> bool {
    // AttrIndx [4:2], the contiguous bit 52, and SH [9:8] where it is not OA (LPA2).
    let mut mask = 0b111 << 2 | 1 << 52;
    if !lpa2 {
        mask |= 0b11 << 8;
    }
    (old ^ new) & mask != 0
}

/// Whether the change from `old` to `new` (both valid) takes away permissions: AP[2]
/// (read-only) set, AP[1] (EL0) cleared, PXN (53) or UXN (54) set.
fn fewer_permissions(old: u64, new: u64) -> bool {
    let set = |b: u64| new & b != 0 && old & b == 0;
    set(1 << 7) || set(1 << 53) || set(1 << 54) || (old & (1 << 6) != 0 && new & (1 << 6) == 0)
}

impl Live {
    /// Forget every table (the TTBRs changed: walk again).
    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// Shadow table `t` from RAM (`read`).
    pub fn add(&mut self, t: &TableAt, read: &dyn Fn(u64) -> u64) {
        let end = t.pa + t.bytes;
        let mut f = t.pa & !0xfff;
        while f < end {
            let lo = f.max(t.pa);
            let hi = (f + 0x1000).min(end);
            let entries = (lo..hi).step_by(8).map(read).collect();
            self.frames.insert(f, (*t, entries, (lo - t.pa) / 8));
            f += 0x1000;
        }
    }

    /// Whether `pa` is in a live table.
    pub fn contains(&self, pa: u64) -> bool {
        self.frames.contains_key(&(pa & !0xfff))
    }

    /// The live table holding `pa` and the entry's index in it.
    pub fn table_of(&self, pa: u64) -> Option<(TableAt, u64)> {
        let (t, _, _) = self.frames.get(&(pa & !0xfff))?;
        Some((*t, pa.checked_sub(t.pa)? / 8)).filter(|(t, i)| *i < t.bytes / 8)
    }

    /// Frames shadowed.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// A store of `new` at `pa` (in a live table) by `pc`: update the shadow, and say
    /// what it did. Invalidations it makes necessary are added to `pending`.
    pub fn store(&mut self, pa: u64, new: u64, pc: u64, insn: u32) -> (Change, bool) {
        let Some((t, entries, first)) = self.frames.get_mut(&(pa & !0xfff)) else { return (Change::None, false) };
        let t = *t;
        // A frame may hold a small table and other data: only the table's words count.
        let Some(i) = pa.checked_sub(t.pa).and_then(|d| (d / 8).checked_sub(*first)) else {
            return (Change::None, false);
        };
        let Some(slot) = entries.get_mut(i as usize) else { return (Change::None, false) };
        let old = std::mem::replace(slot, new);
        if old == new {
            return (Change::None, false);
        }
        let index = (pa - t.pa) / 8;
        let va = t.va.wrapping_add(index << t.entry_shift);
        let is_table = |d: u64| t.below > 0 && d & 3 == 3;
        let p = Pending {
            entry_pa: pa,
            va,
            span_shift: t.entry_shift,
            old,
            new,
            pc,
            insn,
            table: is_table(old),
            covered: false,
        };
        // A table unlinked (or replaced) is no longer live, nor is anything below it:
        // its pages may be freed and reused for data.
        if is_table(old) && (!is_table(new) || (old ^ new) & 0x0000_ffff_ffff_f000 != 0) {
            self.drop_subtree(&t.child(index, old));
        }
        let (ov, nv) = (old & 1 != 0, new & 1 != 0);
        let mut needs_inval = false;
        let mut change = Change::None;
        match (ov, nv) {
            (true, true) => {
                let oa_mask = !((1u64 << t.shift) - 1) & 0x0000_ffff_ffff_f000;
                let significant = (old ^ new) & oa_mask != 0
                    || is_table(old) != is_table(new)
                    || (!is_table(old) && attrs_differ(old, new, t.lpa2));
                if significant {
                    change = Change::ValidToValid { p };
                    needs_inval = true;
                } else if !is_table(old) && fewer_permissions(old, new) {
                    needs_inval = true;
                }
            }
            (true, false) => needs_inval = true,
            (false, true) => {
                if let Some(q) = self.pending.iter().find(|q| q.entry_pa == pa) {
                    change = Change::Remade { p, pending: *q };
                }
            }
            (false, false) => {}
        }
        if needs_inval {
            self.push_pending(p);
        }
        (change, needs_inval)
    }

    /// Forget table `t` and every live table reached from it (by the shadows).
    fn drop_subtree(&mut self, t: &TableAt) {
        let mut stack = vec![*t];
        let mut budget = 1u32 << 16;
        while let Some(t) = stack.pop() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return;
            }
            let mut f = t.pa & !0xfff;
            while f < t.pa + t.bytes {
                if let Some((ft, entries, first)) = self.frames.remove(&f) {
                    if ft.pa == t.pa && ft.below > 0 {
                        for (i, &d) in entries.iter().enumerate() {
                            if d & 3 == 3 {
                                stack.push(ft.child(first + i as u64, d));
                            }
                        }
                    }
                }
                f += 0x1000;
            }
        }
    }

    /// A TLBI: every pending entry it covers is marked (`None` range: all VAs).
    /// `leaf_only` TLBIs (VALE1, VAALE1) do not cover table entries.
    pub fn tlbi(&mut self, range: Option<(u64, u64)>, leaf_only: bool) -> usize {
        let mut n = 0;
        for p in self.pending.iter_mut().filter(|p| !p.covered) {
            if leaf_only && p.table {
                continue;
            }
            let (lo, hi) = (p.va, p.va.wrapping_add((1u64 << p.span_shift) - 1));
            let hit = match range {
                None => true,
                Some((a, b)) => a <= hi && lo <= b,
            };
            if hit {
                p.covered = true;
                n += 1;
            }
        }
        n
    }

    /// A DSB that completes TLB maintenance: covered entries are done.
    pub fn dsb(&mut self) -> usize {
        let before = self.pending.len();
        let filter = &mut self.filter;
        self.pending.retain(|p| {
            if p.covered {
                filter.update(p, false);
            }
            !p.covered
        });
        before - self.pending.len()
    }

    /// Add `p` to the pending invalidations (past [`MAX_PENDING`], the oldest goes).
    fn push_pending(&mut self, p: Pending) {
        if self.pending.len() >= MAX_PENDING {
            let old = self.pending.remove(0);
            self.filter.update(&old, false);
        }
        self.filter.update(&p, true);
        self.pending.push(p);
    }

    /// Whether no invalidation is pending.
    pub fn nothing_pending(&self) -> bool {
        self.pending.is_empty()
    }

    /// An access to `va` by the guest: the pending entries whose VA it is, removed.
    pub fn accessed(&mut self, va: u64) -> Option<Pending> {
        if !self.filter.may_cover(va) {
            return None;
        }
        let i = self.pending.iter().position(|p| {
            let (lo, hi) = (p.va, p.va.wrapping_add((1u64 << p.span_shift) - 1));
            (lo..=hi).contains(&va)
        })?;
        let p = self.pending.remove(i);
        self.filter.update(&p, false);
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(va: u64, span_shift: u32) -> Pending {
        Pending { entry_pa: 0, va, span_shift, old: 0, new: 0, pc: 0, insn: 0, table: false, covered: false }
    }

    #[test]
    fn the_filter_passes_exactly_the_pending_spans() {
        let mut l = Live::default();
        l.push_pending(pending(0xffff_0000_1234_5000, 12));
        l.push_pending(pending(0xffff_8000_0020_0000, 21));
        assert!(l.accessed(0xffff_0000_1234_4ff8).is_none());
        assert!(l.accessed(0xffff_8000_003f_fff8).is_some(), "inside the 2 MiB block");
        assert!(l.accessed(0xffff_8000_0030_0000).is_none(), "found once, then removed");
        assert!(l.accessed(0xffff_0000_1234_5010).is_some());
        assert!(l.nothing_pending());
        assert!(l.filter.buckets.iter().all(|&c| c == 0), "every bucket back to zero");
    }

    #[test]
    fn a_wide_span_makes_every_va_doubtful() {
        let mut l = Live::default();
        l.push_pending(pending(0xffff_0000_0000_0000, 39));
        assert!(l.filter.may_cover(0x1234));
        assert!(l.accessed(0xffff_0040_0000_0000).is_some());
        assert_eq!(l.filter.wide, 0);
    }

    #[test]
    fn a_completed_tlbi_drops_what_it_covered() {
        let mut l = Live::default();
        l.push_pending(pending(0xffff_0000_1234_5000, 12));
        assert_eq!(l.tlbi(Some((0xffff_0000_1234_5000, 0xffff_0000_1234_5fff)), true), 1);
        assert!(l.filter.may_cover(0xffff_0000_1234_5000), "covered but not yet completed");
        assert_eq!(l.dsb(), 1);
        assert!(!l.filter.may_cover(0xffff_0000_1234_5000));
    }
}
