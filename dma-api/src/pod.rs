//! Plain data that may live in device-visible memory.

/// A type every bit pattern of which is a valid value, with no padding,
/// no pointers the device could forge and no drop glue: something a device
/// may write and the CPU may then read back as a value.
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
pub unsafe trait DmaPod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: primitive integers accept every bit pattern and have no padding.
        unsafe impl DmaPod for $t {}
    )* };
}

pod!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

// SAFETY: an array of padding-free all-bit-patterns-valid elements is itself
// padding-free (arrays have no inter-element padding) and all-patterns-valid.
unsafe impl<T: DmaPod, const N: usize> DmaPod for [T; N] {}
