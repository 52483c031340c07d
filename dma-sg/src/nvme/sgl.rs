//! Scatter Gather List descriptors (NVMe base spec 2.0, 4.1.2).
//!
//! Every descriptor is 16 bytes: an address (bytes 0-7), a length (bytes
//! 8-11), three type-specific bytes and the SGL identifier (byte 15:
//! descriptor type in bits 7:4, sub type in bits 3:0). A command holds one
//! descriptor, SGL1. A Data Block descriptor describes data; a Segment
//! descriptor points to an SGL segment (an array of descriptors) whose last
//! descriptor may point on to the next; a Last Segment descriptor points to
//! the final segment, which holds only data descriptors.

use dma_core::DmaAddr;
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::{FromBytes, IntoBytes};

/// The descriptor type, SGL identifier bits 7:4 (spec figure "SGL
/// Descriptor Type").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SglDescriptorType {
    /// 0h: a contiguous data buffer.
    DataBlock = 0x0,
    /// 1h: data the controller discards (reads) — not produced here.
    BitBucket = 0x1,
    /// 2h: a pointer to the next SGL segment.
    Segment = 0x2,
    /// 3h: a pointer to the final SGL segment.
    LastSegment = 0x3,
    /// 4h: a data block with a key (NVMe over Fabrics) — not produced here.
    KeyedDataBlock = 0x4,
    /// 5h: a transport data block (NVMe over Fabrics) — not produced here.
    TransportDataBlock = 0x5,
}

impl SglDescriptorType {
    /// The type for identifier bits 7:4, if it is one the spec defines.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::DataBlock,
            0x1 => Self::BitBucket,
            0x2 => Self::Segment,
            0x3 => Self::LastSegment,
            0x4 => Self::KeyedDataBlock,
            0x5 => Self::TransportDataBlock,
            _ => return None,
        })
    }
}

/// Sub type 0h: the address field is a memory address (as PCIe uses).
pub const SGL_SUBTYPE_ADDRESS: u8 = 0x0;

/// One SGL descriptor, exactly as the controller reads it (little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes)]
#[repr(C)]
pub struct SglDescriptor {
    addr: u64,
    len: u32,
    reserved: [u8; 3],
    id: u8,
}

// NVMe base spec 2.0, 4.1.2, figure "Generic SGL Descriptor Format":
// address bytes 07:00, length 11:08, type-specific 14:12, identifier 15.
assert_eq_size!(SglDescriptor, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(SglDescriptor, addr), 0);
const_assert_eq!(core::mem::offset_of!(SglDescriptor, len), 8);
const_assert_eq!(core::mem::offset_of!(SglDescriptor, reserved), 12);
const_assert_eq!(core::mem::offset_of!(SglDescriptor, id), 15);

impl SglDescriptor {
    /// The size of a descriptor in bytes.
    pub const SIZE: usize = 16;

    /// A descriptor of `kind` with sub type Address.
    pub const fn new(kind: SglDescriptorType, addr: DmaAddr, len: u32) -> Self {
        Self {
            addr: addr.as_u64().to_le(),
            len: len.to_le(),
            reserved: [0; 3],
            id: (kind as u8) << 4 | SGL_SUBTYPE_ADDRESS,
        }
    }

    /// A Data Block descriptor.
    pub const fn data_block(addr: DmaAddr, len: u32) -> Self {
        Self::new(SglDescriptorType::DataBlock, addr, len)
    }

    /// The address field.
    pub const fn addr(&self) -> DmaAddr {
        DmaAddr::new(u64::from_le(self.addr))
    }

    /// The length field in bytes.
    pub const fn len(&self) -> u32 {
        u32::from_le(self.len)
    }

    /// Whether the length field is zero.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor type, if defined.
    pub const fn descriptor_type(&self) -> Option<SglDescriptorType> {
        SglDescriptorType::from_bits(self.id >> 4)
    }

    /// The sub type, identifier bits 3:0.
    pub const fn sub_type(&self) -> u8 {
        self.id & 0xf
    }

    /// The descriptor as the two little-endian quadwords of a command's
    /// DPTR (dwords 6-7 and 8-9).
    pub const fn to_dptr(&self) -> [u64; 2] {
        let hi = (self.len() as u64) | (self.id as u64) << 56;
        [self.addr().as_u64(), hi]
    }
}

impl core::fmt::Debug for SglDescriptor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SglDescriptor")
            .field("type", &self.descriptor_type())
            .field("addr", &self.addr())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(feature = "alloc")]
pub use encode::{encode_sgl, SglRequest};

#[cfg(feature = "alloc")]
mod encode {
    use alloc::vec::Vec;

    use dma_core::{DmaAlloc, Error, ErrorKind, PoolBlock, Result};

    use super::{SglDescriptor, SglDescriptorType};
    use crate::nvme::NvmePools;
    use crate::DmaSegment;

