//! Where a kernel's TTBR1 regions lie, for drawing them under the walked tables: the
//! linear map, modules, vmalloc, PCI I/O and vmemmap from the arm64 VA layout of the
//! kernel's release (restated from the layout the architecture port documents, not
//! read from the kernel), the image from its symbols, and the fixmap: the
//! [`FIX_WINDOW`] below `FIXADDR_TOP` joined with the VA windows of the early
//! fixmap's leaf tables as observed (they live in the image's bss).
//!
//! Two layouts are known: before 6.9 (vmemmap placed by `VA_BITS`, 256 MiB below it
//! free) and from 6.9 (the LPA2 rework: vmemmap ends 1 GiB below the top). Modules get
//! 128 MiB before 6.5 and 2 GiB from it. A kernel built with KASAN moves the end of the
//! linear map; ptcheck's kernels have none, so that layout is not drawn.

use ptcheck_shared::{Granule, TranslationConfig};

use super::layout::Range;
use super::symbols::KernelFacts;
use crate::walker::Walk;

/// A named VA region `[start, end)` (`end` may be 2^64).
pub type Region = (String, u64, u128);

const MIB: u64 = 1 << 20;
/// How much of the fixmap is drawn below `FIXADDR_TOP`: its size depends on the
/// configuration (the FDT's slot, early ioremap's, the permanent slots); on ptcheck's
/// kernels it fits in 8 MiB. A mapping outside shows in [`outside`].
pub const FIX_WINDOW: u64 = 8 * MIB;
/// `sizeof(struct page)` on arm64 (the kernel's `STRUCT_PAGE_MAX_SHIFT` is 6).
const STRUCT_PAGE: u64 = 64;

/// `-(1 << bits)`: the bottom of a `bits`-bit TTBR1 space.
fn top_minus(bits: u32) -> u64 {
    0u64.wrapping_sub(1 << bits)
}

/// [`regions`] of a booted kernel, its bss found from its symbols and the walk.
pub fn of_kernel(cfg: &TranslationConfig, facts: &KernelFacts, walk: &Walk) -> Vec<Region> {
    let sections = super::check::find_sections(facts, super::check::image_voffset(cfg, facts, walk)).ok();
    let image = sections.as_ref().map(|s| Range { start: s.text.unwrap_or(s.stext), end: s.end });
    let bss = sections.map(|s| Range { start: s.bss.wrapping_sub(s.voffset), end: s.end.wrapping_sub(s.voffset) });
    regions(cfg, facts, walk, Image { image, bss })
}

/// Where a kernel's image is, as far as its symbols tell.
#[derive(Clone, Copy, Debug, Default)]
pub struct Image {
    /// The image's VAs (`_text` or `_stext` to `_end`).
    pub image: Option<Range>,
    /// Its bss, physical.
    pub bss: Option<Range>,
}

/// The regions of `cfg`'s TTBR1 space for a kernel of `facts`' release (unknown: the
/// newer layout), in address order; the fixmap from `walk`'s tables inside the bss.
pub fn regions(cfg: &TranslationConfig, facts: &KernelFacts, walk: &Walk, img: Image) -> Vec<Region> {
    let version = facts.version().unwrap_or((u32::MAX, 0));
    let shift = cfg.granule().page_shift();
    let (va, actual) = (cfg.kernel.va_bits(), cfg.va_bits);
    let va_min = match (va > 48, cfg.granule()) {
        (true, Granule::K16) => 47,
        (true, _) => 48,
        (false, _) => va,
    };
    let page_end = top_minus(va_min - 1);
    let linear_start = top_minus(actual);
    let modules_end = page_end + if version >= (6, 5) { 2048 * MIB } else { 128 * MIB };
    let (vmemmap, vmalloc_end, pci, fixaddr_top) = if version >= (6, 9) {
        let end = top_minus(30);
        let start = end - ((page_end - top_minus(va)) >> shift) * STRUCT_PAGE;
        // A 52-bit build on 48-bit hardware gives vmemmap's unused bottom to vmalloc:
        // what is drawn as vmemmap is the part the linear map can use.
        let used = start + ((linear_start - top_minus(va)) >> shift) * STRUCT_PAGE;
        ((used, end), used - 8 * MIB, (end + 8 * MIB, end + 24 * MIB), 0u64.wrapping_sub(8 * MIB))
    } else {
        let vshift = shift - STRUCT_PAGE.trailing_zeros();
        let start = top_minus(va - vshift);
        let end = start + ((page_end - top_minus(va)) >> vshift);
        ((start, end), start - 256 * MIB, (start - 24 * MIB, start - 8 * MIB), start - 32 * MIB)
    };
    let mut out: Vec<Region> = vec![
        ("linear map".into(), linear_start, u128::from(page_end)),
        ("modules".into(), page_end, u128::from(modules_end)),
        ("vmalloc (the image is inside)".into(), modules_end, u128::from(vmalloc_end)),
    ];
    if let Some(i) = img.image {
        out.push(("kernel image".into(), i.start, u128::from(i.end)));
    }
    let seen = fixmap_tables(cfg, walk, img.bss, vmalloc_end);
    let lo = seen.iter().map(|s| s.0).fold(fixaddr_top - FIX_WINDOW, u64::min);
    let hi = seen.iter().map(|s| s.1).fold(u128::from(fixaddr_top), u128::max);
    out.push(("fixmap".into(), lo, hi));
    out.push(("PCI I/O".into(), pci.0, u128::from(pci.1)));
    out.push(("vmemmap".into(), vmemmap.0, u128::from(vmemmap.1)));
    out.sort_by_key(|r| r.1);
    out
}

