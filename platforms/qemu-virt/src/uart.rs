//! The PL011 UART (Arm PrimeCell UART TRM, DDI 0183G §3.2): polled
//! transmit, for the test image's console.

use core::fmt;
use core::ptr::NonNull;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

/// Register fields (tock-registers generates the `Register` types and
/// value constants; each field is documented where it is defined).
#[allow(missing_docs)]
pub mod fields {
    use tock_registers::register_bitfields;

    register_bitfields![u32,
        /// UARTFR, flag register (DDI 0183G §3.3.3).
        pub FR [
            /// Transmit FIFO full.
            TXFF OFFSET(5) NUMBITS(1) [],
            /// UART busy transmitting.
            BUSY OFFSET(3) NUMBITS(1) []
        ],
        /// UARTLCR_H, line control (DDI 0183G §3.3.7).
        pub LCR_H [
            /// Word length: 0b11 = 8 bits.
            WLEN OFFSET(5) NUMBITS(2) [Eight = 0b11],
            /// FIFOs enabled.
            FEN OFFSET(4) NUMBITS(1) []
        ],
        /// UARTCR, control (DDI 0183G §3.3.8).
        pub CR [
            /// Receive enable.
            RXE OFFSET(9) NUMBITS(1) [],
            /// Transmit enable.
            TXE OFFSET(8) NUMBITS(1) [],
            /// UART enable.
            UARTEN OFFSET(0) NUMBITS(1) []
        ]
    ];
}
pub use fields::{CR, FR, LCR_H};

register_structs! {
    /// The PL011 register block (DDI 0183G Table 3-1).
    pub Pl011Registers {
        /// Data register: a write sends a byte.
        (0x000 => pub dr: ReadWrite<u32>),
        (0x004 => _reserved0),
        /// Flag register.
        (0x018 => pub fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        /// Line control.
        (0x02c => pub lcr_h: ReadWrite<u32, LCR_H::Register>),
        /// Control.
        (0x030 => pub cr: ReadWrite<u32, CR::Register>),
        (0x034 => _reserved2),
        /// Interrupt clear.
        (0x044 => pub icr: WriteOnly<u32>),
        (0x048 => @END),
    }
}

/// A PL011 used for polled output.
pub struct Pl011 {
    regs: NonNull<Pl011Registers>,
}

// SAFETY: the UART is a device register block; `Pl011` methods take `&mut
// self` for every access, so moving it to another context moves the only
// handle.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// A driver for the PL011 at `base`.
    ///
    /// # Safety
    ///
    /// `base` maps a PL011 register block (Device memory, or memory laid
    /// out like one), valid for the driver's lifetime and used by nothing
    /// else.
    pub unsafe fn new(base: NonNull<u8>) -> Self {
        Self { regs: base.cast() }
    }

    fn regs(&self) -> &Pl011Registers {
        // SAFETY: `new`'s contract: `regs` maps a live PL011 block; the
        // tock-registers fields are volatile cells, so the reference is to
        // MMIO cells and never to plain memory read non-volatilely.
        unsafe { self.regs.as_ref() }
    }

    /// Enables the transmitter with 8-bit words and FIFOs. QEMU needs no
    /// baud rate; real PL011s keep whatever the firmware set.
    pub fn init(&mut self) {
        let r = self.regs();
        r.cr.set(0);
        r.icr.set(0x7ff);
        r.lcr_h.write(LCR_H::WLEN::Eight + LCR_H::FEN::SET);
        r.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&mut self, byte: u8) {
        let r = self.regs();
        while r.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        r.dr.set(u32::from(byte));
    }

    /// Waits until every queued byte has left the UART.
    pub fn flush(&mut self) {
        while self.regs().fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.put(b'\r');
            }
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
    fn writes_bytes_to_dr_and_enables_tx() {
        // A register block in plain memory: FR reads 0 (never full or busy).
        let mut block = Box::new([0u32; 0x48 / 4]);
        let base = NonNull::new(block.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the box outlives the driver and is laid out like the
        // register block (0x48 bytes, 4-byte aligned).
        let mut uart = unsafe { Pl011::new(base) };
        uart.init();
        write!(uart, "ok").unwrap();
        uart.flush();
        assert_eq!(block[0], u32::from(b'k'));
        assert_eq!(block[0x30 / 4], 0x301);
        assert_eq!(block[0x2c / 4], 0x70);
    }
}
