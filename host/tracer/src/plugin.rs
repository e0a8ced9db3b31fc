//! The callbacks QEMU calls: instrumentation chosen per instruction at translation
//! ([`crate::decode`]), state updates in [`crate::state`].

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use qemu_plugin::install::{Args, Info};
use qemu_plugin::plugin::{HasCallbacks, Register};
use qemu_plugin::{CallbackFlags, MemRW, PluginId, TranslationBlock, VCPUIndex};

use crate::decode::{Barrier, Insn, Tlbi};
use crate::state::{AfterReturn, Site, State};
use ptcheck_shared::trace::tlbi_op;

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

/// QEMU's inline counter of ISBs (a scoreboard of one u64 per vCPU, as its address):
/// counted without a callback, since the guest's idle loop is ISBs (Rust's
/// `spin_loop` on AArch64) and would call back tens of millions of times a second.
static ISBS: OnceLock<usize> = OnceLock::new();

/// The bracketed functions' entries (`bracket=`), fixed at install: translation reads
/// them without the state's lock.
static BRACKETS: OnceLock<Vec<u64>> = OnceLock::new();

/// QEMU's inline counter of instructions executed (as [`ISBS`]), added to every
/// instruction only when a function is bracketed (`bracket=`).
static INSNS: OnceLock<usize> = OnceLock::new();

fn insn_counter() -> qemu_plugin::PluginU64 {
    let score = *INSNS.get().expect("made at install") as *mut qemu_plugin::sys::qemu_plugin_scoreboard;
    qemu_plugin::PluginU64 { score, offset: 0 }
}

/// Instructions executed so far (0 when no function is bracketed), every vCPU.
fn insns() -> u64 {
    qemu_plugin::qemu_plugin_scoreboard_sum(insn_counter())
}

fn isb_counter() -> qemu_plugin::PluginU64 {
    let score = *ISBS.get().expect("made at install") as *mut qemu_plugin::sys::qemu_plugin_scoreboard;
    qemu_plugin::PluginU64 { score, offset: 0 }
}

/// ISBs executed so far, every vCPU.
fn isbs() -> u64 {
    qemu_plugin::qemu_plugin_scoreboard_sum(isb_counter())
}

/// x0..x30: QEMU's register handles, found once the vCPU exists, and one byte array
/// reused for every read (the crate's `RegisterDescriptor::read` allocates two per
/// read, and a boot reads Xt for each of its millions of DC ZVAs).
static XREGS: OnceLock<XRegs> = OnceLock::new();

struct XRegs {
    handles: [usize; 31],
    /// A `GByteArray *`, only touched by [`xreg`], under the state lock.
    buf: usize,
}

unsafe extern "C" {
    // glib's, resolved in the QEMU process that loads the plugin.
    fn g_byte_array_new() -> *mut qemu_plugin::sys::GByteArray;
    fn g_byte_array_set_size(array: *mut qemu_plugin::sys::GByteArray, len: u32) -> *mut qemu_plugin::sys::GByteArray;
    fn g_array_free(array: *mut qemu_plugin::sys::GArray, free_segment: bool) -> *mut std::ffi::c_char;
}

fn state() -> Guard {
    let lock = STATE.get().expect("installed before any callback");
    while lock.busy.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::hint::spin_loop();
    }
    Guard(lock)
}

