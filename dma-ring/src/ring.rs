//! The ring core: producer and consumer positions in a ring of any size.
//!
//! NVMe queues and NIC rings are not powers of two in general, so
//! positions wrap by comparison, not by masking. One slot stays empty so
//! that `head == tail` means empty and `tail + 1 == head` full (NVMe base
//! spec 2.0 §3.3.1.5 "Full Queue"; the 8254x rings use the same rule).
//!
//! The producer may add several entries and tell the device once
//! ([`take_doorbell`](RingCursor::take_doorbell)): one doorbell write for a
//! batch, which is where much of a ring's throughput comes from.

use crate::{RingError, RingErrorKind};

/// Positions in a ring of `size` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingCursor {
    size: u32,
    head: u32,
    tail: u32,
    announced: u32,
}

impl RingCursor {
    /// A ring of `size` entries, `2..=65536`, empty.
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize) outside that range.
    pub const fn new(size: u32) -> crate::Result<Self> {
        if size < 2 || size > 65536 {
            return Err(RingError::with(RingErrorKind::InvalidSize, size as u64));
        }
        Ok(Self {
            size,
            head: 0,
            tail: 0,
            announced: 0,
        })
    }

    /// Number of entries.
    #[inline]
    pub const fn size(&self) -> u32 {
        self.size
    }

    /// The most entries that can be outstanding (`size - 1`).
    #[inline]
    pub const fn capacity(&self) -> u32 {
        self.size - 1
    }

    /// The oldest entry not yet consumed.
    #[inline]
    pub const fn head(&self) -> u32 {
        self.head
    }

    /// The next entry the producer writes.
    #[inline]
    pub const fn tail(&self) -> u32 {
        self.tail
    }

    /// The tail the device was last told about.
    #[inline]
    pub const fn announced(&self) -> u32 {
        self.announced
    }

    /// The position `n` entries after `pos`.
    #[inline]
    pub const fn advance(&self, pos: u32, n: u32) -> u32 {
        // Positions are below `size` and steps at most a lap, so one
        // subtraction wraps them; a division (tens of cycles) is left for
        // anything else.
        let sum = pos as u64 + n as u64;
        if sum < self.size as u64 {
            sum as u32
        } else if sum < 2 * self.size as u64 {
            (sum - self.size as u64) as u32
        } else {
            (sum % self.size as u64) as u32
        }
    }

    /// The position after `pos`, which is below [`size`](Self::size).
    #[inline]
    pub(crate) const fn next(&self, pos: u32) -> u32 {
        if pos + 1 == self.size {
            0
        } else {
            pos + 1
        }
    }

    /// How many entries from `from` forward to `to`.
    ///
    /// # Errors
    ///
    /// [`PositionOutOfRange`](RingErrorKind::PositionOutOfRange) if either
    /// position is not below [`size`](Self::size).
    #[inline]
    pub const fn distance(&self, from: u32, to: u32) -> crate::Result<u32> {
        if from >= self.size {
            return Err(RingError::with(
                RingErrorKind::PositionOutOfRange,
                from as u64,
            ));
        }
        if to >= self.size {
            return Err(RingError::with(
                RingErrorKind::PositionOutOfRange,
                to as u64,
            ));
        }
        Ok(self.span(from, to))
    }

    /// [`distance`](Self::distance) between positions the cursor keeps or
    /// checked, both below `size`.
    #[inline]
    pub(crate) const fn span(&self, from: u32, to: u32) -> u32 {
        if to >= from {
            to - from
        } else {
            self.size - from + to
        }
    }

    /// Entries produced and not yet consumed.
    #[inline]
    pub const fn len(&self) -> u32 {
        self.span(self.head, self.tail)
    }

    /// Whether nothing is outstanding.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Whether no entry can be produced.
    #[inline]
    pub const fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Free entries.
    #[inline]
    pub const fn free(&self) -> u32 {
        self.capacity() - self.len()
    }

    /// Claims the entry at the tail, or `None` when full.
    #[inline]
    pub fn push(&mut self) -> Option<u32> {
        if self.is_full() {
            return None;
        }
        let pos = self.tail;
        self.tail = self.advance(pos, 1);
        Some(pos)
    }

    /// Moves the tail to `tail`, which a batch reached by claiming entries
    /// one by one from [`tail`](Self::tail) while at most
    /// [`free`](Self::free) were free.
    #[inline]
    pub(crate) fn set_produced_tail(&mut self, tail: u32) {
        debug_assert!(self.span(self.tail, tail) <= self.free());
        self.tail = tail;
    }

    /// Entries produced since the last doorbell.
    #[inline]
    pub const fn unannounced(&self) -> u32 {
        self.span(self.announced, self.tail)
    }

    /// The new tail to write to the doorbell, if anything was produced
    /// since the last one; records it as announced.
    #[inline]
    pub fn take_doorbell(&mut self) -> Option<u32> {
        if self.announced == self.tail {
            return None;
        }
        self.announced = self.tail;
        Some(self.tail)
    }

    /// Checks a head the device reported: it must lie in
    /// `head..=announced`, the entries the device was told about. Returns
    /// how many entries it consumes.
    ///
    /// # Errors
    ///
    /// [`IndexJump`](RingErrorKind::IndexJump) otherwise (past the end,
    /// beyond the announced tail, or backwards).
    #[inline]
    pub const fn check_head(&self, new_head: u32) -> crate::Result<u32> {
        let head = self.head;
        if new_head >= self.size {
            return Err(RingError::with(RingErrorKind::IndexJump, new_head as u64));
        }
        let n = self.span(head, new_head);
        if n > self.span(head, self.announced) {
            return Err(RingError::with(RingErrorKind::IndexJump, new_head as u64));
        }
        Ok(n)
    }

    /// Moves the head to a position [`check_head`](Self::check_head)
    /// accepted.
    ///
    /// # Errors
    ///
    /// As for `check_head`; nothing changes then.
    #[inline]
    pub fn set_head(&mut self, new_head: u32) -> crate::Result<u32> {
        let n = self.check_head(new_head)?;
        self.head = new_head;
        Ok(n)
    }

    /// Moves the head to `new_head`, which the caller had
    /// [`check_head`](Self::check_head) accept since the last change.
    #[inline]
    pub(crate) fn set_checked_head(&mut self, new_head: u32) {
        debug_assert!(self.check_head(new_head).is_ok());
        self.head = new_head;
    }

    /// Consumes `n` entries at the head (the driver reaping in order).
    ///
    /// # Errors
    ///
    /// [`IndexJump`](RingErrorKind::IndexJump) if fewer than `n` were
    /// announced.
    #[inline]
    pub fn consume(&mut self, n: u32) -> crate::Result<()> {
        if n > self.span(self.head, self.announced) {
            return Err(RingError::with(RingErrorKind::IndexJump, n.into()));
        }
        self.head = self.advance(self.head, n);
        Ok(())
    }

    /// Back to empty at position 0 (after a device reset).
    pub fn reset(&mut self) {
        self.head = 0;
        self.tail = 0;
        self.announced = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_outside_two_to_65536_are_refused() {
        assert_eq!(
            RingCursor::new(1).unwrap_err().kind(),
            RingErrorKind::InvalidSize
        );
        assert_eq!(
            RingCursor::new(65537).unwrap_err().kind(),
            RingErrorKind::InvalidSize
        );
        assert!(RingCursor::new(65536).is_ok());
    }

    #[test]
    fn odd_size_wraps_and_keeps_one_slot_empty() {
        let mut r = RingCursor::new(3).unwrap();
        assert_eq!(r.push(), Some(0));
        assert_eq!(r.push(), Some(1));
        assert!(r.is_full());
        assert_eq!(r.push(), None);
        assert_eq!(r.take_doorbell(), Some(2));
        assert_eq!(r.take_doorbell(), None);
        r.set_head(2).unwrap();
        assert!(r.is_empty());
        assert_eq!(r.push(), Some(2));
        assert_eq!(r.push(), Some(0));
        assert_eq!(r.tail(), 1);
    }

    #[test]
    fn head_beyond_announced_tail_is_a_jump() {
        let mut r = RingCursor::new(5).unwrap();
        r.push();
        r.push();
        r.take_doorbell();
        r.push(); // produced, not announced
        assert_eq!(
            r.check_head(3).unwrap_err().kind(),
            RingErrorKind::IndexJump
        );
        assert_eq!(
            r.check_head(7).unwrap_err().kind(),
            RingErrorKind::IndexJump
        );
        assert_eq!(r.set_head(2), Ok(2));
        // Backwards is a jump too: it reads as nearly a full lap forward.
        assert_eq!(
            r.check_head(1).unwrap_err().kind(),
            RingErrorKind::IndexJump
        );
        assert_eq!(r.consume(1).unwrap_err().kind(), RingErrorKind::IndexJump);
    }

    #[test]
    fn distance_refuses_positions_outside_the_ring() {
        let r = RingCursor::new(5).unwrap();
        assert_eq!(r.distance(3, 1), Ok(3));
        assert_eq!(r.distance(4, 4), Ok(0));
        for (from, to) in [(5, 0), (0, 5), (u32::MAX, 2), (1, u32::MAX)] {
            let e = r.distance(from, to).unwrap_err();
            assert_eq!(e.kind(), RingErrorKind::PositionOutOfRange);
            assert_eq!(e.value(), Some(u64::from(from.max(to))));
        }
    }

    #[test]
    fn advance_wraps_any_step() {
        let r = RingCursor::new(5).unwrap();
        assert_eq!(r.advance(3, 1), 4);
        assert_eq!(r.advance(4, 1), 0);
        assert_eq!(r.advance(4, 5), 4);
        assert_eq!(r.advance(4, 12), 1);
        assert_eq!(r.advance(0, u32::MAX), (u32::MAX % 5));
    }

    proptest! {
        #[test]
        fn len_matches_a_model(size in 2u32..40, ops in proptest::collection::vec(0u8..3, 0..200)) {
            let mut r = RingCursor::new(size).unwrap();
            let mut produced = 0u32;
            let mut consumed = 0u32;
            let mut announced = 0u32;
            for op in ops {
                match op {
                    0 => if r.push().is_some() { produced += 1 },
                    1 => if r.take_doorbell().is_some() { announced = produced },
                    _ => if announced > consumed { r.consume(1).unwrap(); consumed += 1 },
                }
                prop_assert_eq!(r.len(), produced - consumed);
                prop_assert!(r.len() <= r.capacity());
                prop_assert_eq!(r.tail(), produced % size);
                prop_assert_eq!(r.head(), consumed % size);
            }
        }
    }
}
