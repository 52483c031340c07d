//! Encoders decoded back the way a device reads them: NVMe PRP (through
//! the controller-side walker) and SGL, the generic hardware SG entry, and
//! virtio chains; plus every bad input.

mod common;

use common::{canonical, collect_walk, device_read, device_read_u64, platform, seg};
use dma_core::{Coherent, DeviceConstraints, DmaAddr, ErrorKind, Result};
use dma_sg::hw::{encode_hw_copy, encode_hw_sg, walk_hw_sg, HwSgEntry, HwSgFlags};
use dma_sg::nvme::{self, walk_prp, NvmePools, PrpLayout, SglDescriptor, SglDescriptorType};
use dma_sg::virtio::{encode_chain, encode_indirect, VirtqDesc, VirtqDescFlags};
use dma_sg::DmaSegment;
use proptest::prelude::*;

const P: u64 = 4096;

fn kind<T: core::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.expect_err("input should be refused").kind()
}

/// `n` scattered, page-aligned pages starting at a fake device address:
/// the encoders never touch data pages, only list memory.
fn scattered_pages(n: u64) -> Vec<DmaSegment> {
    (0..n).map(|i| seg(0x40_0000_0000 + i * 3 * P, P)).collect()
}

/// Walks PRP1/PRP2 as the controller does, reading list entries from the
/// pool memory the request owns.
fn decode_prp(req: &nvme::PrpRequest<'_, &common::Platform>, len: u64) -> Result<Vec<DmaSegment>> {
    collect_walk(|visit| {
        walk_prp(
            req.prp1(),
            req.prp2(),
            len,
            P as usize,
            // SAFETY: the walker reads only list slots, which lie in pool
            // blocks `req` holds (checked by the encoder's layout).
            |a| Ok(unsafe { device_read_u64(a) }),
            visit,
        )
    })
}

#[test]
fn prp_shapes_round_trip_and_lists_chain_at_page_ends() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let pools = NvmePools::new(&p, P as usize, 8, 8).unwrap();
    let initial = pools.available();
    // (entries, expected list blocks): 1 and 2 need no list; up to 33
    // entries (32 in the list) fit a 256-byte block; 513 entries fill one
    // page exactly; 514 need a chained second page.
    for (entries, blocks) in [
        (1, 0),
        (2, 0),
        (3, 1),
        (33, 1),
        (34, 1),
        (513, 1),
        (514, 2),
        (1100, 3),
    ] {
        let segs = scattered_pages(entries);
        let req = nvme::encode_prp(&pools, segs.iter().copied()).unwrap();
        assert_eq!(req.list_blocks(), blocks, "{entries} entries");
        let len = entries * P;
        assert_eq!(
            canonical(decode_prp(&req, len).unwrap()),
            canonical(segs.clone())
        );
        if entries == 2 {
            assert_eq!(req.prp2(), segs[1].addr);
        }
        if entries == 1 {
            assert_eq!(req.prp2(), DmaAddr::ZERO);
        }
        if blocks > 1 {
            // The chain pointer is the last slot of the first list page.
            let first = req.list_regions().next().unwrap().addr;
            let second = req.list_regions().nth(1).unwrap().addr;
            assert_eq!(req.list_regions().next().unwrap().len, P);
            // SAFETY: the last slot of a page block the request holds.
            let chain = unsafe { device_read_u64(DmaAddr::new(first.as_u64() + P - 8)) };
            assert_eq!(chain, second.as_u64());
        }
    }
    assert_eq!(
        pools.available(),
        initial,
        "dropping the requests returned every block"
    );
}

#[test]
fn prp_first_entry_carries_the_offset() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let pools = NvmePools::new(&p, P as usize, 2, 2).unwrap();
    // 0x800 into a page, then 3 pages contiguous, then a partial last page.
    let segs = [seg(0x10_0800, 0x800 + 3 * P), seg(0x90_0000, 0x204)];
    let req = nvme::encode_prp(&pools, segs).unwrap();
    assert_eq!(req.prp1(), DmaAddr::new(0x10_0800));
    let list = req.prp2();
    // SAFETY: list slots 0..4 of a small block the request holds.
    let entries: Vec<u64> = (0..4)
        .map(|i| unsafe { device_read_u64(DmaAddr::new(list.as_u64() + 8 * i)) })
        .collect();
    assert_eq!(entries, [0x10_1000, 0x10_2000, 0x10_3000, 0x90_0000]);
    let total = 0x800 + 3 * P + 0x204;
    assert_eq!(canonical(decode_prp(&req, total).unwrap()), canonical(segs));
}

