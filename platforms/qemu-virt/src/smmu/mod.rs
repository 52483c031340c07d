//! An SMMUv3 driver for stage-1 translation (Arm IHI 0070 E.a): a linear
//! stream table, one context descriptor per stream, the command queue for
//! configuration and TLB invalidation, and the event queue for faults.
//!
//! The page tables a context descriptor points at are not this driver's:
//! it takes their root address, format (granule and input size, which set
//! CD.TG0 and T0SZ) and MAIR ([`Stage1Config`]) from whoever builds them
//! (the `dma-iommu` backend), and refuses a granule SMMU_IDR5 does not
//! offer.
//!
//! The SMMU caches STEs, CDs and translations; after any change this driver
//! issues the matching CMD_CFGI_* or CMD_TLBI_* followed by CMD_SYNC and
//! waits for the SYNC to be consumed (§3.21, §4.7.3).

pub mod command;
pub mod domain;
pub mod event;
pub mod queue;
pub mod regs;
pub mod table;

use core::ptr::NonNull;
use core::time::Duration;

use dma_coherence::barrier;
use dma_core::{Cacheability, Pages, PhysMemory};
use dma_iommu::pgtable::vmsav8::Granule;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

pub use command::Command;
pub use domain::SmmuIommu;
pub use event::{Event, EventKind, EventRecord};
use queue::QueueIndex;
use regs::{
    SmmuPage0, SmmuPage1, CR0, CR1, GERROR, IDR0, IDR1, IDR5, QUEUE_BASE, STRTAB_BASE,
    STRTAB_BASE_CFG,
};
pub use table::{tg0, ContextDescriptor, Stage1Config, Ste, StreamConfig, WalkAttrs};

use crate::timer::{wait_for, Clock};
use crate::{BoardError, Result};

/// How long the SMMU may take to acknowledge a CR0 change or consume a
/// CMD_SYNC. QEMU does both at once; real SMMUs take microseconds.
const SMMU_TIMEOUT: Duration = Duration::from_millis(100);

/// What the SMMU says it can do (SMMU_IDR0/1/5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuFeatures {
    /// Stage-1 translation.
    pub stage1: bool,
    /// AArch64 translation tables.
    pub aarch64_tables: bool,
    /// Coherent access to tables and queues.
    pub coherent: bool,
    /// StreamID bits.
    pub sid_bits: u8,
    /// log2 of the largest command queue.
    pub cmdq_log2_max: u8,
    /// log2 of the largest event queue.
    pub eventq_log2_max: u8,
    /// Output address size, as the IDR5.OAS / CD.IPS encoding.
    pub oas: u8,
    /// 4 KiB translation granule.
    pub granule_4k: bool,
    /// 16 KiB translation granule.
    pub granule_16k: bool,
    /// 64 KiB translation granule.
    pub granule_64k: bool,
    /// Queue or table bases are fixed by the implementation.
    pub preset_bases: bool,
}

impl SmmuFeatures {
    /// Decodes raw IDR0, IDR1 and IDR5 values.
    pub fn decode(idr0: u32, idr1: u32, idr5: u32) -> Self {
        use tock_registers::LocalRegisterCopy as R;
        let idr0 = R::<u32, IDR0::Register>::new(idr0);
        let idr1 = R::<u32, IDR1::Register>::new(idr1);
        let idr5 = R::<u32, IDR5::Register>::new(idr5);
        Self {
            stage1: idr0.is_set(IDR0::S1P),
            aarch64_tables: idr0.read(IDR0::TTF) & 0b10 != 0,
            coherent: idr0.is_set(IDR0::COHACC),
            sid_bits: idr1.read(IDR1::SIDSIZE) as u8,
            cmdq_log2_max: idr1.read(IDR1::CMDQS) as u8,
            eventq_log2_max: idr1.read(IDR1::EVENTQS) as u8,
            oas: idr5.read(IDR5::OAS) as u8,
            granule_4k: idr5.is_set(IDR5::GRAN4K),
            granule_16k: idr5.is_set(IDR5::GRAN16K),
            granule_64k: idr5.is_set(IDR5::GRAN64K),
            preset_bases: idr1.is_set(IDR1::QUEUES_PRESET) || idr1.is_set(IDR1::TABLES_PRESET),
        }
    }

