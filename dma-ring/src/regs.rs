//! Device register blocks (tock-registers) the rings ring and program.
//!
//! Place one over the device's MMIO (a BAR, a `reg` range from the device
//! tree) with the usual tock-registers cast, or over RAM in a simulator;
//! the fields are [`Doorbell`](crate::Doorbell)s.

use tock_registers::interfaces::Writeable;
use tock_registers::register_structs;
use tock_registers::registers::{ReadWrite, WriteOnly};

use crate::{RingError, RingErrorKind};

register_structs! {
    /// One NVMe queue's doorbell pair when `CAP.DSTRD` is 0: `SQyTDBL` and
    /// `CQyHDBL` (NVMe base spec 2.0, §3.1.4.25-26: at
    /// `0x1000 + (2y) * (4 << DSTRD)` and `0x1000 + (2y + 1) * (4 << DSTRD)`).
    pub NvmeQueueDoorbells {
        /// Submission queue tail doorbell: the new tail.
        (0x0 => pub sq_tail: WriteOnly<u32>),
        /// Completion queue head doorbell: the new head.
        (0x4 => pub cq_head: WriteOnly<u32>),
        (0x8 => @END),
    }
}

/// The NVMe controller's doorbell array from offset `0x1000`, with any
/// doorbell stride `CAP.DSTRD`.
#[derive(Clone, Copy)]
pub struct NvmeDoorbellArray<'a> {
    regs: &'a [WriteOnly<u32>],
    step: usize,
}

impl core::fmt::Debug for NvmeDoorbellArray<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NvmeDoorbellArray")
            .field("doorbells", &self.regs.len())
            .field("step", &self.step)
            .finish()
    }
}

impl<'a> NvmeDoorbellArray<'a> {
    /// Doorbells as `u32` registers starting at `SQ0TDBL`, spaced
    /// `4 << dstrd` bytes apart.
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize) for a stride above 15
    /// (the field is 4 bits wide).
    pub fn new(regs: &'a [WriteOnly<u32>], dstrd: u8) -> crate::Result<Self> {
        if dstrd > 15 {
            return Err(RingError::with(RingErrorKind::InvalidSize, dstrd.into()));
        }
        Ok(Self {
            regs,
            step: 1 << dstrd,
        })
    }

    fn get(&self, index: usize) -> crate::Result<&'a WriteOnly<u32>> {
        index
            .checked_mul(self.step)
            .and_then(|i| self.regs.get(i))
            .ok_or(RingError::with(RingErrorKind::InvalidSize, index as u64))
    }

    /// Submission queue `qid`'s tail doorbell.
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize) past the array's end.
    pub fn sq_tail(&self, qid: u16) -> crate::Result<&'a WriteOnly<u32>> {
        self.get(2 * usize::from(qid))
    }

    /// Completion queue `qid`'s head doorbell.
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize) past the array's end.
    pub fn cq_head(&self, qid: u16) -> crate::Result<&'a WriteOnly<u32>> {
        self.get(2 * usize::from(qid) + 1)
    }
}

register_structs! {
    /// One NIC descriptor ring's registers, laid out as the Intel 8254x
    /// family's receive and transmit queue blocks (8254x SDM §13.4.27-31:
    /// `RDBAL`/`TDBAL` at +0, `*BAH` +4, `*LEN` +8, `*DH` +0x10, `*DT` +0x18).
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

impl NicQueueRegs {
    /// Points the device at a ring of `bytes` bytes at `base`, with head and
    /// tail at 0 (the ring empty, as after reset).
    pub fn program(&self, base: dma_core::DmaAddr, bytes: u32) {
        let base = base.as_u64();
        self.base_lo.set(base as u32);
        self.base_hi.set((base >> 32) as u32);
        self.len.set(bytes);
        self.head.set(0);
        self.tail.set(0);
    }
}