#[test]
fn prp_rejects_what_it_cannot_describe() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let pools = NvmePools::new(&p, P as usize, 2, 2).unwrap();
    let enc = |segs: &[DmaSegment]| nvme::encode_prp(&pools, segs.iter().copied()).map(|_| ());
    assert_eq!(kind(enc(&[])), ErrorKind::ZeroSize);
    assert_eq!(kind(enc(&[seg(0x1000, 0)])), ErrorKind::ZeroSize);
    assert_eq!(
        kind(enc(&[seg(0x1002, 16)])),
        ErrorKind::Misaligned,
        "not dword aligned"
    );
    assert_eq!(
        kind(enc(&[seg(0x1000, P), seg(0x5200, 16)])),
        ErrorKind::Misaligned,
        "offset on a later entry"
    );
    assert_eq!(
        kind(enc(&[seg(0x1000, 0x800), seg(0x5000, 16)])),
        ErrorKind::Misaligned,
        "a segment before the last ends mid-page"
    );
    assert_eq!(
        kind(enc(&[seg(u64::MAX - 7, 16)])),
        ErrorKind::AddressOverflow
    );
    assert_eq!(
        kind(PrpLayout::of([seg(0x1000, 8)], 2048)),
        ErrorKind::InvalidConstraints
    );
    assert_eq!(
        kind(NvmePools::new(&p, 4097, 1, 1)),
        ErrorKind::InvalidConstraints
    );
    // Exhausted pools: two list pages needed, one available; the block taken
    // first goes back.
    let one = NvmePools::new(&p, P as usize, 1, 1).unwrap();
    let initial = one.available();
    assert_eq!(initial.0, 1);
    let r = nvme::encode_prp(&one, scattered_pages(600));
    assert_eq!(kind(r.map(|_| ())), ErrorKind::PoolExhausted);
    assert_eq!(one.available(), initial);
    // The single pass meets the dry pool (at the second list page) before
    // the bad last segment; the segment's error is reported, as a check
    // ahead of any allocation would, and every block goes back.
    let mut bad_tail = scattered_pages(600);
    bad_tail.push(seg(0x7_0000_0200, 16));
    assert_eq!(
        kind(nvme::encode_prp(&one, bad_tail.iter().copied()).map(|_| ())),
        ErrorKind::Misaligned
    );
    assert_eq!(one.available(), initial);
    // The page pool's only block held by a 40-entry list.
    let held = nvme::encode_prp(&one, scattered_pages(40)).unwrap();
    assert_eq!(
        kind(nvme::encode_prp(&one, scattered_pages(40)).map(|_| ())),
        ErrorKind::PoolExhausted
    );
    drop(held);
}