    /// The CD.IPS value: the output size, capped at 48 bits (encoding 5),
    /// the largest `dma-iommu`'s tables produce (no FEAT_LPA or LPA2).
    pub fn ips(&self) -> u8 {
        self.oas.min(5)
    }

    /// Whether the SMMU walks tables of `granule` (SMMU_IDR5.GRAN4K,
    /// GRAN16K, GRAN64K).
    pub fn supports(&self, granule: Granule) -> bool {
        match granule {
            Granule::K4 => self.granule_4k,
            Granule::K16 => self.granule_16k,
            Granule::K64 => self.granule_64k,
        }
    }
}

/// Sizes and memory attributes of the driver's tables and queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuConfig {
    /// log2 of the number of STEs: StreamIDs `0..2^n` are usable (8 covers
    /// PCI bus 0).
    pub stream_table_log2: u8,
    /// log2 of the command queue entries.
    pub cmdq_log2: u8,
    /// log2 of the event queue entries. QEMU raises one event per faulting
    /// 4-byte access, so a faulting 4 KiB transfer needs 1024 entries.
    pub eventq_log2: u8,
    /// Memory for tables and queues: non-cacheable (works with any SMMU),
    /// or write-back (needs a coherent SMMU).
    pub memory: WalkAttrs,
}

impl Default for SmmuConfig {
    fn default() -> Self {
        Self {
            stream_table_log2: 8,
            cmdq_log2: 8,
            eventq_log2: 10,
            memory: WalkAttrs::NonCacheable,
        }
    }
}

/// The SMMUv3 with its stream table, context descriptors and queues.
pub struct Smmu<M: PhysMemory> {
    page0: NonNull<SmmuPage0>,
    page1: NonNull<SmmuPage1>,
    mem: M,
    features: SmmuFeatures,
    config: SmmuConfig,
    strtab: Pages,
    cds: Pages,
    cmdq: Pages,
    eventq: Pages,
    cmdq_prod: QueueIndex,
    event_overflows: u32,
}

// SAFETY: the SMMU's registers and the driver's tables are owned by this
// value and reached only through `&mut self`; nothing ties them to a CPU.
unsafe impl<M: PhysMemory + Send> Send for Smmu<M> {}

impl<M: PhysMemory> Smmu<M> {
    /// Probes the SMMU whose register pages 0 and 1 are mapped at `base`,
    /// allocates its tables and queues from `mem`, points the SMMU at them,
    /// marks every stream as aborting, enables the command and event queues
    /// and invalidates everything the SMMU might have cached. Translation
    /// stays off (SMMUEN = 0: traffic follows SMMU_GBPA, bypass on QEMU)
    /// until [`enable`](Self::enable).
    ///
    /// # Safety
    ///
    /// `base` maps the SMMU's 128 KiB register frame as Device memory for
    /// the value's lifetime, no other driver uses the SMMU, and `mem`'s
    /// physical addresses are the ones the SMMU sees.
    ///
    /// # Errors
    ///
    /// [`BoardError::Unsupported`] when the SMMU lacks stage 1, AArch64
    /// tables, programmable bases, or coherency for write-back memory
    /// (the translation granule is checked at
    /// [`attach_stage1`](Self::attach_stage1)); [`BoardError::InvalidArgument`] for sizes beyond
    /// its limits; [`BoardError::Dma`] when `mem` has no pages;
    /// [`BoardError::Timeout`] when the SMMU does not acknowledge.
    pub unsafe fn new(
        base: NonNull<u8>,
        mem: M,
        config: SmmuConfig,
        clock: &impl Clock,
    ) -> Result<Self> {
        let page0 = base.cast::<SmmuPage0>();
        // SAFETY: `base` maps both 64 KiB pages (the caller's contract).
        let page1 = unsafe { base.add(regs::PAGE1_OFFSET) }.cast::<SmmuPage1>();
        // SAFETY: `page0` is `base`, which maps the SMMU's register pages
        // (the caller's contract) for the life of `self`; the fields are
        // volatile cells, so a shared reference reads no device memory.
        let p0 = unsafe { page0.as_ref() };
        let features = SmmuFeatures::decode(p0.idr0.get(), p0.idr1.get(), p0.idr5.get());
        Self::check(&features, &config)?;

        let cacheability = match config.memory {
            WalkAttrs::NonCacheable => Cacheability::Uncached,
            WalkAttrs::WriteBack => Cacheability::Cached,
        };
        let page = mem.page_size();
        let pages = |bytes: usize| bytes.div_ceil(page);
        let limit = (1u64 << 48) - 1;
        let ste_bytes = 64usize << config.stream_table_log2;
        let alloc =
            |bytes| -> Result<Pages> { Ok(mem.alloc_pages(pages(bytes), cacheability, limit)?) };
        let strtab = alloc(ste_bytes)?;
        let cds = alloc(ste_bytes)?;
        let cmdq = alloc(16usize << config.cmdq_log2)?;
        let eventq = alloc(32usize << config.eventq_log2)?;

        let mut smmu = Self {
            page0,
            page1,
            mem,
            features,
            config,
            strtab,
            cds,
            cmdq,
            eventq,
            cmdq_prod: QueueIndex::new(u32::from(config.cmdq_log2), 0),
            event_overflows: 0,
        };
        smmu.program(clock)?;
        Ok(smmu)
    }

