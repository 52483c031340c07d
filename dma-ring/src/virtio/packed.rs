//! The packed virtqueue (virtio 1.2 §2.8): one descriptor ring both sides
//! write, with AVAIL/USED flag bits compared against wrap counters instead
//! of indices, and event suppression structures for notifications
//! (§2.8.10, §2.8.14).
//!
//! A request's descriptors are written first-last: every descriptor but the
//! first, then a write barrier, then the first one's flags, so the device
//! never sees a partial chain (§2.8.21.3). Buffer ids come from the slot
//! table with a generation in their unused high bits, so a repeated or
//! stale id is refused.

use bitflags::bitflags;
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::{FromBytes, IntoBytes};

use super::indirect::Indirect;
use super::{area_addr, check_request, need_event, segments, Segment, Used};
use crate::memory::check_memory;
use crate::slots::{Drain, SlotStorage, SlotTable};
use crate::sync;
use crate::{Doorbell, Rejected, RingError, RingErrorKind, RingMemory};

/// A packed descriptor (§2.8.13 "Packed Virtqueue Layout", `pvirtq_desc`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct PackedDesc {
    /// Buffer address.
    pub addr: u64,
    /// Buffer length; in a used descriptor, bytes written.
    pub len: u32,
    /// Buffer id.
    pub id: u16,
    /// [`PackedFlags`].
    pub flags: u16,
}

/// An event suppression structure (§2.8.13, `pvirtq_event_suppress`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct EventSuppress {
    /// Descriptor offset (bits 0-14) and wrap counter (bit 15) to be
    /// notified at, with [`EventFlags::Desc`].
    pub off_wrap: u16,
    /// An [`EventFlags`] value.
    pub flags: u16,
}

assert_eq_size!(PackedDesc, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(PackedDesc, len), 8);
const_assert_eq!(core::mem::offset_of!(PackedDesc, id), 12);
const_assert_eq!(core::mem::offset_of!(PackedDesc, flags), 14);
assert_eq_size!(EventSuppress, [u8; 4]);
const_assert_eq!(core::mem::offset_of!(EventSuppress, flags), 2);

bitflags! {
    /// Packed descriptor flags (§2.8.1, §2.8.6, §2.8.7).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PackedFlags: u16 {
        /// The chain continues in the next descriptor.
        const NEXT = 1;
        /// Device-writable buffer.
        const WRITE = 2;
        /// Indirect descriptor table.
        const INDIRECT = 4;
        /// Set to the driver's wrap counter when made available.
        const AVAIL = 1 << 7;
        /// Set to the device's wrap counter when used.
        const USED = 1 << 15;
    }
}

/// Event suppression modes (§2.8.10: `RING_EVENT_FLAGS_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum EventFlags {
    /// Notify on every event.
    Enable = 0,
    /// Do not notify.
    Disable = 1,
    /// Notify when the descriptor at `off_wrap` is reached
    /// (`VIRTIO_F_EVENT_IDX` only).
    Desc = 2,
}

/// Where the parts of a packed queue of `size` entries sit: descriptors at
/// 0 (16-aligned), the driver event suppression area, then the device's
/// (each 4-aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedLayout {
    /// Queue size.
    pub size: u16,
    /// Offset of the driver event suppression structure.
    pub driver_event: usize,
    /// Offset of the device event suppression structure.
    pub device_event: usize,
    /// Total bytes.
    pub bytes: usize,
}

impl PackedLayout {
    /// The layout for `size` entries, `1..=32768`, any value (§2.8).
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize) otherwise.
    pub const fn new(size: u16) -> crate::Result<Self> {
        if size == 0 || size > 32768 {
            return Err(RingError::with(RingErrorKind::InvalidSize, size as u64));
        }
        let driver_event = 16 * size as usize;
        Ok(Self {
            size,
            driver_event,
            device_event: driver_event + 4,
            bytes: driver_event + 8,
        })
    }

    /// Offset of descriptor `i`.
    pub const fn desc(&self, i: u16) -> usize {
        16 * i as usize
    }
}

