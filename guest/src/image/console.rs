//! PL011 UART of QEMU `virt` (`layout::UART_PA`): transmit only, for diagnostics the host
//! prints when a run goes wrong.

use core::fmt;

use ptcheck_shared::abi::layout::{UART_FR_OFFSET, UART_PA};

const UART_DR: *mut u32 = UART_PA as *mut u32;
const UART_FR: *const u32 = (UART_PA + UART_FR_OFFSET) as *const u32;
const FR_TXFF: u32 = 1 << 5;

/// The console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the UART registers are mapped as Device memory by the boot map
            // (and are device accesses with the MMU off); only this CPU uses them.
            unsafe {
                while core::ptr::read_volatile(UART_FR) & FR_TXFF != 0 {}
                core::ptr::write_volatile(UART_DR, u32::from(b));
            }
        }
        Ok(())
    }
}

/// `println!` to the UART.
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::console::Console, $($arg)*);
    }};
}
pub(crate) use println;
