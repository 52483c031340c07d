//! Queue index arithmetic shared by the command and event queues (Arm IHI
//! 0070 E.a §3.5 "Command and Event queues"): a PROD or CONS value holds
//! the index in its low `log2size` bits and a wrap flag in the bit above,
//! so a full queue (same index, different wrap) and an empty one (same
//! index and wrap) differ.

/// The position part (index plus wrap bit) of a queue of `2^log2size` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueIndex {
    log2size: u32,
    value: u32,
}

impl QueueIndex {
    /// The position from a raw PROD/CONS register value (other bits dropped).
    pub const fn new(log2size: u32, raw: u32) -> Self {
        Self {
            log2size,
            value: raw & ((2 << log2size) - 1),
        }
    }

    /// The entry index.
    pub const fn index(self) -> u32 {
        self.value & ((1 << self.log2size) - 1)
    }

    /// The wrap flag.
    pub const fn wrap(self) -> bool {
        self.value >> self.log2size & 1 != 0
    }

    /// The raw value (index and wrap) for the register.
    pub const fn raw(self) -> u32 {
        self.value
    }

    /// The next position: the index advances, toggling wrap at the end.
    pub const fn next(self) -> Self {
        Self::new(self.log2size, self.value + 1)
    }

    /// True when a queue with producer `self` and consumer `cons` is full.
    pub const fn is_full(self, cons: Self) -> bool {
        self.index() == cons.index() && self.wrap() != cons.wrap()
    }

    /// True when a queue with producer `self` and consumer `cons` is empty.
    pub const fn is_empty(self, cons: Self) -> bool {
        self.value == cons.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_toggles() {
        let mut p = QueueIndex::new(2, 0);
        let c = QueueIndex::new(2, 0);
        assert!(p.is_empty(c));
        for _ in 0..4 {
            assert!(!p.is_full(c));
            p = p.next();
        }
        assert!(p.is_full(c));
        assert_eq!((p.index(), p.wrap(), p.raw()), (0, true, 4));
        for _ in 0..4 {
            p = p.next();
        }
        assert_eq!(p.raw(), 0, "wrap toggles back after two laps");
        // Bits above the wrap flag (errors, overflow flags) are dropped.
        assert_eq!(QueueIndex::new(2, 0x8000_0005).raw(), 5);
    }
}
