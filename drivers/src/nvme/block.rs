//! The block driver, polled or interrupt-driven (documented in the parent
//! module).

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::ManuallyDrop;

use dma_core::{
    Coherent, DmaAlloc, DmaBuf, DmaBuffer, DmaMap, FromDevice, SgEntry, StreamingMapping, ToDevice,
};
use dma_ring::nvme::{NvmeCommand, NvmeCompleted, NvmeQueueConfig, NvmeQueuePair};
use dma_ring::{RingError, RingErrorKind, Slot};
use dma_sg::nvme::{encode_prp, encode_sgl, NvmePools, PrpRequest, SglRequest};
use dma_sg::{MappedSgTable, SgLimits};
use tock_registers::registers::WriteOnly;

use super::spec::{
    admin_opcode, cns, create_io_cq_with, create_io_sq, delete_io_queue, identify, io_opcode,
    read_write, set_number_of_queues, set_sgl1, ControllerIdentity, NamespaceIdentity, SglSupport,
};
use super::{check_status, AdminQueues, Controller};

use crate::{DriverError, Refused, Wait, Wake};

/// The memory page size the driver configures (CC.MPS = 0).
pub const PAGE_SIZE: usize = 4096;

/// The namespace the driver uses.
pub const NSID: u32 = 1;

/// The identifier of the one I/O queue pair.
pub const IO_QID: u16 = 1;

/// When a Read or Write describes its buffer with an SGL (§4.3.2)
/// instead of PRPs (§4.3.1). SGLs are used only when Identify Controller's
/// SGLS says the controller takes them; PRPs otherwise, whatever this says.
///
/// The default is [`Never`](Self::Never): every controller must take PRPs
/// (admin commands always use them), and for buffers scattered in 4 KiB
/// pages, what a table built from ordinary allocations is, a PRP list
/// costs 8 bytes per page against an SGL's 16. An SGL wins when segments
/// are long (one descriptor whatever a segment's length) or do not start
/// and end on memory pages (which PRPs cannot describe at all);
/// [`AverageSegmentAtLeast`](Self::AverageSegmentAtLeast)`(32768)` is the
/// rule Linux's NVMe driver applies by default (`sgl_threshold`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SglUse {
    /// PRPs for every command.
    #[default]
    Never,
    /// An SGL for every Read and Write.
    Always,
    /// An SGL when the transfer's device segments average at least this
    /// many bytes, PRPs otherwise.
    AverageSegmentAtLeast(usize),
}

/// Queue sizes and data pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeDriverConfig {
    /// Admin submission and completion queue entries (2..=4096).
    pub admin_entries: u16,
    /// I/O submission queue entries (clamped to CAP.MQES + 1).
    pub io_sq_entries: u32,
    /// I/O completion queue entries (clamped to CAP.MQES + 1).
    pub io_cq_entries: u32,
    /// When Reads and Writes use SGLs.
    pub sgl: SglUse,
}

impl Default for NvmeDriverConfig {
    fn default() -> Self {
        Self {
            admin_entries: 8,
            io_sq_entries: 64,
            io_cq_entries: 64,
            sgl: SglUse::Never,
        }
    }
}

/// What Identify said, decoded and checked (the controller is untrusted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NvmeIdentity {
    /// PCI vendor id (Identify Controller bytes 1:0).
    pub vendor: u16,
    /// Serial number, trimmed (bytes 23:04); empty when not ASCII.
    pub serial: String,
    /// Model number, trimmed (bytes 63:24); empty when not ASCII.
    pub model: String,
    /// Number of namespaces the controller supports (NN, bytes 519:516):
    /// the largest valid namespace id, not how many exist.
    pub namespaces: u32,
    /// Maximum data transfer size: `2^mdts` memory pages, 0 = no limit
    /// (byte 77).
    pub mdts: u8,
    /// Namespace 1's size in logical blocks (Identify Namespace NSZE).
    pub blocks: u64,
    /// Logical block size in bytes (from FLBAS's LBA format).
    pub block_size: u32,
    /// SGL Support (Identify Controller bytes 539:536), as reported.
    pub sgls: u32,
}

impl NvmeIdentity {
    /// The most bytes one command may move: MDTS, and NLB's 16 bits.
    pub fn max_transfer(&self) -> usize {
        let by_nlb = (1usize << 16) * self.block_size as usize;
        match self.mdts {
            0 => by_nlb,
            m => by_nlb.min(PAGE_SIZE << m.min(20)),
        }
    }

    /// Whether and how the controller takes SGLs for I/O (SGLS bits 1:0).
    pub const fn sgl(&self) -> SglSupport {
        SglSupport::from_sgls(self.sgls)
    }

