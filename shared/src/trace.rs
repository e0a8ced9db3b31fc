//! What the tracer (`host/tracer`, a QEMU TCG plugin) tells ptcheck: one JSON line per
//! message on the file it is given. The plugin judges nothing by a builder's policy; it
//! reports what it observed and ptcheck's checks decide (`host/src/trace/`).
//!
//! The plugin watches, in program order: stores to RAM (PA, size, value), `DC ZVA`
//! (its VA resolved through the live tables), `DSB`/`DMB`, `ISB`, `TLBI`, store-release,
//! and `MSR` to TTBR0/1_EL1, TCR_EL1 and SCTLR_EL1. A *link* is an aligned 64-bit store
//! of a table descriptor (bits\[1:0\] = 0b11, bits\[11:2\] clear but for LPA2's
//! OA\[51:50\]) whose next-level address is inside the table window it was given, into
//! a page that is itself a table: inside the window, or (no window: a real kernel)
//! found in a tree reached from TTBR0/1 at the next TTBR write or at the end, the
//! entry still holding that descriptor. Until then a candidate is held, judged as it
//! was at its store.

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// The `HINT` immediates the guest image executes around one build (architecturally
/// NOPs): the tracer resets its per-build state at the first and writes a
/// [`Counts`] summary at the second.
pub const HINT_BUILD_BEGIN: u32 = 0x7a;
/// See [`HINT_BUILD_BEGIN`].
pub const HINT_BUILD_END: u32 = 0x7b;

/// What ordered a table's last write before the store that linked it, for another
/// observer's table walk (Arm ARM B2: barriers order explicit accesses; a walk's reads
/// are ordered after a store only once a DSB, or a DMB/release seen through the
/// walk's data-dependent chain, orders them).
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderedBy {
    /// A `DSB` that orders stores (type ST or full, domain ISH, OSH or SY).
    Dsb,
    /// A `DMB` of that kind, and no such `DSB`.
    Dmb,
    /// No barrier, but the link itself is a store-release (`STLR`).
    Release,
    /// Nothing written into the table during the trace: nothing to order.
    NoWrite,
    /// Nothing: the table's last write and its link may be observed in either order.
    Nothing,
}

/// One table linked into its parent.
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The linking store: its PC, instruction and the entry it wrote.
    pub pc: u64,
    /// The instruction word at `pc`.
    pub insn: u32,
    /// Physical address of the parent entry written.
    pub entry_pa: u64,
    /// The descriptor written.
    pub value: u64,
    /// The table it points to.
    pub table_pa: u64,
    /// Whether the parent table was live when linked: the MMU on (SCTLR_EL1.M) and the
    /// parent in a tree reached from TTBR0/1 (walked at their last write, plus tables
    /// linked into live ones since). A tree that is not live cannot be walked yet; the
    /// DSB before its TTBR write orders it.
    pub live: bool,
    /// What ordered the table's last write before this store.
    pub ordered_by: OrderedBy,
    /// The barrier that did (`Dsb`/`Dmb`): its PC and instruction; 0 otherwise.
    pub barrier_pc: u64,
    /// See `barrier_pc`.
    pub barrier_insn: u32,
    /// The table's last write before the link: PC, instruction, PA (0 if none).
    pub last_write_pc: u64,
    /// See `last_write_pc`.
    pub last_write_insn: u32,
    /// See `last_write_pc`.
    pub last_write_pa: u64,
    /// Entries of the table that were neither zero nor written during the trace when it
    /// was linked: stale or poison content.
    pub stale: u32,
    /// The first such entry's PA and value (0 when `stale` is 0).
    pub first_stale_pa: u64,
    /// See `first_stale_pa`.
    pub first_stale_value: u64,
}

