//! Memory layouts to boot a real kernel on: RAM banks with holes and odd edges,
//! `no-map` reserved regions, the kernel at a 2 MiB-aligned address in some bank, and
//! a command line, generated from (seed, index) so any one can be booted again.
//!
//! A layout is handed to the kernel the way firmware does it: a device tree (QEMU's
//! own for the same machine, with `/memory`, `/reserved-memory` and `/chosen`
//! rewritten; `dtb.rs`) and the arm64 boot protocol (x0 = the DTB, MMU off), entered
//! through a four-instruction stub, because QEMU's `-kernel`/`-dtb` would rewrite
//! `/memory` to one bank.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// Where the `virt` machine's RAM starts.
pub const RAM_BASE: u64 = 0x4000_0000;
/// QEMU puts its own DTB at the start of RAM even without `-kernel`: nothing of ours
/// is loaded below this (RAM there is still handed to the kernel).
pub const LOAD_FLOOR: u64 = RAM_BASE + (2 << 20);
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Smallest and largest RAM a layout gives the kernel.
pub const RAM_MIN: u64 = 512 * MIB;
/// See [`RAM_MIN`].
pub const RAM_MAX: u64 = 8 * GIB;

/// A physical range `[start, end)`; in reproducers `"0x40000000-0x60000000"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Range {
    /// Bytes.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether the two share a byte.
    pub const fn overlaps(&self, o: &Range) -> bool {
        self.start < o.end && o.start < self.end
    }

    /// Whether `o` lies inside.
    pub const fn contains(&self, o: &Range) -> bool {
        self.start <= o.start && o.end <= self.end
    }
}

impl From<Range> for String {
    fn from(r: Range) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for Range {
    type Error = String;
    fn try_from(s: String) -> Result<Range, String> {
        let hex = |t: &str| u64::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok();
        match s.split_once('-').map(|(a, b)| (hex(a), hex(b))) {
            Some((Some(start), Some(end))) if start <= end => Ok(Range { start, end }),
            _ => Err(format!("'{s}' is not a range like 0x40000000-0x60000000")),
        }
    }
}

/// Addresses as hex strings in reproducers.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let t = String::deserialize(d)?;
        u64::from_str_radix(t.trim_start_matches("0x"), 16).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

/// The command line a layout boots with (besides the console).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Cmdline {
    /// Nothing added: the kernel's defaults (Debian's: `rodata=full`, KFENCE built in
    /// but sampling off, so no pool).
    Default,
    /// `rodata=on`, KFENCE sampling on (an early pool): linear-map blocks and
    /// contiguous runs appear, the pool is page-mapped with guard pages.
    RodataOn,
    /// KFENCE sampling on with the default rodata: guard pages in a page-granular map.
    KfenceOn,
    /// `rodata=on kfence.sample_interval=0`: no pool, so (6.4+) a page-granular map.
    RodataOnKfenceOff,
    /// `rodata=full`: a page-granular linear map whatever the kernel's default (the
    /// seed's cover letter measured this case). Not generated: Debian's kernels
    /// default to it already (`Default`).
    RodataFull,
    /// A test fixture, never generated: the runner (as /init) resets the machine
    /// before its init is up, as a kernel in a reboot loop does (QEMU's `-no-reboot`
    /// ends the boot at the first reset).
    RunnerReboots,
    /// A test fixture, never generated: the runner powers the machine off before its
    /// init is up.
    RunnerPowersOff,
}

impl Cmdline {
    /// Every kind, in generation order.
    pub const ALL: [Cmdline; 4] = [Cmdline::Default, Cmdline::RodataOn, Cmdline::KfenceOn, Cmdline::RodataOnKfenceOff];

