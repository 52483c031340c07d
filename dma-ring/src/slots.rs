//! In-flight ownership: the table that holds each request's buffers while
//! the device owns them, keyed by the id the device hands back.
//!
//! Submitting moves the buffers (a `StreamingMapping`, an SG table, any
//! owned value) into a slot; a completion takes them out exactly once. The
//! id the device returns is untrusted: out-of-range ids, vacant slots and
//! stale ids are errors, never a second hand-back.
//!
//! Where the protocol lets the driver choose ids (NVMe command identifiers,
//! packed-virtqueue buffer ids) the unused high bits of the id carry a
//! generation, as Linux's NVMe driver does, so a device that repeats an old
//! completion after the slot was reused is caught instead of completing the
//! new request early.
//!
//! So that a generation always remains, a table that hands out ids uses at
//! most [`MAX_TAGGED_SLOTS`] slots: [`MIN_GENERATION_BITS`] bits of every
//! id are generation, whatever the ring's size (Linux keeps 4 as well). A
//! device that repeats a completion after its slot was reused that many
//! times over (16 with 4 bits) is not caught; any fewer reuses are.
//!
//! Storage is the caller's: an array `[Slot<T>; N]` without `alloc`, a
//! `Vec` or boxed slice with it. The rings trust it to be one fixed slice
//! (free-list links read from it become ring-memory offsets), so
//! [`SlotStorage`] is an `unsafe trait`, implemented here for those types.

use crate::{RingError, RingErrorKind};

/// One entry of a ring's in-flight table. Opaque; make storage with
/// [`slots`] or [`slot_vec`].
pub struct Slot<T> {
    value: Option<T>,
    /// The free-list link (or the next descriptor of a virtio chain) in
    /// the low half, the generation in the high half: freeing a slot links
    /// it and bumps its generation with one store.
    meta: u32,
    /// Bytes the device may write into the request's buffers.
    posted: u32,
    /// Descriptors the request occupies.
    count: u16,
    /// The ring's submission count when the request was submitted, to
    /// refuse completions for requests the device was never told about
    /// ([`is_unannounced`]).
    submitted: u32,
}

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn vacant() -> Self {
        Self {
            value: None,
            meta: 0,
            posted: 0,
            count: 0,
            submitted: 0,
        }
    }
}

impl<T> Slot<T> {
    #[inline]
    fn link(&self) -> u16 {
        self.meta as u16
    }

    #[inline]
    fn generation(&self) -> u16 {
        (self.meta >> 16) as u16
    }

    #[inline]
    fn set_link(&mut self, link: u16) {
        self.meta = (self.meta & 0xffff_0000) | u32::from(link);
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::vacant()
    }
}

impl<T> core::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Slot")
            .field("busy", &self.value.is_some())
            .field("generation", &self.generation())
            .finish()
    }
}

/// `N` vacant slots, for storage without `alloc`.
pub fn slots<T, const N: usize>() -> [Slot<T>; N] {
    core::array::from_fn(|_| Slot::vacant())
}

/// `n` vacant slots on the heap.
#[cfg(feature = "alloc")]
pub fn slot_vec<T>(n: usize) -> alloc::vec::Vec<Slot<T>> {
    (0..n).map(|_| Slot::vacant()).collect()
}