    fn check(f: &SmmuFeatures, c: &SmmuConfig) -> Result<()> {
        if !f.stage1 {
            return Err(BoardError::Unsupported("stage-1 translation"));
        }
        if !f.aarch64_tables {
            return Err(BoardError::Unsupported("AArch64 translation tables"));
        }
        if f.preset_bases {
            return Err(BoardError::Unsupported(
                "programmable table and queue bases",
            ));
        }
        if c.memory == WalkAttrs::WriteBack && !f.coherent {
            return Err(BoardError::Unsupported("coherent table access (COHACC)"));
        }
        if c.stream_table_log2 > f.sid_bits || c.stream_table_log2 > 16 {
            return Err(BoardError::InvalidArgument(
                "stream table beyond SIDSIZE or 2^16",
            ));
        }
        if c.cmdq_log2 > f.cmdq_log2_max || c.eventq_log2 > f.eventq_log2_max {
            return Err(BoardError::InvalidArgument("queue beyond CMDQS or EVENTQS"));
        }
        if c.cmdq_log2 < 1 || c.eventq_log2 < 1 {
            return Err(BoardError::InvalidArgument(
                "queues have at least 2 entries",
            ));
        }
        Ok(())
    }

    fn p0(&self) -> &SmmuPage0 {
        // SAFETY: `new`'s contract maps page 0; the fields are volatile cells.
        unsafe { self.page0.as_ref() }
    }

    fn p1(&self) -> &SmmuPage1 {
        // SAFETY: `new`'s contract maps page 1; the fields are volatile cells.
        unsafe { self.page1.as_ref() }
    }

    /// Writes CR0 and waits for CR0ACK to match (§6.3.9).
    fn set_cr0(&self, value: u32, clock: &impl Clock) -> Result<()> {
        let p0 = self.p0();
        p0.cr0.set(value);
        wait_for(clock, SMMU_TIMEOUT, "SMMU CR0ACK", || {
            (p0.cr0ack.get() == value).then_some(())
        })
    }

    fn program(&mut self, clock: &impl Clock) -> Result<()> {
        self.set_cr0(0, clock)?;
        for sid in 0..1u32 << self.config.stream_table_log2 {
            self.write_ste(sid, &Ste::abort());
            self.write_cd(sid, &ContextDescriptor::INVALID);
        }
        let (cache, share) = self.config.memory.fields();
        let (cache, share) = (cache as u32, share as u32);
        let p0 = self.p0();
        p0.cr1.write(
            CR1::QUEUE_IC.val(cache)
                + CR1::QUEUE_OC.val(cache)
                + CR1::QUEUE_SH.val(share)
                + CR1::TABLE_IC.val(cache)
                + CR1::TABLE_OC.val(cache)
                + CR1::TABLE_SH.val(share),
        );
        // CR2.RECINVSID: record C_BAD_STREAMID for StreamIDs past the table.
        p0.cr2.set(1 << 1);
        p0.strtab_base
            .write(STRTAB_BASE::ADDR.val(self.strtab.phys.as_u64() >> 6));
        p0.strtab_base_cfg.write(
            STRTAB_BASE_CFG::FMT::Linear
                + STRTAB_BASE_CFG::LOG2SIZE.val(u32::from(self.config.stream_table_log2)),
        );
        p0.cmdq_base.write(
            QUEUE_BASE::ADDR.val(self.cmdq.phys.as_u64() >> 5)
                + QUEUE_BASE::LOG2SIZE.val(u64::from(self.config.cmdq_log2)),
        );
        p0.cmdq_prod.set(0);
        p0.cmdq_cons.set(0);
        p0.eventq_base.write(
            QUEUE_BASE::ADDR.val(self.eventq.phys.as_u64() >> 5)
                + QUEUE_BASE::LOG2SIZE.val(u64::from(self.config.eventq_log2)),
        );
        let p1 = self.p1();
        p1.eventq_prod.set(0);
        p1.eventq_cons.set(0);
        // Clear any stale global errors by acknowledging them.
        let p0 = self.p0();
        p0.gerrorn.set(p0.gerror.get());
        barrier::mmio_write_barrier();
        self.set_cr0((CR0::CMDQEN::SET + CR0::EVENTQEN::SET).value, clock)?;
        self.submit(&[Command::cfgi_all(), Command::tlbi_nh_all()], clock)
    }

