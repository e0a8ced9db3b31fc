//! The guest's side of the mailbox and result area, and what the guest is doing now
//! (for the exception handler): the state both the request loop (`serve.rs`) and the
//! exception vectors (`boot.rs`) use.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ptcheck_shared::abi::layout::{MAILBOX_PA, RESULT_PA};
use ptcheck_shared::abi::mailbox::RESPONSE_SEQ_OFFSET;
use ptcheck_shared::abi::{Phase, RunResult};

static PHASE: AtomicU32 = AtomicU32::new(Phase::Boot as u32);
static CURRENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// What the guest is doing now.
pub fn phase() -> u32 {
    PHASE.load(Ordering::Relaxed)
}

/// Record what the guest does next.
pub fn set_phase(p: Phase) {
    PHASE.store(p as u32, Ordering::Relaxed);
}

/// The request being served.
pub fn set_current_request(seq: u64) {
    CURRENT_SEQ.store(seq, Ordering::Relaxed);
}

/// The mailbox word at byte `offset`.
pub fn mailbox_word(offset: u64) -> &'static AtomicU64 {
    // SAFETY: the mailbox is identity mapped, 8-byte aligned and shared with the host
    // only through atomic accesses.
    unsafe { &*((MAILBOX_PA + offset) as *const AtomicU64) }
}

/// The result area.
///
/// # Safety
/// Only one reference may be live; the host reads the area only after [`respond`].
pub unsafe fn result() -> &'static mut RunResult {
    // SAFETY: identity mapped, aligned, exclusively ours until we respond (contract above).
    unsafe { &mut *(RESULT_PA as *mut RunResult) }
}

/// Tell the host the current request is done (release: the result is visible first).
pub fn respond() {
    mailbox_word(RESPONSE_SEQ_OFFSET).store(CURRENT_SEQ.load(Ordering::Relaxed), Ordering::Release);
}