/// A position in the ring with its wrap counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    index: u16,
    wrap: bool,
}

impl Position {
    const START: Self = Self {
        index: 0,
        wrap: true,
    };

    fn advance(self, n: u16, size: u16) -> Self {
        let sum = u32::from(self.index) + u32::from(n);
        if sum >= u32::from(size) {
            Self {
                index: (sum - u32::from(size)) as u16,
                wrap: !self.wrap,
            }
        } else {
            Self {
                index: sum as u16,
                wrap: self.wrap,
            }
        }
    }

    /// The AVAIL/USED bits of a descriptor made available at this position.
    fn avail_bits(self) -> PackedFlags {
        if self.wrap {
            PackedFlags::AVAIL
        } else {
            PackedFlags::USED
        }
    }
}

/// A packed virtqueue over ring memory `M`, notifying through `D`, owning
/// the buffers `T` of each request in flight.
pub struct PackedQueue<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> {
    mem: M,
    notify: D,
    queue_index: u16,
    layout: PackedLayout,
    event_idx: bool,
    next_avail: Position,
    next_used: Position,
    num_free: u16,
    added_since_kick: u16,
    slots: SlotTable<T, S>,
    broken: bool,
    /// Indirect tables, one per slot of the id table.
    indirect: Option<Indirect<M>>,
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> PackedQueue<M, D, T, S> {
    /// A queue of `size` entries in `mem` (zeroed, 16-aligned,
    /// [`PackedLayout::bytes`] long), notified by writing `queue_index` to
    /// `notify`, with `VIRTIO_F_EVENT_IDX` negotiated or not. At most
    /// `min(slots, size, MAX_TAGGED_SLOTS)` requests are in flight
    /// ([`MAX_TAGGED_SLOTS`](crate::MAX_TAGGED_SLOTS) keeps generation bits
    /// in every buffer id). `add` publishes each chain at once, so every
    /// chain in flight is one the device may use.
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize),
    /// [`BadMemory`](RingErrorKind::BadMemory).
    pub fn new(
        mem: M,
        size: u16,
        queue_index: u16,
        notify: D,
        event_idx: bool,
        slots: S,
    ) -> crate::Result<Self> {
        let layout = PackedLayout::new(size)?;
        check_memory(&mem, layout.bytes, 16)?;
        Ok(Self {
            mem,
            notify,
            queue_index,
            layout,
            event_idx,
            next_avail: Position::START,
            next_used: Position::START,
            num_free: size,
            added_since_kick: 0,
            slots: SlotTable::tagged(slots, size.into())?,
            broken: false,
            indirect: None,
        })
    }

    /// Gives the queue indirect descriptor tables (with
    /// `VIRTIO_F_INDIRECT_DESC` negotiated), for requests of up to
    /// `entries` segments added with [`add_indirect`](Self::add_indirect):
    /// `tables` is zeroed or not, 16-aligned, at least
    /// [`IndirectLayout::new(size, entries)`](super::IndirectLayout)`.bytes`
    /// long, and the device must reach it like the ring. Only while no
    /// request is in flight (before the first `add`, or after
    /// [`reset`](Self::reset)). Returns the tables it replaces, if any.
    ///
    /// # Errors
    ///
    /// The memory handed back with
    /// [`InvalidSize`](RingErrorKind::InvalidSize) for `entries` of 0 or
    /// above the queue size, [`BadMemory`](RingErrorKind::BadMemory), or
    /// [`Busy`](RingErrorKind::Busy) while requests are in flight.
    pub fn set_indirect(&mut self, tables: M, entries: u16) -> Result<Option<M>, Rejected<M>> {
        let idle = self.slots.in_use() == 0 && self.slots.check_reclaimed().is_ok();
        Indirect::install(&mut self.indirect, idle, self.layout.size, tables, entries)
    }

