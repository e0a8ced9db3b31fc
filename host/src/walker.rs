//! The reference walker: the Arm ARM stage-1 translation table walk (D8.2, D8.3),
//! written independently of the builder. It shares only the descriptor encodings of
//! `ptcheck-shared`, starts at the root the result names and reports every leaf (as
//! runs of like leaves, [`LeafRun`]), every table and every entry that is neither
//! zero nor a valid descriptor.

use std::collections::HashSet;

use ptcheck_shared::descriptor::DescriptorKind;
use ptcheck_shared::{Descriptor, Level, TranslationConfig};

use crate::backend::PhysMemory;
use crate::runs::{push_leaf, LeafRun};

/// A block or page mapping found in the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First VA mapped.
    pub va: u64,
    /// Bytes mapped by this one entry.
    pub size: u64,
    /// Output address.
    pub pa: u64,
    /// Level of the entry.
    pub level: Level,
    /// The raw descriptor.
    pub desc: Descriptor,
}

/// A table reached from the root (the root included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableVisit {
    /// Physical address of the table.
    pub pa: u64,
    /// Level of the table's entries.
    pub level: Level,
    /// First VA the table translates.
    pub va: u64,
    /// The table descriptor that links it (0 for the root).
    pub parent_desc: Descriptor,
}

/// What is wrong with an entry the walker could not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnomalyKind {
    /// A table reached from two entries (shared or looped).
    TableReachedTwice,
    /// A table address not aligned to the table's size.
    MisalignedTable,
    /// A table outside memory.
    TableOutsideMemory,
    /// An invalid entry that is not zero.
    NonZeroInvalid,
    /// A reserved descriptor encoding (translates as a fault).
    Reserved,
}

impl AnomalyKind {
    /// In words.
    pub const fn what(self) -> &'static str {
        match self {
            AnomalyKind::TableReachedTwice => "table reached twice (shared or looped)",
            AnomalyKind::MisalignedTable => "table address not aligned to the table size",
            AnomalyKind::TableOutsideMemory => "table is outside memory",
            AnomalyKind::NonZeroInvalid => "invalid entry is not zero",
            AnomalyKind::Reserved => "reserved descriptor encoding (translation fault)",
        }
    }
}

/// An entry the walker could not accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// Physical address of the entry (or of the table that could not be read).
    pub entry_pa: u64,
    /// VA the entry translates.
    pub va: u64,
    /// Level of the entry.
    pub level: Level,
    /// The raw value.
    pub value: u64,
    /// What is wrong.
    pub kind: AnomalyKind,
}

impl Anomaly {
    /// What is wrong, in words.
    pub fn what(&self) -> &'static str {
        self.kind.what()
    }
}

/// Everything one walk found.
#[derive(Default, Debug)]
pub struct Walk {
    /// Leaves in VA order, as runs of like leaves.
    pub runs: Vec<LeafRun>,
    /// Tables in the order reached (root first).
    pub tables: Vec<TableVisit>,
    /// Invalid entries that are not exactly zero.
    pub nonzero_invalid: Vec<Anomaly>,
    /// Reserved encodings, unreadable tables, tables reached twice.
    pub anomalies: Vec<Anomaly>,
}

/// Walk the TTBR1 tables of `cfg` from `root_pa`.
pub fn walk(cfg: &TranslationConfig, root_pa: u64, mem: &dyn PhysMemory) -> Walk {
    let mut walker = Walker { cfg, mem, seen: HashSet::new(), w: Walk::default() };
    let root = TableAt { pa: root_pa, level: cfg.root_level(), va: cfg.va_start(), parent: Descriptor::ZERO };
    walker.table(root);
    walker.w
}

/// One table to walk: where it is, its level, the VA its first entry maps, and the
/// descriptor that linked it.
#[derive(Clone, Copy)]
struct TableAt {
    pa: u64,
    level: Level,
    va: u64,
    parent: Descriptor,
}

/// A walk in progress: the regime and memory it reads, the tables already reached
/// (a second reach is an anomaly, not a loop) and what it found.
struct Walker<'a> {
    cfg: &'a TranslationConfig,
    mem: &'a dyn PhysMemory,
    seen: HashSet<u64>,
    w: Walk,
}

