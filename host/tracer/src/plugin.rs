//! The callbacks QEMU calls: instrumentation chosen per instruction at translation
//! ([`crate::decode`]), state updates in [`crate::state`].

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use qemu_plugin::install::{Args, Info};
use qemu_plugin::plugin::{HasCallbacks, Register};
use qemu_plugin::{CallbackFlags, MemRW, PluginId, RegisterDescriptor, TranslationBlock, VCPUIndex};

use crate::decode::{Barrier, Insn, Tlbi};
use crate::state::{Site, State};

/// Everything the callbacks share, behind [`Lock`].
static STATE: OnceLock<Lock> = OnceLock::new();

/// The state and a spin lock around it. Callbacks come from the one vCPU thread (every
/// QEMU ptcheck starts has `-smp 1`) and, once, from QEMU's exit: the lock is never
/// contended, and a std `Mutex` would cost a second locked instruction (its unlock) on
/// each of a boot's tens of millions of store callbacks.
struct Lock {
    busy: AtomicBool,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is only reached through `Guard`, which `busy` makes exclusive.
unsafe impl Sync for Lock {}

/// Exclusive access to the state until dropped.
struct Guard(&'static Lock);

impl std::ops::Deref for Guard {
    type Target = State;
    fn deref(&self) -> &State {
        // SAFETY: the guard holds `busy`, so no other reference to the state exists.
        unsafe { &*self.0.state.get() }
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut State {
        // SAFETY: as in `deref`; `&mut self` makes this the only one through the guard.
        unsafe { &mut *self.0.state.get() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Handles for x0..x30, found once the vCPU exists.
static XREGS: OnceLock<Vec<RegisterDescriptor<'static>>> = OnceLock::new();

fn state() -> Guard {
    let lock = STATE.get().expect("installed before any callback");
    while lock.busy.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::hint::spin_loop();
    }
    Guard(lock)
}

/// Xn's value (x31 reads as zero: XZR in these encodings).
fn xreg(n: u32) -> u64 {
    if n >= 31 {
        return 0;
    }
    let Some(regs) = XREGS.get() else { return 0 };
    regs.get(n as usize)
        .and_then(|r| r.read().ok())
        .map(|b| b.iter().take(8).rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
        .unwrap_or(0)
}

struct Tracer;

impl Register for Tracer {
    fn register(&mut self, id: PluginId, args: &Args, info: &Info) -> qemu_plugin::Result<()> {
        // A bug in the plugin must end QEMU at once, never leave it running without
        // the tracer: say so (ptcheck names it infrastructure) and exit.
        std::panic::set_hook(Box::new(|p| {
            eprintln!("ptcheck-tracer: crashed: {p}");
            // SAFETY: _exit ends the process without running QEMU's exit handlers,
            // which could wait for this very vCPU thread.
            unsafe { libc::_exit(70) }
        }));
        let parsed = crate::args::parse(&args.raw).map_err(refuse)?;
        let st = State::new(parsed, info.version.mininum as u32, info.version.current as u32).map_err(refuse)?;
        let _ = STATE.set(Lock { busy: AtomicBool::new(false), state: UnsafeCell::new(st) });
        qemu_plugin::qemu_plugin_register_atexit_cb(id, |_| state().finish())?;
        Ok(())
    }
}

/// Refuse to install, with the reason on QEMU's stderr (ptcheck shows it).
fn refuse(why: String) -> qemu_plugin::Error {
    eprintln!("ptcheck-tracer: {why}");
    qemu_plugin::Error::PluginInstanceSetError
}

impl HasCallbacks for Tracer {
    fn on_vcpu_init(&mut self, _id: PluginId, _vcpu: VCPUIndex) -> qemu_plugin::Result<()> {
        if XREGS.get().is_none() {
            let all = qemu_plugin::qemu_plugin_get_registers()?;
            let x: Vec<_> = (0..31)
                .filter_map(|n| all.iter().find(|r| r.name.eq_ignore_ascii_case(&format!("x{n}"))).cloned())
                .collect();
            if x.len() == 31 {
                let _ = XREGS.set(x);
            } else {
                state().fail(format!("QEMU lists {} of the 31 general registers", x.len()));
            }
        }
        Ok(())
    }

    fn on_translation_block_translate(&mut self, _id: PluginId, tb: TranslationBlock) -> qemu_plugin::Result<()> {
        for insn in tb.instructions() {
            let mut word = [0u8; 4];
            if insn.read_data(&mut word) != 4 {
                continue;
            }
            let (pc, w) = (insn.vaddr(), u32::from_le_bytes(word));
            match Insn::decode(w) {
                Insn::Other | Insn::ViaSp | Insn::Narrow => {}
                // The value stored is read back from RAM (the callback runs after the
                // store): cheaper than asking QEMU for it.
                Insn::Store { release } => insn.register_memory_access_callback(
                    move |_, info, va| {
                        if let Some(hw) = info.hwaddr(va) {
                            if !hw.is_io() {
                                let size = 1u64 << info.size_shift();
                                state().store(hw.hwaddr(), va, size, Site { pc, insn: w, release });
                            }
                        }
                    },
                    MemRW::QEMU_PLUGIN_MEM_W,
                ),
                Insn::DcZva { rt } => insn.register_execute_callback_flags(
                    move |_| {
                        let va = xreg(rt);
                        state().dc_zva(va, pc, w);
                    },
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
                Insn::Msr { reg, rt } => insn.register_execute_callback_flags(
                    move |_| {
                        let v = xreg(rt);
                        state().msr(reg, v);
                    },
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
                Insn::Barrier(Barrier::Tlbi(t @ Tlbi::Va { rt, .. })) => insn.register_execute_callback_flags(
                    move |_| {
                        let xt = xreg(rt);
                        state().tlbi(t, xt);
                    },
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
                Insn::Barrier(Barrier::Tlbi(t)) => insn.register_execute_callback(move |_| state().tlbi(t, 0)),
                Insn::Barrier(b) => insn.register_execute_callback(move |_| state().barrier(b, pc, w)),
                Insn::Hint(h) => insn.register_execute_callback_flags(
                    move |_| {
                        let (x0, x1) = (xreg(0), xreg(1));
                        state().hint(h, x0, x1);
                    },
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
            }
        }
        Ok(())
    }
}

qemu_plugin::register!(Tracer);