    /// What the SMMU can do.
    pub fn features(&self) -> SmmuFeatures {
        self.features
    }

    /// Turns translation on (SMMUEN): from now on every stream follows its
    /// STE.
    ///
    /// # Errors
    ///
    /// [`BoardError::Timeout`] when CR0ACK does not follow.
    pub fn enable(&mut self, clock: &impl Clock) -> Result<()> {
        let cr0 = self.p0().cr0.get() | CR0::SMMUEN::SET.value;
        self.set_cr0(cr0, clock)
    }

    /// Turns translation off: traffic follows SMMU_GBPA (bypass on QEMU).
    ///
    /// # Errors
    ///
    /// [`BoardError::Timeout`] when CR0ACK does not follow.
    pub fn disable(&mut self, clock: &impl Clock) -> Result<()> {
        let cr0 = self.p0().cr0.get() & !CR0::SMMUEN::SET.value;
        self.set_cr0(cr0, clock)
    }

    /// True while translation is on.
    pub fn is_enabled(&self) -> bool {
        self.p0().cr0ack.is_set(CR0::SMMUEN)
    }

    fn check_sid(&self, sid: u32) -> Result<()> {
        if sid >> self.config.stream_table_log2 != 0 {
            return Err(BoardError::InvalidArgument(
                "StreamID beyond the stream table",
            ));
        }
        Ok(())
    }

    fn write_ste(&mut self, sid: u32, ste: &Ste) {
        let base = self.strtab.cpu.as_ptr().cast::<u64>();
        // Word 0 (with V) goes last: the SMMU never sees a valid entry whose
        // other words are stale.
        // SAFETY: `sid` < 2^stream_table_log2 (checked by callers or the init
        // loop), so the 64-byte entry lies in the stream table pages we own.
        unsafe {
            let entry = base.add(sid as usize * 8);
            for i in (1..8).rev() {
                entry.add(i).write_volatile(ste.0[i]);
            }
            barrier::publish_descriptors();
            entry.write_volatile(ste.0[0]);
        }
    }

    fn read_ste_word0(&self, sid: u32) -> u64 {
        // SAFETY: as in `write_ste`; the entry lies in our table.
        unsafe {
            self.strtab
                .cpu
                .as_ptr()
                .cast::<u64>()
                .add(sid as usize * 8)
                .read_volatile()
        }
    }

    fn write_cd(&mut self, sid: u32, cd: &ContextDescriptor) {
        let base = self.cds.cpu.as_ptr().cast::<u64>();
        // SAFETY: the CD array has one 64-byte slot per STE; `sid` is in
        // range (see `write_ste`). Word 0 (with V) goes last.
        unsafe {
            let entry = base.add(sid as usize * 8);
            for i in (1..8).rev() {
                entry.add(i).write_volatile(cd.0[i]);
            }
            barrier::publish_descriptors();
            entry.write_volatile(cd.0[0]);
        }
    }

    /// Stream `sid`'s context descriptor as the SMMU reads it from memory
    /// (`None` beyond the stream table), to check what was programmed.
    pub fn context_descriptor(&self, sid: u32) -> Option<ContextDescriptor> {
        self.check_sid(sid).ok()?;
        let base = self.cds.cpu.as_ptr().cast::<u64>();
        let mut cd = ContextDescriptor::INVALID;
        for (i, word) in cd.0.iter_mut().enumerate() {
            // SAFETY: the CD array has one 64-byte slot per STE and `sid` is
            // in range (checked); volatile, as the SMMU reads it.
            *word = unsafe { base.add(sid as usize * 8 + i).read_volatile() };
        }
        Some(cd)
    }