#[test]
fn prp_walker_rejects_malformed_commands() {
    let no_read = |_| -> Result<u64> { panic!("no list expected") };
    let walk = |p1: u64, p2: u64, len: u64, read: &dyn Fn(DmaAddr) -> Result<u64>| {
        collect_walk(|v| walk_prp(DmaAddr::new(p1), DmaAddr::new(p2), len, P as usize, read, v))
    };
    assert_eq!(kind(walk(0x1000, 0, 0, &no_read)), ErrorKind::ZeroSize);
    assert_eq!(kind(walk(0x1001, 0, 8, &no_read)), ErrorKind::Misaligned);
    assert_eq!(
        kind(walk(0x1000, 0x2010, 2 * P, &no_read)),
        ErrorKind::Misaligned
    );
    assert_eq!(
        kind(walk(0x1000, 0x2004, 3 * P, &no_read)),
        ErrorKind::Misaligned
    );
    let offset_entry = |_| Ok(0x3_0010);
    assert_eq!(
        kind(walk(0x1000, 0x2000, 3 * P, &offset_entry)),
        ErrorKind::Misaligned
    );
    // A list at 0x2000 whose slot i points at page 0x50_0000 + i pages.
    let list = |a: DmaAddr| Ok(0x50_0000 + (a.as_u64() - 0x2000) / 8 * P);
    assert_eq!(
        walk(0x1000, 0x2000, 3 * P, &list).unwrap(),
        [seg(0x1000, P), seg(0x50_0000, P), seg(0x50_1000, P)]
    );
    // PRP2 pointing at the last slot of a page: that slot chains to 0x7000.
    let chained = |a: DmaAddr| {
        Ok(match a.as_u64() {
            0x2ff8 => 0x7000,
            0x7000 => 0x60_0000,
            0x7008 => 0x61_0000,
            other => panic!("unexpected read at {other:#x}"),
        })
    };
    assert_eq!(
        walk(0x1000, 0x2ff8, 3 * P, &chained).unwrap(),
        [seg(0x1000, P), seg(0x60_0000, P), seg(0x61_0000, P)]
    );
    // A final partial page is described by a list entry without chaining.
    let last_slot = |a: DmaAddr| {
        Ok(if a.as_u64() == 0x2ff8 {
            0x60_0000
        } else {
            0x61_0000
        })
    };
    assert_eq!(
        walk(0x1000, 0x2ff0, P + P + 10, &last_slot).unwrap(),
        [seg(0x1000, P), seg(0x61_0000, P), seg(0x60_0000, 10)]
    );
}

/// Follows SGL descriptors as a controller does, reading segments from
/// the pool memory the request owns; returns the data blocks in order.
fn decode_sgl(sgl1: SglDescriptor) -> Vec<DmaSegment> {
    let mut out = Vec::new();
    let mut current = sgl1;
    let mut final_seen = false;
    loop {
        match current.descriptor_type() {
            Some(SglDescriptorType::DataBlock) => {
                out.push(DmaSegment::new(current.addr(), current.len().into()));
                return out;
            }
            Some(kind @ (SglDescriptorType::Segment | SglDescriptorType::LastSegment)) => {
                assert!(!final_seen, "no pointer after the last segment");
                final_seen = kind == SglDescriptorType::LastSegment;
                let n = current.len() as usize / SglDescriptor::SIZE;
                assert_eq!(current.len() as usize % SglDescriptor::SIZE, 0);
                assert!(n >= 1);
                let mut next = None;
                for i in 0..n {
                    let at = DmaAddr::new(current.addr().as_u64() + (i * 16) as u64);
                    // SAFETY: inside a segment block the request holds.
                    let bytes: [u8; 16] = unsafe { device_read(at) };
                    let d = sgl_from_bytes(bytes);
                    match d.descriptor_type() {
                        Some(SglDescriptorType::DataBlock) => {
                            out.push(DmaSegment::new(d.addr(), d.len().into()))
                        }
                        Some(SglDescriptorType::Segment | SglDescriptorType::LastSegment) => {
                            assert_eq!(i, n - 1, "a pointer is the last descriptor of its segment");
                            assert!(!final_seen, "the last segment holds only data");
                            next = Some(d);
                        }
                        other => panic!("unexpected descriptor {other:?}"),
                    }
                }
                match next {
                    Some(d) => current = d,
                    None => {
                        assert!(final_seen, "chain ends in a Last Segment");
                        return out;
                    }
                }
            }
            other => panic!("unexpected SGL1 {other:?}"),
        }
    }
}

fn sgl_from_bytes(b: [u8; 16]) -> SglDescriptor {
    let addr = u64::from_le_bytes(b[..8].try_into().unwrap());
    let len = u32::from_le_bytes(b[8..12].try_into().unwrap());
    let kind = SglDescriptorType::from_bits(b[15] >> 4).expect("defined type");
    assert_eq!(b[15] & 0xf, 0, "sub type Address");
    assert_eq!(&b[12..15], &[0, 0, 0]);
    SglDescriptor::new(kind, DmaAddr::new(addr), len)
}

