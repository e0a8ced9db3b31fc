//! One boot of a real kernel: QEMU started over a layout (its DTB rewritten, the
//! files placed by QEMU's loader, RAM in a memfd, the tracer when asked), the console
//! followed to the init marker, the vCPU stopped through the gdbstub and the tables
//! walked. QEMU is a [`Qemu`] guard, killed whatever way the boot ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::crash::{kind_from_console, CpuState, Crash, CrashKind};
use super::inspection::{Finding, Inspection, LinuxCheck, Severity};
use super::layout::{self, Layout};
use super::symbols::{self, KernelFacts};
use super::{built_for, config_va_bits, dtb, gdb, regime, root_address, KernelImage, KernelRun, UP_MARKER};
use crate::backend::guest_ram::GuestRam;
use crate::walker::walk;

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
    let layout = bootable(run, image, layout)?;
    let dir = tempdir()?;
    let result = boot_in(run, image, &layout, &dir.0);
    drop(dir);
    result
}

/// Boot `run` on `layout` until the tracer ends QEMU because its `stop=` function
/// returned (`TraceSetup::stop`): what it observed then (the bracket it stopped in),
/// and the seconds from QEMU's start. Nothing after that function is paid for.
///
/// # Errors
/// As [`boot_and_inspect`]: a kernel that crashes or hangs before the stop is named
/// as a [`Crash`]; one that reaches its init without the stop, or a trace without
/// it, is said in one line.
pub fn boot_until_stopped(
    run: &KernelRun,
    image: &KernelImage,
    layout: &Layout,
) -> anyhow::Result<(crate::trace::Observed, f64)> {
    let Some(stop) = run.trace.as_ref().and_then(|t| t.stop) else {
        bail!("boot_until_stopped needs a traced run with a stop function")
    };
    let layout = bootable(run, image, layout)?;
    let dir = tempdir()?;
    let ram = guest_ram(&layout)?;
    let boot = Boot {
        run,
        image,
        layout: &layout,
        dir: &dir.0,
        ram: &ram,
        port: free_port()?,
        trace_file: dir.0.join("trace.jsonl"),
    };
    let (mut qemu, mut console, start) = boot.launch()?;
    let waited = boot.wait_for_init(&mut console, start, &mut qemu);
    let secs = start.elapsed().as_secs_f64();
    qemu.end_if_running(boot.port);
    drop(qemu);
    let stopped =
        crate::trace::read(&boot.trace_file).ok().and_then(|v| v.into_iter().find(|o| o.stopped == Some(stop)));
    match (stopped, waited) {
        (Some(o), _) => Ok((o, secs)),
        (None, Ok(_)) => bail!(
            "the kernel reached its init but the tracer never saw the function at {stop:#x} return (its return \
             was translated before it was called, or it is not what the symbols say): not counted"
        ),
        (None, Err(e)) => Err(e),
    }
}

