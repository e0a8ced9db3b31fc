//! The expected state of a plan, computed without the builder.
//!
//! The Linux policy is restated here over *architectural* levels and a sparse map of
//! entries, not over Linux levels, fixmaps and real tables as the builder does it.
//! Two independent formulations of one policy must agree on every plan.

use std::collections::BTreeMap;

use ptcheck_shared::abi::{BugKind, MapFlags, MapOp, Plan};
use ptcheck_shared::descriptor::DescriptorKind;
use ptcheck_shared::{Descriptor, Level, Prot, TranslationConfig};

/// An entry of the model, keyed by (level, first VA it translates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelEntry {
    /// A next-level table with these table attribute bits, created by operation `op`.
    Table {
        /// Expected UXNTable/PXNTable bits.
        attrs: u64,
        /// The operation that created it.
        op: u32,
    },
    /// A block or page descriptor.
    Leaf(Descriptor),
}

/// The BUG the builder must report, as far as the model can know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedBug {
    /// Why.
    pub kind: BugKind,
    /// Operation index (u32::MAX for the root allocation).
    pub op: u32,
    /// Level of the entry (4 when none).
    pub level: i32,
    /// First VA of the entry (or the operation's VA).
    pub va: u64,
    /// Old value, or `None` when it is a table descriptor whose address only the builder knows.
    pub old: Option<u64>,
    /// New value.
    pub new: u64,
}

/// The expected outcome of a whole plan.
#[derive(Debug)]
pub struct Expected {
    /// Every live entry.
    pub entries: BTreeMap<(Level, u64), ModelEntry>,
    /// Tables the builder must allocate, the root included.
    pub tables: usize,
    /// The refusal that must end the plan.
    pub bug: Option<ExpectedBug>,
    /// VA range of the refused operation: its entries may be half-written.
    pub bug_range: Option<(u64, u64)>,
    /// Operations the builder enters (all of them, or up to and including the refused one).
    pub ops_entered: u64,
    /// Table visits below the root: one per (operation, parent entry) that descends.
    pub table_visits: u64,
    /// Block and page descriptors written, over all operations.
    pub leaf_writes: u64,
}

impl Expected {
    /// Expected leaves in VA order: (va, level, descriptor).
    pub fn leaves(&self) -> Vec<(u64, Level, Descriptor)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter_map(|(&(level, va), e)| match e {
                ModelEntry::Leaf(d) => Some((va, level, *d)),
                ModelEntry::Table { .. } => None,
            })
            .collect();
        v.sort_by_key(|&(va, ..)| va);
        v
    }
}

impl Expected {
    /// What the plan says `va` translates to.
    pub fn at(&self, cfg: &TranslationConfig, va: u64) -> Option<crate::walker::Translation> {
        (cfg.root_level().0..=3).find_map(|l| {
            let level = Level(l);
            let span = cfg.entry_span(level);
            match self.entries.get(&(level, va & !(span - 1)))? {
                ModelEntry::Leaf(d) => Some(crate::walker::Translation {
                    pa: (d.address(cfg) & !(span - 1)) + (va & (span - 1)),
                    prot: d.prot(cfg),
                }),
                ModelEntry::Table { .. } => None,
            }
        })
    }

    /// Trace events a builder following the kernel's structure records for this plan
    /// when it runs to the end: the root (alloc, fixmap set, zero, barrier, clear), the
    /// pgd fixmap set and clear of each operation, a set and clear per table visit, and
    /// alloc, zero, barrier and link per new table.
    pub fn trace_events(&self) -> u64 {
        let new_tables = (self.tables as u64).saturating_sub(1);
        5 + 2 * self.ops_entered + 2 * self.table_visits + 4 * new_tables
    }
}

/// Pages the builder may take from the pool.
pub fn pool_capacity(plan: &Plan, page: u64) -> usize {
    let pages: u64 = plan
        .pool()
        .iter()
        .map(|r| {
            let start = r.base.next_multiple_of(page);
            (r.base.saturating_add(r.size)).saturating_sub(start) / page
        })
        .fold(0, u64::saturating_add);
    usize::try_from(pages).unwrap_or(usize::MAX)
}

/// How much work the model may do before it gives up: the leaf descriptors it writes
/// (a page-granular map of 32 GiB of 4K pages, written once).
pub const MODEL_LEAF_WRITES: u64 = 1 << 23;