    /// The indirect tables' memory, if the queue has them.
    pub fn indirect_memory(&self) -> Option<&M> {
        self.indirect.as_ref().map(Indirect::memory)
    }

    /// The most segments of one [`add_indirect`](Self::add_indirect)
    /// request: 0 without indirect tables.
    pub fn indirect_entries(&self) -> u16 {
        self.indirect.as_ref().map_or(0, Indirect::entries)
    }

    /// The layout.
    pub fn layout(&self) -> PackedLayout {
        self.layout
    }

    /// Device address of the descriptor ring.
    pub fn desc_dma_addr(&self) -> dma_core::DmaAddr {
        self.mem.dma_addr()
    }

    /// Device address of the driver event suppression structure.
    pub fn driver_event_dma_addr(&self) -> dma_core::DmaAddr {
        area_addr(&self.mem, self.layout.driver_event)
    }

    /// Device address of the device event suppression structure.
    pub fn device_event_dma_addr(&self) -> dma_core::DmaAddr {
        area_addr(&self.mem, self.layout.device_event)
    }

    /// The ring memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Free descriptors.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Requests added and not yet used.
    pub fn in_flight(&self) -> u32 {
        self.slots.in_use()
    }

    /// Whether a device error broke the queue.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Adds a request (`readable` then `writable` segments), owning
    /// `buffers` until the device uses it, and makes it available at once.
    /// Returns its buffer id. Notify with [`notify`](Self::notify), once
    /// per batch.
    ///
    /// # Errors
    ///
    /// [`BadRequest`](RingErrorKind::BadRequest) for no segments, more than
    /// the queue size, or a total length overflowing `u32` (§2.7.5.2);
    /// [`Full`](RingErrorKind::Full); [`Broken`](RingErrorKind::Broken);
    /// [`Unreclaimed`](RingErrorKind::Unreclaimed) after a leaked reset
    /// drain.
    pub fn add(
        &mut self,
        readable: &[Segment],
        writable: &[Segment],
        buffers: T,
    ) -> Result<u16, Rejected<T>> {
        let (total, writable_len, buffers) = check_request(
            self.broken,
            &self.slots,
            readable,
            writable,
            self.layout.size,
            self.num_free,
            false,
            buffers,
        )?;
        let id = self
            .slots
            .insert(buffers, writable_len, total as u16)
            .map_err(|b| Rejected::new(RingErrorKind::Full, b))?;
        let descs = segments(readable, writable).map(|(seg, write)| {
            let flags = if write {
                PackedFlags::WRITE
            } else {
                PackedFlags::empty()
            };
            (*seg, flags)
        });
        self.make_available(id, descs, total);
        Ok(id)
    }

    /// Adds a request as one descriptor pointing to an indirect table of
    /// its `readable`, then `writable`, segments (§2.8.19), owning
    /// `buffers` until the device uses it, and makes it available at once.
    /// Returns its buffer id. Needs [`set_indirect`](Self::set_indirect)
    /// first; takes one ring descriptor whatever the segment count.
    ///
    /// # Errors
    ///
    /// [`IndirectUnavailable`](RingErrorKind::IndirectUnavailable) without
    /// tables; [`BadRequest`](RingErrorKind::BadRequest) for no segments,
    /// more than [`indirect_entries`](Self::indirect_entries), or a total
    /// length overflowing `u32`; and as [`add`](Self::add).
    pub fn add_indirect(
        &mut self,
        readable: &[Segment],
        writable: &[Segment],
        buffers: T,
    ) -> Result<u16, Rejected<T>> {
        let Some(indirect) = &self.indirect else {
            return Err(Rejected::new(RingErrorKind::IndirectUnavailable, buffers));
        };
        let (_, writable_len, buffers) = check_request(
            self.broken,
            &self.slots,
            readable,
            writable,
            indirect.entries(),
            self.num_free,
            true,
            buffers,
        )?;
        let id = self
            .slots
            .insert(buffers, writable_len, 1)
            .map_err(|b| Rejected::new(RingErrorKind::Full, b))?;
        // Table entries: WRITE or nothing, no id (§2.8.19); consecutive,
        // so no NEXT.
        let table = indirect.fill(
            self.slots.index_of(id),
            readable,
            writable,
            |_, _, write| {
                let flags = if write {
                    PackedFlags::WRITE
                } else {
                    PackedFlags::empty()
                };
                [0, flags.bits()]
            },
        );
        self.make_available(id, core::iter::once((table, PackedFlags::INDIRECT)), 1);
        Ok(id)
    }

