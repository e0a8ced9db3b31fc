//! A result: how the run ended and what the builder did to every table.
//!
//! The trace is kept per table, a fixed-size [`TableRecord`] each (allocation, clear,
//! barrier, link, with their order), so its size follows the number of tables, not a
//! capped event log: a 256 GiB page-granular map (131,072 tables) fits.

use bytemuck::{Pod, Zeroable};

use super::MAX_PROBES;

/// "PTCKRSLT" little-endian.
pub const RESULT_MAGIC: u64 = u64::from_le_bytes(*b"PTCKRSLT");
/// Tables per plan: twice a 256 GiB 4K-page linear map (131,072 tables + the levels
/// above), and what the host<->guest area holds.
pub const MAX_TABLES: usize = 262_144;
/// Faulting accesses kept (`faults_total` counts them all; one is already a failure).
pub const MAX_FAULTS: usize = 256;

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Not finished (the guest never got to the end, or has not started).
    Running = 0,
    /// Every operation applied.
    Done = 1,
    /// The builder refused an operation: see [`RunResult::bug`].
    Bug = 2,
    /// The guest took an exception: see [`RunResult::exception`].
    Exception = 3,
    /// The plan failed its magic/version/config check.
    BadPlan = 4,
}

impl Status {
    /// Decode the ABI's `u32`.
    pub fn from_u32(v: u32) -> Option<Status> {
        Some(match v {
            0 => Status::Running,
            1 => Status::Done,
            2 => Status::Bug,
            3 => Status::Exception,
            4 => Status::BadPlan,
            _ => return None,
        })
    }
}

/// Why the builder refused an operation (where the kernel would hit a `BUG_ON`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum BugKind {
    /// A live leaf would change in a way `pgattr_change_is_safe` forbids.
    UnsafeChange = 1,
    /// A block would replace a live table.
    ReplaceTable = 2,
    /// A table is needed where a live block is (the kernel never splits blocks here).
    SplitBlock = 3,
    /// The table pool ran out.
    PoolExhausted = 4,
    /// va, pa or size is not page aligned.
    Misaligned = 5,
    /// va is not a kernel address of this regime, the range wraps, or pa is beyond the PA size.
    OutOfRange = 6,
    /// prot has bits that are not leaf attributes.
    BadProt = 7,
    /// An entry that is neither empty, a table nor a block where a table is expected.
    BadEntry = 8,
}

impl BugKind {
    /// Decode the ABI's `u32`.
    pub fn from_u32(v: u32) -> Option<BugKind> {
        Some(match v {
            1 => BugKind::UnsafeChange,
            2 => BugKind::ReplaceTable,
            3 => BugKind::SplitBlock,
            4 => BugKind::PoolExhausted,
            5 => BugKind::Misaligned,
            6 => BugKind::OutOfRange,
            7 => BugKind::BadProt,
            8 => BugKind::BadEntry,
            _ => return None,
        })
    }

    /// The name outcomes and reports use ("unsafe-change", "pool-exhausted", …).
    pub const fn name(self) -> &'static str {
        match self {
            BugKind::UnsafeChange => "unsafe-change",
            BugKind::ReplaceTable => "replace-table",
            BugKind::SplitBlock => "split-block",
            BugKind::PoolExhausted => "pool-exhausted",
            BugKind::Misaligned => "misaligned",
            BugKind::OutOfRange => "out-of-range",
            BugKind::BadProt => "bad-prot",
            BugKind::BadEntry => "bad-entry",
        }
    }
}

/// [`BugRecord::level`] when no table entry is involved (a refused operation).
pub const NO_LEVEL: i32 = 4;

/// The operation the builder refused and why.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BugRecord {
    /// [`BugKind`] discriminant.
    pub kind: u32,
    /// Index of the operation in the plan.
    pub op: u32,
    /// Architectural level of the entry at fault (-1..=3), or [`NO_LEVEL`].
    pub level: i32,
    /// Reserved, zero.
    pub reserved: u32,
    /// VA of the entry at fault (or the operation's VA).
    pub va: u64,
    /// Entry value before.
    pub old: u64,
    /// Entry value the builder would have written.
    pub new: u64,
}

