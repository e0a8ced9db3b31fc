//! The table pool: the physical pages the builder may allocate tables from
//! (the early kernel's memblock, restricted to what the plan hands over).

use ptcheck_shared::abi::PoolRange;

/// Hands out pages from a list of ranges, first range first, ascending.
#[derive(Clone, Copy, Debug)]
pub struct TablePool<'p> {
    ranges: &'p [PoolRange],
    page_size: u64,
    range: usize,
    next: u64,
}

impl<'p> TablePool<'p> {
    /// A pool over `ranges`; partial pages at either end of a range are never used.
    pub fn new(ranges: &'p [PoolRange], page_size: u64) -> Self {
        let mut pool = TablePool { ranges, page_size, range: 0, next: 0 };
        pool.enter_range();
        pool
    }

    fn enter_range(&mut self) {
        if let Some(r) = self.ranges.get(self.range) {
            self.next = r.base.next_multiple_of(self.page_size);
        }
    }

    /// Pages still to hand out.
    pub fn remaining(&self) -> u64 {
        let mut left = 0;
        for (i, r) in self.ranges.iter().enumerate().skip(self.range) {
            let end = r.base.saturating_add(r.size);
            let from = if i == self.range { self.next } else { r.base.next_multiple_of(self.page_size) };
            left += end.saturating_sub(from) / self.page_size;
        }
        left
    }

    /// Take one page; `None` when every range is used up.
    pub fn alloc(&mut self) -> Option<u64> {
        while let Some(r) = self.ranges.get(self.range) {
            let end = r.base.saturating_add(r.size);
            if self.next.checked_add(self.page_size).is_some_and(|e| e <= end) {
                let pa = self.next;
                self.next += self.page_size;
                return Some(pa);
            }
            self.range += 1;
            self.enter_range();
        }
        None
    }
}
