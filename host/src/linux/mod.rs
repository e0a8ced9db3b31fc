//! Real Linux kernels under test (a first slice): boot an arm64 kernel under QEMU with
//! its RAM shared through a memfd, wait for its init to say it is up, stop the vCPU
//! through the gdbstub, read TTBR1_EL1 and TCR_EL1, and walk the tables the kernel
//! built, with the same walker as every other run.
//!
//! What is judged (structure, not yet a model of the kernel's layout): every reachable
//! table's invalid entries are exactly zero (so every table was cleared before it was
//! linked), no reserved encodings or tables reached twice, and no mapping is both
//! writable and executable at EL1. Table descriptors without UXNTable are listed (the
//! kernel's early fixmap chain has none, by design).

pub mod check;
pub mod command;
pub mod dtb;
pub mod gdb;
pub mod inspection;
pub mod layout;
pub mod symbols;

pub use check::judge;
pub use inspection::{Finding, Inspection};

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use ptcheck_shared::{KernelConfig, Prot, TranslationConfig};

use crate::backend::guest_ram::GuestRam;
use crate::walker::walk;
use layout::Layout;
use symbols::KernelFacts;

/// The line the init prints once userspace runs (`init_mode`, `ptcheck_mode=marker`).
pub const UP_MARKER: &str = "PTCHECK-LINUX-UP";

/// How to boot a kernel.
#[derive(Clone, Debug)]
pub struct KernelRun {
    /// The kernel (an arm64 `Image`, or gzip'd as Debian ships it).
    pub kernel: PathBuf,
    /// The initramfs whose `/init` prints [`UP_MARKER`].
    pub initrd: PathBuf,
    /// QEMU `-cpu`.
    pub cpu: String,
    /// How long boot may take.
    pub timeout: Duration,
    /// Test only: corrupt one entry in guest memory before the walk, so the check
    /// that owns that fault must fail.
    pub plant: Option<Plant>,
    /// Trace the boot with the tracer plugin (`None`: `--no-trace`, the system QEMU).
    pub trace: Option<crate::trace::TraceSetup>,
    /// The emulator, when not the system's (untraced) or the tracer's (traced):
    /// benchmarks compare QEMU versions.
    pub qemu: Option<PathBuf>,
}

impl KernelRun {
    /// The QEMU that boots it: the one asked for, else the tracer's (traced), else the
    /// system's.
    pub fn qemu_binary(&self) -> PathBuf {
        self.qemu
            .clone()
            .unwrap_or_else(|| self.trace.as_ref().map_or_else(|| crate::trace::qemu_binary(false), |t| t.qemu.clone()))
    }

    /// What a report of these boots tested (`seed` of the layout stream).
    pub fn tested(&self, command: &str, seed: u64) -> crate::tested::Tested {
        crate::tested::of_kernel(command, &self.qemu_binary(), &self.cpu, self.trace.is_some(), &[seed])
    }
}

/// A fault planted in the kernel's tables (test only): proves a check is real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Plant {
    /// An empty entry of a reachable table becomes non-zero but invalid (zeroing).
    Zeroing,
    /// A linear-map page points one page off (translation).
    Translation,
    /// A read-only page of the kernel image becomes writable (image).
    Image,
    /// A read-only, never-executable leaf becomes writable and executable (image: W+X).
    Wx,
    /// A table under the linear map loses PXNTable (table_bits).
    TableBits,
    /// A linear-map page gains the contiguous bit (policy: a shape the model does not predict).
    Policy,
}

/// The arm64 Image header's magic, at offset 56.
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// Checks that `bytes` are an arm64 kernel QEMU can boot: an `Image` (magic "ARM\x64"
/// at offset 56), or a gzip stream that unpacks, whole, to one (Debian's `vmlinuz`;
/// QEMU unpacks it itself, so a truncated one would only show as a kernel that never
/// comes up).
///
/// # Errors
/// One line naming what the file is instead and what to do.
pub fn check_kernel_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    unpacked_image(bytes).map(|_| ())
}

