//! The virtio-net driver (§5.1); documented in the parent module.

use alloc::vec::Vec;
use core::mem::ManuallyDrop;

use dma_core::{
    Coherent, DmaAlloc, DmaBuf, DmaBuffer, DmaMap, FromDevice, SgEntry, StreamingMapping, ToDevice,
};
use dma_ring::virtio::Segment;
use dma_sg::{MappedSgTable, SgLimits};

use super::queue::Virtqueue;
use super::spec::{
    device_id, net_features, DeviceStatus, Features, NetConfig, NET_HEADER_SIZE, NET_MIN_RX_BUFFER,
    NET_RECEIVEQ, NET_S_LINK_UP, NET_TRANSMITQ,
};
use super::transport::{driver_ok, negotiate, Transport, VirtioOptions};
use crate::wait::poll_driver_until;
use crate::{DriverError, Refused, Wait};

/// The longest frame [`VirtioNet`] sends (without segmentation offload,
/// a frame goes on the wire as given; a 9 KiB jumbo frame fits).
pub const MAX_FRAME: usize = 16 * 1024;

/// Descriptors per transmit indirect table: the header and the pages of
/// a [`MAX_FRAME`] frame that starts mid-page.
const NET_INDIRECT_ENTRIES: u16 = 1 + (MAX_FRAME / SG_PAGE) as u16 + 1;
/// Page size frames are cut into for the scatter list.
const SG_PAGE: usize = 4096;

/// How the network driver is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioNetConfig {
    /// Negotiation and queue sizes.
    pub options: VirtioOptions,
    /// Bytes per receive buffer, header included: at least
    /// [`NET_MIN_RX_BUFFER`] (1526), as §5.1.6.3.1 asks without
    /// `MRG_RXBUF`.
    pub rx_buffer_size: usize,
}

impl Default for VirtioNetConfig {
    fn default() -> Self {
        Self {
            options: VirtioOptions::default(),
            rx_buffer_size: 2048,
        }
    }
}

/// The driver's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetStats {
    /// Frames sent (used by the device).
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Receive buffers the device returned with an impossible length
    /// (the buffer is reposted, the contents dropped).
    pub rx_errors: u64,
}

type RxBuffer<P> = StreamingMapping<DmaBuf, FromDevice, P>;
type TxFrame<B, P> = MappedSgTable<B, ToDevice, P, Vec<SgEntry>>;

/// The queues and DMA memory, dropped only once the device is stopped.
struct Rings<B: DmaBuffer, P: DmaMap + DmaAlloc, N: dma_ring::Doorbell> {
    rx: Virtqueue<P, N, RxBuffer<P>>,
    tx: Virtqueue<P, N, TxFrame<B, P>>,
    /// The transmit header every frame is sent behind: all zero (no
    /// checksum or segmentation offload), read by the device only.
    tx_header: Coherent<[u8], P>,
}

/// A polled virtio-net driver (one queue pair) over transport `T`,
/// platform `P`, waiting with `W`, sending frames in buffers of type `B`.
///
/// See the [module documentation](crate::virtio).
pub struct VirtioNet<T, P, W, B = DmaBuf>
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
    mac: Option<[u8; 6]>,
    rx_buffer_size: usize,
    tx_limits: SgLimits,
    rings: ManuallyDrop<Rings<B, P, T::Notify>>,
    /// Mapped receive buffers not posted (the queue was full).
    spare: Vec<RxBuffer<P>>,
    stopped: bool,
    stats: VirtioNetStats,
}

