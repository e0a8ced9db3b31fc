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

use ptcheck_shared::abi::{MapFlags, MapOp, Plan};
use ptcheck_shared::{Descriptor, Granule, Level, Prot, TranslationConfig};

use super::inspection::{Finding, Inspection};
use super::layout::{Layout, Range};
use super::symbols::KernelFacts;
use crate::backend::PhysMemory;
use crate::runs::LeafRun;
use crate::walker::AnomalyKind;

/// KFENCE objects assumed when sizing its pool (`CONFIG_KFENCE_NUM_OBJECTS`, default
/// and Debian's 255): the pool is `(objects + 1) * 2` pages.
pub const KFENCE_OBJECTS: u64 = 255;

/// Where the linear region starts: PAGE_OFFSET for `va_bits` (the bottom of TTBR1).
pub fn page_offset(cfg: &TranslationConfig) -> u64 {
    0u64.wrapping_sub(1 << cfg.va_bits)
}

/// One past the linear region (its top half holds modules, vmalloc, the image).
pub fn linear_end(cfg: &TranslationConfig) -> u64 {
    page_offset(cfg) + (1 << (cfg.va_bits - 1))
}

/// The alignment of memstart (`ARM64_MEMSTART_ALIGN`): 1 GiB with 4K and 16K pages,
/// 512 MiB with 64K.
pub fn memstart_align(cfg: &TranslationConfig) -> u64 {
    match cfg.granule() {
        Granule::K4 | Granule::K16 => 1 << 30,
        Granule::K64 => 512 << 20,
    }
}

/// `ranges` minus `holes` (both sorted, disjoint).
pub fn subtract(ranges: &[Range], holes: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    for r in ranges {
        let mut at = r.start;
        for h in holes.iter().filter(|h| h.overlaps(r)) {
            if h.start > at {
                out.push(Range { start: at, end: h.start });
            }
            at = at.max(h.end);
        }
        if at < r.end {
            out.push(Range { start: at, end: r.end });
        }
    }
    out
}

fn normalise(mut v: Vec<Range>) -> Vec<Range> {
    v.retain(|r| !r.is_empty());
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(l) if l.end >= r.start => l.end = l.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// RAM the kernel maps linearly: banks rounded inward to pages, minus `no-map`.
pub fn expected_linear_ram(layout: &Layout, page: u64) -> Vec<Range> {
    let banks: Vec<Range> = layout
        .banks
        .iter()
        .map(|b| Range { start: b.start.next_multiple_of(page), end: b.end / page * page })
        .collect();
    let holes: Vec<Range> = layout
        .no_map
        .iter()
        .map(|n| Range { start: n.start.next_multiple_of(page), end: n.end / page * page })
        .collect();
    normalise(subtract(&normalise(banks), &normalise(holes)))
}

/// The kernel image's section boundaries (VAs) and where they came from.
pub struct Sections {
    /// `_text` (the image header), when listed.
    pub text: Option<u64>,
    /// Text.
    pub stext: u64,
    /// See `stext`.
    pub etext: u64,
    /// Read-only data (up to `init`).
    pub rodata: u64,
    /// Init text and data (freed).
    pub init: u64,
    /// See `init`.
    pub init_end: u64,
    /// Data and bss.
    pub sdata: u64,
    /// See `sdata`.
    pub end: u64,
    /// Start of bss (the early fixmap tables live there).
    pub bss: u64,
    /// Image VA − PA.
    pub voffset: u64,
    /// Boundaries derived rather than listed.
    pub derived: Vec<&'static str>,
}

/// Everything the checks share: the inspection, the layout, the facts, and what was
/// derived from them once.
pub struct Ctx<'a> {
    i: &'a Inspection,
    layout: &'a Layout,
    facts: &'a KernelFacts,
    mem: &'a dyn PhysMemory,
    cfg: TranslationConfig,
    /// Linear VA − PA, as the tables show it.
    offset: Option<u64>,
    /// The expected linear RAM.
    ram: Vec<Range>,
    /// The KFENCE pool (linear VA), if the kernel has one.
    kfence: Option<Range>,
    /// Kernel image VA − PA.
    voffset: Option<u64>,
}

