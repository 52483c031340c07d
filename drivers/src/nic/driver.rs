//! The polled NIC driver; documented in the parent module.

use dma_core::{
    Coherent, DmaAlloc, DmaBuf, DmaBuffer, DmaMap, FromDevice, SgEntry, StreamingMapping, ToDevice,
};
use dma_ring::nic::{NicRxRing, NicTxRing, RxStatus, TxSegment, TxStatus, DESC_SIZE};
use dma_ring::{slot_vec, Slot};
use dma_sg::{MappedSgTable, SgLimits};
use tock_registers::interfaces::Writeable;
use tock_registers::registers::ReadWrite;

use alloc::vec::Vec;

use super::spec::{
    rctl_buffer_size, NicRegisters, RCTL_BAM, RCTL_EN, RCTL_LBM_MAC, RCTL_SECRC, TCTL_EN, TCTL_PSP,
};
use crate::wait::poll_driver_until;
use crate::{DriverError, Refused, Wait};

/// The longest frame the driver sends (a 9 KiB jumbo frame fits).
pub const MAX_FRAME: usize = 16 * 1024;

/// Ring and buffer sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicDriverConfig {
    /// RX descriptors (the ring holds one fewer buffers).
    pub rx_entries: u32,
    /// TX descriptors.
    pub tx_entries: u32,
    /// Bytes per RX buffer, told to the NIC as RCTL.BSIZE: 256, 512,
    /// 1024, 2048, 4096, 8192 or 16384 (the sizes the 8254x can be told).
    pub rx_buffer_size: u16,
    /// MAC loopback (RCTL.LBM): the NIC receives what it sends and sends
    /// nothing out; a self-test of both rings with no peer.
    pub loopback: bool,
}

impl Default for NicDriverConfig {
    fn default() -> Self {
        Self {
            rx_entries: 32,
            tx_entries: 32,
            rx_buffer_size: 2048,
            loopback: false,
        }
    }
}

/// The driver's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicDriverStats {
    /// Frames sent successfully.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames whose transmission failed.
    pub tx_errors: u64,
    /// Frames received whole.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Descriptors that carried a receive error (their frame is dropped).
    pub rx_errors: u64,
    /// Rings reset by [`NicDriver::recover`].
    pub recoveries: u64,
}

/// A sent frame: its buffer back, with the outcome.
#[derive(Debug)]
pub struct TxCompletion<B> {
    /// `Ok`, or the NIC's error status (excess or late collision,
    /// underrun), or an unmap error.
    pub result: Result<(), DriverError>,
    /// The frame's buffer (`None` only if the platform failed to unmap it).
    pub buffer: Option<B>,
}

type RxBuffer<P> = StreamingMapping<DmaBuf, FromDevice, P>;
type TxFrame<P, B> = MappedSgTable<B, ToDevice, P, Vec<SgEntry>>;
type Ring<P> = Coherent<[u64], P>;
type RxRing<'a, P> = NicRxRing<Ring<P>, &'a ReadWrite<u32>, RxBuffer<P>, Vec<Slot<RxBuffer<P>>>>;
type TxRing<'a, P, B> =
    NicTxRing<Ring<P>, &'a ReadWrite<u32>, TxFrame<P, B>, Vec<Slot<TxFrame<P, B>>>>;

/// A polled NIC driver over platform `P`, waiting with `W`, sending
/// frames of buffer type `B`.
///
/// See the [module documentation](crate::nic).
pub struct NicDriver<'a, P, W, B = DmaBuf>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    regs: &'a NicRegisters,
    platform: P,
    wait: W,
    config: NicDriverConfig,
    /// RCTL while receiving: enabled, broadcasts accepted, CRC stripped
    /// (the reported length is the frame's), the buffer size, loopback.
    rctl: u32,
    tx_limits: SgLimits,
    rx: RxRing<'a, P>,
    tx: TxRing<'a, P, B>,
    /// Mapped RX buffers not currently posted.
    spare: Vec<RxBuffer<P>>,
    /// The frame being reassembled across descriptors.
    partial: Vec<u8>,
    /// A receive error seen in the frame being reassembled.
    partial_error: Option<DriverError>,
    stats: NicDriverStats,
}

