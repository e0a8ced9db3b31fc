//! `ordering`: every table is allocated once from the pool, cleared, followed by a
//! barrier, then linked once, from the level above its own; no folded level's fixmap
//! slot is used. Judged from the builder's per-table trace (`TableRecord`).

use std::collections::HashMap;

use ptcheck_shared::abi::TableRecord;
use ptcheck_shared::{Descriptor, Level, LinuxLevel};

use super::check::{op_name, Check, Ctx};

/// The `ordering` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { cfg, plan, walk: w, result: r, .. } = *cx;
    let page = cfg.page_size();
    let in_pool = |pa: u64| {
        plan.pool().iter().any(|p| pa >= p.base && pa.checked_add(page).is_some_and(|e| e <= p.base + p.size))
    };
    for (slot, &n) in r.fixmap_sets.iter().enumerate() {
        let Some(level) = LinuxLevel::from_u8(slot as u8) else { continue };
        if n > 0 && cfg.is_folded(level) {
            let name = level.name();
            c.fail(format!(
                "fixmap slot of {name} used {n} times, but {name} is folded in {cfg} (its accessor is NULL)"
            ));
        }
    }
    for f in r.faults() {
        let slot = LinuxLevel::from_u8(f.slot as u8).map_or("?", |s| s.name());
        c.fail(format!("access through the {slot} fixmap slot faulted at {:#x}", f.addr));
    }
    let mut by_pa: HashMap<u64, &TableRecord> = HashMap::with_capacity(r.tables().len());
    for t in r.tables() {
        let name = format!("table {:#x}", t.pa);
        if by_pa.insert(t.pa, t).is_some() {
            c.fail(format!("{name} allocated twice ({})", op_name(t.op)));
        }
        if !in_pool(t.pa) || !t.pa.is_multiple_of(page) {
            c.fail(format!("{name} is not a page of the pool"));
        }
        let own = LinuxLevel::from_u8(t.linux_level).and_then(|l| cfg.hw_level(l));
        let need = own.map_or(page, |l| cfg.table_bytes(l));
        let zeroed = t.seq_zero != 0 && t.zero_bytes as u64 >= need;
        if t.seq_zero != 0 && (t.zero_bytes as u64) < need {
            c.fail(format!("{name}: only {} of {need} bytes zeroed", t.zero_bytes));
        }
        if t.linux_level == u8::MAX {
            // A builder that links its tables itself (no trace of it): allocated once
            // from the pool and cleared is what it owes.
            if t.seq_zero == 0 {
                c.fail(format!("{name} was handed out without being cleared"));
            }
            continue;
        }
        if t.pa == r.root_pa {
            if t.links > 0 {
                c.fail(format!("root {name} was linked into another table"));
            }
            if !(zeroed && t.seq_barrier != 0) {
                c.fail(format!("root {name} was not zeroed and barriered"));
            }
            continue;
        }
        if t.links == 0 {
            c.fail(format!("{name} allocated but never linked"));
            continue;
        }
        let linked_by = op_name(t.op);
        if t.seq_zero == 0 || t.seq_zero > t.seq_link {
            c.fail(format!("{linked_by}: {name} linked before it was zeroed"));
        } else if t.seq_barrier == 0 || t.seq_barrier > t.seq_link {
            c.fail(format!("{linked_by}: {name} linked with no barrier after zeroing"));
        }
        if t.links > 1 {
            c.fail(format!("{name} linked {} times", t.links));
        }
        let target = Descriptor(t.link_value).address(cfg);
        if target != t.pa {
            c.fail(format!("{linked_by}: the descriptor linking {name} points at {target:#x}"));
        }
        let parent = LinuxLevel::from_u8(t.link_slot).and_then(|l| cfg.hw_level(l));
        if let (Some(p), Some(own)) = (parent, own) {
            if p.next() != own {
                c.fail(format!("{name} allocated for {own} linked from a {p} entry"));
            }
        }
    }
    for t in &w.tables {
        let record = by_pa.get(&t.pa);
        if record.is_some_and(|a| a.linux_level == u8::MAX) {
            continue; // allocated for no particular level
        }
        let level = record.map(|a| LinuxLevel::from_u8(a.linux_level).and_then(|l| cfg.hw_level(l)));
        match level {
            None => {
                c.fail(format!("{} table at {:#x} (VA {:#x}) was not allocated from the pool", t.level, t.pa, t.va))
            }
            Some(l) if l != Some(t.level) => c.fail(format!(
                "table {:#x} allocated for {} but used at {}",
                t.pa,
                l.map_or("?".into(), |l: Level| l.to_string()),
                t.level
            )),
            _ => {}
        }
    }
}
