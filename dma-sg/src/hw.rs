//! The generic 16-byte hardware scatter-gather entry: the format the mock
//! hardware's memory-to-memory DMA engine consumes, and a common shape for
//! real engines' descriptor tables.
//!
//! # Layout (the specification the device implements)
//!
//! A table is an array of entries, each 16 bytes, 16-byte aligned, all
//! fields little-endian:
//!
//! | bytes | field | meaning |
//! | --- | --- | --- |
//! | 0-7 | `addr` (u64) | device address of the segment's first byte |
//! | 8-11 | `len` (u32) | segment length in bytes, 1 to 2^32 - 1 |
//! | 12-15 | `flags` (u32) | see below |
//!
//! | flag bit | name | written by | meaning |
//! | --- | --- | --- | --- |
//! | 0 | `FINAL` | driver | the last entry of the table (or of the job) |
//! | 1 | `DEST` | driver | for a copy engine: a destination segment; entries without it are sources |
//! | 29:2 | | | reserved, zero |
//! | 30 | `ERROR` | device | written back into the `FINAL` entry: the transfer failed |
//! | 31 | `DONE` | device | written back into the `FINAL` entry: the transfer finished |
//!
//! The device reads entries from the table's start in order, transferring
//! each segment's bytes in order, and stops after the entry with `FINAL`.
//! A copy engine moves the sources' bytes, concatenated, into the
//! destinations' ([`encode_hw_copy`] writes such a job). The device treats
//! as an error (and transfers nothing further): a zero `len`, a segment
//! whose `addr + len` wraps, a reserved bit or a status bit (`ERROR`,
//! `DONE`) set on an entry handed to it, and reaching the end of the table
//! it was given without seeing `FINAL`.

use dma_core::{Coherent, DmaAddr, DmaAlloc, Error, ErrorKind, Result};
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::{FromBytes, IntoBytes};

use crate::DmaSegment;

bitflags::bitflags! {
    /// The `flags` word of a [`HwSgEntry`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct HwSgFlags: u32 {
        /// The last entry of the table.
        const FINAL = 1 << 0;
        /// A destination segment of a copy job.
        const DEST = 1 << 1;
        /// Status written back by the device: the transfer failed.
        const ERROR = 1 << 30;
        /// Status written back by the device: the transfer finished.
        const DONE = 1 << 31;
    }
}

/// One generic hardware SG entry, as the device reads it (see the module
/// documentation for the layout).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes)]
#[repr(C, align(16))]
pub struct HwSgEntry {
    addr: u64,
    len: u32,
    flags: u32,
}

assert_eq_size!(HwSgEntry, [u8; 16]);
const_assert_eq!(core::mem::align_of::<HwSgEntry>(), 16);
const_assert_eq!(core::mem::offset_of!(HwSgEntry, addr), 0);
const_assert_eq!(core::mem::offset_of!(HwSgEntry, len), 8);
const_assert_eq!(core::mem::offset_of!(HwSgEntry, flags), 12);

impl HwSgEntry {
    /// The size of an entry in bytes.
    pub const SIZE: usize = 16;

    /// An entry for `len` bytes at `addr`.
    pub const fn new(addr: DmaAddr, len: u32, flags: HwSgFlags) -> Self {
        Self {
            addr: addr.as_u64().to_le(),
            len: len.to_le(),
            flags: flags.bits().to_le(),
        }
    }

    /// An entry from its 16 bytes as stored in memory.
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        let addr = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let flags = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        Self {
            addr: addr.to_le(),
            len: len.to_le(),
            flags: flags.to_le(),
        }
    }

    /// The device address.
    pub const fn addr(&self) -> DmaAddr {
        DmaAddr::new(u64::from_le(self.addr))
    }

    /// The length in bytes.
    pub const fn len(&self) -> u32 {
        u32::from_le(self.len)
    }

    /// Whether the length is zero (an invalid entry).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw flags word, reserved bits included.
    pub const fn raw_flags(&self) -> u32 {
        u32::from_le(self.flags)
    }

    /// The defined flags.
    pub const fn flags(&self) -> HwSgFlags {
        HwSgFlags::from_bits_truncate(self.raw_flags())
    }

    /// Checks the entry as the device must, returning its segment.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize), [`AddressOverflow`](ErrorKind::AddressOverflow),
    /// and [`Unsupported`](ErrorKind::Unsupported) for reserved or status
    /// flag bits.
    pub fn validate(&self) -> Result<DmaSegment> {
        let addr = self.addr().as_u64();
        if self.is_empty() {
            return Err(Error::new(ErrorKind::ZeroSize, "SG entry with zero length").at(addr));
        }
        if addr.checked_add(u64::from(self.len()) - 1).is_none() {
            return Err(Error::new(ErrorKind::AddressOverflow, "SG entry wraps").at(addr));
        }
        let handed_over = (HwSgFlags::FINAL | HwSgFlags::DEST).bits();
        if self.raw_flags() & !handed_over != 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "SG entry has reserved or status flag bits set",
            )
            .at(addr));
        }
        Ok(DmaSegment::new(self.addr(), u64::from(self.len())))
    }
}

