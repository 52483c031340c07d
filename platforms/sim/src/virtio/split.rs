//! The device side of a split virtqueue (virtio 1.2 §2.7), read from raw
//! bytes at the spec's offsets through the device's [`Bus`].
//!
//! Layout (§2.7, for a queue of `size` entries):
//! - descriptor table: `size` × 16 bytes, `addr: le64, len: le32,
//!   flags: le16, next: le16` (§2.7.5), 16-byte aligned;
//! - driver area (available ring): `flags: le16, idx: le16,
//!   ring: [le16; size], used_event: le16` (§2.7.6), 2-byte aligned;
//! - device area (used ring): `flags: le16, idx: le16,
//!   ring: [{id: le32, len: le32}; size], avail_event: le16` (§2.7.8),
//!   4-byte aligned.
//!
//! Everything the driver wrote is untrusted: a chain that loops, leaves
//! the table, nests indirect tables, puts a readable descriptor after a
//! writable one or totals more than 2^32 bytes is a [`ChainError`], which
//! the transport turns into `DEVICE_NEEDS_RESET`.

use dma_core::DmaAddr;

use super::Features;
use crate::{Bus, Fault};

/// Descriptor flag bits (§2.7.5).
pub mod desc_flags {
    /// The chain continues in `next`.
    pub const NEXT: u16 = 1;
    /// The buffer is device-writable (otherwise device-readable).
    pub const WRITE: u16 = 2;
    /// The buffer holds a table of indirect descriptors (§2.7.5.3).
    pub const INDIRECT: u16 = 4;
}

