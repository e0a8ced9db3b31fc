//! Boot, then serve mailbox requests forever.

use core::sync::atomic::Ordering;

use ptcheck_shared::abi::layout::{in_tag_region, MAILBOX_PA, PLAN_PA};
use ptcheck_shared::abi::mailbox::{Command, Mailbox, COMMAND_OFFSET, GUEST_READY, REQUEST_SEQ_OFFSET};
use ptcheck_shared::abi::{Phase, Plan, ProbeRecord, RunResult, Status, PAR_PA_MASK};

use crate::channel::{mailbox_word, respond, result, set_current_request, set_phase};
use crate::console::println;
use crate::fixmap_memory::FixmapMemory;
use crate::{bootmap, cpu, psci};

/// What this image can do, announced in the mailbox.
const FEATURES: u64 = if cfg!(feature = "mutants") { Mailbox::CATALOGUE } else { 0 };

#[no_mangle]
extern "C" fn guest_main() -> ! {
    let (mmfr0, mmfr2) = cpu::id_regs();
    // SAFETY: first thing after reset: MMU off, nothing else uses the boot tables.
    unsafe {
        bootmap::build();
        cpu::enable_mmu();
    }
    // SAFETY: the mailbox is identity mapped; the host does not write it before `ready`.
    let mailbox = unsafe { &mut *(MAILBOX_PA as *mut Mailbox) };
    mailbox.id_mmfr0 = mmfr0;
    mailbox.id_mmfr2 = mmfr2;
    mailbox.features = FEATURES;
    mailbox_word(0).store(GUEST_READY, Ordering::Release);
    let builders = if FEATURES & Mailbox::CATALOGUE != 0 { "clean + bug catalogue" } else { "clean" };
    println!("ptcheck guest: ready, builder {builders} (ID_AA64MMFR0_EL1 {mmfr0:#018x}, MMFR2 {mmfr2:#018x})");
    set_phase(Phase::Idle);

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
        set_current_request(seq);
        match Command::from_u64(mailbox_word(COMMAND_OFFSET).load(Ordering::Acquire)) {
            Some(Command::RunPlan) => run_plan(mmfr0, mmfr2),
            Some(Command::PowerOff) => {
                respond();
                psci::system_off();
            }
            Some(Command::Hang) => loop {
                core::hint::spin_loop();
            },
            None => {}
        }
        set_phase(Phase::Idle);
        respond();
    }
}

fn run_plan(mmfr0: u64, mmfr2: u64) {
    // SAFETY: the host wrote the plan before publishing the request and does not touch
    // it until we respond.
    let plan = unsafe { &*(PLAN_PA as *const Plan) };
    // SAFETY: no other reference to the result is live here.
    let result = unsafe { result() };
    set_phase(Phase::Build);
    let Some(cfg) = plan.config().filter(|_| plan.is_well_formed()) else {
        result.reset(plan.plan_id);
        result.status = Status::BadPlan as u32;
        return;
    };
    // The tracer's build bracket (HINTs are NOPs without it): it judges this build's
    // links in the regime's descriptor format, named in x0 (granule shift) and x1 (LPA2).
    let lpa2 = u64::from(cfg.oa_format() == ptcheck_shared::OaFormat::Lpa2);
    // SAFETY: HINT is architecturally a NOP; x0 and x1 are only read (by the tracer).
    unsafe {
        core::arch::asm!("hint #{b}", b = const ptcheck_shared::trace::HINT_BUILD_BEGIN,
            in("x0") u64::from(cfg.granule().page_shift()), in("x1") lpa2);
    }
    ptcheck_guest::run_plan(plan, &mut FixmapMemory { cfg }, result);
    // SAFETY: as above.
    unsafe { core::arch::asm!("hint #{e}", e = const ptcheck_shared::trace::HINT_BUILD_END) };
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
    set_phase(Phase::Probe);
    cpu::enter_ttbr1(&cfg, result.root_pa, mmfr0);
    let page = cfg.page_size();
    for &va in plan.probes() {
        let (par, par_w) = cpu::translate(va);
        let mut rec = ProbeRecord { va, par, par_w, loaded: 0, flags: 0 };
        let pa = par & PAR_PA_MASK & !(page - 1);
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
