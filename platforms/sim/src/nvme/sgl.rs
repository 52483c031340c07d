//! The controller's reading of Scatter Gather Lists (NVMe 2.0 §4.3.2),
//! written from the spec and not from any driver-side encoder.
//!
//! A command's DPTR holds SGL1, one 16-byte descriptor: address (bytes
//! 7:0), length (11:8), three type-specific bytes and the SGL identifier
//! (byte 15: descriptor type in bits 7:4, sub type in bits 3:0). A Data
//! Block descriptor is data; a Segment descriptor points at the next SGL
//! segment (an array of descriptors) and is the last descriptor of its
//! own segment; a Last Segment descriptor does the same for the final
//! segment, which may hold data descriptors only.

use super::status;
use super::{MAX_SGL_DESCRIPTORS, SGL_DESCRIPTOR_SIZE};

/// Descriptor type 0h: SGL Data Block.
const DATA_BLOCK: u8 = 0x0;
/// Descriptor type 2h: SGL Segment.
const SEGMENT: u8 = 0x2;
/// Descriptor type 3h: SGL Last Segment.
const LAST_SEGMENT: u8 = 0x3;
/// Sub type 0h: the address field is a memory address.
const SUBTYPE_ADDRESS: u8 = 0x0;

/// One descriptor as read from memory or the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Descriptor {
    addr: u64,
    len: u32,
    id: u8,
}

impl Descriptor {
    /// Parses the 16 bytes at the spec's offsets (little-endian).
    pub(super) fn parse(b: &[u8]) -> Self {
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&b[0..8]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&b[8..12]);
        Self {
            addr: u64::from_le_bytes(addr),
            len: u32::from_le_bytes(len),
            id: b[15],
        }
    }
}

/// Where the walk goes after a descriptor.
enum Next {
    /// Data (or nothing) was added; carry on in this segment.
    Data,
    /// A segment of `count` descriptors at `addr`; `last` when it is the
    /// final one.
    Segment { addr: u64, count: usize, last: bool },
}

/// The data blocks of a transfer, and the state of the walk.
pub(super) struct Walk<'a> {
    out: &'a mut Vec<(u64, usize)>,
    /// Bytes the data blocks describe so far.
    total: u64,
    /// Bytes the command moves.
    want: u64,
}

impl<'a> Walk<'a> {
    /// Walks the SGL starting at `sgl1` for a `len`-byte transfer,
    /// filling `out` with its data blocks (address, bytes) in order.
    /// `read` fetches a segment from host memory (false on a failed DMA);
    /// `scratch` is reused for segment bytes.
    ///
    /// Returns the command's status on a malformed SGL.
    pub(super) fn run(
        sgl1: Descriptor,
        len: usize,
        out: &'a mut Vec<(u64, usize)>,
        scratch: &mut Vec<u8>,
        mut read: impl FnMut(u64, &mut [u8]) -> bool,
    ) -> Result<(), u16> {
        out.clear();
        let mut walk = Self {
            out,
            total: 0,
            want: len as u64,
        };
        let mut seen = 1usize;
        // SGL1 is the only (so the last) descriptor of the command's
        // "segment", and not inside a last segment.
        let mut next = walk.take(sgl1, false, true)?;
        while let Next::Segment { addr, count, last } = next {
            seen = seen.saturating_add(count);
            if seen > MAX_SGL_DESCRIPTORS {
                return Err(status::INVALID_SGL_DESCRIPTOR_COUNT);
            }
            scratch.resize(count * SGL_DESCRIPTOR_SIZE, 0);
            if !read(addr, scratch) {
                return Err(status::DATA_TRANSFER_ERROR);
            }
            next = Next::Data;
            for (i, raw) in scratch.chunks_exact(SGL_DESCRIPTOR_SIZE).enumerate() {
                let step = walk.take(Descriptor::parse(raw), last, i + 1 == count)?;
                if let Next::Segment { .. } = step {
                    next = step;
                }
            }
        }
        if walk.total != walk.want {
            return Err(status::DATA_SGL_LENGTH_INVALID);
        }
        Ok(())
    }

    /// Interprets one descriptor: `in_last` when it sits in the last
    /// segment, `final_slot` when it is the last of its segment.
    fn take(&mut self, d: Descriptor, in_last: bool, final_slot: bool) -> Result<Next, u16> {
        let kind = d.id >> 4;
        if !matches!(kind, DATA_BLOCK | SEGMENT | LAST_SEGMENT) || d.id & 0xf != SUBTYPE_ADDRESS {
            // Bit Bucket, keyed and transport data blocks, vendor types and
            // other sub types: SGLS advertises none of them.
            return Err(status::SGL_DESCRIPTOR_TYPE_INVALID);
        }
        if kind == DATA_BLOCK {
            self.total += u64::from(d.len);
            // SGLS bit 18 is clear: no SGL longer than the transfer.
            if self.total > self.want {
                return Err(status::DATA_SGL_LENGTH_INVALID);
            }
            if d.len != 0 {
                self.out.push((d.addr, d.len as usize));
            }
            return Ok(Next::Data);
        }
        let bytes = d.len as usize;
        if in_last || !final_slot || bytes == 0 || bytes % SGL_DESCRIPTOR_SIZE != 0 {
            return Err(status::INVALID_SGL_SEGMENT_DESCRIPTOR);
        }
        Ok(Next::Segment {
            addr: d.addr,
            count: bytes / SGL_DESCRIPTOR_SIZE,
            last: kind == LAST_SEGMENT,
        })
    }
}