impl core::fmt::Debug for HwSgEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HwSgEntry")
            .field("addr", &self.addr())
            .field("len", &self.len())
            .field("flags", &self.flags())
            .finish()
    }
}

/// Writes `segments` into `table` from entry 0, `FINAL` on the last, and
/// returns how many entries were written. Everything is checked before the
/// first write, so on error the table is unchanged.
///
/// ```
/// use dma_core::{Coherent, DeviceConstraints, DmaAddr, HostMemory};
/// use dma_direct::DirectPlatform;
/// use dma_sg::hw::{encode_hw_sg, HwSgEntry, HwSgFlags};
/// use dma_sg::DmaSegment;
///
/// let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
/// let mut table = Coherent::<[HwSgEntry], _>::zeroed_slice(&platform, 8)?;
/// let segs = [DmaSegment::new(DmaAddr::new(0x1000), 512), DmaSegment::new(DmaAddr::new(0x8000), 64)];
/// assert_eq!(encode_hw_sg(segs, &mut table)?, 2);
/// assert_eq!(table.read(1)?.flags(), HwSgFlags::FINAL);
/// // The engine is given table.dma_addr().
/// # Ok::<(), dma_core::Error>(())
/// ```
///
/// # Errors
///
/// [`ZeroSize`](ErrorKind::ZeroSize) for no segments or an empty one,
/// [`SegmentTooLarge`](ErrorKind::SegmentTooLarge) over 2^32 - 1 bytes,
/// [`AddressOverflow`](ErrorKind::AddressOverflow) for one that wraps,
/// [`TooManySegments`](ErrorKind::TooManySegments) when the table is too
/// small.
pub fn encode_hw_sg<A, I>(segments: I, table: &mut Coherent<[HwSgEntry], A>) -> Result<usize>
where
    A: DmaAlloc,
    I: IntoIterator<Item = DmaSegment>,
    I::IntoIter: Clone,
{
    encode_entries(segments.into_iter().map(|s| (s, HwSgFlags::empty())), table)
}

/// Writes a copy job for an engine: the `sources`, then the `destinations`
/// marked `DEST`, `FINAL` on the last, from entry 0. Returns the number of
/// entries written; on error the table is unchanged.
///
/// ```
/// use dma_core::{Coherent, DeviceConstraints, DmaAddr, HostMemory};
/// use dma_direct::DirectPlatform;
/// use dma_sg::hw::{encode_hw_copy, HwSgEntry, HwSgFlags};
/// use dma_sg::DmaSegment;
///
/// let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
/// let mut job = Coherent::<[HwSgEntry], _>::zeroed_slice(&platform, 4)?;
/// let src = [DmaSegment::new(DmaAddr::new(0x1000), 4096)];
/// let dst = [DmaSegment::new(DmaAddr::new(0x9000), 2048), DmaSegment::new(DmaAddr::new(0xa000), 2048)];
/// assert_eq!(encode_hw_copy(src, dst, &mut job)?, 3);
/// assert_eq!(job.read(2)?.flags(), HwSgFlags::DEST | HwSgFlags::FINAL);
/// # Ok::<(), dma_core::Error>(())
/// ```
///
/// # Errors
///
/// As for [`encode_hw_sg`]; also [`ZeroSize`](ErrorKind::ZeroSize) when
/// either side is empty.
pub fn encode_hw_copy<A, S, D>(
    sources: S,
    destinations: D,
    table: &mut Coherent<[HwSgEntry], A>,
) -> Result<usize>
where
    A: DmaAlloc,
    S: IntoIterator<Item = DmaSegment>,
    S::IntoIter: Clone,
    D: IntoIterator<Item = DmaSegment>,
    D::IntoIter: Clone,
{
    let sources = sources.into_iter();
    let destinations = destinations.into_iter();
    if sources.clone().next().is_none() || destinations.clone().next().is_none() {
        return Err(Error::new(
            ErrorKind::ZeroSize,
            "a copy job needs a source and a destination",
        ));
    }
    encode_entries(
        sources
            .map(|s| (s, HwSgFlags::empty()))
            .chain(destinations.map(|d| (d, HwSgFlags::DEST))),
        table,
    )
}

