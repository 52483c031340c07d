//! The controller behind its BAR0, and its bring-up (NVMe Base
//! Specification 2.0c, §3.5.1 "Memory-based Controller Initialization",
//! §3.6 "Controller Shutdown").
//!
//! This is the part of a driver that is about the controller, not about
//! queues: reading CAP/VS, disabling, programming the admin queue
//! addresses, enabling, shutting down, and finding each queue's doorbells.
//! The BAR may be real MMIO (Device memory, a VFIO `mmap`) or a
//! simulator's register block in RAM; waiting is the caller's [`Wait`].

use core::marker::PhantomData;
use core::ptr::NonNull;

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::WriteOnly;

use dma_ring::nvme::{NvmeCompleted, NvmeQueuePair, NvmeStatus};
use dma_ring::{Doorbell, RingMemory, SlotStorage};

use super::spec::{
    doorbell_offset, Capabilities, NvmeDoorbellArray, NvmeRegisters, AQA, CC, CQE_SIZE_LOG2, CSTS,
    DOORBELL_BASE, PAGE_SIZE, SQE_SIZE_LOG2,
};
use crate::{poll_until, DriverError, Wait};

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

/// An NVMe controller behind its BAR0, borrowed for `'bar`.
pub struct Controller<'bar> {
    bar: NonNull<u8>,
    bar_size: usize,
    caps: Capabilities,
    _bar: PhantomData<&'bar NvmeRegisters>,
}

impl core::fmt::Debug for Controller<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Controller")
            .field("bar", &self.bar)
            .field("bar_size", &self.bar_size)
            .field("caps", &self.caps)
            .finish()
    }
}

// SAFETY: the controller is a register block reached only through
// tock-registers' volatile accesses of whole registers; moving the handle
// to another thread moves the only driver of it (`new`'s contract).
unsafe impl Send for Controller<'_> {}

impl<'bar> Controller<'bar> {
    /// The controller whose BAR0 is at `bar`, `bar_size` bytes.
    ///
    /// # Safety
    ///
    /// `bar` points to the controller's BAR0 (MMIO mapped as Device
    /// memory, or a simulated block of tock-registers cells laid out as
    /// BAR0), readable and writable for `bar_size` bytes for `'bar`, and no
    /// other driver uses it meanwhile.
    ///
    /// # Errors
    ///
    /// [`DriverError::Unsupported`] when the controller lacks the NVM
    /// command set or 4 KiB pages, or the BAR is too small for the admin
    /// and first I/O queue's doorbells.
    pub unsafe fn new(bar: NonNull<u8>, bar_size: usize) -> Result<Self, DriverError> {
        if bar_size < core::mem::size_of::<NvmeRegisters>() {
            return Err(DriverError::Unsupported(
                "a BAR0 holding the controller registers",
            ));
        }
        let mut this = Self {
            bar,
            bar_size,
            caps: Capabilities::decode(0, 0),
            _bar: PhantomData,
        };
        this.caps = Capabilities::decode(this.regs().cap.get(), this.regs().vs.get());
        if !this.caps.nvm_command_set {
            return Err(DriverError::Unsupported("the NVM command set"));
        }
        if !(this.caps.min_page_size..=this.caps.max_page_size).contains(&PAGE_SIZE) {
            return Err(DriverError::Unsupported("4 KiB memory pages"));
        }
        if doorbell_offset(1, true, this.caps.doorbell_stride) + 4 > bar_size {
            return Err(DriverError::Unsupported("doorbells inside BAR0"));
        }
        Ok(this)
    }

