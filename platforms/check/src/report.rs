//! What the checker reports: each misuse as data a test can match on, with
//! a `Display` that reads like a kernel log line.

use core::fmt;

use dma_core::{CpuAccess, DmaAddr, DmaAttrs, DmaDirection, PhysAddr};

/// How a tracked region was made (Linux's `dma_debug_entry` type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// One streaming mapping from [`DmaMap::map`](dma_core::DmaMap::map).
    Single,
    /// One entry of a table mapped with
    /// [`DmaMap::map_sg`](dma_core::DmaMap::map_sg).
    Sg,
    /// A coherent allocation from
    /// [`DmaAlloc::alloc_coherent`](dma_core::DmaAlloc::alloc_coherent).
    Coherent,
}

impl fmt::Display for MappingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single => "single mapping",
            Self::Sg => "scatter-gather entry",
            Self::Coherent => "coherent allocation",
        })
    }
}

/// The CPU side of a tracked region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuSide {
    /// A streaming mapping's physical address.
    Phys(PhysAddr),
    /// A coherent allocation's CPU (virtual) address.
    Virt(usize),
}

impl fmt::Display for CpuSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phys(p) => write!(f, "phys {p}"),
            Self::Virt(v) => write!(f, "cpu {v:#x}"),
        }
    }
}

/// Where an sg entry sits in the table it was mapped with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SgSlot {
    /// The id of the table (the id of its first entry's record).
    pub table: u64,
    /// The entry's index in the table.
    pub index: usize,
    /// How many entries the table was mapped with.
    pub count: usize,
}

/// A live (or just ended) region, as the checker recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// A sequence number, unique for the life of the checker.
    pub id: u64,
    /// How it was made.
    pub kind: MappingKind,
    /// The CPU side.
    pub cpu: CpuSide,
    /// The device address.
    pub dma: DmaAddr,
    /// Length in bytes (a coherent allocation's rounded-up size).
    pub len: usize,
    /// The direction (`Bidirectional` for coherent allocations).
    pub dir: DmaDirection,
    /// The attributes it was made with.
    pub attrs: DmaAttrs,
    /// Its place in a scatter-gather table.
    pub sg: Option<SgSlot>,
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} #{} ({}, dma {}, {:#x} bytes, {:?}",
            self.kind, self.id, self.cpu, self.dma, self.len, self.dir
        )?;
        if let Some(sg) = self.sg {
            write!(f, ", entry {} of {}", sg.index, sg.count)?;
        }
        f.write_str(")")
    }
}

/// The operation during which a misuse was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`DmaMap::map`](dma_core::DmaMap::map).
    Map,
    /// [`DmaMap::map_sg`](dma_core::DmaMap::map_sg).
    MapSg,
    /// [`DmaMap::unmap`](dma_core::DmaMap::unmap).
    Unmap,
    /// [`DmaMap::unmap_sg`](dma_core::DmaMap::unmap_sg).
    UnmapSg,
    /// [`DmaMap::sync_for_cpu`](dma_core::DmaMap::sync_for_cpu) or
    /// `DmaMap::sync_sg_for_cpu`.
    SyncForCpu,
    /// [`DmaMap::sync_for_device`](dma_core::DmaMap::sync_for_device) or
    /// `DmaMap::sync_sg_for_device`.
    SyncForDevice,
    /// [`DmaAlloc::free_coherent`](dma_core::DmaAlloc::free_coherent).
    FreeCoherent,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Map => "map",
            Self::MapSg => "map_sg",
            Self::Unmap => "unmap",
            Self::UnmapSg => "unmap_sg",
            Self::SyncForCpu => "sync_for_cpu",
            Self::SyncForDevice => "sync_for_device",
            Self::FreeCoherent => "free_coherent",
        })
    }
}

/// Which recorded property the caller got wrong, and what it passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// A different length.
    Size(usize),
    /// A different direction.
    Direction(DmaDirection),
    /// A different kind (for example `unmap` of an sg entry).
    Kind(MappingKind),
    /// A coherent free with a different CPU address.
    CpuAddress(usize),
    /// A streaming call with a different physical address.
    Phys(PhysAddr),
    /// An sg call with a different number of entries.
    SgCount(usize),
    /// A coherent free with different attributes.
    Attrs(DmaAttrs),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size(n) => write!(f, "a different size ({n:#x} bytes)"),
            Self::Direction(d) => write!(f, "a different direction ({d:?})"),
            Self::Kind(k) => write!(f, "a different kind (as a {k})"),
            Self::CpuAddress(a) => write!(f, "a different CPU address ({a:#x})"),
            Self::Phys(p) => write!(f, "a different physical address ({p})"),
            Self::SgCount(n) => write!(f, "a different sg entry count ({n})"),
            Self::Attrs(a) => write!(f, "different attributes ({a:?})"),
        }
    }
}

/// Which sync a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncPoint {
    /// `sync_for_cpu`.
    ForCpu,
    /// `sync_for_device`.
    ForDevice,
}

/// What kind of memory a classifier found a mapping in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryClass {
    /// Nothing known against it.
    Ordinary,
    /// A thread's stack: the frame may be gone while the device still
    /// holds the address, and with virtually mapped stacks it is not
    /// physically contiguous.
    Stack,
    /// Read-only memory (code, constants): the device could write what the
    /// CPU may not, and it may lie outside the DMA-able linear map.
    ReadOnly,
}

