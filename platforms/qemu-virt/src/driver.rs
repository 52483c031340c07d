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
use dma_ring::nvme::{
    opcode, NvmeCommand, NvmeCompleted, NvmeDoorbells, NvmeQueueConfig, NvmeQueuePair,
};
use dma_ring::Slot;
use tock_registers::registers::WriteOnly;

use crate::nvme::{AdminQueues, NvmeController, PAGE_SIZE};
use crate::timer::{wait_for, Clock};
use crate::{BoardError, Result};

/// Admin opcodes `dma-ring` does not name (§5, Figure 84).
pub mod admin_opcode {
    /// Delete I/O submission queue.
    pub const DELETE_IO_SQ: u8 = 0x00;
    /// Delete I/O completion queue.
    pub const DELETE_IO_CQ: u8 = 0x04;
}

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

/// Create I/O Completion Queue (§5.4): physically contiguous (PC = 1),
/// interrupts disabled (polled).
pub fn create_io_cq(qid: u16, entries: u32, base: u64) -> NvmeCommand {
    let mut c = NvmeCommand::new(opcode::CREATE_IO_CQ);
    c.prp1 = base;
    c.cdw10[0] = (entries - 1) << 16 | u32::from(qid);
    c.cdw10[1] = 1; // CDW11.PC; IEN = 0
    c
}

/// Create I/O Submission Queue (§5.5): physically contiguous, bound to
/// completion queue `cqid`, medium priority (ignored under round robin).
pub fn create_io_sq(qid: u16, entries: u32, base: u64, cqid: u16) -> NvmeCommand {
    let mut c = NvmeCommand::new(opcode::CREATE_IO_SQ);
    c.prp1 = base;
    c.cdw10[0] = (entries - 1) << 16 | u32::from(qid);
    c.cdw10[1] = u32::from(cqid) << 16 | 1; // CDW11.CQID, PC
    c
}

/// Delete I/O Submission (§5.7) or Completion (§5.6) Queue `qid`.
pub fn delete_io_queue(op: u8, qid: u16) -> NvmeCommand {
    let mut c = NvmeCommand::new(op);
    c.cdw10[0] = u32::from(qid);
    c
}

/// Identify (§5.17) with controller or namespace structure `cns` into the
/// 4 KiB page at `data`.
pub fn identify(cns: u8, nsid: u32, data: u64) -> NvmeCommand {
    let mut c = NvmeCommand::new(opcode::IDENTIFY);
    c.nsid = nsid;
    c.prp1 = data;
    c.cdw10[0] = u32::from(cns);
    c
}

/// A Read or Write (NVM Command Set 1.0, §3.2.4 / §3.2.6) of `blocks`
/// logical blocks (1..=65536) from `slba`; the caller fills in PRP1/PRP2.
///
/// # Errors
///
/// [`BoardError::InvalidArgument`] for a block count outside 1..=65536.
pub fn read_write(op: u8, nsid: u32, slba: u64, blocks: u32) -> Result<NvmeCommand> {
    if !(1..=1 << 16).contains(&blocks) {
        return Err(BoardError::InvalidArgument(
            "a command moves 1..=65536 blocks (NLB is 16 bits, zero-based)",
        ));
    }
    let mut c = NvmeCommand::new(op);
    c.nsid = nsid;
    c.cdw10[0] = slba as u32;
    c.cdw10[1] = (slba >> 32) as u32;
    c.cdw10[2] = blocks - 1;
    Ok(c)
}

/// What Identify Controller says that the driver uses (§5.17.2.1,
/// Figure 276).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerIdentity {
    /// PCI vendor id (bytes 1:0).
    pub vid: u16,
    /// Maximum data transfer size (byte 77): `2^mdts` minimum memory pages,
    /// 0 for no limit.
    pub mdts: u8,
    /// Number of namespaces (bytes 519:516).
    pub namespaces: u32,
}

impl ControllerIdentity {
    /// Decodes the 4 KiB data structure.
    ///
    /// # Errors
    ///
    /// [`BoardError::InvalidArgument`] for fewer than 4096 bytes.
    pub fn decode(data: &[u8]) -> Result<Self> {
        if data.len() < 4096 {
            return Err(BoardError::InvalidArgument("Identify data is 4096 bytes"));
        }
        Ok(Self {
            vid: u16::from_le_bytes([data[0], data[1]]),
            mdts: data[77],
            namespaces: u32::from_le_bytes([data[516], data[517], data[518], data[519]]),
        })
    }