impl<'a> Ctx<'a> {
    /// Derive what the checks share.
    pub fn new(i: &'a Inspection, layout: &'a Layout, facts: &'a KernelFacts, mem: &'a dyn PhysMemory) -> Self {
        let cfg = i.cfg;
        let ram = expected_linear_ram(layout, cfg.page_size());
        let (lo, hi) = (page_offset(&cfg), linear_end(&cfg));
        let offset = i.walk.runs.iter().find(|r| r.va >= lo && r.va < hi).map(|r| r.va.wrapping_sub(r.pa(&cfg)));
        let voffset = facts.sym("_stext").and_then(|s| i.walk.at(&cfg, s)).map(|t| {
            let s = facts.sym("_stext").unwrap_or(0);
            s.wrapping_sub(t.pa)
        });
        let mut c = Ctx { i, layout, facts, mem, cfg, offset, ram, kfence: None, voffset };
        c.kfence = c
            .read_kernel_u64("__kfence_pool")
            .filter(|&p| p != 0)
            .map(|p| Range { start: p, end: p + (KFENCE_OBJECTS + 1) * 2 * cfg.page_size() });
        c
    }

    /// A kernel variable's value, read through the kernel's own mapping of it.
    fn read_kernel_u64(&self, name: &str) -> Option<u64> {
        let va = self.facts.sym(name)?;
        let t = self.i.walk.at(&self.cfg, va)?;
        self.mem.read_u64(t.pa)
    }

    fn read_kernel_u8(&self, name: &str) -> Option<u8> {
        let va = self.facts.sym(name)?;
        let t = self.i.walk.at(&self.cfg, va)?;
        let word = self.mem.read_u64(t.pa & !7)?;
        Some((word >> ((t.pa & 7) * 8)) as u8)
    }

    /// The image's section boundaries (VAs): from /proc/kallsyms, else (a kernel
    /// without CONFIG_KALLSYMS_ALL lists text symbols only) from `_stext`, `_etext`,
    /// `__init_begin` and /proc/iomem's "Kernel data", using the linker script's
    /// order (rodata starts at `_etext`, data at `__init_end`, bss inside data).
    ///
    /// # Errors
    /// What is missing.
    pub fn sections(&self) -> Result<Sections, String> {
        let f = self.facts;
        let [stext, etext, init] = f
            .syms(["_stext", "_etext", "__init_begin"])
            .map_err(|m| format!("the kernel does not list {m} in /proc/kallsyms (CONFIG_KALLSYMS=y needed)"))?;
        let voffset = self.voffset.ok_or_else(|| format!("_stext ({stext:#x}) is not mapped"))?;
        let mut derived = Vec::new();
        let data = f.iomem.get("Kernel_data").map(|&(a, b)| (a.wrapping_add(voffset), b.wrapping_add(voffset)));
        let mut pick = |name: &'static str, fallback: Option<u64>, how: &'static str| {
            f.sym(name).or_else(|| {
                derived.push(how);
                fallback
            })
        };
        let rodata = pick("__start_rodata", Some(etext), "rodata from _etext");
        let sdata = pick("_sdata", data.map(|d| d.0), "data from /proc/iomem");
        let end = pick("_end", data.map(|d| d.1), "end from /proc/iomem");
        let init_end = pick("__init_end", sdata, "init end = data start");
        let bss = pick("__bss_start", sdata, "bss within data");
        let text = f.sym("_text");
        match (rodata, sdata, end, init_end, bss) {
            (Some(rodata), Some(sdata), Some(end), Some(init_end), Some(bss)) => {
                Ok(Sections { text, stext, etext, rodata, init, init_end, sdata, end, bss, voffset, derived })
            }
            _ => Err("neither /proc/kallsyms (CONFIG_KALLSYMS_ALL) nor /proc/iomem gave the data section".into()),
        }
    }