/// One table page handed out by the pool, and what happened to it. Sequence numbers
/// order the builder's steps across all tables (0: never happened).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TableRecord {
    /// Physical address of the page.
    pub pa: u64,
    /// Physical address of the entry the table was first linked into.
    pub link_entry: u64,
    /// The table descriptor written there.
    pub link_value: u64,
    /// Operation being applied when it was allocated (u32::MAX for the root).
    pub op: u32,
    /// Bytes cleared (the last clear).
    pub zero_bytes: u32,
    /// When it was allocated.
    pub seq_alloc: u32,
    /// When it was (last) cleared.
    pub seq_zero: u32,
    /// The first `dsb ishst` after the clear.
    pub seq_barrier: u32,
    /// When it was first linked.
    pub seq_link: u32,
    /// [`crate::LinuxLevel`] the table was allocated for.
    pub linux_level: u8,
    /// [`crate::LinuxLevel`] of the fixmap slot the parent entry was written through.
    pub link_slot: u8,
    /// Times linked (saturating).
    pub links: u8,
    /// Reserved, zero.
    pub reserved: u8,
    /// Reserved, zero.
    pub reserved2: u32,
}

/// What building cost, counted as the kernel's primitives cost: a fixmap set is a PTE
/// write with `dsb ishst; isb`, a fixmap clear a PTE clear with a TLB invalidation
/// between two `dsb`s, `init_clear_pgtable` a `clear_page` and a `dsb ishst`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Costs {
    /// Fixmap slots set.
    pub fixmap_sets: u64,
    /// Fixmap slots cleared.
    pub fixmap_clears: u64,
    /// TLB invalidations (one per fixmap clear).
    pub tlb_invalidations: u64,
    /// `dsb` barriers.
    pub dsbs: u64,
    /// Table pages cleared.
    pub table_clears: u64,
    /// Descriptors written (leaves and table descriptors).
    pub descriptor_writes: u64,
}

/// An access through a fixmap slot that hit no mapping (a folded level's NULL slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FaultRecord {
    /// The faulting address.
    pub addr: u64,
    /// Operation being applied (u32::MAX when unknown).
    pub op: u32,
    /// [`crate::LinuxLevel`] of the slot.
    pub slot: u32,
}

/// A guest exception, as the vector saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ExceptionRecord {
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// ELR_EL1.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// Offset of the vector taken in VBAR_EL1.
    pub vector: u64,
    /// Operation being applied.
    pub op: u32,
    /// [`super::Phase`] the guest was in.
    pub phase: u32,
}

/// The output-address field of PAR_EL1 after a successful `AT` (PA[51:12]; Arm ARM
/// D19 "PAR_EL1, Physical Address Register", F == 0).
pub const PAR_PA_MASK: u64 = 0x000f_ffff_ffff_f000;

/// One MMU probe of a VA.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ProbeRecord {
    /// The VA probed.
    pub va: u64,
    /// PAR_EL1 after `AT S1E1R` (read permission at EL1).
    pub par: u64,
    /// PAR_EL1 after `AT S1E1W` (write permission at EL1).
    pub par_w: u64,
    /// The word loaded through the mapping (if `flags & LOADED`).
    pub loaded: u64,
    /// [`ProbeRecord::LOADED`].
    pub flags: u64,
}

impl ProbeRecord {
    /// `loaded` holds a value read through the mapping.
    pub const LOADED: u64 = 1;
}

/// The whole result area.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct RunResult {
    /// [`RESULT_MAGIC`].
    pub magic: u64,
    /// [`super::ABI_VERSION`].
    pub version: u32,
    /// [`Status`] discriminant.
    pub status: u32,
    /// Echo of the plan's id.
    pub plan_id: u64,
    /// Physical address of the root table.
    pub root_pa: u64,
    /// Used entries of `tables`.
    pub n_tables: u32,
    /// Stored entries of `faults`.
    pub n_faults: u32,
    /// Faults that happened (may exceed `n_faults`).
    pub faults_total: u32,
    /// Used entries of `probes`.
    pub n_probes: u32,
    /// The last sequence number handed out.
    pub seq: u32,
    /// First table that may still wait for a barrier.
    pub barrier_from: u32,
    /// `set_fixmap` calls per [`crate::LinuxLevel`] slot (a folded level's must stay 0).
    pub fixmap_sets: [u32; 5],
    /// Reserved, zero.
    pub reserved: u32,
    /// What building cost.
    pub costs: Costs,
    /// Operations fully applied.
    pub ops_done: u32,
    /// `HW_*` flags.
    pub hw_flags: u32,
    /// ID_AA64MMFR0_EL1 as the guest read it (0 natively).
    pub id_mmfr0: u64,
    /// ID_AA64MMFR2_EL1 as the guest read it (0 natively).
    pub id_mmfr2: u64,
    /// Valid when status is Bug.
    pub bug: BugRecord,
    /// Valid when status is Exception.
    pub exception: ExceptionRecord,
    /// Every table, in allocation order.
    pub tables: [TableRecord; MAX_TABLES],
    /// Faulting accesses.
    pub faults: [FaultRecord; MAX_FAULTS],
    /// MMU probes.
    pub probes: [ProbeRecord; MAX_PROBES],
}