    /// The largest transfer one command may move with `page`-byte minimum
    /// memory pages, or `None` when unlimited.
    pub fn max_transfer(&self, page: u64) -> Option<u64> {
        (self.mdts != 0).then(|| page << self.mdts.min(40))
    }
}

/// What Identify Namespace says that the driver uses (NVM Command Set 1.0,
/// §4.1.5.1, Figure 97).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceIdentity {
    /// Namespace size in logical blocks (NSZE, bytes 7:0).
    pub blocks: u64,
    /// Logical block size in bytes, from the format FLBAS selects.
    pub block_size: u32,
}

impl NamespaceIdentity {
    /// Decodes the 4 KiB data structure.
    ///
    /// # Errors
    ///
    /// [`BoardError::InvalidArgument`] for fewer than 4096 bytes, or an
    /// LBA data size outside 9..=16 (512 B to 64 KiB): a value a device
    /// wrote, so it is checked before it sizes anything.
    pub fn decode(data: &[u8]) -> Result<Self> {
        if data.len() < 4096 {
            return Err(BoardError::InvalidArgument("Identify data is 4096 bytes"));
        }
        let mut nsze = [0u8; 8];
        nsze.copy_from_slice(&data[..8]);
        // FLBAS bits 3:0 (and 6:5 above 16 formats) pick the LBA format;
        // each format is 4 bytes from byte 128, LBADS in bits 23:16.
        let format = usize::from(data[26] & 0xf) | usize::from(data[26] >> 5 & 0b11) << 4;
        let lbads = data[128 + 4 * format + 2];
        if !(9..=16).contains(&lbads) {
            return Err(BoardError::InvalidArgument("LBA data size 512 B to 64 KiB"));
        }
        Ok(Self {
            blocks: u64::from_le_bytes(nsze),
            block_size: 1 << lbads,
        })
    }
}

/// The controller with its admin queue, and once created, its I/O queue.
pub struct NvmeDriver<'c, P, T, K>
where
    P: DmaMap + DmaAlloc + Clone,
    K: Clock,
{
    ctrl: &'c NvmeController,
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
        ctrl: &'c NvmeController,
        platform: P,
        clock: &'c K,
        entries: u16,
    ) -> Result<Self> {
        ctrl.disable(clock)?;
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
            clock,
        )?;
        Ok(Self {
            ctrl,
            clock,
            platform,
            queues: ManuallyDrop::new(Queues { admin, io: None }),
        })
    }

    /// The platform the driver allocates and maps through.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The controller.
    pub fn controller(&self) -> &NvmeController {
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
        let done = wait_completion(&mut self.queues.admin, self.ctrl, self.clock, ADMIN_TIMEOUT)?;
        self.queues.admin.release_completions();
        if done.cid != cid {
            return Err(BoardError::Ring(dma_ring::RingError::with(
                dma_ring::RingErrorKind::UnexpectedCompletion,
                done.cid.into(),
            )));
        }
        check_status(command.opcode(), &done)?;
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
        ControllerIdentity::decode(&self.identify_page(1, 0)?)
    }

    /// Identify Namespace (CNS 0) for `nsid`.
    ///
    /// # Errors
    ///
    /// As for [`identify_controller`](Self::identify_controller), and
    /// [`BoardError::InvalidArgument`] for an impossible block size.
    pub fn identify_namespace(&mut self, nsid: u32) -> Result<NamespaceIdentity> {
        NamespaceIdentity::decode(&self.identify_page(0, nsid)?)
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
        let done = wait_completion(io, ctrl, clock, timeout)?;
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
        let disabled = self.ctrl.disable(self.clock);
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
        if self.ctrl.disable(self.clock).is_ok() {
            // SAFETY: dropped once, here; the field is never used again.
            unsafe { ManuallyDrop::drop(&mut self.queues) };
        }
    }
}