    fn decode_controller(&mut self, d: &[u8]) -> Result<(), DriverError> {
        let c = ControllerIdentity::decode(d)?;
        if c.namespaces < NSID {
            return Err(DriverError::InvalidArgument(
                "Identify Controller: NN is 0, so namespace 1 does not exist",
            ));
        }
        self.vendor = c.vid;
        self.serial = c.serial().unwrap_or_default().to_owned();
        self.model = c.model().unwrap_or_default().to_owned();
        self.namespaces = c.namespaces;
        self.mdts = c.mdts;
        self.sgls = c.sgls;
        Ok(())
    }

    fn decode_namespace(&mut self, d: &[u8]) -> Result<(), DriverError> {
        let ns = NamespaceIdentity::decode(d)?;
        self.blocks = ns.blocks;
        self.block_size = ns.block_size;
        Ok(())
    }
}

/// The driver's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NvmeDriverStats {
    /// I/O commands completed (any status).
    pub commands: u64,
    /// Admin commands completed.
    pub admin_commands: u64,
    /// Reads completed successfully.
    pub reads: u64,
    /// Writes completed successfully.
    pub writes: u64,
    /// Flushes completed successfully.
    pub flushes: u64,
    /// Bytes read successfully.
    pub bytes_read: u64,
    /// Bytes written successfully.
    pub bytes_written: u64,
    /// I/O commands that completed with an error.
    pub errors: u64,
    /// PRP list blocks used.
    pub prp_lists: u64,
    /// Reads and Writes queued with an SGL instead of PRPs.
    pub sgl_commands: u64,
    /// SGL segment blocks used (an SGL of one data block needs none).
    pub sgl_segments: u64,
    /// Controller resets by [`NvmeBlockDriver::recover`].
    pub recoveries: u64,
    /// Looks at the I/O completion queue that found nothing new (by
    /// [`NvmeBlockDriver::poll`] or a wait): a polled driver's spins; an
    /// interrupt-driven wait that sleeps first makes none before the wake.
    pub empty_polls: u64,
    /// Interrupt-driven waits only: sleeps that the I/O completion
    /// interrupt ended ([`Wake::Interrupt`]).
    pub interrupt_wakes: u64,
    /// Interrupt-driven waits only: completions found by the first look
    /// at the completion queue after an interrupt woke the driver.
    pub interrupt_completions: u64,
    /// Interrupt-driven waits only: completions found only after the
    /// waiter gave up sleeping, so their interrupt never arrived (as Linux
    /// warns "completion polled" when its timeout handler finds one).
    pub lost_interrupts: u64,
}

/// Which I/O command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// Read (opcode 02h).
    Read,
    /// Write (opcode 01h).
    Write,
    /// Flush (opcode 00h).
    Flush,
    /// A command the caller built whole
    /// ([`queue_raw`](NvmeBlockDriver::queue_raw)), with its opcode.
    Raw(u8),
}

impl IoOp {
    /// The NVM command set opcode.
    pub const fn opcode(self) -> u8 {
        match self {
            Self::Read => io_opcode::READ,
            Self::Write => io_opcode::WRITE,
            Self::Flush => io_opcode::FLUSH,
            Self::Raw(opcode) => opcode,
        }
    }
}

/// A finished I/O command: its buffer back, with the outcome.
#[derive(Debug)]
pub struct IoCompletion<B> {
    /// The command identifier it ran under (as `queue_*` returned).
    pub cid: u16,
    /// Which command.
    pub op: IoOp,
    /// Bytes it was to move.
    pub len: usize,
    /// `Ok` for a successful status; the NVMe status or an unmap error.
    pub result: Result<(), DriverError>,
    /// The caller's buffer (`None` for a flush, or if the platform failed
    /// to unmap it, in which case it is leaked).
    pub buffer: Option<B>,
}

/// A queue pair of this driver: coherent queue memory, doorbells in the
/// controller's register block.
type Queue<'a, P, T> = NvmeQueuePair<Coherent<[u64], P>, &'a WriteOnly<u32>, T, Vec<Slot<T>>>;

/// What an admin command owns while in flight: an Identify page, or nothing.
type AdminData<P> = Option<StreamingMapping<DmaBuf, FromDevice, P>>;