    /// Writes `count` descriptors under buffer id `id` at the next
    /// available positions, linked with `NEXT`, and makes them available:
    /// every descriptor but the first, a write barrier, then the first
    /// one's flags (§2.8.21.3).
    fn make_available(
        &mut self,
        id: u16,
        descs: impl Iterator<Item = (Segment, PackedFlags)>,
        count: usize,
    ) {
        let first = self.next_avail;
        let mut pos = first;
        let mut first_flags = PackedFlags::empty();
        for (k, (seg, mut flags)) in descs.enumerate() {
            if k + 1 < count {
                flags |= PackedFlags::NEXT;
            }
            flags |= pos.avail_bits();
            let base = self.layout.desc(pos.index);
            // SAFETY: pos.index < size; the memory holds the layout.
            unsafe {
                self.mem.write_u64(base, seg.addr.as_u64());
                self.mem.write_u32(base + 8, seg.len);
                self.mem.write_u16(base + 12, id);
            }
            if k == 0 {
                first_flags = flags;
            } else {
                // SAFETY: `base + 14` is this descriptor's flags, inside the ring. The device
                // will not look here before the first descriptor's flags say the chain is available.
                unsafe { self.mem.store_flag(base + 14, flags.bits()) };
            }
            pos = pos.advance(1, self.layout.size);
        }
        // Every other field of the chain (and an indirect table) before
        // the flags that publish it.
        sync::publish_descriptors();
        // SAFETY: first.index < size.
        unsafe {
            self.mem
                .store_flag(self.layout.desc(first.index) + 14, first_flags.bits())
        };
        self.next_avail = pos;
        self.num_free -= count as u16;
        self.added_since_kick = self.added_since_kick.saturating_add(count as u16);
    }

    /// Notifies the device of the requests added since the last call, if
    /// its event suppression structure asks for it. Returns whether it
    /// notified.
    pub fn notify(&mut self) -> bool {
        if self.added_since_kick == 0 {
            return false;
        }
        let added = core::mem::take(&mut self.added_since_kick);
        // The flags stores before the read of the device's wishes (§2.8.21.3.1).
        sync::dma_full();
        let area = self.layout.device_event;
        // SAFETY: inside the device event suppression structure.
        let (off_wrap, flags) = unsafe { (self.mem.load_flag(area), self.mem.load_flag(area + 2)) };
        let wanted = match flags & 0x3 {
            f if f == EventFlags::Disable as u16 => false,
            f if f == EventFlags::Desc as u16 && self.event_idx => {
                // Positions as free-running numbers: an event in the
                // previous lap is `size` behind.
                let new = self.next_avail.index;
                let old = new.wrapping_sub(added);
                let mut event = off_wrap & 0x7fff;
                if (off_wrap >> 15 != 0) != self.next_avail.wrap {
                    event = event.wrapping_sub(self.layout.size);
                }
                need_event(event, new, old)
            }
            _ => true,
        };
        if wanted {
            // No `before_doorbell`: `dma_full` above already orders the
            // flags stores before this MMIO write (it is the stronger
            // barrier on every architecture), and a second one would only
            // cost time on the submission path.
            self.notify.ring(self.queue_index.into());
        }
        wanted
    }

