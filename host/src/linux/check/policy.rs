//! policy: the linear map's shape is what ptcheck's Linux-policy model predicts.

use ptcheck_shared::abi::{MapFlags, MapOp, Plan};
use ptcheck_shared::{Level, Prot, TranslationConfig};

use super::ctx::{fail, info, linear_end, normalise, page_offset, subtract, unchecked, Ctx};
use crate::linux::inspection::{Finding, LinuxCheck};
use crate::linux::layout::Range;
use crate::runs::LeafRun;

/// The flags the kernel maps memblock ranges with, from its own variables:
/// page-granular (`NO_BLOCK | NO_CONT`) when `rodata_full`, or when KFENCE is built in
/// without an early pool in use (`kfence_early_init`: before 6.4 there is none and
/// KFENCE always forces pages; after, only `kfence.sample_interval=0` does).
fn linear_flags(c: &Ctx<'_>) -> Result<(u64, String), String> {
    let (rodata_full, assumed) = match c.read_kernel_u8("rodata_full") {
        Some(v) => (v != 0, ""),
        // Not listed (no CONFIG_KALLSYMS_ALL): the command line decides, with
        // CONFIG_RODATA_FULL_DEFAULT_ENABLED (default y) for the default.
        None => (!c.layout.cmdline.rodata_on(), ", rodata_full assumed from the command line"),
    };
    let kfence_built = c.facts.sym("__kfence_pool").is_some() || c.facts.sym("__kfence_alloc").is_some();
    let early_pool = match c.read_kernel_u8("kfence_early_init") {
        Some(v) => v != 0,
        None if kfence_built && c.facts.sym("parse_kfence_early_init").is_some() => {
            return Err(
                "this kernel has an early KFENCE pool but does not list kfence_early_init (CONFIG_KALLSYMS_ALL)".into(),
            );
        }
        None => false,
    };
    let pages = rodata_full || (kfence_built && !early_pool);
    let why = if rodata_full {
        "rodata_full"
    } else if pages && c.facts.sym("kfence_early_init").is_none() {
        "KFENCE built in, no early pool (a pre-6.4 kernel)"
    } else if pages {
        "KFENCE built in, no pool (kfence.sample_interval=0)"
    } else {
        "rodata=on with blocks allowed"
    };
    let flags =
        MapFlags::NO_EXEC_MAPPINGS | if pages { MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS } else { 0 };
    Ok((flags, format!("{why}{assumed}")))
}

/// The shape of a list of runs over the linear region, as (start, end, level,
/// contiguous), merged and with `skip` cut out.
fn shape(
    cfg: &TranslationConfig,
    runs: &[LeafRun],
    lo: u64,
    hi: u64,
    skip: Option<Range>,
) -> Vec<(u64, u64, i8, bool)> {
    let mut out: Vec<(u64, u64, i8, bool)> = Vec::new();
    for r in runs.iter().filter(|r| r.va >= lo && r.va < hi) {
        let (s, e) = (r.va, r.end(cfg) as u64);
        let pieces: Vec<(u64, u64)> = match skip {
            Some(k) if k.start < e && s < k.end => {
                [(s, k.start.max(s)), (k.end.min(e), e)].into_iter().filter(|(a, b)| a < b).collect()
            }
            _ => vec![(s, e)],
        };
        for (s, e) in pieces {
            let key = (r.level.0, r.desc.is_contiguous());
            match out.last_mut() {
                Some(l) if l.1 == s && (l.2, l.3) == key => l.1 = e,
                _ => out.push((s, e, key.0, key.1)),
            }
        }
    }
    out
}

/// policy: the linear map's shape equals the model's for the kernel's memblock ranges
/// (the RAM minus the image alias and the KFENCE pool, then the alias with NO_CONT).
pub(crate) fn policy(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    let (Some(offset), Some(alias)) = (c.offset, c.kernel_alias_pa()) else {
        out.push(unchecked(LinuxCheck::Policy, "no linear map, or no _text/__init_begin in /proc/kallsyms".into()));
        return;
    };
    let (flags, why) = match linear_flags(c) {
        Ok(f) => f,
        Err(e) => {
            out.push(unchecked(LinuxCheck::Policy, e));
            return;
        }
    };
    let kfence_pa = c.kfence_pa().filter(|_| c.read_kernel_u8("kfence_early_init").is_some_and(|v| v != 0));
    let page = cfg.page_size();
    let alias = Range { start: alias.start / page * page, end: alias.end.next_multiple_of(page) };
    let holes = normalise([Some(alias), kfence_pa].into_iter().flatten().collect());
    let mut plan = Plan::new(*cfg);
    plan.push_pool(0x100_0000_0000, 1 << 40);
    let op = |r: &Range, flags: u64| MapOp {
        va: r.start.wrapping_add(offset),
        pa: r.start,
        size: r.len(),
        prot: Prot::KERNEL.0,
        flags,
    };
    for r in subtract(&c.ram, &holes) {
        if !plan.push_op(op(&r, flags)) {
            out.push(unchecked(LinuxCheck::Policy, "more memblock ranges than a plan holds".into()));
            return;
        }
    }
    plan.push_op(op(&alias, MapFlags::NO_CONT_MAPPINGS));
    let expected = match crate::expect::model(&plan, 1 << 32) {
        Ok(e) => e,
        Err(e) => {
            out.push(unchecked(LinuxCheck::Policy, format!("the model refused the ranges ({e:?})")));
            return;
        }
    };
    let (lo, hi) = (page_offset(cfg), linear_end(cfg));
    let skip = c.kfence.filter(|_| kfence_pa.is_some());
    let want = shape(cfg, &expected.runs, lo, hi, skip);
    let got = shape(cfg, &c.i.walk.runs, lo, hi, skip);
    if std::env::var_os("PTCHECK_SHAPES").is_some() {
        eprintln!("kernel: {got:x?}\nmodel: {want:x?}");
    }
    let name =
        |s: &(u64, u64, i8, bool)| format!("{:#x}..{:#x} L{}{}", s.0, s.1, s.2, if s.3 { " contiguous" } else { "" });
    if let Some(k) = (0..want.len().max(got.len())).find(|&k| want.get(k) != got.get(k)) {
        out.push(fail(
            LinuxCheck::Policy,
            format!(
                "linear map shape differs from the Linux-policy model ({why}): kernel {}, model {}",
                got.get(k).map_or("nothing".into(), name),
                want.get(k).map_or("nothing".into(), name)
            ),
        ));
    } else {
        let blocks = got.iter().filter(|s| s.2 < Level::LEAF.0 || s.3).count();
        out.push(info(
            LinuxCheck::Policy,
            format!("linear map shape = model ({why}): {} stretches, {blocks} of blocks or contiguous runs", got.len()),
        ));
    }
}