/// What a live-table change did wrong (`bbm`, `tlbi`).
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// bbm: a valid entry replaced by a valid one with another output address, memory
    /// type, shareability, contiguous bit or block/table kind, with no break between.
    ValidToValid,
    /// bbm: an entry broken (made invalid) made valid again before a TLBI covering it
    /// had completed (DSB).
    RemadeBeforeInvalidated,
    /// tlbi: a VA whose live leaf was changed or removed was accessed (a store or DC
    /// ZVA) before a TLBI covering it had completed.
    UsedBeforeInvalidated,
}

/// One `bbm` or `tlbi` finding.
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What went wrong.
    pub violation: Violation,
    /// The instruction at fault (the store that remade or changed the entry, or the
    /// access through the stale VA): PC and word.
    pub pc: u64,
    /// See `pc`.
    pub insn: u32,
    /// The entry: PA, the VA it maps, log2 of its span.
    pub entry_pa: u64,
    /// See `entry_pa`.
    pub va: u64,
    /// See `entry_pa`.
    pub span_shift: u32,
    /// Its value before and after the change that needed the break or invalidation.
    pub old: u64,
    /// See `old`.
    pub new: u64,
    /// The change (for `UsedBeforeInvalidated` and `RemadeBeforeInvalidated`): PC and
    /// word of the store that changed the entry; the access's VA.
    pub change_pc: u64,
    /// See `change_pc`.
    pub change_insn: u32,
    /// See `change_pc`.
    pub access_va: u64,
}

/// Counts over one build bracket, or the whole trace.
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Stores to RAM observed.
    pub ram_stores: u64,
    /// `DC ZVA` executed, and how many of those were resolved to RAM.
    pub dc_zva: u64,
    /// See `dc_zva`.
    pub dc_zva_ram: u64,
    /// `DSB` of any kind, and those that order stores for other observers.
    pub dsb: u64,
    /// See `dsb`.
    pub dsb_st: u64,
    /// `DMB` of any kind, and those that order stores.
    pub dmb: u64,
    /// See `dmb`.
    pub dmb_st: u64,
    /// `ISB`.
    pub isb: u64,
    /// `TLBI` of any operation.
    pub tlbi: u64,
    /// Store-release instructions executed.
    pub stlr: u64,
    /// `MSR` writes to TTBR0_EL1, TTBR1_EL1, TCR_EL1, SCTLR_EL1.
    pub msr_ttbr0: u64,
    /// See `msr_ttbr0`.
    pub msr_ttbr1: u64,
    /// See `msr_ttbr0`.
    pub msr_tcr: u64,
    /// See `msr_ttbr0`.
    pub msr_sctlr: u64,
    /// Links, by what ordered them: DSB, DMB, release, no write, nothing.
    pub links: [u64; 5],
    /// Links whose table had stale or poison entries.
    pub stale_links: u64,
    /// Link messages not sent because the message limit was reached.
    pub links_dropped: u64,
    /// Stores that looked like links into pages never found in a live tree (a
    /// translation table reached from TTBR0/1 at a TTBR write or at the end): not
    /// counted as links.
    pub unconfirmed: u64,
    /// Stores that changed an entry of a live table (one reachable from TTBR0/1).
    pub live_changes: u64,
    /// Of those, changes whose old translation had to be invalidated (removed, or its
    /// address, attributes or permissions reduced), and how many a TLBI + DSB covered
    /// before the VA was accessed again.
    pub invalidations_needed: u64,
    /// See `invalidations_needed`.
    pub invalidations_done: u64,
    /// bbm and tlbi findings (the first few are sent as [`Message::Finding`]).
    pub bbm: u64,
    /// See `bbm`.
    pub tlbi_findings: u64,
    /// Live tables not shadowed (past the tracer's limit): bbm and tlbi not judged.
    pub live_over_capacity: u64,
    /// Instructions executed (counted only inside a function bracket, `bracket=`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub insns: u64,
    /// `TLBI`s by operation: index [`tlbi_op`], named by [`TLBI_OPS`] (EL1 stage-1
    /// operations only; the rest are in `tlbi` alone).
    #[cfg_attr(feature = "serde", serde(default))]
    pub tlbi_ops: [u64; 32],
    /// Stores into the fixmap's page-table entries (`fixmap=LO-HI`: where the
    /// kernel's `bm_pte` is, physical): each fixmap map and unmap is one.
    #[cfg_attr(feature = "serde", serde(default))]
    pub fixmap_writes: u64,
    /// 64-bit stores into pages a table descriptor pointed to before (linked, live
    /// or not yet): descriptor writes below the root.
    #[cfg_attr(feature = "serde", serde(default))]
    pub table_writes: u64,
    /// Table descriptors stored (confirmed as links or not): tables linked.
    #[cfg_attr(feature = "serde", serde(default))]
    pub table_links: u64,
}