impl<T, P, W, B> VirtioNet<T, P, W, B>
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    /// Brings the device up (§3.1.1, §5.1.5): negotiates (`VERSION_1`,
    /// `ACCESS_PLATFORM`, queue layout and `EVENT_IDX` per the options,
    /// `MAC` and `STATUS` when offered; never `MRG_RXBUF` or offloads),
    /// reads the MAC address, sets up the receive and transmit queues,
    /// fills the receive queue with mapped buffers and sets `DRIVER_OK`.
    /// On an error after the reset the device is left `FAILED`.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for receive buffers below 1526
    /// bytes; otherwise as [`VirtioBlk::start`](super::VirtioBlk::start).
    pub fn start(
        transport: T,
        platform: P,
        mut wait: W,
        config: VirtioNetConfig,
    ) -> Result<Self, DriverError> {
        if config.rx_buffer_size < NET_MIN_RX_BUFFER
            || config.rx_buffer_size > usize::from(u16::MAX)
        {
            return Err(DriverError::InvalidArgument(
                "virtio-net receive buffers of 1526 to 65535 bytes",
            ));
        }
        let own = net_features::MAC | net_features::STATUS;
        let features = negotiate(&transport, device_id::NET, own, &config.options, &mut wait)?;
        let set_up = Self::set_up(&transport, &platform, features, &config);
        let (rings, spare, mac, tx_limits) = match set_up {
            Ok(parts) => parts,
            Err(e) => {
                // No DRIVER_OK, no notification: the device has not
                // touched the queues dropped here.
                transport.fail();
                return Err(e);
            }
        };
        let mut net = Self {
            transport,
            platform,
            wait,
            features,
            mac,
            rx_buffer_size: config.rx_buffer_size,
            tx_limits,
            rings: ManuallyDrop::new(rings),
            spare,
            stopped: false,
            stats: VirtioNetStats::default(),
        };
        net.post_spares();
        Ok(net)
    }

    #[allow(clippy::type_complexity)]
    fn set_up(
        transport: &T,
        platform: &P,
        features: Features,
        config: &VirtioNetConfig,
    ) -> Result<
        (
            Rings<B, P, T::Notify>,
            Vec<RxBuffer<P>>,
            Option<[u8; 6]>,
            SgLimits,
        ),
        DriverError,
    > {
        let mac = if features.contains(net_features::MAC) {
            if transport.config_size() < core::mem::offset_of!(NetConfig, status) {
                return Err(DriverError::Unsupported(
                    "a virtio-net configuration space holding the MAC address",
                ));
            }
            Some(transport.read_config(|t| {
                core::array::from_fn(|i| {
                    t.read_config_u8(core::mem::offset_of!(NetConfig, mac) + i)
                })
            })?)
        } else {
            None
        };
        let size = config.options.queue_size;
        // One buffer per receive request: no indirect tables.
        let mut rx = Virtqueue::new(
            transport,
            NET_RECEIVEQ,
            platform.clone(),
            features,
            size,
            1,
            0,
        )?;
        // Header and at least one frame segment; with indirect tables, a
        // whole MAX_FRAME frame behind its header takes one entry.
        let mut tx = Virtqueue::new(
            transport,
            NET_TRANSMITQ,
            platform.clone(),
            features,
            size,
            2,
            NET_INDIRECT_ENTRIES,
        )?;
        rx.set_interrupts(false);
        tx.set_interrupts(false);
        let tx_header = Coherent::<[u8], P>::zeroed_slice(platform.clone(), NET_HEADER_SIZE)?;
        let mut spare = Vec::with_capacity(rx.size().into());
        for _ in 0..rx.size() {
            let buf = DmaBuf::for_device(platform, config.rx_buffer_size)?;
            spare.push(StreamingMapping::map(platform.clone(), buf).map_err(|e| e.error)?);
        }
        let tx_limits =
            SgLimits::new(SG_PAGE, platform.constraints())?.with_max_segment(MAX_FRAME as u64)?;
        driver_ok(transport)?;
        Ok((Rings { rx, tx, tx_header }, spare, mac, tx_limits))
    }

    /// Posts spare receive buffers while the queue takes them; one
    /// notification.
    fn post_spares(&mut self) {
        let len = self.rx_buffer_size as u32;
        while let Some(buf) = self.spare.pop() {
            let seg = [Segment::new(buf.dma_addr(), len)];
            if let Err(rejected) = self.rings.rx.add(&[], &seg, buf) {
                self.spare.push(rejected.buffers);
                break;
            }
        }
        self.rings.rx.notify();
    }

    /// The MAC address from the configuration space (`None` when the
    /// device does not offer `MAC`).
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.mac
    }

    /// Whether the link is up: the configuration's `status` with
    /// `STATUS`, else always (§5.1.4).
    ///
    /// # Errors
    ///
    /// [`DriverError::Timeout`] when the configuration keeps changing.
    pub fn link_up(&self) -> Result<bool, DriverError> {
        if !self.features.contains(net_features::STATUS) {
            return Ok(true);
        }
        let status = self
            .transport
            .read_config(|t| t.read_config_u16(core::mem::offset_of!(NetConfig, status)))?;
        Ok(status & NET_S_LINK_UP != 0)
    }

    /// The features negotiated.
    pub fn features(&self) -> Features {
        self.features
    }

    /// The counters.
    pub fn stats(&self) -> VirtioNetStats {
        self.stats
    }

    /// The waiter, mutably (with a simulator's stepping waiter: the
    /// simulated device, to feed it frames).
    pub fn wait_mut(&mut self) -> &mut W {
        &mut self.wait
    }

    /// Frames queued for transmission and not yet reaped.
    pub fn tx_in_flight(&self) -> u32 {
        self.rings.tx.in_flight()
    }

    // ---- transmit ----------------------------------------------------

    /// Maps `frame` (cleaned for the device) and queues it behind the
    /// 12-byte header; the device learns of it at [`kick`](Self::kick).
    ///
    /// # Errors
    ///
    /// A [`Refused`] with the frame back: empty or longer than
    /// [`MAX_FRAME`], a mapping the platform refuses, more pieces than
    /// the queue holds, the queue full (reap with
    /// [`poll_sent`](Self::poll_sent)) or broken.
    pub fn queue_send(&mut self, frame: B) -> Result<(), Refused<B>> {
        let data = TxFrame::<B, P>::map(self.platform.clone(), frame, self.tx_limits)
            .map_err(|e| Refused::new(e.error, Some(e.buffer)))?;
        let len = data.total_len() as usize;
        if len == 0 || len > MAX_FRAME {
            let e = DriverError::InvalidArgument("a frame of 1 to MAX_FRAME bytes");
            return Err(Refused::new(e, data.unmap().ok()));
        }
        let header = match self.rings.tx_header.dma_addr_of(0) {
            Ok(a) => a,
            Err(e) => return Err(Refused::new(e, data.unmap().ok())),
        };
        let mut segments = Vec::with_capacity(data.segment_count() + 1);
        segments.push(Segment::new(header, NET_HEADER_SIZE as u32));
        // Each segment is at most MAX_FRAME (the limits' maximum).
        segments.extend(data.segments().map(|s| Segment::new(s.addr, s.len as u32)));
        self.rings
            .tx
            .add(&segments, &[], data)
            .map(drop)
            .map_err(|r| Refused::new(r.error, r.buffers.unmap().ok()))
    }

    /// Notifies the device of the frames queued since the last kick (if
    /// its event suppression asks for it).
    pub fn kick(&mut self) -> bool {
        self.rings.tx.notify()
    }

    /// [`queue_send`](Self::queue_send), then [`kick`](Self::kick).
    ///
    /// # Errors
    ///
    /// As for `queue_send`.
    pub fn send(&mut self, frame: B) -> Result<(), Refused<B>> {
        self.queue_send(frame)?;
        self.kick();
        Ok(())
    }

    /// Reaps the oldest sent frame if the device used it, and returns its
    /// buffer (unmapped).
    ///
    /// # Errors
    ///
    /// [`DriverError::Ring`] when the device returned a buffer it was not
    /// given, or wrote a length into a transmit buffer (the queue is then
    /// broken: [`shutdown`](Self::shutdown) returns the frames);
    /// an unmap error (the frame is then lost).
    pub fn poll_sent(&mut self) -> Result<Option<B>, DriverError> {
        let Some(used) = self.rings.tx.poll()? else {
            return Ok(None);
        };
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += used.buffers.total_len();
        Ok(Some(used.buffers.unmap()?))
    }

    /// Waits for the next sent frame.
    ///
    /// # Errors
    ///
    /// As for [`poll_sent`](Self::poll_sent); [`DriverError::Timeout`]
    /// when the device does not use it;
    /// [`DriverError::InvalidArgument`] when nothing is in flight.
    pub fn wait_sent(&mut self) -> Result<B, DriverError> {
        if self.tx_in_flight() == 0 {
            return Err(DriverError::InvalidArgument("no frame in flight"));
        }
        poll_driver_until(
            self,
            |d| &mut d.wait,
            Self::poll_sent,
            |d| d.stalled("a transmit completion"),
        )
    }

    // ---- receive -----------------------------------------------------

    /// Returns the next received frame (without its header), if the
    /// device delivered one; the buffer is handed back and reposted.
    ///
    /// # Errors
    ///
    /// [`DriverError::DeviceProtocol`] for a used length shorter than the
    /// header (the buffer is reposted, its contents dropped);
    /// [`DriverError::Ring`] when the device broke the queue; sync errors.
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>, DriverError> {
        let Some(used) = self.rings.rx.poll()? else {
            return Ok(None);
        };
        let mut buf = used.buffers;
        // The ring checked `len` against the buffer's length.
        let len = used.len as usize;
        let frame = if len < NET_HEADER_SIZE {
            self.stats.rx_errors += 1;
            Err(DriverError::DeviceProtocol(
                "virtio-net used length shorter than the 12-byte header",
            ))
        } else {
            (|| {
                buf.sync_range_for_cpu(0, len)?;
                let mut frame = alloc::vec![0u8; len - NET_HEADER_SIZE];
                buf.read(NET_HEADER_SIZE, &mut frame)?;
                buf.sync_range_for_device(0, len)?;
                Ok::<_, dma_core::Error>(frame)
            })()
            .map_err(DriverError::from)
        };
        // Reposted even after an error: the mapping is still good.
        self.spare.push(buf);
        self.post_spares();
        let frame = frame?;
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        Ok(Some(frame))
    }

    /// Waits for the next received frame.
    ///
    /// # Errors
    ///
    /// As for [`receive`](Self::receive); [`DriverError::Timeout`] when
    /// none comes.
    pub fn wait_frame(&mut self) -> Result<Vec<u8>, DriverError> {
        poll_driver_until(
            self,
            |d| &mut d.wait,
            Self::receive,
            |d| d.stalled("a received frame"),
        )
    }

    /// The error for a wait that gave up: the device's own report when it
    /// needs a reset, else a timeout.
    fn stalled(&self, what: &'static str) -> DriverError {
        if self
            .transport
            .status()
            .contains(DeviceStatus::DEVICE_NEEDS_RESET)
        {
            DriverError::DeviceNeedsReset
        } else {
            DriverError::Timeout(what)
        }
    }

    /// Resets the device (it stops all DMA), takes every buffer back and
    /// returns the frames that were still queued for transmission,
    /// unmapped. The receive buffers are unmapped and freed.
    ///
    /// # Errors
    ///
    /// [`DriverError::Timeout`] when the device does not finish its reset:
    /// then nothing it may still write to is freed.
    pub fn shutdown(mut self) -> Result<Vec<B>, DriverError> {
        self.transport.reset(&mut self.wait)?;
        self.stopped = true;
        let rx = self.rings.rx.reset();
        self.spare.extend(rx);
        Ok(self
            .rings
            .tx
            .reset()
            .into_iter()
            .filter_map(|f| f.unmap().ok())
            .collect())
    }
}

impl<T, P, W, B> Drop for VirtioNet<T, P, W, B>
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    /// Resets the device before its queues and buffers are freed; if it
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
