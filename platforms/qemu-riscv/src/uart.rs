//! The ns16550a UART (National Semiconductor PC16550D data sheet,
//! "Register Summary"; byte registers with QEMU `virt`'s `reg-shift` 0):
//! polled transmit, for the test image's console.

use core::fmt;
use core::ptr::NonNull;

use tock_registers::interfaces::{Readable, Writeable};

/// Register fields (tock-registers generates the `Register` types and
/// value constants; each field is documented where it is defined).
#[allow(missing_docs)]
pub mod fields {
    use tock_registers::register_bitfields;

    register_bitfields![u8,
        /// LCR, line control.
        pub LCR [
            /// Word length: 0b11 = 8 bits.
            WLS OFFSET(0) NUMBITS(2) [Eight = 0b11],
            /// Divisor latch access: set, offsets 0 and 1 are the divisor.
            DLAB OFFSET(7) NUMBITS(1) []
        ],
        /// FCR, FIFO control.
        pub FCR [
            /// Enable the FIFOs.
            ENABLE OFFSET(0) NUMBITS(1) [],
            /// Clear the receive FIFO.
            CLEAR_RX OFFSET(1) NUMBITS(1) [],
            /// Clear the transmit FIFO.
            CLEAR_TX OFFSET(2) NUMBITS(1) []
        ],
        /// LSR, line status.
        pub LSR [
            /// Transmitter holding register empty: room for a byte.
            THRE OFFSET(5) NUMBITS(1) [],
            /// Transmitter empty: every byte has left.
            TEMT OFFSET(6) NUMBITS(1) []
        ]
    ];
}
pub use fields::{FCR, LCR, LSR};

/// The register block, in a module of its own: tock-registers' layout
/// checks compute `offset % align_of::<u8>()`, which clippy flags as `% 1`.
#[allow(clippy::modulo_one)]
mod block {
    use super::{FCR, LCR, LSR};
    use tock_registers::register_structs;
    use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

    register_structs! {
        /// The 16550 register block with byte-spaced registers.
        pub Ns16550Registers {
            /// Transmit holding (write) / receive buffer (read), DLAB = 0.
            (0x0 => pub thr: ReadWrite<u8>),
            /// Interrupt enable, DLAB = 0.
            (0x1 => pub ier: ReadWrite<u8>),
            /// FIFO control (write only).
            (0x2 => pub fcr: WriteOnly<u8, FCR::Register>),
            /// Line control.
            (0x3 => pub lcr: ReadWrite<u8, LCR::Register>),
            /// Modem control.
            (0x4 => pub mcr: ReadWrite<u8>),
            /// Line status.
            (0x5 => pub lsr: ReadOnly<u8, LSR::Register>),
            (0x6 => _reserved),
            (0x8 => @END),
        }
    }
}
pub use block::Ns16550Registers;

/// A 16550 used for polled output.
pub struct Ns16550 {
    regs: NonNull<Ns16550Registers>,
}

// SAFETY: the UART is a device register block; `Ns16550` methods take
// `&mut self` for every access, so moving it to another context moves the
// only handle.
unsafe impl Send for Ns16550 {}

impl Ns16550 {
    /// A driver for the 16550 at `base`.
    ///
    /// # Safety
    ///
    /// `base` maps a 16550 register block with byte-spaced registers (or
    /// memory laid out like one), valid for the driver's lifetime and used
    /// by nothing else.
    pub unsafe fn new(base: NonNull<u8>) -> Self {
        Self { regs: base.cast() }
    }

    fn regs(&self) -> &Ns16550Registers {
        // SAFETY: `new`'s contract: `regs` maps a live 16550 block; the
        // tock-registers fields are volatile cells, so the reference is to
        // MMIO cells and never to plain memory read non-volatilely.
        unsafe { self.regs.as_ref() }
    }

    /// 8-bit words, no interrupts, FIFOs on and empty. QEMU needs no baud
    /// rate; a real 16550 keeps the divisor the firmware set.
    pub fn init(&mut self) {
        let r = self.regs();
        r.lcr.write(LCR::WLS::Eight);
        r.ier.set(0);
        r.fcr
            .write(FCR::ENABLE::SET + FCR::CLEAR_RX::SET + FCR::CLEAR_TX::SET);
    }

    /// Sends one byte, waiting while the transmitter is full.
    pub fn put(&mut self, byte: u8) {
        let r = self.regs();
        while !r.lsr.is_set(LSR::THRE) {
            core::hint::spin_loop();
        }
        r.thr.set(byte);
    }

    /// Waits until every queued byte has left the UART.
    pub fn flush(&mut self) {
        while !self.regs().lsr.is_set(LSR::TEMT) {
            core::hint::spin_loop();
        }
    }
}

impl fmt::Write for Ns16550 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            self.put(byte);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use core::fmt::Write;
    use std::boxed::Box;

    use super::*;

    #[test]
    fn writes_bytes_to_thr_and_sets_8n1() {
        // A block in plain memory whose LSR says "empty" (THRE | TEMT).
        let mut block = Box::new([0u8; 8]);
        block[5] = 0x60;
        let base = NonNull::new(block.as_mut_ptr()).unwrap();
        // SAFETY: the box outlives the driver and is laid out like the
        // register block (8 byte registers).
        let mut uart = unsafe { Ns16550::new(base) };
        uart.init();
        write!(uart, "ok").unwrap();
        uart.flush();
        assert_eq!(block[0], b'k');
        assert_eq!(block[3], 0b11, "LCR: 8 bits, DLAB clear");
        assert_eq!(block[2], 0b111, "FCR: FIFOs on and cleared");
    }
}