/// The arm64 Image in `bytes`: `None` when `bytes` is one already, else the image a
/// gzip stream unpacks to ([`check_kernel_bytes`] says what is wrong otherwise).
fn unpacked_image(bytes: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut image = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut image).map_err(|e| {
            anyhow::anyhow!("is a gzip stream that does not unpack ({e}): truncated or corrupt; fetch or copy it again")
        })?;
        if image.get(56..60) != Some(IMAGE_MAGIC) {
            bail!("is gzip'd but does not unpack to an arm64 kernel Image (no ARM\\x64 magic at offset 56)");
        }
        return Ok(Some(image));
    }
    match bytes.get(56..60) {
        Some(m) if m == IMAGE_MAGIC => check_efi_stub_whole(bytes).map(|()| None),
        _ if bytes.starts_with(b"\x7fELF") => {
            bail!("is an ELF file (vmlinux?), not an Image: give arch/arm64/boot/Image (or Image.gz)")
        }
        _ if bytes.len() < 64 => bail!("is {} bytes: too short for an arm64 kernel Image header", bytes.len()),
        _ => bail!("is not an arm64 kernel Image (no ARM\\x64 magic at offset 56, not gzip'd)"),
    }
}

/// An Image built with the EFI stub (every distribution kernel) starts with "MZ" and
/// carries a PE header whose section table says how long the file is: a shorter file
/// was truncated. An Image without the stub has nothing to compare against.
fn check_efi_stub_whole(bytes: &[u8]) -> anyhow::Result<()> {
    if !bytes.starts_with(b"MZ") {
        return Ok(());
    }
    let pe = goblin::pe::PE::parse(bytes)
        .map_err(|e| anyhow::anyhow!("has a PE (EFI stub) header that does not parse ({e}): truncated or corrupt"))?;
    let end =
        pe.sections.iter().map(|s| u64::from(s.pointer_to_raw_data) + u64::from(s.size_of_raw_data)).max().unwrap_or(0);
    if (bytes.len() as u64) < end {
        bail!("is {} bytes but its EFI stub's sections end at {end}: truncated; fetch or copy it again", bytes.len());
    }
    Ok(())
}

/// The regime TCR_EL1 describes for TTBR1 (TG1, T1SZ, DS).
///
/// # Errors
/// A granule or VA size no kernel configuration has.
pub fn regime(tcr: u64) -> anyhow::Result<TranslationConfig> {
    let va_bits = 64 - ((tcr >> 16) & 0x3f) as u32;
    let ds = tcr & (1 << 59) != 0;
    let kernel = match ((tcr >> 30) & 0b11, va_bits) {
        (0b10, 39) => KernelConfig::K4Va39,
        (0b10, 48) if !ds => KernelConfig::K4Va48,
        (0b10, 52) => KernelConfig::K4Va52,
        (0b01, 36) => KernelConfig::K16Va36,
        (0b01, 47) if !ds => KernelConfig::K16Va47,
        (0b01, 48) => KernelConfig::K16Va48,
        (0b01, 52) => KernelConfig::K16Va52,
        (0b11, 42) => KernelConfig::K64Va42,
        (0b11, 48) => KernelConfig::K64Va48,
        (0b11, 52) => KernelConfig::K64Va52,
        (tg, va) => bail!("TCR_EL1 {tcr:#x}: TG1 {tg:#b} with {va}-bit VAs is no kernel configuration ptcheck knows"),
    };
    TranslationConfig::new(kernel, va_bits).map_err(|_| anyhow::anyhow!("{va_bits}-bit VAs do not fit {kernel:?}"))
}

/// The regime named for the kernel's build: a 52-bit kernel (its config next to it
/// says `CONFIG_ARM64_VA_BITS=52`, or it has `vabits_actual`) running with fewer VA bits
/// is folded at run time (`4k-52@48`), not a 48-bit build.
pub fn built_for(cfg: TranslationConfig, facts: &KernelFacts, config_va_bits: Option<u32>) -> TranslationConfig {
    use ptcheck_shared::Granule;
    if cfg.va_bits == 52 || (facts.sym("vabits_actual").is_none() && config_va_bits != Some(52)) {
        return cfg;
    }
    let wide = match cfg.granule() {
        Granule::K4 => KernelConfig::K4Va52,
        Granule::K16 => KernelConfig::K16Va52,
        Granule::K64 => KernelConfig::K64Va52,
    };
    TranslationConfig::new(wide, cfg.va_bits).unwrap_or(cfg)
}