    /// Replaces stream `sid`'s STE: break (V = 0, invalidate) when the old
    /// entry was valid, then make, then invalidate again (§3.21.3).
    fn replace_ste(&mut self, sid: u32, ste: &Ste, clock: &impl Clock) -> Result<()> {
        if self.read_ste_word0(sid) & 1 != 0 {
            let base = self.strtab.cpu.as_ptr().cast::<u64>();
            // SAFETY: the entry lies in our stream table (`check_sid`).
            unsafe { base.add(sid as usize * 8).write_volatile(0) };
            self.submit(&[Command::cfgi_ste(sid)], clock)?;
        }
        self.write_ste(sid, ste);
        self.submit(&[Command::cfgi_ste(sid)], clock)
    }

    /// Lets stream `sid` through untranslated.
    ///
    /// # Errors
    ///
    /// [`BoardError::InvalidArgument`] for a StreamID beyond the table;
    /// command-queue errors from the invalidation.
    pub fn set_bypass(&mut self, sid: u32, clock: &impl Clock) -> Result<()> {
        self.check_sid(sid)?;
        self.replace_ste(sid, &Ste::bypass(), clock)
    }

    /// Makes stream `sid` abort every transaction.
    ///
    /// # Errors
    ///
    /// As [`set_bypass`](Self::set_bypass).
    pub fn set_abort(&mut self, sid: u32, clock: &impl Clock) -> Result<()> {
        self.check_sid(sid)?;
        self.replace_ste(sid, &Ste::abort(), clock)
    }

    /// Translates stream `sid` through the stage-1 tables `cfg` describes:
    /// writes its context descriptor, invalidates it, points the STE at it,
    /// and invalidates the STE and the ASID's TLB entries.
    ///
    /// # Errors
    ///
    /// [`BoardError::Unsupported`] for a granule the SMMU lacks
    /// (SMMU_IDR5); [`BoardError::InvalidArgument`] for a StreamID beyond
    /// the table or a configuration a CD cannot express (a stage-2 format,
    /// a root not aligned to its table); command-queue errors.
    pub fn attach_stage1(
        &mut self,
        sid: u32,
        cfg: &Stage1Config,
        clock: &impl Clock,
    ) -> Result<()> {
        self.check_sid(sid)?;
        let granule = cfg.format.granule();
        if !self.features.supports(granule) {
            return Err(BoardError::Unsupported(match granule {
                Granule::K4 => "the 4 KiB granule (SMMU_IDR5.GRAN4K = 0)",
                Granule::K16 => "the 16 KiB granule (SMMU_IDR5.GRAN16K = 0)",
                Granule::K64 => "the 64 KiB granule (SMMU_IDR5.GRAN64K = 0)",
            }));
        }
        let cd = ContextDescriptor::stage1(cfg, self.features.ips()).ok_or(
            BoardError::InvalidArgument("a stage-1 format and a root aligned to its initial table"),
        )?;
        // Break the STE first if it points at this CD slot, so the SMMU never
        // walks a half-written CD.
        self.replace_ste(sid, &Ste::abort(), clock)?;
        self.write_cd(sid, &cd);
        self.submit(
            &[Command::cfgi_cd(sid), Command::tlbi_nh_asid(cfg.asid)],
            clock,
        )?;
        let cd_phys = self.cds.phys.as_u64() + u64::from(sid) * 64;
        self.replace_ste(sid, &Ste::stage1(cd_phys, self.config.memory), clock)
    }

    /// Invalidates the SMMU's TLB entries for the page at `iova` in `asid`
    /// (after a page-table entry changed).
    ///
    /// # Errors
    ///
    /// Command-queue errors.
    pub fn invalidate_va(&mut self, asid: u16, iova: u64, clock: &impl Clock) -> Result<()> {
        self.submit(&[Command::tlbi_nh_va(asid, iova)], clock)
    }

