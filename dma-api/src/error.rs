//! Errors, with a kind a driver can match on (in the style of
//! embedded-hal's `ErrorKind`) and a message a person can read.

use core::fmt;

/// What went wrong, coarse enough to match on and stable across backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A zero-byte allocation, mapping or segment.
    ZeroSize,
    /// An address plus a length wrapped past the top of the 64-bit space.
    AddressOverflow,
    /// An address, length or size is not aligned as required.
    Misaligned,
    /// The memory lies beyond what the device can address (its DMA mask).
    Unreachable,
    /// A segment would cross the device's boundary (e.g. a 4 GiB line).
    CrossesBoundary,
    /// A segment is longer than the device's maximum segment size.
    SegmentTooLarge,
    /// More segments than the device accepts (busdma's `EFBIG`).
    TooManySegments,
    /// The device constraints themselves are invalid.
    InvalidConstraints,
    /// The environment has no memory left for the request.
    OutOfMemory,
    /// A fixed-size pool (DMA pool, PRP list pool) has no free block.
    PoolExhausted,
    /// The IOMMU's I/O virtual address space has no room for the request.
    IovaExhausted,
    /// The bounce-buffer pool has no run of free slots large enough.
    BounceExhausted,
    /// A virtual range is not physically contiguous, or not translatable.
    NotContiguous,
    /// An offset or index lies outside the mapping or allocation.
    OutOfRange,
    /// An unmap, sync or free names memory that is not mapped.
    NotMapped,
    /// A map would overlap an existing translation.
    AlreadyMapped,
    /// The platform or environment cannot provide what was asked (for
    /// example non-cacheable memory on a hosted test process).
    Unsupported,
    /// A device access faulted in the IOMMU.
    DeviceFault,
    /// The device wrote something a correct device never writes (an
    /// out-of-range id, an impossible length, a used index that jumps).
    DeviceMisbehaved,
}

impl ErrorKind {
    /// A short description of the kind.
    pub const fn description(self) -> &'static str {
        match self {
            Self::ZeroSize => "zero-sized request",
            Self::AddressOverflow => "address range overflows 64 bits",
            Self::Misaligned => "misaligned address or size",
            Self::Unreachable => "memory beyond the device's addressing mask",
            Self::CrossesBoundary => "segment crosses the device's boundary",
            Self::SegmentTooLarge => "segment longer than the device's maximum",
            Self::TooManySegments => "more segments than the device accepts",
            Self::InvalidConstraints => "invalid device constraints",
            Self::OutOfMemory => "out of memory",
            Self::PoolExhausted => "DMA pool exhausted",
            Self::IovaExhausted => "I/O virtual address space exhausted",
            Self::BounceExhausted => "bounce-buffer pool exhausted",
            Self::NotContiguous => "range is not physically contiguous or not translatable",
            Self::OutOfRange => "offset or index out of range",
            Self::NotMapped => "memory is not mapped",
            Self::AlreadyMapped => "range is already mapped",
            Self::Unsupported => "not supported by this platform",
            Self::DeviceFault => "device access faulted",
            Self::DeviceMisbehaved => "device wrote an invalid value",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A DMA error: a [`kind`](Self::kind), a static message saying which rule
/// was broken, and the address and length involved where there are some.
///
/// It is small and `Copy`, so it can be returned from hot paths and carried
/// without allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error {
    kind: ErrorKind,
    message: &'static str,
    addr: Option<u64>,
    len: Option<u64>,
}

impl Error {
    /// An error of `kind` with a message naming the broken rule.
    pub const fn new(kind: ErrorKind, message: &'static str) -> Self {
        Self {
            kind,
            message,
            addr: None,
            len: None,
        }
    }

    /// Attaches the address involved.
    pub const fn at(mut self, addr: u64) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Attaches the length involved.
    pub const fn len(mut self, len: u64) -> Self {
        self.len = Some(len);
        self
    }

    /// The kind, for matching.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message naming the broken rule (empty when built from a bare kind).
    pub const fn message(&self) -> &'static str {
        self.message
    }

    /// The address involved, if any.
    pub const fn addr(&self) -> Option<u64> {
        self.addr
    }

    /// The length involved, if any.
    pub const fn length(&self) -> Option<u64> {
        self.len
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind, "")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.description())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        match (self.addr, self.len) {
            (Some(a), Some(l)) => write!(f, " (address {a:#x}, length {l:#x})"),
            (Some(a), None) => write!(f, " (address {a:#x})"),
            (None, Some(l)) => write!(f, " (length {l:#x})"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {self})", self.kind)
    }
}

impl core::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_names_kind_rule_and_numbers() {
        let e = Error::new(ErrorKind::Unreachable, "buffer ends above the 32-bit mask")
            .at(0x1_0000_0000)
            .len(0x1000);
        assert_eq!(
            e.to_string(),
            "memory beyond the device's addressing mask: buffer ends above the 32-bit mask \
             (address 0x100000000, length 0x1000)"
        );
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert_eq!(e.addr(), Some(0x1_0000_0000));
        assert_eq!(e.length(), Some(0x1000));
    }

    #[test]
    fn from_kind_uses_its_description() {
        let e = Error::from(ErrorKind::PoolExhausted);
        assert_eq!(e.to_string(), "DMA pool exhausted");
        assert_eq!(e.addr(), None);
    }
}