    /// The kernel parameters.
    pub const fn args(self) -> &'static str {
        match self {
            Cmdline::Default => "",
            Cmdline::RodataOn => "rodata=on kfence.sample_interval=100",
            Cmdline::KfenceOn => "kfence.sample_interval=100",
            Cmdline::RodataOnKfenceOff => "rodata=on kfence.sample_interval=0",
            Cmdline::RodataFull => "rodata=full",
            Cmdline::RunnerReboots | Cmdline::RunnerPowersOff => "",
        }
    }

    /// What the runner does as /init (`ptcheck_mode=`): print the marker and wait, or
    /// (the fixtures) reset or power off first.
    pub const fn runner_mode(self) -> &'static str {
        match self {
            Cmdline::RunnerReboots => "reboot",
            Cmdline::RunnerPowersOff => "poweroff",
            _ => "marker",
        }
    }

    /// Whether the command line asks for `rodata=on` (not full).
    pub const fn rodata_on(self) -> bool {
        matches!(self, Cmdline::RodataOn | Cmdline::RodataOnKfenceOff)
    }
}

/// One boot's memory layout and command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// RAM banks, ascending, disjoint, not touching.
    pub banks: Vec<Range>,
    /// `no-map` reserved regions (64 KiB-aligned, inside banks).
    pub no_map: Vec<Range>,
    /// Where the Image is loaded (2 MiB aligned, its whole `image_size` inside a bank).
    #[serde(with = "hex")]
    pub kernel: u64,
    /// The initramfs.
    pub initrd: Range,
    /// The DTB (its own 2 MiB-aligned slot; the kernel wants it not to cross 2 MiB).
    #[serde(with = "hex")]
    pub dtb: u64,
    /// The entry stub (in the DTB's slot, past the DTB).
    #[serde(with = "hex")]
    pub stub: u64,
    /// The command line.
    pub cmdline: Cmdline,
    /// `/chosen/kaslr-seed`; `None` boots with `nokaslr`.
    pub kaslr_seed: Option<u64>,
}

/// What RAM holds before the kernel runs where [`Layout::poisoned`] says: an invalid
/// descriptor (bit 0 clear) that is not zero, so a table the kernel links without
/// clearing shows in the zeroing check instead of passing on QEMU's zeroed RAM.
pub const BANK_POISON: u64 = 0x5054_4348_4543_4b00;
/// How much of the top of each bank is poisoned: the kernel takes its early page
/// tables from memblock top-down, so they come from here.
pub const POISON_TOP: u64 = 64 * MIB;

/// Room the DTB and the stub get.
pub const DTB_SLOT: u64 = 2 * MIB;
/// Where the stub sits inside the DTB's slot.
pub const STUB_OFFSET: u64 = 1536 * 1024;

impl Layout {
    /// Bytes of guest RAM QEMU must provide (`-m`): up to the end of the last bank.
    pub fn ram_span(&self) -> u64 {
        let top = self.banks.iter().map(|b| b.end).max().unwrap_or(RAM_BASE);
        (top - RAM_BASE).next_multiple_of(2 * MIB)
    }

    /// The ranges poisoned before boot: the top [`POISON_TOP`] of each bank (QEMU's
    /// loader writes the kernel, initramfs, DTB and stub over it afterwards).
    pub fn poisoned(&self) -> Vec<Range> {
        self.banks.iter().map(|b| Range { start: b.end.saturating_sub(POISON_TOP).max(b.start), end: b.end }).collect()
    }