/// `CONFIG_ARM64_VA_BITS` from the kernel's config, if one sits next to it (`config`,
/// `config-*` as Debian and ptcheck's cache keep it, or `.config` of the build tree the
/// Image is in).
pub fn config_va_bits(kernel: &std::path::Path) -> Option<u32> {
    let dir = kernel.parent()?;
    let mut candidates = vec![dir.join("config"), dir.join("../../../.config")];
    if let Ok(rd) = std::fs::read_dir(dir) {
        candidates.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("config-"))),
        );
    }
    candidates.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("CONFIG_ARM64_VA_BITS=").and_then(|v| v.trim().parse().ok()))
    })
}

/// The root table's physical address in TTBR1_EL1 (BADDR; with 52-bit output
/// addresses PA[51:48] sits in bits [5:2]).
pub fn root_address(cfg: &TranslationConfig, ttbr1: u64) -> u64 {
    let baddr = ttbr1 & 0x0000_ffff_ffff_fffe;
    if cfg.pa_bits() == 52 {
        (baddr & !0x3c) | (((ttbr1 >> 2) & 0xf) << 48)
    } else {
        baddr
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A kernel ready for QEMU's loader: the raw Image (unpacked if it was gzip'd) and the
/// size the boot protocol says it needs (`image_size` in the header, bss included).
pub struct KernelImage {
    /// The raw Image's bytes.
    pub bytes: Vec<u8>,
    /// The file, when it is the raw Image itself (QEMU's loader reads it in place;
    /// a gzip'd one is unpacked into the boot's temporary directory).
    pub raw_path: Option<PathBuf>,
    /// Bytes from the load address the kernel uses (at least the file).
    pub image_size: u64,
    /// The granule the header's flags name (12 when unstated): the tracer's until the
    /// kernel writes TCR_EL1.
    page_shift: u32,
}

impl KernelImage {
    /// The page shift the Image header states.
    pub fn page_shift(&self) -> u32 {
        self.page_shift
    }
}

/// Read and check `path` ([`check_kernel_bytes`]), unpacking a gzip'd one.
///
/// # Errors
/// Unreadable, or not a whole arm64 kernel (one line naming which).
pub fn load_kernel(path: &std::path::Path) -> anyhow::Result<KernelImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read kernel {}", path.display()))?;
    let (bytes, raw_path) =
        match unpacked_image(&bytes).map_err(|e| anyhow::anyhow!("kernel {} {e}", path.display()))? {
            Some(image) => (image, None),
            None => (bytes, Some(std::fs::canonicalize(path)?)),
        };
    // Header (Documentation/arch/arm64/booting.rst): text_offset at 8, image_size at 16.
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    if word(8) != 0 {
        bail!(
            "kernel {} has text_offset {:#x}: ptcheck loads kernels at 2 MiB boundaries (text_offset 0, Linux 5.10+)",
            path.display(),
            word(8)
        );
    }
    let image_size = word(16).max(bytes.len() as u64);
    // flags, bits [2:1]: the kernel's page size (1: 4K, 2: 16K, 3: 64K; 0: unstated).
    let page_shift = match (word(24) >> 1) & 3 {
        2 => 14,
        3 => 16,
        _ => 12,
    };
    Ok(KernelImage { bytes, raw_path, image_size, page_shift })
}