/// The pool memory behind a command's data pointer, the controller reads
/// it until the completion.
enum Pointers<'a, P: DmaAlloc> {
    /// PRP lists (none for PRP1/PRP2 alone).
    Prp(PrpRequest<'a, P>),
    /// SGL segments (none for one Data Block in SGL1).
    Sgl(SglRequest<'a, P>),
}

/// What an I/O command owns while in flight: its mapped buffer and the PRP
/// lists or SGL segments describing it.
enum Request<'a, P: DmaMap + DmaAlloc, B> {
    Read(
        MappedSgTable<B, FromDevice, P, Vec<SgEntry>>,
        Pointers<'a, P>,
    ),
    Write(MappedSgTable<B, ToDevice, P, Vec<SgEntry>>, Pointers<'a, P>),
    Flush,
    /// A caller-built command: no buffer of the driver's, its opcode.
    Raw(u8),
}

impl<P: DmaMap + DmaAlloc, B: DmaBuffer> Request<'_, P, B> {
    /// Releases the PRP lists or SGL segments and unmaps the buffer (invalidating a Read's
    /// lines for the CPU). Only once the controller is done with it.
    fn finish(self) -> (IoOp, usize, dma_core::Result<Option<B>>) {
        match self {
            Self::Read(data, pointers) => {
                drop(pointers);
                let len = data.total_len() as usize;
                // Unmapping a device-written table syncs it for the CPU.
                (IoOp::Read, len, data.unmap().map(Some))
            }
            Self::Write(data, pointers) => {
                drop(pointers);
                let len = data.total_len() as usize;
                (IoOp::Write, len, data.unmap().map(Some))
            }
            Self::Flush => (IoOp::Flush, 0, Ok(None)),
            Self::Raw(opcode) => (IoOp::Raw(opcode), 0, Ok(None)),
        }
    }
}

struct Queues<'a, P: DmaMap + DmaAlloc, B> {
    admin: Queue<'a, P, AdminData<P>>,
    io: Queue<'a, P, Request<'a, P, B>>,
}

/// An NVMe block driver over platform `P`, waiting with `W` (polled, or
/// interrupt-driven when `W` has an interrupt vector), moving buffers of
/// type `B`.
///
/// See the [`nvme`](crate::nvme) module for what it does and how.
pub struct NvmeBlockDriver<'a, P, W, B = DmaBuf>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    ctrl: &'a Controller<'a>,
    platform: P,
    pools: &'a NvmePools<P>,
    wait: W,
    limits: SgLimits,
    sgl: SglUse,
    identity: NvmeIdentity,
    stats: NvmeDriverStats,
    /// The last look at the I/O completion queue found it empty: every
    /// entry posted since raised an interrupt the waiter has not taken
    /// yet, so an interrupt-driven wait may sleep before it looks.
    io_cq_drained: bool,
    /// Dropped only once the controller is known to be disabled.
    queues: ManuallyDrop<Queues<'a, P, B>>,
}

