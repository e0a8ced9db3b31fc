//! The expected state of a plan, computed without the builder.
//!
//! The Linux policy is restated here over *architectural* levels, a map of tables and
//! an interval map of leaf runs, not over Linux levels, fixmaps and real tables as the
//! builder does it. Two independent formulations of one policy must agree on every
//! plan.
//!
//! The model works by ranges: within one table a whole run of pages or blocks is one
//! step, so its cost grows with the number of tables and operations, not with the
//! number of leaves (a 256 GiB page-granular map is 131,072 tables, 64 M leaves).

use std::collections::BTreeMap;
use std::ops::Bound;

use ptcheck_shared::abi::{BugKind, MapFlags, MapOp, Plan};
use ptcheck_shared::descriptor::DescriptorKind;
use ptcheck_shared::{Descriptor, Level, Prot, TranslationConfig};

pub use ptcheck_guest::registry::Policy;

use crate::runs::{push_run, LeafRun};

/// A next-level table the builder must have linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// Expected UXNTable/PXNTable bits.
    pub attrs: u64,
    /// The operation that created it.
    pub op: u32,
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
    /// Every table descriptor, keyed by (level of the entry, first VA it translates).
    pub table_entries: BTreeMap<(Level, u64), TableEntry>,
    /// Every leaf, as maximal runs in VA order.
    pub runs: Vec<LeafRun>,
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
    /// Which checks apply: the Linux policy's, or only what any correct builder owes.
    pub policy: Policy,
    cfg: TranslationConfig,
}

impl Expected {
    /// What the plan says `va` translates to.
    pub fn at(&self, cfg: &TranslationConfig, va: u64) -> Option<crate::walker::Translation> {
        let i = self.runs.partition_point(|r| r.va <= va).checked_sub(1)?;
        let r = &self.runs[i];
        (u128::from(va) < r.end(cfg))
            .then(|| crate::walker::Translation { pa: r.pa(cfg).wrapping_add(va - r.va), prot: r.prot(cfg) })
    }

    /// Every expected leaf, one by one, in VA order: (va, level, descriptor). For small
    /// plans and tests: a 256 GiB page-granular map has 64 M.
    pub fn leaves(&self) -> Vec<(u64, Level, Descriptor)> {
        self.runs.iter().flat_map(|r| r.leaves(&self.cfg).collect::<Vec<_>>()).collect()
    }

