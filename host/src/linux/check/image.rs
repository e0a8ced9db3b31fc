//! image: the kernel image's sections have their permissions; nothing is W+X.

use ptcheck_shared::Prot;

use super::ctx::{fail, info, unchecked, Ctx, Sections};
use crate::linux::inspection::{Finding, LinuxCheck};

/// image: the kernel's sections have their permissions, at the load address; no
/// mapping anywhere is writable and executable.
pub(crate) fn image(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    for r in &c.i.walk.runs {
        let p = r.prot(cfg);
        if p.0 & Prot::RDONLY == 0 && p.0 & Prot::PXN == 0 {
            out.push(fail(
                LinuxCheck::Image,
                format!("VA {:#x}..{:#x} -> PA {:#x} is writable and executable at EL1", r.va, r.end(cfg), r.pa(cfg)),
            ));
        }
    }
    let sec = match c.sections() {
        Ok(s) => s,
        Err(e) => {
            out.push(unchecked(LinuxCheck::Image, e));
            return;
        }
    };
    let &Sections { stext, etext, rodata, init, init_end, sdata, end, voffset, .. } = sec;
    let stext_pa = stext.wrapping_sub(voffset);
    match sec.text {
        Some(text) if text.wrapping_sub(voffset) != c.layout.kernel => out.push(fail(
            LinuxCheck::Image,
            format!(
                "_text translates to PA {:#x}, but the image was loaded at {:#x}",
                text.wrapping_sub(voffset),
                c.layout.kernel
            ),
        )),
        None if !(c.layout.kernel..c.layout.kernel + (2 << 20)).contains(&stext_pa) => out.push(fail(
            LinuxCheck::Image,
            format!(
                "_stext translates to PA {stext_pa:#x}, not within 2 MiB of the load address {:#x}",
                c.layout.kernel
            ),
        )),
        _ => {}
    }
    if !sec.derived.is_empty() {
        out.push(info(
            LinuxCheck::Image,
            format!("section boundaries derived (no CONFIG_KALLSYMS_ALL): {}", sec.derived.join(", ")),
        ));
    }
    let page = cfg.page_size();
    // (name, first VA, end VA, Some((read-only, executable)) or None for unmapped)
    type Section<'s> = (&'s str, u64, u64, Option<(bool, bool)>);
    let sections: [Section<'_>; 4] = [
        ("text", stext, etext, Some((true, true))),
        ("rodata", rodata, init, Some((true, false))),
        ("init", init, init_end, None),
        ("data/bss", sdata, end, Some((false, false))),
    ];
    for (name, s, e, want) in sections {
        let (s, e) = (s / page * page, e.next_multiple_of(page));
        let mut problems: Vec<String> = Vec::new();
        let mut va = s;
        while va < e {
            let t = c.i.walk.at(cfg, va);
            let got = t.map(|t| (t.prot.0 & Prot::RDONLY != 0, t.prot.0 & Prot::PXN == 0, t.pa));
            let ok = match (want, got) {
                (None, None) => true,
                (Some((ro, x)), Some((gro, gx, pa))) => ro == gro && x == gx && pa == va.wrapping_sub(voffset),
                _ => false,
            };
            if !ok && problems.len() < 3 {
                problems.push(match got {
                    None => format!("{va:#x} unmapped"),
                    Some((ro, x, pa)) => {
                        format!("{va:#x} -> {pa:#x} {}{}", if ro { "RO" } else { "RW" }, if x { " X" } else { " NX" })
                    }
                });
            }
            va += page;
        }
        if !problems.is_empty() {
            let want = match want {
                None => "unmapped".to_string(),
                Some((ro, x)) => {
                    format!("{}{} at VA - {voffset:#x}", if ro { "RO" } else { "RW" }, if x { " X" } else { " NX" })
                }
            };
            out.push(fail(LinuxCheck::Image, format!("{name} {s:#x}..{e:#x} must be {want}: {}", problems.join(", "))));
        }
    }
}