#[test]
fn sgl_shapes_round_trip() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let pools = NvmePools::new(&p, P as usize, 4, 4).unwrap();
    let initial = pools.available();
    // 1: data block in SGL1; up to 16: one small segment; 256 fill a page;
    // 257 and 600 chain.
    for (n, blocks) in [
        (1u64, 0),
        (2, 1),
        (16, 1),
        (17, 1),
        (256, 1),
        (257, 2),
        (600, 3),
    ] {
        let segs: Vec<DmaSegment> = (0..n)
            .map(|i| seg(0x7_0000_0000 + i * 0x10_0000 + 4 * i, 0x200 + i))
            .collect();
        let req = nvme::encode_sgl(&pools, segs.iter().copied(), true).unwrap();
        assert_eq!(req.segment_blocks(), blocks, "{n} segments");
        let expected_sgl1 = match n {
            1 => SglDescriptorType::DataBlock,
            2..=256 => SglDescriptorType::LastSegment,
            _ => SglDescriptorType::Segment,
        };
        assert_eq!(req.sgl1().descriptor_type(), Some(expected_sgl1));
        assert_eq!(decode_sgl(req.sgl1()), segs);
        let dptr = req.sgl1().to_dptr();
        assert_eq!(dptr[0], req.sgl1().addr().as_u64());
        assert_eq!(dptr[1] >> 60, expected_sgl1 as u64);
    }
    assert_eq!(pools.available(), initial);
}

#[test]
fn sgl_rejects_bad_segments() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let pools = NvmePools::new(&p, P as usize, 1, 1).unwrap();
    let initial = pools.available();
    let enc = |segs: &[DmaSegment], dword| {
        nvme::encode_sgl(&pools, segs.iter().copied(), dword).map(|_| ())
    };
    assert_eq!(kind(enc(&[], false)), ErrorKind::ZeroSize);
    assert_eq!(kind(enc(&[seg(0x1000, 0)], false)), ErrorKind::ZeroSize);
    assert_eq!(
        kind(enc(&[seg(0x1000, 1 << 32)], false)),
        ErrorKind::SegmentTooLarge
    );
    assert_eq!(
        kind(enc(&[seg(u64::MAX, 2)], false)),
        ErrorKind::AddressOverflow
    );
    assert_eq!(kind(enc(&[seg(0x1001, 8)], true)), ErrorKind::Misaligned);
    assert!(
        enc(&[seg(0x1001, 8)], false).is_ok(),
        "byte-aligned data is fine without the SGLS rule"
    );
    let many: Vec<_> = (0..300).map(|i| seg(i * P, 8)).collect();
    assert_eq!(kind(enc(&many, false)), ErrorKind::PoolExhausted);
    assert_eq!(pools.available(), initial);
}

#[test]
fn hw_sg_round_trips_and_marks_the_last_entry_final() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let mut table = Coherent::<[HwSgEntry], _>::zeroed_slice(&p, 8).unwrap();
    let segs = [seg(0x1000, 512), seg(0x9_0000, 0xffff_ffff), seg(0x20, 1)];
    assert_eq!(encode_hw_sg(segs, &mut table).unwrap(), 3);
    // Read the table as the engine does: raw bytes from device memory.
    let base = table.dma_addr();
    let read = |i: usize| {
        // SAFETY: entry i < 8 of the coherent table we hold.
        Ok(HwSgEntry::from_bytes(unsafe {
            device_read(DmaAddr::new(base.as_u64() + 16 * i as u64))
        }))
    };
    let walked = collect_walk(|v| walk_hw_sg(8, read, v).map(|_| ())).unwrap();
    assert_eq!(walked, segs);
    assert_eq!(table.read(2).unwrap().flags(), HwSgFlags::FINAL);
    assert_eq!(table.read(0).unwrap().flags(), HwSgFlags::empty());
    // SAFETY: entry 2 of the table we hold.
    let raw: [u8; 16] = unsafe { device_read(DmaAddr::new(base.as_u64() + 32)) };
    assert_eq!(
        raw,
        [0x20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0],
        "little-endian layout"
    );
}