    /// RAM the kernel is told about, in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.banks.iter().map(Range::len).sum()
    }

    /// The kernel parameters (console and init mode included).
    pub fn bootargs(&self) -> String {
        // earlycon: the kernel's first lines (a crash before the console driver is up
        // says where) on virt's PL011.
        let mut s =
            format!("earlycon=pl011,0x9000000 console=ttyAMA0 panic=-1 ptcheck_mode={}", self.cmdline.runner_mode());
        for extra in [self.cmdline.args(), if self.kaslr_seed.is_none() { "nokaslr" } else { "" }] {
            if !extra.is_empty() {
                s.push(' ');
                s.push_str(extra);
            }
        }
        s
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let banks: Vec<String> = self.banks.iter().map(Range::to_string).collect();
        let no_map: Vec<String> = self.no_map.iter().map(Range::to_string).collect();
        format!(
            "RAM {} MiB in {} [{}]; no-map [{}]; kernel at {:#x}; {}; {}",
            self.ram_bytes() >> 20,
            if self.banks.len() == 1 { "1 bank".to_string() } else { format!("{} banks", self.banks.len()) },
            banks.join(", "),
            no_map.join(", "),
            self.kernel,
            if self.cmdline.args().is_empty() { "default cmdline" } else { self.cmdline.args() },
            self.kaslr_seed.map_or("nokaslr".to_string(), |s| format!("KASLR seed {s:#x}"))
        )
    }

    /// Checks a layout (generated or read from a reproducer) can be booted.
    ///
    /// # Errors
    /// What is wrong with it, in one line.
    pub fn validate(&self, image_size: u64) -> Result<(), String> {
        if self.banks.is_empty() {
            return Err("no RAM bank".into());
        }
        for w in self.banks.windows(2) {
            if w[0].end >= w[1].start {
                return Err(format!("banks {} and {} are not ascending with a hole between", w[0], w[1]));
            }
        }
        if self.banks[0].start < RAM_BASE || self.banks.iter().any(|b| b.is_empty() || !b.start.is_multiple_of(4096)) {
            return Err(format!("banks must be non-empty, page-aligned and at or above {RAM_BASE:#x}"));
        }
        let span = self.ram_span();
        // Up to the cover letter's largest machine (512 GiB; `--ram`); the generated
        // layouts stay below 16 GiB.
        if !(RAM_MIN / 2..=512 * GIB).contains(&span) {
            return Err(format!("RAM spans {} MiB: out of 256 MiB..512 GiB", span >> 20));
        }
        let in_bank = |r: &Range| self.banks.iter().any(|b| b.contains(r));
        let kernel = Range { start: self.kernel, end: self.kernel + image_size };
        let dtb = Range { start: self.dtb, end: self.dtb + DTB_SLOT };
        if !self.kernel.is_multiple_of(2 * MIB) || self.kernel < LOAD_FLOOR || !in_bank(&kernel) {
            return Err(format!("kernel {kernel} must be 2 MiB aligned, above {LOAD_FLOOR:#x}, inside a bank"));
        }
        if !in_bank(&self.initrd) || self.initrd.start < LOAD_FLOOR {
            return Err(format!("initramfs {} must be inside a bank", self.initrd));
        }
        if !self.dtb.is_multiple_of(2 * MIB) || self.dtb < LOAD_FLOOR || self.stub != self.dtb + STUB_OFFSET {
            return Err(format!("DTB {:#x} must be 2 MiB aligned with the stub {STUB_OFFSET:#x} past it", self.dtb));
        }
        let loaded = [kernel, self.initrd, dtb];
        for (i, a) in loaded.iter().enumerate() {
            if loaded[i + 1..].iter().any(|b| a.overlaps(b)) {
                return Err("kernel, initramfs and DTB overlap".into());
            }
            if self.no_map.iter().any(|n| n.overlaps(a)) {
                return Err(format!("a no-map region overlaps {a}"));
            }
        }
        if self
            .no_map
            .iter()
            .any(|n| n.is_empty() || !n.start.is_multiple_of(0x10000) || !n.end.is_multiple_of(0x10000) || !in_bank(n))
        {
            return Err("no-map regions must be non-empty, 64 KiB aligned and inside a bank".into());
        }
        Ok(())
    }
}

/// What a layout must hold.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    /// The Image header's `image_size` (bss included).
    pub image_size: u64,
    /// The initramfs's size.
    pub initrd_size: u64,
}

struct Rng(ChaCha8Rng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.next_u64() % n
        }
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// An odd edge: none, a page, 64 KiB, or 2 MiB minus a page.
fn odd_edge(r: &mut Rng) -> u64 {
    r.pick(&[0, 0, 4096, 0x10000, 2 * MIB - 4096, 3 * 4096])
}