/// Bytes per descriptor (§2.7.5).
pub const DESC_SIZE: u64 = 16;
/// Bytes per used-ring element (§2.7.8).
const USED_ELEM_SIZE: u64 = 8;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT` (§2.7.7).
const AVAIL_NO_INTERRUPT: u16 = 1;

/// Why a chain or ring access was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A device access to ring or table memory faulted.
    Dma(Fault),
    /// The driver broke a rule of §2.7; the text names it.
    Malformed(&'static str),
}

impl From<Fault> for ChainError {
    fn from(f: Fault) -> Self {
        Self::Dma(f)
    }
}

impl core::fmt::Display for ChainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Dma(fault) => write!(f, "ring access faulted: {fault}"),
            Self::Malformed(why) => f.write_str(why),
        }
    }
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Device address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable.
    pub writable: bool,
}

/// A descriptor chain taken from the available ring: its head (the id the
/// used ring returns) and its buffers, readable ones first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// Index of the head descriptor (split) or the buffer id (packed):
    /// what the used ring returns.
    pub head: u16,
    /// The buffers in chain order.
    pub segments: Vec<Segment>,
    /// Packed: ring descriptors the chain occupied (the used position
    /// skips that many). 0 for split chains.
    pub ring_len: u16,
}

impl Chain {
    /// Bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| !s.writable)
            .map(|s| u64::from(s.len))
            .sum()
    }

    /// Bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.writable)
            .map(|s| u64::from(s.len))
            .sum()
    }

    /// Reads the whole readable part through `bus`.
    ///
    /// # Errors
    ///
    /// The fault of the first buffer the bus refused.
    pub fn read_all(&self, bus: &Bus) -> Result<Vec<u8>, Fault> {
        let mut out = vec![0u8; self.readable_len() as usize];
        let mut at = 0;
        for s in self.segments.iter().filter(|s| !s.writable) {
            let n = s.len as usize;
            bus.read(DmaAddr::new(s.addr), &mut out[at..at + n])?;
            at += n;
        }
        Ok(out)
    }

    /// Writes `data` at byte `offset` of the writable part, across buffer
    /// boundaries. The caller keeps `offset + data.len()` within
    /// [`writable_len`](Self::writable_len).
    ///
    /// # Errors
    ///
    /// The fault of the first buffer the bus refused.
    pub fn write_at(&self, bus: &Bus, offset: u64, data: &[u8]) -> Result<(), Fault> {
        let mut start = 0u64; // offset of the current segment in the writable part
        let mut done = 0usize;
        for s in self.segments.iter().filter(|s| s.writable) {
            let end = start + u64::from(s.len);
            let at = offset + done as u64;
            if done < data.len() && at < end && at >= start {
                let n = ((end - at) as usize).min(data.len() - done);
                bus.write(DmaAddr::new(s.addr + (at - start)), &data[done..done + n])?;
                done += n;
            }
            start = end;
        }
        Ok(())
    }
}

/// One queue as the driver configured it (§4.2.2 `QueueNum`, `QueueDesc`,
/// `QueueDriver`, `QueueDevice`) and the device's position in it. The
/// split ring's operations are here; the packed ring's are in
/// [`packed`](super::packed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Virtqueue {
    /// Entries (`QueueNum`).
    pub size: u16,
    /// Descriptor table (split) or descriptor ring (packed).
    pub desc: u64,
    /// Driver area: available ring (split) or driver event suppression
    /// structure (packed).
    pub driver: u64,
    /// Device area: used ring (split) or device event suppression
    /// structure (packed).
    pub device: u64,
    /// `QueueReady`.
    pub ready: bool,
    /// Split: the next available-ring index the device takes. Packed: the
    /// ring index of the next descriptor to look at.
    pub last_avail: u16,
    /// Split: the device's used index (what it last published). Packed:
    /// the ring index the next used descriptor is written at.
    pub used_idx: u16,
    /// Packed: the device's available wrap counter (§2.8.1).
    pub avail_wrap: bool,
    /// Packed: the device's used wrap counter.
    pub used_wrap: bool,
}

pub(crate) fn read_u16(bus: &Bus, addr: u64) -> Result<u16, Fault> {
    let mut b = [0u8; 2];
    bus.read(DmaAddr::new(addr), &mut b)?;
    Ok(u16::from_le_bytes(b))
}

pub(crate) fn write_u16(bus: &Bus, addr: u64, value: u16) -> Result<(), Fault> {
    bus.write(DmaAddr::new(addr), &value.to_le_bytes())
}

/// Wrap-safe "has `event` been passed": §2.7.7.2's `vring_need_event`.
pub(crate) fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl Virtqueue {
    /// Checks the configuration the driver made ready (§2.7 alignment
    /// table; a size of at least 1).
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn validate(&self) -> Result<(), ChainError> {
        if self.size == 0 {
            return Err(ChainError::Malformed("QueueReady set with QueueNum 0"));
        }
        if self.desc % 16 != 0 || self.driver % 2 != 0 || self.device % 4 != 0 {
            return Err(ChainError::Malformed(
                "queue areas misaligned (descriptors 16, driver area 2, device area 4 bytes; §2.7)",
            ));
        }
        Ok(())
    }

    /// Takes the next available chain, if the driver published one.
    ///
    /// # Errors
    ///
    /// A faulting ring access or a malformed chain; the queue has then
    /// consumed the entry.
    pub fn pop(&mut self, bus: &Bus, features: Features) -> Result<Option<Chain>, ChainError> {
        let avail_idx = read_u16(bus, self.driver + 2)?;
        let pending = avail_idx.wrapping_sub(self.last_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(ChainError::Malformed(
                "available index moved more than the queue size ahead (§2.7.13)",
            ));
        }
        let slot = u64::from(self.last_avail % self.size);
        let head = read_u16(bus, self.driver + 4 + 2 * slot)?;
        self.last_avail = self.last_avail.wrapping_add(1);
        if features.contains(Features::EVENT_IDX) {
            // Ask for a notification at the next new entry (§2.7.10): the
            // driver then always notifies after publishing past it.
            write_u16(bus, self.avail_event_addr(), self.last_avail)?;
        }
        self.walk(bus, features, head).map(Some)
    }

    fn avail_event_addr(&self) -> u64 {
        self.device + 4 + USED_ELEM_SIZE * u64::from(self.size)
    }

    fn used_event_addr(&self) -> u64 {
        self.driver + 4 + 2 * u64::from(self.size)
    }

    /// Follows the chain at `head`, through at most one indirect table.
    fn walk(&self, bus: &Bus, features: Features, head: u16) -> Result<Chain, ChainError> {
        if head >= self.size {
            return Err(ChainError::Malformed(
                "chain head outside the descriptor table",
            ));
        }
        let mut chain = Chain {
            head,
            ..Chain::default()
        };
        let (mut table, mut count) = (self.desc, u64::from(self.size));
        let mut index = u64::from(head);
        let mut indirect = false;
        let mut visited = 0u64;
        let mut total = 0u64;
        loop {
            visited += 1;
            if visited > count {
                return Err(ChainError::Malformed(
                    "descriptor chain longer than its table (a loop; §2.7.5.3.1)",
                ));
            }
            let mut raw = [0u8; DESC_SIZE as usize];
            bus.read(DmaAddr::new(table + index * DESC_SIZE), &mut raw)?;
            let addr = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);
            if flags & desc_flags::INDIRECT != 0 {
                if !features.contains(Features::INDIRECT_DESC) {
                    return Err(ChainError::Malformed(
                        "indirect descriptor without VIRTIO_F_INDIRECT_DESC (§2.7.5.3.1)",
                    ));
                }
                if indirect {
                    return Err(ChainError::Malformed(
                        "indirect descriptor inside an indirect table (§2.7.5.3.1)",
                    ));
                }
                if flags & desc_flags::NEXT != 0 {
                    return Err(ChainError::Malformed(
                        "descriptor has both INDIRECT and NEXT (§2.7.5.3.1)",
                    ));
                }
                if len == 0 || u64::from(len) % DESC_SIZE != 0 {
                    return Err(ChainError::Malformed(
                        "indirect table length is not a non-zero multiple of 16 (§2.7.5.3.1)",
                    ));
                }
                if !chain.segments.is_empty() {
                    return Err(ChainError::Malformed(
                        "indirect descriptor after direct ones in a chain (§2.7.5.3.1)",
                    ));
                }
                (table, count, index, visited, indirect) = (addr, u64::from(len) / 16, 0, 0, true);
                continue;
            }
            let writable = flags & desc_flags::WRITE != 0;
            if !writable && chain.segments.iter().any(|s| s.writable) {
                return Err(ChainError::Malformed(
                    "device-readable descriptor after a device-writable one (§2.7.4.2)",
                ));
            }
            total += u64::from(len);
            if total > u64::from(u32::MAX) {
                return Err(ChainError::Malformed(
                    "descriptor chain totals more than 2^32 bytes (§2.7.5.2)",
                ));
            }
            chain.segments.push(Segment {
                addr,
                len,
                writable,
            });
            if flags & desc_flags::NEXT == 0 {
                return Ok(chain);
            }
            index = u64::from(next);
            if index >= count {
                return Err(ChainError::Malformed(
                    "descriptor `next` outside its table (§2.7.5.3.1)",
                ));
            }
        }
    }

    /// Returns a chain to the driver with `written` bytes written (§2.7.8):
    /// the element first, then the index. Returns whether the driver asked
    /// for an interrupt (§2.7.7.2, `used_event` with `EVENT_IDX`, the
    /// `NO_INTERRUPT` flag without).
    ///
    /// # Errors
    ///
    /// A faulting ring access.
    pub fn push_used(
        &mut self,
        bus: &Bus,
        features: Features,
        head: u16,
        written: u32,
    ) -> Result<bool, ChainError> {
        let slot = u64::from(self.used_idx % self.size);
        let elem = self.device + 4 + USED_ELEM_SIZE * slot;
        let mut raw = [0u8; USED_ELEM_SIZE as usize];
        raw[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        raw[4..].copy_from_slice(&written.to_le_bytes());
        bus.write(DmaAddr::new(elem), &raw)?;
        let old = self.used_idx;
        self.used_idx = self.used_idx.wrapping_add(1);
        write_u16(bus, self.device + 2, self.used_idx)?;
        if features.contains(Features::EVENT_IDX) {
            let event = read_u16(bus, self.used_event_addr())?;
            Ok(need_event(event, self.used_idx, old))
        } else {
            Ok(read_u16(bus, self.driver)? & AVAIL_NO_INTERRUPT == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::need_event;

    #[test]
    fn need_event_is_wrap_safe() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(5, 1, 0));
        assert!(need_event(u16::MAX, 0, u16::MAX));
        assert!(need_event(u16::MAX - 1, 1, u16::MAX - 2));
        assert!(!need_event(3, 1, u16::MAX));
    }
}
