//! One virtqueue, split or packed as negotiated: `dma-ring`'s
//! [`SplitQueue`] or [`PackedQueue`] over coherent ring memory, set up
//! through a [`Transport`], so each driver is written once for both.

use alloc::vec::Vec;

use dma_core::{Coherent, DmaAlloc};
use dma_ring::virtio::packed::{PackedLayout, PackedQueue};
use dma_ring::virtio::split::{SplitLayout, SplitQueue};
use dma_ring::virtio::IndirectLayout;
use dma_ring::virtio::{Segment, Used};
use dma_ring::{slot_vec, Rejected, Slot};

use super::spec::Features;
use super::transport::{QueueAreas, Transport};
use crate::DriverError;

type RingMem<P> = Coherent<[u64], P>;
type Split<P, N, T> = SplitQueue<RingMem<P>, N, T, Vec<Slot<T>>>;
type Packed<P, N, T> = PackedQueue<RingMem<P>, N, T, Vec<Slot<T>>>;

/// A virtqueue of either layout, owning the buffers `T` of each request
/// in flight.
pub(crate) enum Virtqueue<P: DmaAlloc, N: dma_ring::Doorbell, T> {
    Split(Split<P, N, T>),
    Packed(Packed<P, N, T>),
}

impl<P: DmaAlloc + Clone, N: dma_ring::Doorbell, T> Virtqueue<P, N, T> {
    /// Allocates queue `index` with the layout, event suppression and
    /// indirect descriptors of `features`, at most `wanted` entries
    /// (split: rounded down to a power of two), programs it into the
    /// device and enables it. With `INDIRECT_DESC` each entry gets a table
    /// of up to `indirect` descriptors (capped at the queue size).
    ///
    /// # Errors
    ///
    /// [`DriverError::Unsupported`] when the queue does not exist, is
    /// smaller than `min` entries (one request of the driver must fit),
    /// or the device does not enable it; [`DriverError::InvalidArgument`]
    /// for `wanted` below `min`; allocation and ring errors.
    pub(crate) fn new<Tr: Transport<Notify = N>>(
        transport: &Tr,
        index: u16,
        platform: P,
        features: Features,
        wanted: u16,
        min: u16,
        indirect: u16,
    ) -> Result<Self, DriverError> {
        if wanted < min {
            return Err(DriverError::InvalidArgument(
                "a queue size large enough for one request",
            ));
        }
        let max = transport.max_queue_size(index);
        if max == 0 {
            return Err(DriverError::Unsupported("the driver's virtqueue"));
        }
        let packed = features.contains(Features::RING_PACKED);
        let event_idx = features.contains(Features::EVENT_IDX);
        let mut size = wanted.min(max);
        if !packed {
            // Split queues are powers of two (§2.7).
            size = 1 << (15 - size.leading_zeros());
        }
        if size < min {
            return Err(DriverError::Unsupported(
                "a virtqueue large enough for one request",
            ));
        }
        let notify = transport.notifier(index)?;
        let slots = slot_vec(size.into());
        let tables = if features.contains(Features::INDIRECT_DESC) && indirect > 1 {
            let entries = indirect.min(size);
            let bytes = IndirectLayout::new(size, entries)?.bytes;
            let mem = Coherent::<[u64], P>::zeroed_slice(platform.clone(), bytes.div_ceil(8))?;
            Some((mem, entries))
        } else {
            None
        };
        let (mut queue, areas) = if packed {
            let bytes = PackedLayout::new(size)?.bytes;
            let mem = Coherent::<[u64], P>::zeroed_slice(platform, bytes.div_ceil(8))?;
            let q = PackedQueue::new(mem, size, index, notify, event_idx, slots)?;
            let areas = QueueAreas {
                desc: q.desc_dma_addr(),
                driver: q.driver_event_dma_addr(),
                device: q.device_event_dma_addr(),
            };
            (Self::Packed(q), areas)
        } else {
            let bytes = SplitLayout::new(size)?.bytes;
            let mem = Coherent::<[u64], P>::zeroed_slice(platform, bytes.div_ceil(8))?;
            let q = SplitQueue::new(mem, size, index, notify, event_idx, slots)?;
            let areas = QueueAreas {
                desc: q.desc_dma_addr(),
                driver: q.avail_dma_addr(),
                device: q.used_dma_addr(),
            };
            (Self::Split(q), areas)
        };
        if let Some((mem, entries)) = tables {
            let set = match &mut queue {
                Self::Split(q) => q.set_indirect(mem, entries),
                Self::Packed(q) => q.set_indirect(mem, entries),
            };
            set.map_err(|r| r.error)?;
        }
        transport.program_queue(index, size, areas);
        transport.enable_queue(index);
        if !transport.queue_enabled(index) {
            return Err(DriverError::Unsupported(
                "a device that enables the virtqueue it was given",
            ));
        }
        Ok(queue)
    }

    /// Entries in the queue.
    pub(crate) fn size(&self) -> u16 {
        match self {
            Self::Split(q) => q.layout().size,
            Self::Packed(q) => q.layout().size,
        }
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        match self {
            Self::Split(q) => q.in_flight(),
            Self::Packed(q) => q.in_flight(),
        }
    }

    /// Descriptors per indirect table (0: no indirect tables).
    pub(crate) fn indirect_entries(&self) -> u16 {
        match self {
            Self::Split(q) => q.indirect_entries(),
            Self::Packed(q) => q.indirect_entries(),
        }
    }

    /// Adds a request (see `dma-ring`'s `add`): through an indirect table
    /// when the queue has them and the request has several segments that
    /// fit one (it then takes one ring entry), as a chain otherwise.
    pub(crate) fn add(
        &mut self,
        readable: &[Segment],
        writable: &[Segment],
        buffers: T,
    ) -> Result<u16, Rejected<T>> {
        let count = readable.len() + writable.len();
        let indirect = count > 1 && count <= usize::from(self.indirect_entries());
        match self {
            Self::Split(q) if indirect => q.add_indirect(readable, writable, buffers),
            Self::Split(q) => q.add(readable, writable, buffers),
            Self::Packed(q) if indirect => q.add_indirect(readable, writable, buffers),
            Self::Packed(q) => q.add(readable, writable, buffers),
        }
    }

    /// Publishes and notifies if the device asks for it.
    pub(crate) fn notify(&mut self) -> bool {
        match self {
            Self::Split(q) => q.notify(),
            Self::Packed(q) => q.notify(),
        }
    }

    /// The next used request, validated by the ring.
    pub(crate) fn poll(&mut self) -> Result<Option<Used<T>>, DriverError> {
        Ok(match self {
            Self::Split(q) => q.poll()?,
            Self::Packed(q) => q.poll()?,
        })
    }

    /// Asks the device for used-buffer interrupts, or not: a polled
    /// driver turns them off.
    pub(crate) fn set_interrupts(&mut self, enabled: bool) {
        match self {
            Self::Split(q) => q.set_interrupts(enabled),
            Self::Packed(q) => q.set_interrupts(enabled),
        }
    }

    /// After the device was reset: every request's buffers, once.
    pub(crate) fn reset(&mut self) -> Vec<T> {
        match self {
            Self::Split(q) => q.reset().collect(),
            Self::Packed(q) => q.reset().collect(),
        }
    }
}
