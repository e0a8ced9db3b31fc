//! A result: what the builder did, in the order it did it.

use bytemuck::{Pod, Zeroable};

use super::MAX_PROBES;

/// "PTCKRSLT" little-endian.
pub const RESULT_MAGIC: u64 = u64::from_le_bytes(*b"PTCKRSLT");
/// Allocation log capacity.
pub const MAX_ALLOCS: usize = 1024;
/// Event trace capacity; `events_total` keeps counting past it.
pub const MAX_EVENTS: usize = 16384;

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

/// The operation the builder refused and why.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BugRecord {
    /// [`BugKind`] discriminant.
    pub kind: u32,
    /// Index of the operation in the plan.
    pub op: u32,
    /// Architectural level of the entry at fault (-1..=3), or 4 when no entry is involved.
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

/// One table page handed out by the pool.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct AllocRecord {
    /// Physical address of the page.
    pub pa: u64,
    /// Operation being applied (u32::MAX for the root).
    pub op: u32,
    /// [`crate::LinuxLevel`] the table was allocated for.
    pub linux_level: u32,
}

/// What happened, in program order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum EventKind {
    /// A table page was taken from the pool: `pa`, `slot` = its Linux level.
    Alloc = 1,
    /// Fixmap slot `slot` now maps `pa`.
    FixmapSet = 2,
    /// Fixmap slot `slot` unmapped.
    FixmapClear = 3,
    /// `value` bytes at `pa` cleared through slot `slot`.
    Zero = 4,
    /// `dsb ishst`: earlier table writes are visible to the walker.
    Barrier = 5,
    /// Table descriptor `value` written at entry address `pa` through slot `slot`.
    Link = 6,
    /// An access through slot `slot` hit no mapping: `pa` is the faulting address.
    Fault = 7,
}

impl EventKind {
    /// Decode the ABI's `u16`.
    pub fn from_u16(v: u16) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::Alloc,
            2 => EventKind::FixmapSet,
            3 => EventKind::FixmapClear,
            4 => EventKind::Zero,
            5 => EventKind::Barrier,
            6 => EventKind::Link,
            7 => EventKind::Fault,
            _ => return None,
        })
    }
}

/// One trace event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Event {
    /// [`EventKind`] discriminant.
    pub kind: u16,
    /// [`crate::LinuxLevel`] of the fixmap slot involved.
    pub slot: u16,
    /// Operation index (u32::MAX before the first).
    pub op: u32,
    /// Physical address (see [`EventKind`]).
    pub pa: u64,
    /// Value (see [`EventKind`]).
    pub value: u64,
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
    /// Used entries of `allocs`.
    pub n_allocs: u32,
    /// Stored entries of `events`.
    pub n_events: u32,
    /// Events that happened (may exceed `n_events`: then the trace is truncated).
    pub events_total: u32,
    /// Used entries of `probes`.
    pub n_probes: u32,
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
    /// Allocation log.
    pub allocs: [AllocRecord; MAX_ALLOCS],
    /// Event trace.
    pub events: [Event; MAX_EVENTS],
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
        self.n_allocs = 0;
        self.n_events = 0;
        self.events_total = 0;
        self.n_probes = 0;
        self.ops_done = 0;
        self.hw_flags = 0;
        self.bug = BugRecord::zeroed();
        self.exception = ExceptionRecord::zeroed();
    }

    /// Append an event (counted even when the trace is full).
    pub fn push_event(&mut self, e: Event) {
        if let Some(slot) = self.events.get_mut(self.n_events as usize) {
            *slot = e;
            self.n_events += 1;
        }
        self.events_total = self.events_total.saturating_add(1);
    }

    /// Append an allocation; `false` when the log is full.
    pub fn push_alloc(&mut self, a: AllocRecord) -> bool {
        match self.allocs.get_mut(self.n_allocs as usize) {
            Some(slot) => {
                *slot = a;
                self.n_allocs += 1;
                true
            }
            None => false,
        }
    }

    /// The decoded status.
    pub fn status(&self) -> Option<Status> {
        Status::from_u32(self.status)
    }

    /// Stored events (empty if the count is corrupt).
    pub fn events(&self) -> &[Event] {
        self.events.get(..self.n_events as usize).unwrap_or(&[])
    }

    /// Logged allocations (empty if the count is corrupt).
    pub fn allocs(&self) -> &[AllocRecord] {
        self.allocs.get(..self.n_allocs as usize).unwrap_or(&[])
    }

    /// Recorded probes (empty if the count is corrupt).
    pub fn probes(&self) -> &[ProbeRecord] {
        self.probes.get(..self.n_probes as usize).unwrap_or(&[])
    }
}