/// Storage a ring keeps its in-flight table in: one fixed slice of slots
/// (`[Slot<T>; N]`, `Vec<Slot<T>>`, `Box<[Slot<T>]>`, `&mut [Slot<T>]`).
///
/// The rings read free-list and chain links back from the slots and use
/// them as offsets into ring memory without checking them again, so the
/// storage is trusted, and the trait is `unsafe`. A bounds check before
/// every ring-memory write would cover only the split queue's descriptor
/// writes, while the same trust underlies the in-flight counts and the
/// hand-back on reset; the contract covers all of it at no run-time cost.
///
/// A safe type that is merely `AsRef + AsMut` is not storage: its two
/// views could disagree (slots left over from a larger queue behind
/// `as_ref`), which would redirect descriptor writes outside the ring.
///
/// ```compile_fail
/// use dma_ring::{Slot, SlotStorage};
/// struct TwoFaced(Vec<Slot<u8>>, Vec<Slot<u8>>);
/// impl AsRef<[Slot<u8>]> for TwoFaced {
///     fn as_ref(&self) -> &[Slot<u8>] { &self.0 }
/// }
/// impl AsMut<[Slot<u8>]> for TwoFaced {
///     fn as_mut(&mut self) -> &mut [Slot<u8>] { &mut self.1 }
/// }
/// fn storage<S: SlotStorage<u8>>(_: S) {}
/// storage(TwoFaced(Vec::new(), Vec::new()));
/// ```
///
/// # Safety
///
/// For as long as a ring holds the storage, `as_ref` and `as_mut` return
/// the same slice (same address, same length) on every call, and neither
/// reads or changes the slots nor has any other effect a ring could
/// observe.
pub unsafe trait SlotStorage<T>: AsRef<[Slot<T>]> + AsMut<[Slot<T>]> {}

// SAFETY: an array's slices are the array itself.
unsafe impl<T, const N: usize> SlotStorage<T> for [Slot<T>; N] {}
// SAFETY: a borrowed slice is that one slice.
unsafe impl<T> SlotStorage<T> for &mut [Slot<T>] {}
// SAFETY: a vector's slices are its one buffer; the ring holds the vector,
// so nothing else resizes it meanwhile.
#[cfg(feature = "alloc")]
unsafe impl<T> SlotStorage<T> for alloc::vec::Vec<Slot<T>> {}
// SAFETY: a boxed slice is one fixed slice.
#[cfg(feature = "alloc")]
unsafe impl<T> SlotStorage<T> for alloc::boxed::Box<[Slot<T>]> {}
// SAFETY: forwards to `S`, which keeps the contract; `&mut` adds nothing.
unsafe impl<T, S: SlotStorage<T>> SlotStorage<T> for &mut S {}

/// Generation bits every id-allocating table keeps (Linux's `nvme_cid`
/// keeps 4 too).
pub const MIN_GENERATION_BITS: u32 = 4;

/// The most slots a table that hands out ids uses, so that
/// [`MIN_GENERATION_BITS`] remain in a 16-bit id: 4096 requests in flight.
pub const MAX_TAGGED_SLOTS: u32 = 1 << (16 - MIN_GENERATION_BITS);

/// Whether the request submitted as number `submitted` is among the last
/// `unannounced` of the `next` submitted so far (wrapping counts), which
/// the device has not been told about: its completion is not believable.
#[inline]
pub(crate) fn is_unannounced(submitted: u32, next: u32, unannounced: u32) -> bool {
    next.wrapping_sub(submitted) <= unannounced
}

/// What a completion takes out of a slot.
#[derive(Debug)]
pub(crate) struct Taken<T> {
    pub(crate) value: T,
    pub(crate) count: u16,
}

const NONE: u16 = u16::MAX;

/// The free-list head and busy count, copied out of a [`SlotTable`] so a
/// batch of inserts or takes keeps them in registers and the table is
/// written once per batch ([`SlotTable::tally`], [`SlotTable::set_tally`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tally {
    free: u16,
    in_use: u32,
}

impl Tally {
    /// Values in the table.
    #[inline]
    pub(crate) fn in_use(&self) -> u32 {
        self.in_use
    }
}

/// The table itself.
pub(crate) struct SlotTable<T, S: SlotStorage<T>> {
    storage: S,
    usable: u32,
    free: u16,
    in_use: u32,
    /// How an id splits: its low `index_bits` (`index_mask`) are the slot
    /// index, the rest (`generation_mask` once shifted down) the
    /// generation. Worked out once; every completion splits an id.
    index_bits: u32,
    index_mask: u16,
    generation_mask: u16,
    /// Values a [`Drain`] still has to hand back; nonzero only while one
    /// is alive, or after one was leaked (`mem::forget`).
    unreclaimed: u32,
    _marker: core::marker::PhantomData<T>,
}

