//! virtio split-virtqueue descriptor chains (virtio 1.2, section 2.7.5
//! "The Virtqueue Descriptor Table", and 2.7.5.3 "Indirect Descriptors").
//!
//! A descriptor is `le64 addr; le32 len; le16 flags; le16 next;`. A chain
//! links descriptors through `next` while `NEXT` is set; the device reads
//! the buffers of descriptors without `WRITE` and writes those with it, and
//! all device-readable descriptors come before all device-writable ones
//! (2.7.4.2), which the chain encoders here guarantee by taking the two
//! lists separately.

use dma_core::{Coherent, DmaAddr, DmaAlloc, Error, ErrorKind, Result};
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::{FromBytes, IntoBytes};

use crate::DmaSegment;

bitflags::bitflags! {
    /// `struct virtq_desc.flags` (virtio 1.2, 2.7.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct VirtqDescFlags: u16 {
        /// `VIRTQ_DESC_F_NEXT`: the chain continues at `next`.
        const NEXT = 1;
        /// `VIRTQ_DESC_F_WRITE`: the device writes this buffer.
        const WRITE = 2;
        /// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors.
        const INDIRECT = 4;
    }
}

/// The largest queue size a split virtqueue may have (virtio 1.2, 2.7:
/// "Queue Size ... maximum 32768").
pub const MAX_QUEUE_SIZE: usize = 32768;

/// `struct virtq_desc`, as the device reads it (little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes)]
#[repr(C)]
pub struct VirtqDesc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

// virtio 1.2, 2.7.5: addr at 0, len at 8, flags at 12, next at 14; 16 bytes.
assert_eq_size!(VirtqDesc, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(VirtqDesc, addr), 0);
const_assert_eq!(core::mem::offset_of!(VirtqDesc, len), 8);
const_assert_eq!(core::mem::offset_of!(VirtqDesc, flags), 12);
const_assert_eq!(core::mem::offset_of!(VirtqDesc, next), 14);

impl VirtqDesc {
    /// The size of a descriptor in bytes.
    pub const SIZE: usize = 16;

    /// A descriptor.
    pub const fn new(addr: DmaAddr, len: u32, flags: VirtqDescFlags, next: u16) -> Self {
        Self {
            addr: addr.as_u64().to_le(),
            len: len.to_le(),
            flags: flags.bits().to_le(),
            next: next.to_le(),
        }
    }

    /// The buffer's device address.
    pub const fn addr(&self) -> DmaAddr {
        DmaAddr::new(u64::from_le(self.addr))
    }

    /// The buffer's length in bytes.
    pub const fn len(&self) -> u32 {
        u32::from_le(self.len)
    }

    /// Whether the length is zero.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The flags (unknown bits dropped).
    pub const fn flags(&self) -> VirtqDescFlags {
        VirtqDescFlags::from_bits_truncate(u16::from_le(self.flags))
    }

    /// The next descriptor's index, meaningful with `NEXT`.
    pub const fn next(&self) -> u16 {
        u16::from_le(self.next)
    }
}

impl core::fmt::Debug for VirtqDesc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtqDesc")
            .field("addr", &self.addr())
            .field("len", &self.len())
            .field("flags", &self.flags())
            .field("next", &self.next())
            .finish()
    }
}

/// A chain written into a descriptor table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtqChain {
    /// The head's index: what goes into the available ring.
    pub head: u16,
    /// How many descriptors the chain uses.
    pub len: usize,
}

/// The descriptors of a request, device-readable ones first, with their
/// lengths checked (each 1 to 2^32 - 1 bytes).
fn described<R, W>(
    readable: R,
    writable: W,
) -> Result<(usize, impl Iterator<Item = (DmaSegment, VirtqDescFlags)>)>
where
    R: IntoIterator<Item = DmaSegment>,
    R::IntoIter: Clone,
    W: IntoIterator<Item = DmaSegment>,
    W::IntoIter: Clone,
{
    let r = readable.into_iter().map(|s| (s, VirtqDescFlags::empty()));
    let w = writable.into_iter().map(|s| (s, VirtqDescFlags::WRITE));
    let all = r.chain(w);
    let mut count = 0usize;
    for (seg, _) in all.clone() {
        let addr = seg.addr.as_u64();
        if seg.len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "empty virtio buffer").at(addr));
        }
        if seg.len > u64::from(u32::MAX) {
            return Err(Error::new(
                ErrorKind::SegmentTooLarge,
                "virtio buffer longer than the 32-bit len field",
            )
            .at(addr)
            .len(seg.len));
        }
        if seg.end().is_none() {
            return Err(Error::new(ErrorKind::AddressOverflow, "virtio buffer wraps").at(addr));
        }
        count += 1;
    }
    if count == 0 {
        return Err(Error::new(ErrorKind::ZeroSize, "no buffers to describe"));
    }
    Ok((count, all))
}