/// One detected misuse of the DMA API.
///
/// Each variant is one class of Linux's `CONFIG_DMA_API_DEBUG` checks (the
/// "unchecked mapping error" class has no variant: see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Report {
    /// An unmap, sync or free of memory with no live record: never mapped,
    /// or already unmapped (`previous` then holds the ended record, if the
    /// checker's history still has it).
    NotMapped {
        /// The call.
        op: Operation,
        /// The device address passed.
        dma: DmaAddr,
        /// The length passed.
        len: usize,
        /// The most recent ended record at that device address, if any.
        previous: Option<Mapping>,
    },
    /// An unmap, sync or free whose description differs from the record.
    Mismatch {
        /// The call.
        op: Operation,
        /// What was recorded.
        mapping: Mapping,
        /// What differs, with the value passed.
        field: Field,
    },
    /// A sync of a range that leaves the mapping.
    SyncOutOfRange {
        /// The call.
        op: Operation,
        /// The mapping.
        mapping: Mapping,
        /// The offset passed.
        offset: usize,
        /// The length passed.
        len: usize,
    },
    /// A sync naming another direction than mapped, which makes it a sync
    /// for the CPU of memory the device only reads or for the device of
    /// memory the device only writes (Linux's `check_sync`); it comes with
    /// a [`Mismatch`](Self::Mismatch) `Direction` report, and the recorded
    /// mapping is still synced.
    SyncWrongDirection {
        /// The mapping.
        mapping: Mapping,
        /// The sync attempted.
        sync: SyncPoint,
    },
    /// A map of stack or read-only memory.
    BadMemory {
        /// The call.
        op: Operation,
        /// The physical address passed.
        phys: PhysAddr,
        /// The length passed.
        len: usize,
        /// What the classifier found.
        class: MemoryClass,
    },
    /// A mapped sg entry longer than the device's maximum segment.
    SegmentTooLong {
        /// The entry, as mapped.
        mapping: Mapping,
        /// The device's maximum segment size.
        max: u64,
    },
    /// A mapped sg entry that crosses the device's boundary.
    SegmentCrossesBoundary {
        /// The entry, as mapped.
        mapping: Mapping,
        /// The device's boundary.
        boundary: u64,
    },
    /// A mapping the device may write shares a cache line with another
    /// such live mapping: the CPU's maintenance of one corrupts the other.
    CacheLineOverlap {
        /// The new mapping.
        mapping: Mapping,
        /// The live mapping it overlaps.
        existing: Mapping,
        /// The physical address of the first shared line.
        line: PhysAddr,
        /// The cache line size used.
        line_size: usize,
    },
    /// The CPU read or wrote, through a mapping's safe accessor, bytes the
    /// device owned at that moment: after map or `sync_for_device`, before
    /// a `sync_for_cpu` covering them. A check Linux's dma-debug cannot
    /// make (it sees no CPU accesses).
    CpuAccessDeviceOwned {
        /// The mapping.
        mapping: Mapping,
        /// Read or write.
        access: CpuAccess,
        /// The first byte the device owned, as an offset into the mapping.
        offset: usize,
        /// Bytes from there to the end of the access.
        len: usize,
    },
    /// A mapping or allocation still live when the device was released.
    Leak {
        /// The record.
        mapping: Mapping,
    },
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMapped {
                op,
                dma,
                len,
                previous,
            } => {
                write!(
                    f,
                    "DMA-API: {op} of memory that is not mapped (dma {dma}, {len:#x} bytes)"
                )?;
                match previous {
                    Some(p) => write!(f, ": already ended, was {p}"),
                    None => f.write_str(": never mapped"),
                }
            }
            Self::Mismatch { op, mapping, field } => {
                write!(f, "DMA-API: {op} with {field} than mapped: {mapping}")
            }
            Self::SyncOutOfRange {
                op,
                mapping,
                offset,
                len,
            } => write!(
                f,
                "DMA-API: {op} of {len:#x} bytes at offset {offset:#x} leaves {mapping}"
            ),
            Self::SyncWrongDirection { mapping, sync } => match sync {
                SyncPoint::ForCpu => write!(
                    f,
                    "DMA-API: sync_for_cpu of memory the device only reads: {mapping}"
                ),
                SyncPoint::ForDevice => write!(
                    f,
                    "DMA-API: sync_for_device of memory the device only writes: {mapping}"
                ),
            },
            Self::BadMemory {
                op,
                phys,
                len,
                class,
            } => {
                let what = match class {
                    MemoryClass::Stack => "stack",
                    MemoryClass::ReadOnly => "read-only",
                    MemoryClass::Ordinary => "ordinary",
                };
                write!(
                    f,
                    "DMA-API: {op} of {what} memory refused (phys {phys}, {len:#x} bytes)"
                )
            }
            Self::SegmentTooLong { mapping, max } => write!(
                f,
                "DMA-API: sg segment longer than the device's maximum of {max:#x} bytes: {mapping}"
            ),
            Self::SegmentCrossesBoundary { mapping, boundary } => write!(
                f,
                "DMA-API: sg segment crosses the device's {boundary:#x}-byte boundary: {mapping}"
            ),
            Self::CacheLineOverlap {
                mapping,
                existing,
                line,
                line_size,
            } => write!(
                f,
                "DMA-API: {mapping} shares the {line_size}-byte cache line at {line} with {existing}"
            ),
            Self::CpuAccessDeviceOwned {
                mapping,
                access,
                offset,
                len,
            } => {
                let what = match access {
                    CpuAccess::Read => "read",
                    CpuAccess::Write => "write",
                };
                write!(
                    f,
                    "DMA-API: CPU {what} of {len:#x} bytes at offset {offset:#x} the device owns \
                     (call sync_for_cpu, or a sync_range_for_cpu covering them, first): {mapping}"
                )
            }
            Self::Leak { mapping } => {
                write!(f, "DMA-API: still live when the device was released: {mapping}")
            }
        }
    }
}
