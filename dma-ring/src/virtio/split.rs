//! The split virtqueue (virtio 1.2 §2.7): a descriptor table, an available
//! ring the driver writes and a used ring the device writes, with
//! free-running 16-bit indices and optional `VIRTIO_F_EVENT_IDX`
//! notification suppression (§2.7.7, §2.7.10).
//!
//! The descriptor chains' free list and links are kept in driver memory
//! (the slot table), never read back from the descriptor table, which the
//! device could have scribbled on.

use bitflags::bitflags;
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::{FromBytes, IntoBytes};

use super::indirect::Indirect;
use super::{area_addr, check_request, need_event, segments, Segment, Used};
use crate::memory::check_memory;
use crate::slots::{is_unannounced, Drain, SlotStorage, SlotTable};
use crate::sync;
use crate::{Doorbell, Rejected, RingError, RingErrorKind, RingMemory};

/// A descriptor (§2.7.5 "The Virtqueue Descriptor Table").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct VirtqDesc {
    /// Buffer address.
    pub addr: u64,
    /// Buffer length.
    pub len: u32,
    /// [`DescFlags`].
    pub flags: u16,
    /// Next descriptor of the chain, with [`DescFlags::NEXT`].
    pub next: u16,
}

/// A used-ring element (§2.7.8 "The Virtqueue Used Ring").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct VirtqUsedElem {
    /// Head of the used descriptor chain.
    pub id: u32,
    /// Bytes written into the chain's writable buffers.
    pub len: u32,
}

assert_eq_size!(VirtqDesc, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(VirtqDesc, len), 8);
const_assert_eq!(core::mem::offset_of!(VirtqDesc, flags), 12);
const_assert_eq!(core::mem::offset_of!(VirtqDesc, next), 14);
assert_eq_size!(VirtqUsedElem, [u8; 8]);
const_assert_eq!(core::mem::offset_of!(VirtqUsedElem, len), 4);

bitflags! {
    /// Descriptor flags (§2.7.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct DescFlags: u16 {
        /// The chain continues at `next`.
        const NEXT = 1;
        /// Device-writable buffer.
        const WRITE = 2;
        /// The buffer holds a table of indirect descriptors.
        const INDIRECT = 4;
    }
}

bitflags! {
    /// Available ring flags (§2.7.6).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct AvailFlags: u16 {
        /// The driver asks not to be interrupted.
        const NO_INTERRUPT = 1;
    }
}

bitflags! {
    /// Used ring flags (§2.7.8).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct UsedFlags: u16 {
        /// The device asks not to be notified.
        const NO_NOTIFY = 1;
    }
}

/// Where the three parts of a split queue of `size` entries sit in one
/// allocation: the descriptor table at 0 (16-aligned), the available ring
/// (2-aligned) and the used ring (4-aligned), as §2.7 "Alignment" asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitLayout {
    /// Queue size.
    pub size: u16,
    /// Offset of the available ring.
    pub avail: usize,
    /// Offset of the used ring.
    pub used: usize,
    /// Total bytes.
    pub bytes: usize,
}

impl SplitLayout {
    /// The layout for `size` entries, a power of two up to 32768 (§2.7).
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize) otherwise.
    pub const fn new(size: u16) -> crate::Result<Self> {
        if !size.is_power_of_two() || size > 32768 {
            return Err(RingError::with(RingErrorKind::InvalidSize, size as u64));
        }
        let n = size as usize;
        let avail = 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4);
        Ok(Self {
            size,
            avail,
            used,
            bytes: used + 6 + 8 * n,
        })
    }

    /// Offset of descriptor `i`.
    pub const fn desc(&self, i: u16) -> usize {
        16 * i as usize
    }
    /// Offset of the available ring's `flags`.
    pub const fn avail_flags(&self) -> usize {
        self.avail
    }
    /// Offset of the available ring's `idx`.
    pub const fn avail_idx(&self) -> usize {
        self.avail + 2
    }
    /// Offset of available ring entry `i`.
    pub const fn avail_ring(&self, i: u16) -> usize {
        self.avail + 4 + 2 * i as usize
    }
    /// Offset of `used_event` (after the available ring).
    pub const fn used_event(&self) -> usize {
        self.avail + 4 + 2 * self.size as usize
    }
    /// Offset of the used ring's `flags`.
    pub const fn used_flags(&self) -> usize {
        self.used
    }
    /// Offset of the used ring's `idx`.
    pub const fn used_idx(&self) -> usize {
        self.used + 2
    }
    /// Offset of used ring element `i`.
    pub const fn used_ring(&self, i: u16) -> usize {
        self.used + 4 + 8 * i as usize
    }
    /// Offset of `avail_event` (after the used ring).
    pub const fn avail_event(&self) -> usize {
        self.used + 4 + 8 * self.size as usize
    }
}

