//! The image's console: the ns16550a, shared behind a spin lock.

use core::fmt::{self, Write};
use core::ptr::NonNull;

use dma_qemu_riscv::memmap::UART_BASE;
use dma_qemu_riscv::uart::Ns16550;

static UART: spin::Mutex<Option<Ns16550>> = spin::Mutex::new(None);

fn uart() -> Option<Ns16550> {
    let base = NonNull::new(UART_BASE as *mut u8)?;
    // SAFETY: the ns16550a lives at UART_BASE on `virt` (no translation
    // in M-mode), and only this console drives it.
    Some(unsafe { Ns16550::new(base) })
}

/// Sets up the UART; output before this is dropped.
pub fn init() {
    let mut uart = uart();
    if let Some(u) = uart.as_mut() {
        u.init();
    }
    *UART.lock() = uart;
}

/// The console as a `fmt::Write`, for the test reporter.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match UART.lock().as_mut() {
            Some(uart) => uart.write_str(s),
            None => Ok(()),
        }
    }
}

/// A writer for the console that never blocks on the lock: for panics
/// and traps, which may strike while the lock is held.
pub fn emergency() -> impl Write {
    struct Emergency;
    impl Write for Emergency {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            // A second handle at worst interleaves the interrupted writer's output.
            uart().ok_or(fmt::Error)?.write_str(s)
        }
    }
    Emergency
}