impl<T, S: SlotStorage<T>> SlotTable<T, S> {
    /// A table that hands out ids ([`insert`](Self::insert)) over the first
    /// `min(storage.len(), limit, MAX_TAGGED_SLOTS)` slots, all made
    /// vacant.
    pub(crate) fn tagged(storage: S, limit: u32) -> crate::Result<Self> {
        Self::with_usable(storage, limit.min(MAX_TAGGED_SLOTS), false)
    }

    /// A table indexed by ring position ([`put_at`](Self::put_at)) over
    /// the first `min(storage.len(), size)` slots (at most 65536), all made
    /// vacant. Its links are chain links; ids carry no generation.
    pub(crate) fn positional(storage: S, size: u32) -> crate::Result<Self> {
        Self::with_usable(storage, size.min(1 << 16), true)
    }

    fn with_usable(mut storage: S, limit: u32, positional: bool) -> crate::Result<Self> {
        let len = storage.as_ref().len();
        let usable = len.min(limit as usize);
        if usable == 0 {
            return Err(RingError::with(RingErrorKind::InvalidSize, len as u64));
        }
        for slot in storage.as_mut() {
            *slot = Slot::vacant();
        }
        let usable = usable as u32;
        let index_bits = if positional {
            16
        } else {
            u32::BITS - (usable - 1).leading_zeros()
        };
        let mut table = Self {
            storage,
            usable,
            free: NONE,
            in_use: 0,
            index_bits,
            index_mask: ((1u32 << index_bits) - 1) as u16,
            generation_mask: (u32::from(u16::MAX) >> index_bits) as u16,
            unreclaimed: 0,
            _marker: core::marker::PhantomData,
        };
        table.rebuild_free_list();
        Ok(table)
    }

    /// Links slot `i` to `i + 1`. Slot 65535 of a 65536-slot (positional)
    /// table stays out of the list: its index is the end marker.
    fn rebuild_free_list(&mut self) {
        let usable = self.usable as usize;
        for (i, slot) in self.storage.as_mut()[..usable].iter_mut().enumerate() {
            let next = i + 1;
            slot.set_link(if next < usable && next < usize::from(NONE) {
                next as u16
            } else {
                NONE
            });
        }
        self.free = 0;
        self.in_use = 0;
    }