/// A split virtqueue over ring memory `M`, notifying through `D`, owning
/// the buffers `T` of each request in flight.
pub struct SplitQueue<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> {
    mem: M,
    notify: D,
    queue_index: u16,
    layout: SplitLayout,
    event_idx: bool,
    /// With event indices: whether `poll` moves `used_event` along with
    /// what it reaps (interrupts on), or leaves it where
    /// [`set_interrupts`](SplitQueue::set_interrupts) or
    /// [`interrupt_after`](SplitQueue::interrupt_after) put it.
    used_event_follows: bool,
    free_head: u16,
    num_free: u16,
    avail_idx: u16,
    published: u16,
    last_used: u16,
    /// Chains added so far (wrapping): each chain's submission number.
    added: u32,
    slots: SlotTable<T, S>,
    broken: bool,
    /// Indirect tables, one per descriptor (used while it is a head).
    indirect: Option<Indirect<M>>,
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> SplitQueue<M, D, T, S> {
    /// A queue of `size` entries in `mem` (zeroed, 16-aligned,
    /// [`SplitLayout::bytes`] long), notified by writing `queue_index` to
    /// `notify`, with `VIRTIO_F_EVENT_IDX` negotiated or not, and at least
    /// `size` slots.
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
        let layout = SplitLayout::new(size)?;
        check_memory(&mem, layout.bytes, 16)?;
        let provided = slots.as_ref().len();
        if provided < usize::from(size) {
            return Err(RingError::with(RingErrorKind::InvalidSize, provided as u64));
        }
        Ok(Self {
            mem,
            notify,
            queue_index,
            layout,
            event_idx,
            used_event_follows: true,
            free_head: 0,
            num_free: size,
            avail_idx: 0,
            published: 0,
            last_used: 0,
            added: 0,
            // The table's links start as 0 -> 1 -> ... : the free list.
            slots: SlotTable::positional(slots, size.into())?,
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

    /// The layout (offsets of the three parts).
    pub fn layout(&self) -> SplitLayout {
        self.layout
    }

    /// Device address of the descriptor table.
    pub fn desc_dma_addr(&self) -> dma_core::DmaAddr {
        self.mem.dma_addr()
    }

    /// Device address of the available ring (driver area).
    pub fn avail_dma_addr(&self) -> dma_core::DmaAddr {
        area_addr(&self.mem, self.layout.avail)
    }

    /// Device address of the used ring (device area).
    pub fn used_dma_addr(&self) -> dma_core::DmaAddr {
        area_addr(&self.mem, self.layout.used)
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

    /// Adds a request: `readable` segments for the device to read, then
    /// `writable` ones for it to write, owning `buffers` until the device
    /// uses it. Returns the chain's head. The device sees it at the next
    /// [`notify`](Self::notify).
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
        let descs = segments(readable, writable).map(|(seg, write)| {
            let flags = if write {
                DescFlags::WRITE
            } else {
                DescFlags::empty()
            };
            (*seg, flags)
        });
        Ok(self.make_available(descs, total, buffers, writable_len))
    }

    /// Adds a request as one descriptor pointing to an indirect table of
    /// its `readable`, then `writable`, segments (§2.7.5.3), owning
    /// `buffers` until the device uses it. Returns the head. Needs
    /// [`set_indirect`](Self::set_indirect) first; takes one descriptor
    /// of the queue whatever the segment count.
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
        // The table of the descriptor that will be the head: the table
        // chains by `next` inside itself (§2.7.5.3).
        let table = indirect.fill(self.free_head, readable, writable, |k, last, write| {
            let mut flags = DescFlags::empty();
            flags.set(DescFlags::WRITE, write);
            flags.set(DescFlags::NEXT, !last);
            [flags.bits(), if last { 0 } else { k + 1 }]
        });
        let descs = core::iter::once((table, DescFlags::INDIRECT));
        Ok(self.make_available(descs, 1, buffers, writable_len))
    }

    /// Writes `count` descriptors from the free list as one chain (each
    /// linked to the next with `NEXT`), puts its head in the available
    /// ring (published by the next `notify`) and `buffers` in its slot.
    /// Returns the head.
    fn make_available(
        &mut self,
        descs: impl Iterator<Item = (Segment, DescFlags)>,
        count: usize,
        buffers: T,
        writable_len: u32,
    ) -> u16 {
        let head = self.free_head;
        let mut index = head;
        for (k, (seg, mut flags)) in descs.enumerate() {
            let next = self.slots.link(index);
            let more = k + 1 < count;
            if more {
                flags |= DescFlags::NEXT;
            }
            let base = self.layout.desc(index);
            // SAFETY: index < size (free-list links stay below size) and
            // the memory holds the layout.
            unsafe {
                self.mem.write_u64(base, seg.addr.as_u64());
                self.mem.write_u32(base + 8, seg.len);
                self.mem.write_u16(base + 12, flags.bits());
                self.mem.write_u16(base + 14, if more { next } else { 0 });
            }
            if more {
                index = next;
            } else {
                self.free_head = next;
            }
        }
        self.num_free -= count as u16;
        let slot = self.avail_idx & (self.layout.size - 1);
        // SAFETY: slot < size; inside the available ring.
        unsafe { self.mem.write_u16(self.layout.avail_ring(slot), head) };
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.slots
            .put_at(head, buffers, writable_len, count as u16, self.added);
        self.added = self.added.wrapping_add(1);
        head
    }

    /// Publishes every request added since the last call (write barrier,
    /// then the available index) and notifies the device if its event
    /// suppression asks for it. Returns whether it notified.
    pub fn notify(&mut self) -> bool {
        if self.avail_idx == self.published {
            return false;
        }
        let (old, new) = (self.published, self.avail_idx);
        sync::publish_descriptors();
        // SAFETY: inside the available ring.
        unsafe { self.mem.store_flag(self.layout.avail_idx(), new) };
        self.published = new;
        // The index store must be visible before reading the device's
        // suppression state, or both sides can miss each other (§2.7.13.4).
        sync::dma_full();
        let wanted = if self.event_idx {
            // SAFETY: inside the used ring.
            let event = unsafe { self.mem.load_flag(self.layout.avail_event()) };
            need_event(event, new, old)
        } else {
            // SAFETY: inside the used ring.
            let flags = unsafe { self.mem.load_flag(self.layout.used_flags()) };
            !UsedFlags::from_bits_retain(flags).contains(UsedFlags::NO_NOTIFY)
        };
        if wanted {
            // No `before_doorbell`: `dma_full` above already orders the
            // index store before this MMIO write (it is the stronger
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
    /// [`IndexJump`](RingErrorKind::IndexJump) when the used index ran past
    /// what was published, [`UnknownId`](RingErrorKind::UnknownId) or
    /// [`NotInFlight`](RingErrorKind::NotInFlight) for a bad head,
    /// [`UnexpectedCompletion`](RingErrorKind::UnexpectedCompletion) for
    /// the head of a chain added but not yet published by
    /// [`notify`](Self::notify),
    /// [`LengthTooLarge`](RingErrorKind::LengthTooLarge); the queue is then
    /// broken and [`Broken`](RingErrorKind::Broken) follows.
    pub fn poll(&mut self) -> crate::Result<Option<Used<T>>> {
        if self.broken {
            return Err(RingError::new(RingErrorKind::Broken));
        }
        // SAFETY: inside the used ring.
        let used_idx = unsafe { self.mem.load_flag(self.layout.used_idx()) };
        if used_idx == self.last_used {
            return Ok(None);
        }
        if used_idx.wrapping_sub(self.last_used) > self.published.wrapping_sub(self.last_used) {
            self.broken = true;
            return Err(RingError::with(RingErrorKind::IndexJump, used_idx.into()));
        }
        sync::after_completion_flag();
        let elem = self
            .layout
            .used_ring(self.last_used & (self.layout.size - 1));
        // SAFETY: inside the used ring, 4-aligned.
        let (id, len) = unsafe { (self.mem.read_u32(elem), self.mem.read_u32(elem + 4)) };
        let head = match self.check_used(id, len) {
            Ok(head) => head,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        let Some(taken) = self.slots.take_at(head) else {
            self.broken = true;
            return Err(RingError::with(RingErrorKind::NotInFlight, id.into()));
        };
        // Return the chain to the free list by the driver's own links.
        let mut last = head;
        for _ in 1..taken.count {
            last = self.slots.link(last);
        }
        self.slots.set_link(last, self.free_head);
        self.free_head = head;
        self.num_free += taken.count;
        self.last_used = self.last_used.wrapping_add(1);
        if self.event_idx && self.used_event_follows {
            // Interrupt me once the device passes what I have consumed.
            // SAFETY: inside the available ring.
            unsafe {
                self.mem
                    .store_flag(self.layout.used_event(), self.last_used)
            };
        }
        Ok(Some(Used {
            buffers: taken.value,
            len,
            id: head,
        }))
    }

    fn check_used(&self, id: u32, len: u32) -> crate::Result<u16> {
        if id >= u32::from(self.layout.size) {
            return Err(RingError::with(RingErrorKind::UnknownId, id.into()));
        }
        let head = id as u16;
        let Some(chain) = self.slots.peek_at(head) else {
            return Err(RingError::with(RingErrorKind::NotInFlight, id.into()));
        };
        let unpublished = self.avail_idx.wrapping_sub(self.published);
        if is_unannounced(chain.submitted, self.added, unpublished.into()) {
            return Err(RingError::with(
                RingErrorKind::UnexpectedCompletion,
                id.into(),
            ));
        }
        if len > chain.posted {
            return Err(RingError::with(RingErrorKind::LengthTooLarge, len.into()));
        }
        Ok(head)
    }

    /// Asks the device to interrupt for every used buffer, or not to.
    ///
    /// Without `VIRTIO_F_EVENT_IDX` this is the available ring's
    /// `NO_INTERRUPT` flag. With it the flag stays 0, as §2.7.7.1 requires,
    /// and `used_event` does the work: enabling sets it to the next used
    /// entry and lets [`poll`](Self::poll) move it along; disabling leaves
    /// it where it is (the device may still interrupt once it passes it,
    /// as the spec allows for the flag too).
    pub fn set_interrupts(&mut self, enabled: bool) {
        if self.event_idx {
            self.used_event_follows = enabled;
            if enabled {
                // SAFETY: inside the available ring.
                unsafe {
                    self.mem
                        .store_flag(self.layout.used_event(), self.last_used)
                };
            }
        } else {
            let flags = if enabled {
                AvailFlags::empty()
            } else {
                AvailFlags::NO_INTERRUPT
            };
            // SAFETY: inside the available ring.
            unsafe { self.mem.store_flag(self.layout.avail_flags(), flags.bits()) };
        }
        sync::dma_full();
    }

    /// With `VIRTIO_F_EVENT_IDX`: asks for one interrupt once the device
    /// has used `n` (at least 1) more buffers than were reaped, and keeps
    /// [`poll`](Self::poll) from moving that point (interrupt delay, as
    /// Linux's `virtqueue_enable_cb_delayed`). Until
    /// [`set_interrupts`](Self::set_interrupts) is called again.
    ///
    /// # Errors
    ///
    /// [`BadRequest`](RingErrorKind::BadRequest) without event indices
    /// negotiated, or for `n` of 0 or beyond the queue size.
    pub fn interrupt_after(&mut self, n: u16) -> crate::Result<()> {
        if !self.event_idx || n == 0 || n > self.layout.size {
            return Err(RingError::with(RingErrorKind::BadRequest, n.into()));
        }
        self.used_event_follows = false;
        let event = self.last_used.wrapping_add(n - 1);
        // SAFETY: inside the available ring.
        unsafe { self.mem.store_flag(self.layout.used_event(), event) };
        sync::dma_full();
        Ok(())
    }

    /// After a device reset: zeroes the rings, frees every descriptor, and
    /// hands back every request's buffers once.
    pub fn reset(&mut self) -> Drain<'_, T> {
        let l = self.layout;
        for offset in (0..l.bytes & !1).step_by(2) {
            // SAFETY: inside the layout, 2-aligned.
            unsafe { self.mem.write_u16(offset, 0) };
        }
        for flag in [
            l.avail_flags(),
            l.avail_idx(),
            l.used_event(),
            l.used_flags(),
            l.used_idx(),
            l.avail_event(),
        ] {
            // SAFETY: inside the layout, 2-aligned.
            unsafe { self.mem.store_flag(flag, 0) };
        }
        self.free_head = 0;
        self.num_free = self.layout.size;
        self.avail_idx = 0;
        self.published = 0;
        self.last_used = 0;
        self.used_event_follows = true;
        self.broken = false;
        // Draining rebuilds the links as 0 -> 1 -> ...: the free list.
        self.slots.drain()
    }
}
