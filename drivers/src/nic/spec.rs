//! The driver's side of the Intel 8254x-family register file (8254x
//! Software Developer's Manual; QEMU's e1000 and e1000e models implement
//! the legacy subset): the per-queue descriptor-ring registers.
//!
//! The legacy descriptors themselves ([`RxDesc`](dma_ring::nic::RxDesc),
//! [`TxDesc`](dma_ring::nic::TxDesc)) are `dma-ring`'s: they are ring
//! protocol.

use dma_core::DmaAddr;
use tock_registers::interfaces::Writeable;
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

register_structs! {
    /// One descriptor ring's registers, laid out as the receive and
    /// transmit queue blocks (8254x SDM §13.4.27-31: `RDBAL`/`TDBAL` at +0,
    /// `*BAH` +4, `*LEN` +8, `*DH` +0x10, `*DT` +0x18; RX at 0x2800, TX at
    /// 0x3800 in BAR0).
    pub NicQueueRegs {
        /// Ring base address, low 32 bits.
        (0x00 => pub base_lo: ReadWrite<u32>),
        /// Ring base address, high 32 bits.
        (0x04 => pub base_hi: ReadWrite<u32>),
        /// Ring length in bytes (a multiple of 128).
        (0x08 => pub len: ReadWrite<u32>),
        (0x0c => _reserved0),
        /// Head: the next descriptor the device processes (device-owned).
        (0x10 => pub head: ReadWrite<u32>),
        (0x14 => _reserved1),
        /// Tail: one past the last descriptor given to the device.
        (0x18 => pub tail: ReadWrite<u32>),
        (0x1c => @END),
    }
}

static_assertions::const_assert_eq!(core::mem::size_of::<NicQueueRegs>(), 0x1c);

impl NicQueueRegs {
    /// Points the device at a ring of `bytes` bytes at `base`, with head and
    /// tail at 0 (the ring empty, as after reset).
    pub fn program(&self, base: DmaAddr, bytes: u32) {
        let base = base.as_u64();
        self.base_lo.set(base as u32);
        self.base_hi.set((base >> 32) as u32);
        self.len.set(bytes);
        self.head.set(0);
        self.tail.set(0);
    }
}

#[cfg(test)]
mod tests {
    use tock_registers::interfaces::Readable;

    use super::*;

    #[test]
    fn program_points_the_queue_at_the_ring_and_empties_it() {
        let mut block = [0xffff_ffffu32; 7];
        // SAFETY: 28 bytes, 4-aligned, live for the test; the register
        // types are UnsafeCell-based, so writing through `&` is fine.
        let regs: &NicQueueRegs = unsafe { &*block.as_mut_ptr().cast::<NicQueueRegs>() };
        regs.program(DmaAddr::new(0x1_2345_6000), 256);
        assert_eq!(regs.base_lo.get(), 0x2345_6000);
        assert_eq!(regs.base_hi.get(), 1);
        assert_eq!(
            (regs.len.get(), regs.head.get(), regs.tail.get()),
            (256, 0, 0)
        );
    }
}
