//! The virtio-blk driver (§5.2); documented in the parent module.

use alloc::vec::Vec;
use core::mem::ManuallyDrop;

use dma_core::{Coherent, DmaAlloc, DmaBuf, DmaBuffer, DmaMap, FromDevice, SgEntry, ToDevice};
use dma_ring::virtio::{Segment, Used};
use dma_sg::{MappedSgTable, SgLimits};
use zerocopy::IntoBytes;

use super::queue::Virtqueue;
use super::spec::{
    blk_features, blk_req, blk_status, device_id, BlkConfig, BlkReqHeader, DeviceStatus, Features,
    BLK_REQUESTQ, SECTOR_SIZE,
};
use super::transport::{driver_ok, negotiate, Transport, VirtioOptions};
use crate::{DriverError, Refused, Wait};

/// Bytes of DMA memory per request: the 16-byte header, then the status
/// byte (padded so each request's pair sits apart).
const REQ_AREA: usize = 32;
/// Offset of the status byte in a request's area.
const STATUS_AT: usize = 16;
/// What the status byte holds until the device writes it: no status
/// value, so a device that says "done" without writing it is caught.
const STATUS_UNWRITTEN: u8 = 0xff;
/// Descriptors per indirect table (header, data segments, status): the
/// longest request that takes a single queue entry.
const BLK_INDIRECT_ENTRIES: u16 = 64;
/// Page size the data buffers are cut into for the scatter list.
const SG_PAGE: usize = 4096;

/// The driver's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioBlkStats {
    /// Reads completed successfully.
    pub reads: u64,
    /// Writes completed successfully.
    pub writes: u64,
    /// Flushes completed successfully.
    pub flushes: u64,
    /// Requests that failed on the device side (status or protocol).
    pub errors: u64,
    /// Requests that timed out and completed later (their buffers are
    /// returned by [`VirtioBlk::shutdown`]).
    pub late: u64,
}

type ReadMap<B, P> = MappedSgTable<B, FromDevice, P, Vec<SgEntry>>;
type WriteMap<B, P> = MappedSgTable<B, ToDevice, P, Vec<SgEntry>>;

/// A request's data, mapped for the direction of the transfer.
enum Data<B: DmaBuffer, P: DmaMap> {
    None,
    Read(ReadMap<B, P>),
    Write(WriteMap<B, P>),
}

impl<B: DmaBuffer, P: DmaMap> Data<B, P> {
    /// Unmaps (a read's data is made visible to the CPU here).
    fn unmap(self) -> Result<Option<B>, DriverError> {
        Ok(match self {
            Self::None => None,
            Self::Read(m) => Some(m.unmap()?),
            Self::Write(m) => Some(m.unmap()?),
        })
    }
}

/// What the ring owns while a request is in flight.
struct Request<B: DmaBuffer, P: DmaMap> {
    /// The request's header/status area.
    area: u16,
    /// Bytes of device-writable buffers posted (data for a read, + 1).
    writable: u32,
    /// Whether the request reads data from the disk.
    read: bool,
    data: Data<B, P>,
}

/// The rings and DMA memory, dropped only once the device is stopped.
struct Rings<B: DmaBuffer, P: DmaMap + DmaAlloc, N: dma_ring::Doorbell> {
    queue: Virtqueue<P, N, Request<B, P>>,
    /// Header and status areas, [`REQ_AREA`] bytes each.
    areas: Coherent<[u8], P>,
    free_areas: Vec<u16>,
}

/// A polled virtio-blk driver over transport `T`, platform `P`, waiting
/// with `W`, moving data in buffers of type `B`.
///
/// See the [module documentation](crate::virtio).
pub struct VirtioBlk<T, P, W, B = DmaBuf>
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    transport: T,
    platform: P,
    wait: W,
    features: Features,
    capacity: u64,
    limits: SgLimits,
    max_data_segments: usize,
    rings: ManuallyDrop<Rings<B, P, T::Notify>>,
    /// Buffers of requests that timed out and were completed later.
    late: Vec<B>,
    stopped: bool,
    stats: VirtioBlkStats,
}