#[test]
fn hw_sg_errors_leave_the_table_unchanged() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let mut table = Coherent::<[HwSgEntry], _>::zeroed_slice(&p, 2).unwrap();
    let mut enc = |segs: &[DmaSegment]| encode_hw_sg(segs.iter().copied(), &mut table);
    assert_eq!(kind(enc(&[])), ErrorKind::ZeroSize);
    assert_eq!(
        kind(enc(&[seg(0x1000, 8), seg(0x2000, 0)])),
        ErrorKind::ZeroSize
    );
    assert_eq!(
        kind(enc(&[seg(0x1000, 1 << 32)])),
        ErrorKind::SegmentTooLarge
    );
    assert_eq!(
        kind(enc(&[seg(u64::MAX - 2, 8)])),
        ErrorKind::AddressOverflow
    );
    assert_eq!(
        kind(enc(&[seg(0, 8), seg(8, 8), seg(16, 8)])),
        ErrorKind::TooManySegments
    );
    assert_eq!(table.read(0).unwrap(), HwSgEntry::default());
}

#[test]
fn hw_copy_job_marks_destinations_and_the_last_entry() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let mut table = Coherent::<[HwSgEntry], _>::zeroed_slice(&p, 4).unwrap();
    let src = [seg(0x1000, 100), seg(0x3000, 28)];
    let dst = [seg(0x8000, 128)];
    assert_eq!(encode_hw_copy(src, dst, &mut table).unwrap(), 3);
    let flags: Vec<HwSgFlags> = (0..3).map(|i| table.read(i).unwrap().flags()).collect();
    assert_eq!(
        flags,
        [
            HwSgFlags::empty(),
            HwSgFlags::empty(),
            HwSgFlags::DEST | HwSgFlags::FINAL
        ]
    );
    assert_eq!(
        kind(encode_hw_copy([], dst, &mut table)),
        ErrorKind::ZeroSize
    );
    assert_eq!(
        kind(encode_hw_copy(src, [], &mut table)),
        ErrorKind::ZeroSize
    );
    assert_eq!(
        kind(encode_hw_copy(
            src,
            [seg(0, 8), seg(8, 8), seg(16, 8)],
            &mut table
        )),
        ErrorKind::TooManySegments
    );
    assert_eq!(
        table.read(0).unwrap().addr(),
        DmaAddr::new(0x1000),
        "unchanged on error"
    );
}

#[test]
fn virtio_chain_links_readable_then_writable_descriptors() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let mut table = Coherent::<[VirtqDesc], _>::zeroed_slice(&p, 16).unwrap();
    // A block request: header (read), data (written by the device), status.
    let header = [seg(0x1000, 16)];
    let data_and_status = [seg(0x8000, 4096), seg(0x2000, 1)];
    let chain = encode_chain(&mut table, header, data_and_status, [5u16, 2, 9]).unwrap();
    assert_eq!((chain.head, chain.len), (5, 3));
    // Follow the chain as the device does.
    let mut got = Vec::new();
    let mut i = chain.head;
    loop {
        let d = table.read(i.into()).unwrap();
        got.push((d.addr().as_u64(), d.len(), d.flags() - VirtqDescFlags::NEXT));
        if !d.flags().contains(VirtqDescFlags::NEXT) {
            break;
        }
        i = d.next();
    }
    assert_eq!(
        got,
        [
            (0x1000, 16, VirtqDescFlags::empty()),
            (0x8000, 4096, VirtqDescFlags::WRITE),
            (0x2000, 1, VirtqDescFlags::WRITE)
        ]
    );
    assert_eq!(table.read(5).unwrap().next(), 2);
    assert_eq!(table.read(2).unwrap().next(), 9);
}