/// Boot `run` on `layout`, stop the kernel once its init is up, read where its tables
/// are and walk them. QEMU is killed and the loader files removed before this returns,
/// whatever happened.
///
/// # Errors
/// QEMU cannot start, the kernel does not reach init in time (the console's last
/// lines say why), or the gdbstub cannot be read.
pub fn boot_and_inspect(
    run: &KernelRun,
    image: &KernelImage,
    layout: &Layout,
) -> anyhow::Result<(Inspection, GuestRam)> {
    let initrd = std::fs::metadata(&run.initrd)
        .with_context(|| format!("cannot read initramfs {} (cargo xtask linux builds one)", run.initrd.display()))?
        .len();
    if initrd == 0 {
        bail!("initramfs {} is empty (cargo xtask linux builds one)", run.initrd.display());
    }
    // The initramfs may have been rebuilt since the layout was made (a reproducer
    // outlives it): it goes where the layout put it and must fit before the DTB.
    let mut layout = layout.clone();
    layout.initrd.end = layout.initrd.start + initrd;
    if layout.initrd.end > layout.dtb {
        bail!(
            "initramfs {} ({initrd} bytes) does not fit the layout's room for it ({:#x}..{:#x})",
            run.initrd.display(),
            layout.initrd.start,
            layout.dtb
        );
    }
    layout.validate(image.image_size).map_err(|e| anyhow::anyhow!("layout cannot be booted: {e}"))?;
    let dir = tempdir()?;
    let result = boot_in(run, image, &layout, &dir.0);
    drop(dir);
    result
}

/// What QEMU's loader reads for one file: a file in place, or bytes written first.
enum Loaded<'a> {
    File(PathBuf),
    Bytes(&'a [u8]),
}

