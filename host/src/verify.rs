//! The verifier: runs every check on one plan's outcome and says, by name, which failed
//! and where.
//!
//! | check        | what must hold |
//! |--------------|----------------|
//! | `result`     | the run ended as the model says: finished, or the exact expected BUG |
//! | `translation`| every mapped VA gives the expected PA and attributes; nothing else is mapped |
//! | `policy`     | block / contiguous / page choice and table count exactly as Linux would make them |
//! | `zeroing`    | every entry not expected to be valid is exactly 0; unallocated pool pages still hold poison |
//! | `ordering`   | every table: allocated once from the pool, zeroed, barrier, then linked once at one level; no folded level's fixmap used |
//! | `table_bits` | UXNTable on every table descriptor, PXNTable exactly with NO_EXEC_MAPPINGS |
//! | `hw_probe`   | (VM backends) the MMU's `AT` result and the word loaded through each probed page agree with the plan and the walker |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use ptcheck_shared::abi::{BugKind, EventKind, Plan, RunResult, Status, RESULT_MAGIC};
use ptcheck_shared::descriptor::DescriptorKind;
use ptcheck_shared::{Descriptor, Level, LinuxLevel, Prot, TranslationConfig};

use crate::backend::{PhysMemory, RunView};
use crate::expect::{expected, Expected, ModelEntry};
use crate::walker::{walk, Walk};
use crate::{esr, POISON};

/// Names of the checks, in report order.
pub const CHECKS: [&str; 6] = ["result", "translation", "policy", "zeroing", "ordering", "table_bits"];

/// Failures kept per check (the count of the rest is still reported).
const MAX_MESSAGES: usize = 6;

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// One of [`CHECKS`].
    pub name: &'static str,
    /// Empty when the check passed.
    pub failures: Vec<String>,
    /// Failures beyond those kept.
    pub more: usize,
}

impl Check {
    /// A passing check called `name`.
    pub fn new(name: &'static str) -> Self {
        Check { name, failures: Vec::new(), more: 0 }
    }

    /// Record a failure.
    pub fn fail(&mut self, msg: impl Into<String>) {
        if self.failures.len() < MAX_MESSAGES {
            self.failures.push(msg.into());
        } else {
            self.more += 1;
        }
    }

    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Every check's outcome for one plan.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// In [`CHECKS`] order (backends may append more, e.g. `hw_probe`).
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    /// The check called `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Names of the failed checks.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks.iter().filter(|c| !c.passed()).map(|c| c.name).collect()
    }

    /// Multi-line description of every failure.
    pub fn describe_failures(&self) -> String {
        let mut s = String::new();
        for c in self.checks.iter().filter(|c| !c.passed()) {
            for f in &c.failures {
                let _ = writeln!(s, "  [{}] {f}", c.name);
            }
            if c.more > 0 {
                let _ = writeln!(s, "  [{}] ... and {} more", c.name, c.more);
            }
        }
        s
    }
}

fn bug_name(kind: u32) -> String {
    BugKind::from_u32(kind).map_or_else(|| format!("unknown BUG kind {kind}"), |k| format!("{k:?}"))
}

fn op_name(op: u32) -> String {
    if op == u32::MAX {
        "root creation".into()
    } else {
        format!("op {op}")
    }
}

fn describe_leaf(level: Level, d: Descriptor, cfg: &TranslationConfig) -> String {
    let shape = match (level == Level::LEAF, d.is_contiguous()) {
        (true, false) => "page",
        (true, true) => "page (cont)",
        (false, false) => "block",
        (false, true) => "block (cont)",
    };
    format!("{level} {shape} -> {:#x} prot {:#x}", d.address(cfg) & !(cfg.entry_span(level) - 1), d.prot(cfg).0)
}

/// Check one run of `plan`.
pub fn verify(plan: &Plan, view: &RunView<'_>) -> Verdict {
    let Some(exp) = expected(plan) else {
        let mut checks: Vec<Check> = CHECKS.iter().map(|&n| Check::new(n)).collect();
        checks[0].fail("the plan itself is malformed (magic, version or config)");
        return Verdict { checks };
    };
    verify_with(plan, &exp, view).0
}