#[test]
fn virtio_indirect_table() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let mut ind = Coherent::<[VirtqDesc], _>::zeroed_slice(&p, 4).unwrap();
    let head = encode_indirect(&mut ind, [seg(0x1000, 8)], [seg(0x3000, 512)]).unwrap();
    assert_eq!(head.flags(), VirtqDescFlags::INDIRECT);
    assert_eq!((head.addr(), head.len()), (ind.dma_addr(), 32));
    let first = ind.read(0).unwrap();
    assert_eq!((first.flags(), first.next()), (VirtqDescFlags::NEXT, 1));
    assert_eq!(ind.read(1).unwrap().flags(), VirtqDescFlags::WRITE);
    assert_eq!(
        kind(encode_indirect(&mut ind, scattered_pages(5), [])),
        ErrorKind::TooManySegments
    );
}

#[test]
fn virtio_rejects_bad_requests() {
    let p = platform(DeviceConstraints::UNCONSTRAINED);
    let mut table = Coherent::<[VirtqDesc], _>::zeroed_slice(&p, 4).unwrap();
    let none: [DmaSegment; 0] = [];
    assert_eq!(
        kind(encode_chain(&mut table, none, none, [0u16])),
        ErrorKind::ZeroSize
    );
    assert_eq!(
        kind(encode_chain(&mut table, [seg(0, 0)], none, [0u16])),
        ErrorKind::ZeroSize
    );
    assert_eq!(
        kind(encode_chain(&mut table, [seg(0, 1 << 32)], none, [0u16])),
        ErrorKind::SegmentTooLarge
    );
    assert_eq!(
        kind(encode_chain(&mut table, [seg(u64::MAX, 2)], none, [0u16])),
        ErrorKind::AddressOverflow
    );
    assert_eq!(
        kind(encode_chain(
            &mut table,
            [seg(0, 1), seg(8, 1)],
            none,
            [0u16]
        )),
        ErrorKind::TooManySegments
    );
    assert_eq!(
        kind(encode_chain(&mut table, [seg(0, 1)], none, [4u16])),
        ErrorKind::OutOfRange
    );
    let mut huge = Coherent::<[VirtqDesc], _>::zeroed_slice(&p, 32769).unwrap();
    assert_eq!(
        kind(encode_chain(&mut huge, [seg(0, 1)], none, [0u16])),
        ErrorKind::InvalidConstraints
    );
}

/// Segments PRPs can describe: a dword-aligned start anywhere in a page,
/// whole pages in between, any length at the end.
fn prp_segments() -> impl Strategy<Value = Vec<DmaSegment>> {
    (
        0u64..1024,
        prop::collection::vec((1u64..4, 1u64..50), 1..6),
        1u64..=P,
    )
        .prop_map(|(first_dwords, runs, tail)| {
            let mut out = Vec::new();
            let n = runs.len();
            for (i, (pages, frame)) in runs.into_iter().enumerate() {
                let base = (0x100 + frame * 16 + i as u64 * 1000) * P;
                let start = if i == 0 {
                    base + first_dwords * 4
                } else {
                    base
                };
                let mut end = base + pages * P;
                if i + 1 == n {
                    end = end - P + tail;
                    if end <= start {
                        end = start + 4;
                    }
                }
                out.push(DmaSegment::new(DmaAddr::new(start), end - start));
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 64 }))]

    #[test]
    fn prp_round_trips(segs in prp_segments()) {
        let p = platform(DeviceConstraints::UNCONSTRAINED);
        let pools = NvmePools::new(&p, P as usize, 4, 4).unwrap();
        let req = nvme::encode_prp(&pools, segs.iter().copied()).unwrap();
        let len: u64 = segs.iter().map(|s| s.len).sum();
        prop_assert_eq!(canonical(decode_prp(&req, len).unwrap()), canonical(segs));
    }
}

/// A "device" that follows the encodings and moves bytes through host
/// memory (device address = host address on the x86-coherent preset).
mod device {
    use super::*;

    /// Copies out the bytes a walker visits.
    pub fn read_through(segs: &[DmaSegment]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in segs {
            // SAFETY: every segment lies in pages the test mapped.
            out.extend(
                (0..s.len)
                    .map(|i| unsafe { device_read::<1>(DmaAddr::new(s.addr.as_u64() + i))[0] }),
            );
        }
        out
    }