impl<'a, P, W, B> NvmeBlockDriver<'a, P, W, B>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    /// Brings the controller up and creates the I/O queue pair.
    ///
    /// `ctrl` is the controller behind its BAR (a simulator's block works
    /// too: `dma_sim_presets::nvme_controller`); `pools` the PRP list
    /// memory, which must come from the same platform.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for queue sizes or pools the
    /// controller cannot take, or impossible Identify data;
    /// [`DriverError::Timeout`] /
    /// [`DriverError::ControllerFatal`] when it does not come ready;
    /// allocation, ring and NVMe status errors.
    pub fn start(
        ctrl: &'a Controller<'a>,
        platform: P,
        pools: &'a NvmePools<P>,
        wait: W,
        config: NvmeDriverConfig,
    ) -> Result<Self, DriverError> {
        if pools.page_size() != PAGE_SIZE {
            return Err(DriverError::InvalidArgument(
                "PRP pools must use 4 KiB memory pages",
            ));
        }
        let max_entries = ctrl.capabilities().max_queue_entries;
        let admin = u32::from(config.admin_entries);
        if !(2..=4096.min(max_entries)).contains(&admin) {
            return Err(DriverError::InvalidArgument(
                "admin queues have 2..=min(4096, CAP.MQES + 1) entries",
            ));
        }
        let clamp = |n: u32| n.clamp(2, max_entries);
        let doorbells = ctrl.doorbells()?;
        let admin = NvmeQueuePair::allocate(
            platform.clone(),
            NvmeQueueConfig {
                qid: 0,
                sq_size: admin,
                cq_size: admin,
            },
            doorbells.queue(0)?,
        )?;
        let io = NvmeQueuePair::allocate(
            platform.clone(),
            NvmeQueueConfig {
                qid: IO_QID,
                sq_size: clamp(config.io_sq_entries),
                cq_size: clamp(config.io_cq_entries),
            },
            doorbells.queue(IO_QID)?,
        )?;
        let limits = SgLimits::new(PAGE_SIZE, platform.constraints())?;
        let mut driver = Self {
            ctrl,
            platform,
            pools,
            wait,
            limits,
            sgl: config.sgl,
            identity: NvmeIdentity::default(),
            stats: NvmeDriverStats::default(),
            io_cq_drained: true,
            queues: ManuallyDrop::new(Queues { admin, io }),
        };
        driver.enable()?;
        driver.identify()?;
        driver.create_io_queues()?;
        Ok(driver)
    }

    /// What Identify said.
    pub fn identity(&self) -> &NvmeIdentity {
        &self.identity
    }

    /// The counters.
    pub fn stats(&self) -> NvmeDriverStats {
        self.stats
    }

    /// The platform the driver maps through.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The waiter (with a simulator's stepping waiter: the
    /// simulated controller).
    pub fn wait_ref(&self) -> &W {
        &self.wait
    }

    /// The waiter, mutably (to inject faults into a stepped controller).
    pub fn wait_mut(&mut self) -> &mut W {
        &mut self.wait
    }

    /// When Reads and Writes queued from now on use SGLs (the
    /// [`NvmeDriverConfig::sgl`] given at start, changed).
    pub fn set_sgl(&mut self, sgl: SglUse) {
        self.sgl = sgl;
    }

    /// I/O commands submitted and not yet completed.
    pub fn in_flight(&self) -> u32 {
        self.queues.io.in_flight()
    }

    /// Whether another I/O command fits in the queue now.
    pub fn can_queue(&self) -> bool {
        self.queues.io.can_push()
    }

    // ---- bring-up ----------------------------------------------------

    /// CC.EN = 0, then waits for CSTS.RDY = 0: the controller has stopped
    /// every DMA and forgotten its queues (§3.5.2).
    fn disable(&mut self) -> Result<(), DriverError> {
        self.ctrl.disable(&mut self.wait)
    }

    /// Gives the controller the admin queues and enables it (§3.5.1 steps
    /// 1-7).
    fn enable(&mut self) -> Result<(), DriverError> {
        self.disable()?;
        let admin = &self.queues.admin;
        let entries = admin_entries(admin) as u16;
        let queues = AdminQueues {
            sq: admin.sq_dma_addr().as_u64(),
            sq_entries: entries,
            cq: admin.cq_dma_addr().as_u64(),
            cq_entries: entries,
        };
        self.ctrl.enable(queues, &mut self.wait)
    }

    /// Issues one admin command with its data and waits for it.
    fn admin(
        &mut self,
        command: NvmeCommand,
        data: AdminData<P>,
    ) -> Result<AdminData<P>, DriverError> {
        let cid = self
            .queues
            .admin
            .submit(command, data)
            .map_err(|r| r.error)?;
        let done = self.ctrl.wait_completion(
            &mut self.queues.admin,
            &mut self.wait,
            "an admin completion",
        );
        self.queues.admin.release_completions();
        let done = done?;
        self.stats.admin_commands += 1;
        if done.cid != cid {
            return Err(
                RingError::with(RingErrorKind::UnexpectedCompletion, done.cid.into()).into(),
            );
        }
        check_status(command.opcode(), done.status)?;
        Ok(done.buffers)
    }

    /// Identify (§5.17) with `cns` for `nsid` into a page mapped from the
    /// device; the unmap invalidates it for the CPU.
    fn identify_page(&mut self, structure: u8, nsid: u32) -> Result<DmaBuf, DriverError> {
        let page = DmaBuf::new(PAGE_SIZE, PAGE_SIZE)?;
        let map = StreamingMapping::<_, FromDevice, _>::map(self.platform.clone(), page)
            .map_err(|e| e.error)?;
        // A page-aligned 4 KiB page: PRP1 alone.
        let cmd = identify(structure, nsid, map.dma_addr().as_u64());
        let map = self
            .admin(cmd, Some(map))?
            .ok_or(DriverError::InvalidArgument("the Identify page came back"))?;
        Ok(map.unmap()?)
    }

    fn identify(&mut self) -> Result<(), DriverError> {
        let ctrl = self.identify_page(cns::CONTROLLER, 0)?;
        self.identity.decode_controller(&ctrl)?;
        let ns = self.identify_page(cns::NAMESPACE, NSID)?;
        self.identity.decode_namespace(&ns)
    }

    /// Set Features Number of Queues (one pair), then Create I/O CQ and SQ
    /// (the CQ first: the SQ names it). The CQ signals the waiter's
    /// interrupt vector when it has one, and no interrupt otherwise.
    fn create_io_queues(&mut self) -> Result<(), DriverError> {
        self.admin(set_number_of_queues(1, 1), None)?;

        let (sq_size, cq_size, sq, cq) = {
            let io = &self.queues.io;
            let (sq_size, cq_size) = queue_sizes(io);
            (
                sq_size,
                cq_size,
                io.sq_dma_addr().as_u64(),
                io.cq_dma_addr().as_u64(),
            )
        };
        let vector = self.wait.interrupt_vector();
        self.admin(create_io_cq_with(IO_QID, cq_size, cq, vector), None)?;
        self.admin(create_io_sq(IO_QID, sq_size, sq, IO_QID), None)?;
        self.io_cq_drained = true;
        Ok(())
    }

    // ---- I/O ---------------------------------------------------------

    /// Checks a transfer of `len` bytes at `lba` against the namespace;
    /// returns its block count.
    fn check_io(&self, lba: u64, len: usize) -> Result<u32, DriverError> {
        let id = &self.identity;
        let bs = id.block_size as usize;
        if len == 0 || len % bs != 0 {
            return Err(DriverError::InvalidArgument(
                "a transfer is a whole number of logical blocks",
            ));
        }
        if len > id.max_transfer() {
            return Err(DriverError::InvalidArgument(
                "transfer larger than the controller's MDTS",
            ));
        }
        let blocks = (len / bs) as u64;
        if lba.checked_add(blocks).is_none_or(|end| end > id.blocks) {
            return Err(DriverError::InvalidArgument(
                "transfer beyond the end of the namespace",
            ));
        }
        Ok(blocks as u32)
    }

    /// Whether a transfer of `len` bytes in `segments` device segments
    /// goes by SGL ([`SglUse`]).
    fn wants_sgl(&self, segments: usize, len: u64) -> bool {
        self.identity.sgl().supported()
            && match self.sgl {
                SglUse::Never => false,
                SglUse::Always => true,
                SglUse::AverageSegmentAtLeast(bytes) => {
                    len.div_ceil(segments.max(1) as u64) >= bytes as u64
                }
            }
    }

    /// Maps `buffer` as a table, checks it, and encodes its PRPs or SGL
    /// into the command.
    #[allow(clippy::type_complexity)]
    fn prepare<D: dma_core::Direction>(
        &self,
        op: IoOp,
        lba: u64,
        buffer: B,
    ) -> Result<
        (
            MappedSgTable<B, D, P, Vec<SgEntry>>,
            Pointers<'a, P>,
            NvmeCommand,
        ),
        Refused<B>,
    > {
        let data = MappedSgTable::<B, D, P, _>::map(self.platform.clone(), buffer, self.limits)
            .map_err(|e| Refused::new(e.error, Some(e.buffer)))?;
        let blocks = match self.check_io(lba, data.total_len() as usize) {
            Ok(b) => b,
            Err(e) => return Err(give_back(data, e)),
        };
        let mut cmd = match read_write(op.opcode(), NSID, lba, blocks) {
            Ok(c) => c,
            Err(e) => return Err(give_back(data, e)),
        };
        let pools: &'a NvmePools<P> = self.pools;
        let encoded = if self.wants_sgl(data.segment_count(), data.total_len()) {
            let dword = self.identity.sgl() == SglSupport::DwordAligned;
            encode_sgl(pools, data.segments(), dword).map(|sgl| {
                set_sgl1(&mut cmd, sgl.sgl1().to_dptr());
                Pointers::Sgl(sgl)
            })
        } else {
            encode_prp(pools, data.segments()).map(|prps| {
                cmd.prp1 = prps.prp1().as_u64();
                cmd.prp2 = prps.prp2().as_u64();
                Pointers::Prp(prps)
            })
        };
        match encoded {
            Ok(pointers) => Ok((data, pointers, cmd)),
            Err(e) => Err(give_back(data, e.into())),
        }
    }

    fn push(&mut self, cmd: NvmeCommand, request: Request<'a, P, B>) -> Result<u16, Refused<B>> {
        let pointers = match &request {
            Request::Read(_, p) | Request::Write(_, p) => Some(p),
            Request::Flush | Request::Raw(_) => None,
        };
        let (lists, segments) = match pointers {
            Some(Pointers::Prp(p)) => (p.list_blocks() as u64, None),
            Some(Pointers::Sgl(s)) => (0, Some(s.segment_blocks() as u64)),
            None => (0, None),
        };
        match self.queues.io.push(cmd, request) {
            Ok(cid) => {
                self.stats.prp_lists += lists;
                if let Some(blocks) = segments {
                    self.stats.sgl_commands += 1;
                    self.stats.sgl_segments += blocks;
                }
                Ok(cid)
            }
            Err(rejected) => {
                let (_, _, buffer) = rejected.buffers.finish();
                Err(Refused::new(rejected.error, buffer.ok().flatten()))
            }
        }
    }

    /// Queues a Read of `buffer.len()` bytes from `lba` into `buffer`; the
    /// controller learns of it at [`submit`](Self::submit). Returns the
    /// command identifier.
    ///
    /// # Errors
    ///
    /// A [`Refused`] with the buffer back: not whole blocks, beyond MDTS or
    /// the namespace, a mapping the platform refuses (on a non-coherent
    /// machine, a buffer not aligned to `dma_alignment`), PRPs that cannot
    /// describe it, the PRP pools or the queue full (reap completions and
    /// retry), or a broken queue ([`recover`](Self::recover)).
    pub fn queue_read(&mut self, lba: u64, buffer: B) -> Result<u16, Refused<B>> {
        let (data, pointers, cmd) = self.prepare::<FromDevice>(IoOp::Read, lba, buffer)?;
        self.push(cmd, Request::Read(data, pointers))
    }

    /// Queues a Write of `buffer` to `lba`. The CPU's writes to the buffer
    /// are made visible to the controller when it is mapped here.
    ///
    /// # Errors
    ///
    /// As for [`queue_read`](Self::queue_read).
    pub fn queue_write(&mut self, lba: u64, buffer: B) -> Result<u16, Refused<B>> {
        let (data, pointers, cmd) = self.prepare::<ToDevice>(IoOp::Write, lba, buffer)?;
        self.push(cmd, Request::Write(data, pointers))
    }

    /// Queues a Flush of the namespace's volatile write cache.
    ///
    /// # Errors
    ///
    /// The queue full or broken.
    pub fn queue_flush(&mut self) -> Result<u16, DriverError> {
        let mut cmd = NvmeCommand::new(io_opcode::FLUSH);
        cmd.nsid = NSID;
        self.push(cmd, Request::Flush).map_err(|r| r.error)
    }

    /// Queues a command the caller built whole, data pointers included,
    /// for what [`queue_read`](Self::queue_read) and
    /// [`queue_write`](Self::queue_write) cannot say: a vendor command, or
    /// a test that points the controller at an address on purpose (a
    /// stale IOVA an IOMMU must block). The driver sets only the command
    /// identifier; its completion comes back as [`IoOp::Raw`] with no
    /// buffer.
    ///
    /// # Safety
    ///
    /// The controller accesses whatever the command's data pointers (PRP1,
    /// PRP2, any PRP list or SGL they name) and its other address fields
    /// say. Each address must either be memory mapped for this device, for
    /// the accesses the command makes, until its completion is reaped, or
    /// reach nothing (an IOMMU with no translation for it), so the
    /// controller cannot touch memory the program uses.
    ///
    /// # Errors
    ///
    /// The queue full (reap completions and retry) or broken
    /// ([`recover`](Self::recover)); the command is not queued.
    pub unsafe fn queue_raw(&mut self, cmd: NvmeCommand) -> Result<u16, DriverError> {
        self.push(cmd, Request::Raw(cmd.opcode()))
            .map_err(|r| r.error)
    }

    /// Tells the controller about every command queued since the last
    /// submit: one SQ tail doorbell for the batch. Returns whether it rang.
    pub fn submit(&mut self) -> bool {
        self.queues.io.ring_doorbell()
    }

    fn complete(&mut self, done: NvmeCompleted<Request<'a, P, B>>) -> IoCompletion<B> {
        let (op, len, unmapped) = done.buffers.finish();
        let mut result = check_status(op.opcode(), done.status);
        let buffer = match unmapped {
            Ok(b) => b,
            Err(e) => {
                result = result.and(Err(e.into()));
                None
            }
        };
        let s = &mut self.stats;
        s.commands += 1;
        match (&result, op) {
            (Ok(()), IoOp::Read) => {
                s.reads += 1;
                s.bytes_read += len as u64;
            }
            (Ok(()), IoOp::Write) => {
                s.writes += 1;
                s.bytes_written += len as u64;
            }
            (Ok(()), IoOp::Flush) => s.flushes += 1,
            (Ok(()), IoOp::Raw(_)) => {}
            (Err(_), _) => s.errors += 1,
        }
        IoCompletion {
            cid: done.cid,
            op,
            len,
            result,
            buffer,
        }
    }

    /// Reaps one completion if the controller posted one. The CQ head
    /// doorbell is written when none is left (once per batch).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Ring`] when the controller wrote an invalid
    /// completion (unknown or repeated command identifier, another queue's
    /// id, an SQ head it was never given): the queue is broken until
    /// [`recover`](Self::recover).
    pub fn poll(&mut self) -> Result<Option<IoCompletion<B>>, DriverError> {
        match self.queues.io.poll() {
            Ok(Some(done)) => {
                self.io_cq_drained = false;
                Ok(Some(self.complete(done)))
            }
            Ok(None) => {
                self.stats.empty_polls += 1;
                self.io_cq_drained = true;
                self.queues.io.release_completions();
                Ok(None)
            }
            Err(e) => {
                self.queues.io.release_completions();
                Err(e.into())
            }
        }
    }

    /// Waits for the next completion.
    ///
    /// With a polled waiter it polls, pausing in between. With a waiter
    /// that has an interrupt vector (the I/O CQ was created to signal it)
    /// it sleeps until the interrupt before it looks at the queue, unless
    /// the last look found an entry (one interrupt may announce several
    /// entries, so the queue is looked at until empty before sleeping).
    /// The counters record which completions an interrupt delivered.
    ///
    /// # Errors
    ///
    /// As for [`poll`](Self::poll); [`DriverError::Timeout`] when the
    /// controller stays silent (a lost completion: [`recover`](Self::recover)
    /// gets the buffers back), [`DriverError::ControllerFatal`];
    /// [`DriverError::InvalidArgument`] when nothing is in flight.
    pub fn wait(&mut self) -> Result<IoCompletion<B>, DriverError> {
        if self.in_flight() == 0 {
            return Err(DriverError::InvalidArgument("no I/O command in flight"));
        }
        let sleeps = self.wait.interrupt_vector().is_some();
        self.wait.begin();
        let mut look = !(sleeps && self.io_cq_drained);
        let mut woken = false;
        loop {
            if look {
                if let Some(done) = self.poll()? {
                    if woken {
                        self.stats.interrupt_completions += 1;
                    }
                    return Ok(done);
                }
                if self.ctrl.is_fatal() {
                    return Err(DriverError::ControllerFatal);
                }
            }
            look = true;
            if !sleeps {
                if !self.wait.pause() {
                    return Err(DriverError::Timeout("an I/O completion"));
                }
                continue;
            }
            woken = match self.wait.sleep() {
                Wake::Interrupt => {
                    self.stats.interrupt_wakes += 1;
                    true
                }
                Wake::Early => false,
                Wake::GaveUp => {
                    // One last look: an entry found now came without its
                    // interrupt.
                    let done = self.poll()?;
                    let done = done.ok_or(DriverError::Timeout("an I/O completion interrupt"))?;
                    self.stats.lost_interrupts += 1;
                    return Ok(done);
                }
            };
        }
    }

    fn run_one(&mut self, queued: Result<u16, Refused<B>>) -> Result<Option<B>, Refused<B>> {
        let cid = queued?;
        self.submit();
        let done = self.wait().map_err(|e| Refused::new(e, None))?;
        if done.cid != cid {
            let e = RingError::with(RingErrorKind::UnexpectedCompletion, done.cid.into());
            return Err(Refused::new(e, done.buffer));
        }
        match done.result {
            Ok(()) => Ok(done.buffer),
            Err(e) => Err(Refused::new(e, done.buffer)),
        }
    }

    fn idle_or<T>(&self, buffer: T) -> Result<T, Refused<T>> {
        if self.in_flight() == 0 {
            Ok(buffer)
        } else {
            Err(Refused::new(
                DriverError::InvalidArgument("synchronous I/O needs an idle queue"),
                Some(buffer),
            ))
        }
    }

    /// Reads `buffer.len()` bytes from `lba` and returns the buffer filled.
    ///
    /// # Errors
    ///
    /// As for [`queue_read`](Self::queue_read) and [`wait`](Self::wait),
    /// an NVMe error status (buffer back), or commands already in flight.
    pub fn read(&mut self, lba: u64, buffer: B) -> Result<B, Refused<B>> {
        let buffer = self.idle_or(buffer)?;
        let queued = self.queue_read(lba, buffer);
        self.run_one(queued)?.ok_or(Refused::new(
            DriverError::InvalidArgument("buffer lost"),
            None,
        ))
    }

    /// Writes `buffer` to `lba` and returns it.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    pub fn write(&mut self, lba: u64, buffer: B) -> Result<B, Refused<B>> {
        let buffer = self.idle_or(buffer)?;
        let queued = self.queue_write(lba, buffer);
        self.run_one(queued)?.ok_or(Refused::new(
            DriverError::InvalidArgument("buffer lost"),
            None,
        ))
    }

    /// Flushes the volatile write cache and waits.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait), an NVMe error status, or commands
    /// already in flight.
    pub fn flush(&mut self) -> Result<(), DriverError> {
        self.idle_or(())?;
        let queued = self.queue_flush().map_err(|e| Refused::new(e, None));
        self.run_one(queued).map(|_| ()).map_err(|r| r.error)
    }

    /// After a timeout or a broken queue: resets the controller (which
    /// stops all its DMA), takes back every command in flight (their
    /// buffers unmapped, and returned), and brings the controller and the
    /// I/O queues up again.
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start). If the controller does not stop, the
    /// buffers stay with it (nothing is returned or freed).
    pub fn recover(&mut self) -> Result<Vec<B>, DriverError> {
        self.disable()?;
        self.stats.recoveries += 1;
        let requests: Vec<_> = self.queues.io.reset().collect();
        drop(self.queues.admin.reset());
        let buffers = requests
            .into_iter()
            .filter_map(|r| r.finish().2.ok().flatten())
            .collect();
        self.enable()?;
        self.create_io_queues()?;
        Ok(buffers)
    }

    /// Deletes the I/O queues, notifies the controller of shutdown
    /// (CC.SHN, §3.6) and disables it.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] with commands still in flight (the
    /// controller is still disabled), admin errors, timeouts.
    pub fn shutdown(mut self) -> Result<(), DriverError> {
        let deleted = if self.in_flight() != 0 {
            Err(DriverError::InvalidArgument(
                "I/O commands are still in flight",
            ))
        } else {
            let sq = delete_io_queue(admin_opcode::DELETE_IO_SQ, IO_QID);
            let cq = delete_io_queue(admin_opcode::DELETE_IO_CQ, IO_QID);
            self.admin(sq, None)
                .and_then(|_| self.admin(cq, None))
                .map(|_| ())
        };
        let shut = self.ctrl.shutdown(&mut self.wait);
        let disabled = self.disable();
        deleted.and(shut).and(disabled)
    }
}