/// Check one run of `plan` against its expected state `exp`; also returns the walk
/// of the tables every check used (empty when there is no root).
pub fn verify_with(plan: &Plan, exp: &Expected, view: &RunView<'_>) -> (Verdict, Walk) {
    let r = view.result;
    let mut checks: Vec<Check> = CHECKS.iter().map(|&n| Check::new(n)).collect();
    let Some(cfg) = plan.config() else {
        checks[0].fail("the plan itself is malformed (magic, version or config)");
        return (Verdict { checks }, Walk::default());
    };
    if r.magic != RESULT_MAGIC || r.plan_id != plan.plan_id {
        checks[0].fail(format!(
            "no result for this plan in the result area (magic {:#x}, plan id {} vs {})",
            r.magic, r.plan_id, plan.plan_id
        ));
        return (Verdict { checks }, Walk::default());
    }
    check_result(&cfg, r, exp, &mut checks[0]);
    let w = if r.root_pa != 0 { walk(&cfg, r.root_pa, view.ram) } else { Walk::default() };
    let in_bug = |va: u64, size: u64| {
        exp.bug_range.is_some_and(|(s, e)| {
            let (s, e, va) = (u128::from(s), if e == 0 { 1u128 << 64 } else { u128::from(e) }, u128::from(va));
            va < e && va + u128::from(size) > s
        })
    };
    let [_, translation, policy, zeroing, ordering, table_bits] = &mut checks[..] else { unreachable!() };
    check_translation(&cfg, exp, &w, &in_bug, translation);
    check_policy(&cfg, exp, &w, r, &in_bug, policy);
    check_zeroing(&cfg, plan, exp, &w, r, view.ram, &in_bug, zeroing);
    check_ordering(&cfg, plan, &w, r, ordering);
    check_table_bits(exp, &w, table_bits);
    // The MMU view exists only if the guest got as far as probing: a crash or hang
    // is the `result` check's failure, not a disagreement of the MMU.
    if plan.n_probes > 0 && matches!(r.status(), Some(Status::Done | Status::Bug)) {
        checks.push(crate::probes::check(&cfg, plan, exp, &w, r));
    }
    (Verdict { checks }, w)
}

fn check_result(cfg: &TranslationConfig, r: &RunResult, exp: &Expected, c: &mut Check) {
    match (r.status(), &exp.bug) {
        (Some(Status::Done), None) => {}
        (Some(Status::Done), Some(b)) => c.fail(format!(
            "expected BUG {:?} at {} (L{} VA {:#x}) but every operation was applied",
            b.kind,
            op_name(b.op),
            b.level,
            b.va
        )),
        (Some(Status::Bug), None) => c.fail(format!(
            "unexpected BUG {} at {} (L{} VA {:#x}, old {:#x}, new {:#x})",
            bug_name(r.bug.kind),
            op_name(r.bug.op),
            r.bug.level,
            r.bug.va,
            r.bug.old,
            r.bug.new
        )),
        (Some(Status::Bug), Some(b)) => {
            let a = &r.bug;
            let old_ok = match b.old {
                Some(old) => a.old == old,
                None => Descriptor(a.old).kind(cfg, Level(a.level as i8)) == DescriptorKind::Table,
            };
            if a.kind != b.kind as u32
                || a.op != b.op
                || a.level != b.level
                || a.va != b.va
                || !old_ok
                || a.new != b.new
            {
                c.fail(format!(
                    "BUG record differs: expected {:?} at {} L{} VA {:#x} old {} new {:#x}; got {} at {} L{} VA {:#x} old {:#x} new {:#x}",
                    b.kind, op_name(b.op), b.level, b.va,
                    b.old.map_or("<a table>".into(), |o| format!("{o:#x}")), b.new,
                    bug_name(a.kind), op_name(a.op), a.level, a.va, a.old, a.new
                ));
            }
        }
        (Some(Status::Exception), _) => c.fail(format!(
            "guest exception during {}: {} at FAR {:#x}, ELR {:#x}",
            op_name(r.exception.op),
            esr::describe(r.exception.esr),
            r.exception.far,
            r.exception.elr
        )),
        (Some(Status::BadPlan), _) => c.fail("the guest rejected the plan (magic, version or config)"),
        (Some(Status::Running), _) => {
            c.fail(format!("the run never finished ({} of the operations applied)", r.ops_done))
        }
        (None, _) => c.fail(format!("result status {} is not a status", r.status)),
    }
}