impl RunResult {
    /// The MMU probes ran.
    pub const HW_PROBED: u32 = 1 << 0;
    /// The CPU cannot translate this regime: built and checked in memory only.
    pub const HW_UNSUPPORTED: u32 = 1 << 1;

    /// Reset to an empty result for plan `plan_id`.
    pub fn reset(&mut self, plan_id: u64) {
        self.magic = RESULT_MAGIC;
        self.version = super::ABI_VERSION;
        self.status = Status::Running as u32;
        self.plan_id = plan_id;
        self.root_pa = 0;
        self.n_tables = 0;
        self.n_faults = 0;
        self.faults_total = 0;
        self.n_probes = 0;
        self.ops_done = 0;
        self.hw_flags = 0;
        self.seq = 0;
        self.barrier_from = 0;
        self.fixmap_sets = [0; 5];
        self.reserved = 0;
        self.costs = Costs::zeroed();
        self.bug = BugRecord::zeroed();
        self.exception = ExceptionRecord::zeroed();
    }

    /// The next sequence number.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.saturating_add(1);
        self.seq
    }

    /// Record a new table at `pa`; its index, or `None` when the record is full.
    pub fn push_table(&mut self, pa: u64, op: u32, linux_level: u8) -> Option<usize> {
        let i = self.n_tables as usize;
        let seq_alloc = self.next_seq();
        let slot = self.tables.get_mut(i)?;
        *slot = TableRecord { pa, op, linux_level, seq_alloc, ..TableRecord::zeroed() };
        self.n_tables += 1;
        Some(i)
    }

    /// Table `i` was cleared (`bytes` of it).
    pub fn note_zero(&mut self, i: usize, bytes: u32) {
        let seq = self.next_seq();
        if let Some(t) = self.tables.get_mut(i) {
            t.zero_bytes = bytes;
            t.seq_zero = seq;
            t.seq_barrier = 0;
        }
    }

    /// `dsb ishst`: every table cleared since the last barrier is now visible.
    pub fn note_barrier(&mut self) {
        let seq = self.next_seq();
        let n = self.n_tables as usize;
        for t in self.tables.get_mut(self.barrier_from as usize..n).into_iter().flatten() {
            if t.seq_zero != 0 && t.seq_barrier == 0 {
                t.seq_barrier = seq;
            }
        }
        self.barrier_from = self.n_tables;
    }

    /// Table `i` was linked: `value` written at entry `entry_pa` through `slot`'s fixmap.
    pub fn note_link(&mut self, i: usize, entry_pa: u64, value: u64, slot: u8) {
        let seq = self.next_seq();
        if let Some(t) = self.tables.get_mut(i) {
            if t.links == 0 {
                t.seq_link = seq;
                t.link_entry = entry_pa;
                t.link_value = value;
                t.link_slot = slot;
            }
            t.links = t.links.saturating_add(1);
        }
    }

    /// Fixmap slot `slot` (a [`crate::LinuxLevel`]) was set.
    pub fn note_fixmap_set(&mut self, slot: usize) {
        if let Some(n) = self.fixmap_sets.get_mut(slot) {
            *n = n.saturating_add(1);
        }
    }

    /// An access through slot `slot` faulted at `addr`.
    pub fn push_fault(&mut self, f: FaultRecord) {
        if let Some(slot) = self.faults.get_mut(self.n_faults as usize) {
            *slot = f;
            self.n_faults += 1;
        }
        self.faults_total = self.faults_total.saturating_add(1);
    }

    /// The decoded status.
    pub fn status(&self) -> Option<Status> {
        Status::from_u32(self.status)
    }

    /// The tables (empty if the count is corrupt).
    pub fn tables(&self) -> &[TableRecord] {
        self.tables.get(..self.n_tables as usize).unwrap_or(&[])
    }

    /// Recorded faults (empty if the count is corrupt).
    pub fn faults(&self) -> &[FaultRecord] {
        self.faults.get(..self.n_faults as usize).unwrap_or(&[])
    }

    /// Recorded probes (empty if the count is corrupt).
    pub fn probes(&self) -> &[ProbeRecord] {
        self.probes.get(..self.n_probes as usize).unwrap_or(&[])
    }
}
