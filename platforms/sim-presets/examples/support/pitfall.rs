#![allow(dead_code)] // each includer uses part of this file
//! The classic DMA bug, on purpose: a missing `sync_for_device`.
//!
//! Not a public API: the demo and the tests include this file with
//! `#[path]`, so the buggy driver never ships in a library.
//!
//! [`CopyBreakTx`] is the transmit path many NIC drivers have for small
//! frames: rather than map every frame, it copies the frame into one of a
//! few buffers mapped once at start, and points a descriptor at it. The
//! CPU's copy lands in its cache. On a coherent (x86) machine the NIC
//! snoops it and everything works; on a non-coherent (Arm) one the NIC
//! reads RAM, which still holds the previous frame, unless the copy is
//! cleaned to RAM first with `sync_for_device`.
//!
//! The two variants differ in exactly that one line:
//! [`BuggyTx`] forgets it, [`FixedTx`] has it. On the sim's non-coherent
//! preset the detector reports the buggy one on every seed
//! (`ReportKind::DeviceReadUncleaned`,
//! naming the staging buffer and its first stale line), and the NIC sends
//! stale bytes; on the coherent preset the same binary passes silently,
//! which is how this bug ships.

use dma_core::{Coherent, DmaAlloc, DmaBuf, DmaMap, StreamingMapping, ToDevice};
use dma_drivers::nic::spec::{NicRegisters, TCTL_EN};
use dma_drivers::{DriverError, Wait};
use dma_ring::nic::{NicTxRing, TxSegment, TxStatus, DESC_SIZE};
use dma_ring::{slot_vec, Slot};
use tock_registers::interfaces::Writeable;
use tock_registers::registers::ReadWrite;

/// The copy-break transmit path with the missing sync.
pub type BuggyTx<'a, P, W> = CopyBreakTx<'a, P, W, false>;

/// The same transmit path, fixed.
pub type FixedTx<'a, P, W> = CopyBreakTx<'a, P, W, true>;

type Staging<P> = StreamingMapping<DmaBuf, ToDevice, P>;
type TxRing<'a, P> = NicTxRing<Coherent<[u64], P>, &'a ReadWrite<u32>, usize, Vec<Slot<usize>>>;

/// A transmit-only NIC driver that copies each frame into a pre-mapped
/// staging buffer; `SYNCS` says whether it remembers to hand the copy to
/// the device (see the [module documentation](self)).
pub struct CopyBreakTx<'a, P, W, const SYNCS: bool>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    regs: &'a NicRegisters,
    wait: W,
    tx: TxRing<'a, P>,
    staging: Vec<Staging<P>>,
    free: Vec<usize>,
}

impl<'a, P, W, const SYNCS: bool> CopyBreakTx<'a, P, W, SYNCS>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    /// Maps `buffers` staging buffers of `size` bytes, programs a TX ring
    /// with room for all of them, and enables transmit.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for no buffers, more than 4095, or
    /// a size of 0 or above 64 KiB; allocation and mapping errors.
    pub fn start(
        regs: &'a NicRegisters,
        platform: P,
        wait: W,
        buffers: usize,
        size: usize,
    ) -> Result<Self, DriverError> {
        if !(1..4096).contains(&buffers) || !(1..=usize::from(u16::MAX)).contains(&size) {
            return Err(DriverError::InvalidArgument(
                "1..4096 staging buffers of 1..=65535 bytes",
            ));
        }
        let entries = buffers as u32 + 1;
        regs.tctl.set(0);
        let mem =
            Coherent::<[u64], P>::zeroed_slice(platform.clone(), entries as usize * DESC_SIZE / 8)?;
        let tx = NicTxRing::new(mem, entries, &regs.tx.tail, slot_vec(entries as usize))?;
        let mut staging = Vec::with_capacity(buffers);
        for _ in 0..buffers {
            let buf = DmaBuf::for_device(&platform, size)?;
            staging.push(StreamingMapping::map(platform.clone(), buf).map_err(|e| e.error)?);
        }
        regs.tx.program(tx.dma_addr(), tx.bytes());
        regs.tctl.set(TCTL_EN);
        Ok(Self {
            regs,
            wait,
            tx,
            staging,
            free: (0..buffers).rev().collect(),
        })
    }

    /// Reaps sent frames, freeing their staging buffers.
    ///
    /// # Errors
    ///
    /// [`DriverError::Transmit`] for a failed frame (its buffer is freed
    /// all the same); ring errors for an impossible write-back.
    pub fn reap(&mut self) -> Result<usize, DriverError> {
        let mut n = 0;
        while let Some(done) = self.tx.poll()? {
            self.free.push(done.buffers);
            n += 1;
            if done
                .status
                .intersects(TxStatus::EC | TxStatus::LC | TxStatus::TU)
            {
                return Err(DriverError::Transmit(done.status));
            }
        }
        Ok(n)
    }

    /// Copies `frame` into a free staging buffer and transmits it.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for an empty frame or one longer
    /// than a staging buffer; a timeout waiting for a free buffer; ring
    /// errors.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), DriverError> {
        if frame.is_empty() || frame.len() > self.staging[0].len() {
            return Err(DriverError::InvalidArgument(
                "frame empty or longer than a staging buffer",
            ));
        }
        self.wait.begin();
        let index = loop {
            self.reap()?;
            if let Some(i) = self.free.pop() {
                break i;
            }
            if !self.wait.pause() {
                return Err(DriverError::Timeout("a free staging buffer"));
            }
        };
        let staging = &mut self.staging[index];
        staging.write(0, frame)?;
        if SYNCS {
            // The fix: clean the copy out of the CPU cache before the NIC
            // reads it. The buggy variant skips this line.
            staging.sync_range_for_device(0, frame.len())?;
        }
        let segment = TxSegment {
            addr: staging.dma_addr(),
            len: frame.len() as u16,
        };
        self.tx
            .transmit(&[segment], index)
            .map_err(|r| DriverError::Ring(r.error))?;
        self.tx.ring_doorbell();
        Ok(())
    }

    /// Waits until every frame sent has been reaped.
    ///
    /// # Errors
    ///
    /// As for [`reap`](Self::reap); a timeout.
    pub fn wait_idle(&mut self) -> Result<(), DriverError> {
        self.wait.begin();
        loop {
            self.reap()?;
            if self.free.len() == self.staging.len() {
                return Ok(());
            }
            if !self.wait.pause() {
                return Err(DriverError::Timeout("transmit completions"));
            }
        }
    }

    /// The waiter (with `Stepping`: the NIC).
    pub fn wait_mut(&mut self) -> &mut W {
        &mut self.wait
    }
}

impl<P, W, const SYNCS: bool> Drop for CopyBreakTx<'_, P, W, SYNCS>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    /// Stops transmit before the staging buffers are unmapped.
    fn drop(&mut self) {
        self.regs.tctl.set(0);
    }
}
