//! NIC receive and transmit rings with descriptor-done write-back.
//!
//! The driver owns the descriptors from the device's head up to the tail
//! register; it posts buffers at the tail and writes the tail register (the
//! doorbell), once per batch. The device processes descriptors from its
//! head, writes back status with the DD bit set, and advances its head
//! (8254x SDM §3.2.6 and §3.3.1). The driver reaps in order at its own
//! `next to clean` position by polling DD, never by reading the head
//! register, and refills RX buffers as it goes.
//!
//! One slot stays empty (head == tail means empty), so a ring of `n`
//! descriptors holds `n - 1` buffers; `n` may be any size from 2 (real
//! 8254x parts want multiples of 8).

mod layout;

pub use layout::{
    RxDesc, RxErrors, RxStatus, TxCommand, TxDesc, TxStatus, DESC_SIZE, STATUS_OFFSET,
};

use dma_core::DmaAddr;

use crate::memory::check_memory;
use crate::ring::RingCursor;
use crate::slots::{Drain, SlotStorage, SlotTable};
use crate::sync;
use crate::{Doorbell, Rejected, RingError, RingErrorKind, RingMemory};

/// Descriptor ring base alignment (8254x: 16 bytes; 128 is recommended).
pub const RING_ALIGN: u64 = 16;

/// The ring state both directions share.
struct Ring<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> {
    mem: M,
    tail: D,
    cursor: RingCursor,
    slots: SlotTable<T, S>,
    broken: bool,
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> Ring<M, D, T, S> {
    fn new(mem: M, size: u32, tail: D, slots: S) -> crate::Result<Self> {
        let cursor = RingCursor::new(size)?;
        check_memory(&mem, size as usize * DESC_SIZE, RING_ALIGN)?;
        let provided = slots.as_ref().len();
        if provided < size as usize {
            return Err(RingError::with(RingErrorKind::InvalidSize, provided as u64));
        }
        Ok(Self {
            mem,
            tail,
            cursor,
            slots: SlotTable::positional(slots, size)?,
            broken: false,
        })
    }

    fn ring_doorbell(&mut self) -> bool {
        match self.cursor.take_doorbell() {
            Some(tail) => {
                sync::before_doorbell();
                self.tail.ring(tail);
                true
            }
            None => false,
        }
    }

    /// The status word of descriptor `index`.
    fn flag(&self, index: u32) -> u16 {
        // SAFETY: index < size and the memory holds size descriptors.
        unsafe {
            self.mem
                .load_flag(index as usize * DESC_SIZE + STATUS_OFFSET)
        }
    }

    fn fail(&mut self, e: RingError) -> RingError {
        self.broken = true;
        e
    }

    fn reset(&mut self) -> Drain<'_, T> {
        for i in 0..self.cursor.size() as usize {
            // SAFETY: every descriptor below size is inside the memory.
            unsafe {
                self.mem.write_u64(i * DESC_SIZE, 0);
                self.mem.write_u32(i * DESC_SIZE + 8, 0);
                self.mem.store_flag(i * DESC_SIZE + STATUS_OFFSET, 0);
                self.mem.write_u16(i * DESC_SIZE + 14, 0);
            }
        }
        self.cursor.reset();
        self.broken = false;
        self.slots.drain()
    }
}

/// A received packet (or packet fragment): the buffer back, with what the
/// device wrote.
#[derive(Debug)]
pub struct Received<T> {
    /// The buffer given to [`NicRxRing::post`].
    pub buffer: T,
    /// Bytes written, at most the posted length.
    pub len: u16,
    /// Status bits (DD set).
    pub status: RxStatus,
    /// Error bits.
    pub errors: RxErrors,
    /// Packet checksum.
    pub checksum: u16,
}

/// A receive ring: post empty buffers, reap filled ones.
pub struct NicRxRing<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> {
    ring: Ring<M, D, T, S>,
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> NicRxRing<M, D, T, S> {
    /// A ring of `size` descriptors in `mem` (zeroed, 16-byte aligned for
    /// the device, `size * 16` bytes), its tail register `tail`, and at
    /// least `size` slots.
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize),
    /// [`BadMemory`](RingErrorKind::BadMemory).
    pub fn new(mem: M, size: u32, tail: D, slots: S) -> crate::Result<Self> {
        Ok(Self {
            ring: Ring::new(mem, size, tail, slots)?,
        })
    }

    /// The ring's device address (for `RDBAL`/`RDBAH`).
    pub fn dma_addr(&self) -> DmaAddr {
        self.ring.mem.dma_addr()
    }

    /// The ring's size in bytes (for `RDLEN`).
    pub fn bytes(&self) -> u32 {
        self.ring.cursor.size() * DESC_SIZE as u32
    }

    /// The ring memory.
    pub fn memory(&self) -> &M {
        &self.ring.mem
    }

    /// Buffers posted and not yet reaped.
    pub fn posted(&self) -> u32 {
        self.ring.cursor.len()
    }

    /// Whether a device error broke the ring.
    pub fn is_broken(&self) -> bool {
        self.ring.broken
    }

