//! The device side of a packed virtqueue (virtio 1.2 §2.8), read from raw
//! bytes at the spec's offsets through the device's [`Bus`].
//!
//! Layout (§2.8.13, for a queue of `size` entries):
//! - descriptor ring: `size` × 16 bytes, `addr: le64, len: le32, id: le16,
//!   flags: le16`, 16-byte aligned; both sides write it;
//! - driver and device event suppression structures: `off_wrap: le16`
//!   (offset in bits 0-14, wrap counter in bit 15), `flags: le16`
//!   (0 enable, 1 disable, 2 at `off_wrap` with `EVENT_IDX`), 4-aligned.
//!
//! A descriptor is available when its AVAIL bit equals the device's
//! available wrap counter and its USED bit does not (§2.8.1). A chain is
//! consecutive descriptors linked by NEXT; its buffer id is the last
//! one's (§2.8.6). The device writes one used descriptor per chain at its
//! used position, with AVAIL and USED both equal to its used wrap counter,
//! and skips the used position forward by the chain's length (§2.8.7).
//! Driver input is untrusted as in [`split`](super::split): malformed
//! chains are [`ChainError`]s.

use dma_core::DmaAddr;

use super::split::{need_event, read_u16, write_u16, Chain, ChainError, Segment, Virtqueue};
use super::Features;
use crate::{Bus, Fault};

/// Packed descriptor flag bits (§2.8.1, §2.8.6-9).
pub mod flags {
    /// The chain continues in the next descriptor.
    pub const NEXT: u16 = 1;
    /// Device-writable buffer.
    pub const WRITE: u16 = 2;
    /// The buffer is a table of indirect descriptors.
    pub const INDIRECT: u16 = 4;
    /// The driver's wrap counter when it made the descriptor available.
    pub const AVAIL: u16 = 1 << 7;
    /// The device's wrap counter when it used the descriptor.
    pub const USED: u16 = 1 << 15;
}

/// Event suppression `flags` values (§2.8.10).
pub mod event {
    /// Notify on every event.
    pub const ENABLE: u16 = 0;
    /// Do not notify.
    pub const DISABLE: u16 = 1;
    /// Notify when the position in `off_wrap` is reached (`EVENT_IDX`).
    pub const DESC: u16 = 2;
}

const DESC_SIZE: u64 = 16;

struct RawDesc {
    addr: u64,
    len: u32,
    id: u16,
    flags: u16,
}

fn read_desc(bus: &Bus, at: u64) -> Result<RawDesc, Fault> {
    let mut raw = [0u8; DESC_SIZE as usize];
    bus.read(DmaAddr::new(at), &mut raw)?;
    Ok(RawDesc {
        addr: u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default()),
        len: u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default()),
        id: u16::from_le_bytes([raw[12], raw[13]]),
        flags: u16::from_le_bytes([raw[14], raw[15]]),
    })
}

/// Adds a buffer to `chain`, keeping §2.7.4.2's order (readable first)
/// and §2.7.5.2's 2^32-byte total.
fn push(chain: &mut Chain, addr: u64, len: u32, writable: bool) -> Result<(), ChainError> {
    if !writable && chain.segments.iter().any(|s| s.writable) {
        return Err(ChainError::Malformed(
            "device-readable descriptor after a device-writable one (§2.8.6)",
        ));
    }
    if chain.readable_len() + chain.writable_len() + u64::from(len) > u64::from(u32::MAX) {
        return Err(ChainError::Malformed(
            "descriptor chain totals more than 2^32 bytes (§2.7.5.2)",
        ));
    }
    chain.segments.push(Segment {
        addr,
        len,
        writable,
    });
    Ok(())
}

/// What a packed pop took: the chain (its `head` is the buffer id) and
/// how many ring descriptors it used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedChain {
    /// The buffers; `chain.head` is the buffer id.
    pub chain: Chain,
    /// Ring descriptors the chain occupied.
    pub count: u16,
}

impl Virtqueue {
    /// Checks a packed queue's configuration (§2.8.13: ring 16-aligned,
    /// event structures 4-aligned; a size of 1 to 32768).
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn validate_packed(&self) -> Result<(), ChainError> {
        if self.size == 0 || self.size > 32768 {
            return Err(ChainError::Malformed("packed QueueNum outside 1..=32768"));
        }
        if self.desc % 16 != 0 || self.driver % 4 != 0 || self.device % 4 != 0 {
            return Err(ChainError::Malformed(
                "packed queue areas misaligned (ring 16, event structures 4 bytes; §2.8.13)",
            ));
        }
        Ok(())
    }

    fn slot(&self, index: u16) -> u64 {
        self.desc + DESC_SIZE * u64::from(index)
    }

    /// Whether the descriptor at the device's position is available
    /// (§2.8.1), without taking it.
    ///
    /// # Errors
    ///
    /// A faulting ring access.
    pub fn available_packed(&self, bus: &Bus) -> Result<bool, Fault> {
        let bits = read_desc(bus, self.slot(self.last_avail))?.flags;
        let (avail, used) = (bits & flags::AVAIL != 0, bits & flags::USED != 0);
        Ok(avail == self.avail_wrap && used != self.avail_wrap)
    }

