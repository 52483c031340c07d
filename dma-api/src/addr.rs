//! Address newtypes.
//!
//! A CPU physical address and a device-visible bus address are different
//! things: behind an IOMMU or a bus offset they differ by more than a cast.
//! Keeping them apart in the types makes "gave the device a physical
//! address" a compile error rather than a corrupted disk. Both are 64 bits on
//! every target, because a 32-bit CPU may still drive a 64-bit-capable device
//! (ARM LPAE, PAE).

use core::fmt;

macro_rules! address_type {
    ($(#[$meta:meta])* $name:ident, $short:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The zero address.
            pub const ZERO: Self = Self(0);

            /// Wraps a raw 64-bit address.
            #[inline]
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw 64-bit value.
            #[inline]
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// `self + bytes`, or `None` if it overflows 64 bits.
            #[inline]
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - bytes`, or `None` if it goes below zero.
            #[inline]
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// The distance in bytes from `base` up to `self`, or `None` if
            /// `self` is below `base`.
            #[inline]
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// The address of the last byte of a `len`-byte range starting
            /// here, or `None` if `len` is zero or the range wraps.
            #[inline]
            pub const fn checked_end_inclusive(self, len: u64) -> Option<Self> {
                if len == 0 {
                    return None;
                }
                match self.0.checked_add(len - 1) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// Whether the address is a multiple of `align`, which must be a
            /// power of two (any other value returns `false`).
            #[inline]
            pub const fn is_aligned(self, align: u64) -> bool {
                align.is_power_of_two() && self.0 & (align - 1) == 0
            }

            /// Rounds down to a multiple of `align` (a power of two; any
            /// other value returns `None`).
            #[inline]
            pub const fn align_down(self, align: u64) -> Option<Self> {
                if !align.is_power_of_two() {
                    return None;
                }
                Some(Self(self.0 & !(align - 1)))
            }

            /// Rounds up to a multiple of `align` (a power of two), or `None`
            /// if `align` is not a power of two or the result overflows.
            #[inline]
            pub const fn align_up(self, align: u64) -> Option<Self> {
                if !align.is_power_of_two() {
                    return None;
                }
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }

            /// The offset of the address within an `align`-sized block
            /// (`align` a power of two; any other value returns 0).
            #[inline]
            pub const fn offset_in(self, align: u64) -> u64 {
                if align.is_power_of_two() {
                    self.0 & (align - 1)
                } else {
                    0
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl From<$name> for u64 {
            #[inline]
            fn from(a: $name) -> u64 {
                a.0
            }
        }
    };
}

address_type!(
    /// A CPU physical address: what the memory controller sees.
    PhysAddr,
    "PhysAddr"
);

address_type!(
    /// A device-visible bus address (an IOVA behind an IOMMU): the value a
    /// driver writes into descriptors and registers.
    DmaAddr,
    "DmaAddr"
);

static_assertions::assert_eq_size!(PhysAddr, u64);
static_assertions::assert_eq_size!(DmaAddr, u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_checked() {
        let a = PhysAddr::new(u64::MAX - 1);
        assert_eq!(a.checked_add(1), Some(PhysAddr::new(u64::MAX)));
        assert_eq!(a.checked_add(2), None);
        assert_eq!(DmaAddr::new(3).checked_sub(4), None);
        assert_eq!(DmaAddr::new(10).offset_from(DmaAddr::new(4)), Some(6));
        assert_eq!(DmaAddr::new(4).offset_from(DmaAddr::new(10)), None);
    }

    #[test]
    fn end_inclusive_rejects_empty_and_wrapping_ranges() {
        assert_eq!(PhysAddr::new(0x1000).checked_end_inclusive(0), None);
        assert_eq!(
            PhysAddr::new(0x1000).checked_end_inclusive(0x1000),
            Some(PhysAddr::new(0x1fff))
        );
        assert_eq!(
            PhysAddr::new(u64::MAX).checked_end_inclusive(1),
            Some(PhysAddr::new(u64::MAX))
        );
        assert_eq!(PhysAddr::new(u64::MAX).checked_end_inclusive(2), None);
    }

    #[test]
    fn alignment_helpers() {
        let a = DmaAddr::new(0x1234);
        assert!(!a.is_aligned(0x1000));
        assert!(a.is_aligned(4));
        assert!(
            !a.is_aligned(3),
            "non-power-of-two alignment is never satisfied"
        );
        assert_eq!(a.align_down(0x1000), Some(DmaAddr::new(0x1000)));
        assert_eq!(a.align_up(0x1000), Some(DmaAddr::new(0x2000)));
        assert_eq!(a.align_up(3), None);
        assert_eq!(DmaAddr::new(u64::MAX).align_up(0x1000), None);
        assert_eq!(a.offset_in(0x1000), 0x234);
    }

    #[test]
    fn formatting_names_the_kind() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{:?}", PhysAddr::new(0x10)), "PhysAddr(0x10)");
        assert_eq!(format!("{:?}", DmaAddr::new(0x10)), "DmaAddr(0x10)");
        assert_eq!(format!("{}", DmaAddr::new(0x10)), "0x10");
    }
}