    /// Refuses new requests while values a reset took out of the table
    /// have not all been handed back (its [`Drain`] was leaked): a new
    /// request could land in a slot that still holds one.
    ///
    /// # Errors
    ///
    /// [`Unreclaimed`](RingErrorKind::Unreclaimed); calling the ring's
    /// `reset` again hands those values back.
    #[inline]
    pub(crate) fn check_reclaimed(&self) -> Result<(), RingErrorKind> {
        if self.unreclaimed != 0 {
            return Err(RingErrorKind::Unreclaimed);
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn in_use(&self) -> u32 {
        self.in_use
    }

    /// Slots in use by the table (at most 65535).
    #[inline]
    pub(crate) fn usable(&self) -> u32 {
        self.usable
    }

    #[cfg(test)]
    pub(crate) fn is_full(&self) -> bool {
        self.in_use == self.usable
    }

    #[inline]
    fn generation_mask(&self) -> u16 {
        self.generation_mask
    }

    /// Slot `index`'s id. Shifts in 32 bits, so a positional table's 16
    /// index bits leave no generation without a branch.
    #[inline]
    fn id(&self, index: u16) -> u16 {
        let generation = u32::from(self.storage.as_ref()[usize::from(index)].generation());
        index | (generation << self.index_bits) as u16
    }

    /// An id's slot index and generation (0 for a positional table).
    #[inline]
    fn split(&self, id: u16) -> (u16, u16) {
        let generation = (u32::from(id) >> self.index_bits) as u16;
        (id & self.index_mask, generation)
    }

    /// Stores `value` in a free slot and returns its id (index plus
    /// generation), or gives `value` back when full.
    #[inline]
    pub(crate) fn insert(&mut self, value: T, posted: u32, count: u16) -> Result<u16, T> {
        let index = self.insert_value(value)?;
        let slot = &mut self.storage.as_mut()[usize::from(index)];
        slot.posted = posted;
        slot.count = count;
        Ok(self.id(index))
    }

    /// Stores `value` in a free slot with its submission number and
    /// returns its id, leaving the slot's posted length and descriptor
    /// count as they were: for protocols that use neither (NVMe).
    #[inline]
    pub(crate) fn insert_id(&mut self, value: T, submitted: u32) -> Result<u16, T> {
        if self.unreclaimed != 0 {
            return Err(value);
        }
        let mut tally = self.tally();
        let id = self.insert_id_in(&mut tally, value, submitted)?;
        self.set_tally(tally);
        Ok(id)
    }

    #[inline]
    fn insert_value(&mut self, value: T) -> Result<u16, T> {
        if self.unreclaimed != 0 {
            return Err(value);
        }
        let mut tally = self.tally();
        let index = self.insert_value_in(&mut tally, value)?;
        self.set_tally(tally);
        Ok(index)
    }

    /// The free-list head and busy count, for a batch to work on in
    /// registers; [`set_tally`](Self::set_tally) puts them back.
    #[inline]
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            free: self.free,
            in_use: self.in_use,
        }
    }

    /// Puts back a tally taken by [`tally`](Self::tally) and updated only
    /// by this table's `*_in` methods since.
    #[inline]
    pub(crate) fn set_tally(&mut self, tally: Tally) {
        self.free = tally.free;
        self.in_use = tally.in_use;
    }

    /// [`insert_id`](Self::insert_id) against a batch's `tally`, for a
    /// caller that found [`check_reclaimed`](Self::check_reclaimed) passing
    /// when the batch began (nothing can drain the table during it). Were
    /// it not so, the value in the slot would be dropped, never doubled.
    #[inline]
    pub(crate) fn insert_id_in(
        &mut self,
        tally: &mut Tally,
        value: T,
        submitted: u32,
    ) -> Result<u16, T> {
        let index = self.insert_value_in(tally, value)?;
        self.storage.as_mut()[usize::from(index)].submitted = submitted;
        Ok(self.id(index))
    }

    /// How many values were inserted with [`insert_id_in`](Self::insert_id_in)
    /// against a tally that was never stored back (a leaked batch): the
    /// busy slots at the head of the free list, which holds only vacant
    /// ones otherwise.
    #[cold]
    pub(crate) fn inserted_beyond_tally(&self) -> u32 {
        let storage = self.storage.as_ref();
        let (mut at, mut found) = (self.free, 0);
        while at != NONE && found < self.usable && storage[usize::from(at)].value.is_some() {
            at = storage[usize::from(at)].link();
            found += 1;
        }
        found
    }

    /// Counts in the last `n` values inserted with
    /// [`insert_id_in`](Self::insert_id_in) against a tally that was never
    /// stored back (a leaked batch): they sit at the head of the free list
    /// in order, because inserting takes the head and leaves the slot's
    /// link as it was. Returns how many were found (`n`, unless the table
    /// was not in that state).
    #[cold]
    pub(crate) fn adopt_inserted(&mut self, n: u32) -> u32 {
        let mut tally = self.tally();
        let mut found = 0;
        while found < n && tally.free != NONE {
            let slot = &self.storage.as_ref()[usize::from(tally.free)];
            if slot.value.is_none() {
                break;
            }
            tally.free = slot.link();
            tally.in_use += 1;
            found += 1;
        }
        self.set_tally(tally);
        found
    }