    /// The MAIR_EL1 attribute byte a leaf selects is Normal memory (outer cacheability
    /// nibble non-zero; zero is Device).
    fn is_normal(&self, p: Prot) -> bool {
        let idx = (p.0 & Prot::ATTR_INDX_MASK) >> 2;
        (self.i.mair >> (8 * idx)) & 0xf0 != 0
    }

    fn linear_runs(&self) -> impl Iterator<Item = &LeafRun> + '_ {
        let (lo, hi) = (page_offset(&self.cfg), linear_end(&self.cfg));
        self.i.walk.runs.iter().filter(move |r| r.va >= lo && r.va < hi)
    }

    /// The PA range of the kernel's text+rodata (its linear alias is read-only).
    fn kernel_alias_pa(&self) -> Option<Range> {
        let s = self.sections().ok()?;
        Some(Range { start: s.stext.wrapping_sub(s.voffset), end: s.init.wrapping_sub(s.voffset) })
    }

    /// The KFENCE pool's PA range.
    fn kfence_pa(&self) -> Option<Range> {
        let (k, o) = (self.kfence?, self.offset?);
        Some(Range { start: k.start.wrapping_sub(o), end: k.end.wrapping_sub(o) })
    }
}

fn fail(check: &'static str, what: String) -> Finding {
    Finding { check, failure: true, unchecked: false, what }
}

fn info(check: &'static str, what: String) -> Finding {
    Finding { check, failure: false, unchecked: false, what }
}

/// The check could not run: never a pass (the layout is "not checked").
fn unchecked(check: &'static str, what: String) -> Finding {
    Finding { check, failure: false, unchecked: true, what }
}

/// Judge what `boot_and_inspect` found against the layout it booted on: the structure
/// (stopped at EL0/EL1, no reserved encodings or unreadable tables), then every check.
pub fn judge(i: &Inspection, layout: &Layout, mem: &dyn crate::backend::PhysMemory) -> Vec<Finding> {
    let mut out = Vec::new();
    // Stopped in the kernel (EL1) or its init (EL0), TTBR1_EL1 is what translates
    // kernel addresses; at EL2 (a VHE kernel) it would not be.
    if i.el > 1 {
        out.push(Finding {
            check: "structure",
            failure: true,
            unchecked: false,
            what: format!("the vCPU stopped at EL{}: TTBR1_EL1 is not the kernel's live table base there", i.el),
        });
    }
    for a in &i.walk.anomalies {
        let failure = a.kind != AnomalyKind::TableReachedTwice;
        out.push(Finding {
            check: "structure",
            failure,
            unchecked: false,
            what: format!("{} at L{} VA {:#x} (entry {:#x} = {:#x})", a.what(), a.level.0, a.va, a.entry_pa, a.value),
        });
    }
    out.extend(all(&Ctx::new(i, layout, &i.facts, mem)));
    out
}

/// Every check, in order.
pub fn all(c: &Ctx<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    zeroing(c, &mut out);
    translation(c, &mut out);
    image(c, &mut out);
    table_bits(c, &mut out);
    policy(c, &mut out);
    out
}