/// Maximal runs (va, end, pa, prot) of a leaf list, merged where VA and PA continue.
fn runs(items: impl Iterator<Item = (u64, u64, u64, Prot)>) -> Vec<(u128, u128, u128, Prot)> {
    let mut out: Vec<(u128, u128, u128, Prot)> = Vec::new();
    for (va, size, pa, prot) in items {
        let (va, pa) = (u128::from(va), u128::from(pa));
        if let Some(last) = out.last_mut() {
            if last.1 == va && last.2 + (last.1 - last.0) == pa && last.3 == prot {
                last.1 += u128::from(size);
                continue;
            }
        }
        out.push((va, va + u128::from(size), pa, prot));
    }
    out
}

fn check_translation(
    cfg: &TranslationConfig,
    exp: &Expected,
    w: &Walk,
    in_bug: &dyn Fn(u64, u64) -> bool,
    c: &mut Check,
) {
    let want = runs(exp.leaves().into_iter().filter_map(|(va, level, d)| {
        let size = cfg.entry_span(level);
        (!in_bug(va, size)).then(|| (va, size, d.address(cfg), d.prot(cfg)))
    }));
    let got = runs(w.leaves.iter().filter(|l| !in_bug(l.va, l.size)).map(|l| (l.va, l.size, l.pa, l.desc.prot(cfg))));
    if want != got {
        let i = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
        let show = |r: Option<&(u128, u128, u128, Prot)>| {
            r.map_or("nothing".to_string(), |r| {
                format!("VA {:#x}..{:#x} -> PA {:#x} prot {:#x}", r.0, r.1, r.2, r.3 .0)
            })
        };
        c.fail(format!("first difference: expected {}, tables map {}", show(want.get(i)), show(got.get(i))));
    }
    for a in &w.anomalies {
        c.fail(format!("{} at L{} VA {:#x} (entry {:#x} = {:#x})", a.what, a.level.0, a.va, a.entry_pa, a.value));
    }
}

fn check_policy(
    cfg: &TranslationConfig,
    exp: &Expected,
    w: &Walk,
    r: &RunResult,
    in_bug: &dyn Fn(u64, u64) -> bool,
    c: &mut Check,
) {
    let want: Vec<_> = exp.leaves().into_iter().filter(|&(va, l, _)| !in_bug(va, cfg.entry_span(l))).collect();
    let got: Vec<_> = w.leaves.iter().filter(|l| !in_bug(l.va, l.size)).map(|l| (l.va, l.level, l.desc)).collect();
    let shape =
        |v: &[(u64, Level, Descriptor)]| v.iter().map(|&(va, l, d)| (va, l, d.is_contiguous())).collect::<Vec<_>>();
    let (ws, gs) = (shape(&want), shape(&got));
    if ws != gs {
        let i = ws.iter().zip(&gs).take_while(|(a, b)| a == b).count();
        let show = |v: &[(u64, Level, Descriptor)]| {
            v.get(i).map_or("nothing".into(), |&(va, l, d)| format!("VA {va:#x}: {}", describe_leaf(l, d, cfg)))
        };
        c.fail(format!("leaf {i} differs: Linux policy makes {}, tables have {}", show(&want), show(&got)));
    }
    if r.status() == Some(Status::Done) && r.n_allocs as usize != exp.tables {
        c.fail(format!("{} tables allocated; the policy needs {}", r.n_allocs, exp.tables));
    }
}

