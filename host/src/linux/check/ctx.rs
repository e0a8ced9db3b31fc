//! What every real-kernel check shares: the context derived once per boot (linear
//! offset, expected RAM, KFENCE pool, image sections), range arithmetic and the
//! finding constructors.

use ptcheck_shared::{Granule, Prot, TranslationConfig};

use crate::backend::PhysMemory;
use crate::linux::inspection::{Finding, Inspection, LinuxCheck, Severity};
use crate::linux::layout::{Layout, Range};
use crate::linux::symbols::KernelFacts;
use crate::runs::LeafRun;

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

pub(crate) fn normalise(mut v: Vec<Range>) -> Vec<Range> {
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
    pub(crate) i: &'a Inspection,
    pub(crate) layout: &'a Layout,
    pub(crate) facts: &'a KernelFacts,
    pub(crate) mem: &'a dyn PhysMemory,
    pub(crate) cfg: TranslationConfig,
    /// Linear VA − PA, as the tables show it.
    pub(crate) offset: Option<u64>,
    /// The expected linear RAM.
    pub(crate) ram: Vec<Range>,
    /// The KFENCE pool (linear VA), if the kernel has one.
    pub(crate) kfence: Option<Range>,
    /// The image's sections, or what is missing to know them (derived once).
    sections: Result<Sections, String>,
}

impl<'a> Ctx<'a> {
    /// Derive what the checks share.
    pub fn new(i: &'a Inspection, layout: &'a Layout, facts: &'a KernelFacts, mem: &'a dyn PhysMemory) -> Self {
        let cfg = i.cfg;
        let ram = expected_linear_ram(layout, cfg.page_size());
        let (lo, hi) = (page_offset(&cfg), linear_end(&cfg));
        let offset = i.walk.runs.iter().find(|r| r.va >= lo && r.va < hi).map(|r| r.va.wrapping_sub(r.pa(&cfg)));
        let sections = find_sections(facts, image_voffset(&cfg, facts, &i.walk));
        let mut c = Ctx { i, layout, facts, mem, cfg, offset, ram, kfence: None, sections };
        c.kfence = c
            .read_kernel_u64("__kfence_pool")
            .filter(|&p| p != 0)
            .map(|p| Range { start: p, end: p + (KFENCE_OBJECTS + 1) * 2 * cfg.page_size() });
        c
    }

    /// A kernel variable's value, read through the kernel's own mapping of it.
    pub(crate) fn read_kernel_u64(&self, name: &str) -> Option<u64> {
        let va = self.facts.sym(name)?;
        let t = self.i.walk.at(&self.cfg, va)?;
        self.mem.read_u64(t.pa)
    }

    pub(crate) fn read_kernel_u8(&self, name: &str) -> Option<u8> {
        let va = self.facts.sym(name)?;
        let t = self.i.walk.at(&self.cfg, va)?;
        let word = self.mem.read_u64(t.pa & !7)?;
        Some((word >> ((t.pa & 7) * 8)) as u8)
    }

    /// The image's section boundaries ([`find_sections`]).
    ///
    /// # Errors
    /// What is missing to know them.
    pub fn sections(&self) -> Result<&Sections, String> {
        self.sections.as_ref().map_err(Clone::clone)
    }

    /// The MAIR_EL1 attribute byte a leaf selects is Normal memory (outer cacheability
    /// nibble non-zero; zero is Device).
    pub(crate) fn is_normal(&self, p: Prot) -> bool {
        let idx = (p.0 & Prot::ATTR_INDX_MASK) >> 2;
        (self.i.mair >> (8 * idx)) & 0xf0 != 0
    }

    pub(crate) fn linear_runs(&self) -> impl Iterator<Item = &LeafRun> + '_ {
        let (lo, hi) = (page_offset(&self.cfg), linear_end(&self.cfg));
        self.i.walk.runs.iter().filter(move |r| r.va >= lo && r.va < hi)
    }

    /// The PA range `map_mem` maps as the image's linear alias (made read-only once
    /// booted): from `_stext` or `_text` ([`alias_from_text`]) to `__init_begin`.
    pub(crate) fn kernel_alias_pa(&self) -> Option<Range> {
        let s = self.sections().ok()?;
        let start = if alias_from_text(self.facts) { s.text.unwrap_or(s.stext) } else { s.stext };
        Some(Range { start: start.wrapping_sub(s.voffset), end: s.init.wrapping_sub(s.voffset) })
    }

    /// The KFENCE pool's PA range.
    pub(crate) fn kfence_pa(&self) -> Option<Range> {
        let (k, o) = (self.kfence?, self.offset?);
        Some(Range { start: k.start.wrapping_sub(o), end: k.end.wrapping_sub(o) })
    }
}

/// The image's VA − PA, from where the walked tables map `_stext`.
pub fn image_voffset(cfg: &TranslationConfig, facts: &KernelFacts, walk: &crate::walker::Walk) -> Option<u64> {
    facts.sym("_stext").and_then(|s| Some(s.wrapping_sub(walk.at(cfg, s)?.pa)))
}