/// zeroing: every invalid entry of every reachable table is exactly 0, except KFENCE's
/// guard pages, each a page descriptor of its own linear-map page with only the valid
/// bit cleared.
fn zeroing(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    let is_guard = |a: &crate::walker::Anomaly| {
        let (Some(k), Some(o)) = (c.kfence, c.offset) else { return false };
        let d = Descriptor(a.value | Descriptor::VALID);
        a.level == Level::LEAF
            && (k.start..k.end).contains(&a.va)
            && d.kind(cfg, a.level) == ptcheck_shared::descriptor::DescriptorKind::Page
            && d.address(cfg) == a.va.wrapping_sub(o)
    };
    let bad: Vec<_> = c.i.walk.nonzero_invalid.iter().filter(|a| !is_guard(a)).collect();
    for a in bad.iter().take(5) {
        out.push(fail(
            "zeroing",
            format!(
                "L{} entry at {:#x} (VA {:#x}) is {:#x}: neither valid nor zero",
                a.level.0, a.entry_pa, a.va, a.value
            ),
        ));
    }
    if bad.len() > 5 {
        out.push(fail("zeroing", format!("... and {} more", bad.len() - 5)));
    }
    let guards = c.i.walk.nonzero_invalid.len() - bad.len();
    if guards > 0 {
        out.push(info("zeroing", format!("{guards} KFENCE guard PTEs (valid bit cleared) exempt in the pool")));
    }
}