#[allow(clippy::too_many_arguments)]
fn check_zeroing(
    cfg: &TranslationConfig,
    plan: &Plan,
    exp: &Expected,
    w: &Walk,
    r: &RunResult,
    ram: &dyn PhysMemory,
    in_bug: &dyn Fn(u64, u64) -> bool,
    c: &mut Check,
) {
    for a in &w.nonzero_invalid {
        c.fail(format!(
            "L{} entry at {:#x} (VA {:#x}) is {:#x}: neither valid nor zero",
            a.level.0, a.entry_pa, a.va, a.value
        ));
    }
    // A reserved encoding is not a valid expected entry either: it must have been 0.
    for a in w.anomalies.iter().filter(|a| a.what.starts_with("reserved")) {
        c.fail(format!(
            "L{} entry at {:#x} (VA {:#x}) is {:#x}: a reserved encoding, not zero",
            a.level.0, a.entry_pa, a.va, a.value
        ));
    }
    for l in w.leaves.iter().filter(|l| !in_bug(l.va, l.size)) {
        if !exp.entries.contains_key(&(l.level, l.va)) {
            c.fail(format!("L{} VA {:#x}: valid entry {:#x} that no operation asked for", l.level.0, l.va, l.desc.0));
        }
    }
    for t in w.tables.iter().skip(1) {
        let key = (Level(t.level.0 - 1), t.va);
        if !matches!(exp.entries.get(&key), Some(ModelEntry::Table { .. })) && !in_bug(t.va, cfg.entry_span(key.0)) {
            c.fail(format!(
                "L{} VA {:#x}: table descriptor {:#x} that no operation needed",
                key.0 .0, t.va, t.parent_desc.0
            ));
        }
    }
    let allocated: HashSet<u64> = r.allocs().iter().map(|a| a.pa).collect();
    let page = cfg.page_size();
    let mut words = vec![0u64; (page / 8) as usize];
    for range in plan.pool() {
        let mut pa = range.base.next_multiple_of(page);
        while pa + page <= range.base + range.size {
            if !allocated.contains(&pa) {
                let first_bad =
                    if ram.read_words(pa, &mut words) { words.iter().position(|&w| w != POISON) } else { Some(0) };
                if let Some(i) = first_bad {
                    c.fail(format!("pool page {pa:#x} was never allocated but was written (offset {:#x})", i * 8));
                }
            }
            pa += page;
        }
    }
}

#[derive(Default)]
struct TableLife {
    slot: Option<LinuxLevel>,
    zeroed: bool,
    barrier: bool,
    linked: usize,
}