/// `layout` as this run boots it: the initramfs as big as it is now (a reproducer
/// outlives a rebuilt one), where the layout put it, and the whole checked.
fn bootable(run: &KernelRun, image: &KernelImage, layout: &Layout) -> anyhow::Result<Layout> {
    let initrd = run.initrd_size()?;
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
    Ok(layout)
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

/// QEMU for one boot, killed (and reaped) when dropped: every way out of a boot ends it.
struct Qemu(std::process::Child);

impl Qemu {
    /// End QEMU through the gdbstub `g` (its `k`) rather than by a signal, so its exit
    /// callbacks run and the tracer writes what it holds: whether it exited within 10 s.
    fn end_through(&mut self, g: &mut gdb::Gdb) -> bool {
        let _ = g.kill();
        exited_within(&mut self.0, Duration::from_secs(10))
    }
}

impl Qemu {
    /// If QEMU still runs, stop it through the gdbstub on `port` and end it there
    /// (`end_through`), so the tracer writes what it holds; else nothing.
    fn end_if_running(&mut self, port: u16) {
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        if let Ok(mut g) = gdb::Gdb::connect(port, Duration::from_secs(2)) {
            let _ = g.interrupt();
            self.end_through(&mut g);
        }
    }
}

/// The guest's RAM for `layout`: a memfd of its span, the tops of its banks poisoned
/// (`Layout::poisoned`) as every boot has them.
fn guest_ram(layout: &Layout) -> anyhow::Result<GuestRam> {
    let ram = GuestRam::with_size(layout.ram_span())?;
    for r in layout.poisoned() {
        ram.fill(r.start, r.len(), layout::BANK_POISON)?;
    }
    Ok(ram)
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The boot of one layout in `dir`: QEMU started, the console followed to the init
/// marker, the vCPU stopped through the gdbstub and the tables walked.
fn boot_in(
    run: &KernelRun,
    image: &KernelImage,
    layout: &Layout,
    dir: &std::path::Path,
) -> anyhow::Result<(Inspection, GuestRam)> {
    let ram = guest_ram(layout)?;
    let boot = Boot { run, image, layout, dir, ram: &ram, port: free_port()?, trace_file: dir.join("trace.jsonl") };
    let (mut qemu, mut console, start) = boot.launch()?;
    let result = boot
        .wait_for_init(&mut console, start, &mut qemu)
        .and_then(|facts| boot.stop_and_inspect(facts, start.elapsed().as_secs_f64(), &mut qemu));
    // A traced boot that stopped short (a hang still runs): end QEMU through the
    // gdbstub rather than by a signal, so the tracer writes what it saw last.
    if result.is_err() && run.trace.is_some() {
        qemu.end_if_running(boot.port);
    }
    drop(qemu);
    let trace_file = boot.trace_file;
    // A boot that never reached the check point: what the tracer had already seen is
    // still evidence (its findings are written as they happen).
    let result = match (result, &run.trace) {
        (Err(e), Some(_)) => match crate::trace::read(&trace_file).ok().and_then(|mut v| v.pop()) {
            Some(seen) => {
                let mut up = NotUp {
                    why: format!("{e:#}"),
                    crash: e.downcast_ref::<Crash>().cloned(),
                    seen,
                    system_map: symbols::SystemMap::find(&run.kernel),
                    load_pa: layout.kernel,
                };
                let writes = up.recent_writes();
                if let Some(c) = &mut up.crash {
                    c.details.extend(writes);
                }
                Err(anyhow::Error::new(up))
            }
            None => Err(e),
        },
        (r, _) => r,
    };
    result.map(|i| (i, ram))
}

/// One boot's parts: what runs, where, over which RAM, with which gdbstub port and
/// trace file.
struct Boot<'a> {
    run: &'a KernelRun,
    image: &'a KernelImage,
    layout: &'a Layout,
    /// Loader files that are not files already are written here.
    dir: &'a std::path::Path,
    ram: &'a GuestRam,
    port: u16,
    trace_file: PathBuf,
}

impl Boot<'_> {
    /// Start QEMU and follow its console: the guard, the console, when it started.
    fn launch(&self) -> anyhow::Result<(Qemu, Console, Instant)> {
        let mut cmd = self.qemu_command()?;
        let start = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} (install qemu-system-arm)", self.run.qemu_binary().display()))?;
        let mut qemu = Qemu(child);
        let console = Console::follow(&mut qemu.0);
        Ok((qemu, console, start))
    }

    /// The QEMU command line: the machine over `ram`, the gdbstub on `port`, the tracer
    /// when asked for, and QEMU's loader for the kernel, initramfs, DTB and entry stub
    /// (in place when they are files, else written to `dir`).
    fn qemu_command(&self) -> anyhow::Result<Command> {
        let Boot { run, image, layout, dir, ram, port, .. } = *self;
        let trace_file = self.trace_file.as_path();
        let span = layout.ram_span();
        let qemu = run.qemu_binary();
        let base = dtb::dump_qemu_dtb(&qemu, &run.qemu_cpu(), run.accel, span, dir)?;
        let tree = dtb::rewrite(&base, layout, layout.initrd.end)?;
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
        let mem = format!("memory-backend-file,id=mem,size={span},mem-path={},share=on", ram.child_path());
        let mut cmd = Command::new(&qemu);
        crate::trace::use_own_files(&mut cmd, &qemu);
        if let Some(t) = &run.trace {
            let arg = t.plugin_arg(&crate::trace::PluginArgs {
                out: trace_file,
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
            .args(run.accel.qemu_args())
            .args(["-cpu", &run.qemu_cpu(), "-smp", "1", "-nodefaults", "-display", "none", "-monitor", "none"])
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
        Ok(cmd)
    }

    /// Stop the vCPU through the gdbstub, read the translation registers, plant a fault
    /// if this is a test, walk the tables, and (traced) end QEMU so the tracer writes its
    /// summary.
    fn stop_and_inspect(&self, facts: KernelFacts, boot_secs: f64, qemu: &mut Qemu) -> anyhow::Result<Inspection> {
        let Boot { run, layout, ram, port, .. } = *self;
        let trace_file = self.trace_file.as_path();
        let mut g = gdb::Gdb::connect(port, Duration::from_secs(5))?;
        g.interrupt()?;
        g.load_registers()?;
        let (ttbr1, tcr, cpsr) = (g.read_register("TTBR1_EL1")?, g.read_register("TCR_EL1")?, g.read_register("cpsr")?);
        let mair = g.read_register("MAIR_EL1")?;
        let cfg = built_for(regime(tcr)?, &facts, config_va_bits(&run.kernel));
        let root = root_address(&cfg, ttbr1);
        let mut i = Inspection {
            cfg,
            ttbr1,
            tcr,
            mair,
            el: (cpsr >> 2) & 0b11,
            walk: walk(&cfg, root, ram),
            facts,
            boot_secs,
            observed: None,
            system_map: None,
            qemu_peak_kib: None,
            qemu_anon_kib: None,
        };
        if let Some(p) = run.plant {
            super::plant(&i, layout, ram, p)?;
            i.walk = walk(&cfg, root, ram);
        }
        let pid = qemu.0.id().to_string();
        i.qemu_peak_kib = crate::report::status_kib(&pid, "VmHWM:");
        i.qemu_anon_kib = crate::report::status_kib(&pid, "RssAnon:");
        // The tracer writes its counts as QEMU exits: end QEMU through the gdbstub.
        i.observed = run.trace.as_ref().map(|_| {
            if qemu.end_through(&mut g) {
                crate::trace::read(trace_file).map(|mut v| v.remove(0)).map_err(|e| format!("{e:#}"))
            } else {
                Err("QEMU did not exit within 10 s of the gdbstub's kill: the trace has no summary".into())
            }
        });
        i.system_map = i.observed.as_ref().and_then(|_| symbols::SystemMap::find(&run.kernel));
        Ok(i)
    }
}

/// QEMU's stdout and stderr, line by line. Only the reader threads hold senders: when
/// QEMU exits, the channel disconnects.
fn console_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
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
    rx
}

/// Console silence after which the kernel's progress is sampled through the gdbstub:
/// [`SAMPLES`] samples a second apart with no line meanwhile that show no progress
/// (`Boot::no_progress`) are a crash, named then instead of after the whole timeout.
const QUIET: Duration = Duration::from_secs(10);
const SAMPLES: usize = 3;
/// Console lines kept for a crash's report.
const TAIL: usize = 60;

/// The console being followed: what the kernel said about itself, its last lines and
/// when it last said anything.
struct Console {
    rx: mpsc::Receiver<String>,
    facts: KernelFacts,
    tail: Vec<String>,
    lines: u64,
    last_line: Instant,
}

/// Why following the console stopped.
enum Waited {
    /// The init marker.
    Up,
    /// The tracer plugin reported a failure (its line).
    TracerFailed(String),
    /// QEMU's output ended: it exited.
    Exited,
    /// The console has been silent for [`QUIET`].
    Quiet,
    /// The boot's timeout passed.
    TimedOut,
}

impl Console {
    fn follow(child: &mut std::process::Child) -> Console {
        Console {
            rx: console_lines(child),
            facts: KernelFacts::default(),
            tail: Vec::new(),
            lines: 0,
            last_line: Instant::now(),
        }
    }

    /// Lines until something ends the wait.
    fn wait(&mut self, start: Instant, timeout: Duration) -> Waited {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains(UP_MARKER) => return Waited::Up,
                Ok(line) if line.starts_with("ptcheck-tracer:") => return Waited::TracerFailed(line),
                Ok(line) => {
                    self.facts.feed(&line);
                    self.tail.push(line);
                    if self.tail.len() > TAIL {
                        self.tail.remove(0);
                    }
                    self.lines += 1;
                    self.last_line = Instant::now();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Waited::Exited,
            }
            if start.elapsed() > timeout {
                return Waited::TimedOut;
            }
            if self.last_line.elapsed() > QUIET {
                return Waited::Quiet;
            }
        }
    }
}

