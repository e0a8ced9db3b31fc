//! What the kernel under test says about itself: its release and the addresses of a
//! few symbols, printed on the console by the initramfs's `/init` (from
//! /proc/kallsyms, so KASLR is included) before the up marker.
//!
//! Debian ships only a stub System.map (the real one is in a 1 GB debug package), so
//! the running kernel is the one source that works for every kernel, a user's too.

use std::collections::BTreeMap;

/// Console line prefix for the kernel release (`/proc/sys/kernel/osrelease`).
pub const RELEASE_PREFIX: &str = "PTCHECK-RELEASE";
/// Console line prefix for one symbol: `PTCHECK-SYM name hexaddr`.
pub const SYMBOL_PREFIX: &str = "PTCHECK-SYM";

/// Console line prefix for a /proc/iomem kernel range: `PTCHECK-IOMEM Kernel_code a b`
/// (physical, inclusive end).
pub const IOMEM_PREFIX: &str = "PTCHECK-IOMEM";

/// The symbols the checks use.
///
/// - image sections (arch/arm64/kernel/vmlinux.lds.S): `_stext`..`_etext` text,
///   `__start_rodata`..`__init_begin` read-only data, `__init_begin`..`__init_end`
///   init (freed and unmapped before init runs), `_sdata`..`_end` data and bss;
/// - `vabits_actual`: only in kernels built for 52-bit VAs (so a 48-bit TCR_EL1 means
///   folded at run time);
/// - `__bss_start`: the early fixmap tables (`bm_pud`, `bm_pmd`, `bm_pte`) live in bss;
/// - `__kfence_pool` (a pointer): the KFENCE pool, whose guard PTEs are not zero;
/// - `rodata_full` (a bool): whether the linear map must be page-granular;
/// - `__kfence_alloc`, `parse_kfence_early_init`: text symbols (listed without
///   CONFIG_KALLSYMS_ALL) saying KFENCE is built in, and with an early pool;
/// - `kfence_early_init` (a bool): present in kernels (6.4+) that give KFENCE an early
///   pool, and so keep linear-map blocks with `rodata=on`; set when the pool is in use.
pub const WANTED: &[&str] = &[
    "_text",
    "_stext",
    "_etext",
    "__start_rodata",
    "__init_begin",
    "__init_end",
    "_sdata",
    "__bss_start",
    "_end",
    "swapper_pg_dir",
    "__kfence_pool",
    "rodata_full",
    "kfence_early_init",
    "__kfence_alloc",
    "parse_kfence_early_init",
    "vabits_actual",
    "bm_pud",
    "bm_pmd",
    "bm_pte",
];

/// Functions the init also names (with their ends, `name.end`) for ordered_link:
/// functions of generic mm code (`mm/sparse-vmemmap.c`) that zero a new table with
/// `memset` and link it with `p?d_populate_kernel`, nothing between: the tracer sees
/// those links unordered on every kernel (a finding about the kernel, reported as such;
/// see README). `set_swapper_pgd` (arm64, out of line: `WRITE_ONCE` then `dsb`) is where
/// those links land for a folded top level (a 52-bit kernel on a 48-bit CPU); the arm64
/// mapping path reaches it only after `init_clear_pgtable`'s barrier.
pub const VMEMMAP_POPULATE: &[&str] = &[
    "vmemmap_pte_populate",
    "vmemmap_pmd_populate",
    "vmemmap_pud_populate",
    "vmemmap_p4d_populate",
    "vmemmap_pgd_populate",
    "set_swapper_pgd",
];

/// The functions `ptcheck kernel-costs` brackets (the seed's cover letter timed
/// `map_mem`; it is static and often inlined into `paging_init`).
pub const COSTS: &[&str] = &["map_mem", "paging_init"];

/// 6.9+'s early kernel mapping (arch/arm64/kernel/pi/map_kernel.c): with a relocated
/// (KASLR) kernel it unmaps the text, issues `dsb ishst; isb; tlbi vmalle1; isb` and
/// maps it again read-only, with no DSB completing the TLBI before the new entries:
/// the tracer's bbm sees every text entry remade before its invalidation completed (a
/// finding about the kernel, reported as such; see README). Both the break and the
/// remake are stores of this function.
pub const EARLY_MAP_RANGE: &str = "__pi_map_range";

/// What the console said about the kernel.
#[derive(Clone, Debug, Default)]
pub struct KernelFacts {
    /// `uname -r`, when printed.
    pub release: Option<String>,
    /// Symbol addresses by name.
    pub symbols: BTreeMap<String, u64>,
    /// /proc/iomem's "Kernel code" and "Kernel data" (physical, end exclusive).
    pub iomem: BTreeMap<String, (u64, u64)>,
}