impl<'a, P, W, B> NicDriver<'a, P, W, B>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    /// Allocates and programs both rings, enables transmit and receive, and
    /// fills the RX ring with mapped buffers.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for a ring size outside 2..=4096 or
    /// an RX buffer size RCTL.BSIZE cannot express; allocation, mapping
    /// and ring errors.
    pub fn start(
        regs: &'a NicRegisters,
        platform: P,
        wait: W,
        config: NicDriverConfig,
    ) -> Result<Self, DriverError> {
        let sizes = 2..=4096;
        if !sizes.contains(&config.rx_entries) || !sizes.contains(&config.tx_entries) {
            return Err(DriverError::InvalidArgument(
                "rings of 2..=4096 descriptors",
            ));
        }
        let rctl_size =
            rctl_buffer_size(config.rx_buffer_size).ok_or(DriverError::InvalidArgument(
                "an RX buffer size of 256, 512, 1024, 2048, 4096, 8192 or 16384 bytes (RCTL.BSIZE)",
            ))?;
        // Quiet the NIC while its rings are being (re)programmed.
        regs.rctl.set(0);
        regs.tctl.set(0);
        let ring = |entries: u32| {
            Coherent::<[u64], P>::zeroed_slice(platform.clone(), entries as usize * DESC_SIZE / 8)
        };
        let rx = NicRxRing::new(
            ring(config.rx_entries)?,
            config.rx_entries,
            &regs.rx.tail,
            slot_vec(config.rx_entries as usize),
        )?;
        let tx = NicTxRing::new(
            ring(config.tx_entries)?,
            config.tx_entries,
            &regs.tx.tail,
            slot_vec(config.tx_entries as usize),
        )?;
        let tx_limits =
            SgLimits::new(4096, platform.constraints())?.with_max_segment(MAX_FRAME as u64)?;
        let mut driver = Self {
            regs,
            platform,
            wait,
            config,
            rctl: RCTL_EN
                | RCTL_BAM
                | RCTL_SECRC
                | rctl_size
                | if config.loopback { RCTL_LBM_MAC } else { 0 },
            tx_limits,
            rx,
            tx,
            spare: Vec::new(),
            partial: Vec::new(),
            partial_error: None,
            stats: NicDriverStats::default(),
        };
        for _ in 1..config.rx_entries {
            let buf = DmaBuf::for_device(&driver.platform, config.rx_buffer_size.into())?;
            let map = StreamingMapping::map(driver.platform.clone(), buf).map_err(|e| e.error)?;
            driver.spare.push(map);
        }
        driver.program();
        Ok(driver)
    }

    /// Points the NIC at the rings (heads and tails 0: empty), enables it,
    /// and posts every spare RX buffer.
    fn program(&mut self) {
        let r = self.regs;
        r.rx.program(self.rx.dma_addr(), self.rx.bytes());
        r.tx.program(self.tx.dma_addr(), self.tx.bytes());
        // Short frames padded by the NIC, as the 8254x's PSP does.
        r.tctl.set(TCTL_EN | TCTL_PSP);
        r.rctl.set(self.rctl);
        self.post_spares();
    }

    /// Posts spare RX buffers while the ring has room; one tail write.
    fn post_spares(&mut self) {
        let len = self.config.rx_buffer_size;
        while let Some(buf) = self.spare.pop() {
            if let Err(rejected) = self.rx.post(buf.dma_addr(), len, buf) {
                self.spare.push(rejected.buffers);
                break;
            }
        }
        self.rx.ring_doorbell();
    }

    /// The counters.
    pub fn stats(&self) -> NicDriverStats {
        self.stats
    }

    /// The waiter, mutably (with `dma-sim-presets`' `Stepping`: the
    /// simulated NIC, to feed it frames or faults).
    pub fn wait_mut(&mut self) -> &mut W {
        &mut self.wait
    }

    /// Frames queued for transmission and not yet reaped.
    pub fn tx_in_flight(&self) -> u32 {
        self.config.tx_entries - 1 - self.tx.free()
    }

    // ---- transmit ----------------------------------------------------

    /// Maps `frame` and queues it; the NIC learns of it at
    /// [`kick`](Self::kick).
    ///
    /// # Errors
    ///
    /// A [`Refused`] with the frame back: empty or longer than
    /// [`MAX_FRAME`], a mapping the platform refuses, more segments than
    /// the ring holds, the ring full (reap with [`poll_sent`](Self::poll_sent))
    /// or broken ([`recover`](Self::recover)).
    pub fn queue_send(&mut self, frame: B) -> Result<(), Refused<B>> {
        let data =
            MappedSgTable::<B, ToDevice, P, _>::map(self.platform.clone(), frame, self.tx_limits)
                .map_err(|e| Refused::new(e.error, Some(e.buffer)))?;
        if data.total_len() as usize > MAX_FRAME {
            let e = DriverError::InvalidArgument("frame longer than MAX_FRAME");
            return Err(Refused::new(e, data.unmap().ok()));
        }
        // Each segment is at most MAX_FRAME (the limits' maximum segment),
        // which fits the descriptor's 16-bit length.
        let segments: Vec<TxSegment> = data
            .segments()
            .map(|s| TxSegment {
                addr: s.addr,
                len: s.len as u16,
            })
            .collect();
        self.tx
            .transmit(&segments, data)
            .map_err(|r| Refused::new(r.error, r.buffers.unmap().ok()))
    }

    /// Writes the TX tail for everything queued since the last kick.
    pub fn kick(&mut self) -> bool {
        self.tx.ring_doorbell()
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

    /// Reaps the oldest sent frame if the NIC marked it done.
    ///
    /// # Errors
    ///
    /// [`DriverError::Ring`] when the NIC wrote DD on a descriptor it was
    /// never given: the ring is broken until [`recover`](Self::recover).
    pub fn poll_sent(&mut self) -> Result<Option<TxCompletion<B>>, DriverError> {
        let Some(done) = self.tx.poll()? else {
            return Ok(None);
        };
        let len = done.buffers.total_len();
        let failed = TxStatus::EC | TxStatus::LC | TxStatus::TU;
        let mut result = if done.status.intersects(failed) {
            self.stats.tx_errors += 1;
            Err(DriverError::Transmit(done.status))
        } else {
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += len;
            Ok(())
        };
        let buffer = match done.buffers.unmap() {
            Ok(b) => Some(b),
            Err(e) => {
                result = result.and(Err(e.into()));
                None
            }
        };
        Ok(Some(TxCompletion { result, buffer }))
    }

    /// Waits for the next sent frame.
    ///
    /// # Errors
    ///
    /// As for [`poll_sent`](Self::poll_sent); [`DriverError::Timeout`] if
    /// the NIC never writes DD back; [`DriverError::InvalidArgument`] when
    /// nothing is in flight.
    pub fn wait_sent(&mut self) -> Result<TxCompletion<B>, DriverError> {
        if self.tx_in_flight() == 0 {
            return Err(DriverError::InvalidArgument("no frame in flight"));
        }
        poll_driver_until(
            self,
            |d| &mut d.wait,
            Self::poll_sent,
            |_| DriverError::Timeout("a transmit completion"),
        )
    }

    // ---- receive -----------------------------------------------------

    /// Takes one filled RX buffer back: syncs the bytes the NIC wrote for
    /// the CPU, copies them out, hands them back to the NIC and reposts.
    fn take_rx(&mut self) -> Result<Option<bool>, DriverError> {
        let Some(rx) = self.rx.poll()? else {
            return Ok(None);
        };
        let mut buf = rx.buffer;
        let len = usize::from(rx.len);
        let copied = (|| {
            if len > 0 {
                buf.sync_range_for_cpu(0, len)?;
                let start = self.partial.len();
                self.partial.resize(start + len, 0);
                buf.read(0, &mut self.partial[start..])?;
                buf.sync_range_for_device(0, len)?;
            }
            Ok::<(), dma_core::Error>(())
        })();
        // Reposted even after an error: the mapping is still good.
        if let Err(rejected) = self
            .rx
            .post(buf.dma_addr(), self.config.rx_buffer_size, buf)
        {
            self.spare.push(rejected.buffers);
        }
        copied?;
        if !rx.errors.is_empty() {
            self.stats.rx_errors += 1;
            self.partial_error = Some(DriverError::Receive(rx.errors));
        }
        Ok(Some(rx.status.contains(RxStatus::EOP)))
    }

    /// Returns the next whole received frame, if the NIC has delivered
    /// one; recycles the buffers it used (one tail write per call).
    ///
    /// # Errors
    ///
    /// [`DriverError::Receive`] for a frame the NIC marked bad (it is
    /// dropped; its buffers are recycled); [`DriverError::Ring`] when the
    /// NIC wrote an impossible descriptor (the ring is broken until
    /// [`recover`](Self::recover)); sync errors.
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>, DriverError> {
        let result = loop {
            match self.take_rx() {
                Ok(Some(true)) => {
                    let frame = core::mem::take(&mut self.partial);
                    break match self.partial_error.take() {
                        Some(e) => Err(e),
                        None => {
                            self.stats.rx_frames += 1;
                            self.stats.rx_bytes += frame.len() as u64;
                            Ok(Some(frame))
                        }
                    };
                }
                Ok(Some(false)) => continue,
                Ok(None) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        self.rx.ring_doorbell();
        result
    }

    /// Waits for the next whole frame.
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
            |_| DriverError::Timeout("a received frame"),
        )
    }

    /// After a broken ring or a lost completion: stops the NIC, takes every
    /// posted buffer back (the frames in flight are returned, unmapped; RX
    /// buffers are kept), reprograms the rings and starts again.
    pub fn recover(&mut self) -> Vec<B> {
        self.stop();
        self.stats.recoveries += 1;
        let frames: Vec<_> = self.tx.reset().collect();
        let rx: Vec<_> = self.rx.reset().collect();
        self.spare.extend(rx);
        self.partial.clear();
        self.partial_error = None;
        self.program();
        frames.into_iter().filter_map(|f| f.unmap().ok()).collect()
    }

    /// Disables receive and transmit: the model stops at once (a real
    /// 8254x finishes the frame in progress).
    fn stop(&mut self) {
        self.regs.rctl.set(0);
        self.regs.tctl.set(0);
    }
}

impl<P, W, B> Drop for NicDriver<'_, P, W, B>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    B: DmaBuffer,
{
    /// Stops the NIC before the rings and buffers go back to the platform.
    fn drop(&mut self) {
        self.stop();
    }
}