impl Walker<'_> {
    fn table(&mut self, t: TableAt) {
        let (cfg, w) = (self.cfg, &mut self.w);
        let TableAt { pa: table_pa, level, va: va_base, parent: parent_desc } = t;
        let anomaly = |kind, entry_pa, value| Anomaly { entry_pa, va: va_base, level, value, kind };
        if !self.seen.insert(table_pa) {
            w.anomalies.push(anomaly(AnomalyKind::TableReachedTwice, table_pa, parent_desc.0));
            return;
        }
        if !table_pa.is_multiple_of(cfg.table_bytes(level)) {
            w.anomalies.push(anomaly(AnomalyKind::MisalignedTable, table_pa, parent_desc.0));
            return;
        }
        w.tables.push(TableVisit { pa: table_pa, level, va: va_base, parent_desc });
        let span = cfg.entry_span(level);
        let mut table = vec![0u64; cfg.entries(level)];
        if !self.mem.read_words(table_pa, &mut table) {
            let missing = (0..table.len() as u64).map(|i| table_pa + 8 * i).find(|&pa| self.mem.read_u64(pa).is_none());
            w.anomalies.push(anomaly(AnomalyKind::TableOutsideMemory, missing.unwrap_or(table_pa), 0));
            return;
        }
        for (i, &value) in (0u64..).zip(&table) {
            if value == 0 {
                continue; // the common case: an empty entry
            }
            let entry_pa = table_pa + i * 8;
            let va = va_base.wrapping_add(i * span);
            let desc = Descriptor(value);
            let at = |kind| Anomaly { entry_pa, va, level, value, kind };
            let w = &mut self.w;
            match desc.kind(cfg, level) {
                DescriptorKind::Invalid if value != 0 => w.nonzero_invalid.push(at(AnomalyKind::NonZeroInvalid)),
                DescriptorKind::Invalid => {}
                DescriptorKind::Table => {
                    self.table(TableAt { pa: desc.address(cfg), level: level.next(), va, parent: desc })
                }
                DescriptorKind::Block | DescriptorKind::Page => {
                    // Low OA bits of a block are RES0/attributes, never address.
                    push_leaf(cfg, &mut w.runs, va, level, desc);
                }
                DescriptorKind::Reserved => w.anomalies.push(at(AnomalyKind::Reserved)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptcheck_shared::Prot;
    use std::collections::HashMap;

    struct Words(HashMap<u64, u64>);
    impl PhysMemory for Words {
        fn read_u64(&self, pa: u64) -> Option<u64> {
            // Tables are whole zeroed pages at 0x1000_0000..0x1010_0000 here.
            if (0x1000_0000..0x1010_0000).contains(&pa) {
                Some(*self.0.get(&pa).unwrap_or(&0))
            } else {
                None
            }
        }
    }

    /// Hand-built 4k-39 tables: L1 root at 0x1000_0000, one 1G block at entry 1,
    /// one L2 table at entry 2 holding a 2M block (entry 3) and an L3 table (entry 4)
    /// with one page (entry 5). Addresses computed by hand from the VA layout:
    /// va_start = 0xffff_ff80_0000_0000, L1 entries 1G, L2 2M, L3 4K.
    #[test]
    fn walker_matches_hand_computed_tables() {
        let cfg = TranslationConfig::parse("4k-39").unwrap();
        let p = Prot::KERNEL;
        let mut m = HashMap::new();
        m.insert(0x1000_0000 + 8, 0x4000_0000 | p.0 | 0b01); // L1[1]: 1G block @ 1G
        m.insert(0x1000_0000 + 16, 0x1000_1000 | 0b11 | Descriptor::UXN_TABLE); // L1[2] -> L2
        m.insert(0x1000_1000 + 3 * 8, 0x8060_0000 | p.0 | 0b01); // L2[3]: 2M block
        m.insert(0x1000_1000 + 4 * 8, 0x1000_2000 | 0b11); // L2[4] -> L3
        m.insert(0x1000_2000 + 5 * 8, 0x9000_5000 | p.0 | 0b11); // L3[5]: page
        m.insert(0x1000_2000 + 6 * 8, 0xdead_0000); // invalid but not zero
        m.insert(0x1000_1000 + 7 * 8, 0x1000_0000 | 0b11); // L2[7] -> the root again: loop
        let w = walk(&cfg, 0x1000_0000, &Words(m));
        let base = 0xffff_ff80_0000_0000u64;
        let got: Vec<_> = w.leaves(&cfg).map(|l| (l.va, l.size, l.pa, l.level.0)).collect();
        assert_eq!(
            got,
            vec![
                (base + (1 << 30), 1 << 30, 0x4000_0000, 1),
                (base + (2 << 30) + 3 * (2 << 20), 2 << 20, 0x8060_0000, 2),
                (base + (2 << 30) + 4 * (2 << 20) + 5 * 4096, 4096, 0x9000_5000, 3),
            ]
        );
        assert_eq!(w.tables.len(), 3);
        assert_eq!(w.tables[1].parent_desc.table_attrs(), Descriptor::UXN_TABLE);
        assert_eq!(w.nonzero_invalid.len(), 1);
        assert_eq!(w.nonzero_invalid[0].entry_pa, 0x1000_2000 + 48);
        assert_eq!(w.anomalies.len(), 1, "{:?}", w.anomalies);
        assert_eq!(w.anomalies[0].kind, AnomalyKind::TableReachedTwice);
    }

    #[test]
    fn l0_block_without_lpa2_is_reserved() {
        let cfg = TranslationConfig::parse("4k-48").unwrap();
        let mut m = HashMap::new();
        m.insert(0x1000_0000, 0x8000_0000_0000 | Prot::KERNEL.0 | 0b01);
        let w = walk(&cfg, 0x1000_0000, &Words(m));
        assert!(w.runs.is_empty());
        assert_eq!(w.anomalies[0].kind, AnomalyKind::Reserved);
    }
}

/// What a VA translates to, in one view (the plan's, the walker's or the MMU's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte at the VA.
    pub pa: u64,
    /// Attribute bits of the leaf.
    pub prot: ptcheck_shared::Prot,
}

impl Walk {
    /// The run of leaves that maps `va`, if any.
    pub fn run_at(&self, cfg: &TranslationConfig, va: u64) -> Option<&LeafRun> {
        let i = self.runs.partition_point(|r| r.va <= va).checked_sub(1)?;
        let r = &self.runs[i];
        (u128::from(va) < r.end(cfg)).then_some(r)
    }

    /// What the walked tables translate `va` to.
    pub fn at(&self, cfg: &TranslationConfig, va: u64) -> Option<Translation> {
        let r = self.run_at(cfg, va)?;
        Some(Translation { pa: r.pa(cfg).wrapping_add(va - r.va), prot: r.prot(cfg) })
    }

    /// Every leaf, one by one: for small plans and tests (a 256 GiB map has 64 M).
    pub fn leaves<'a>(&'a self, cfg: &'a TranslationConfig) -> impl Iterator<Item = Leaf> + 'a {
        self.runs.iter().flat_map(move |r| {
            r.leaves(cfg).map(move |(va, level, desc)| Leaf {
                va,
                size: cfg.entry_span(level),
                pa: desc.address(cfg) & !(cfg.entry_span(level) - 1),
                level,
                desc,
            })
        })
    }

    /// Physical address of the entry of a `level` table that translates `va` (`None`
    /// if no walked table of that level covers it).
    pub fn entry_pa(&self, cfg: &TranslationConfig, level: Level, va: u64) -> Option<u64> {
        let span = cfg.entry_span(level);
        self.tables
            .iter()
            .find(|t| t.level == level && va >= t.va && va - t.va < span * cfg.entries(level) as u64)
            .map(|t| t.pa + (va - t.va) / span * 8)
    }

    /// Leaves mapped, counted.
    pub fn leaf_count(&self) -> u64 {
        self.runs.iter().map(|r| r.count).sum()
    }
}
