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
//! Storage is the caller's: an array `[Slot<T>; N]` without `alloc`, a
//! `Vec` or boxed slice with it.

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
}

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn vacant() -> Self {
        Self {
            value: None,
            meta: 0,
            posted: 0,
            count: 0,
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

/// Storage a ring keeps its in-flight table in: anything that is a mutable
/// slice of slots (`[Slot<T>; N]`, `Vec<Slot<T>>`, `Box<[Slot<T>]>`,
/// `&mut [Slot<T>]`).
pub trait SlotStorage<T>: AsRef<[Slot<T>]> + AsMut<[Slot<T>]> {}
impl<T, S: AsRef<[Slot<T>]> + AsMut<[Slot<T>]>> SlotStorage<T> for S {}

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
    index_bits: u32,
    _marker: core::marker::PhantomData<T>,
}

impl<T, S: SlotStorage<T>> SlotTable<T, S> {
    /// A table over the first `min(storage.len(), limit)` slots (at most
    /// 65535), all made vacant.
    pub(crate) fn new(mut storage: S, limit: u32) -> crate::Result<Self> {
        let len = storage.as_ref().len();
        let usable = len.min(limit as usize).min(usize::from(NONE));
        if usable == 0 {
            return Err(RingError::with(RingErrorKind::InvalidSize, len as u64));
        }
        for slot in storage.as_mut() {
            *slot = Slot::vacant();
        }
        let usable = usable as u32;
        let mut table = Self {
            storage,
            usable,
            free: NONE,
            in_use: 0,
            index_bits: u32::BITS - (usable - 1).leading_zeros(),
            _marker: core::marker::PhantomData,
        };
        table.rebuild_free_list();
        Ok(table)
    }

    fn rebuild_free_list(&mut self) {
        let usable = self.usable as usize;
        for (i, slot) in self.storage.as_mut()[..usable].iter_mut().enumerate() {
            slot.set_link(if i + 1 < usable { (i + 1) as u16 } else { NONE });
        }
        self.free = 0;
        self.in_use = 0;
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

    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.in_use == self.usable
    }

    #[inline]
    fn generation_mask(&self) -> u16 {
        (u32::from(u16::MAX) >> self.index_bits) as u16
    }

    #[inline]
    fn id(&self, index: u16) -> u16 {
        if self.index_bits >= 16 {
            return index;
        }
        index | (self.storage.as_ref()[usize::from(index)].generation() << self.index_bits)
    }

    #[inline]
    fn split(&self, id: u16) -> (u16, u16) {
        if self.index_bits >= 16 {
            return (id, 0);
        }
        let index = id & ((1u16 << self.index_bits) - 1);
        (index, id >> self.index_bits)
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

    /// Stores `value` in a free slot and returns its id, leaving the slot's
    /// posted length and descriptor count as they were: for protocols that
    /// use neither (NVMe), one store less per request on the hot path.
    #[inline]
    pub(crate) fn insert_id(&mut self, value: T) -> Result<u16, T> {
        let index = self.insert_value(value)?;
        Ok(self.id(index))
    }

    #[inline]
    fn insert_value(&mut self, value: T) -> Result<u16, T> {
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

    /// [`insert_id`](Self::insert_id) against a batch's `tally`.
    #[inline]
    pub(crate) fn insert_id_in(&mut self, tally: &mut Tally, value: T) -> Result<u16, T> {
        let index = self.insert_value_in(tally, value)?;
        Ok(self.id(index))
    }

    #[inline]
    fn insert_value_in(&mut self, tally: &mut Tally, value: T) -> Result<u16, T> {
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

    /// Looks an id up without taking it: its slot index and posted length.
    #[inline]
    pub(crate) fn check(&self, id: u16) -> crate::Result<(u16, u32)> {
        let (index, generation) = self.split(id);
        if u32::from(index) >= self.usable {
            return Err(RingError::with(RingErrorKind::UnknownId, id.into()));
        }
        let slot = &self.storage.as_ref()[usize::from(index)];
        if slot.value.is_none() || slot.generation() != generation {
            return Err(RingError::with(RingErrorKind::NotInFlight, id.into()));
        }
        Ok((index, slot.posted))
    }

    /// Takes an id's value out, bumping the slot's generation.
    #[inline]
    pub(crate) fn take(&mut self, id: u16) -> crate::Result<Taken<T>> {
        let (index, _) = self.check(id)?;
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

    /// Stores a value at `index`, which the caller knows is vacant.
    pub(crate) fn put_at(&mut self, index: u16, value: T, posted: u32, count: u16) {
        let slot = &mut self.storage.as_mut()[usize::from(index)];
        debug_assert!(slot.value.is_none());
        slot.value = Some(value);
        slot.posted = posted;
        slot.count = count;
        self.in_use += 1;
    }

    /// Slot `index`'s posted length and descriptor count, if busy.
    pub(crate) fn peek_at(&self, index: u16) -> Option<(u32, u16)> {
        let slot = self.storage.as_ref().get(usize::from(index))?;
        slot.value.as_ref().map(|_| (slot.posted, slot.count))
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
    /// so completions from before the reset are refused.
    pub(crate) fn drain(&mut self) -> Drain<'_, T> {
        let mask = self.generation_mask();
        let usable = self.usable as usize;
        for slot in &mut self.storage.as_mut()[..usable] {
            if slot.value.is_some() {
                let generation = slot.generation().wrapping_add(1) & mask;
                slot.meta = u32::from(generation) << 16 | u32::from(slot.link());
            }
        }
        self.rebuild_free_list();
        Drain {
            slots: self.storage.as_mut()[..usable].iter_mut(),
        }
    }
}

/// The buffers of every request that was in flight, handed back by a
/// ring's `reset`. Dropping it early drops the rest.
pub struct Drain<'a, T> {
    slots: core::slice::IterMut<'a, Slot<T>>,
}

impl<T> Iterator for Drain<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.slots.by_ref().find_map(|s| s.value.take())
    }
}

impl<T> Drop for Drain<'_, T> {
    fn drop(&mut self) {
        for slot in self.slots.by_ref() {
            slot.value = None;
        }
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
        SlotTable::new(slot_vec(n), u32::MAX).unwrap()
    }

    #[test]
    fn empty_storage_is_refused() {
        assert!(SlotTable::<u8, [Slot<u8>; 0]>::new(slots(), 8).is_err());
        assert!(SlotTable::<u8, [Slot<u8>; 4]>::new(slots(), 0).is_err());
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
        let mut big = SlotTable::<u8, _>::new(slot_vec(5), u32::MAX).unwrap();
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
            .map(|v| t.insert_id_in(&mut tally, v).unwrap())
            .collect();
        assert_eq!(t.insert_id_in(&mut tally, 9), Err(9));
        assert_eq!((tally.in_use(), t.in_use()), (4, 0), "table untouched");
        t.set_tally(tally);
        assert!(t.is_full());

        let mut tally = t.tally();
        for &id in &ids[1..3] {
            let (index, _) = t.check(id).unwrap();
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
    fn full_sixteen_bit_table_has_no_generation() {
        let mut t = SlotTable::<u8, _>::new(slot_vec(65535), u32::MAX).unwrap();
        let id = t.insert(7, 0, 1).unwrap();
        assert_eq!(id, 0);
        assert_eq!(t.take(0).unwrap().value, 7);
        assert_eq!(t.take(65535).unwrap_err().kind(), RingErrorKind::UnknownId);
    }
}