    /// The register block.
    pub fn regs(&self) -> &'bar NvmeRegisters {
        // SAFETY: `new`'s contract maps BAR0 for 'bar, and `new` checked
        // that it holds the block; its fields are volatile cells.
        unsafe { self.bar.cast().as_ref() }
    }

    /// CAP and VS, decoded.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Clears CC.EN and waits for CSTS.RDY to drop: the controller has
    /// stopped every DMA and forgotten its queues (§3.5.1 step 1, §3.5.2).
    ///
    /// # Errors
    ///
    /// [`DriverError::Timeout`] when `wait` gives up.
    pub fn disable(&self, wait: &mut impl Wait) -> Result<(), DriverError> {
        let regs = self.regs();
        if !regs.cc.is_set(CC::EN) && !regs.csts.is_set(CSTS::RDY) {
            return Ok(());
        }
        regs.cc.modify(CC::EN::CLEAR);
        poll_until(wait, "NVMe CSTS.RDY = 0", || {
            (!regs.csts.is_set(CSTS::RDY)).then_some(Ok(()))
        })
    }

    /// Programs the admin queues and enables the controller with 4 KiB
    /// pages, the NVM command set, round-robin arbitration and 64/16-byte
    /// I/O queue entries, then waits for CSTS.RDY (§3.5.1 steps 2-4). The
    /// controller must be disabled.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for queue sizes outside 2..=4096 or
    /// CAP.MQES + 1, addresses not 4 KiB aligned, or an enabled
    /// controller; [`DriverError::ControllerFatal`] when CSTS.CFS rises;
    /// [`DriverError::Timeout`] when `wait` gives up.
    pub fn enable(&self, admin: AdminQueues, wait: &mut impl Wait) -> Result<(), DriverError> {
        let limit = self.caps.max_queue_entries.min(4096);
        for entries in [admin.sq_entries, admin.cq_entries] {
            if !(2..=limit).contains(&u32::from(entries)) {
                return Err(DriverError::InvalidArgument(
                    "admin queues have 2..=min(4096, CAP.MQES + 1) entries",
                ));
            }
        }
        if admin.sq % PAGE_SIZE != 0 || admin.cq % PAGE_SIZE != 0 {
            return Err(DriverError::InvalidArgument(
                "admin queues are 4 KiB aligned",
            ));
        }
        let regs = self.regs();
        if regs.cc.is_set(CC::EN) {
            return Err(DriverError::InvalidArgument(
                "the controller is disabled first",
            ));
        }
        regs.aqa.write(
            AQA::ASQS.val(u32::from(admin.sq_entries) - 1)
                + AQA::ACQS.val(u32::from(admin.cq_entries) - 1),
        );
        regs.asq.set(admin.sq);
        regs.acq.set(admin.cq);
        // Configure first, then enable in a second write.
        regs.cc.write(
            CC::CSS.val(0)
                + CC::MPS.val(0)
                + CC::AMS.val(0)
                + CC::IOSQES.val(SQE_SIZE_LOG2)
                + CC::IOCQES.val(CQE_SIZE_LOG2),
        );
        regs.cc.modify(CC::EN::SET);
        poll_until(wait, "NVMe CSTS.RDY = 1", || {
            let csts = regs.csts.extract();
            if csts.is_set(CSTS::CFS) {
                Some(Err(DriverError::ControllerFatal))
            } else {
                csts.is_set(CSTS::RDY).then_some(Ok(()))
            }
        })
    }

    /// Tells the controller to shut down normally (CC.SHN, §3.6) and waits
    /// for CSTS.SHST to say it is complete. The queues should be deleted
    /// first; disable afterwards.
    ///
    /// # Errors
    ///
    /// [`DriverError::Timeout`] when `wait` gives up.
    pub fn shutdown(&self, wait: &mut impl Wait) -> Result<(), DriverError> {
        let regs = self.regs();
        regs.cc.modify(CC::SHN::Normal);
        poll_until(wait, "NVMe shutdown (CSTS.SHST)", || {
            regs.csts
                .matches_all(CSTS::SHST::Complete)
                .then_some(Ok(()))
        })
    }

    /// The doorbell array from SQ0TDBL (offset 0x1000) to the end of BAR0,
    /// as `u32` registers.
    pub fn doorbell_registers(&self) -> &'bar [WriteOnly<u32>] {
        let count = (self.bar_size - DOORBELL_BASE) / 4;
        // WriteOnly<u32> is a 4-byte volatile cell: the slice is MMIO cells.
        // SAFETY: `new` checked that BAR0 extends past the first doorbells,
        // so `DOORBELL_BASE..bar_size` lies inside the mapping, for 'bar.
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

    /// The doorbell array indexed by queue, spaced by CAP.DSTRD.
    ///
    /// # Errors
    ///
    /// None in practice: CAP.DSTRD is a 4-bit field, so every stride it
    /// can hold is accepted.
    pub fn doorbells(&self) -> Result<NvmeDoorbellArray<'bar>, DriverError> {
        NvmeDoorbellArray::new(self.doorbell_registers(), self.caps.doorbell_stride)
    }

    /// True when the controller reports fatal status (CSTS.CFS), as it does
    /// after a blocked queue fetch.
    pub fn is_fatal(&self) -> bool {
        self.regs().csts.is_set(CSTS::CFS)
    }

    /// Polls `queue` until a completion arrives, the controller reports
    /// fatal status, or `wait` gives up; completed entries are released to
    /// the controller while waiting.
    ///
    /// # Errors
    ///
    /// [`DriverError::Ring`] for a completion the queue refuses,
    /// [`DriverError::ControllerFatal`], or [`DriverError::Timeout`] naming
    /// `what`.
    pub fn wait_completion<M, D, T, S>(
        &self,
        queue: &mut NvmeQueuePair<M, D, T, S>,
        wait: &mut impl Wait,
        what: &'static str,
    ) -> Result<NvmeCompleted<T>, DriverError>
    where
        M: RingMemory,
        D: Doorbell,
        S: SlotStorage<T>,
    {
        poll_until(wait, what, || match queue.poll() {
            Ok(Some(done)) => Some(Ok(done)),
            Ok(None) => {
                queue.release_completions();
                self.is_fatal().then_some(Err(DriverError::ControllerFatal))
            }
            Err(e) => Some(Err(e.into())),
        })
    }
}