impl Boot<'_> {
    /// Follow the console until the init marker. A kernel that does not get there is a
    /// [`Crash`] (it panicked, oopsed, reset, powered off, or stopped making progress:
    /// named with where it stopped); QEMU exiting with an error, or the tracer failing,
    /// is not the kernel's and says so.
    fn wait_for_init(&self, c: &mut Console, start: Instant, qemu: &mut Qemu) -> anyhow::Result<KernelFacts> {
        let mut samples: Vec<(u64, CpuState)> = Vec::new();
        loop {
            match c.wait(start, self.run.timeout) {
                Waited::Up => return Ok(std::mem::take(&mut c.facts)),
                Waited::TracerFailed(line) => {
                    bail!("the tracer plugin failed (not the kernel's fault): {line}; rebuild it or pass --no-trace")
                }
                Waited::Exited => {
                    let status = if exited_within(&mut qemu.0, Duration::from_secs(5)) {
                        qemu.0.try_wait().ok().flatten()
                    } else {
                        None
                    };
                    if !status.is_some_and(|s| s.success()) {
                        bail!(
                            "QEMU exited ({}) before the kernel's init was up: QEMU's failure, not the kernel's; the last lines:\n{}",
                            status.map_or("status unknown".to_string(), |s| s.to_string()),
                            c.tail.iter().rev().take(12).rev().cloned().collect::<Vec<_>>().join("\n")
                        );
                    }
                    let state = Err("QEMU has exited (the kernel reset or powered off): no CPU state".to_string());
                    return Err(self.crash(c, CrashKind::Reboot, state, start, None));
                }
                Waited::TimedOut => {
                    let state = super::crash::read_state(self.port, false).map_err(|e| format!("{e:#}"));
                    let why = format!("init was not up within {:?} (--timeout)", self.run.timeout);
                    return Err(self.crash(c, CrashKind::Hang, state, start, Some(why)));
                }
                Waited::Quiet => {
                    // A line since the last sample is progress: start over.
                    samples.retain(|(lines, _)| *lines == c.lines);
                    if let Ok(s) = super::crash::read_state(self.port, true) {
                        samples.push((c.lines, s));
                    }
                    if samples.len() >= SAMPLES {
                        if let Some((kind, state, why)) = self.no_progress(&samples) {
                            return Err(self.crash(c, kind, Ok(state), start, Some(why)));
                        }
                    }
                    // The next sample in a second.
                    c.last_line = Instant::now().checked_sub(QUIET - Duration::from_secs(1)).unwrap_or(c.last_line);
                }
            }
        }
    }

    /// Whether [`SAMPLES`] or more quiet `samples` (console line count, CPU state) show
    /// a kernel making no progress, and how to name it: the same exception taken
    /// again and again (an exception loop, confirmed by single-stepping), a NULL
    /// dereference with no exception since (stuck in panic's loop), or the very same
    /// state every time (a hang).
    fn no_progress(&self, samples: &[(u64, CpuState)]) -> Option<(CrashKind, CpuState, String)> {
        let (first, last) = (samples[0].1, samples[samples.len() - 1].1);
        // The last exception stays the same (the PC may move).
        let same_exception = samples
            .iter()
            .all(|(_, s)| (s.elr, s.esr, s.far, s.el) == (first.elr, first.esr, first.far, first.el) && s.esr != 0);
        if same_exception {
            if let Ok(Some(steps)) = super::crash::exception_loop(self.port, &first) {
                let why = format!(
                    "no progress: the console silent for over {}s and the same exception taken again and again (its \
                     vector entered 3 times in {steps} single-stepped instructions, the same ELR, ESR and FAR each \
                     time)",
                    QUIET.as_secs()
                );
                return Some((CrashKind::ExceptionLoop, first, why));
            }
            if super::crash::null_abort(&last) {
                let why = format!(
                    "a NULL dereference in the kernel (an EL1 abort at FAR {:#x}), then no progress: the console \
                     silent for over {}s and no other exception taken in {SAMPLES} samples a second apart (stuck in \
                     a panic loop or the handler, printing nothing)",
                    last.far,
                    QUIET.as_secs()
                );
                return Some((CrashKind::Oops, last, why));
            }
        }
        samples.iter().all(|(_, s)| *s == first).then(|| {
            let why = format!(
                "no progress: the console silent for over {}s and the CPU in the same state {SAMPLES} times a second \
                 apart",
                QUIET.as_secs()
            );
            (CrashKind::Hang, first, why)
        })
    }

    /// The crash of this boot: the kind the console names, else `otherwise`; the CPU
    /// `state`; why it was called (`why`, first among the details). The kernel's
    /// System.map is looked for only now, when there is a crash to name.
    fn crash(
        &self,
        c: &Console,
        otherwise: CrashKind,
        state: Result<CpuState, String>,
        start: Instant,
        why: Option<String>,
    ) -> anyhow::Error {
        let map = symbols::SystemMap::find(&self.run.kernel);
        let names = super::crash::Names { map: map.as_ref(), image_pa: (self.layout.kernel, self.image.image_size) };
        let kind = kind_from_console(&c.tail).unwrap_or(otherwise);
        let mut crash = super::crash::name(kind, state, &c.tail, names, start.elapsed());
        crash.details.splice(0..0, why);
        crash.into()
    }
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
    /// The crash, when the kernel crashed (rather than QEMU failing).
    pub crash: Option<Crash>,
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
    /// `pc` (and its instruction) named with the kernel's symbols where it has them.
    fn name(&self, pc: u64, insn: u32) -> String {
        let sym = self.system_map.as_ref().and_then(|m| {
            let link = if pc >> 63 == 1 { pc } else { pc.wrapping_sub(self.load_pa).wrapping_add(m.text_start()) };
            m.name(link)
        });
        symbols::describe_pc(pc, insn, sym)
    }

    /// The tracer's last table writes before the kernel stopped, one line each (none
    /// when the trace has none: QEMU was killed, or no table was written).
    pub fn recent_writes(&self) -> Vec<String> {
        if self.seen.recent.is_empty() {
            return vec!["last table writes: none seen by the tracer".into()];
        }
        let mut out =
            vec![format!("last {} table writes before it stopped (tracer, oldest first):", self.seen.recent.len())];
        for w in &self.seen.recent {
            out.push(format!(
                "  entry {:#x} = {:#018x}{} by {}",
                w.entry_pa,
                w.value,
                if w.live { " (live)" } else { "" },
                self.name(w.pc, w.insn)
            ));
        }
        out
    }

    pub fn findings(&self) -> Vec<Finding> {
        use ptcheck_shared::trace::{OrderedBy, Violation};
        let name = |pc: u64, insn: u32| self.name(pc, insn);
        let mut out = Vec::new();
        for f in self.seen.findings.iter().take(8) {
            let tlbi = f.violation == Violation::UsedBeforeInvalidated;
            out.push(Finding {
                check: if tlbi { LinuxCheck::Tlbi } else { LinuxCheck::Bbm },
                severity: if tlbi { Severity::Failed } else { Severity::Info },
                what: format!("before the kernel stopped: {}", crate::trace::describe(f, &name)),
            });
        }
        for l in self.seen.links.iter().filter(|l| l.stale > 0).take(8) {
            out.push(Finding {
                check: LinuxCheck::ZeroedAtLink,
                severity: Severity::Failed,
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
                check: LinuxCheck::OrderedLink,
                severity: Severity::NotChecked,
                what: format!("{unordered} unordered links before the kernel stopped (not judged without its symbols)"),
            });
        }
        out
    }
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

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
