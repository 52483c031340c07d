//! A reference NVMe driver built from the crate family: `dma-ring`'s queue
//! pairs on `dma-core` coherent memory, doorbells from `dma-ring`'s register
//! array over the controller's BAR, admin data through streaming mappings,
//! over any platform (the direct backend or the IOMMU one).
//!
//! It does what a minimal driver must (NVMe Base Specification 2.0c,
//! §3.5.1 "Memory-based Controller Initialization", §5 "Admin Command
//! Set"): reset the controller, give it an admin queue pair, Identify the
//! controller and a namespace, create one I/O queue pair (polled, no
//! interrupts) and delete it again. I/O itself is the caller's: push
//! commands with their buffers into [`NvmeDriver::io`] (a
//! [`NvmeQueuePair`]), ring once, and reap; the buffers come back with
//! each completion.

use alloc::vec::Vec;
use core::mem::ManuallyDrop;
use core::time::Duration;

use dma_core::{Coherent, DmaAlloc, DmaBuf, DmaMap, FromDevice, StreamingMapping};
pub use dma_drivers::nvme::spec::{
    admin_opcode, cns, create_io_cq, create_io_sq, delete_io_queue, identify, read_write,
    ControllerIdentity, NamespaceIdentity,
};
use dma_ring::nvme::{NvmeCommand, NvmeCompleted, NvmeDoorbells, NvmeQueueConfig, NvmeQueuePair};
use dma_ring::Slot;
use tock_registers::registers::WriteOnly;

use crate::timer::{Clock, TimerWait};
use crate::{BoardError, Result};
use dma_drivers::nvme::check_status;
use dma_drivers::nvme::spec::PAGE_SIZE;
use dma_drivers::nvme::{AdminQueues, Controller};

/// How long an admin command may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The queue identifier of the one I/O queue pair.
pub const IO_QID: u16 = 1;

/// The namespace the driver uses.
pub const NSID: u32 = 1;

/// A queue pair of this driver: coherent queue memory from `P`, doorbells
/// in the controller's BAR, the buffers `T` of each command in flight.
pub type QueuePair<'c, P, T> =
    NvmeQueuePair<Coherent<[u64], P>, &'c WriteOnly<u32>, T, Vec<Slot<T>>>;

/// The admin queue's in-flight data: an Identify page, or nothing.
pub type AdminData<P> = Option<StreamingMapping<DmaBuf, FromDevice, P>>;

/// The controller with its admin queue, and once created, its I/O queue.
pub struct NvmeDriver<'c, P, T, K>
where
    P: DmaMap + DmaAlloc + Clone,
    K: Clock,
{
    ctrl: &'c Controller<'c>,
    clock: &'c K,
    platform: P,
    /// Dropped only once the controller is known to be disabled.
    queues: ManuallyDrop<Queues<'c, P, T>>,
}

struct Queues<'c, P: DmaMap + DmaAlloc, T> {
    admin: QueuePair<'c, P, AdminData<P>>,
    io: Option<QueuePair<'c, P, T>>,
}