impl<P, W, B> Drop for NvmeBlockDriver<'_, P, W, B>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    /// Disables the controller before the queues and in-flight buffers go
    /// back to the platform; if it does not stop, they are leaked rather
    /// than freed under a device that may still write them.
    fn drop(&mut self) {
        if self.disable().is_ok() {
            // SAFETY: dropped once, here; the field is not used afterwards.
            unsafe { ManuallyDrop::drop(&mut self.queues) };
        }
    }
}

/// PRP list memory sized for this driver's defaults: 64 memory pages
/// (each describes up to 2 MiB) and 128 256-byte blocks (transfers of up
/// to 132 KiB), as Linux's NVMe driver keeps per device. The driver
/// borrows it, so list blocks can travel with commands in flight.
///
/// # Errors
///
/// The platform's coherent allocation errors.
pub fn prp_pools<P: DmaAlloc + Clone>(platform: P) -> dma_core::Result<NvmePools<P>> {
    NvmePools::new(platform, PAGE_SIZE, 64, 128)
}

/// Unmaps a table that was never given to the device, for a refusal.
fn give_back<B: DmaBuffer, D: dma_core::Direction, P: DmaMap>(
    data: MappedSgTable<B, D, P, Vec<SgEntry>>,
    error: DriverError,
) -> Refused<B> {
    Refused::new(error, data.unmap().ok())
}

