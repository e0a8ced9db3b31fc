//! `hw_probe`: three views of every probed page must agree: the plan's expectation,
//! the host walker's answer, and the MMU's (`AT S1E1R`/`AT S1E1W` in PAR_EL1, and the
//! tag word loaded through the mapping).

use ptcheck_shared::abi::layout::{in_tag_region, tag, MAIR_EL1};
use ptcheck_shared::abi::{ProbeRecord, RunResult, PAR_PA_MASK};
use ptcheck_shared::Prot;

use super::check::{Check, Ctx};
use crate::walker::Translation;

/// FSC of a translation fault at any level (0x2b is level -1, with LPA2).
fn is_translation_fault(fsc: u64) -> bool {
    (0x04..=0x07).contains(&fsc) || fsc == 0x2b
}

fn mair_attr(prot: Prot) -> u64 {
    (MAIR_EL1 >> (8 * prot.attr_index())) & 0xff
}

/// PAR_EL1 in words.
fn show_par(par: u64) -> String {
    if par & 1 == 0 {
        format!("PA {:#x} attr {:#04x}", par & PAR_PA_MASK, par >> 56)
    } else {
        format!("fault ({})", crate::esr::fault_status((par >> 1) & 0x3f))
    }
}

fn show(t: Option<Translation>) -> String {
    t.map_or("unmapped".into(), |t| format!("PA {:#x} prot {:#x}", t.pa, t.prot.0))
}

/// The `hw_probe` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { cfg, plan, exp, walk: w, result: r, .. } = *cx;
    if r.hw_flags & RunResult::HW_UNSUPPORTED != 0 {
        return; // reported as hw_unsupported, never as probed
    }
    if r.hw_flags & RunResult::HW_PROBED == 0 {
        c.fail(format!("{} probes requested, but the guest did not run them", plan.n_probes));
        return;
    }
    if r.probes().len() != plan.probes().len() {
        c.fail(format!("{} probes requested, {} recorded", plan.probes().len(), r.probes().len()));
    }
    let page = cfg.page_size();
    for (rec, &va) in r.probes().iter().zip(plan.probes()) {
        let ProbeRecord { par, par_w, loaded, flags, .. } = *rec;
        let (want, walked) = (exp.at(cfg, va), w.at(cfg, va));
        let mmu = (par & 1 == 0).then_some(par & PAR_PA_MASK | (va & 0xfff));
        let mut problems = Vec::new();
        if rec.va != va {
            problems.push(format!("record is for VA {:#x}", rec.va));
        }
        if want != walked {
            problems.push("the host walker disagrees with the plan".to_string());
        }
        match want {
            None => {
                if par & 1 == 0 || !is_translation_fault((par >> 1) & 0x3f) {
                    problems.push("the MMU does not give a translation fault".into());
                }
            }
            Some(t) => {
                if mmu != Some(t.pa) {
                    problems.push("the MMU translates elsewhere".into());
                } else if par >> 56 != mair_attr(t.prot) {
                    problems.push(format!("memory attributes {:#04x}, expected {:#04x}", par >> 56, mair_attr(t.prot)));
                }
                let writable = t.prot.0 & Prot::RDONLY == 0;
                if writable != (par_w & 1 == 0) {
                    problems.push(format!(
                        "AT S1E1W says {}, expected {}",
                        show_par(par_w),
                        if writable { "writable" } else { "read-only" }
                    ));
                }
                let page_pa = t.pa & !(page - 1);
                if in_tag_region(page_pa) && mmu == Some(t.pa) {
                    if flags & ProbeRecord::LOADED == 0 {
                        problems.push("the tag was not loaded".into());
                    } else if loaded != tag(page_pa) {
                        problems.push(format!("loaded {loaded:#x} through the mapping, tag is {:#x}", tag(page_pa)));
                    }
                }
            }
        }
        if !problems.is_empty() {
            c.fail(format!(
                "VA {va:#x}: {} — plan: {}; walker: {}; MMU: {}",
                problems.join(", "),
                show(want),
                show(walked),
                show_par(par)
            ));
        }
    }
}
