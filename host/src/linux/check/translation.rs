//! translation: the linear map is exactly the layout's RAM, at one offset.

use ptcheck_shared::Prot;

use super::ctx::{fail, info, linear_end, memstart_align, normalise, page_offset, subtract, Ctx};
use crate::linux::inspection::{Finding, LinuxCheck};
use crate::linux::layout::Range;

/// translation: the linear map is exactly the layout's RAM at VA = PA + offset.
pub(crate) fn translation(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    let Some(offset) = c.offset else {
        out.push(fail(LinuxCheck::Translation, "nothing is mapped in the linear region".into()));
        return;
    };
    let shift = offset_shift(c, offset, out);
    let alias = c.kernel_alias_pa();
    // With rodata=full the kernel makes the linear alias of a read-only vmalloc
    // mapping (module or BPF text, trampolines) read-only too: a read-only linear page
    // must be such an alias, i.e. mapped read-only outside the linear region as well.
    let ro_elsewhere = normalise(
        c.i.walk
            .runs
            .iter()
            .filter(|r| !(r.va >= page_offset(cfg) && r.va < linear_end(cfg)) && r.prot(cfg).0 & Prot::RDONLY != 0)
            .map(|r| Range { start: r.pa(cfg), end: r.pa(cfg) + r.bytes(cfg) as u64 })
            .collect(),
    );
    let (mut ro_aliases, mut mapped) = (0u64, Vec::new());
    let mut bad = 0;
    for r in c.linear_runs() {
        let pa = r.pa(cfg);
        let len = r.bytes(cfg) as u64;
        let p = r.prot(cfg);
        let end = r.end(cfg) as u64;
        if r.va.wrapping_sub(pa) != offset {
            bad += 1;
            if bad <= 5 {
                out.push(fail(
                    LinuxCheck::Translation,
                    format!(
                        "linear VA {:#x}..{end:#x} maps PA {pa:#x}, expected {:#x}",
                        r.va,
                        r.va.wrapping_sub(offset)
                    ),
                ));
            }
            continue;
        }
        mapped.push(Range { start: pa, end: pa + len });
        let run_pa = Range { start: pa, end: pa + len };
        let ro_alias = alias.is_some_and(|a| a.overlaps(&run_pa));
        let aliased_elsewhere = subtract(&[run_pa], &ro_elsewhere).is_empty();
        if p.0 & Prot::RDONLY != 0 && !ro_alias && aliased_elsewhere {
            ro_aliases += len / cfg.page_size();
        }
        let wrong = attributes_wrong(c, p, ro_alias, aliased_elsewhere);
        if !wrong.is_empty() {
            bad += 1;
            if bad <= 5 {
                out.push(fail(
                    LinuxCheck::Translation,
                    format!("linear VA {:#x}..{end:#x}: {}", r.va, wrong.join(", ")),
                ));
            }
        }
    }
    let mapped = normalise(mapped);
    for extra in subtract(&mapped, &c.ram).iter().take(5) {
        out.push(fail(
            LinuxCheck::Translation,
            format!("PA {extra} is mapped in the linear region but is not RAM the DTB gives (hole or no-map)"),
        ));
    }
    let kfence = c.kfence_pa().into_iter().collect::<Vec<_>>();
    let missing = subtract(&subtract(&c.ram, &mapped), &kfence);
    for m in missing.iter().take(5) {
        out.push(fail(LinuxCheck::Translation, format!("RAM {m} is not in the linear map")));
    }
    if bad > 5 {
        out.push(fail(LinuxCheck::Translation, format!("... {bad} wrong linear runs in all")));
    }
    out.push(info(
        LinuxCheck::Translation,
        format!(
            "linear map: {} MiB in {} ranges at offset {offset:#x}{}",
            mapped.iter().map(Range::len).sum::<u64>() >> 20,
            mapped.len(),
            if shift != 0 { format!(" (KASLR moved it up {shift:#x})") } else { String::new() }
        ) + &if ro_aliases > 0 {
            format!("; {ro_aliases} read-only pages, each the alias of a read-only vmalloc mapping (rodata=full)")
        } else {
            String::new()
        },
    ));
}

/// The linear map's offset against the one the layout predicts (PAGE_OFFSET less the
/// aligned start of RAM; with KASLR, a whole number of alignment steps above it):
/// failures into `out`, the shift KASLR applied returned.
fn offset_shift(c: &Ctx<'_>, offset: u64, out: &mut Vec<Finding>) -> u64 {
    let cfg = &c.cfg;
    let lowest = c.ram.first().map_or(0, |r| r.start);
    let align = memstart_align(cfg);
    let plain = page_offset(cfg).wrapping_sub(lowest / align * align);
    let shift = offset.wrapping_sub(plain);
    if c.layout.kaslr_seed.is_none() && shift != 0 {
        out.push(fail(
            LinuxCheck::Translation,
            format!(
                "linear map offset {offset:#x}, expected PAGE_OFFSET {:#x} - memstart {:#x} = {plain:#x} (nokaslr)",
                page_offset(cfg),
                lowest / align * align
            ),
        ));
    } else if !shift.is_multiple_of(align) || shift > (1 << (cfg.va_bits - 1)) {
        out.push(fail(
            LinuxCheck::Translation,
            format!("linear map offset {offset:#x} is {shift:#x} above {plain:#x}: not a KASLR step of {align:#x}"),
        ));
    }
    shift
}

/// What is wrong with a linear run's attributes `p`: Normal memory, never executable,
/// writable unless it is the kernel image's alias (`ro_alias`) or the alias of a
/// read-only mapping elsewhere (`ro_elsewhere`: rodata=full).
fn attributes_wrong(c: &Ctx<'_>, p: Prot, ro_alias: bool, ro_elsewhere: bool) -> Vec<&'static str> {
    let mut wrong = Vec::new();
    if !c.is_normal(p) {
        wrong.push("not Normal memory");
    }
    if p.0 & Prot::PXN == 0 || p.0 & Prot::UXN == 0 {
        wrong.push("executable");
    }
    if p.0 & Prot::RDONLY != 0 && !ro_alias && !ro_elsewhere {
        wrong.push("read-only, and not the alias of a read-only mapping elsewhere");
    }
    if p.0 & Prot::RDONLY == 0 && ro_alias {
        wrong.push("writable alias of kernel text/rodata");
    }
    wrong
}