fn admin_entries<P: DmaAlloc, T>(qp: &Queue<'_, P, T>) -> u32 {
    (qp.sq_memory().size() / dma_ring::nvme::SQE_SIZE) as u32
}

fn queue_sizes<P: DmaAlloc, T>(qp: &Queue<'_, P, T>) -> (u32, u32) {
    (
        (qp.sq_memory().size() / dma_ring::nvme::SQE_SIZE) as u32,
        (qp.cq_memory().size() / dma_ring::nvme::CQE_SIZE) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::spec::IDENTIFY_BYTES;

    fn controller_page(serial: &[u8; 20], nn: u32) -> [u8; IDENTIFY_BYTES] {
        let mut page = [0u8; IDENTIFY_BYTES];
        page[..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        // SSVID and the firmware revision around the serial number.
        page[2..4].copy_from_slice(&0x1af4u16.to_le_bytes());
        page[4..24].copy_from_slice(serial);
        page[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        page[77] = 10;
        page[516..520].copy_from_slice(&nn.to_le_bytes());
        page
    }

    #[test]
    fn identity_carries_serial_and_namespace_count() {
        let mut id = NvmeIdentity::default();
        id.decode_controller(&controller_page(b"dma-vfio-0001       ", 256))
            .unwrap();
        assert_eq!(id.serial, "dma-vfio-0001");
        assert_eq!(id.model, "QEMU NVMe Ctrl");
        assert_eq!((id.vendor, id.namespaces, id.mdts), (0x1b36, 256, 10));
    }

    #[test]
    fn a_controller_without_namespace_1_is_refused() {
        let mut id = NvmeIdentity::default();
        let err = id
            .decode_controller(&controller_page(b"S                   ", 0))
            .unwrap_err();
        assert!(
            matches!(err, DriverError::InvalidArgument(m) if m.contains("NN is 0")),
            "{err}"
        );
        assert_eq!(id, NvmeIdentity::default(), "nothing decoded is kept");
    }

    #[test]
    fn a_serial_that_is_not_ascii_is_left_empty() {
        let mut serial = *b"dma-vfio-0001       ";
        serial[3] = 0xc3;
        let mut id = NvmeIdentity::default();
        id.decode_controller(&controller_page(&serial, 1)).unwrap();
        assert_eq!((id.serial.as_str(), id.namespaces), ("", 1));
    }
}