/// Polls `qp` for its next completion until `timeout`, watching for
/// controller fatal status.
fn wait_completion<P, T, K>(
    qp: &mut QueuePair<'_, P, T>,
    ctrl: &NvmeController,
    clock: &K,
    timeout: Duration,
) -> Result<NvmeCompleted<T>>
where
    P: DmaAlloc,
    K: Clock,
{
    wait_for(clock, timeout, "an NVMe completion", || match qp.poll() {
        Ok(Some(done)) => Some(Ok(done)),
        Ok(None) if ctrl.is_fatal() => Some(Err(BoardError::ControllerFatal)),
        Ok(None) => None,
        Err(e) => Some(Err(BoardError::Ring(e))),
    })?
}

/// `Ok` for a successful completion.
///
/// # Errors
///
/// [`BoardError::NvmeStatus`] with the command's opcode and status.
pub fn check_status<T>(op: u8, done: &NvmeCompleted<T>) -> Result<()> {
    if done.status.is_success() {
        Ok(())
    } else {
        Err(BoardError::NvmeStatus {
            opcode: op,
            code_type: done.status.code_type(),
            code: done.status.code(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_commands_encode_as_the_spec_says() {
        let cq = create_io_cq(1, 24, 0x4700_0000);
        assert_eq!(cq.opcode(), 0x05);
        assert_eq!(cq.prp1, 0x4700_0000);
        assert_eq!(cq.cdw10[0], 23 << 16 | 1, "QSIZE zero-based, QID");
        assert_eq!(cq.cdw10[1], 1, "PC, interrupts off");
        let sq = create_io_sq(1, 32, 0x4700_1000, 1);
        assert_eq!(sq.opcode(), 0x01);
        assert_eq!(sq.cdw10[0], 31 << 16 | 1);
        assert_eq!(sq.cdw10[1], 1 << 16 | 1, "CQID, PC");
        let del = delete_io_queue(admin_opcode::DELETE_IO_CQ, 3);
        assert_eq!((del.opcode(), del.cdw10[0]), (0x04, 3));
        let id = identify(1, 0, 0x1000);
        assert_eq!((id.opcode(), id.cdw10[0], id.prp1), (0x06, 1, 0x1000));
    }

    #[test]
    fn reads_and_writes_encode_lba_and_count() {
        let w = read_write(opcode::WRITE, 1, 0x1_0000_0002, 8).unwrap();
        assert_eq!(w.opcode(), 0x01);
        assert_eq!(w.nsid, 1);
        assert_eq!((w.cdw10[0], w.cdw10[1], w.cdw10[2]), (2, 1, 7));
        assert!(read_write(opcode::READ, 1, 0, 1 << 16).is_ok());
        for bad in [0, (1 << 16) + 1] {
            assert!(matches!(
                read_write(opcode::READ, 1, 0, bad),
                Err(BoardError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn identify_controller_decodes_and_bounds_transfers() {
        let mut page = [0u8; 4096];
        page[..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        page[77] = 7;
        page[516] = 256u32.to_le_bytes()[0];
        page[517] = 1;
        let id = ControllerIdentity::decode(&page).unwrap();
        assert_eq!(id.vid, 0x1b36);
        assert_eq!(id.namespaces, 256);
        assert_eq!(id.max_transfer(4096), Some(512 * 1024));
        page[77] = 0;
        assert_eq!(
            ControllerIdentity::decode(&page)
                .unwrap()
                .max_transfer(4096),
            None
        );
        assert!(ControllerIdentity::decode(&page[..100]).is_err());
    }

    #[test]
    fn identify_namespace_checks_what_the_device_wrote() {
        let mut page = [0u8; 4096];
        page[..8].copy_from_slice(&2048u64.to_le_bytes());
        page[26] = 1; // format 1
        page[128 + 4 + 2] = 12; // 4 KiB blocks
        let ns = NamespaceIdentity::decode(&page).unwrap();
        assert_eq!((ns.blocks, ns.block_size), (2048, 4096));
        page[128 + 4 + 2] = 40; // impossible
        assert!(matches!(
            NamespaceIdentity::decode(&page),
            Err(BoardError::InvalidArgument(_))
        ));
        assert!(NamespaceIdentity::decode(&page[..4095]).is_err());
    }
}