/// `Ok` for a successful completion status, else [`DriverError::Nvme`]
/// naming the command's `opcode` and the status the controller wrote.
///
/// # Errors
///
/// [`DriverError::Nvme`].
pub fn check_status(opcode: u8, status: NvmeStatus) -> Result<(), DriverError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(DriverError::Nvme {
            opcode,
            code_type: status.code_type(),
            code: status.code(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2's CAP: MQES 2047, CQR, TO 15, DSTRD 0, CSS NVM, MPSMIN 0,
    /// MPSMAX 4; VS 1.4.0.
    const QEMU_CAP: u64 = 0x0040_0020_0f01_07ff;
    const QEMU_VS: u32 = 0x0001_0400;
    const BAR_WORDS: usize = 0x2000 / 8;

    /// Gives up after a few pauses, counting them.
    struct Patience(u32);
    impl Wait for Patience {
        fn begin(&mut self) {
            self.0 = 0;
        }
        fn pause(&mut self) -> bool {
            self.0 += 1;
            self.0 < 4
        }
    }

    /// BAR0 in plain memory: registers that never change on their own.
    fn fake_bar(cap: u64) -> [u64; BAR_WORDS] {
        let mut bar = [0u64; BAR_WORDS];
        bar[0] = cap;
        bar[1] = u64::from(QEMU_VS);
        bar
    }

    fn controller(bar: &mut [u64; BAR_WORDS]) -> Result<Controller<'_>, DriverError> {
        let base = NonNull::new(bar.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the array is borrowed for the controller's lifetime and
        // is 0x2000 bytes; it is read back only after the controller's
        // last use in each test.
        unsafe { Controller::new(base, 0x2000) }
    }

    #[test]
    fn doorbells_are_found_through_the_stride() {
        let mut bar = fake_bar(QEMU_CAP);
        let c = controller(&mut bar).unwrap();
        let array = c.doorbells().unwrap();
        array.cq_head(1).unwrap().set(7);
        assert!(array.sq_tail(1000).is_err(), "beyond BAR0");
        assert_eq!(c.doorbell_registers().len(), 0x1000 / 4);
        c.doorbell_registers()[2].set(9);
        assert_eq!(bar[0x100c / 8] >> 32, 7);
        assert_eq!(bar[0x1008 / 8] & 0xffff_ffff, 9);
    }

    #[test]
    fn enable_programs_the_admin_queues_and_times_out_without_rdy() {
        let mut bar = fake_bar(QEMU_CAP);
        let c = controller(&mut bar).unwrap();
        let admin = AdminQueues {
            sq: 0x4700_0000,
            sq_entries: 32,
            cq: 0x4700_1000,
            cq_entries: 16,
        };
        let mut wait = Patience(0);
        assert_eq!(
            c.enable(admin, &mut wait),
            Err(DriverError::Timeout("NVMe CSTS.RDY = 1"))
        );
        assert_eq!(wait.0, 4, "the wait was asked until it gave up");
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
            c.enable(admin, &mut Patience(0)),
            Err(DriverError::ControllerFatal)
        );
        assert!(c.is_fatal());
    }

    #[test]
    fn enable_rejects_bad_queues_and_disable_waits() {
        let mut bar = fake_bar(QEMU_CAP);
        let c = controller(&mut bar).unwrap();
        let wait = &mut Patience(0);
        let bad = |sq, n| AdminQueues {
            sq,
            sq_entries: n,
            cq: 0,
            cq_entries: 2,
        };
        for queues in [bad(0, 1), bad(0, 4097), bad(0x800, 2)] {
            assert!(matches!(
                c.enable(queues, wait),
                Err(DriverError::InvalidArgument(_))
            ));
        }
        assert_eq!(c.disable(wait), Ok(()));
        bar[0x14 / 8] |= 1 << 32; // CC.EN set
        let c = controller(&mut bar).unwrap();
        assert!(matches!(
            c.enable(bad(0, 2), wait),
            Err(DriverError::InvalidArgument(
                "the controller is disabled first"
            ))
        ));
        bar[0x18 / 8] = 1 << 32; // CSTS.RDY stuck at 1
        let c = controller(&mut bar).unwrap();
        assert_eq!(
            c.disable(wait),
            Err(DriverError::Timeout("NVMe CSTS.RDY = 0"))
        );
    }

    #[test]
    fn shutdown_waits_for_shst_complete() {
        let mut bar = fake_bar(QEMU_CAP);
        let c = controller(&mut bar).unwrap();
        assert_eq!(
            c.shutdown(&mut Patience(0)),
            Err(DriverError::Timeout("NVMe shutdown (CSTS.SHST)"))
        );
        assert_eq!(bar[0x10 / 8] >> 32 >> 14 & 0b11, 1, "CC.SHN normal");
        bar[0x18 / 8] = 0b1000 << 32; // CSTS.SHST = 2, complete
        let c = controller(&mut bar).unwrap();
        assert_eq!(c.shutdown(&mut Patience(0)), Ok(()));
    }

    #[test]
    fn completion_waits_give_up_or_see_fatal_status() {
        use dma_coherence::HardwareCoherent;
        use dma_core::{DeviceConstraints, HostMemory};
        use dma_direct::DirectPlatform;
        use dma_ring::nvme::NvmeQueueConfig;

        let platform: DirectPlatform<HostMemory, HardwareCoherent> =
            DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
        let mut bar = fake_bar(QEMU_CAP);
        let c = controller(&mut bar).unwrap();
        let config = NvmeQueueConfig {
            qid: 0,
            sq_size: 2,
            cq_size: 2,
        };
        let doorbells = c.doorbells().unwrap().queue(0).unwrap();
        let mut queue =
            NvmeQueuePair::<_, _, u32, _>::allocate(&platform, config, doorbells).unwrap();
        assert_eq!(
            c.wait_completion(&mut queue, &mut Patience(0), "a completion")
                .err(),
            Some(DriverError::Timeout("a completion"))
        );
        let mut fatal_bar = fake_bar(QEMU_CAP);
        fatal_bar[0x18 / 8] = 0b10 << 32; // CSTS.CFS
        let fatal = controller(&mut fatal_bar).unwrap();
        assert_eq!(
            fatal
                .wait_completion(&mut queue, &mut Patience(0), "a completion")
                .err(),
            Some(DriverError::ControllerFatal)
        );
    }

    #[test]
    fn error_statuses_name_the_command() {
        assert_eq!(check_status(2, NvmeStatus::SUCCESS), Ok(()));
        assert_eq!(
            check_status(2, NvmeStatus::new(0, 0x80)),
            Err(DriverError::Nvme {
                opcode: 2,
                code_type: 0,
                code: 0x80
            })
        );
    }

    #[test]
    fn controllers_without_4k_pages_nvm_or_doorbells_are_refused() {
        for cap in [QEMU_CAP | 1 << 48, QEMU_CAP & !(1 << 37)] {
            let mut bar = fake_bar(cap);
            assert!(matches!(
                controller(&mut bar),
                Err(DriverError::Unsupported(_))
            ));
        }
        let mut bar = fake_bar(QEMU_CAP);
        let base = NonNull::new(bar.as_mut_ptr().cast::<u8>()).unwrap();
        for size in [0x20, 0x1008] {
            // SAFETY: a prefix of the array, borrowed for the call.
            let small = unsafe { Controller::new(base, size) };
            assert!(matches!(small, Err(DriverError::Unsupported(_))));
        }
    }
}
