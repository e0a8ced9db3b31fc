//! A kernel that did not reach its init, named: how it ended (panic, oops, reboot,
//! power-off, hang), where (the CPU's state through the gdbstub while QEMU still runs;
//! the oops's own `pc :` line when it printed one), and the console's last lines. A
//! crash is the kernel's: QEMU that would not start or died with an error is not one
//! (`boot.rs` says so as infrastructure).

use std::fmt::Write as _;
use std::time::Duration;

use super::gdb::Gdb;
use super::symbols::SystemMap;

/// How the kernel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// `Kernel panic - not syncing` (the command line's `panic=-1` then resets, and
    /// `-no-reboot` ends QEMU).
    Panic,
    /// An oops or an unhandled fault (`Unable to handle kernel …`, `Internal error`).
    Oops,
    /// The machine reset with no panic printed.
    Reboot,
    /// The kernel powered the machine off.
    PowerOff,
    /// The kernel stopped making progress: still running, the console silent, init
    /// not up.
    Hang,
    /// The same exception taken again and again from the same instruction: the
    /// handler returns to it (or faults the same way) and the PC, though it moves
    /// through the handler, makes no progress.
    ExceptionLoop,
}

impl CrashKind {
    fn word(self) -> &'static str {
        match self {
            CrashKind::Panic => "panic",
            CrashKind::Oops => "oops",
            CrashKind::Reboot => "reboot",
            CrashKind::PowerOff => "power-off",
            CrashKind::Hang => "hang",
            CrashKind::ExceptionLoop => "exception-loop",
        }
    }
}

/// The vCPU's state where the kernel stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuState {
    /// PC.
    pub pc: u64,
    /// ELR_EL1: where the last exception taken to EL1 came from.
    pub elr: u64,
    /// ESR_EL1: that exception's syndrome.
    pub esr: u64,
    /// FAR_EL1: the faulting address of that exception.
    pub far: u64,
    /// The exception level the vCPU was in (CPSR.M[3:2]).
    pub el: u64,
    /// A digest of every register the gdbstub's `g` packet gives (x0–x30, SP, PC,
    /// CPSR): a busy loop that TCG always interrupts at the same PC (one translation
    /// block: `memmap_init_range` on 256 GiB) still changes its counters and pointers;
    /// a kernel that makes no progress changes none.
    pub regs: u64,
}

/// A kernel that crashed before its init: the one-line summary first, the details
/// after.
#[derive(Clone, Debug)]
pub struct Crash {
    /// One line: how it ended (its first word, [`kind_word`]), where, why.
    pub summary: String,
    /// The CPU state, the oops's lines, the console's last lines.
    pub details: Vec<String>,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

impl std::error::Error for Crash {}

/// The kind a crash's summary starts with (`hang`, `panic`, …): two crashes of one
/// kind are the same crash for a replay, wherever a hang's PC was.
pub fn kind_word(summary: &str) -> &str {
    summary.split([' ', ';']).next().unwrap_or("")
}

/// What the console's `tail` says about how the kernel ended (`None`: nothing telling).
pub fn kind_from_console(tail: &[String]) -> Option<CrashKind> {
    let has = |s: &str| tail.iter().any(|l| l.contains(s));
    if has("Unable to handle kernel") || has("Internal error:") || has("Oops") {
        Some(CrashKind::Oops)
    } else if has("Kernel panic - not syncing") {
        Some(CrashKind::Panic)
    } else if has("reboot: Power down") || has("reboot: System halted") {
        Some(CrashKind::PowerOff)
    } else if has("reboot: Restarting system") {
        Some(CrashKind::Reboot)
    } else {
        None
    }
}

/// The lines of `tail` that say most: the first fault or panic line, the oops's
/// `pc :` and `lr :` lines.
fn telling_lines(tail: &[String]) -> Vec<String> {
    let keys = [
        "Unable to handle kernel",
        "Internal error:",
        "Kernel panic - not syncing",
        "reboot: ",
        "pc : ",
        "lr : ",
        "FAR",
    ];
    let mut out: Vec<String> = Vec::new();
    for k in keys {
        if let Some(l) = tail.iter().find(|l| l.contains(k)) {
            let l = strip_time(l);
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    out
}

/// `[    1.234567] text` → `text`.
fn strip_time(line: &str) -> String {
    match line.trim_start().strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, rest)) => rest.to_string(),
        None => line.to_string(),
    }
}