/// The VA windows of the deepest tables above VA `above` (the end of vmalloc, which
/// holds the image: its own early tables can live in bss too) that live in `bss`
/// (the early fixmap's PTE tables), merged.
fn fixmap_tables(cfg: &TranslationConfig, walk: &Walk, bss: Option<Range>, above: u64) -> Vec<(u64, u128)> {
    let Some(bss) = bss else { return Vec::new() };
    let inside: Vec<_> =
        walk.tables.iter().skip(1).filter(|t| t.va >= above && (bss.start..bss.end).contains(&t.pa)).collect();
    let Some(deepest) = inside.iter().map(|t| t.level).max() else { return Vec::new() };
    let mut spans: Vec<(u64, u128)> = inside
        .iter()
        .filter(|t| t.level == deepest)
        .map(|t| (t.va, u128::from(t.va) + u128::from(cfg.entries(t.level) as u64 * cfg.entry_span(t.level))))
        .collect();
    spans.sort_unstable();
    spans.dedup_by(|b, a| {
        let joined = u128::from(b.0) <= a.1;
        if joined {
            a.1 = a.1.max(b.1);
        }
        joined
    });
    spans
}

/// `walk`'s leaf runs that lie outside every region, as VA ranges (drawn regions
/// that miss a mapping are wrong for this kernel).
pub fn outside(regions: &[Region], cfg: &TranslationConfig, walk: &Walk) -> Vec<(u64, u128)> {
    walk.runs
        .iter()
        .map(|r| (r.va, r.end(cfg)))
        .filter(|&(a, b)| !regions.iter().any(|&(_, s, e)| a >= s && b <= e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(release: &str) -> KernelFacts {
        KernelFacts { release: Some(release.into()), ..KernelFacts::default() }
    }

    /// Every regime, both layouts: the regions are in order, do not overlap, and end
    /// at or below 2^64.
    #[test]
    fn regions_are_ordered_and_disjoint_in_every_regime() {
        let walk = Walk::default();
        for cfg in TranslationConfig::all() {
            for release in ["6.1.0-50-arm64", "6.12.117+deb13-arm64"] {
                let r = regions(&cfg, &facts(release), &walk, Image::default());
                let names: Vec<&str> = r.iter().map(|r| r.0.as_str()).collect();
                assert_eq!(names.len(), 6, "{cfg} {release}: {names:?}");
                for w in r.windows(2) {
                    assert!(w[0].1 < w[0].2 as u64 || w[0].2 == 1 << 64, "{cfg} {release}: {w:?}");
                    assert!(w[0].2 <= u128::from(w[1].1), "{cfg} {release}: overlap {w:?}");
                }
                assert!(r.last().unwrap().2 <= 1 << 64);
            }
        }
    }

    /// 6.12 4k-48: the figures the layout gives (vmemmap 2 TiB ending 1 GiB below the
    /// top, modules 2 GiB from PAGE_END); 6.1 4k-48: vmemmap at -2^42.
    #[test]
    fn the_two_layouts_on_4k_48() {
        let cfg = TranslationConfig::parse("4k-48").unwrap();
        let r = regions(&cfg, &facts("6.12.117+deb13-arm64"), &Walk::default(), Image::default());
        let get = |r: &[Region], n: &str| r.iter().find(|x| x.0 == n).map(|x| (x.1, x.2 as u64)).unwrap();
        assert_eq!(get(&r, "linear map"), (0xffff_0000_0000_0000, 0xffff_8000_0000_0000));
        assert_eq!(get(&r, "modules"), (0xffff_8000_0000_0000, 0xffff_8000_8000_0000));
        assert_eq!(get(&r, "vmemmap"), (0xffff_fdff_c000_0000, 0xffff_ffff_c000_0000));
        let r = regions(&cfg, &facts("6.1.0-50-arm64"), &Walk::default(), Image::default());
        assert_eq!(get(&r, "modules"), (0xffff_8000_0000_0000, 0xffff_8000_0800_0000));
        assert_eq!(get(&r, "vmemmap"), (0xffff_fc00_0000_0000, 0xffff_fe00_0000_0000));
    }
}