    /// Invalidates every TLB entry of `asid`.
    ///
    /// # Errors
    ///
    /// Command-queue errors.
    pub fn invalidate_asid(&mut self, asid: u16, clock: &impl Clock) -> Result<()> {
        self.submit(&[Command::tlbi_nh_asid(asid)], clock)
    }

    /// Invalidates all stage-1 TLB entries.
    ///
    /// # Errors
    ///
    /// Command-queue errors.
    pub fn invalidate_all(&mut self, clock: &impl Clock) -> Result<()> {
        self.submit(&[Command::tlbi_nh_all()], clock)
    }

    /// Queues `commands` followed by CMD_SYNC, and waits until the SMMU has
    /// consumed the SYNC, which means every command before it completed.
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync).
    pub fn submit(&mut self, commands: &[Command], clock: &impl Clock) -> Result<()> {
        self.push(commands, clock)?;
        self.sync(clock)
    }

    /// Queues `commands` and publishes them (SMMU_CMDQ_PROD) without
    /// waiting for them: they complete at the next [`sync`](Self::sync).
    /// This is how an IOTLB invalidation batch is issued.
    ///
    /// # Errors
    ///
    /// [`BoardError::Timeout`] when the queue stays full.
    pub fn push(&mut self, commands: &[Command], clock: &impl Clock) -> Result<()> {
        let log2 = u32::from(self.config.cmdq_log2);
        for cmd in commands {
            let prod = self.cmdq_prod;
            if prod.is_full(QueueIndex::new(log2, self.p0().cmdq_cons.get())) {
                // Let the SMMU see what is queued, or it never makes room.
                self.publish();
                let p0 = self.p0();
                wait_for(clock, SMMU_TIMEOUT, "SMMU command queue space", || {
                    (!prod.is_full(QueueIndex::new(log2, p0.cmdq_cons.get()))).then_some(())
                })?;
            }
            let slot = self.cmdq.cpu.as_ptr().cast::<u64>();
            // SAFETY: the index is below 2^cmdq_log2, so the 16-byte slot lies
            // in the queue pages this driver owns; the SMMU does not read
            // it until PROD moves past it.
            unsafe {
                let entry = slot.add(prod.index() as usize * 2);
                entry.write_volatile(cmd.0[0]);
                entry.add(1).write_volatile(cmd.0[1]);
            }
            self.cmdq_prod = prod.next();
        }
        self.publish();
        Ok(())
    }

    /// Makes the queued commands visible, then moves SMMU_CMDQ_PROD.
    fn publish(&self) {
        barrier::before_doorbell();
        self.p0().cmdq_prod.set(self.cmdq_prod.raw());
    }

    /// Queues CMD_SYNC and waits until the SMMU has consumed it: every
    /// command queued before it has then completed (§4.7.3).
    ///
    /// # Errors
    ///
    /// [`BoardError::SmmuCommand`] when the SMMU flags a command error (the
    /// error is acknowledged and the offending command skipped, so the
    /// queue keeps working); [`BoardError::Timeout`] when the queue does
    /// not drain.
    pub fn sync(&mut self, clock: &impl Clock) -> Result<()> {
        self.push(&[Command::sync()], clock)?;
        let log2 = u32::from(self.config.cmdq_log2);
        let prod = self.cmdq_prod;
        let p0 = self.p0();
        let drained = wait_for(clock, SMMU_TIMEOUT, "SMMU CMD_SYNC", || {
            if p0.gerror.read(GERROR::CMDQ_ERR) != p0.gerrorn.read(GERROR::CMDQ_ERR) {
                return Some(Err(()));
            }
            QueueIndex::new(log2, p0.cmdq_cons.get())
                .is_empty(prod)
                .then_some(Ok(()))
        })?;
        if drained.is_err() {
            return Err(self.recover_command_error());
        }
        Ok(())
    }

    /// Handles GERROR.CMDQ_ERR (§7.1): reads the error, replaces the
    /// offending command with a SYNC so consumption can resume, and
    /// acknowledges the error.
    fn recover_command_error(&mut self) -> BoardError {
        let p0 = self.p0();
        let cons = p0.cmdq_cons.get();
        let code = ((cons >> 24) & 0x7f) as u8;
        let index = QueueIndex::new(u32::from(self.config.cmdq_log2), cons).index() as usize;
        let slot = self.cmdq.cpu.as_ptr().cast::<u64>();
        // SAFETY: `index` is below the queue size; the SMMU stopped at this
        // slot and reads it again only after the error is acknowledged.
        let opcode = unsafe {
            let entry = slot.add(index * 2);
            let opcode = entry.read_volatile() as u8;
            entry.write_volatile(Command::sync().0[0]);
            entry.add(1).write_volatile(Command::sync().0[1]);
            opcode
        };
        barrier::before_doorbell();
        p0.gerrorn
            .modify(GERROR::CMDQ_ERR.val(p0.gerror.read(GERROR::CMDQ_ERR)));
        BoardError::SmmuCommand { code, opcode }
    }

    /// Takes the next event from the event queue, if any.
    ///
    /// An overflow (events lost because the queue was full) is
    /// acknowledged and counted in [`event_overflows`](Self::event_overflows).
    pub fn pop_event(&mut self) -> Option<Event> {
        let log2 = u32::from(self.config.eventq_log2);
        let prod_raw = self.p1().eventq_prod.get();
        let cons_raw = self.p1().eventq_cons.get();
        let overflow = (prod_raw ^ cons_raw) & regs::EVENTQ_PROD_OVFLG != 0;
        let prod = QueueIndex::new(log2, prod_raw);
        let cons = QueueIndex::new(log2, cons_raw);
        if prod.is_empty(cons) {
            if overflow {
                self.event_overflows += 1;
                self.p1()
                    .eventq_cons
                    .set(cons.raw() | (prod_raw & regs::EVENTQ_CONS_OVACKFLG));
            }
            return None;
        }
        barrier::after_completion_flag();
        let base = self.eventq.cpu.as_ptr().cast::<u64>();
        let mut record = EventRecord([0; 4]);
        for (i, word) in record.0.iter_mut().enumerate() {
            // SAFETY: the index is below 2^eventq_log2, so the 32-byte record
            // lies in the event queue pages this driver owns; the SMMU wrote
            // it before moving PROD past it.
            *word = unsafe { base.add(cons.index() as usize * 4 + i).read_volatile() };
        }
        barrier::dma_full();
        let ack = if overflow {
            self.event_overflows += 1;
            prod_raw & regs::EVENTQ_CONS_OVACKFLG
        } else {
            cons_raw & regs::EVENTQ_CONS_OVACKFLG
        };
        self.p1().eventq_cons.set(cons.next().raw() | ack);
        Some(record.decode())
    }

    /// How many event-queue overflows were seen.
    pub fn event_overflows(&self) -> u32 {
        self.event_overflows
    }

    /// Active global errors (SMMU_GERROR bits not yet acknowledged in
    /// SMMU_GERRORN), as a raw mask.
    pub fn global_errors(&self) -> u32 {
        let p0 = self.p0();
        p0.gerror.get() ^ p0.gerrorn.get()
    }

    /// The physical address of stream `sid`'s STE, for diagnostics.
    pub fn ste_phys(&self, sid: u32) -> u64 {
        self.strtab.phys.as_u64() + u64::from(sid) * 64
    }
}