    /// Leaves mapped, counted.
    pub fn leaf_count(&self) -> u64 {
        self.runs.iter().map(|r| r.count).sum()
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

/// How much work the model may do before it gives up: steps (a run of leaves inside
/// one table, or one table entry), far more than any machine-sized plan needs.
pub const MODEL_STEPS: u64 = 1 << 24;

/// Why the model stopped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The plan's header is not a valid plan (magic, version or config).
    BadHeader,
    /// The plan needs more than [`MODEL_STEPS`] steps: at least `needed`.
    TooMuchWork {
        /// Steps counted when the model stopped.
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

/// A run in the model's interval map (keyed by its first VA).
#[derive(Clone, Copy, Debug)]
struct Run {
    count: u64,
    level: Level,
    desc: Descriptor,
}

struct Model<'p> {
    cfg: TranslationConfig,
    table_entries: BTreeMap<(Level, u64), TableEntry>,
    leaves: BTreeMap<u64, Run>,
    tables: usize,
    capacity: usize,
    op_index: u32,
    op: &'p MapOp,
    table_visits: u64,
    leaf_writes: u64,
    steps: u64,
    step_budget: u64,
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

fn round_up(x: u128, to: u128) -> u128 {
    x.div_ceil(to) * to
}

impl Model<'_> {
    /// The BUG expected for an entry at `level` (`None`: a refused operation, no entry).
    fn bug(&self, kind: BugKind, level: Option<Level>, va: u64, old: Option<u64>, new: u64) -> ExpectedBug {
        let level = level.map_or(ptcheck_shared::abi::NO_LEVEL, |l| i32::from(l.0));
        ExpectedBug { kind, op: self.op_index, level, va, old, new }
    }

    fn has(&self, flag: u64) -> bool {
        self.op.flags & flag != 0
    }

    fn step(&mut self) -> Step {
        self.steps += 1;
        if self.steps > self.step_budget {
            return Err(Stop::Work);
        }
        Ok(())
    }

    fn run_desc(&self, r: &Run, i: u64) -> Descriptor {
        LeafRun { va: 0, count: r.count, level: r.level, desc: r.desc }.desc_at(&self.cfg, i)
    }

    /// The leaf at `level` whose entry starts at `base`, if there is one.
    fn leaf_at(&self, level: Level, base: u64) -> Option<Descriptor> {
        let (&va, r) = self.leaves.range(..=base).next_back()?;
        let span = self.cfg.entry_span(r.level);
        let inside = u128::from(base) < u128::from(va) + u128::from(r.count) * u128::from(span);
        (inside && r.level == level).then(|| self.run_desc(r, (base - va) / span))
    }

    /// Map `[va, end)` to `pa`, all inside one table at `level`, in pieces of like
    /// contiguous-bit decisions. Addresses are u128 so a range ending at the top of the
    /// address space needs no special case.
    fn fill(&mut self, level: Level, va: u128, end: u128, pa: u128) -> Step {
        let cfg = self.cfg;
        // Contiguous runs are decided within one entry of the level above: Linux walks
        // the root one entry at a time, so at the root a run never spans two entries
        // and is never taken.
        let run = if level == cfg.root_level() { None } else { cfg.cont_span(level).map(u128::from) };
        let Some(r) = run else { return self.piece(level, va, end, pa, false) };
        // A partial window before the first run boundary, whole windows, a partial
        // window after the last: only whole windows whose output is aligned are
        // contiguous, and in one call either all whole windows are or none is.
        let first = end.min(round_up(va, r));
        let last = first.max(end / r * r);
        let no_cont = self.has(MapFlags::NO_CONT_MAPPINGS);
        if va < first {
            self.piece(level, va, first, pa, false)?;
        }
        if first < last {
            let cont = !no_cont && (pa + (first - va)).is_multiple_of(r);
            self.piece(level, first, last, pa + (first - va), cont)?;
        }
        if last < end {
            self.piece(level, last, end, pa + (last - va), false)?;
        }
        Ok(())
    }

    /// `[a, b)` at `level` with one contiguous-bit decision: whole entries that may be
    /// leaves become one run; the rest, entry by entry, tables.
    fn piece(&mut self, level: Level, a: u128, b: u128, p: u128, cont: bool) -> Step {
        let cfg = self.cfg;
        let span = u128::from(cfg.entry_span(level));
        let blocks = level == Level::LEAF
            || (cfg.kernel_block_size(level).is_some()
                && !self.has(MapFlags::NO_BLOCK_MAPPINGS)
                && p % span == a % span);
        let (wa, wb) = (round_up(a, span), (b / span * span).max(round_up(a, span)));
        if blocks && wa < wb {
            if a < wa {
                self.entry(level, a, wa, p, cont)?;
            }
            self.insert_run(level, wa, wb, p + (wa - a), cont)?;
            if wb < b {
                self.entry(level, wb, b, p + (wb - a), cont)?;
            }
            return Ok(());
        }
        let mut x = a;
        while x < b {
            let next = b.min((x / span + 1) * span);
            self.entry(level, x, next, p + (x - a), cont)?;
            x = next;
        }
        Ok(())
    }

    /// Whole entries `[a, b)` at `level` become leaves mapping `p` onwards, unless an
    /// entry there is a table (ReplaceTable) or a live leaf whose change the rule
    /// forbids (UnsafeChange); the first such entry in VA order is the BUG.
    fn insert_run(&mut self, level: Level, a: u128, b: u128, p: u128, cont: bool) -> Step {
        self.step()?;
        let cfg = self.cfg;
        let span = cfg.entry_span(level);
        let (a64, count) = (a as u64, ((b - a) / u128::from(span)) as u64);
        let new =
            LeafRun { va: a64, count, level, desc: Descriptor::leaf(&cfg, level, p as u64, Prot(self.op.prot), cont) };
        self.leaf_writes += count;
        let mut first_bug: Option<ExpectedBug> = None;
        let mut consider = |bug: ExpectedBug| {
            if first_bug.is_none_or(|f| bug.va < f.va) {
                first_bug = Some(bug);
            }
        };
        let upper = if b >= 1u128 << 64 { Bound::Unbounded } else { Bound::Excluded((level, b as u64)) };
        if let Some((&(_, tva), _)) = self.table_entries.range((Bound::Included((level, a64)), upper)).next() {
            let k = (tva - a64) / span;
            consider(self.bug(BugKind::ReplaceTable, Some(level), tva, None, new.desc_at(&cfg, k).0));
        }
        let overlapping = self.overlapping(a, b);
        for &(va, r) in &overlapping {
            let o = va.max(a64);
            let old = self.run_desc(&r, (o - va) / span);
            let new_at = new.desc_at(&cfg, (o - a64) / span);
            if forbidden_change(old, new_at).is_some() {
                consider(self.bug(BugKind::UnsafeChange, Some(level), o, Some(old.0), new_at.0));
            }
        }
        if let Some(bug) = first_bug {
            return Err(bug.into());
        }
        for (va, r) in overlapping {
            self.leaves.remove(&va);
            let rspan = u128::from(cfg.entry_span(r.level));
            let end = u128::from(va) + u128::from(r.count) * rspan;
            if u128::from(va) < a {
                let keep = ((a - u128::from(va)) / rspan) as u64;
                self.leaves.insert(va, Run { count: keep, ..r });
            }
            if end > b {
                let skip = ((b - u128::from(va)) / rspan) as u64;
                let desc = self.run_desc(&r, skip);
                self.leaves.insert(b as u64, Run { count: r.count - skip, level: r.level, desc });
            }
        }
        self.leaves.insert(a64, Run { count, level, desc: new.desc });
        Ok(())
    }

    /// Runs overlapping `[a, b)`, as (first VA, run).
    fn overlapping(&self, a: u128, b: u128) -> Vec<(u64, Run)> {
        let mut out = Vec::new();
        if let Some((&va, r)) = self.leaves.range(..(a as u64)).next_back() {
            let end = u128::from(va) + u128::from(r.count) * u128::from(self.cfg.entry_span(r.level));
            if end > a {
                out.push((va, *r));
            }
        }
        let upper = if b >= 1u128 << 64 { Bound::Unbounded } else { Bound::Excluded(b as u64) };
        out.extend(self.leaves.range((Bound::Included(a as u64), upper)).map(|(&va, r)| (va, *r)));
        out
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
            return self.insert_run(level, a, next, p, cont);
        }
        self.step()?;
        if !self.table_entries.contains_key(&(level, base)) {
            if let Some(old) = self.leaf_at(level, base) {
                let kind = match old.kind(&cfg, level) {
                    DescriptorKind::Block => BugKind::SplitBlock,
                    _ => BugKind::BadEntry,
                };
                return Err(self.bug(kind, Some(level), base, Some(old.0), 0).into());
            }
            if self.tables >= self.capacity {
                return Err(self.bug(BugKind::PoolExhausted, Some(level.next()), base, Some(0), 0).into());
            }
            self.tables += 1;
            let pxn = if self.has(MapFlags::NO_EXEC_MAPPINGS) { Descriptor::PXN_TABLE } else { 0 };
            let t = TableEntry { attrs: Descriptor::UXN_TABLE | pxn, op: self.op_index };
            self.table_entries.insert((level, base), t);
        }
        self.table_visits += 1;
        self.fill(level.next(), a, next, p)
    }

    fn apply(&mut self) -> Step {
        let (cfg, op) = (self.cfg, *self.op);
        let page = cfg.page_size();
        let refuse = |m: &Self, kind| Err(m.bug(kind, None, op.va, Some(0), 0).into());
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
        // The root table covers the whole range.
        let va = u128::from(op.va);
        self.fill(cfg.root_level(), va, va + u128::from(op.size), u128::from(op.pa))
    }

    fn finish(self, bug: Option<ExpectedBug>, bug_range: Option<(u64, u64)>, ops_entered: u64) -> Expected {
        let cfg = self.cfg;
        let mut runs = Vec::with_capacity(self.leaves.len());
        for (va, r) in self.leaves {
            push_run(&cfg, &mut runs, LeafRun { va, count: r.count, level: r.level, desc: r.desc });
        }
        Expected {
            table_entries: self.table_entries,
            runs,
            tables: self.tables,
            bug,
            bug_range,
            ops_entered,
            table_visits: self.table_visits,
            leaf_writes: self.leaf_writes,
            policy: Policy::Linux,
            cfg,
        }
    }
}

/// Compute what the builder must produce for `plan`; `None` for a malformed header
/// or a plan over the model's work limit (see [`model`]).
pub fn expected(plan: &Plan) -> Option<Expected> {
    model(plan, MODEL_STEPS).ok()
}

/// Compute what the builder must produce for `plan`, in at most `step_budget` steps.
///
/// # Errors
/// A malformed plan header, or more work than `step_budget`.
pub fn model(plan: &Plan, step_budget: u64) -> Result<Expected, ModelError> {
    let cfg = plan.config().ok_or(ModelError::BadHeader)?;
    let capacity = pool_capacity(plan, cfg.page_size());
    let placeholder = MapOp::default();
    let mut m = Model {
        cfg,
        table_entries: BTreeMap::new(),
        leaves: BTreeMap::new(),
        tables: 0,
        capacity,
        op_index: u32::MAX,
        op: &placeholder,
        table_visits: 0,
        leaf_writes: 0,
        steps: 0,
        step_budget,
    };
    if capacity == 0 {
        let bug = m.bug(BugKind::PoolExhausted, Some(cfg.root_level()), 0, Some(0), 0);
        return Ok(m.finish(Some(bug), None, 0));
    }
    m.tables = 1; // the root
    for (i, op) in plan.ops().iter().enumerate() {
        m.op_index = i as u32;
        m.op = op;
        match m.apply() {
            Ok(()) => {}
            Err(Stop::Bug(bug)) => {
                let range = (op.va, op.va.wrapping_add(op.size));
                return Ok(m.finish(Some(bug), Some(range), i as u64 + 1));
            }
            Err(Stop::Work) => return Err(ModelError::TooMuchWork { needed: m.steps }),
        }
    }
    let n = plan.ops().len() as u64;
    Ok(m.finish(None, None, n))
}

/// What any correct builder must produce for `plan`, whatever its own policy: every VA
/// of every operation translates as the last operation that covers it says (PA and
/// attributes), nothing else is mapped, the run completes. The runs it holds are
/// page-granular (a builder's blocks and contiguous runs are its own business); the
/// checks compare translations, not shapes.
pub fn overlay(plan: &Plan) -> Option<Expected> {
    let cfg = plan.config()?;
    let page = cfg.page_size();
    // Disjoint ranges (start -> (end, pa, prot)); later operations cut earlier ones.
    let mut map: BTreeMap<u128, (u128, u128, u64)> = BTreeMap::new();
    for op in plan.ops() {
        let (a, b, pa) = (u128::from(op.va), u128::from(op.va) + u128::from(op.size), u128::from(op.pa));
        let cut: Vec<(u128, (u128, u128, u64))> =
            map.range(..b).rev().take_while(|(_, &(end, ..))| end > a).map(|(&s, &v)| (s, v)).collect();
        for (s, (end, p, prot)) in cut {
            map.remove(&s);
            if s < a {
                map.insert(s, (a, p, prot));
            }
            if end > b {
                map.insert(b, (end, p + (b - s), prot));
            }
        }
        map.insert(a, (b, pa, op.prot));
    }
    let mut runs = Vec::new();
    for (s, (end, pa, prot)) in map {
        let desc = Descriptor::leaf(&cfg, Level::LEAF, pa as u64, Prot(prot), false);
        push_run(
            &cfg,
            &mut runs,
            LeafRun { va: s as u64, count: ((end - s) / u128::from(page)) as u64, level: Level::LEAF, desc },
        );
    }
    Some(Expected {
        table_entries: BTreeMap::new(),
        runs,
        tables: 0,
        bug: None,
        bug_range: None,
        ops_entered: plan.ops().len() as u64,
        table_visits: 0,
        leaf_writes: 0,
        policy: Policy::Own,
        cfg,
    })
}