/// Xn's value (x31 reads as zero: XZR in these encodings). Taking the state's guard
/// makes the one byte array's use exclusive, whichever thread calls.
fn xreg(_held: &Guard, n: u32) -> u64 {
    if n >= 31 {
        return 0;
    }
    let Some(regs) = XREGS.get() else { return 0 };
    let buf = regs.buf as *mut qemu_plugin::sys::GByteArray;
    // SAFETY: `buf` is the byte array made in `on_vcpu_init`, used only here, under the
    // state lock (`_held`); the handle is one QEMU listed; QEMU writes the register's
    // bytes (little-endian) into `buf`, whose `data`/`len` we then read.
    unsafe {
        g_byte_array_set_size(buf, 0);
        let handle = regs.handles[n as usize] as *mut qemu_plugin::sys::qemu_plugin_register;
        if qemu_plugin::sys::qemu_plugin_read_register(handle, buf) < 8 || (*buf).len < 8 {
            return 0;
        }
        std::ptr::read_unaligned((*buf).data.cast::<u64>())
    }
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
        let _ = BRACKETS.set(parsed.brackets.clone());
        let st = State::new(parsed, info.version.mininum as u32, info.version.current as u32).map_err(refuse)?;
        let _ = STATE.set(Lock { busy: AtomicBool::new(false), state: UnsafeCell::new(st) });
        // SAFETY: a fresh scoreboard of u64s; QEMU owns and sizes it per vCPU, and it
        // lives as long as the plugin (never freed).
        let board = unsafe { qemu_plugin::sys::qemu_plugin_scoreboard_new(8) };
        let _ = ISBS.set(board as usize);
        // SAFETY: as above.
        let insns = unsafe { qemu_plugin::sys::qemu_plugin_scoreboard_new(8) };
        let _ = INSNS.set(insns as usize);
        qemu_plugin::qemu_plugin_register_atexit_cb(id, |_| {
            let mut st = state();
            st.isbs(isbs());
            st.finish();
        })?;
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
        if XREGS.get().is_some() {
            return Ok(());
        }
        let mut handles = [0usize; 31];
        let mut found = 0;
        // SAFETY: QEMU returns a GArray of `qemu_plugin_reg_descriptor`s for the current
        // vCPU (this callback runs on it), with NUL-terminated names; we read it and
        // keep only the handles, which stay valid for QEMU's lifetime.
        unsafe {
            let all = qemu_plugin::sys::qemu_plugin_get_registers();
            if !all.is_null() {
                let descs = (*all).data.cast::<qemu_plugin::sys::qemu_plugin_reg_descriptor>();
                for i in 0..(*all).len as usize {
                    let d = &*descs.add(i);
                    let name = std::ffi::CStr::from_ptr(d.name).to_string_lossy().to_ascii_lowercase();
                    let n = name.strip_prefix('x').and_then(|n| n.parse::<usize>().ok()).filter(|&n| n < 31);
                    if let Some(n) = n {
                        handles[n] = d.handle as usize;
                        found += 1;
                    }
                }
                // The descriptors are ours to free (their names are QEMU's).
                g_array_free(all, true);
            }
        }
        if found == 31 {
            // SAFETY: a fresh, empty glib byte array; never freed (lives with QEMU).
            let buf = unsafe { g_byte_array_new() } as usize;
            let _ = XREGS.set(XRegs { handles, buf });
        } else {
            state().fail(format!("QEMU lists {found} of the 31 general registers"));
        }
        Ok(())
    }

    fn on_translation_block_translate(&mut self, _id: PluginId, tb: TranslationBlock) -> qemu_plugin::Result<()> {
        // Bracketed functions: their entries, and (translated only once it is known, on
        // the return) the instruction each call returns to; every instruction counted.
        let brackets: &[u64] = BRACKETS.get().map_or(&[], Vec::as_slice);
        let returns_to: Vec<u64> = if brackets.is_empty() { Vec::new() } else { state().returns_to().collect() };
        for insn in tb.instructions() {
            let mut word = [0u8; 4];
            if insn.read_data(&mut word) != 4 {
                continue;
            }
            let (pc, w) = (insn.vaddr(), u32::from_le_bytes(word));
            if !brackets.is_empty() {
                qemu_plugin::qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(
                    insn.clone(),
                    qemu_plugin::PluginOp::QEMU_PLUGIN_INLINE_ADD_U64,
                    insn_counter(),
                    1,
                );
                if brackets.contains(&pc) {
                    insn.register_execute_callback_flags(
                        move |_| {
                            let mut st = state();
                            let lr = xreg(&st, 30);
                            st.enter(pc, lr, insns(), isbs());
                        },
                        CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                    );
                }
                if returns_to.contains(&pc) {
                    insn.register_execute_callback(move |_| {
                        if state().returned(pc, insns(), isbs()) == AfterReturn::Stop {
                            // SAFETY: everything is written and flushed (`returned`);
                            // _exit ends QEMU without its exit handlers, which would
                            // wait for this very vCPU thread.
                            unsafe { libc::_exit(0) }
                        }
                    });
                }
            }
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
                        let mut st = state();
                        let va = xreg(&st, rt);
                        st.dc_zva(va, pc, w);
                    },
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
                Insn::Msr { reg, rt } => insn.register_execute_callback_flags(
                    move |_| {
                        let mut st = state();
                        let v = xreg(&st, rt);
                        st.msr(reg, v);
                    },
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
                Insn::Barrier(Barrier::Tlbi(t @ Tlbi::Va { rt, .. })) => insn.register_execute_callback_flags(
                    move |_| {
                        let mut st = state();
                        let xt = xreg(&st, rt);
                        st.tlbi(t, tlbi_op(w), xt);
                    },
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
                Insn::Barrier(Barrier::Tlbi(t)) => {
                    insn.register_execute_callback(move |_| state().tlbi(t, tlbi_op(w), 0))
                }
                Insn::Barrier(Barrier::Isb) => qemu_plugin::qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(
                    insn.clone(),
                    qemu_plugin::PluginOp::QEMU_PLUGIN_INLINE_ADD_U64,
                    isb_counter(),
                    1,
                ),
                Insn::Barrier(b) => insn.register_execute_callback(move |_| state().barrier(b, pc, w)),
                Insn::Hint(h) => insn.register_execute_callback_flags(
                    move |_| {
                        let mut st = state();
                        let (x0, x1) = (xreg(&st, 0), xreg(&st, 1));
                        st.isbs(isbs());
                        st.hint(h, x0, x1);
                    },
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
            }
        }
        Ok(())
    }
}

qemu_plugin::register!(Tracer);
