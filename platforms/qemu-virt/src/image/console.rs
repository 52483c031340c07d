//! The image's console: the PL011, shared behind a spin lock, with
//! `print!`/`println!`.

use core::fmt::{self, Write};
use core::ptr::NonNull;

use dma_qemu_virt::memmap::UART_BASE;
use dma_qemu_virt::uart::Pl011;

static UART: spin::Mutex<Option<Pl011>> = spin::Mutex::new(None);

/// Sets up the UART; output before this is dropped.
pub fn init() {
    let base = NonNull::new(UART_BASE as *mut u8).expect("UART_BASE is not null");
    // SAFETY: the PL011 lives at UART_BASE on `virt`, mapped as Device memory
    // (MMU off or identity map), and only this console drives it.
    let mut uart = unsafe { Pl011::new(base) };
    uart.init();
    *UART.lock() = Some(uart);
}

/// Writes formatted output to the console.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(uart) = UART.lock().as_mut() {
        let _ = uart.write_fmt(args);
    }
}

/// A writer for the console that never blocks on the lock: for panics
/// and exceptions, which may strike while the lock is held.
pub fn emergency() -> impl Write {
    struct Emergency;
    impl Write for Emergency {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            // A second handle at worst interleaves the interrupted writer's output.
            // SAFETY: as in `init`; the PL011's registers are volatile cells.
            let mut uart =
                unsafe { Pl011::new(NonNull::new(UART_BASE as *mut u8).ok_or(fmt::Error)?) };
            uart.write_str(s)
        }
    }
    Emergency
}

/// The console as a `fmt::Write`, for the test reporter.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_fmt(format_args!("{s}"));
        Ok(())
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