impl KernelFacts {
    /// Take in one console line (others are ignored).
    pub fn feed(&mut self, line: &str) {
        if let Some(rest) = line.trim().strip_prefix(RELEASE_PREFIX) {
            self.release = Some(rest.trim().to_string());
        } else if let Some(rest) = line.trim().strip_prefix(IOMEM_PREFIX) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let [name, a, b] = f[..] {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    self.iomem.insert(name.to_string(), (a, b + 1));
                }
            }
        } else if let Some(rest) = line.trim().strip_prefix(SYMBOL_PREFIX) {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(addr)) = (it.next(), it.next()) {
                if let Ok(a) = u64::from_str_radix(addr, 16) {
                    self.symbols.insert(name.to_string(), a);
                }
            }
        }
    }

    /// The function `name` covers `[start, end)`, as kallsyms lists it.
    pub fn function(&self, name: &str) -> Option<(u64, u64)> {
        Some((self.sym(name)?, self.sym(&format!("{name}.end"))?))
    }

    /// The release's `(major, minor)`, when `uname -r` was printed and parses.
    pub fn version(&self) -> Option<(u32, u32)> {
        let mut it = self.release.as_deref()?.split(['.', '-', '+']).map(|p| p.parse::<u32>().ok());
        Some((it.next()??, it.next()??))
    }

    /// A symbol's address.
    pub fn sym(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// The named symbols, or the first one missing.
    ///
    /// # Errors
    /// The name of a symbol the kernel did not list.
    pub fn syms<const N: usize>(&self, names: [&'static str; N]) -> Result<[u64; N], &'static str> {
        let mut out = [0; N];
        for (o, n) in out.iter_mut().zip(names) {
            *o = self.sym(n).ok_or(n)?;
        }
        Ok(out)
    }

    /// `linux-<major>.<minor>` from the release (`6.12.117+deb13-arm64` → `linux-6.12`),
    /// the backend name reports use.
    pub fn backend_id(&self) -> String {
        let r = self.release.as_deref().unwrap_or("unknown");
        let mm: Vec<&str> = r.split(['.', '-', '+']).take(2).collect();
        format!("linux-{}", mm.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_page_in_the_image_is_named_by_its_data_symbol() {
        let dir = std::env::temp_dir().join(format!("ptcheck-sysmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = "ffffc00080000000 T _text\nffffc00080010000 T _stext\nffffc00080410000 B init_pg_dir\n\
                   ffffc00080420000 B init_pg_end\nffffc00080421000 B early_init_stack\nffffc00080430000 B _end\n";
        std::fs::write(dir.join("System.map"), map).unwrap();
        let m = SystemMap::find(&dir.join("Image")).unwrap();
        assert_eq!(m.image_name(0x41_8258).as_deref(), Some("init_pg_dir+0x8258"));
        assert_eq!(m.image_name(0x42_0000).as_deref(), Some("init_pg_end+0x0"));
        assert_eq!(m.image_name(0x43_0000), None, "past _end");
        assert_eq!(m.name(0xffffc000_80010040).as_deref(), Some("_stext+0x40"), "text names stay text-only");
    }

    #[test]
    fn console_lines_give_the_facts() {
        let mut f = KernelFacts::default();
        for l in [
            "[    1.0] random kernel line",
            "PTCHECK-RELEASE 6.12.117+deb13-arm64",
            "PTCHECK-SYM _stext ffff800080010000",
            "PTCHECK-SYM bogus zz",
            "PTCHECK-IOMEM Kernel_data 41be0000 41e8ffff",
        ] {
            f.feed(l);
        }
        assert_eq!(f.backend_id(), "linux-6.12");
        assert_eq!(f.sym("_stext"), Some(0xffff_8000_8001_0000));
        assert_eq!(f.sym("bogus"), None);
        assert_eq!(f.iomem.get("Kernel_data"), Some(&(0x41be_0000, 0x41e9_0000)));
        assert_eq!(f.syms(["_stext", "_etext"]), Err("_etext"));
    }
}

/// A self-built kernel's `System.map` (text symbols, link-time addresses), to name the
/// PCs the tracer reports. Debian's kernels ship a stub: they get none.
#[derive(Clone, Debug, Default)]
pub struct SystemMap {
    /// (address, name), sorted.
    text: Vec<(u64, String)>,
    /// Every symbol of the image (text, data, bss), sorted: names a table's page.
    all: Vec<(u64, String)>,
    /// `_text` and `_end` at link time.
    text_start: u64,
    /// See `text_start`.
    end: u64,
}

impl SystemMap {
    /// `System.map` next to the kernel, or at the root of the kbuild `O=` directory the
    /// Image was built in (`O/arch/arm64/boot/Image`).
    pub fn find(kernel: &std::path::Path) -> Option<SystemMap> {
        let dir = kernel.parent()?;
        let candidates = [dir.join("System.map"), dir.join("../../../System.map")];
        let text = candidates.iter().find_map(|p| std::fs::read_to_string(p).ok())?;
        let of = |kinds: &[&str]| {
            let mut syms: Vec<(u64, String)> = text
                .lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    let (a, t, n) = (it.next()?, it.next()?, it.next()?);
                    kinds.contains(&t).then(|| Some((u64::from_str_radix(a, 16).ok()?, n.to_string())))?
                })
                .collect();
            syms.sort();
            syms
        };
        let at = |suffix: &str| {
            text.lines().find_map(|l| l.strip_suffix(suffix).and_then(|a| u64::from_str_radix(a, 16).ok()))
        };
        let (text_start, end) = (at(" T _text")?, at(" B _end").or_else(|| at(" A _end")).unwrap_or(0));
        let all = of(&["t", "T", "W", "w", "d", "D", "b", "B", "r", "R"]);
        Some(SystemMap { text: of(&["t", "T", "W", "w"]), all, text_start, end })
    }

    /// The address of the text symbol `name`.
    pub fn address(&self, name: &str) -> Option<u64> {
        self.text.iter().find(|(_, n)| n == name).map(|(a, _)| *a)
    }

    /// The address of the symbol `name` of any section (data and bss too).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.all.iter().find(|(_, n)| n == name).map(|(a, _)| *a)
    }

    /// The address of the first symbol above `addr`: where an object at `addr` ends
    /// at the latest.
    pub fn next_after(&self, addr: u64) -> Option<u64> {
        let i = self.all.partition_point(|(a, _)| *a <= addr);
        self.all.get(i).map(|(a, _)| *a)
    }

    /// `name+0xoff` for `offset` bytes into the image, by every symbol (a table in the
    /// image's data or bss: `init_pg_dir+0x4000`); `None` past `_end`.
    pub fn image_name(&self, offset: u64) -> Option<String> {
        let addr = self.text_start.checked_add(offset).filter(|&a| a < self.end)?;
        let i = self.all.partition_point(|(a, _)| *a <= addr).checked_sub(1)?;
        let (a, n) = &self.all[i];
        Some(format!("{n}+{:#x}", addr - a))
    }

    /// `name+0xoff` for a link-time address.
    pub fn name(&self, addr: u64) -> Option<String> {
        let i = self.text.partition_point(|(a, _)| *a <= addr).checked_sub(1)?;
        let (a, n) = &self.text[i];
        Some(format!("{n}+{:#x}", addr - a))
    }

    /// `_text` at link time.
    pub fn text_start(&self) -> u64 {
        self.text_start
    }
}

/// A tracer PC in words: `PC 0x… <name+0x…> (0x…)`, the name where `name` knows it.
pub fn describe_pc(pc: u64, insn: u32, name: Option<String>) -> String {
    match name {
        Some(s) => format!("PC {pc:#x} <{s}> ({insn:#010x})"),
        None => format!("PC {pc:#x} ({insn:#010x})"),
    }
}

/// What `--count-calls NAME` counts in `kernel`: the function's name, entry VA, and
/// why it is not the one asked for (empty when it is). `map_mem` is static and often
/// inlined into `paging_init`, which is then counted.
///
/// # Errors
/// No System.map next to the kernel (a kernel not built here: its names are known only
/// once it runs), or neither the function nor a stand-in is in it.
pub fn bracket(kernel: &std::path::Path, name: &str) -> anyhow::Result<(String, u64, String)> {
    let map = SystemMap::find(kernel).ok_or_else(|| {
        anyhow::anyhow!(
            "--count-calls {name}: {} has no System.map next to it, so where {name} is is not known before it \
             boots (a Debian kernel: build one here with `cargo xtask linux --build`): cannot count",
            kernel.display()
        )
    })?;
    if let Some(a) = map.address(name) {
        return Ok((name.to_string(), a, String::new()));
    }
    let stand_in = match name {
        "map_mem" => Some("paging_init"),
        _ => None,
    };
    match stand_in.and_then(|s| map.address(s).map(|a| (s, a))) {
        Some((s, a)) => Ok((s.to_string(), a, format!(" ({name} is not in the System.map: inlined into {s})"))),
        None => anyhow::bail!("--count-calls {name}: not in the kernel's System.map (inlined or static): cannot count"),
    }
}