/// A private directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<TempDir> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // A run that was killed (SIGKILL skips Drop) left its directory: remove those
    // whose process is gone.
    if n == 0 {
        for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("ptcheck-linux-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let d = std::env::temp_dir().join(format!("ptcheck-linux-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(TempDir(d))
}

fn boot_in(
    run: &KernelRun,
    image: &KernelImage,
    layout: &Layout,
    dir: &std::path::Path,
) -> anyhow::Result<(Inspection, GuestRam)> {
    let span = layout.ram_span();
    let qemu = run.qemu_binary();
    let base = dtb::dump_qemu_dtb(&qemu, &run.cpu, span, dir)?;
    let tree = dtb::rewrite(&base, layout, layout.initrd.end)?;
    // Files QEMU's loader reads: the kernel and initramfs in place when they can be,
    // the rest written to `dir` (removed after the boot).
    let stub = layout::entry_stub(layout.dtb, layout.kernel);
    let kernel = match &image.raw_path {
        Some(p) => Loaded::File(p.clone()),
        None => Loaded::Bytes(&image.bytes),
    };
    let files = [
        ("Image", kernel, layout.kernel),
        ("initrd", Loaded::File(std::fs::canonicalize(&run.initrd)?), layout.initrd.start),
        ("dtb", Loaded::Bytes(&tree), layout.dtb),
        ("stub", Loaded::Bytes(&stub), layout.stub),
    ];
    let ram = GuestRam::with_size(span)?;
    for r in layout.poisoned() {
        ram.fill(r.start, r.len(), layout::POISON)?;
    }
    let port = free_port()?;
    let mem = format!("memory-backend-file,id=mem,size={span},mem-path={},share=on", ram.child_path());
    let mut cmd = Command::new(&qemu);
    let trace_file = dir.join("trace.jsonl");
    crate::trace::use_own_files(&mut cmd, &qemu);
    if let Some(t) = &run.trace {
        let arg = t.plugin_arg(&crate::trace::PluginArgs {
            out: &trace_file,
            ram: &ram.child_path(),
            ram_base: ptcheck_shared::abi::layout::RAM_BASE,
            ram_size: span,
            page_shift: image.page_shift(),
            tables: &[],
            links_all: false,
        })?;
        cmd.arg("-plugin").arg(arg);
    }
    cmd.args(["-M", "virt,memory-backend=mem", "-m", &format!("{}M", span >> 20), "-object", &mem])
        .args(["-cpu", &run.cpu, "-smp", "1", "-nodefaults", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio", "-no-reboot", "-nic", "none", "-gdb", &format!("tcp:127.0.0.1:{port}")]);
    for (name, what, addr) in files {
        let f = match what {
            Loaded::File(p) => p,
            Loaded::Bytes(b) => {
                let f = dir.join(name);
                std::fs::write(&f, b).with_context(|| format!("cannot write {}", f.display()))?;
                f
            }
        };
        if f.to_string_lossy().contains(',') {
            bail!("{} has a comma in its path, which QEMU's -device option cannot take: move it", f.display());
        }
        let cpu = if name == "stub" { ",cpu-num=0" } else { "" };
        cmd.args(["-device", &format!("loader,file={},addr={addr:#x},force-raw=on{cpu}", f.display())]);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    crate::backend::qemu::die_with_parent(&mut cmd);
    let start = Instant::now();
    let mut child =
        cmd.spawn().with_context(|| format!("cannot start {} (install qemu-system-arm)", qemu.display()))?;
    let (tx, rx) = mpsc::channel();
    for out in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    // Only the readers hold senders: when QEMU exits, the channel disconnects.
    drop(tx);
    let result = (|| {
        let mut tail: Vec<String> = Vec::new();
        let mut facts = KernelFacts::default();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains(UP_MARKER) => break,
                Ok(line) if line.starts_with("ptcheck-tracer:") => {
                    bail!("the tracer plugin failed (not the kernel's fault): {line}; rebuild it or pass --no-trace")
                }
                Ok(line) => {
                    facts.feed(&line);
                    tail.push(line);
                    if tail.len() > 12 {
                        tail.remove(0);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("QEMU exited before the kernel's init was up; the console's last lines:\n{}", tail.join("\n"))
                }
            }
            if start.elapsed() > run.timeout {
                bail!(
                    "the kernel's init was not up within {:?}; the console's last lines:\n{}",
                    run.timeout,
                    if tail.is_empty() { "(nothing: the kernel printed no line)".to_string() } else { tail.join("\n") }
                );
            }
        }
        let boot_secs = start.elapsed().as_secs_f64();
        let mut g = gdb::Gdb::connect(port, Duration::from_secs(5))?;
        g.interrupt()?;
        g.load_registers()?;
        let (ttbr1, tcr, cpsr) = (g.read_register("TTBR1_EL1")?, g.read_register("TCR_EL1")?, g.read_register("cpsr")?);
        let mair = g.read_register("MAIR_EL1")?;
        let cfg = built_for(regime(tcr)?, &facts, config_va_bits(&run.kernel));
        let root = root_address(&cfg, ttbr1);
        if let Some(p) = run.plant {
            let before = Inspection {
                cfg,
                ttbr1,
                tcr,
                mair,
                el: 1,
                walk: walk(&cfg, root, &ram),
                facts: facts.clone(),
                boot_secs,
                observed: None,
                system_map: None,
                qemu_peak_kib: None,
                qemu_anon_kib: None,
            };
            plant(&before, layout, &ram, p)?;
        }
        let walk = walk(&cfg, root, &ram);
        let qemu_peak_kib = status_kib(child.id(), "VmHWM:");
        let qemu_anon_kib = status_kib(child.id(), "RssAnon:");
        // The tracer writes its counts as QEMU exits: end QEMU through the gdbstub.
        let observed = run.trace.as_ref().map(|_| {
            let _ = g.kill();
            if exited_within(&mut child, Duration::from_secs(10)) {
                crate::trace::read(&trace_file).map(|mut v| v.remove(0)).map_err(|e| format!("{e:#}"))
            } else {
                Err("QEMU did not exit within 10 s of the gdbstub's kill: the trace has no summary".into())
            }
        });
        let system_map = observed.as_ref().and_then(|_| symbols::SystemMap::find(&run.kernel));
        Ok(Inspection {
            cfg,
            ttbr1,
            tcr,
            mair,
            el: (cpsr >> 2) & 0b11,
            walk,
            facts,
            boot_secs,
            observed,
            system_map,
            qemu_peak_kib,
            qemu_anon_kib,
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    // A boot that never reached the check point: what the tracer had already seen is
    // still evidence (its findings are written as they happen).
    let result = match (result, &run.trace) {
        (Err(e), Some(_)) => match crate::trace::read(&trace_file).ok().and_then(|mut v| v.pop()) {
            Some(seen) => Err(anyhow::Error::new(NotUp {
                why: format!("{e:#}"),
                seen,
                system_map: symbols::SystemMap::find(&run.kernel),
                load_pa: layout.kernel,
            })),
            None => Err(e),
        },
        (r, _) => r,
    };
    result.map(|i| (i, ram))
}

/// The kernel did not reach its init (`why`), and the tracer had seen `seen` by then.
#[derive(Debug)]
pub struct NotUp {
    /// The boot's failure, in words.
    pub why: String,
    /// What the tracer saw from reset to then (no summary).
    pub seen: crate::trace::Observed,
    /// The kernel's System.map, when built here, and where it was loaded: names PCs
    /// (no kallsyms yet; a KASLR'd kernel's names would be off, so only its own
    /// link-time addresses, as small kernels run, are named).
    pub system_map: Option<symbols::SystemMap>,
    /// See `system_map`.
    pub load_pa: u64,
}

impl std::fmt::Display for NotUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for NotUp {}

impl NotUp {
    /// The findings that are failures whatever happened after them: tlbi (a VA used
    /// before its invalidation completed) and zeroed_at_link (stale entries at a link).
    /// bbm and ordered_link wait for the kernel's symbols (their kernel findings are
    /// named by function), so they are listed, not failed.
    pub fn findings(&self) -> Vec<Finding> {
        use ptcheck_shared::trace::{OrderedBy, Violation};
        let name = |pc: u64, insn: u32| {
            let sym = self.system_map.as_ref().and_then(|m| {
                let link = if pc >> 63 == 1 { pc } else { pc.wrapping_sub(self.load_pa).wrapping_add(m.text_start()) };
                m.name(link)
            });
            symbols::describe_pc(pc, insn, sym)
        };
        let mut out = Vec::new();
        for f in self.seen.findings.iter().take(8) {
            let tlbi = f.violation == Violation::UsedBeforeInvalidated;
            out.push(Finding {
                check: if tlbi { "tlbi" } else { "bbm" },
                failure: tlbi,
                unchecked: false,
                what: format!("before the kernel stopped: {}", crate::trace::describe(f, &name)),
            });
        }
        for l in self.seen.links.iter().filter(|l| l.stale > 0).take(8) {
            out.push(Finding {
                check: "zeroed_at_link",
                failure: true,
                unchecked: false,
                what: format!(
                    "before the kernel stopped: table {:#x} linked at entry {:#x} by {} with {} stale entries",
                    l.table_pa,
                    l.entry_pa,
                    name(l.pc, l.insn),
                    l.stale
                ),
            });
        }
        let unordered = self.seen.links.iter().filter(|l| l.live && l.ordered_by == OrderedBy::Nothing).count();
        if unordered > 0 {
            out.push(Finding {
                check: "ordered_link",
                failure: false,
                unchecked: true,
                what: format!("{unordered} unordered links before the kernel stopped (not judged without its symbols)"),
            });
        }
        out
    }
}

/// One KiB figure of a process's `/proc/PID/status` (`VmHWM:`, `RssAnon:`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(field))?.split_whitespace().next()?.parse().ok()
}

/// Whether `child` exits within `limit`.
fn exited_within(child: &mut std::process::Child, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Plant `p` in the tables `i` walked (test only).
fn plant(i: &Inspection, layout: &Layout, ram: &GuestRam, p: Plant) -> anyhow::Result<()> {
    use crate::backend::PhysMemory as _;
    use ptcheck_shared::Descriptor;
    let (cfg, w) = (&i.cfg, &i.walk);
    let (lo, hi) = (check::page_offset(cfg), check::linear_end(cfg));
    let linear_page = || {
        w.runs
            .iter()
            .find(|r| r.level == ptcheck_shared::Level::LEAF && r.va >= lo && r.va < hi && !r.desc.is_contiguous())
    };
    let rewrite = |va: u64, level: ptcheck_shared::Level, f: &dyn Fn(u64) -> u64| -> anyhow::Result<()> {
        let pa = w.entry_pa(cfg, level, va).context("no table holds it")?;
        let desc = ram.read_u64(pa).context("unreadable entry")?;
        ram.write(pa, &f(desc))
    };
    let page = cfg.page_size();
    match p {
        Plant::Zeroing => {
            // The first empty entry of the last table reached.
            let t = w.tables.last().context("no table to plant in")?;
            let n = cfg.entries(t.level) as u64;
            let pa = (0..n).map(|i| t.pa + 8 * i).find(|&pa| ram.read_u64(pa) == Some(0)).context("no empty entry")?;
            ram.write(pa, &0xdead_0000u64)
        }
        Plant::Translation => {
            let r = linear_page().context("no linear-map page")?;
            rewrite(r.va, r.level, &|d| d ^ page)
        }
        Plant::Image => {
            // The first page of rodata (however the checks find it) becomes writable.
            let ctx = check::Ctx::new(i, layout, &i.facts, ram);
            let va = ctx.sections().map_err(anyhow::Error::msg)?.rodata.next_multiple_of(page);
            rewrite(va, w.run_at(cfg, va).context("rodata unmapped")?.level, &|d| d & !Prot::RDONLY)
        }
        Plant::Wx => {
            // The first read-only, never-executable page: make it RW and executable.
            let r = w
                .runs
                .iter()
                .find(|r| r.level == ptcheck_shared::Level::LEAF && r.prot(cfg).0 & Prot::RDONLY != 0)
                .context("no read-only page")?;
            rewrite(r.va, r.level, &|d| d & !(Prot::RDONLY | Prot::PXN))
        }
        Plant::TableBits => {
            let t = w
                .tables
                .iter()
                .skip(1)
                .find(|t| t.va >= lo && t.va < hi && t.parent_desc.0 & Descriptor::PXN_TABLE != 0)
                .context("no table under the linear map")?;
            rewrite(t.va, ptcheck_shared::Level(t.level.0 - 1), &|d| d & !Descriptor::PXN_TABLE)
        }
        Plant::Policy => {
            let r = linear_page().context("no linear-map page")?;
            rewrite(r.va, r.level, &|d| d | Descriptor::CONT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcr_names_the_regime() {
        // The Debian 6.1 cloud kernel: TG1 4K, T1SZ 16.
        assert_eq!(regime(0x15001f5b5503510).unwrap().to_string(), "4k-48");
        let tcr = |tg1: u64, t1sz: u64, ds: bool| (tg1 << 30) | (t1sz << 16) | (u64::from(ds) << 59);
        assert_eq!(regime(tcr(0b10, 12, true)).unwrap().to_string(), "4k-52");
        assert_eq!(regime(tcr(0b01, 17, false)).unwrap().to_string(), "16k-47");
        assert_eq!(regime(tcr(0b11, 22, false)).unwrap().to_string(), "64k-42");
        assert!(regime(tcr(0b10, 30, false)).is_err(), "34-bit VAs are no kernel configuration");
    }

    #[test]
    fn ttbr1_gives_the_root() {
        let cfg = TranslationConfig::parse("4k-48").unwrap();
        assert_eq!(root_address(&cfg, 0x0002_0000_4158_f001), 0x4158_f000);
        let lpa2 = TranslationConfig::parse("4k-52").unwrap();
        assert_eq!(root_address(&lpa2, 0x4158_f000 | (0b0011 << 2)), 0x0003_0000_4158_f000);
    }

    #[test]
    fn only_whole_arm64_kernels_boot() {
        use std::io::Write as _;
        let mut image = vec![0u8; 4096];
        image[56..60].copy_from_slice(IMAGE_MAGIC);
        check_kernel_bytes(&image).unwrap();
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let packed = gz(&image);
        check_kernel_bytes(&packed).unwrap();
        let err = |b: &[u8]| check_kernel_bytes(b).unwrap_err().to_string();
        assert!(err(&packed[..packed.len() - 10]).contains("truncated or corrupt"));
        assert!(err(&gz(b"#!/bin/sh\n")).contains("does not unpack to an arm64 kernel Image"));
        assert!(err(b"\x7fELF\x02\x01\x01").contains("ELF"));
        assert!(err(&[]).contains("too short"));
        assert!(err(&[0u8; 4096]).contains("no ARM"));
    }
}
