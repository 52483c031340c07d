//! The IOMMU-translated platform: one domain per device.

use core::fmt;
use core::ptr::NonNull;

use dma_coherence::{CacheMaintenance, PhysicalCore, SyncPoint};
use dma_core::{
    CoherentRegion, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs, DmaDirection, DmaMap, Error,
    ErrorKind, PhysAddr, PhysMemory, RawMapping, Result, SgEntry,
};

use crate::aligned::{AlignedAlloc, Block};
use crate::fault::{DeviceId, Fault};
use crate::hw::{Asid, DomainContext, IommuHardware, TableFormat};
use crate::invalidate::{Deferred, InvalidationPolicy};
use crate::iova::{CpuId, IovaAllocator, IovaRange};
use crate::pgtable::vmsav8::{self, Format, Vmsav8Table};
use crate::pgtable::{IoPageTable, Prot};
use spin::Mutex;

/// How a domain is set up.
///
/// ```
/// use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage};
/// use dma_iommu::{Asid, DeviceId, DomainConfig};
///
/// // 64 KiB pages and a 42-bit IOVA space, as an SMMUv3 on a 64 KiB kernel.
/// let config = DomainConfig::new(DeviceId(8), Asid(1))
///     .with_format(Format::new(Granule::K64, 42, Stage::One)?);
/// assert_eq!(config.format.granule().size(), 0x1_0000);
/// # Ok::<(), dma_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct DomainConfig {
    /// The device, as the IOMMU names it (StreamID).
    pub device: DeviceId,
    /// The ASID its translations are tagged with.
    pub asid: Asid,
    /// How many per-CPU magazine sets the IOVA allocator keeps.
    pub cpus: usize,
    /// Which of them the caller is on (the CPU number in a kernel; any
    /// index no two concurrent callers share). The default says 0.
    pub current_cpu: fn() -> CpuId,
    /// The page-table format: granule, input size, stage. The granule is
    /// also the IOVA page: every mapping covers whole granules.
    pub format: Format,
}

impl DomainConfig {
    /// One device, one context, one CPU, and the default format
    /// ([`Format::STAGE1_4K_48`]: 4 KiB granule, 48-bit IOVAs, stage 1).
    pub const fn new(device: DeviceId, asid: Asid) -> Self {
        Self {
            device,
            asid,
            cpus: 1,
            current_cpu: || CpuId(0),
            format: Format::STAGE1_4K_48,
        }
    }

    /// The same configuration with the tables in `format` (whether the
    /// hardware walks it is the hardware's to say at attach).
    pub const fn with_format(self, format: Format) -> Self {
        Self { format, ..self }
    }
}

/// DMA through an IOMMU for one device: every mapping gets an IOVA from the
/// domain's [`IovaAllocator`], a translation in its [`Vmsav8Table`], and an
/// IOTLB invalidation on unmap under policy `F`
/// ([`Deferred`] by default, or [`Strict`](crate::Strict)).
///
/// Generic over the environment's memory `M`, the cache policy `C` (as
/// `dma_direct::DirectPlatform` is: `HardwareCoherent` maps memory
/// cacheable and skips maintenance; a non-coherent policy maps it
/// non-cacheable, cleans and invalidates buffers per the sync plan and
/// cleans every table write) and the hardware `H`.
///
/// The tables' [`Format`] comes from [`DomainConfig::format`]: the 4 KiB
/// stage-1 default, or any granule, input size (the IOVA window's top) and
/// stage the hardware walks. The granule is the IOVA page, so a mapping
/// gives the device every granule its buffer touches: with 64 KiB pages a
/// device may reach up to 64 KiB around a small buffer (as under Linux's
/// `iommu-dma`); put the bounce platform in front for a device that must
/// not. Coherent allocations are whole granules of their own.
///
/// A device access to an unmapped or read-only IOVA faults in the
/// hardware; [`take_fault`](Self::take_fault) and
/// [`check_faults`](Self::check_faults) surface it.
pub struct IommuPlatform<M, C, H, F = Deferred>
where
    M: PhysMemory + Clone,
    C: CacheMaintenance + Clone,
    H: IommuHardware,
    F: InvalidationPolicy,
{
    memory: M,
    cache: C,
    hw: H,
    ctx: DomainContext,
    constraints: DeviceConstraints,
    /// log2 of the granule, the IOVA page.
    shift: u32,
    table: Mutex<Vmsav8Table<M, C>>,
    /// Coherent allocations, aligned to the granule.
    coherent: Mutex<AlignedAlloc<M>>,
    iova: IovaAllocator,
    policy: Mutex<F>,
    current_cpu: fn() -> CpuId,
}