/// Why the model stopped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The plan's header is not a valid plan (magic, version or config).
    BadHeader,
    /// The plan writes more leaf descriptors than [`MODEL_LEAF_WRITES`]: at least `needed`.
    TooMuchWork {
        /// Leaf writes counted when the model stopped.
        needed: u64,
    },
}

/// Why the model stopped walking an operation.
enum Stop {
    Bug(ExpectedBug),
    Work,
}

impl From<ExpectedBug> for Stop {
    fn from(b: ExpectedBug) -> Self {
        Stop::Bug(b)
    }
}

struct Model<'p> {
    cfg: TranslationConfig,
    entries: BTreeMap<(Level, u64), ModelEntry>,
    tables: usize,
    capacity: usize,
    op_index: u32,
    op: &'p MapOp,
    table_visits: u64,
    leaf_writes: u64,
    leaf_budget: u64,
}

type Step = Result<(), Stop>;

/// Why a live leaf may not become `new` (the `pgattr_change_is_safe` rule), if it may not.
fn forbidden_change(old: Descriptor, new: Descriptor) -> Option<&'static str> {
    if !old.is_valid() || !new.is_valid() {
        return None;
    }
    if old.is_contiguous() || new.is_contiguous() {
        return Some("live contiguous entries may not change");
    }
    if old.0 & Prot::NG != 0 && new.0 & Prot::NG == 0 {
        return Some("non-global to global");
    }
    let normal_kinds = [Prot::MT_NORMAL, Prot::MT_NORMAL_TAGGED];
    let both_normal =
        normal_kinds.contains(&Prot(old.0).attr_index()) && normal_kinds.contains(&Prot(new.0).attr_index());
    let changeable =
        Prot::PXN | Prot::RDONLY | Prot::WRITE | Prot::NG | if both_normal { Prot::ATTR_INDX_MASK } else { 0 };
    ((old.0 ^ new.0) & !changeable != 0).then_some("only PXN, RDONLY, WRITE, nG (and Normal<->Tagged) may change")
}

impl Model<'_> {
    fn bug(&self, kind: BugKind, level: Level, va: u64, old: Option<u64>, new: u64) -> ExpectedBug {
        ExpectedBug { kind, op: self.op_index, level: level.0 as i32, va, old, new }
    }

    fn has(&self, flag: u64) -> bool {
        self.op.flags & flag != 0
    }

    /// Map `[va, end)` to `pa`, all inside one table at `level`. Addresses are u128
    /// so a range ending at the top of the address space needs no special case.
    fn fill(&mut self, level: Level, va: u128, end: u128, pa: u128) -> Step {
        let cfg = self.cfg;
        let span = cfg.entry_span(level) as u128;
        // Contiguous runs are decided within one entry of the level above: Linux walks
        // the root one entry at a time, so at the root a run never spans two entries
        // and is never taken.
        let run = if level == cfg.root_level() { None } else { cfg.cont_span(level).map(u128::from) };
        let no_cont = self.has(MapFlags::NO_CONT_MAPPINGS);
        let mut cur = va;
        while cur < end {
            let window_end = run.map_or(end, |r| end.min((cur / r + 1) * r));
            let p = pa + (cur - va);
            let cont =
                !no_cont && run.is_some_and(|r| cur.is_multiple_of(r) && window_end % r == 0 && p.is_multiple_of(r));
            let mut a = cur;
            while a < window_end {
                let next = window_end.min((a / span + 1) * span);
                self.entry(level, a, next, pa + (a - va), cont)?;
                a = next;
            }
            cur = window_end;
        }
        Ok(())
    }

    /// `[a, next)` inside the single entry of `level` that holds `a`, mapped to `p`.
    fn entry(&mut self, level: Level, a: u128, next: u128, p: u128, cont: bool) -> Step {
        let cfg = self.cfg;
        let span = cfg.entry_span(level) as u128;
        let base = (a - a % span) as u64;
        let whole = a.is_multiple_of(span) && next - a == span && p.is_multiple_of(span);
        let block_ok = level == Level::LEAF
            || (cfg.kernel_block_size(level).is_some() && whole && !self.has(MapFlags::NO_BLOCK_MAPPINGS));
        if block_ok {
            let new = Descriptor::leaf(&cfg, level, p as u64, Prot(self.op.prot), cont);
            self.leaf_writes += 1;
            if self.leaf_writes > self.leaf_budget {
                return Err(Stop::Work);
            }
            return match self.entries.get(&(level, base)) {
                Some(ModelEntry::Table { .. }) => Err(self.bug(BugKind::ReplaceTable, level, base, None, new.0).into()),
                Some(&ModelEntry::Leaf(old)) if forbidden_change(old, new).is_some() => {
                    Err(self.bug(BugKind::UnsafeChange, level, base, Some(old.0), new.0).into())
                }
                _ => {
                    self.entries.insert((level, base), ModelEntry::Leaf(new));
                    Ok(())
                }
            };
        }
        match self.entries.get(&(level, base)) {
            Some(ModelEntry::Table { .. }) => {}
            Some(&ModelEntry::Leaf(old)) => {
                let kind = match old.kind(&cfg, level) {
                    DescriptorKind::Block => BugKind::SplitBlock,
                    _ => BugKind::BadEntry,
                };
                return Err(self.bug(kind, level, base, Some(old.0), 0).into());
            }
            None => {
                if self.tables >= self.capacity {
                    return Err(self.bug(BugKind::PoolExhausted, level.next(), base, Some(0), 0).into());
                }
                self.tables += 1;
                let pxn = if self.has(MapFlags::NO_EXEC_MAPPINGS) { Descriptor::PXN_TABLE } else { 0 };
                let t = ModelEntry::Table { attrs: Descriptor::UXN_TABLE | pxn, op: self.op_index };
                self.entries.insert((level, base), t);
            }
        }
        self.table_visits += 1;
        self.fill(level.next(), a, next, p)
    }

    fn apply(&mut self) -> Step {
        let (cfg, op) = (self.cfg, *self.op);
        let page = cfg.page_size();
        let refuse = |m: &Self, kind| Err(m.bug(kind, Level(4), op.va, Some(0), 0).into());
        if op.size == 0 || (op.va | op.pa | op.size) & (page - 1) != 0 {
            return refuse(self, BugKind::Misaligned);
        }
        if !Prot(op.prot).is_valid() || op.flags & !MapFlags::ALL != 0 {
            return refuse(self, BugKind::BadProt);
        }
        let end = op.va.wrapping_add(op.size);
        let pa_fits = op.pa.checked_add(op.size).is_some_and(|e| e <= 1u64 << cfg.pa_bits());
        if op.va < cfg.va_start() || (end != 0 && end <= op.va) || !pa_fits {
            return refuse(self, BugKind::OutOfRange);
        }
        // The root table covers the whole range; split it by root entries.
        let va = u128::from(op.va);
        self.fill(cfg.root_level(), va, va + u128::from(op.size), u128::from(op.pa))
    }
}

