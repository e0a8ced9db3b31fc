//! Boot, then serve mailbox requests forever.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ptcheck_shared::abi::layout::{in_tag_region, MAILBOX_PA, PLAN_PA, RESULT_PA};
use ptcheck_shared::abi::mailbox::{Command, COMMAND_OFFSET, GUEST_READY, REQUEST_SEQ_OFFSET, RESPONSE_SEQ_OFFSET};
use ptcheck_shared::abi::{Plan, ProbeRecord, RunResult, Status};

use crate::boot::power_off;
use crate::console::println;
use crate::fixmap_memory::FixmapMemory;
use crate::{bootmap, cpu};
use ptcheck_guest::mutation;

/// The builder variant this image was built with (`mutant-<name>` features); the
/// clean builder unless one is chosen.
const MUTATION: u32 = if false {
    mutation::NONE
} else if cfg!(feature = "mutant-skip-zero") {
    mutation::SKIP_ZERO
} else if cfg!(feature = "mutant-zero-after-link") {
    mutation::ZERO_AFTER_LINK
} else if cfg!(feature = "mutant-folded-fixmap") {
    mutation::FOLDED_FIXMAP
} else if cfg!(feature = "mutant-missing-index") {
    mutation::MISSING_INDEX
} else if cfg!(feature = "mutant-cont-misaligned") {
    mutation::CONT_MISALIGNED
} else if cfg!(feature = "mutant-block-ignores-flag") {
    mutation::BLOCK_IGNORES_FLAG
} else if cfg!(feature = "mutant-pud-block-any-granule") {
    mutation::PUD_BLOCK_ANY_GRANULE
} else if cfg!(feature = "mutant-unsafe-remap-allowed") {
    mutation::UNSAFE_REMAP_ALLOWED
} else if cfg!(feature = "mutant-table-bits-dropped") {
    mutation::TABLE_BITS_DROPPED
} else if cfg!(feature = "mutant-off-by-one-end") {
    mutation::OFF_BY_ONE_END
} else if cfg!(feature = "mutant-stale-existing-table") {
    mutation::STALE_EXISTING_TABLE
} else if cfg!(feature = "mutant-lpa2-oa-bits") {
    mutation::LPA2_OA_BITS
} else if cfg!(feature = "mutant-missing-barrier") {
    mutation::MISSING_BARRIER
} else {
    mutation::NONE
};

fn build(plan: &Plan, mem: &mut FixmapMemory, result: &mut RunResult) {
    #[cfg(feature = "mutants")]
    ptcheck_guest::mutation::run_plan_mutant::<_, MUTATION>(plan, mem, result);
    #[cfg(not(feature = "mutants"))]
    ptcheck_guest::run_plan(plan, mem, result);
}

fn variant_name() -> &'static str {
    mutation::ALL_VARIANTS.iter().find(|v| v.id == MUTATION).map_or("clean", |v| v.name)
}

/// Booting: no request to answer yet.
pub const PHASE_BOOT: u32 = 0;
/// Running the builder.
pub const PHASE_BUILD: u32 = 1;
/// Probing the built tables with the MMU.
pub const PHASE_PROBE: u32 = 2;
/// Waiting for a request.
pub const PHASE_IDLE: u32 = 3;

/// What the guest is doing, for the exception handler.
pub static PHASE: AtomicU32 = AtomicU32::new(PHASE_BOOT);
static CURRENT_SEQ: AtomicU64 = AtomicU64::new(0);

fn mailbox_word(offset: u64) -> &'static AtomicU64 {
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

#[no_mangle]
extern "C" fn guest_main() -> ! {
    let (mmfr0, mmfr2) = cpu::id_regs();
    // SAFETY: first thing after reset: MMU off, nothing else uses the boot tables.
    unsafe {
        bootmap::build();
        cpu::enable_mmu();
    }
    // SAFETY: the mailbox is identity mapped; the host does not write it before `ready`.
    let mailbox = unsafe { &mut *(MAILBOX_PA as *mut ptcheck_shared::abi::mailbox::Mailbox) };
    mailbox.id_mmfr0 = mmfr0;
    mailbox.id_mmfr2 = mmfr2;
    mailbox_word(0).store(GUEST_READY, Ordering::Release);
    println!("ptcheck guest: ready, builder {} (ID_AA64MMFR0_EL1 {mmfr0:#018x}, MMFR2 {mmfr2:#018x})", variant_name());
    PHASE.store(PHASE_IDLE, Ordering::Relaxed);

    // The host zeroes the mailbox before boot and numbers requests from 1. Reading the
    // current request_seq here instead would race with the host's first request.
    let mut last = 0;
    loop {
        let seq = loop {
            let s = mailbox_word(REQUEST_SEQ_OFFSET).load(Ordering::Acquire);
            if s != last {
                break s;
            }
            core::hint::spin_loop();
        };
        last = seq;
        CURRENT_SEQ.store(seq, Ordering::Relaxed);
        match Command::from_u64(mailbox_word(COMMAND_OFFSET).load(Ordering::Acquire)) {
            Some(Command::RunPlan) => run_plan(mmfr0, mmfr2),
            Some(Command::PowerOff) => {
                respond();
                power_off();
            }
            Some(Command::Hang) => loop {
                core::hint::spin_loop();
            },
            None => {}
        }
        PHASE.store(PHASE_IDLE, Ordering::Relaxed);
        respond();
    }
}

fn run_plan(mmfr0: u64, mmfr2: u64) {
    // SAFETY: the host wrote the plan before publishing the request and does not touch
    // it until we respond.
    let plan = unsafe { &*(PLAN_PA as *const Plan) };
    // SAFETY: no other reference to the result is live here.
    let result = unsafe { result() };
    PHASE.store(PHASE_BUILD, Ordering::Relaxed);
    let Some(cfg) = plan.config().filter(|_| plan.is_well_formed()) else {
        result.reset(plan.plan_id);
        result.status = Status::BadPlan as u32;
        return;
    };
    build(plan, &mut FixmapMemory { cfg }, result);
    result.id_mmfr0 = mmfr0;
    result.id_mmfr2 = mmfr2;
    let built = matches!(result.status(), Some(Status::Done | Status::Bug)) && result.root_pa != 0;
    if !built || plan.n_probes == 0 {
        return;
    }
    let pa_end = plan.ops().iter().map(|o| u128::from(o.pa) + u128::from(o.size)).max().unwrap_or(0);
    if !cpu::supports(&cfg, mmfr0, mmfr2, pa_end) {
        result.hw_flags |= RunResult::HW_UNSUPPORTED;
        return;
    }
    PHASE.store(PHASE_PROBE, Ordering::Relaxed);
    cpu::enter_ttbr1(&cfg, result.root_pa, mmfr0);
    let page = cfg.page_size();
    for &va in plan.probes() {
        let (par, par_w) = cpu::translate(va);
        let mut rec = ProbeRecord { va, par, par_w, loaded: 0, flags: 0 };
        let pa = par & 0x000f_ffff_ffff_f000 & !(page - 1);
        if par & 1 == 0 && in_tag_region(pa) {
            // SAFETY: AT just said `va` translates to RAM readable at EL1; a wrong table
            // makes this fault, which the vector reports as a failed run.
            rec.loaded = unsafe { core::ptr::read_volatile((va & !(page - 1)) as *const u64) };
            rec.flags |= ProbeRecord::LOADED;
        }
        if let Some(slot) = result.probes.get_mut(result.n_probes as usize) {
            *slot = rec;
            result.n_probes += 1;
        }
    }
    cpu::leave_ttbr1();
    result.hw_flags |= RunResult::HW_PROBED;
}