impl<'c, P, T, K> NvmeDriver<'c, P, T, K>
where
    P: DmaMap + DmaAlloc + Clone,
    K: Clock,
{
    /// Resets the controller and enables it with an admin queue pair of
    /// `entries` entries each, allocated from `platform` (so its addresses
    /// are whatever the platform gives the device: physical, or IOVAs).
    ///
    /// # Errors
    ///
    /// Allocation errors; the controller's enable errors (timeout, fatal
    /// status).
    pub fn start(
        ctrl: &'c Controller<'c>,
        platform: P,
        clock: &'c K,
        entries: u16,
    ) -> Result<Self> {
        let mut enable_wait = TimerWait::new(clock, ctrl.capabilities().timeout);
        ctrl.disable(&mut enable_wait)?;
        let doorbells = ctrl.doorbells()?;
        let admin = NvmeQueuePair::allocate(
            platform.clone(),
            NvmeQueueConfig {
                qid: 0,
                sq_size: u32::from(entries),
                cq_size: u32::from(entries),
            },
            NvmeDoorbells {
                sq_tail: doorbells.sq_tail(0)?,
                cq_head: doorbells.cq_head(0)?,
            },
        )?;
        ctrl.enable(
            AdminQueues {
                sq: admin.sq_dma_addr().as_u64(),
                sq_entries: entries,
                cq: admin.cq_dma_addr().as_u64(),
                cq_entries: entries,
            },
            &mut enable_wait,
        )?;
        Ok(Self {
            ctrl,
            clock,
            platform,
            queues: ManuallyDrop::new(Queues { admin, io: None }),
        })
    }

    /// Disables the controller, waiting at most CAP.TO.
    fn disable(&self) -> Result<()> {
        let mut wait = TimerWait::new(self.clock, self.ctrl.capabilities().timeout);
        Ok(self.ctrl.disable(&mut wait)?)
    }

    /// The platform the driver allocates and maps through.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The controller.
    pub fn controller(&self) -> &Controller<'c> {
        self.ctrl
    }

    /// Issues one admin command with its data and waits for it.
    ///
    /// # Errors
    ///
    /// [`BoardError::Ring`] when the queue refuses it or the controller
    /// posts an invalid completion; [`BoardError::NvmeStatus`] for an error
    /// status; [`BoardError::ControllerFatal`] or [`BoardError::Timeout`]
    /// when no completion comes.
    pub fn admin(
        &mut self,
        command: NvmeCommand,
        data: AdminData<P>,
    ) -> Result<NvmeCompleted<AdminData<P>>> {
        let cid = self
            .queues
            .admin
            .submit(command, data)
            .map_err(|r| r.error)?;
        let mut wait = TimerWait::new(self.clock, ADMIN_TIMEOUT);
        let done =
            self.ctrl
                .wait_completion(&mut self.queues.admin, &mut wait, "an NVMe completion")?;
        self.queues.admin.release_completions();
        if done.cid != cid {
            return Err(BoardError::Ring(dma_ring::RingError::with(
                dma_ring::RingErrorKind::UnexpectedCompletion,
                done.cid.into(),
            )));
        }
        check_status(command.opcode(), done.status)?;
        Ok(done)
    }

    /// Identify with `cns` for `nsid`, through a page-aligned 4 KiB buffer
    /// mapped from the device (so `dma-coherence` invalidates it for the
    /// CPU afterwards).
    fn identify_page(&mut self, cns: u8, nsid: u32) -> Result<DmaBuf> {
        let page = PAGE_SIZE as usize;
        let buf = DmaBuf::new(page, page)?;
        let map = StreamingMapping::<_, FromDevice, _>::map(self.platform.clone(), buf)
            .map_err(|e| e.error)?;
        let cmd = identify(cns, nsid, map.dma_addr().as_u64());
        let done = self.admin(cmd, Some(map))?;
        let mut map = done
            .buffers
            .ok_or(BoardError::InvalidArgument("the Identify buffer came back"))?;
        map.sync_for_cpu();
        Ok(map.unmap()?)
    }

    /// Identify Controller (CNS 1).
    ///
    /// # Errors
    ///
    /// As for [`admin`](Self::admin), and mapping errors.
    pub fn identify_controller(&mut self) -> Result<ControllerIdentity> {
        Ok(ControllerIdentity::decode(
            &self.identify_page(cns::CONTROLLER, 0)?,
        )?)
    }

    /// Identify Namespace (CNS 0) for `nsid`.
    ///
    /// # Errors
    ///
    /// As for [`identify_controller`](Self::identify_controller), and
    /// [`BoardError::InvalidArgument`] for an impossible block size.
    pub fn identify_namespace(&mut self, nsid: u32) -> Result<NamespaceIdentity> {
        Ok(NamespaceIdentity::decode(
            &self.identify_page(cns::NAMESPACE, nsid)?,
        )?)
    }

    /// Creates the I/O queue pair ([`IO_QID`]) with `sq_size` and
    /// `cq_size` entries: the completion queue first, as the submission
    /// queue names it (§5.5).
    ///
    /// # Errors
    ///
    /// [`BoardError::InvalidArgument`] when it exists already or a size is
    /// beyond CAP.MQES + 1; allocation and admin errors.
    pub fn create_io_queues(&mut self, sq_size: u32, cq_size: u32) -> Result<()> {
        if self.queues.io.is_some() {
            return Err(BoardError::InvalidArgument("one I/O queue pair"));
        }
        let max = self.ctrl.capabilities().max_queue_entries;
        if !(2..=max).contains(&sq_size) || !(2..=max).contains(&cq_size) {
            return Err(BoardError::InvalidArgument(
                "I/O queues have 2..=CAP.MQES + 1 entries",
            ));
        }
        let doorbells = self.ctrl.doorbells()?;
        let qp = NvmeQueuePair::allocate(
            self.platform.clone(),
            NvmeQueueConfig {
                qid: IO_QID,
                sq_size,
                cq_size,
            },
            NvmeDoorbells {
                sq_tail: doorbells.sq_tail(IO_QID)?,
                cq_head: doorbells.cq_head(IO_QID)?,
            },
        )?;
        let cq = qp.cq_dma_addr().as_u64();
        let sq = qp.sq_dma_addr().as_u64();
        self.admin(create_io_cq(IO_QID, cq_size, cq), None)?;
        self.admin(create_io_sq(IO_QID, sq_size, sq, IO_QID), None)?;
        self.queues.io = Some(qp);
        Ok(())
    }

    /// The I/O queue pair.
    ///
    /// # Errors
    ///
    /// [`BoardError::InvalidArgument`] before
    /// [`create_io_queues`](Self::create_io_queues).
    pub fn io(&mut self) -> Result<&mut QueuePair<'c, P, T>> {
        self.queues
            .io
            .as_mut()
            .ok_or(BoardError::InvalidArgument("the I/O queues exist"))
    }

    /// Waits for the next I/O completion (the CQ head doorbell is written
    /// at once).
    ///
    /// # Errors
    ///
    /// As for [`admin`](Self::admin), except that an error status is the
    /// caller's to judge (it is in the completion).
    pub fn wait_io(&mut self, timeout: Duration) -> Result<NvmeCompleted<T>> {
        let (ctrl, clock) = (self.ctrl, self.clock);
        let io = self.io()?;
        let mut wait = TimerWait::new(clock, timeout);
        let done = ctrl.wait_completion(io, &mut wait, "an NVMe completion")?;
        io.release_completions();
        Ok(done)
    }

    /// Deletes the I/O queues (submission queue first, §5.6), disables the
    /// controller and frees the queues.
    ///
    /// # Errors
    ///
    /// Admin errors (the controller is still disabled, and the queue
    /// memory is freed only once it is); the disable timeout.
    pub fn shutdown(mut self) -> Result<()> {
        let deleted = match self.queues.io.as_ref().map(|q| q.in_flight()) {
            None => Ok(()),
            Some(0) => self
                .admin(delete_io_queue(admin_opcode::DELETE_IO_SQ, IO_QID), None)
                .and_then(|_| self.admin(delete_io_queue(admin_opcode::DELETE_IO_CQ, IO_QID), None))
                .map(|_| ()),
            Some(_) => Err(BoardError::InvalidArgument(
                "I/O commands are still in flight",
            )),
        };
        let disabled = self.disable();
        deleted.and(disabled)
    }
}

impl<P, T, K> Drop for NvmeDriver<'_, P, T, K>
where
    P: DmaMap + DmaAlloc + Clone,
    K: Clock,
{
    /// Disables the controller before its queues go back to the platform.
    /// If it does not stop in time, the queue memory is leaked rather than
    /// freed under a device that may still write it.
    fn drop(&mut self) {
        if self.disable().is_ok() {
            // SAFETY: dropped once, here; the field is never used again.
            unsafe { ManuallyDrop::drop(&mut self.queues) };
        }
    }
}
