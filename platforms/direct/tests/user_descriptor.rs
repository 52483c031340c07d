//! A user's own descriptor type in coherent memory, with no `unsafe`:
//! zerocopy's derives make it `DmaPod`.

use dma_core::{Coherent, DeviceConstraints, HostMemory};
use dma_direct::DirectPlatform;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes};

/// A little-endian device's 16-byte descriptor, as a driver would declare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct UserDesc {
    addr: U64,
    len: U32,
    flags: U16,
    id: U16,
}

const _: () = assert!(core::mem::size_of::<UserDesc>() == 16);

#[test]
fn a_derived_descriptor_is_written_and_read_back_in_coherent_memory() {
    let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
    let mut ring = Coherent::<[UserDesc], _>::zeroed_slice(&platform, 16).unwrap();
    let desc = UserDesc {
        addr: U64::new(0x1234_5678_9abc_def0),
        len: U32::new(2048),
        flags: U16::new(1),
        id: U16::new(7),
    };
    ring.write(5, desc).unwrap();
    assert_eq!(ring.read(5).unwrap(), desc);
    assert_eq!(ring.read(4).unwrap(), UserDesc::new_zeroed());
    // Out of bounds is an error, not a panic.
    assert!(ring.write(16, desc).is_err());
}

#[test]
fn the_bytes_the_device_sees_are_little_endian_whatever_the_cpu() {
    let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
    let mut one = Coherent::<UserDesc, _>::zeroed(&platform).unwrap();
    let desc = UserDesc {
        addr: U64::new(0x0102_0304_0506_0708),
        len: U32::new(0x1122_3344),
        flags: U16::new(0x5566),
        id: U16::new(0x7788),
    };
    one.write(desc);
    let bytes = one.read().as_bytes().to_vec();
    assert_eq!(
        bytes,
        [8, 7, 6, 5, 4, 3, 2, 1, 0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x88, 0x77]
    );
}