    #[inline]
    fn insert_value_in(&mut self, tally: &mut Tally, value: T) -> Result<u16, T> {
        debug_assert_eq!(self.unreclaimed, 0, "callers check_reclaimed first");
        if tally.free == NONE {
            return Err(value);
        }
        let index = tally.free;
        let slot = &mut self.storage.as_mut()[usize::from(index)];
        tally.free = slot.link();
        slot.value = Some(value);
        tally.in_use += 1;
        Ok(index)
    }

    /// The slot index of an id [`insert`](Self::insert) returned.
    #[inline]
    pub(crate) fn index_of(&self, id: u16) -> u16 {
        self.split(id).0
    }

    /// Looks an id up without taking it.
    #[inline]
    pub(crate) fn check(&self, id: u16) -> crate::Result<Checked> {
        let (index, generation) = self.split(id);
        if u32::from(index) >= self.usable {
            return Err(RingError::with(RingErrorKind::UnknownId, id.into()));
        }
        let slot = &self.storage.as_ref()[usize::from(index)];
        if slot.value.is_none() || slot.generation() != generation {
            return Err(RingError::with(RingErrorKind::NotInFlight, id.into()));
        }
        Ok(Checked {
            index,
            posted: slot.posted,
            submitted: slot.submitted,
        })
    }

    /// Takes an id's value out, bumping the slot's generation.
    #[inline]
    pub(crate) fn take(&mut self, id: u16) -> crate::Result<Taken<T>> {
        let index = self.check(id)?.index;
        self.take_checked(index)
    }

    /// Takes the value at slot `index`, which [`check`](Self::check)
    /// returned since the table last changed, bumping the slot's generation.
    #[inline]
    pub(crate) fn take_checked(&mut self, index: u16) -> crate::Result<Taken<T>> {
        let mut tally = self.tally();
        let taken = self.take_checked_in(&mut tally, index)?;
        self.set_tally(tally);
        Ok(taken)
    }

    /// [`take_checked`](Self::take_checked) against a batch's `tally`:
    /// two stores to the slot (its value, and its link and generation
    /// together), none to the table.
    #[inline]
    pub(crate) fn take_checked_in(
        &mut self,
        tally: &mut Tally,
        index: u16,
    ) -> crate::Result<Taken<T>> {
        let mask = self.generation_mask();
        let slot = &mut self.storage.as_mut()[usize::from(index)];
        let taken = Taken {
            value: slot
                .value
                .take()
                .ok_or(RingError::new(RingErrorKind::NotInFlight))?,
            count: slot.count,
        };
        let generation = slot.generation().wrapping_add(1) & mask;
        slot.meta = u32::from(generation) << 16 | u32::from(tally.free);
        tally.free = index;
        tally.in_use -= 1;
        Ok(taken)
    }

    // Positional use: the slot index is the descriptor position (NIC rings,
    // virtio split heads); the free list is not used.

    /// Stores a value at `index`, which the ring's own positions say is
    /// vacant, after [`check_reclaimed`](Self::check_reclaimed) passed:
    /// nothing else can be there, so nothing is overwritten.
    pub(crate) fn put_at(&mut self, index: u16, value: T, posted: u32, count: u16, submitted: u32) {
        let slot = &mut self.storage.as_mut()[usize::from(index)];
        debug_assert!(slot.value.is_none());
        slot.value = Some(value);
        slot.posted = posted;
        slot.count = count;
        slot.submitted = submitted;
        self.in_use += 1;
    }

    /// Slot `index`'s posted length, descriptor count and submission
    /// number, if busy.
    pub(crate) fn peek_at(&self, index: u16) -> Option<Peeked> {
        let slot = self.storage.as_ref().get(usize::from(index))?;
        slot.value.as_ref().map(|_| Peeked {
            posted: slot.posted,
            count: slot.count,
            submitted: slot.submitted,
        })
    }

    /// Takes the value at `index`, if any.
    pub(crate) fn take_at(&mut self, index: u16) -> Option<Taken<T>> {
        let slot = self.storage.as_mut().get_mut(usize::from(index))?;
        let value = slot.value.take()?;
        self.in_use -= 1;
        Some(Taken {
            value,
            count: slot.count,
        })
    }