/// translation: the linear map is exactly the layout's RAM at VA = PA + offset.
fn translation(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    let Some(offset) = c.offset else {
        out.push(fail("translation", "nothing is mapped in the linear region".into()));
        return;
    };
    let lowest = c.ram.first().map_or(0, |r| r.start);
    let align = memstart_align(cfg);
    let plain = page_offset(cfg).wrapping_sub(lowest / align * align);
    let shift = offset.wrapping_sub(plain);
    if c.layout.kaslr_seed.is_none() && shift != 0 {
        out.push(fail(
            "translation",
            format!(
                "linear map offset {offset:#x}, expected PAGE_OFFSET {:#x} - memstart {:#x} = {plain:#x} (nokaslr)",
                page_offset(cfg),
                lowest / align * align
            ),
        ));
    } else if shift % align != 0 || shift > (1 << (cfg.va_bits - 1)) {
        out.push(fail(
            "translation",
            format!("linear map offset {offset:#x} is {shift:#x} above {plain:#x}: not a KASLR step of {align:#x}"),
        ));
    }
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
                    "translation",
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
        let ro_alias = alias.is_some_and(|a| a.overlaps(&Range { start: pa, end: pa + len }));
        let mut wrong = Vec::new();
        if !c.is_normal(p) {
            wrong.push("not Normal memory");
        }
        if p.0 & Prot::PXN == 0 || p.0 & Prot::UXN == 0 {
            wrong.push("executable");
        }
        let run_pa = Range { start: pa, end: pa + len };
        if p.0 & Prot::RDONLY != 0 && !ro_alias {
            if subtract(&[run_pa], &ro_elsewhere).is_empty() {
                ro_aliases += len / cfg.page_size();
            } else {
                wrong.push("read-only, and not the alias of a read-only mapping elsewhere");
            }
        }
        if p.0 & Prot::RDONLY == 0 && ro_alias {
            wrong.push("writable alias of kernel text/rodata");
        }
        if !wrong.is_empty() {
            bad += 1;
            if bad <= 5 {
                out.push(fail("translation", format!("linear VA {:#x}..{end:#x}: {}", r.va, wrong.join(", "))));
            }
        }
    }
    let mapped = normalise(mapped);
    for extra in subtract(&mapped, &c.ram).iter().take(5) {
        out.push(fail(
            "translation",
            format!("PA {extra} is mapped in the linear region but is not RAM the DTB gives (hole or no-map)"),
        ));
    }
    let kfence = c.kfence_pa().into_iter().collect::<Vec<_>>();
    let missing = subtract(&subtract(&c.ram, &mapped), &kfence);
    for m in missing.iter().take(5) {
        out.push(fail("translation", format!("RAM {m} is not in the linear map")));
    }
    if bad > 5 {
        out.push(fail("translation", format!("... {bad} wrong linear runs in all")));
    }
    out.push(info(
        "translation",
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

/// image: the kernel's sections have their permissions, at the load address; no
/// mapping anywhere is writable and executable.
fn image(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    for r in &c.i.walk.runs {
        let p = r.prot(cfg);
        if p.0 & Prot::RDONLY == 0 && p.0 & Prot::PXN == 0 {
            out.push(fail(
                "image",
                format!("VA {:#x}..{:#x} -> PA {:#x} is writable and executable at EL1", r.va, r.end(cfg), r.pa(cfg)),
            ));
        }
    }
    let sec = match c.sections() {
        Ok(s) => s,
        Err(e) => {
            out.push(unchecked("image", e));
            return;
        }
    };
    let Sections { stext, etext, rodata, init, init_end, sdata, end, voffset, .. } = sec;
    let stext_pa = stext.wrapping_sub(voffset);
    match sec.text {
        Some(text) if text.wrapping_sub(voffset) != c.layout.kernel => out.push(fail(
            "image",
            format!(
                "_text translates to PA {:#x}, but the image was loaded at {:#x}",
                text.wrapping_sub(voffset),
                c.layout.kernel
            ),
        )),
        None if !(c.layout.kernel..c.layout.kernel + (2 << 20)).contains(&stext_pa) => out.push(fail(
            "image",
            format!(
                "_stext translates to PA {stext_pa:#x}, not within 2 MiB of the load address {:#x}",
                c.layout.kernel
            ),
        )),
        _ => {}
    }
    if !sec.derived.is_empty() {
        out.push(info(
            "image",
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
            out.push(fail("image", format!("{name} {s:#x}..{e:#x} must be {want}: {}", problems.join(", "))));
        }
    }
}

/// table_bits: UXNTable everywhere but the early fixmap tables; PXNTable under the
/// linear map; nothing hierarchical above an executable leaf.
fn table_bits(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    let w = &c.i.walk;
    let bss =
        c.sections().ok().map(|s| Range { start: s.bss.wrapping_sub(s.voffset), end: s.end.wrapping_sub(s.voffset) });
    if bss.is_none() {
        out.push(unchecked(
            "table_bits",
            "the image's bss is unknown (no /proc/kallsyms or /proc/iomem), so the early fixmap tables are too".into(),
        ));
        return;
    }
    let (lo, hi) = (page_offset(cfg), linear_end(cfg));
    let (mut fixmap, mut no_uxn, mut no_pxn, mut kfence_tables) = (0, Vec::new(), Vec::new(), Vec::new());
    for t in w.tables.iter().skip(1) {
        let d = t.parent_desc.0;
        let span = cfg.entries(t.level) as u64 * cfg.entry_span(t.level);
        if d & Descriptor::UXN_TABLE == 0 {
            if bss.is_some_and(|b| (b.start..b.end).contains(&t.pa)) {
                fixmap += 1;
            } else {
                no_uxn.push(format!("{} table at PA {:#x} for VA {:#x}", t.level, t.pa, t.va));
            }
        }
        let last = t.va.wrapping_add(span - 1);
        if t.va >= lo && last < hi && last >= t.va && d & Descriptor::PXN_TABLE == 0 {
            let what = format!("{} table at PA {:#x} for VA {:#x}", t.level, t.pa, t.va);
            if t.level == Level::LEAF && c.kfence.is_some_and(|k| k.start <= last && t.va < k.end) {
                kfence_tables.push(what);
            } else {
                no_pxn.push(what);
            }
        }
    }
    for (what, list) in [
        ("without UXNTable (outside the early fixmap tables in bss)", &no_uxn),
        ("under the linear map without PXNTable", &no_pxn),
    ] {
        if !list.is_empty() {
            let shown: Vec<&str> = list.iter().take(4).map(String::as_str).collect();
            out.push(fail("table_bits", format!("{} table descriptors {what}: {}", list.len(), shown.join("; "))));
        }
    }
    // Above an executable leaf, no table may take execution or write away.
    for r in w.runs.iter().filter(|r| r.prot(cfg).0 & Prot::PXN == 0) {
        for t in w.tables.iter().skip(1) {
            let span = cfg.entries(t.level) as u64 * cfg.entry_span(t.level);
            let covers = r.va >= t.va && r.va - t.va < span;
            if covers && t.parent_desc.0 & (Descriptor::PXN_TABLE | Descriptor::AP_TABLE_MASK) != 0 {
                out.push(fail(
                    "table_bits",
                    format!(
                        "{} table for VA {:#x} has PXNTable/APTable ({:#x}) above executable VA {:#x}",
                        t.level, t.va, t.parent_desc.0, r.va
                    ),
                ));
            }
        }
    }
    if !kfence_tables.is_empty() {
        out.push(info(
            "table_bits",
            format!(
                "kernel difference: {} linear-map table(s) first made for the KFENCE pool lack PXNTable ({}): \
                 this kernel maps the pool without NO_EXEC_MAPPINGS (later kernels pass it); its pages are PXN",
                kfence_tables.len(),
                kfence_tables.join("; ")
            ),
        ));
    }
    if fixmap > 0 {
        out.push(info(
            "table_bits",
            format!("{fixmap} early-fixmap tables (in bss) without UXNTable, as the kernel builds them"),
        ));
    }
}

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

/// Whether `map_mem` maps the image's linear alias from `_text` (6.12) rather than
/// `_stext` (6.1). The change lies between the two; ptcheck takes 6.9 (the release
/// that reworked the kernel's VA space for LPA2) as the first with `_text`. A
/// 6.2–6.11 kernel that disagrees shows as a policy difference at the alias's first
/// block. An unknown release is taken as recent.
pub fn alias_from_text(facts: &KernelFacts) -> bool {
    let Some(r) = facts.release.as_deref() else { return true };
    let mut it = r.split(['.', '-', '+']).map(|p| p.parse::<u32>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (6, 9),
        _ => true,
    }
}

/// policy: the linear map's shape equals the model's for the kernel's memblock ranges
/// (the RAM minus the image alias and the KFENCE pool, then the alias with NO_CONT).
fn policy(c: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = &c.cfg;
    // map_mem maps the image's alias from _text (its header included) to __init_begin.
    // The image's alias starts at _stext in 6.1 and at _text (its header included) in
    // 6.12 — both read in their sources; see `alias_from_text` for the kernels between.
    let from_text = alias_from_text(c.facts);
    let alias = c.sections().ok().map(|s| Range {
        start: if from_text { s.text.unwrap_or(s.stext) } else { s.stext }.wrapping_sub(s.voffset),
        end: s.init.wrapping_sub(s.voffset),
    });
    let (Some(offset), Some(alias)) = (c.offset, alias) else {
        out.push(unchecked("policy", "no linear map, or no _text/__init_begin in /proc/kallsyms".into()));
        return;
    };
    let (flags, why) = match linear_flags(c) {
        Ok(f) => f,
        Err(e) => {
            out.push(unchecked("policy", e));
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
            out.push(unchecked("policy", "more memblock ranges than a plan holds".into()));
            return;
        }
    }
    plan.push_op(op(&alias, MapFlags::NO_CONT_MAPPINGS));
    let expected = match crate::expect::model(&plan, 1 << 32) {
        Ok(e) => e,
        Err(e) => {
            out.push(unchecked("policy", format!("the model refused the ranges ({e:?})")));
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
            "policy",
            format!(
                "linear map shape differs from the Linux-policy model ({why}): kernel {}, model {}",
                got.get(k).map_or("nothing".into(), name),
                want.get(k).map_or("nothing".into(), name)
            ),
        ));
    } else {
        let blocks = got.iter().filter(|s| s.2 < Level::LEAF.0 || s.3).count();
        out.push(info(
            "policy",
            format!("linear map shape = model ({why}): {} stretches, {blocks} of blocks or contiguous runs", got.len()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