/// `n` per table of `tables` (none: 0), as every cost table divides.
pub fn per_table(n: u64, tables: u64) -> f64 {
    if tables == 0 {
        0.0
    } else {
        n as f64 / tables as f64
    }
}

/// [`Counts::per_table`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PerTable {
    /// TLBIs per table.
    pub tlbi: f64,
    /// DSBs per table.
    pub dsb: f64,
    /// ISBs per table.
    pub isb: f64,
    /// Fixmap PTE writes per table.
    pub fixmap_writes: f64,
    /// Instructions per table.
    pub insns: f64,
}

impl core::fmt::Display for PerTable {
    /// `TLBI / DSB / ISB / fixmap / insns`, as the cost tables print them.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:.2} / {:.2} / {:.2} / {:.2} / {:.0}",
            self.tlbi, self.dsb, self.isb, self.fixmap_writes, self.insns
        )
    }
}

/// The names of [`Counts::tlbi_ops`]' entries: CRm's class (inner shareable, outer
/// shareable, this PE only, a range) times op2, `""` where no operation is encoded.
pub const TLBI_OPS: [&str; 32] = [
    "vmalle1is",
    "vae1is",
    "aside1is",
    "vaae1is",
    "",
    "vale1is",
    "",
    "vaale1is",
    "vmalle1os",
    "vae1os",
    "aside1os",
    "vaae1os",
    "",
    "vale1os",
    "",
    "vaale1os",
    "vmalle1",
    "vae1",
    "aside1",
    "vaae1",
    "",
    "vale1",
    "",
    "vaale1",
    "",
    "rvae1*",
    "",
    "rvaae1*",
    "",
    "rvale1*",
    "",
    "rvaale1*",
];

/// The index in [`TLBI_OPS`] of the `TLBI` instruction `word` (`SYS #0, C8, Cm, #op2`),
/// or `None` for an operation of another level (op1 not 0) or none.
pub const fn tlbi_op(word: u32) -> Option<usize> {
    let (op1, crm, op2) = ((word >> 16) & 7, (word >> 8) & 0xf, (word >> 5) & 7);
    let class = match crm {
        3 => 0,
        1 => 1,
        7 => 2,
        2 | 5 | 6 => 3,
        _ => return None,
    };
    let i = class * 8 + op2 as usize;
    if op1 != 0 || TLBI_OPS[i].is_empty() {
        return None;
    }
    Some(i)
}

impl Counts {
    /// The index of `o` in [`Counts::links`].
    pub const fn link_index(o: OrderedBy) -> usize {
        match o {
            OrderedBy::Dsb => 0,
            OrderedBy::Dmb => 1,
            OrderedBy::Release => 2,
            OrderedBy::NoWrite => 3,
            OrderedBy::Nothing => 4,
        }
    }

    /// Every link counted.
    pub fn total_links(&self) -> u64 {
        self.links.iter().sum()
    }

    /// Add `o` to these counts.
    pub fn add(&mut self, o: &Counts) {
        self.combine(o, |a, b| a + b);
    }