    /// The link stored at `index` (a virtio chain's next descriptor).
    pub(crate) fn link(&self, index: u16) -> u16 {
        self.storage.as_ref()[usize::from(index)].link()
    }

    /// Sets the link at `index`.
    pub(crate) fn set_link(&mut self, index: u16, link: u16) {
        self.storage.as_mut()[usize::from(index)].set_link(link);
    }

    /// Takes every value out (after a device reset), bumping generations
    /// so completions from before the reset are refused. Until the drain
    /// has handed back (or dropped) every value, the table refuses new
    /// ones ([`check_reclaimed`](Self::check_reclaimed)); if the drain is
    /// leaked, the next `drain` hands back what it left.
    pub(crate) fn drain(&mut self) -> Drain<'_, T> {
        let mask = self.generation_mask();
        let usable = self.usable as usize;
        let mut held = 0;
        for slot in &mut self.storage.as_mut()[..usable] {
            if slot.value.is_some() {
                held += 1;
                let generation = slot.generation().wrapping_add(1) & mask;
                slot.meta = u32::from(generation) << 16 | u32::from(slot.link());
            }
        }
        self.rebuild_free_list();
        self.unreclaimed = held;
        Drain {
            slots: self.storage.as_mut()[..usable].iter_mut(),
            unreclaimed: &mut self.unreclaimed,
        }
    }
}

/// What [`SlotTable::check`] found for an id in flight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checked {
    /// Its slot.
    pub(crate) index: u16,
    /// Bytes the device may write.
    pub(crate) posted: u32,
    /// Its submission number.
    pub(crate) submitted: u32,
}

/// What [`SlotTable::peek_at`] found at a busy position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peeked {
    /// Bytes the device may write.
    pub(crate) posted: u32,
    /// Descriptors the request occupies.
    pub(crate) count: u16,
    /// Its submission number.
    pub(crate) submitted: u32,
}

/// The buffers of every request that was in flight, handed back by a
/// ring's `reset`. Dropping it early drops the rest. Leaking it
/// (`mem::forget`) leaves the rest in the ring, which refuses new requests
/// with [`Unreclaimed`](RingErrorKind::Unreclaimed) until another `reset`
/// hands them back.
pub struct Drain<'a, T> {
    slots: core::slice::IterMut<'a, Slot<T>>,
    unreclaimed: &'a mut u32,
}

impl<T> Iterator for Drain<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let value = self.slots.by_ref().find_map(|s| s.value.take());
        if value.is_some() {
            *self.unreclaimed -= 1;
        }
        value
    }
}

impl<T> Drop for Drain<'_, T> {
    fn drop(&mut self) {
        for slot in self.slots.by_ref() {
            slot.value = None;
        }
        *self.unreclaimed = 0;
    }
}