/// Layout `index` of the stream `seed` (reproducible: the same pair gives the same
/// layout on any machine).
pub fn generate(seed: u64, index: u64, needs: Needs) -> Layout {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let r = &mut Rng(rng);
    // Total RAM: mostly small (boots stay quick), sometimes up to 8 GiB.
    let total = match r.below(10) {
        0..=5 => RAM_MIN + r.below(3) * 256 * MIB,
        6..=8 => GIB + r.below(5) * 256 * MIB,
        _ => 2 * GIB + r.below(25) * 256 * MIB,
    };
    let n_banks = 1 + r.below(3);
    let kernel_room =
        needs.image_size.next_multiple_of(2 * MIB) + needs.initrd_size.next_multiple_of(2 * MIB) + DTB_SLOT + 2 * MIB;
    let mut banks = Vec::new();
    let mut at = RAM_BASE + odd_edge(r);
    let mut left = total;
    for i in 0..n_banks {
        let size = if i + 1 == n_banks { left } else { (left / (n_banks - i)) / (2 * MIB) * (2 * MIB) };
        let size = size.saturating_sub(odd_edge(r)).max(64 * MIB);
        banks.push(Range { start: at, end: at + size });
        left = left.saturating_sub(size);
        // A hole: from a page to 1 GiB, with an odd edge.
        let hole = r.pick(&[4096, 0x10000, 2 * MIB, 32 * MIB, 256 * MIB, GIB]) + odd_edge(r);
        at += size + hole.max(4096);
    }
    // The kernel goes into a bank big enough, at a 2 MiB-aligned place; the initramfs
    // and the DTB slot follow it.
    let fits: Vec<usize> = (0..banks.len())
        .filter(|&i| {
            let b = banks[i];
            b.end.saturating_sub(b.start.max(LOAD_FLOOR).next_multiple_of(2 * MIB)) >= kernel_room
        })
        .collect();
    let bank = if fits.is_empty() {
        // Too small everywhere: grow the first bank (rare with these sizes).
        banks[0].end = banks[0].start.max(LOAD_FLOOR).next_multiple_of(2 * MIB) + kernel_room;
        if banks.len() > 1 && banks[0].end >= banks[1].start {
            banks.truncate(1);
        }
        banks[0]
    } else {
        banks[r.pick(&fits)]
    };
    let lo = bank.start.max(LOAD_FLOOR).next_multiple_of(2 * MIB);
    let slots = (bank.end - kernel_room - lo) / (2 * MIB);
    let kernel = lo + r.below(slots + 1) * 2 * MIB;
    let initrd_start = (kernel + needs.image_size).next_multiple_of(2 * MIB);
    let initrd = Range { start: initrd_start, end: initrd_start + needs.initrd_size };
    let dtb = initrd.end.next_multiple_of(2 * MIB);
    let taken = Range { start: kernel, end: dtb + DTB_SLOT };
    // No-map regions: none, one or two, 64 KiB aligned, clear of what is loaded.
    let mut no_map: Vec<Range> = Vec::new();
    for _ in 0..r.below(3) {
        let b = banks[r.below(banks.len() as u64) as usize];
        let size = r.pick(&[0x10000, 0x30000, 2 * MIB, 2 * MIB + 0x10000, 32 * MIB]);
        let lo = b.start.next_multiple_of(0x10000);
        if b.end < lo + size {
            continue;
        }
        let start = lo + r.below((b.end - lo - size) / 0x10000 + 1) * 0x10000;
        let n = Range { start, end: start + size };
        if !n.overlaps(&taken) && !no_map.iter().any(|o| o.overlaps(&n)) && n.start >= LOAD_FLOOR {
            no_map.push(n);
        }
    }
    no_map.sort_by_key(|n| n.start);
    let cmdline = r.pick(&Cmdline::ALL);
    let kaslr_seed = (r.below(2) == 0).then(|| r.0.next_u64() | 1);
    Layout { banks, no_map, kernel, initrd, dtb, stub: dtb + STUB_OFFSET, cmdline, kaslr_seed }
}

