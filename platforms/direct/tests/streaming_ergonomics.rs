//! What a new user's first streaming mapping needs: `?` without `map_err`,
//! the error as a `core::error::Error`, and the mapping as device segments.

use dma_core::{
    DeviceConstraints, DmaSegment, Error, ErrorKind, HostMemory, MapError, Result,
    StreamingMapping, ToDevice,
};
use dma_direct::DirectPlatform;

fn platform() -> DirectPlatform<HostMemory, dma_direct::HardwareCoherent> {
    DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED)
}

fn map_with_question_mark(buffer: Vec<u8>) -> Result<DmaSegment> {
    let platform = platform();
    let tx = StreamingMapping::<_, ToDevice, _>::map(&platform, buffer)?;
    let segment = tx.segments().next().expect("a mapping has a segment");
    tx.unmap()?;
    Ok(segment)
}

#[test]
fn question_mark_keeps_the_map_error_kind() {
    let err: Error = map_with_question_mark(Vec::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ZeroSize);
}

#[test]
fn a_map_error_is_a_core_error_that_displays_its_cause() {
    let platform = platform();
    let failed: MapError<Vec<u8>> =
        StreamingMapping::<_, ToDevice, _>::map(&platform, Vec::new()).unwrap_err();
    let cause = failed.error.to_string();
    let boxed: Box<dyn core::error::Error> = Box::new(failed);
    assert_eq!(boxed.to_string(), cause);
}

#[test]
fn a_streaming_mapping_is_one_segment_of_its_address_and_length() {
    let platform = platform();
    let tx = StreamingMapping::<_, ToDevice, _>::map(&platform, vec![0xa5u8; 1500]).unwrap();
    let segments: Vec<DmaSegment> = tx.segments().collect();
    assert_eq!(segments, [DmaSegment::new(tx.dma_addr(), 1500)]);
    let _: Vec<u8> = tx.unmap().unwrap();
}