impl<T, P, W, B> VirtioBlk<T, P, W, B>
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    /// Brings the device up (§3.1.1, §5.2.5): resets it, negotiates
    /// (`VERSION_1`, `ACCESS_PLATFORM`, the queue layout and `EVENT_IDX`
    /// per `options`; `RO`, `FLUSH`, `SEG_MAX`, `SIZE_MAX` and
    /// `BLK_SIZE` when offered), reads the capacity, sets up the request
    /// queue and sets `DRIVER_OK`. On an error after the reset the device
    /// is left `FAILED`.
    ///
    /// # Errors
    ///
    /// [`DriverError::Unsupported`] for a device that is not a block
    /// device, lacks `VERSION_1`, lacks `ACCESS_PLATFORM` on a
    /// translating platform, has no request queue or one too small for a
    /// request, or no configuration space;
    /// [`DriverError::FeaturesRefused`], [`DriverError::DeviceNeedsReset`],
    /// [`DriverError::Timeout`]; allocation errors.
    pub fn start(
        transport: T,
        platform: P,
        mut wait: W,
        options: VirtioOptions,
    ) -> Result<Self, DriverError> {
        let own = blk_features::RO
            | blk_features::FLUSH
            | blk_features::SEG_MAX
            | blk_features::SIZE_MAX
            | blk_features::BLK_SIZE;
        let features = negotiate(&transport, device_id::BLOCK, own, &options, &mut wait)?;
        match Self::set_up(&transport, &platform, features, &options) {
            Ok((rings, capacity, limits, max_data_segments)) => Ok(Self {
                transport,
                platform,
                wait,
                features,
                capacity,
                limits,
                max_data_segments,
                rings: ManuallyDrop::new(rings),
                late: Vec::new(),
                stopped: false,
                stats: VirtioBlkStats::default(),
            }),
            Err(e) => {
                // The device never saw DRIVER_OK nor a notification, so it
                // does not touch the queue memory dropped here.
                transport.fail();
                Err(e)
            }
        }
    }

    /// Steps 7 and 8 of §3.1.1 for a block device.
    #[allow(clippy::type_complexity)]
    fn set_up(
        transport: &T,
        platform: &P,
        features: Features,
        options: &VirtioOptions,
    ) -> Result<(Rings<B, P, T::Notify>, u64, SgLimits, usize), DriverError> {
        if transport.config_size() < core::mem::offset_of!(BlkConfig, size_max) {
            return Err(DriverError::Unsupported(
                "a virtio-blk configuration space holding the capacity",
            ));
        }
        let (capacity, seg_max, size_max) = transport.read_config(|t| {
            (
                t.read_config_u64(core::mem::offset_of!(BlkConfig, capacity)),
                t.read_config_u32(core::mem::offset_of!(BlkConfig, seg_max)),
                t.read_config_u32(core::mem::offset_of!(BlkConfig, size_max)),
            )
        })?;
        let mut limits = SgLimits::new(SG_PAGE, platform.constraints())?;
        if features.contains(blk_features::SIZE_MAX) {
            limits = limits.with_max_segment(size_max.into()).map_err(|_| {
                DriverError::Unsupported("segments of at least a page (virtio-blk size_max)")
            })?;
        }
        // Header, data, status: a request needs three descriptors.
        let mut queue = Virtqueue::new(
            transport,
            BLK_REQUESTQ,
            platform.clone(),
            features,
            options.queue_size,
            3,
            BLK_INDIRECT_ENTRIES,
        )?;
        queue.set_interrupts(false);
        let mut max_data_segments = usize::from(queue.size()) - 2;
        if features.contains(blk_features::SEG_MAX) && seg_max > 0 {
            max_data_segments = max_data_segments.min(seg_max as usize);
        }
        // Each request takes at least two descriptors (header, status).
        let requests = (queue.size() / 2).max(1);
        let areas =
            Coherent::<[u8], P>::zeroed_slice(platform.clone(), usize::from(requests) * REQ_AREA)?;
        driver_ok(transport)?;
        let rings = Rings {
            queue,
            areas,
            free_areas: (0..requests).rev().collect(),
        };
        Ok((rings, capacity, limits, max_data_segments))
    }

    /// The disk's size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The features negotiated.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Whether the device said the disk is read-only (`RO`).
    pub fn read_only(&self) -> bool {
        self.features.contains(blk_features::RO)
    }

    /// The counters.
    pub fn stats(&self) -> VirtioBlkStats {
        self.stats
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The waiter, mutably (with a simulator's stepping waiter: the
    /// simulated device).
    pub fn wait_mut(&mut self) -> &mut W {
        &mut self.wait
    }

    /// Requests in flight (only ones that timed out, between calls).
    pub fn in_flight(&self) -> u32 {
        self.rings.queue.in_flight()
    }

    /// Reads `buffer.len()` bytes (whole sectors) from `sector` into
    /// `buffer` and returns it.
    ///
    /// # Errors
    ///
    /// A [`Refused`] with the buffer back (when it can be given back):
    /// [`DriverError::InvalidArgument`] for a length that is not whole
    /// sectors or a range past the disk's end, a mapping the platform
    /// refuses (on a non-coherent machine, a buffer not owning its cache
    /// lines: use [`DmaBuf::for_device`]), more segments than a request
    /// may have; [`DriverError::BlockStatus`] for a request the device
    /// failed; [`DriverError::DeviceProtocol`] for a status byte or used
    /// length the device may not write; [`DriverError::Ring`] when the
    /// device broke the queue, [`DriverError::Timeout`] or
    /// [`DriverError::DeviceNeedsReset`] when it does not answer: then the
    /// buffer stays with the device until [`shutdown`](Self::shutdown).
    pub fn read(&mut self, sector: u64, buffer: B) -> Result<B, Refused<B>> {
        let data = ReadMap::<B, P>::map(self.platform.clone(), buffer, self.limits)
            .map_err(|e| Refused::new(e.error, Some(e.buffer)))?;
        if let Err(e) = self.check_range(sector, data.total_len()) {
            return Err(Refused::new(e, data.unmap().ok()));
        }
        let done = self.transfer(blk_req::IN, sector, Data::Read(data))?;
        done.ok_or(Refused::new(
            DriverError::DeviceProtocol("no buffer after a read"),
            None,
        ))
    }

    /// Writes `buffer` (whole sectors) at `sector` and returns it. The
    /// CPU's writes to it are made visible to the device when it is
    /// mapped here.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read); [`DriverError::InvalidArgument`] for a
    /// read-only disk.
    pub fn write(&mut self, sector: u64, buffer: B) -> Result<B, Refused<B>> {
        if self.read_only() {
            let e = DriverError::InvalidArgument("the disk is read-only (VIRTIO_BLK_F_RO)");
            return Err(Refused::new(e, Some(buffer)));
        }
        let data = WriteMap::<B, P>::map(self.platform.clone(), buffer, self.limits)
            .map_err(|e| Refused::new(e.error, Some(e.buffer)))?;
        if let Err(e) = self.check_range(sector, data.total_len()) {
            return Err(Refused::new(e, data.unmap().ok()));
        }
        let done = self.transfer(blk_req::OUT, sector, Data::Write(data))?;
        done.ok_or(Refused::new(
            DriverError::DeviceProtocol("no buffer after a write"),
            None,
        ))
    }

    /// Flushes the device's volatile write cache (`FLUSH`). Without the
    /// `FLUSH` feature the device writes through (§5.2.6.2), so there is
    /// nothing to flush and this returns at once.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read), without a buffer.
    pub fn flush(&mut self) -> Result<(), DriverError> {
        if !self.features.contains(blk_features::FLUSH) {
            return Ok(());
        }
        self.transfer(blk_req::FLUSH, 0, Data::None)
            .map(drop)
            .map_err(|r| r.error)
    }

    fn check_range(&self, sector: u64, len: u64) -> Result<(), DriverError> {
        if len == 0 || len % SECTOR_SIZE as u64 != 0 {
            return Err(DriverError::InvalidArgument(
                "a virtio-blk transfer of whole 512-byte sectors",
            ));
        }
        let end = sector.checked_add(len / SECTOR_SIZE as u64);
        if end.is_none_or(|end| end > self.capacity) {
            return Err(DriverError::InvalidArgument(
                "sectors inside the disk (see capacity())",
            ));
        }
        // The chain's total (data, header, status) must fit 32 bits.
        if len > u64::from(u32::MAX) - REQ_AREA as u64 {
            return Err(DriverError::InvalidArgument(
                "a virtio-blk transfer below 4 GiB",
            ));
        }
        Ok(())
    }

    /// Queues one request, notifies, waits for it and checks what the
    /// device wrote.
    fn transfer(
        &mut self,
        req_type: u32,
        sector: u64,
        data: Data<B, P>,
    ) -> Result<Option<B>, Refused<B>> {
        let read = req_type == blk_req::IN;
        let mut segments: Vec<Segment> = Vec::new();
        let data_segments = match &data {
            Data::None => Ok(()),
            Data::Read(m) => push_segments(&mut segments, m.segments()),
            Data::Write(m) => push_segments(&mut segments, m.segments()),
        };
        let too_many = segments.len() > self.max_data_segments;
        if let Err(e) = data_segments.and(if too_many {
            Err(DriverError::InvalidArgument(
                "a buffer in fewer pieces than the virtio-blk request may have (queue size, seg_max)",
            ))
        } else {
            Ok(())
        }) {
            return Err(Refused::new(e, data.unmap().ok().flatten()));
        }
        let Some(area) = self.rings.free_areas.pop() else {
            let e = DriverError::InvalidArgument(
                "a free request slot: requests that timed out still hold them (shut down)",
            );
            return Err(Refused::new(e, data.unmap().ok().flatten()));
        };
        let (header, status) = match self.prepare_area(area, req_type, sector) {
            Ok(addrs) => addrs,
            Err(e) => {
                self.rings.free_areas.push(area);
                return Err(Refused::new(e, data.unmap().ok().flatten()));
            }
        };
        let header = Segment::new(header, core::mem::size_of::<BlkReqHeader>() as u32);
        let status = Segment::new(status, 1);
        let (readable, writable): (Vec<Segment>, Vec<Segment>) = if read {
            let mut w = segments;
            w.push(status);
            (alloc::vec![header], w)
        } else {
            let mut r = alloc::vec![header];
            r.extend(segments);
            (r, alloc::vec![status])
        };
        let request = Request {
            area,
            writable: writable.iter().map(|s| s.len).sum(),
            read,
            data,
        };
        if let Err(rejected) = self.rings.queue.add(&readable, &writable, request) {
            self.rings.free_areas.push(area);
            let buffer = rejected.buffers.data.unmap().ok().flatten();
            return Err(Refused::new(rejected.error, buffer));
        }
        self.rings.queue.notify();
        let used = self.wait_for(area).map_err(|e| Refused::new(e, None))?;
        self.complete(used)
    }

    /// Writes the header of request area `area` and poisons its status
    /// byte; returns the device addresses of both.
    fn prepare_area(
        &mut self,
        area: u16,
        req_type: u32,
        sector: u64,
    ) -> Result<(dma_core::DmaAddr, dma_core::DmaAddr), DriverError> {
        let at = usize::from(area) * REQ_AREA;
        let areas = &mut self.rings.areas;
        areas.copy_in(at, BlkReqHeader::new(req_type, sector).as_bytes())?;
        areas.write(at + STATUS_AT, STATUS_UNWRITTEN)?;
        Ok((areas.dma_addr_of(at)?, areas.dma_addr_of(at + STATUS_AT)?))
    }

    /// Polls until the request in `area` is used; requests used meanwhile
    /// that had timed out earlier are retired into `late`.
    fn wait_for(&mut self, area: u16) -> Result<Used<Request<B, P>>, DriverError> {
        self.wait.begin();
        let mut last_look = false;
        loop {
            match self.rings.queue.poll()? {
                Some(used) if used.buffers.area == area => return Ok(used),
                Some(stale) => {
                    self.stats.late += 1;
                    let (_, buffer) = self.check(stale);
                    self.late.extend(buffer);
                    continue;
                }
                None if last_look => {
                    return Err(
                        if self
                            .transport
                            .status()
                            .contains(DeviceStatus::DEVICE_NEEDS_RESET)
                        {
                            DriverError::DeviceNeedsReset
                        } else {
                            DriverError::Timeout("a virtio-blk request")
                        },
                    );
                }
                None => last_look = !self.wait.pause(),
            }
        }
    }

    /// Checks a used request (the status byte and used length are
    /// device-written: untrusted), frees its area and unmaps its data.
    fn check(&mut self, used: Used<Request<B, P>>) -> (Result<(), DriverError>, Option<B>) {
        let req = used.buffers;
        let at = usize::from(req.area) * REQ_AREA + STATUS_AT;
        let status = self.rings.areas.read(at);
        self.rings.free_areas.push(req.area);
        let result = match status {
            Err(e) => Err(e.into()),
            Ok(_) if used.len == 0 => Err(DriverError::DeviceProtocol(
                "virtio-blk used length 0: the status byte was not written",
            )),
            Ok(blk_status::OK) if req.read && used.len != req.writable => {
                Err(DriverError::DeviceProtocol(
                    "virtio-blk read completed OK with a used length other than the data and status bytes",
                ))
            }
            Ok(blk_status::OK) => Ok(()),
            Ok(s @ (blk_status::IOERR | blk_status::UNSUPP)) => Err(DriverError::BlockStatus(s)),
            Ok(_) => Err(DriverError::DeviceProtocol(
                "virtio-blk status byte other than OK, IOERR or UNSUPP",
            )),
        };
        match req.data.unmap() {
            Ok(buffer) => (result, buffer),
            Err(e) => (result.and(Err(e)), None),
        }
    }

    fn complete(&mut self, used: Used<Request<B, P>>) -> Result<Option<B>, Refused<B>> {
        let req_type_read = used.buffers.read;
        let is_flush = matches!(used.buffers.data, Data::None);
        let (result, buffer) = self.check(used);
        match result {
            Ok(()) => {
                if is_flush {
                    self.stats.flushes += 1;
                } else if req_type_read {
                    self.stats.reads += 1;
                } else {
                    self.stats.writes += 1;
                }
                Ok(buffer)
            }
            Err(e) => {
                self.stats.errors += 1;
                Err(Refused::new(e, buffer))
            }
        }
    }

    /// Resets the device (it stops all DMA), takes every buffer back
    /// from the queue (requests that timed out or were cut off by a
    /// broken queue), unmaps them and returns them with those of late
    /// completions. The driver is unusable afterwards.
    ///
    /// # Errors
    ///
    /// [`DriverError::Timeout`] when the device does not finish its reset:
    /// then nothing it may still write to is freed (the queue memory and
    /// the buffers in flight are leaked on drop).
    pub fn shutdown(mut self) -> Result<Vec<B>, DriverError> {
        self.transport.reset(&mut self.wait)?;
        self.stopped = true;
        let mut buffers = core::mem::take(&mut self.late);
        for req in self.rings.queue.reset() {
            self.rings.free_areas.push(req.area);
            if let Ok(Some(b)) = req.data.unmap() {
                buffers.push(b);
            }
        }
        Ok(buffers)
    }
}

/// Appends a mapping's device segments as virtqueue segments.
fn push_segments(
    out: &mut Vec<Segment>,
    segments: impl Iterator<Item = dma_core::DmaSegment>,
) -> Result<(), DriverError> {
    for s in segments {
        let len = u32::try_from(s.len).map_err(|_| {
            DriverError::InvalidArgument("a DMA segment longer than a descriptor holds")
        })?;
        out.push(Segment::new(s.addr, len));
    }
    Ok(())
}

impl<T, P, W, B> Drop for VirtioBlk<T, P, W, B>
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    /// Resets the device before its rings and buffers are freed; if it
    /// does not finish resetting, they are leaked instead, as it may still
    /// write to them.
    fn drop(&mut self) {
        if self.stopped || self.transport.reset(&mut self.wait).is_ok() {
            // SAFETY: `rings` is dropped only here, once, and never used
            // after: `drop` is the last use of `self`.
            unsafe { ManuallyDrop::drop(&mut self.rings) };
        }
    }
}