/// One bank of `size` bytes at the bottom of RAM, nothing reserved, the kernel at the
/// first 2 MiB-aligned place, no KASLR, the default command line (`bench` sizes: the
/// seed's cover letter measured map_mem on 16 to 512 GiB).
///
/// # Errors
/// `size` does not hold the kernel, initramfs and DTB, or is not 2 MiB aligned.
pub fn one_bank(size: u64, needs: Needs) -> Result<Layout, String> {
    let kernel = LOAD_FLOOR.next_multiple_of(2 * MIB);
    let initrd_start = (kernel + needs.image_size).next_multiple_of(2 * MIB);
    let initrd = Range { start: initrd_start, end: initrd_start + needs.initrd_size };
    let dtb = initrd.end.next_multiple_of(2 * MIB);
    let bank = Range { start: RAM_BASE, end: RAM_BASE.saturating_add(size) };
    if size > 512 * GIB {
        return Err(format!("--ram {} GiB: at most 512 GiB (the cover letter's largest machine)", size >> 30));
    }
    if !size.is_multiple_of(2 * MIB) || bank.end < dtb + DTB_SLOT + 64 * MIB {
        return Err(format!(
            "--ram {} MiB: one bank must be 2 MiB aligned and hold the kernel, initramfs and DTB with room \
             ({} MiB at least)",
            size >> 20,
            (dtb + DTB_SLOT + 64 * MIB - RAM_BASE).div_ceil(MIB)
        ));
    }
    Ok(Layout {
        banks: vec![bank],
        no_map: Vec::new(),
        kernel,
        initrd,
        dtb,
        stub: dtb + STUB_OFFSET,
        cmdline: Cmdline::Default,
        kaslr_seed: None,
    })
}

/// The entry stub: the arm64 boot protocol's registers (x0 = DTB, x1..x3 = 0), then a
/// branch to the Image's first instruction. Hand-assembled (A64 encodings, Arm ARM C6).
pub fn entry_stub(dtb: u64, kernel: u64) -> Vec<u8> {
    let words: [u32; 6] = [
        0x5800_00c0, // ldr x0, .+0x18 (the DTB address below)
        0xaa1f_03e1, // mov x1, xzr
        0xaa1f_03e2, // mov x2, xzr
        0xaa1f_03e3, // mov x3, xzr
        0x5800_0084, // ldr x4, .+0x10 (the kernel address below)
        0xd61f_0080, // br x4
    ];
    let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    out.extend_from_slice(&dtb.to_le_bytes());
    out.extend_from_slice(&kernel.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEEDS: Needs = Needs { image_size: 40 << 20, initrd_size: 6 << 20 };

    #[test]
    fn layouts_are_reproducible_and_valid() {
        let mut cmdlines = std::collections::HashSet::new();
        let (mut multi, mut nomap, mut kaslr, mut big) = (0, 0, 0, 0);
        for i in 0..2000 {
            let l = generate(7, i, NEEDS);
            assert_eq!(l, generate(7, i, NEEDS), "layout {i} differs between two calls");
            l.validate(NEEDS.image_size).unwrap_or_else(|e| panic!("layout {i} ({}) invalid: {e}", l.describe()));
            assert!((RAM_MIN / 2..=RAM_MAX + GIB).contains(&l.ram_bytes()), "{}", l.describe());
            cmdlines.insert(l.cmdline);
            multi += usize::from(l.banks.len() > 1);
            nomap += usize::from(!l.no_map.is_empty());
            kaslr += usize::from(l.kaslr_seed.is_some());
            big += usize::from(l.ram_bytes() > 4 * GIB);
        }
        assert_eq!(cmdlines.len(), Cmdline::ALL.len());
        assert!(multi > 500 && nomap > 500 && kaslr > 500 && big > 20, "{multi} {nomap} {kaslr} {big}");
        assert_ne!(generate(7, 0, NEEDS), generate(8, 0, NEEDS));
        let l = generate(7, 5, NEEDS);
        let json = serde_json::to_string(&l).unwrap();
        assert!(json.contains(&format!("\"{:#x}\"", l.kernel)), "{json}");
        assert_eq!(serde_json::from_str::<Layout>(&json).unwrap(), l);
    }

    #[test]
    fn bad_layouts_are_named() {
        let mut l = generate(1, 0, NEEDS);
        l.kernel += 4096;
        assert!(l.validate(NEEDS.image_size).unwrap_err().contains("2 MiB aligned"));
        let mut l = generate(1, 0, NEEDS);
        l.banks.clear();
        assert!(l.validate(NEEDS.image_size).is_err());
    }

    #[test]
    fn stub_is_the_boot_protocol() {
        let s = entry_stub(0x4820_0000, 0x4400_0000);
        assert_eq!(s.len(), 40);
        assert_eq!(&s[24..32], &0x4820_0000u64.to_le_bytes());
        assert_eq!(&s[32..40], &0x4400_0000u64.to_le_bytes());
    }
}
