//! The checks on a real kernel's tables, against the layout it was booted on and the
//! image sections it named (`symbols.rs`). Each check has the name of its
//! counterpart on ptcheck's own builder: zeroing, translation, image (the kernel
//! image's sections; W+X anywhere), table_bits, policy.
//!
//! What the kernel is expected to build (arch/arm64/mm/mmu.c `map_mem`, `map_kernel`,
//! read for what it does, restated from the architecture):
//! - the linear map: every RAM bank of the DTB, page-rounded inward, minus `no-map`
//!   regions, at VA = PA + offset, where offset = PAGE_OFFSET − memstart and memstart
//!   is the lowest RAM rounded down to `memstart_align` (KASLR may lower memstart by
//!   a multiple of that, moving the whole map up); Normal memory, never executable,
//!   writable except the alias of kernel text and rodata (read-only); nothing else in
//!   the linear region (the lower half of the TTBR1 range);
//! - the kernel image: text read-only and executable, rodata read-only, init
//!   unmapped (freed before init runs), data and bss writable, never executable,
//!   at the physical address the image was loaded at;
//! - every table descriptor with UXNTable except the static early-fixmap tables (in
//!   the image's bss), PXNTable on every table under the linear map, and neither
//!   PXNTable nor APTable above an executable leaf;
//! - the linear map's shape (block, contiguous, page) as ptcheck's Linux-policy model
//!   predicts for the same memblock ranges and flags.

mod ctx;
mod image;
mod observed;
mod policy;
mod table_bits;
mod translation;
mod zeroing;

pub use ctx::{
    alias_from_text, expected_linear_ram, find_sections, image_voffset, linear_end, memstart_align, page_offset,
    subtract, Ctx, Sections, KFENCE_OBJECTS,
};

use crate::linux::inspection::{Finding, Inspection, LinuxCheck, Severity};
use crate::linux::layout::Layout;
use crate::walker::AnomalyKind;

/// Judge what `boot_and_inspect` found against the layout it booted on: the structure
/// (stopped at EL0/EL1, no reserved encodings or unreadable tables), then every check.
pub fn judge(i: &Inspection, layout: &Layout, mem: &dyn crate::backend::PhysMemory) -> Vec<Finding> {
    let mut out = Vec::new();
    // Stopped in the kernel (EL1) or its init (EL0), TTBR1_EL1 is what translates
    // kernel addresses; at EL2 (a VHE kernel) it would not be.
    if i.el > 1 {
        out.push(Finding {
            check: LinuxCheck::Structure,
            severity: Severity::Failed,
            what: format!("the vCPU stopped at EL{}: TTBR1_EL1 is not the kernel's live table base there", i.el),
        });
    }
    for a in &i.walk.anomalies {
        let severity = if a.kind == AnomalyKind::TableReachedTwice { Severity::Info } else { Severity::Failed };
        out.push(Finding {
            check: LinuxCheck::Structure,
            severity,
            what: format!("{} at L{} VA {:#x} (entry {:#x} = {:#x})", a.what(), a.level.0, a.va, a.entry_pa, a.value),
        });
    }
    out.extend(all(&Ctx::new(i, layout, &i.facts, mem)));
    out
}

/// Every check, in order.
pub fn all(c: &Ctx<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    zeroing::zeroing(c, &mut out);
    translation::translation(c, &mut out);
    image::image(c, &mut out);
    table_bits::table_bits(c, &mut out);
    policy::policy(c, &mut out);
    observed::observed(c, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::layout::Range;
    use crate::linux::symbols::KernelFacts;
    use ptcheck_shared::TranslationConfig;

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    #[test]
    fn linear_ram_is_banks_minus_holes_page_rounded() {
        let layout = Layout {
            banks: vec![r(0x4000_1000, 0x6000_0000), r(0x7000_0000, 0x8000_3000)],
            no_map: vec![r(0x5000_0000, 0x5001_0000)],
            kernel: 0x4200_0000,
            initrd: r(0x4600_0000, 0x4700_0000),
            dtb: 0x4800_0000,
            stub: 0x4818_0000,
            cmdline: super::super::layout::Cmdline::Default,
            kaslr_seed: None,
        };
        assert_eq!(
            expected_linear_ram(&layout, 0x4000),
            vec![r(0x4000_4000, 0x5000_0000), r(0x5001_0000, 0x6000_0000), r(0x7000_0000, 0x8000_0000)]
        );
        assert_eq!(subtract(&[r(0, 100)], &[r(10, 20), r(90, 200)]), vec![r(0, 10), r(20, 90)]);
    }

    #[test]
    fn the_image_alias_starts_where_the_release_says() {
        let facts = |r: &str| KernelFacts { release: Some(r.into()), ..KernelFacts::default() };
        assert!(!alias_from_text(&facts("6.1.0-50-arm64")));
        assert!(!alias_from_text(&facts("6.1.176")));
        assert!(alias_from_text(&facts("6.12.117+deb13-arm64")));
        assert!(alias_from_text(&facts("7.0.0")));
        assert!(alias_from_text(&KernelFacts::default()));
    }

    #[test]
    fn linear_region_is_the_lower_half() {
        let cfg = TranslationConfig::parse("4k-48").unwrap();
        assert_eq!(page_offset(&cfg), 0xffff_0000_0000_0000);
        assert_eq!(linear_end(&cfg), 0xffff_8000_0000_0000);
        let cfg = TranslationConfig::parse("4k-52").unwrap();
        assert_eq!(page_offset(&cfg), 0xfff0_0000_0000_0000);
    }
}