impl<M: PhysMemory> Smmu<M> {
    /// Turns the SMMU off (CR0 = 0: no translation, no queues), waits for
    /// the acknowledgement and frees the tables and queues.
    ///
    /// # Errors
    ///
    /// [`BoardError::Timeout`] when CR0ACK does not follow; the memory is
    /// then leaked, because the SMMU may still read it.
    pub fn shutdown(self, clock: &impl Clock) -> Result<()> {
        let this = core::mem::ManuallyDrop::new(self);
        this.set_cr0(0, clock)?;
        for pages in [this.strtab, this.cds, this.cmdq, this.eventq] {
            // SAFETY: allocated in `new` from this `mem`, freed once (the
            // value is not dropped), and the SMMU has stopped using them.
            unsafe { this.mem.free_pages(pages) };
        }
        // SAFETY: `this` is never used again, so `mem` is read out once.
        drop(unsafe { core::ptr::read(&this.mem) });
        Ok(())
    }
}

impl<M: PhysMemory> Drop for Smmu<M> {
    /// Stops the SMMU (CR0 = 0) without waiting, and leaks its tables and
    /// queues: without a clock it cannot know when the SMMU has stopped
    /// reading them. [`Smmu::shutdown`] frees them.
    fn drop(&mut self) {
        self.p0().cr0.set(0);
    }
}

#[cfg(test)]
mod tests;