fn check_ordering(cfg: &TranslationConfig, plan: &Plan, w: &Walk, r: &RunResult, c: &mut Check) {
    if r.events_total as usize > r.n_events as usize {
        c.fail(format!("event trace truncated: {} events, {} kept", r.events_total, r.n_events));
    }
    let page = cfg.page_size();
    let in_pool = |pa: u64| plan.pool().iter().any(|p| pa >= p.base && pa + page <= p.base + p.size);
    let mut life: BTreeMap<u64, TableLife> = BTreeMap::new();
    let mut unbarriered: Vec<u64> = Vec::new();
    for e in r.events() {
        let slot = LinuxLevel::from_u8(e.slot as u8);
        let slot_name = slot.map_or("?", |s| s.name());
        match EventKind::from_u16(e.kind) {
            Some(EventKind::Alloc) => {
                if life.contains_key(&e.pa) {
                    c.fail(format!("table {:#x} allocated twice ({})", e.pa, op_name(e.op)));
                }
                if !in_pool(e.pa) || e.pa % page != 0 {
                    c.fail(format!("table {:#x} is not a page of the pool", e.pa));
                }
                life.insert(e.pa, TableLife { slot, ..Default::default() });
            }
            Some(EventKind::FixmapSet) => {
                if slot.is_none_or(|s| cfg.is_folded(s)) {
                    c.fail(format!(
                        "{}: fixmap slot of {slot_name} used, but {slot_name} is folded in {cfg} (its accessor is NULL)",
                        op_name(e.op)
                    ));
                }
            }
            Some(EventKind::Zero) => match life.get_mut(&e.pa) {
                Some(t) if t.linked > 0 => {
                    c.fail(format!("table {:#x} zeroed after it was linked ({})", e.pa, op_name(e.op)))
                }
                Some(t) => {
                    let need = t.slot.and_then(|s| cfg.hw_level(s)).map_or(page, |l| cfg.table_bytes(l));
                    if e.value < need {
                        c.fail(format!("table {:#x}: only {} of {need} bytes zeroed", e.pa, e.value));
                    }
                    t.zeroed = true;
                    unbarriered.push(e.pa);
                }
                None => c.fail(format!("zeroed {:#x}, which is not an allocated table ({})", e.pa, op_name(e.op))),
            },
            Some(EventKind::Barrier) => {
                for pa in unbarriered.drain(..) {
                    if let Some(t) = life.get_mut(&pa) {
                        t.barrier = true;
                    }
                }
            }
            Some(EventKind::Link) => {
                let target = Descriptor(e.value).address(cfg);
                let parent_level = slot.and_then(|s| cfg.hw_level(s));
                match life.get_mut(&target) {
                    None => c.fail(format!(
                        "{}: linked {target:#x}, which was never allocated from the pool",
                        op_name(e.op)
                    )),
                    Some(t) => {
                        if !t.zeroed {
                            c.fail(format!("{}: table {target:#x} linked before it was zeroed", op_name(e.op)));
                        } else if !t.barrier {
                            c.fail(format!(
                                "{}: table {target:#x} linked with no barrier after zeroing",
                                op_name(e.op)
                            ));
                        }
                        t.linked += 1;
                        if t.linked == 2 {
                            c.fail(format!("table {target:#x} linked twice"));
                        }
                        let own = t.slot.and_then(|s| cfg.hw_level(s));
                        if let (Some(p), Some(own)) = (parent_level, own) {
                            if p.next() != own {
                                c.fail(format!("table {target:#x} allocated for {own} linked from a {p} entry"));
                            }
                        }
                    }
                }
            }
            Some(EventKind::Fault) => {
                c.fail(format!("access through the {slot_name} fixmap slot faulted at {:#x}", e.pa));
            }
            Some(EventKind::FixmapClear) => {}
            None => c.fail(format!("unknown trace event kind {}", e.kind)),
        }
    }
    for (&pa, t) in &life {
        if pa == r.root_pa {
            if t.linked > 0 {
                c.fail(format!("root table {pa:#x} was linked into another table"));
            }
            if !(t.zeroed && t.barrier) {
                c.fail(format!("root table {pa:#x} was not zeroed and barriered"));
            }
        } else if t.linked == 0 && r.events_total as usize <= r.n_events as usize {
            c.fail(format!("table {pa:#x} allocated but never linked"));
        }
    }
    let alloc_level: HashMap<u64, Option<Level>> = r
        .allocs()
        .iter()
        .map(|a| (a.pa, LinuxLevel::from_u8(a.linux_level as u8).and_then(|l| cfg.hw_level(l))))
        .collect();
    for t in &w.tables {
        match alloc_level.get(&t.pa) {
            None => {
                c.fail(format!("{} table at {:#x} (VA {:#x}) was not allocated from the pool", t.level, t.pa, t.va))
            }
            Some(&l) if l != Some(t.level) => {
                c.fail(format!("table {:#x} allocated for {:?} but used at {}", t.pa, l, t.level))
            }
            _ => {}
        }
    }
}

fn check_table_bits(exp: &Expected, w: &Walk, c: &mut Check) {
    for t in w.tables.iter().skip(1) {
        if let Some(ModelEntry::Table { attrs, op }) = exp.entries.get(&(Level(t.level.0 - 1), t.va)) {
            let got = t.parent_desc.table_attrs();
            if got != *attrs {
                c.fail(format!(
                    "table descriptor for {} table at VA {:#x} (made by {}): table bits {got:#x}, expected {attrs:#x} (UXNTable{})",
                    t.level,
                    t.va,
                    op_name(*op),
                    if attrs & Descriptor::PXN_TABLE != 0 { " + PXNTable" } else { "" }
                ));
            }
        }
    }
}