    /// Writes `data` through the segments in order.
    pub fn write_through(segs: &[DmaSegment], data: &[u8]) {
        let mut k = 0;
        for s in segs {
            for i in 0..s.len {
                // SAFETY: every segment lies in pages the test mapped for the device.
                unsafe { ((s.addr.as_u64() + i) as usize as *mut u8).write_volatile(data[k]) };
                k += 1;
            }
        }
        assert_eq!(k, data.len());
    }
}

#[test]
fn devices_following_the_encodings_move_exactly_the_right_bytes() {
    use dma_core::{Cacheability, DmaAttrs, FromDevice, HostMemory, PhysMemory, ToDevice};
    use dma_sg::{ExternalPages, MappedSgTable, SgLimits, SgTable};

    let c = DeviceConstraints::UNCONSTRAINED;
    let p = platform(c);
    let mem = HostMemory;
    let frames: Vec<_> = (0..6)
        .map(|_| mem.alloc_pages(1, Cacheability::Cached, u64::MAX).unwrap())
        .collect();
    for (k, f) in frames.iter().enumerate() {
        for i in 0..P as usize {
            // SAFETY: our own freshly allocated page.
            unsafe { f.cpu.as_ptr().add(i).write((k * 31 + i * 7) as u8) };
        }
    }
    let chosen = [
        frames[4].phys,
        frames[0].phys,
        frames[2].phys,
        frames[5].phys,
    ];
    let (offset, len) = (0x124usize, 3 * P as usize + 0x300);
    let expected: Vec<u8> = (0..len)
        .map(|b| {
            let (page, off) = ((offset + b) / P as usize, (offset + b) % P as usize);
            let k = [4, 0, 2, 5][page];
            (k * 31 + off * 7) as u8
        })
        .collect();
    let limits = SgLimits::new(P as usize, &c).unwrap();
    let pools = NvmePools::new(&p, P as usize, 2, 2).unwrap();

    // Device reads (a write command): PRP and the generic engine.
    let table = SgTable::from_pages(limits, &chosen, offset, len).unwrap();
    // SAFETY: our own pages, untouched by the CPU while mapped, freed after.
    let tx = unsafe {
        MappedSgTable::<ExternalPages, ToDevice, _, _>::map_pages(&p, table, DmaAttrs::empty())
    }
    .unwrap();
    let segs: Vec<DmaSegment> = tx.segments().collect();
    let prp = nvme::encode_prp(&pools, segs.iter().copied()).unwrap();
    let walked = decode_prp(&prp, len as u64).unwrap();
    assert_eq!(device::read_through(&walked), expected);
    let mut hw = Coherent::<[HwSgEntry], _>::zeroed_slice(&p, 8).unwrap();
    encode_hw_sg(segs.iter().copied(), &mut hw).unwrap();
    let hw_walked = collect_walk(|v| walk_hw_sg(8, |i| hw.read(i), v).map(|_| ())).unwrap();
    assert_eq!(device::read_through(&hw_walked), expected);
    let table = tx.unmap().unwrap();

    // Device writes (a read command) through SGL; the CPU sees it after sync.
    let incoming: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
    // SAFETY: the pages `table` was built from are ours, untouched by the CPU
    // while mapped (the TX mapping above is gone), and freed after the unmap.
    let mut rx = unsafe {
        MappedSgTable::<ExternalPages, FromDevice, _, _>::map_pages(&p, table, DmaAttrs::empty())
    }
    .unwrap();
    let sgl = nvme::encode_sgl(&pools, rx.segments(), true).unwrap();
    device::write_through(&decode_sgl(sgl.sgl1()), &incoming);
    rx.sync_for_cpu();
    let table = rx.unmap().unwrap();
    let mut seen = Vec::new();
    for e in table.entries() {
        // SAFETY: unmapped pages we own; identity translation.
        seen.extend(
            (0..e.len).map(|i| unsafe { ((e.phys.as_u64() as usize + i) as *const u8).read() }),
        );
    }
    assert_eq!(seen, incoming);
    drop((prp, sgl));
    for f in frames {
        // SAFETY: allocated above, no longer mapped, freed once.
        unsafe { mem.free_pages(f) };
    }
}