/// Writes a chain into a split virtqueue's descriptor table, using the
/// free descriptor indices `free` yields, in order: the device-readable
/// `readable` segments first, then the device-writable `writable` ones.
///
/// The descriptors written are not visible to the device until the head
/// is published in the available ring, so an error part-way leaves only
/// free descriptors scribbled on. The caller keeps `free` honest (distinct
/// indices of unused descriptors), as the ring's free list does.
///
/// # Errors
///
/// [`ZeroSize`](ErrorKind::ZeroSize) for no buffers or an empty one,
/// [`SegmentTooLarge`](ErrorKind::SegmentTooLarge) over 2^32 - 1 bytes,
/// [`AddressOverflow`](ErrorKind::AddressOverflow),
/// [`InvalidConstraints`](ErrorKind::InvalidConstraints) for a table larger
/// than a queue may be, [`OutOfRange`](ErrorKind::OutOfRange) for an index
/// past the table, [`TooManySegments`](ErrorKind::TooManySegments) when
/// `free` runs out.
pub fn encode_chain<A, R, W, F>(
    table: &mut Coherent<[VirtqDesc], A>,
    readable: R,
    writable: W,
    free: F,
) -> Result<VirtqChain>
where
    A: DmaAlloc,
    R: IntoIterator<Item = DmaSegment>,
    R::IntoIter: Clone,
    W: IntoIterator<Item = DmaSegment>,
    W::IntoIter: Clone,
    F: IntoIterator<Item = u16>,
{
    if table.len() > MAX_QUEUE_SIZE {
        return Err(Error::new(
            ErrorKind::InvalidConstraints,
            "descriptor table larger than a virtqueue may be",
        )
        .len(table.len() as u64));
    }
    let (count, descriptors) = described(readable, writable)?;
    let mut free = free.into_iter();
    let table_len = table.len();
    let mut take = || {
        let i = free.next().ok_or(
            Error::new(ErrorKind::TooManySegments, "not enough free descriptors").len(count as u64),
        )?;
        if usize::from(i) >= table_len {
            return Err(
                Error::new(ErrorKind::OutOfRange, "descriptor index past the table")
                    .at(u64::from(i)),
            );
        }
        Ok(i)
    };
    let mut head = None;
    let mut prev: Option<(u16, VirtqDesc)> = None;
    for (seg, flags) in descriptors {
        let index = take()?;
        head.get_or_insert(index);
        if let Some((at, desc)) = prev {
            table.write(usize::from(at), link(desc, index))?;
        }
        prev = Some((index, VirtqDesc::new(seg.addr, seg.len as u32, flags, 0)));
    }
    if let Some((at, desc)) = prev {
        table.write(usize::from(at), desc)?;
    }
    // `described` guarantees at least one descriptor, so a head was taken.
    let head = head.ok_or(Error::new(ErrorKind::ZeroSize, "no buffers to describe"))?;
    Ok(VirtqChain { head, len: count })
}

/// `desc` with `NEXT` set and pointing at `next`.
fn link(desc: VirtqDesc, next: u16) -> VirtqDesc {
    VirtqDesc::new(
        desc.addr(),
        desc.len(),
        desc.flags() | VirtqDescFlags::NEXT,
        next,
    )
}

/// Writes a chain into an indirect table (entries 0, 1, ... linked in
/// order) and returns the one descriptor that goes into the virtqueue:
/// `INDIRECT`, pointing at the table (virtio 1.2, 2.7.5.3; the driver must
/// have negotiated `VIRTIO_F_INDIRECT_DESC`). Everything is checked before
/// the first write.
///
/// # Errors
///
/// As for [`encode_chain`], with [`TooManySegments`](ErrorKind::TooManySegments)
/// when the table is too small.
pub fn encode_indirect<A, R, W>(
    table: &mut Coherent<[VirtqDesc], A>,
    readable: R,
    writable: W,
) -> Result<VirtqDesc>
where
    A: DmaAlloc,
    R: IntoIterator<Item = DmaSegment>,
    R::IntoIter: Clone,
    W: IntoIterator<Item = DmaSegment>,
    W::IntoIter: Clone,
{
    let (count, descriptors) = described(readable, writable)?;
    if count > table.len().min(MAX_QUEUE_SIZE) {
        return Err(Error::new(
            ErrorKind::TooManySegments,
            "more buffers than the indirect table holds",
        )
        .len(count as u64));
    }
    for (i, (seg, flags)) in descriptors.enumerate() {
        let desc = VirtqDesc::new(seg.addr, seg.len as u32, flags, 0);
        // i + 1 < count <= 32768, so the index fits in u16.
        let desc = if i + 1 < count {
            link(desc, (i + 1) as u16)
        } else {
            desc
        };
        table.write(i, desc)?;
    }
    let bytes = (count * VirtqDesc::SIZE) as u32;
    Ok(VirtqDesc::new(
        table.dma_addr(),
        bytes,
        VirtqDescFlags::INDIRECT,
        0,
    ))
}