    /// Posts an empty buffer of `len` bytes at `addr` and takes ownership of
    /// `buffer` until the device fills it. The device learns of it at the
    /// next [`ring_doorbell`](Self::ring_doorbell).
    ///
    /// # Errors
    ///
    /// [`Full`](RingErrorKind::Full), [`Broken`](RingErrorKind::Broken), or
    /// [`BadRequest`](RingErrorKind::BadRequest) for `len == 0`; the buffer
    /// comes back.
    pub fn post(&mut self, addr: DmaAddr, len: u16, buffer: T) -> Result<(), Rejected<T>> {
        let ring = &mut self.ring;
        if ring.broken {
            return Err(Rejected::new(RingErrorKind::Broken, buffer));
        }
        if len == 0 {
            return Err(Rejected::new(RingErrorKind::BadRequest, buffer));
        }
        if let Err(kind) = ring.slots.check_reclaimed() {
            return Err(Rejected::new(kind, buffer));
        }
        let Some(index) = ring.cursor.push() else {
            return Err(Rejected::new(RingErrorKind::Full, buffer));
        };
        let base = index as usize * DESC_SIZE;
        // SAFETY: index < size; the memory holds size descriptors.
        unsafe {
            ring.mem.write_u64(base, addr.as_u64());
            ring.mem.write_u32(base + 8, 0);
            ring.mem.write_u16(base + 14, 0);
            ring.mem.store_flag(base + STATUS_OFFSET, 0);
        }
        ring.slots.put_at(index as u16, buffer, len.into(), 1, 0);
        Ok(())
    }

    /// Posts buffers from `next` while there is room and it yields some,
    /// then rings the doorbell once. Returns how many were posted.
    pub fn refill(&mut self, mut next: impl FnMut() -> Option<(DmaAddr, u16, T)>) -> u32 {
        let mut n = 0;
        while !self.ring.broken && !self.ring.cursor.is_full() {
            let Some((addr, len, buffer)) = next() else {
                break;
            };
            if self.post(addr, len, buffer).is_err() {
                break;
            }
            n += 1;
        }
        self.ring_doorbell();
        n
    }

    /// Writes the tail register if buffers were posted since the last time.
    pub fn ring_doorbell(&mut self) -> bool {
        self.ring.ring_doorbell()
    }

    /// Reaps the next filled buffer, if the device marked it done.
    ///
    /// # Errors
    ///
    /// [`UnexpectedCompletion`](RingErrorKind::UnexpectedCompletion) for DD
    /// on a descriptor the device was not given,
    /// [`LengthTooLarge`](RingErrorKind::LengthTooLarge) for a length beyond
    /// the posted buffer; the ring is broken then, and
    /// [`Broken`](RingErrorKind::Broken) after.
    pub fn poll(&mut self) -> crate::Result<Option<Received<T>>> {
        let ring = &mut self.ring;
        if ring.broken {
            return Err(RingError::new(RingErrorKind::Broken));
        }
        if ring.cursor.is_empty() {
            return Ok(None);
        }
        let head = ring.cursor.head();
        let word = ring.flag(head);
        let status = RxStatus::from_bits_retain(word as u8);
        if !status.contains(RxStatus::DD) {
            return Ok(None);
        }
        if ring.cursor.span(head, ring.cursor.announced()) == 0 {
            return Err(ring.fail(RingError::with(
                RingErrorKind::UnexpectedCompletion,
                head.into(),
            )));
        }
        sync::after_completion_flag();
        let base = head as usize * DESC_SIZE;
        // SAFETY: inside descriptor `head`, aligned.
        let (len, checksum) =
            unsafe { (ring.mem.read_u16(base + 8), ring.mem.read_u16(base + 10)) };
        let Some(posted) = ring.slots.peek_at(head as u16).map(|p| p.posted) else {
            return Err(ring.fail(RingError::with(RingErrorKind::NotInFlight, head.into())));
        };
        if u32::from(len) > posted {
            return Err(ring.fail(RingError::with(RingErrorKind::LengthTooLarge, len.into())));
        }
        let Some(taken) = ring.slots.take_at(head as u16) else {
            return Err(ring.fail(RingError::with(RingErrorKind::NotInFlight, head.into())));
        };
        ring.cursor.consume(1)?;
        Ok(Some(Received {
            buffer: taken.value,
            len,
            status,
            errors: RxErrors::from_bits_retain((word >> 8) as u8),
            checksum,
        }))
    }

    /// After a device reset: empties the ring and hands back every posted
    /// buffer once.
    pub fn reset(&mut self) -> Drain<'_, T> {
        self.ring.reset()
    }
}

/// One buffer of a packet to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxSegment {
    /// Where the device reads it.
    pub addr: DmaAddr,
    /// Its length.
    pub len: u16,
}

/// A sent packet's buffers, back.
#[derive(Debug)]
pub struct Transmitted<T> {
    /// The buffers given to [`NicTxRing::transmit`].
    pub buffers: T,
    /// Status written back (DD set; EC, LC, TU report failures).
    pub status: TxStatus,
}