/// Checks every segment, then writes them from entry 0 with their flags,
/// `FINAL` added on the last.
fn encode_entries<A, I>(entries: I, table: &mut Coherent<[HwSgEntry], A>) -> Result<usize>
where
    A: DmaAlloc,
    I: Iterator<Item = (DmaSegment, HwSgFlags)> + Clone,
{
    let mut count = 0usize;
    for (seg, flags) in entries.clone() {
        let len = u32::try_from(seg.len).map_err(|_| {
            Error::new(
                ErrorKind::SegmentTooLarge,
                "segment longer than the entry's 32-bit length",
            )
            .at(seg.addr.as_u64())
            .len(seg.len)
        })?;
        HwSgEntry::new(seg.addr, len, flags).validate()?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::new(ErrorKind::ZeroSize, "no segments to describe"));
    }
    if count > table.len() {
        return Err(Error::new(
            ErrorKind::TooManySegments,
            "more segments than the SG table has entries",
        )
        .len(count as u64));
    }
    for (i, (seg, flags)) in entries.enumerate().take(count) {
        let flags = if i + 1 == count {
            flags | HwSgFlags::FINAL
        } else {
            flags
        };
        // Lengths were checked to fit above.
        table.write(i, HwSgEntry::new(seg.addr, seg.len as u32, flags))?;
    }
    Ok(count)
}

/// Reads a table as the device does: entries from index 0 through the one
/// marked `FINAL`, each validated, calling `visit` with each segment.
/// `read_entry(i)` returns entry `i`; `capacity` is how many entries the
/// table has. Returns the number of entries consumed.
///
/// # Errors
///
/// The errors of [`HwSgEntry::validate`];
/// [`TooManySegments`](ErrorKind::TooManySegments) when no entry within
/// `capacity` is `FINAL`; whatever the callbacks return.
pub fn walk_hw_sg<R, V>(capacity: usize, mut read_entry: R, mut visit: V) -> Result<usize>
where
    R: FnMut(usize) -> Result<HwSgEntry>,
    V: FnMut(DmaSegment) -> Result<()>,
{
    for i in 0..capacity {
        let entry = read_entry(i)?;
        visit(entry.validate()?)?;
        if entry.flags().contains(HwSgFlags::FINAL) {
            return Ok(i + 1);
        }
    }
    Err(Error::new(
        ErrorKind::TooManySegments,
        "SG table ends without a FINAL entry",
    )
    .len(capacity as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_little_endian() {
        let e = HwSgEntry::new(
            DmaAddr::new(0x1122_3344_5566_7788),
            0x99aa_bbcc,
            HwSgFlags::FINAL,
        );
        let b: [u8; 16] = [
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xcc, 0xbb, 0xaa, 0x99, 1, 0, 0, 0,
        ];
        assert_eq!(HwSgEntry::from_bytes(b), e);
    }

    #[test]
    fn device_rejects_bad_entries() {
        let kind = |e: HwSgEntry| e.validate().unwrap_err().kind();
        assert_eq!(
            kind(HwSgEntry::new(DmaAddr::new(0), 0, HwSgFlags::FINAL)),
            ErrorKind::ZeroSize
        );
        assert_eq!(
            kind(HwSgEntry::new(DmaAddr::new(u64::MAX), 2, HwSgFlags::FINAL)),
            ErrorKind::AddressOverflow
        );
        let mut b = [0u8; 16];
        b[8] = 1;
        b[12] = 0b100;
        assert_eq!(kind(HwSgEntry::from_bytes(b)), ErrorKind::Unsupported);
        let done = HwSgEntry::new(DmaAddr::new(0x1000), 8, HwSgFlags::FINAL | HwSgFlags::DONE);
        assert_eq!(
            kind(done),
            ErrorKind::Unsupported,
            "status bits are the device's to write"
        );
        assert!(HwSgEntry::new(DmaAddr::new(0x1000), 8, HwSgFlags::DEST)
            .validate()
            .is_ok());
        let no_final = |_| Ok(HwSgEntry::new(DmaAddr::new(0x1000), 8, HwSgFlags::empty()));
        assert_eq!(
            walk_hw_sg(4, no_final, |_| Ok(())).unwrap_err().kind(),
            ErrorKind::TooManySegments
        );
    }
}