    /// What was counted since `start` (these counts later in the same trace).
    pub fn since(&self, start: &Counts) -> Counts {
        let mut out = *self;
        out.combine(start, u64::saturating_sub);
        out
    }

    /// Every field `a` of these counts becomes `f(a, b)`, `b` the same field of `o`.
    fn combine(&mut self, o: &Counts, f: fn(u64, u64) -> u64) {
        let pairs: [(&mut u64, u64); 27] = [
            (&mut self.ram_stores, o.ram_stores),
            (&mut self.dc_zva, o.dc_zva),
            (&mut self.dc_zva_ram, o.dc_zva_ram),
            (&mut self.dsb, o.dsb),
            (&mut self.dsb_st, o.dsb_st),
            (&mut self.dmb, o.dmb),
            (&mut self.dmb_st, o.dmb_st),
            (&mut self.isb, o.isb),
            (&mut self.tlbi, o.tlbi),
            (&mut self.stlr, o.stlr),
            (&mut self.msr_ttbr0, o.msr_ttbr0),
            (&mut self.msr_ttbr1, o.msr_ttbr1),
            (&mut self.msr_tcr, o.msr_tcr),
            (&mut self.msr_sctlr, o.msr_sctlr),
            (&mut self.stale_links, o.stale_links),
            (&mut self.links_dropped, o.links_dropped),
            (&mut self.unconfirmed, o.unconfirmed),
            (&mut self.live_changes, o.live_changes),
            (&mut self.invalidations_needed, o.invalidations_needed),
            (&mut self.invalidations_done, o.invalidations_done),
            (&mut self.bbm, o.bbm),
            (&mut self.tlbi_findings, o.tlbi_findings),
            (&mut self.live_over_capacity, o.live_over_capacity),
            (&mut self.insns, o.insns),
            (&mut self.fixmap_writes, o.fixmap_writes),
            (&mut self.table_writes, o.table_writes),
            (&mut self.table_links, o.table_links),
        ];
        for (a, b) in pairs {
            *a = f(*a, b);
        }
        for (a, b) in self.links.iter_mut().zip(o.links) {
            *a = f(*a, b);
        }
        for (a, b) in self.tlbi_ops.iter_mut().zip(o.tlbi_ops) {
            *a = f(*a, b);
        }
    }

    /// Per table linked (`table_links`; 0 tables: all 0): TLBIs, DSBs, ISBs, fixmap
    /// PTE writes, instructions — the seed's cost table's columns.
    pub fn per_table(&self) -> PerTable {
        let per = |n: u64| per_table(n, self.table_links);
        PerTable {
            tlbi: per(self.tlbi),
            dsb: per(self.dsb),
            isb: per(self.isb),
            fixmap_writes: per(self.fixmap_writes),
            insns: per(self.insns),
        }
    }

    /// The TLBIs by operation, most first: `(name, count)` of each one executed.
    pub fn tlbis_by_op(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let mut order: [usize; 32] = core::array::from_fn(|i| i);
        order.sort_unstable_by_key(|&i| (core::cmp::Reverse(self.tlbi_ops[i]), i));
        order.into_iter().filter(|&i| self.tlbi_ops[i] > 0).map(|i| (TLBI_OPS[i], self.tlbi_ops[i]))
    }

    /// One line: links by what ordered them, and the primitives counted.
    pub fn describe(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        write!(
            f,
            "{} links: {} after a DSB, {} after a DMB, {} store-release, {} with nothing to order, {} unordered, {} \
             with stale entries; {} stores, {} DC ZVA, {} DSB ({} ordering stores), {} DMB ({}), {} ISB, {} TLBI, {} STLR",
            self.total_links(),
            self.links[0],
            self.links[1],
            self.links[2],
            self.links[3],
            self.links[4],
            self.stale_links,
            self.ram_stores,
            self.dc_zva,
            self.dsb,
            self.dsb_st,
            self.dmb,
            self.dmb_st,
            self.isb,
            self.tlbi,
            self.stlr
        )
    }
}