/// Compute what the builder must produce for `plan`; `None` for a malformed header
/// or a plan over the model's work limit (see [`model`]).
pub fn expected(plan: &Plan) -> Option<Expected> {
    model(plan, MODEL_LEAF_WRITES).ok()
}

/// Compute what the builder must produce for `plan`, writing at most `leaf_budget`
/// leaf descriptors.
///
/// # Errors
/// A malformed plan header, or more work than `leaf_budget`.
pub fn model(plan: &Plan, leaf_budget: u64) -> Result<Expected, ModelError> {
    let cfg = plan.config().ok_or(ModelError::BadHeader)?;
    let capacity = pool_capacity(plan, cfg.page_size());
    let placeholder = MapOp::default();
    let mut m = Model {
        cfg,
        entries: BTreeMap::new(),
        tables: 0,
        capacity,
        op_index: u32::MAX,
        op: &placeholder,
        table_visits: 0,
        leaf_writes: 0,
        leaf_budget,
    };
    let done = |m: Model<'_>, bug, bug_range, ops_entered| Expected {
        entries: m.entries,
        tables: m.tables,
        bug,
        bug_range,
        ops_entered,
        table_visits: m.table_visits,
        leaf_writes: m.leaf_writes,
    };
    if capacity == 0 {
        let bug = m.bug(BugKind::PoolExhausted, cfg.root_level(), 0, Some(0), 0);
        return Ok(done(m, Some(bug), None, 0));
    }
    m.tables = 1; // the root
    for (i, op) in plan.ops().iter().enumerate() {
        m.op_index = i as u32;
        m.op = op;
        match m.apply() {
            Ok(()) => {}
            Err(Stop::Bug(bug)) => {
                let range = (op.va, op.va.wrapping_add(op.size));
                return Ok(done(m, Some(bug), Some(range), i as u64 + 1));
            }
            Err(Stop::Work) => return Err(ModelError::TooMuchWork { needed: m.leaf_writes }),
        }
    }
    let n = plan.ops().len() as u64;
    Ok(done(m, None, None, n))
}
