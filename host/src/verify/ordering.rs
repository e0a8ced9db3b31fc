//! `ordering`: every table is allocated once from the pool, zeroed, followed by a
//! barrier, then linked once at one level; no folded level's fixmap slot is used.

use std::collections::{BTreeMap, HashMap};

use ptcheck_shared::abi::EventKind;
use ptcheck_shared::{Descriptor, Level, LinuxLevel};

use super::check::{op_name, Check, Ctx};

#[derive(Default)]
struct TableLife {
    slot: Option<LinuxLevel>,
    zeroed: bool,
    barrier: bool,
    linked: usize,
}

/// The `ordering` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { cfg, plan, walk: w, result: r, .. } = *cx;
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