    /// Takes the next available chain of a packed queue, if any.
    ///
    /// # Errors
    ///
    /// A faulting ring access or a malformed chain.
    pub fn pop_packed(
        &mut self,
        bus: &Bus,
        features: Features,
    ) -> Result<Option<PackedChain>, ChainError> {
        if !self.available_packed(bus)? {
            return Ok(None);
        }
        let first = read_desc(bus, self.slot(self.last_avail))?;
        let mut chain = Chain::default();
        let mut index = self.last_avail;
        let mut count = 0u16;
        let mut desc = first;
        loop {
            count += 1;
            if desc.flags & flags::INDIRECT != 0 {
                if desc.flags & flags::NEXT != 0 || count > 1 {
                    return Err(ChainError::Malformed(
                        "packed indirect descriptor chained with others (§2.8.9)",
                    ));
                }
                self.indirect(bus, features, &desc, &mut chain)?;
            } else {
                push(
                    &mut chain,
                    desc.addr,
                    desc.len,
                    desc.flags & flags::WRITE != 0,
                )?;
            }
            if desc.flags & flags::NEXT == 0 {
                chain.head = desc.id;
                break;
            }
            if count >= self.size {
                return Err(ChainError::Malformed(
                    "packed chain longer than the queue (§2.8.6)",
                ));
            }
            index = if index + 1 == self.size { 0 } else { index + 1 };
            desc = read_desc(bus, self.slot(index))?;
        }
        self.advance_avail(count);
        if features.contains(Features::EVENT_IDX) {
            // Ask to be notified when the driver reaches the next position.
            let off_wrap = self.last_avail | u16::from(self.avail_wrap) << 15;
            write_u16(bus, self.device, off_wrap)?;
            write_u16(bus, self.device + 2, event::DESC)?;
        }
        Ok(Some(PackedChain { chain, count }))
    }

    fn indirect(
        &self,
        bus: &Bus,
        features: Features,
        desc: &RawDesc,
        chain: &mut Chain,
    ) -> Result<(), ChainError> {
        if !features.contains(Features::INDIRECT_DESC) {
            return Err(ChainError::Malformed(
                "indirect descriptor without VIRTIO_F_INDIRECT_DESC (§2.8.9)",
            ));
        }
        if desc.len == 0 || u64::from(desc.len) % DESC_SIZE != 0 {
            return Err(ChainError::Malformed(
                "indirect table length is not a non-zero multiple of 16 (§2.8.9)",
            ));
        }
        for i in 0..u64::from(desc.len) / DESC_SIZE {
            let entry = read_desc(bus, desc.addr + i * DESC_SIZE)?;
            if entry.flags & flags::INDIRECT != 0 {
                return Err(ChainError::Malformed(
                    "indirect descriptor inside an indirect table (§2.8.9)",
                ));
            }
            push(
                chain,
                entry.addr,
                entry.len,
                entry.flags & flags::WRITE != 0,
            )?;
        }
        Ok(())
    }

    fn advance_avail(&mut self, count: u16) {
        let next = u32::from(self.last_avail) + u32::from(count);
        if next >= u32::from(self.size) {
            self.avail_wrap = !self.avail_wrap;
        }
        self.last_avail = (next % u32::from(self.size)) as u16;
    }

    /// Returns a chain of `count` descriptors with buffer id `id` and
    /// `written` bytes written: id and length first, then the flags that
    /// hand it back. Returns whether the driver asked for an interrupt
    /// (its event suppression structure, §2.8.10).
    ///
    /// # Errors
    ///
    /// A faulting ring access.
    pub fn push_used_packed(
        &mut self,
        bus: &Bus,
        features: Features,
        id: u16,
        count: u16,
        written: u32,
    ) -> Result<bool, ChainError> {
        let at = self.slot(self.used_idx);
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&written.to_le_bytes());
        head[4..6].copy_from_slice(&id.to_le_bytes());
        bus.write(DmaAddr::new(at + 8), &head[..6])?;
        let bits = if self.used_wrap {
            flags::AVAIL | flags::USED
        } else {
            0
        };
        write_u16(bus, at + 14, bits)?;
        let next = u32::from(self.used_idx) + u32::from(count);
        if next >= u32::from(self.size) {
            self.used_wrap = !self.used_wrap;
        }
        self.used_idx = (next % u32::from(self.size)) as u16;
        let mode = read_u16(bus, self.driver + 2)? & 0x3;
        Ok(match mode {
            event::ENABLE => true,
            event::DESC if features.contains(Features::EVENT_IDX) => {
                let off_wrap = read_u16(bus, self.driver)?;
                self.passed(off_wrap, count)
            }
            _ => false,
        })
    }

    /// Whether the used position passed the driver's `off_wrap` while it
    /// moved `count` descriptors to where it is now (the packed form of
    /// §2.7.10's rule, as Linux's `virtqueue_kick_prepare_packed` computes
    /// it): positions are taken in the current lap, an event or start in
    /// the previous lap being negative.
    fn passed(&self, off_wrap: u16, count: u16) -> bool {
        let mut event = i32::from(off_wrap & 0x7fff);
        if (off_wrap >> 15 != 0) != self.used_wrap {
            event -= i32::from(self.size);
        }
        let new = i32::from(self.used_idx);
        let old = new - i32::from(count);
        // The differences are below 2^15 in magnitude, so 16-bit wrapping
        // arithmetic on the casts is exact.
        need_event(event as u16, new as u16, old as u16)
    }
}
