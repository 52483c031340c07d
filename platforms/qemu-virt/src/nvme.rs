//! The NVMe controller's register block and its bring-up (NVMe Base
//! Specification 2.0c, §3.1.4 "Controller Properties" and §3.5.1
//! "Memory-based Controller Initialization").
//!
//! This is the part of a driver that is about the controller, not about
//! queues: reading CAP/VS, disabling, programming the admin queue
//! addresses, enabling, and finding each queue's doorbells (whose stride
//! comes from CAP.DSTRD). The queues themselves are `dma-ring`'s; the
//! register block, its fields and the doorbell arithmetic are
//! `dma-drivers`' NVMe spec module, re-exported here.

use core::ptr::NonNull;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::WriteOnly;

use crate::timer::{wait_for, Clock};
use crate::{BoardError, Result};

pub use dma_drivers::nvme::spec::{
    doorbell_offset, Capabilities, NvmeDoorbellArray, NvmeRegisters, AQA, CAP, CC, CQE_SIZE_LOG2,
    CSTS, DOORBELL_BASE, PAGE_SIZE, SQE_SIZE_LOG2, VS,
};

/// Where the admin queues live and how many entries each has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminQueues {
    /// Device address of the admin submission queue (4 KiB aligned).
    pub sq: u64,
    /// Entries in the admin submission queue (2..=4096).
    pub sq_entries: u16,
    /// Device address of the admin completion queue (4 KiB aligned).
    pub cq: u64,
    /// Entries in the admin completion queue (2..=4096).
    pub cq_entries: u16,
}

/// An NVMe controller behind its BAR0.
pub struct NvmeController {
    bar: NonNull<u8>,
    bar_size: usize,
    caps: Capabilities,
}

// SAFETY: the controller is an MMIO region; the handle is used through
// `&self`/`&mut self` like any owned device.
unsafe impl Send for NvmeController {}

impl NvmeController {
    /// The controller whose BAR0 is mapped at `bar` (`bar_size` bytes).
    ///
    /// # Safety
    ///
    /// `bar` maps the controller's BAR0 as Device memory, `bar_size` bytes,
    /// for the value's lifetime, and no other driver uses it.
    ///
    /// # Errors
    ///
    /// [`BoardError::Unsupported`] when the controller lacks the NVM command
    /// set or 4 KiB pages, or its doorbells lie beyond the BAR.
    pub unsafe fn new(bar: NonNull<u8>, bar_size: usize) -> Result<Self> {
        let mut this = Self {
            bar,
            bar_size,
            caps: Capabilities::decode(0, 0),
        };
        this.caps = Capabilities::decode(this.regs().cap.get(), this.regs().vs.get());
        if !this.caps.nvm_command_set {
            return Err(BoardError::Unsupported("the NVM command set"));
        }
        if !(this.caps.min_page_size..=this.caps.max_page_size).contains(&PAGE_SIZE) {
            return Err(BoardError::Unsupported("4 KiB memory pages"));
        }
        if doorbell_offset(1, true, this.caps.doorbell_stride) + 4 > bar_size {
            return Err(BoardError::Unsupported("doorbells inside BAR0"));
        }
        Ok(this)
    }

    /// The register block.
    pub fn regs(&self) -> &NvmeRegisters {
        // SAFETY: `new`'s contract maps BAR0, which starts with this block;
        // its fields are volatile cells.
        unsafe { self.bar.cast().as_ref() }
    }

    /// CAP and VS, decoded.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Clears CC.EN and waits for CSTS.RDY to drop (§3.5.1 step 1).
    ///
    /// # Errors
    ///
    /// [`BoardError::Timeout`] after CAP.TO.
    pub fn disable(&self, clock: &impl Clock) -> Result<()> {
        let regs = self.regs();
        regs.cc.set(0);
        wait_for(clock, self.caps.timeout, "NVMe CSTS.RDY = 0", || {
            (!regs.csts.is_set(CSTS::RDY)).then_some(())
        })
    }

