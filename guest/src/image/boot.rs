//! Entry, exception vectors and panic handler.

use core::arch::global_asm;

use ptcheck_shared::abi::{ExceptionRecord, Phase, Status};

use crate::channel;
use crate::console::println;
use crate::psci::system_off;

// Entry at EL1, MMU off, x0 = DTB (unused). Set the stack, allow FP/SIMD (the
// compiler uses SIMD registers for copies), clear .bss, install the vectors, go.
global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    ldr x1, =__stack_top
    mov sp, x1
    mov x1, #(3 << 20)          // CPACR_EL1.FPEN = 0b11: no FP/SIMD traps
    msr cpacr_el1, x1
    isb
    ldr x1, =__bss_start
    ldr x2, =__bss_end
1:  cmp x1, x2
    b.hs 2f
    str xzr, [x1], #8
    b 1b
2:  ldr x1, =exception_vectors
    msr vbar_el1, x1
    isb
    bl guest_main
3:  wfe
    b 3b

    .macro vector offset
    .balign 0x80
    mov x0, #\offset
    b exception_entry
    .endm

    .balign 0x800
exception_vectors:
    vector 0x000
    vector 0x080
    vector 0x100
    vector 0x180
    vector 0x200
    vector 0x280
    vector 0x300
    vector 0x380
    vector 0x400
    vector 0x480
    vector 0x500
    vector 0x580
    vector 0x600
    vector 0x680
    vector 0x700
    vector 0x780

exception_entry:
    mrs x1, esr_el1
    mrs x2, far_el1
    mrs x3, elr_el1
    mrs x4, spsr_el1
    bl on_exception
4:  wfe
    b 4b
"#
);

/// Every exception ends the run: record it, answer the host, power off.
#[no_mangle]
extern "C" fn on_exception(vector: u64, esr: u64, far: u64, elr: u64, spsr: u64) -> ! {
    let phase = channel::phase();
    println!("ptcheck guest: exception vector {vector:#x} ESR {esr:#x} FAR {far:#x} ELR {elr:#x} phase {phase}");
    report_exception(ExceptionRecord { esr, far, elr, spsr, vector, op: 0, phase });
    system_off()
}

fn report_exception(mut record: ExceptionRecord) {
    if channel::phase() == Phase::Boot as u32 {
        return; // no request to answer yet: the host sees QEMU exit and the console
    }
    // SAFETY: the result area is identity mapped and only this CPU writes it; the host
    // reads it only after the response below.
    let result = unsafe { channel::result() };
    record.op = result.ops_done;
    result.exception = record;
    result.status = Status::Exception as u32;
    channel::respond();
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("ptcheck guest: panic: {info}");
    let phase = channel::phase();
    // vector u64::MAX marks a panic rather than a CPU exception.
    report_exception(ExceptionRecord { vector: u64::MAX, phase, ..ExceptionRecord::default() });
    system_off()
}