/// Stop the vCPU through the gdbstub on `port` and read where it is; with `resume`,
/// let it run on afterwards (a progress sample), else leave it stopped.
///
/// # Errors
/// The gdbstub does not answer or lacks a register.
pub fn read_state(port: u16, resume: bool) -> anyhow::Result<CpuState> {
    let mut g = Gdb::connect(port, Duration::from_secs(5))?;
    g.interrupt()?;
    g.load_registers()?;
    let regs = {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        g.all_registers()?.hash(&mut h);
        h.finish()
    };
    let state = CpuState {
        regs,
        pc: g.read_register("pc")?,
        elr: g.read_register("ELR_EL1")?,
        esr: g.read_register("ESR_EL1")?,
        far: g.read_register("FAR_EL1")?,
        el: (g.read_register("cpsr")? >> 2) & 0b11,
    };
    if resume {
        g.resume()?;
    }
    Ok(state)
}

/// Whether `s`'s last exception is a NULL dereference by the kernel: a data or
/// instruction abort taken from EL1 to EL1 (EC 0x25, 0x21) at an address in the first
/// 64 KiB, which no kernel code does on purpose.
pub fn null_abort(s: &CpuState) -> bool {
    let ec = s.esr >> 26;
    s.el == 1 && (ec == 0x25 || ec == 0x21) && s.far < 0x1_0000
}

/// Instructions single-stepped at most to catch an exception loop in the act.
const LOOP_STEPS: u32 = 2000;

/// The exception vectors' entries taken, with the same ELR, ESR and FAR each time, that
/// make an exception loop.
const LOOP_ENTRIES: u32 = 3;

/// Whether the vCPU is in an exception loop: stopped through the gdbstub on `port`,
/// single-stepped up to [`LOOP_STEPS`] instructions, it enters VBAR_EL1's vectors
/// [`LOOP_ENTRIES`] times with the exception (ELR, ESR, FAR) of `state` each time. A
/// kernel that merely has an old exception in those registers enters no vector;
/// one that takes different exceptions is not in a loop. The vCPU runs on after.
///
/// # Errors
/// The gdbstub does not answer or lacks a register.
pub fn exception_loop(port: u16, state: &CpuState) -> anyhow::Result<Option<u32>> {
    let mut g = Gdb::connect(port, Duration::from_secs(5))?;
    g.interrupt()?;
    g.load_registers()?;
    // QEMU's description names it after its AArch32 alias where the two share one
    // definition.
    let vbar = g.read_register("VBAR_EL1").or_else(|_| g.read_register("VBAR"))?;
    let (mut entries, mut steps) = (0, 0);
    while steps < LOOP_STEPS && entries < LOOP_ENTRIES {
        g.step()?;
        steps += 1;
        let pc = g.read_register("pc")?;
        if pc.wrapping_sub(vbar) < 0x800 && pc.is_multiple_of(0x80) {
            let again = (g.read_register("ELR_EL1")?, g.read_register("ESR_EL1")?, g.read_register("FAR_EL1")?);
            if again != (state.elr, state.esr, state.far) {
                break;
            }
            entries += 1;
        }
    }
    g.resume()?;
    Ok((entries >= LOOP_ENTRIES).then_some(steps))
}

/// Where the kernel is, to name addresses: its System.map (`map`, when built here)
/// and the physical range its Image was loaded at (before the MMU is on, PCs are
/// there).
#[derive(Clone, Copy)]
pub struct Names<'a> {
    /// The System.map, if any.
    pub map: Option<&'a SystemMap>,
    /// Where the Image was loaded: start and size.
    pub image_pa: (u64, u64),
}

impl Names<'_> {
    fn named(&self, addr: u64) -> String {
        let (pa, size) = self.image_pa;
        match self.map.and_then(|m| m.name(addr)) {
            Some(n) => format!("{addr:#x} ({n})"),
            None if addr >= pa && addr - pa < size => format!("{addr:#x} (Image+{:#x}, MMU off)", addr - pa),
            None => format!("{addr:#x}"),
        }
    }
}