impl<M, C, H, F> IommuPlatform<M, C, H, F>
where
    M: PhysMemory + Clone,
    C: CacheMaintenance + Clone,
    H: IommuHardware,
    F: InvalidationPolicy,
{
    /// Creates the device's domain (empty tables of `config.format`, an
    /// IOVA window from one granule up to the lower of the device's mask
    /// and the format's input size; IOVA page 0 stays unmapped so a zero
    /// DMA address is never valid) and attaches it to the hardware.
    ///
    /// # Errors
    ///
    /// [`InvalidConstraints`](ErrorKind::InvalidConstraints) when the mask
    /// leaves no IOVA page; the table's errors; the hardware's, among them
    /// [`Unsupported`](ErrorKind::Unsupported) for a format it cannot
    /// walk.
    pub fn new(
        memory: M,
        cache: C,
        hw: H,
        policy: F,
        constraints: DeviceConstraints,
        config: DomainConfig,
    ) -> Result<Self> {
        let format = config.format;
        let table = Vmsav8Table::with_format(memory.clone(), cache.clone(), format)?;
        let shift = format.granule().shift();
        let page = format.granule().size();
        let top = constraints.dma_mask().min((1 << format.ias_bits()) - 1);
        let end_pfn = (top >> shift) + u64::from(top & (page - 1) == page - 1);
        let align_order = constraints
            .alignment()
            .max(page)
            .trailing_zeros()
            .saturating_sub(shift);
        let iova = IovaAllocator::new(1, end_pfn, config.cpus, align_order)?;
        let ctx = DomainContext {
            device: config.device,
            asid: config.asid,
            root: table.root(),
            ias_bits: table.ias_bits(),
            format: TableFormat::Vmsav8 {
                format,
                mair: vmsav8::MAIR,
            },
            walk_coherent: table.walk_is_coherent(),
        };
        hw.attach(&ctx)?;
        Ok(Self {
            coherent: Mutex::new(AlignedAlloc::new(memory.clone())),
            memory,
            cache,
            hw,
            ctx,
            constraints,
            shift,
            table: Mutex::new(table),
            iova,
            policy: Mutex::new(policy),
            current_cpu: config.current_cpu,
        })
    }

    /// The IOVA page: the tables' granule, which every mapping covers
    /// whole.
    pub fn granule(&self) -> u64 {
        1 << self.shift
    }

    /// What the hardware was given: root table, ASID, format, MAIR.
    pub fn context(&self) -> &DomainContext {
        &self.ctx
    }

    /// The hardware.
    pub fn hardware(&self) -> &H {
        &self.hw
    }

    /// The IOVA allocator.
    pub fn iova_allocator(&self) -> &IovaAllocator {
        &self.iova
    }

    /// The physical address `dma` translates to in this domain's tables.
    pub fn iova_to_phys(&self, dma: DmaAddr) -> Option<PhysAddr> {
        self.table.lock().iova_to_phys(dma.as_u64())
    }

    /// The oldest fault the hardware recorded for this device.
    pub fn take_fault(&self) -> Option<Fault> {
        self.hw.take_fault(self.ctx.device)
    }

    /// `Ok` when the device has not faulted since the last call.
    ///
    /// # Errors
    ///
    /// [`DeviceFault`](ErrorKind::DeviceFault) at the faulting IOVA (the
    /// oldest fault; call again for the next).
    pub fn check_faults(&self) -> Result<()> {
        match self.take_fault() {
            Some(f) => Err(f.to_error()),
            None => Ok(()),
        }
    }

    /// The timeout hook of the deferred policy: completes every queued
    /// invalidation and frees its IOVAs. Call it from a periodic timer
    /// (Linux flushes after 10 ms) to bound how long an unmapped buffer
    /// stays reachable through a stale IOTLB entry.
    ///
    /// # Errors
    ///
    /// The hardware's `sync` error.
    pub fn on_flush_timeout(&self) -> Result<()> {
        self.flush_invalidations()
    }

    /// Unmapped ranges waiting for an invalidation.
    pub fn pending_invalidations(&self) -> usize {
        self.policy.lock().pending()
    }

    /// The checks and syncs every physical backend shares.
    fn core(&self) -> PhysicalCore<'_, C, M> {
        PhysicalCore::new(&self.cache, &self.memory)
    }

    fn cpu(&self) -> CpuId {
        (self.current_cpu)()
    }

    fn flush_invalidations(&self) -> Result<()> {
        let cpu = self.cpu();
        self.policy.lock().flush(&self.hw, self.ctx.asid, &mut |r| {
            self.iova.free_many(cpu, r)
        })
    }

    /// Allocates `pages` of IOVA; on exhaustion completes the deferred
    /// invalidations (whose IOVAs then become free) and tries once more.
    fn alloc_iova(&self, pages: u64) -> Result<IovaRange> {
        match self.iova.alloc(self.cpu(), pages) {
            Err(e) if e.kind() == ErrorKind::IovaExhausted && self.pending_invalidations() > 0 => {
                self.flush_invalidations()?;
                self.iova.alloc(self.cpu(), pages)
            }
            r => r,
        }
    }

    /// Hands an unmapped range to the invalidation policy.
    fn retire(&self, range: IovaRange) -> Result<()> {
        let cpu = self.cpu();
        self.policy
            .lock()
            .unmapped(&self.hw, self.ctx.asid, range, self.shift, &mut |r| {
                self.iova.free_many(cpu, r)
            })
    }

    fn prot(&self, dir: DmaDirection) -> Prot {
        let access = match dir {
            DmaDirection::ToDevice => Prot::READ,
            DmaDirection::FromDevice => Prot::WRITE,
            DmaDirection::Bidirectional => Prot::READ | Prot::WRITE,
        };
        if self.cache.is_coherent() {
            access | Prot::CACHE
        } else {
            access
        }
    }

    /// The page span of a buffer: its offset in the first page and the
    /// number of pages it touches.
    fn span(&self, phys: PhysAddr, len: usize) -> Result<(u64, u64)> {
        dma_coherence::check_span(phys, len)?;
        let offset = phys.offset_in(self.granule());
        // The IOVA keeps the offset within the page, so it must already
        // satisfy the device's alignment; no placement can fix it (the
        // bounce layer can).
        // The alignment is a power of two (the constraints' builder checks).
        if offset & (self.constraints.alignment() - 1) != 0 {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "buffer's offset in its page breaks the device's alignment",
            )
            .at(phys.as_u64())
            .len(len as u64));
        }
        // No wrap: check_span refused one, and the offset is part of phys.
        let end = offset + len as u64;
        Ok((
            offset,
            (end >> self.shift) + u64::from(end & (self.granule() - 1) != 0),
        ))
    }

    /// Checks that `pages` pages at `iova` translate to `pages` at `phys`
    /// (the first and the last page), i.e. that this is a live mapping.
    fn check_live(
        &self,
        table: &Vmsav8Table<M, C>,
        iova: u64,
        phys: u64,
        pages: u64,
    ) -> Result<()> {
        let last = (pages - 1) * self.granule();
        let ok = table.iova_to_phys(iova).map(PhysAddr::as_u64) == Some(phys)
            && table.iova_to_phys(iova + last).map(PhysAddr::as_u64) == Some(phys + last);
        if ok {
            Ok(())
        } else {
            Err(not_live(iova))
        }
    }

    /// Whether `map_sg` places these entries in one IOVA range: always,
    /// unless the device's boundary is smaller than the range would be.
    /// Depends only on the entries and the constraints, so `unmap_sg`
    /// reaches the same answer.
    fn sg_layout(&self, entries: &[SgEntry]) -> Result<Option<u64>> {
        let mut pages = 0u64;
        for e in entries {
            pages += self.span(e.phys, e.len)?.1;
        }
        let fits = match (self.constraints.boundary(), self.iova.footprint(0, pages)) {
            (None, _) => true,
            (Some(b), Some(f)) => f.pages.next_power_of_two().saturating_mul(self.granule()) <= b,
            (Some(_), None) => false,
        };
        Ok(fits.then_some(pages))
    }

    /// `map_sg` one entry at a time (when the boundary forbids one range).
    ///
    /// # Safety
    ///
    /// As for `DmaMap::map`, for every entry.
    unsafe fn map_sg_each(
        &self,
        entries: &mut [SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        for i in 0..entries.len() {
            let e = entries[i];
            // SAFETY: the caller's promise covers every entry.
            match unsafe { self.map(e.phys, e.len, dir, attrs) } {
                Ok(dma) => entries[i].dma = dma,
                Err(err) => {
                    for done in &entries[..i] {
                        // SAFETY: mapped just above, never handed out.
                        let _ = unsafe { self.unmap(&done.as_raw(dir, attrs)) };
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }
}

/// Unmap's refusal of a mapping that is not live at `iova`.
fn not_live(iova: u64) -> Error {
    Error::new(
        ErrorKind::NotMapped,
        "no live mapping of this buffer at this IOVA",
    )
    .at(iova)
}

// SAFETY: map gives the device exactly the pages the buffer touches,
// through a fresh IOVA range (so nothing else becomes reachable), with
// write permission only for directions the device writes; unmap removes
// them and hands the range to the invalidation policy, which frees the IOVA
// only after the hardware completed the invalidation; the CPU-side checks
// and syncs are dma-coherence's PhysicalCore, whose module docs argue that
// they change no byte outside a mapped range, invalidation included;
// coherent allocations are uncached on non-coherent policies, as for the
// direct backend.
unsafe impl<M, C, H, F> DmaMap for IommuPlatform<M, C, H, F>
where
    M: PhysMemory + Clone,
    C: CacheMaintenance + Clone,
    H: IommuHardware,
    F: InvalidationPolicy,
{
    fn constraints(&self) -> &DeviceConstraints {
        &self.constraints
    }

    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        self.memory.virt_to_phys(cpu, len)
    }

    fn dma_alignment(&self) -> usize {
        self.core().dma_alignment()
    }

    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaAddr> {
        self.core().prepare_map(phys, len, dir)?;
        let (offset, pages) = self.span(phys, len)?;
        let range = self.alloc_iova(pages)?;
        let iova = range.start(self.shift);
        let dma = DmaAddr::new(iova + offset);
        if self.constraints.crosses_boundary(dma, len as u64) {
            self.iova.free(self.cpu(), range);
            return Err(Error::new(
                ErrorKind::CrossesBoundary,
                "buffer spans more pages than the device's boundary allows",
            )
            .at(phys.as_u64())
            .len(len as u64));
        }
        let page = PhysAddr::new(phys.as_u64() - offset);
        // SAFETY: the caller owns the buffer until unmap (map's contract).
        let mapped = unsafe {
            self.table
                .lock()
                .map(iova, page, pages * self.granule(), self.prot(dir))
        };
        if let Err(e) = mapped {
            // Never visible to the device: no invalidation needed.
            self.iova.free(self.cpu(), range);
            return Err(e);
        }
        let raw = RawMapping {
            phys,
            dma,
            len,
            dir,
            attrs,
        };
        // SAFETY: checked by prepare_map; the caller owns the range (map's contract). prepare_map
        // checked the translation, so this cannot fail unless the environment changed meanwhile;
        // then the mapping is undone below.
        if let Err(e) = unsafe { self.core().after_map(&raw) } {
            // SAFETY: mapped just above and never handed out.
            let _ = unsafe { self.unmap(&raw) };
            return Err(e);
        }
        Ok(dma)
    }

    unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()> {
        let (offset, pages) = self.span(mapping.phys, mapping.len)?;
        if mapping.dma.offset_in(self.granule()) != offset {
            return Err(Error::new(
                ErrorKind::NotMapped,
                "device address and buffer disagree on the page offset",
            )
            .at(mapping.dma.as_u64()));
        }
        let iova = mapping.dma.as_u64() - offset;
        let phys = mapping.phys.as_u64() - offset;
        // Only a policy that maintains caches touches the buffer before the
        // unmap, so only it needs the mapping checked live first (a coherent
        // one's sync does nothing, and the check under the lock below
        // refuses a mapping that is not live all the same).
        if !self.cache.is_coherent() {
            let table = self.table.lock();
            self.check_live(&table, iova, phys, pages)?;
        }
        // A failure (the environment no longer translates the buffer) is
        // reported below, after the device's access has ended.
        // SAFETY: live (checked above where the policy maintains caches; on a coherent one it
        // touches nothing), and the caller's contract says the device stopped.
        let synced = unsafe { self.core().before_unmap(mapping) };
        let mut table = self.table.lock();
        // Checked under the same lock as the unmap, so two racing unmaps of
        // one mapping cannot both succeed. A run of pages in one table is
        // checked page by page and cleared in one walk.
        let size = pages * self.granule();
        match table.unmap_run(iova, PhysAddr::new(phys), size)? {
            Some(true) => {}
            Some(false) => return Err(not_live(iova)),
            None => {
                self.check_live(&table, iova, phys, pages)?;
                table.unmap(iova, size)?;
            }
        }
        drop(table);
        let range = self
            .iova
            .footprint(iova >> self.shift, pages)
            .ok_or(Error::new(ErrorKind::NotMapped, "impossible IOVA span"))?;
        self.retire(range)?;
        synced
    }

    unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize) {
        // SAFETY: live mapping, range inside it (the caller's contract). An error means the
        // environment no longer translates a range it translated at map; the trait has no way to
        // report it here, and unmap's sync will.
        let _ = unsafe { self.core().sync(mapping, offset, len, SyncPoint::ForCpu) };
    }

    unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize) {
        // SAFETY: live mapping, range inside it (the caller's contract). An error means the
        // environment no longer translates a range it translated at map; the trait has no way to
        // report it here, and unmap's sync will.
        let _ = unsafe { self.core().sync(mapping, offset, len, SyncPoint::ForDevice) };
    }

    /// Places the whole table in one IOVA range, entry after entry, each
    /// keeping its offset in its first page (as Linux's `iommu_dma_map_sg`
    /// does). Entries that end and start on page boundaries, which is every
    /// entry but the first's start and the last's end in a typical table,
    /// come out exactly contiguous, so `dma-sg` merges them into one device
    /// segment. When the device's boundary is smaller than the range would
    /// be, each entry is mapped on its own.
    unsafe fn map_sg(
        &self,
        entries: &mut [SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        for e in entries.iter() {
            self.core().prepare_map(e.phys, e.len, dir)?;
        }
        let Some(total) = self.sg_layout(entries)? else {
            // SAFETY: the caller's promise is passed on.
            return unsafe { self.map_sg_each(entries, dir, attrs) };
        };
        let range = self.alloc_iova(total)?;
        let base = range.start(self.shift);
        let prot = self.prot(dir);
        let mut cursor = base;
        let mut table = self.table.lock();
        for e in entries.iter_mut() {
            let offset = e.phys.offset_in(self.granule());
            let pages = (offset + e.len as u64).div_ceil(self.granule());
            let page = PhysAddr::new(e.phys.as_u64() - offset);
            // SAFETY: the caller owns every entry until unmap_sg.
            if let Err(err) = unsafe { table.map(cursor, page, pages * self.granule(), prot) } {
                if cursor > base {
                    let _ = table.unmap(base, cursor - base);
                }
                drop(table);
                // Never visible to the device: no invalidation needed.
                self.iova.free(self.cpu(), range);
                return Err(err);
            }
            e.dma = DmaAddr::new(cursor + offset);
            cursor += pages * self.granule();
        }
        drop(table);
        for e in entries.iter() {
            // SAFETY: checked by prepare_map; the caller owns every entry
            // (map's contract).
            if let Err(err) = unsafe { self.core().after_map(&e.as_raw(dir, attrs)) } {
                // SAFETY: mapped just above as one table, never handed out.
                let _ = unsafe { self.unmap_sg(entries, dir, attrs) };
                return Err(err);
            }
        }
        Ok(())
    }

    unsafe fn unmap_sg(
        &self,
        entries: &[SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let Some(total) = self.sg_layout(entries)? else {
            let mut result = Ok(());
            for e in entries {
                // SAFETY: the caller's promise for unmap covers every entry.
                let r = unsafe { self.unmap(&e.as_raw(dir, attrs)) };
                if result.is_ok() {
                    result = r;
                }
            }
            return result;
        };
        let base = first.dma.as_u64() - first.dma.offset_in(self.granule());
        {
            // Every entry must be where map_sg put it before anything goes.
            let table = self.table.lock();
            let mut cursor = base;
            for e in entries {
                let (offset, pages) = self.span(e.phys, e.len)?;
                if e.dma.as_u64() != cursor + offset {
                    return Err(Error::new(
                        ErrorKind::NotMapped,
                        "scatter-gather entry is not where map_sg placed it",
                    )
                    .at(e.dma.as_u64()));
                }
                self.check_live(&table, cursor, e.phys.as_u64() - offset, pages)?;
                cursor += pages * self.granule();
            }
        }
        let mut synced = Ok(());
        for e in entries {
            // SAFETY: checked live; the device has stopped (contract). A
            // failure is reported once the device's access has ended.
            let r = unsafe { self.core().before_unmap(&e.as_raw(dir, attrs)) };
            if synced.is_ok() {
                synced = r;
            }
        }
        let mut table = self.table.lock();
        self.check_live(
            &table,
            base,
            first.phys.as_u64() - first.phys.offset_in(self.granule()),
            1,
        )?;
        table.unmap(base, total * self.granule())?;
        drop(table);
        let range = self
            .iova
            .footprint(base >> self.shift, total)
            .ok_or(Error::new(ErrorKind::NotMapped, "impossible IOVA span"))?;
        self.retire(range)?;
        synced
    }
}

// SAFETY: pages come zeroed and exclusive from the environment, uncached
// when the cache policy is not coherent (so no maintenance is needed), and
// are mapped read-write at a fresh IOVA inside the device's window; free
// unmaps, invalidates strictly and waits before the pages go back.
unsafe impl<M, C, H, F> DmaAlloc for IommuPlatform<M, C, H, F>
where
    M: PhysMemory + Clone,
    C: CacheMaintenance + Clone,
    H: IommuHardware,
    F: InvalidationPolicy,
{
    fn alloc_coherent(&self, size: usize, attrs: DmaAttrs) -> Result<CoherentRegion> {
        if size == 0 {
            return Err(Error::new(
                ErrorKind::ZeroSize,
                "zero-sized coherent allocation",
            ));
        }
        let count = size.div_ceil(self.granule() as usize);
        // Rounded up to whole granules, the size must still be a size.
        let bytes = (count as u64)
            .checked_mul(self.granule())
            .filter(|&b| usize::try_from(b).is_ok())
            .ok_or(
                Error::new(
                    ErrorKind::OutOfMemory,
                    "coherent allocation too large once rounded up to whole IOMMU granules",
                )
                .len(size as u64),
            )?;
        let cacheability = self.core().coherent_cacheability(attrs);
        // Whole granules of our own: the mapping exposes nothing else.
        let block = self
            .coherent
            .lock()
            .alloc(bytes, self.granule(), cacheability)?;
        let free_block = || {
            // SAFETY: just allocated with these arguments and never given to
            // the device.
            unsafe { self.coherent.lock().free(block, bytes, cacheability) }
        };
        let range = match self.alloc_iova(count as u64) {
            Ok(r) => r,
            Err(e) => {
                free_block();
                return Err(e);
            }
        };
        let iova = range.start(self.shift);
        let prot = self.prot(DmaDirection::Bidirectional);
        // SAFETY: the block is ours until free_coherent.
        let mapped = unsafe { self.table.lock().map(iova, block.phys, bytes, prot) };
        if let Err(e) = mapped {
            self.iova.free(self.cpu(), range);
            free_block();
            return Err(e);
        }
        Ok(CoherentRegion {
            cpu: block.cpu,
            dma: DmaAddr::new(iova),
            size: bytes as usize,
        })
    }

    unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()> {
        let phys = self.memory.virt_to_phys(region.cpu, region.size)?;
        let count = region.size.div_ceil(self.granule() as usize) as u64;
        let bytes = count * self.granule();
        let iova = region.dma.as_u64();
        {
            let mut table = self.table.lock();
            if !region.dma.is_aligned(self.granule()) {
                return Err(Error::new(ErrorKind::NotMapped, "not a coherent allocation").at(iova));
            }
            self.check_live(&table, iova, phys.as_u64(), count)?;
            table.unmap(iova, bytes)?;
        }
        // The pages go back to the environment now, so the IOTLB must
        // forget them now, whatever the streaming policy.
        self.hw.invalidate_range(self.ctx.asid, region.dma, bytes);
        self.hw.sync()?;
        if let Some(range) = self.iova.footprint(iova >> self.shift, count) {
            self.iova.free(self.cpu(), range);
        }
        let block = Block {
            cpu: region.cpu,
            phys,
        };
        let cacheability = self.core().coherent_cacheability(attrs);
        // SAFETY: the caller promises the region came from alloc_coherent
        // with these attrs, so this is the block allocated there for
        // `bytes` with this cacheability, now unmapped and invalidated.
        unsafe { self.coherent.lock().free(block, bytes, cacheability) };
        Ok(())
    }
}

impl<M, C, H, F> Drop for IommuPlatform<M, C, H, F>
where
    M: PhysMemory + Clone,
    C: CacheMaintenance + Clone,
    H: IommuHardware,
    F: InvalidationPolicy,
{
    /// Detaches the domain (the hardware stops walking the tables and
    /// forgets their translations) before the tables are freed.
    fn drop(&mut self) {
        self.hw.detach(&self.ctx);
    }
}

impl<M, C, H, F> fmt::Debug for IommuPlatform<M, C, H, F>
where
    M: PhysMemory + Clone,
    C: CacheMaintenance + Clone,
    H: IommuHardware,
    F: InvalidationPolicy,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IommuPlatform")
            .field("context", &self.ctx)
            .field("constraints", &self.constraints)
            .field("iova", &self.iova)
            .finish_non_exhaustive()
    }
}