    /// Programs the admin queues and enables the controller with 4 KiB
    /// pages, the NVM command set, round-robin arbitration and 64/16-byte
    /// I/O queue entries, then waits for CSTS.RDY (§3.5.1 steps 2-4). The
    /// controller must be disabled.
    ///
    /// # Errors
    ///
    /// [`BoardError::InvalidArgument`] for queue sizes outside 2..=4096 or
    /// CAP.MQES + 1, or addresses not 4 KiB aligned;
    /// [`BoardError::ControllerFatal`] when CSTS.CFS rises;
    /// [`BoardError::Timeout`] after CAP.TO.
    pub fn enable(&self, admin: AdminQueues, clock: &impl Clock) -> Result<()> {
        let limit = self.caps.max_queue_entries.min(4096);
        for entries in [admin.sq_entries, admin.cq_entries] {
            if !(2..=limit).contains(&u32::from(entries)) {
                return Err(BoardError::InvalidArgument(
                    "admin queues have 2..=min(4096, CAP.MQES + 1) entries",
                ));
            }
        }
        if admin.sq % PAGE_SIZE != 0 || admin.cq % PAGE_SIZE != 0 {
            return Err(BoardError::InvalidArgument(
                "admin queues are 4 KiB aligned",
            ));
        }
        let regs = self.regs();
        if regs.cc.is_set(CC::EN) {
            return Err(BoardError::InvalidArgument(
                "the controller is disabled first",
            ));
        }
        regs.aqa.write(
            AQA::ASQS.val(u32::from(admin.sq_entries) - 1)
                + AQA::ACQS.val(u32::from(admin.cq_entries) - 1),
        );
        regs.asq.set(admin.sq);
        regs.acq.set(admin.cq);
        regs.cc.write(
            CC::CSS.val(0)
                + CC::MPS.val(0)
                + CC::AMS.val(0)
                + CC::IOSQES.val(SQE_SIZE_LOG2)
                + CC::IOCQES.val(CQE_SIZE_LOG2)
                + CC::EN::SET,
        );
        wait_for(clock, self.caps.timeout, "NVMe CSTS.RDY = 1", || {
            let csts = regs.csts.extract();
            if csts.is_set(CSTS::CFS) {
                Some(Err(BoardError::ControllerFatal))
            } else {
                csts.is_set(CSTS::RDY).then_some(Ok(()))
            }
        })?
    }

    /// The doorbell array from SQ0TDBL (offset 0x1000) to the end of BAR0,
    /// as `u32` registers: what `dma_ring::NvmeDoorbellArray::new` takes
    /// together with [`Capabilities::doorbell_stride`].
    pub fn doorbell_registers(&self) -> &[WriteOnly<u32>] {
        let count = (self.bar_size - DOORBELL_BASE) / 4;
        // WriteOnly<u32> is a 4-byte volatile cell: the slice is MMIO cells.
        // SAFETY: `new` checked that BAR0 extends past the first doorbells,
        // so `DOORBELL_BASE..bar_size` lies inside the mapping.
        unsafe {
            core::slice::from_raw_parts(
                self.bar
                    .add(DOORBELL_BASE)
                    .cast::<WriteOnly<u32>>()
                    .as_ptr(),
                count,
            )
        }
    }

