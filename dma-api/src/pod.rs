//! Plain data that may live in device-visible memory.

use zerocopy::{FromBytes, IntoBytes};

/// A type every bit pattern of which is a valid value, with no padding,
/// no pointers the device could forge and no drop glue: something a device
/// may write and the CPU may then read back as a value.
///
/// Every type with zerocopy's [`FromBytes`] (every bit pattern is valid) and
/// [`IntoBytes`] (no padding) is `DmaPod`, so a descriptor type needs no
/// `unsafe`: derive them (zerocopy 0.8, with its `derive` feature), and the
/// derives check the layout at compile time.
///
/// ```
/// use zerocopy::{FromBytes, IntoBytes};
///
/// /// A device's 16-byte descriptor.
/// #[derive(Clone, Copy, FromBytes, IntoBytes)]
/// #[repr(C)]
/// struct Descriptor {
///     addr: u64,
///     len: u32,
///     flags: u16,
///     id: u16,
/// }
///
/// fn is_pod<T: dma_core::DmaPod>() {}
/// is_pod::<Descriptor>();
/// is_pod::<[Descriptor; 8]>();
/// ```
///
/// A type with padding is refused where it is derived (the padding after
/// `flags` would leave uninitialised bytes in device memory):
///
/// ```compile_fail
/// # use zerocopy::{FromBytes, IntoBytes};
/// #[derive(Clone, Copy, FromBytes, IntoBytes)]
/// #[repr(C)]
/// struct Padded {
///     flags: u16,
///     addr: u64,
/// }
/// ```
///
/// and a type whose bit patterns are not all valid is not `DmaPod`:
///
/// ```compile_fail
/// # use zerocopy::IntoBytes;
/// #[derive(Clone, Copy, IntoBytes)]
/// #[repr(C)]
/// struct Flagged {
///     done: u8,
/// }
/// fn is_pod<T: dma_core::DmaPod>() {}
/// is_pod::<Flagged>(); // error: Flagged is not FromBytes
/// ```
///
/// # Safety
///
/// Implement only for `Copy` types that
/// - are valid for every bit pattern (no `bool`, `char`, enums, references,
///   `NonZero*`, or types with invariants a device could break),
/// - have no padding bytes (reading padding written by a device is fine,
///   but writing a value with padding leaves uninitialised bytes in memory
///   that may later be read as another `DmaPod` type),
/// - are `#[repr(C)]` or `#[repr(transparent)]` if they are structs, so the
///   layout matches what the device expects.
///
/// Deriving zerocopy's traits instead proves the first two; a hand-written
/// impl remains for types that cannot derive them.
pub unsafe trait DmaPod: Copy + Send + Sync + 'static {}

// SAFETY: `FromBytes` is zerocopy's promise that every bit pattern is a
// valid `T`, and `IntoBytes` that `T` has no padding (its derives check
// both, and a hand-written impl of them is itself `unsafe` with those
// obligations); `Copy` rules out drop glue. The `repr` requirement is about
// matching the device's layout, not soundness, and `IntoBytes` requires a
// defined `repr` for structs anyway.
unsafe impl<T: FromBytes + IntoBytes + Copy + Send + Sync + 'static> DmaPod for T {}