    /// Takes the next used request, if the device returned one.
    ///
    /// # Errors
    ///
    /// [`UnexpectedCompletion`](RingErrorKind::UnexpectedCompletion) for a
    /// used descriptor when nothing is in flight,
    /// [`UnknownId`](RingErrorKind::UnknownId) /
    /// [`NotInFlight`](RingErrorKind::NotInFlight) for a bad buffer id,
    /// [`LengthTooLarge`](RingErrorKind::LengthTooLarge); the queue is then
    /// broken and [`Broken`](RingErrorKind::Broken) follows.
    pub fn poll(&mut self) -> crate::Result<Option<Used<T>>> {
        if self.broken {
            return Err(RingError::new(RingErrorKind::Broken));
        }
        let base = self.layout.desc(self.next_used.index);
        // SAFETY: next_used.index < size.
        let flags = PackedFlags::from_bits_retain(unsafe { self.mem.load_flag(base + 14) });
        let avail = flags.contains(PackedFlags::AVAIL);
        let used = flags.contains(PackedFlags::USED);
        if avail != used || used != self.next_used.wrap {
            return Ok(None);
        }
        sync::after_completion_flag();
        // SAFETY: inside descriptor next_used, aligned.
        let (id, len) = unsafe { (self.mem.read_u16(base + 12), self.mem.read_u32(base + 8)) };
        let checked = if self.slots.in_use() == 0 {
            Err(RingError::with(
                RingErrorKind::UnexpectedCompletion,
                self.next_used.index.into(),
            ))
        } else {
            self.slots.check(id).and_then(|request| {
                if len > request.posted {
                    Err(RingError::with(RingErrorKind::LengthTooLarge, len.into()))
                } else {
                    Ok(())
                }
            })
        };
        if let Err(e) = checked {
            self.broken = true;
            return Err(e);
        }
        let taken = self.slots.take(id)?;
        self.next_used = self.next_used.advance(taken.count, self.layout.size);
        self.num_free += taken.count;
        Ok(Some(Used {
            buffers: taken.value,
            len,
            id,
        }))
    }

    /// Tells the device whether to interrupt: with `VIRTIO_F_EVENT_IDX`,
    /// enabling asks for an interrupt at the next used descriptor only
    /// (`RING_EVENT_FLAGS_DESC`).
    pub fn set_interrupts(&mut self, enabled: bool) {
        let area = self.layout.driver_event;
        let flags = match (enabled, self.event_idx) {
            (false, _) => EventFlags::Disable,
            (true, false) => EventFlags::Enable,
            (true, true) => EventFlags::Desc,
        };
        let off_wrap = self.next_used.index | (u16::from(self.next_used.wrap) << 15);
        // SAFETY: inside the driver event suppression structure.
        unsafe {
            self.mem.store_flag(area, off_wrap);
            self.mem.store_flag(area + 2, flags as u16);
        }
        sync::dma_full();
    }

    /// After a device reset: zeroes the ring, and hands back every
    /// request's buffers once.
    pub fn reset(&mut self) -> Drain<'_, T> {
        for i in 0..self.layout.size {
            let base = self.layout.desc(i);
            // SAFETY: every descriptor below size is inside the memory.
            unsafe {
                self.mem.write_u64(base, 0);
                self.mem.write_u32(base + 8, 0);
                self.mem.write_u16(base + 12, 0);
                self.mem.store_flag(base + 14, 0);
            }
        }
        for offset in [0, 2, 4, 6] {
            // SAFETY: inside the two event suppression structures.
            unsafe { self.mem.store_flag(self.layout.driver_event + offset, 0) };
        }
        self.next_avail = Position::START;
        self.next_used = Position::START;
        self.num_free = self.layout.size;
        self.added_since_kick = 0;
        self.broken = false;
        self.slots.drain()
    }
}