/// The image's section boundaries (VAs): from /proc/kallsyms, else (a kernel
/// without CONFIG_KALLSYMS_ALL lists text symbols only) from `_stext`, `_etext`,
/// `__init_begin` and /proc/iomem's "Kernel data", using the linker script's
/// order (rodata starts at `_etext`, data at `__init_end`, bss inside data).
///
/// `voffset` is the image's VA − PA (from `_stext`).
///
/// # Errors
/// What is missing.
pub fn find_sections(f: &KernelFacts, voffset: Option<u64>) -> Result<Sections, String> {
    let [stext, etext, init] = f
        .syms(["_stext", "_etext", "__init_begin"])
        .map_err(|m| format!("the kernel does not list {m} in /proc/kallsyms (CONFIG_KALLSYMS=y needed)"))?;
    let voffset = voffset.ok_or_else(|| format!("_stext ({stext:#x}) is not mapped"))?;
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

/// Whether `map_mem` maps the image's linear alias from `_text` (6.12) rather than
/// `_stext` (6.1). The change lies between the two; ptcheck takes 6.9 (the release
/// that reworked the kernel's VA space for LPA2) as the first with `_text`. A
/// 6.2–6.11 kernel that disagrees shows as a policy difference at the alias's first
/// block. An unknown release is taken as recent.
pub fn alias_from_text(facts: &KernelFacts) -> bool {
    facts.version().is_none_or(|v| v >= (6, 9))
}

impl Ctx<'_> {
    /// A PC the tracer reported, with its instruction and, where the kernel's
    /// System.map is at hand, its symbol. The PC is the address the code was first
    /// translated at: QEMU shares translations between the idmap (VA = PA) and the
    /// kernel's VA, so a PA-like PC is an image offset from the load address.
    pub(crate) fn pc(&self, pc: u64, insn: u32) -> String {
        crate::linux::symbols::describe_pc(pc, insn, self.map_name(pc))
    }

    /// `pc`'s `name+0xoff` in the System.map (its running VA less KASLR's offset).
    fn map_name(&self, pc: u64) -> Option<String> {
        let m = self.i.system_map.as_ref()?;
        let va = self.kernel_va(pc)?;
        m.name(va.wrapping_sub(self.facts.sym("_text")?).wrapping_add(m.text_start()))
    }
}

impl Ctx<'_> {
    /// ` (the image's <init_pg_end+0x0>)` for a physical address inside the kernel
    /// image of a kernel built here; empty otherwise.
    pub(crate) fn in_image(&self, pa: u64) -> String {
        let name = self.i.system_map.as_ref().and_then(|m| m.image_name(pa.checked_sub(self.layout.kernel)?));
        name.map(|n| format!(" (the image's <{n}>)")).unwrap_or_default()
    }

    /// Whether tracer PC `pc` is in function `name` (by kallsyms' ranges, else the
    /// System.map).
    pub(crate) fn in_function(&self, pc: u64, name: &str) -> bool {
        let Some(va) = self.kernel_va(pc) else { return false };
        if self.facts.function(name).is_some_and(|(a, b)| (a..b).contains(&va)) {
            return true;
        }
        self.map_name(pc).is_some_and(|s| s.split('+').next() == Some(name))
    }

    /// A tracer PC as the kernel's running VA (a PA-like one is an image offset).
    pub(crate) fn kernel_va(&self, pc: u64) -> Option<u64> {
        if pc >> 63 == 1 {
            Some(pc)
        } else {
            Some(pc.wrapping_sub(self.layout.kernel).wrapping_add(self.facts.sym("_text")?))
        }
    }

    /// The generic vmemmap function a link at `pc` into `entry_pa` came from, if any
    /// (by kallsyms, else the System.map). A link into `swapper_pg_dir` itself counts as
    /// `set_swapper_pgd`'s: kallsyms does not list that noinstr function, and it is
    /// where a folded kernel's vmemmap population writes its top level.
    pub(crate) fn in_vmemmap_populate(&self, pc: u64, entry_pa: u64) -> Option<&'static str> {
        let found = crate::linux::symbols::VMEMMAP_POPULATE.iter().copied().find(|n| self.in_function(pc, n));
        let swapper = self.facts.sym("swapper_pg_dir").zip(self.facts.sym("_text")).map(|(s, t)| {
            let pa = s.wrapping_sub(t).wrapping_add(self.layout.kernel);
            (pa..pa + self.cfg.page_size()).contains(&entry_pa)
        });
        found.or((swapper == Some(true)).then_some("set_swapper_pgd"))
    }
}

pub(crate) fn fail(check: LinuxCheck, what: String) -> Finding {
    Finding { check, severity: Severity::Failed, what }
}

pub(crate) fn info(check: LinuxCheck, what: String) -> Finding {
    Finding { check, severity: Severity::Info, what }
}

/// The check could not run: never a pass (the layout is "not checked").
pub(crate) fn unchecked(check: LinuxCheck, what: String) -> Finding {
    Finding { check, severity: Severity::NotChecked, what }
}