    /// A command's SGL1 descriptor, owning the segment memory it points
    /// into; the blocks go back to their pools when it is dropped.
    pub struct SglRequest<'pool, P: DmaAlloc> {
        sgl1: SglDescriptor,
        segments: Vec<PoolBlock<'pool, P>>,
    }

    impl<P: DmaAlloc> SglRequest<'_, P> {
        /// The descriptor for the command's DPTR.
        pub fn sgl1(&self) -> SglDescriptor {
            self.sgl1
        }

        /// How many SGL segment blocks the request holds.
        pub fn segment_blocks(&self) -> usize {
            self.segments.len()
        }
    }

    impl<P: DmaAlloc> core::fmt::Debug for SglRequest<'_, P> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("SglRequest")
                .field("sgl1", &self.sgl1)
                .field("segment_blocks", &self.segments.len())
                .finish()
        }
    }

    /// Encodes `segments` as an SGL: one Data Block descriptor in SGL1 when
    /// there is one segment; otherwise SGL segments in pool memory (a
    /// 256-byte block for up to 16 descriptors, else memory pages), each
    /// full one ending in a Segment descriptor to the next, and the final
    /// one reached through a Last Segment descriptor.
    ///
    /// `dword_data` is the controller's SGLS bits 1:0 = 10b: data block
    /// addresses must be dword aligned.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for no segments or an empty one;
    /// [`SegmentTooLarge`](ErrorKind::SegmentTooLarge) over 4 GiB - 1 (the
    /// length field is 32 bits); [`AddressOverflow`](ErrorKind::AddressOverflow);
    /// [`Misaligned`](ErrorKind::Misaligned) for an unaligned data block
    /// when `dword_data`; [`PoolExhausted`](ErrorKind::PoolExhausted).
    pub fn encode_sgl<'pool, P, I>(
        pools: &'pool NvmePools<P>,
        segments: I,
        dword_data: bool,
    ) -> Result<SglRequest<'pool, P>>
    where
        P: DmaAlloc,
        I: IntoIterator<Item = DmaSegment>,
        I::IntoIter: Clone,
    {
        let segments = segments.into_iter();
        let mut count = 0usize;
        for seg in segments.clone() {
            check_data_segment(&seg, dword_data)?;
            count += 1;
        }
        let mut data = segments.map(|s| SglDescriptor::data_block(s.addr, s.len as u32));
        let mut next = || {
            data.next().ok_or(Error::new(
                ErrorKind::OutOfRange,
                "segments changed while being encoded",
            ))
        };
        match count {
            0 => Err(Error::new(ErrorKind::ZeroSize, "no segments to describe")),
            1 => Ok(SglRequest {
                sgl1: next()?,
                segments: Vec::new(),
            }),
            _ => {
                let mut blocks = Vec::new();
                let sgl1 = write_segments(pools, &mut next, count, &mut blocks)?;
                Ok(SglRequest {
                    sgl1,
                    segments: blocks,
                })
            }
        }
    }

    fn check_data_segment(seg: &DmaSegment, dword_data: bool) -> Result<()> {
        let addr = seg.addr.as_u64();
        if seg.len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "empty SGL data block").at(addr));
        }
        if seg.len > u64::from(u32::MAX) {
            return Err(Error::new(
                ErrorKind::SegmentTooLarge,
                "SGL data block longer than its 32-bit length field",
            )
            .at(addr)
            .len(seg.len));
        }
        if seg.end().is_none() {
            return Err(Error::new(
                ErrorKind::AddressOverflow,
                "segment wraps past the top of the address space",
            )
            .at(addr)
            .len(seg.len));
        }
        if dword_data && addr & 3 != 0 {
            return Err(
                Error::new(ErrorKind::Misaligned, "SGL data block not dword aligned").at(addr),
            );
        }
        Ok(())
    }

    fn pointer_to(
        block: &PoolBlock<'_, impl DmaAlloc>,
        descriptors: usize,
        last: bool,
    ) -> SglDescriptor {
        let kind = if last {
            SglDescriptorType::LastSegment
        } else {
            SglDescriptorType::Segment
        };
        // A segment is at most one memory page (128 MiB): fits in 32 bits.
        SglDescriptor::new(
            kind,
            block.dma_addr(),
            (descriptors * SglDescriptor::SIZE) as u32,
        )
    }

    /// Writes `remaining` data descriptors into segment blocks; returns the
    /// descriptor that points at the first.
    fn write_segments<'pool, P: DmaAlloc>(
        pools: &'pool NvmePools<P>,
        next: &mut impl FnMut() -> Result<SglDescriptor>,
        mut remaining: usize,
        blocks: &mut Vec<PoolBlock<'pool, P>>,
    ) -> Result<SglDescriptor> {
        let mut block = pools.alloc_for(remaining.saturating_mul(SglDescriptor::SIZE))?;
        let capacity = |b: &PoolBlock<'_, P>| b.size() / SglDescriptor::SIZE;
        let fits = |b: &PoolBlock<'_, P>, n: usize| n <= capacity(b);
        let first = if fits(&block, remaining) {
            pointer_to(&block, remaining, true)
        } else {
            pointer_to(&block, capacity(&block), false)
        };
        loop {
            let slots = capacity(&block);
            if remaining <= slots {
                for i in 0..remaining {
                    block.write_at(i * SglDescriptor::SIZE, next()?)?;
                }
                blocks.push(block);
                return Ok(first);
            }
            for i in 0..slots - 1 {
                block.write_at(i * SglDescriptor::SIZE, next()?)?;
            }
            remaining -= slots - 1;
            let chained = pools.alloc_for(remaining.saturating_mul(SglDescriptor::SIZE))?;
            let link = if fits(&chained, remaining) {
                pointer_to(&chained, remaining, true)
            } else {
                pointer_to(&chained, capacity(&chained), false)
            };
            block.write_at((slots - 1) * SglDescriptor::SIZE, link)?;
            blocks.push(block);
            block = chained;
        }
    }
}