    /// The doorbell array as `dma-ring` indexes it: queue `y`'s SQ tail and
    /// CQ head doorbells, spaced by CAP.DSTRD.
    ///
    /// # Errors
    ///
    /// [`BoardError::Unsupported`] for a stride `dma-ring` refuses (CAP.DSTRD
    /// is 4 bits, so none does).
    pub fn doorbells(&self) -> Result<NvmeDoorbellArray<'_>> {
        NvmeDoorbellArray::new(self.doorbell_registers(), self.caps.doorbell_stride)
            .map_err(|_| BoardError::Unsupported("the doorbell stride"))
    }

    /// True when the controller reports fatal status (CSTS.CFS), as it does
    /// after a blocked queue fetch.
    pub fn is_fatal(&self) -> bool {
        self.regs().csts.is_set(CSTS::CFS)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use core::cell::Cell;
    use std::boxed::Box;

    use super::*;

    /// QEMU 7.2's CAP: MQES 2047, CQR, TO 15, DSTRD 0, CSS NVM, MPSMIN 0,
    /// MPSMAX 4; VS 1.4.0.
    const QEMU_CAP: u64 = 0x0040_0020_0f01_07ff;
    const QEMU_VS: u32 = 0x0001_0400;

    struct Ticking(Cell<u64>);
    impl Clock for Ticking {
        fn now(&self) -> u64 {
            self.0.set(self.0.get() + 1);
            self.0.get()
        }
        fn frequency(&self) -> u64 {
            10
        }
    }

    /// BAR0 in plain memory: registers that never change on their own.
    fn fake_bar(cap: u64) -> Box<[u64; 0x2000 / 8]> {
        let mut bar = Box::new([0u64; 0x2000 / 8]);
        bar[0] = cap;
        bar[1] = u64::from(QEMU_VS);
        bar
    }

    fn controller(bar: &mut [u64; 0x2000 / 8]) -> Result<NvmeController> {
        let base = NonNull::new(bar.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the array outlives the controller and is 0x2000 bytes.
        unsafe { NvmeController::new(base, 0x2000) }
    }

    #[test]
    fn doorbells_follow_the_stride() {
        let mut bar = fake_bar(QEMU_CAP);
        let c = controller(&mut bar).unwrap();
        let array = c.doorbells().unwrap();
        array.cq_head(1).unwrap().set(7);
        assert_eq!(bar[0x100c / 8] >> 32, 7);
        assert!(array.sq_tail(1000).is_err(), "beyond BAR0");
        assert_eq!(c.doorbell_registers().len(), 0x1000 / 4);
        c.doorbell_registers()[2].set(9);
        assert_eq!(bar[0x1008 / 8] & 0xffff_ffff, 9);
    }

    #[test]
    fn enable_programs_the_admin_queues_and_times_out_without_rdy() {
        let mut bar = fake_bar(QEMU_CAP);
        let c = controller(&mut bar).unwrap();
        let clock = Ticking(Cell::new(0));
        let admin = AdminQueues {
            sq: 0x4700_0000,
            sq_entries: 32,
            cq: 0x4700_1000,
            cq_entries: 16,
        };
        assert_eq!(
            c.enable(admin, &clock),
            Err(BoardError::Timeout("NVMe CSTS.RDY = 1"))
        );
        assert_eq!(bar[0x24 / 8] >> 32, 0x000f_001f, "AQA zero-based sizes");
        assert_eq!(bar[0x28 / 8], 0x4700_0000);
        assert_eq!(bar[0x30 / 8], 0x4700_1000);
        assert_eq!(
            bar[0x10 / 8] >> 32,
            0x0046_0001,
            "CC: IOCQES 4, IOSQES 6, EN"
        );
    }

    #[test]
    fn enable_reports_fatal_status() {
        let mut bar = fake_bar(QEMU_CAP);
        bar[0x18 / 8] = 0b10 << 32; // CSTS.CFS
        let c = controller(&mut bar).unwrap();
        let admin = AdminQueues {
            sq: 0,
            sq_entries: 2,
            cq: 0x1000,
            cq_entries: 2,
        };
        assert_eq!(
            c.enable(admin, &Ticking(Cell::new(0))),
            Err(BoardError::ControllerFatal)
        );
        assert!(c.is_fatal());
    }

    #[test]
    fn enable_rejects_bad_queues_and_disable_waits() {
        let mut bar = fake_bar(QEMU_CAP);
        let c = controller(&mut bar).unwrap();
        let clock = Ticking(Cell::new(0));
        let bad = |sq, n| AdminQueues {
            sq,
            sq_entries: n,
            cq: 0,
            cq_entries: 2,
        };
        assert!(matches!(
            c.enable(bad(0, 1), &clock),
            Err(BoardError::InvalidArgument(_))
        ));
        assert!(matches!(
            c.enable(bad(0, 4097), &clock),
            Err(BoardError::InvalidArgument(_))
        ));
        assert!(matches!(
            c.enable(bad(0x800, 2), &clock),
            Err(BoardError::InvalidArgument(_))
        ));
        assert_eq!(c.disable(&clock), Ok(()));
        bar[0x18 / 8] = 1 << 32; // CSTS.RDY stuck at 1
        let c = controller(&mut bar).unwrap();
        assert_eq!(
            c.disable(&clock),
            Err(BoardError::Timeout("NVMe CSTS.RDY = 0"))
        );
    }

    #[test]
    fn controllers_without_4k_pages_or_nvm_are_refused() {
        let mut bar = fake_bar(QEMU_CAP | 1 << 48); // MPSMIN 8 KiB
        assert!(matches!(
            controller(&mut bar),
            Err(BoardError::Unsupported(_))
        ));
        let mut bar = fake_bar(QEMU_CAP & !(1 << 37));
        assert!(matches!(
            controller(&mut bar),
            Err(BoardError::Unsupported(_))
        ));
    }
}