/// A transmit ring: queue packets, reap their buffers when sent.
pub struct NicTxRing<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> {
    ring: Ring<M, D, T, S>,
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> NicTxRing<M, D, T, S> {
    /// As [`NicRxRing::new`].
    ///
    /// # Errors
    ///
    /// As for [`NicRxRing::new`].
    pub fn new(mem: M, size: u32, tail: D, slots: S) -> crate::Result<Self> {
        Ok(Self {
            ring: Ring::new(mem, size, tail, slots)?,
        })
    }

    /// The ring's device address (for `TDBAL`/`TDBAH`).
    pub fn dma_addr(&self) -> DmaAddr {
        self.ring.mem.dma_addr()
    }

    /// The ring's size in bytes (for `TDLEN`).
    pub fn bytes(&self) -> u32 {
        self.ring.cursor.size() * DESC_SIZE as u32
    }

    /// The ring memory.
    pub fn memory(&self) -> &M {
        &self.ring.mem
    }

    /// Free descriptors.
    pub fn free(&self) -> u32 {
        self.ring.cursor.free()
    }

    /// Whether a device error broke the ring.
    pub fn is_broken(&self) -> bool {
        self.ring.broken
    }

    /// Queues a packet of one or more segments, owning `buffers` until the
    /// device reports it sent. The last descriptor carries EOP and RS.
    ///
    /// # Errors
    ///
    /// [`BadRequest`](RingErrorKind::BadRequest) for no segments, more than
    /// the ring holds, or a zero-length segment;
    /// [`Full`](RingErrorKind::Full); [`Broken`](RingErrorKind::Broken).
    pub fn transmit(&mut self, segments: &[TxSegment], buffers: T) -> Result<(), Rejected<T>> {
        let ring = &mut self.ring;
        if ring.broken {
            return Err(Rejected::new(RingErrorKind::Broken, buffers));
        }
        let n = segments.len();
        if n == 0 || n > ring.cursor.capacity() as usize || segments.iter().any(|s| s.len == 0) {
            return Err(Rejected::new(RingErrorKind::BadRequest, buffers));
        }
        if n > ring.cursor.free() as usize {
            return Err(Rejected::new(RingErrorKind::Full, buffers));
        }
        if let Err(kind) = ring.slots.check_reclaimed() {
            return Err(Rejected::new(kind, buffers));
        }
        let first = ring.cursor.tail();
        for (i, seg) in segments.iter().enumerate() {
            let index = ring.cursor.tail();
            let _ = ring.cursor.push(); // room for all n checked above
            let mut cmd = TxCommand::IFCS;
            if i + 1 == n {
                cmd |= TxCommand::EOP | TxCommand::RS;
            }
            let base = index as usize * DESC_SIZE;
            // SAFETY: index < size; the memory holds size descriptors.
            unsafe {
                ring.mem.write_u64(base, seg.addr.as_u64());
                ring.mem.write_u16(base + 8, seg.len);
                ring.mem.write_u16(base + 10, u16::from(cmd.bits()) << 8);
                ring.mem.write_u16(base + 14, 0);
                ring.mem.store_flag(base + STATUS_OFFSET, 0);
            }
        }
        ring.slots.put_at(first as u16, buffers, 0, n as u16, 0);
        Ok(())
    }

    /// Writes the tail register if packets were queued since the last time.
    pub fn ring_doorbell(&mut self) -> bool {
        self.ring.ring_doorbell()
    }

    /// Reaps the oldest packet if the device marked its last descriptor
    /// done, returning its buffers.
    ///
    /// # Errors
    ///
    /// [`UnexpectedCompletion`](RingErrorKind::UnexpectedCompletion) for DD
    /// on a descriptor the device was not given; the ring is broken then.
    pub fn poll(&mut self) -> crate::Result<Option<Transmitted<T>>> {
        let ring = &mut self.ring;
        if ring.broken {
            return Err(RingError::new(RingErrorKind::Broken));
        }
        let head = ring.cursor.head();
        let Some(count) = ring.slots.peek_at(head as u16).map(|p| p.count) else {
            return Ok(None); // nothing queued
        };
        let last = ring.cursor.advance(head, u32::from(count) - 1);
        let status = TxStatus::from_bits_retain(ring.flag(last) as u8);
        if !status.contains(TxStatus::DD) {
            return Ok(None);
        }
        if ring.cursor.span(head, ring.cursor.announced()) < u32::from(count) {
            return Err(ring.fail(RingError::with(
                RingErrorKind::UnexpectedCompletion,
                last.into(),
            )));
        }
        // The device is done reading the buffers; order that before their
        // reuse.
        sync::after_completion_flag();
        let Some(taken) = ring.slots.take_at(head as u16) else {
            return Err(ring.fail(RingError::with(RingErrorKind::NotInFlight, head.into())));
        };
        ring.cursor.consume(u32::from(taken.count))?;
        Ok(Some(Transmitted {
            buffers: taken.value,
            status,
        }))
    }

    /// After a device reset: empties the ring and hands back every queued
    /// packet's buffers once.
    pub fn reset(&mut self) -> Drain<'_, T> {
        self.ring.reset()
    }
}