/// One line of the tracer's output.
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// First line: the plugin API version it was built for and the one QEMU runs.
    Hello {
        /// `QEMU_PLUGIN_VERSION` the plugin was built against.
        built_for: u32,
        /// The range QEMU supports.
        qemu_min: u32,
        /// See `qemu_min`.
        qemu_cur: u32,
    },
    /// A build bracket began (the guest's [`HINT_BUILD_BEGIN`]).
    Begin,
    /// A table was linked (every link with `links=all`; otherwise only those not
    /// ordered by a DSB or with stale entries, up to the message limit).
    Link(Link),
    /// A `bbm` or `tlbi` finding (the first 16384 of a bracket; all are counted).
    Finding(Finding),
    /// One call of a bracketed function (`bracket=VA`: from its entry to its return),
    /// sent at the return; the trace's own brackets are not split.
    Function(Call),
    /// The tracer ended QEMU (`stop=VA`: the call of that bracketed function returned,
    /// its [`Message::Function`] and the [`Message::Summary`] sent first).
    Stopped {
        /// The function's entry.
        entry: u64,
    },
    /// One of the last stores into a known table before QEMU exited (up to
    /// [`RECENT_WRITES`], oldest first, sent just before the exit's summary): what a
    /// crashed kernel last did to its tables.
    TableWrite(TableWrite),
    /// A build bracket ended, or the trace did (QEMU exiting): the counts since the
    /// last `Begin` (or since the start).
    Summary(Counts),
}

/// One call of a bracketed function.
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Call {
    /// The function's entry VA (`bracket=`).
    pub entry: u64,
    /// What it executed, from its entry to its return.
    pub counts: Counts,
    /// Host nanoseconds from its entry to its return: emulated time (TCG with the
    /// tracer), not what the code costs on hardware.
    pub emulated_ns: u64,
}

/// How many of the last table writes the tracer keeps.
pub const RECENT_WRITES: usize = 8;

/// A store of one descriptor word into a page the tracer knows as a table.
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TableWrite {
    /// The storing instruction's PC and word.
    pub pc: u64,
    /// See `pc`.
    pub insn: u32,
    /// Physical address of the entry written (its table is the page it lies in).
    pub entry_pa: u64,
    /// The word stored.
    pub value: u64,
    /// Whether the table was live (reachable from TTBR0/1 with the MMU on).
    pub live: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlbi_operations_are_named_by_their_encoding() {
        let name = |w: u32| tlbi_op(w).map(|i| TLBI_OPS[i]);
        // tlbi vaale1is, x0; vmalle1; vae1is, x0; vmalle1is; rvae1is, x1.
        assert_eq!(name(0xd508_83e0), Some("vaale1is"));
        assert_eq!(name(0xd508_871f), Some("vmalle1"));
        assert_eq!(name(0xd508_8320), Some("vae1is"));
        assert_eq!(name(0xd508_831f), Some("vmalle1is"));
        assert_eq!(name(0xd508_8221), Some("rvae1*"));
        // tlbi alle2 (op1 = 4) is not an EL1 operation; CRm 4 and op2 4 encode none.
        assert_eq!(name(0xd50c_871f), None);
        assert_eq!(name(0xd508_841f), None);
        assert_eq!(name(0xd508_839f), None);
    }

    #[test]
    fn tlbis_by_op_lists_the_executed_ones_most_first() {
        let mut c = Counts::default();
        c.tlbi_ops[7] = 5;
        c.tlbi_ops[16] = 9;
        let mut got = c.tlbis_by_op();
        assert_eq!((got.next(), got.next(), got.next()), (Some(("vmalle1", 9)), Some(("vaale1is", 5)), None));
        let mut d = c;
        d.add(&c);
        assert_eq!(d.since(&c).tlbi_ops, c.tlbi_ops);
    }
}