impl<T> core::fmt::Debug for Drain<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Drain")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn table(n: usize) -> SlotTable<u32, Vec<Slot<u32>>> {
        SlotTable::tagged(slot_vec(n), u32::MAX).unwrap()
    }

    #[test]
    fn empty_storage_is_refused() {
        assert!(SlotTable::<u8, [Slot<u8>; 0]>::tagged(slots(), 8).is_err());
        assert!(SlotTable::<u8, [Slot<u8>; 4]>::tagged(slots(), 0).is_err());
    }

    #[test]
    fn insert_until_full_then_values_come_back_once() {
        let mut t = table(3);
        let ids: Vec<u16> = (0..3).map(|v| t.insert(v, 0, 1).unwrap()).collect();
        assert_eq!(t.insert(9, 0, 1), Err(9));
        assert!(t.is_full());
        assert_eq!(t.take(ids[1]).unwrap().value, 1);
        let again = t.take(ids[1]).unwrap_err();
        assert_eq!(again.kind(), RingErrorKind::NotInFlight);
        assert_eq!(t.in_use(), 2);
    }

    #[test]
    fn out_of_range_id_is_unknown() {
        let mut t = table(4);
        t.insert(1, 0, 1).unwrap();
        // 4 slots use 2 index bits; index 3 exists, an id with a large
        // index under a 16-slot table would not.
        let mut big = SlotTable::<u8, _>::tagged(slot_vec(5), u32::MAX).unwrap();
        assert_eq!(big.take(6).unwrap_err().kind(), RingErrorKind::UnknownId);
        assert_eq!(t.take(3).unwrap_err().kind(), RingErrorKind::NotInFlight);
    }

    #[test]
    fn stale_generation_after_reuse_is_refused() {
        let mut t = table(2);
        let first = t.insert(10, 0, 1).unwrap();
        t.take(first).unwrap();
        let second = t.insert(20, 0, 1).unwrap();
        assert_eq!(first & 1, second & 1, "same slot reused");
        assert_ne!(first, second, "with a new generation");
        assert_eq!(
            t.take(first).unwrap_err().kind(),
            RingErrorKind::NotInFlight
        );
        assert_eq!(t.take(second).unwrap().value, 20);
    }

    #[test]
    fn drain_returns_everything_once_and_refuses_old_ids() {
        let mut t = table(4);
        let a = t.insert(1, 0, 1).unwrap();
        t.insert(2, 0, 1).unwrap();
        let mut got: Vec<u32> = t.drain().collect();
        got.sort();
        assert_eq!(got, [1, 2]);
        assert_eq!(t.in_use(), 0);
        assert_eq!(t.take(a).unwrap_err().kind(), RingErrorKind::NotInFlight);
        for v in 0..4 {
            t.insert(v, 0, 1).unwrap();
        }
    }

    #[test]
    fn a_tally_batch_matches_single_operations_once_stored_back() {
        let mut t = table(4);
        let mut tally = t.tally();
        let ids: Vec<u16> = (0..4)
            .map(|v| t.insert_id_in(&mut tally, v, 0).unwrap())
            .collect();
        assert_eq!(t.insert_id_in(&mut tally, 9, 0), Err(9));
        assert_eq!((tally.in_use(), t.in_use()), (4, 0), "table untouched");
        t.set_tally(tally);
        assert!(t.is_full());

        let mut tally = t.tally();
        for &id in &ids[1..3] {
            let index = t.check(id).unwrap().index;
            t.take_checked_in(&mut tally, index).unwrap();
        }
        t.set_tally(tally);
        assert_eq!(t.in_use(), 2);
        // Freed slots come back last-freed first, each with a new
        // generation, and their old ids stay refused.
        let again = [t.insert(7, 0, 1).unwrap(), t.insert(8, 0, 1).unwrap()];
        assert_eq!(again.map(|id| id & 3), [ids[2] & 3, ids[1] & 3]);
        assert_ne!(again, [ids[2], ids[1]]);
        for &id in &ids[1..3] {
            assert_eq!(t.take(id).unwrap_err().kind(), RingErrorKind::NotInFlight);
        }
    }

    #[test]
    fn values_inserted_against_a_lost_tally_are_adopted_in_order() {
        let mut t = table(4);
        let kept = t.insert_id(1, 0).unwrap();
        let mut tally = t.tally();
        let lost = [
            t.insert_id_in(&mut tally, 2, 1).unwrap(),
            t.insert_id_in(&mut tally, 3, 2).unwrap(),
        ];
        // The tally is dropped, never stored back: the table still counts
        // one value and would hand the lost ones' slots out again.
        assert_eq!(t.in_use(), 1);
        assert_eq!(t.adopt_inserted(2), 2);
        assert_eq!(t.in_use(), 3);
        let next = t.insert_id(4, 3).unwrap();
        assert!(!lost.contains(&next) && next != kept, "a free slot");
        assert_eq!(t.adopt_inserted(1), 0, "nothing left to adopt");
        for (id, value) in [(kept, 1), (lost[0], 2), (lost[1], 3), (next, 4)] {
            assert_eq!(t.take(id).unwrap().value, value);
        }
    }

    #[test]
    fn link_and_generation_share_a_word_without_disturbing_each_other() {
        let mut t = table(2);
        let id = t.insert(1, 0, 1).unwrap();
        t.set_link(0, 0xbeef);
        assert_eq!(t.link(0), 0xbeef);
        assert_eq!(t.take(id).unwrap().value, 1);
        // Taking linked the slot into the free list, bumping the
        // generation only.
        assert_eq!(t.storage[0].generation(), 1);
        assert_ne!(t.link(0), 0xbeef);
        t.set_link(0, 0x1234);
        assert_eq!(t.storage[0].generation(), 1);
    }

    #[test]
    fn a_huge_tagged_table_keeps_generation_bits_and_refuses_a_replay() {
        // 65535 slots offered: only MAX_TAGGED_SLOTS are used, so ids keep
        // MIN_GENERATION_BITS of generation and a replayed id of a reused
        // slot is refused. (Under Miri, which takes most of a minute to
        // clear 65535 slots, one more than the cap shows the same.)
        let offered = if cfg!(miri) {
            MAX_TAGGED_SLOTS as usize + 1
        } else {
            65535
        };
        let mut t = SlotTable::<u8, _>::tagged(slot_vec(offered), u32::MAX).unwrap();
        assert_eq!(t.usable(), MAX_TAGGED_SLOTS);
        let first = t.insert(7, 0, 1).unwrap();
        assert_eq!(t.take(first).unwrap().value, 7);
        let second = t.insert(8, 0, 1).unwrap();
        assert_eq!(first % 4096, second % 4096, "same slot reused");
        assert_eq!(
            t.take(first).unwrap_err().kind(),
            RingErrorKind::NotInFlight
        );
        assert_eq!(t.take(second).unwrap().value, 8);
        assert_eq!(t.take(4096).unwrap_err().kind(), RingErrorKind::NotInFlight);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "65,536 slots take minutes under Miri; natively it runs"
    )]
    fn a_positional_table_of_65536_drains_position_65535() {
        let mut t = SlotTable::<u32, _>::positional(slot_vec(65536), 65536).unwrap();
        assert_eq!(t.usable(), 65536);
        t.put_at(65535, 1, 0, 1, 0);
        t.put_at(0, 2, 0, 1, 0);
        let mut got: Vec<u32> = t.drain().collect();
        got.sort();
        assert_eq!(got, [1, 2]);
    }

    #[test]
    fn a_leaked_drain_blocks_inserts_until_a_new_drain_hands_the_rest_back() {
        let mut t = table(2);
        t.insert(1, 0, 1).unwrap();
        t.insert(2, 0, 1).unwrap();
        let mut drain = t.drain();
        let first = drain.next().unwrap();
        core::mem::forget(drain);
        assert_eq!(
            t.check_reclaimed(),
            Err(RingErrorKind::Unreclaimed),
            "one value is still in a slot"
        );
        assert_eq!(t.insert(3, 0, 1), Err(3));
        let rest: Vec<u32> = t.drain().collect();
        assert_eq!((first, rest.as_slice()), (1, &[2][..]));
        assert_eq!(t.check_reclaimed(), Ok(()));
        t.insert(3, 0, 1).unwrap();
    }

    #[test]
    fn only_the_last_unannounced_submissions_are_unannounced() {
        // Submissions 0..10 made, the last 3 not announced.
        assert!(!is_unannounced(6, 10, 3));
        assert!(is_unannounced(7, 10, 3));
        assert!(is_unannounced(9, 10, 3));
        assert!(!is_unannounced(9, 10, 0));
        // Across the counter's wrap.
        assert!(is_unannounced(u32::MAX, 1, 2));
        assert!(!is_unannounced(u32::MAX - 1, 1, 2));
    }
}