/// The crash of a kernel that did not reach init: `kind`, the CPU `state` if it could
/// be read (else why not), the console's `tail`, `map` for names.
pub fn name(
    kind: CrashKind,
    state: Result<CpuState, String>,
    tail: &[String],
    names: Names<'_>,
    after: Duration,
) -> Crash {
    let telling = telling_lines(tail);
    let mut details = vec![format!("{} after {:.0}s", kind.word(), after.as_secs_f64())];
    let mut summary = kind.word().to_string();
    let named = |a: u64| names.named(a);
    match &state {
        Ok(s) => {
            let _ = write!(summary, " at PC {} (EL{})", named(s.pc), s.el);
            let esr = crate::esr::describe(s.esr);
            if s.esr != 0 {
                let _ = write!(summary, "; last exception: {esr} from {}, FAR {:#x}", named(s.elr), s.far);
            }
            details.push(format!(
                "PC {}, EL{}, ELR_EL1 {}, ESR_EL1 {:#x} ({esr}), FAR_EL1 {:#x}",
                named(s.pc),
                s.el,
                named(s.elr),
                s.esr,
                s.far
            ));
        }
        Err(why) => details.push(format!("no CPU state: {why}")),
    }
    if let Some(first) = telling.first() {
        let _ = write!(summary, "; the kernel said: {first}");
    } else if tail.is_empty() {
        summary.push_str("; the kernel printed nothing");
    }
    if names.map.is_none() {
        details.push("no symbols: the kernel has no System.map next to it (kallsyms comes only with init)".into());
    }
    details.extend(telling.iter().skip(1).map(|l| format!("the kernel said: {l}")));
    details.push(if tail.is_empty() {
        "console: (nothing: the kernel printed no line)".into()
    } else {
        "console, last lines:".into()
    });
    details.extend(tail.iter().rev().take(12).rev().map(|l| format!("  | {l}")));
    Crash { summary, details }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_console_names_how_it_ended() {
        let oops = lines(&[
            "[    0.000000] Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000",
            "[    0.000000] pc : alloc_init_pud+0x1f0/0x2c0",
            "[    0.000000] Kernel panic - not syncing: Attempted to kill the idle task!",
        ]);
        assert_eq!(kind_from_console(&oops), Some(CrashKind::Oops));
        assert_eq!(kind_from_console(&lines(&["Kernel panic - not syncing: VFS"])), Some(CrashKind::Panic));
        assert_eq!(kind_from_console(&lines(&["[ 1.0] reboot: Power down"])), Some(CrashKind::PowerOff));
        assert_eq!(kind_from_console(&lines(&["[ 1.0] reboot: Restarting system"])), Some(CrashKind::Reboot));
        assert_eq!(kind_from_console(&lines(&["Booting Linux"])), None);
        let none = Names { map: None, image_pa: (0x4000_0000, 0x100_0000) };
        let c = name(CrashKind::Oops, Err("QEMU has exited".into()), &oops, none, Duration::from_secs(3));
        assert!(c.summary.starts_with("oops; "), "{}", c.summary);
        assert_eq!(kind_word(&c.summary), "oops");
        assert_eq!(c.details[0], "oops after 3s");
        assert!(c.summary.contains("Unable to handle kernel NULL pointer"), "{}", c.summary);
        assert!(c.details.iter().any(|d| d.contains("pc : alloc_init_pud+0x1f0")), "{:?}", c.details);
    }

    #[test]
    fn a_hang_names_the_cpu_state() {
        let s = CpuState {
            pc: 0xffff_8000_8000_1000,
            elr: 0xffff_8000_8000_2000,
            esr: 0x9600_0006,
            far: 0x10,
            el: 1,
            regs: 0,
        };
        let c = name(CrashKind::Hang, Ok(s), &[], Names { map: None, image_pa: (0, 0) }, Duration::from_secs(12));
        assert!(c.summary.starts_with("hang at PC 0xffff800080001000 (EL1)"), "{}", c.summary);
        let mmu_off = CpuState { pc: 0x4020_0004, ..s };
        let names = Names { map: None, image_pa: (0x4020_0000, 0x100_0000) };
        let c = name(CrashKind::Hang, Ok(mmu_off), &[], names, Duration::from_secs(12));
        assert!(c.summary.contains("PC 0x40200004 (Image+0x4, MMU off)"), "{}", c.summary);
        assert!(c.summary.contains("FAR 0x10"), "{}", c.summary);
        assert!(c.summary.contains("the kernel printed nothing"), "{}", c.summary);
    }
}
