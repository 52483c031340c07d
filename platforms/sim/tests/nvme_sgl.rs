//! The NVMe model's SGLs (NVMe 2.0 §4.3.2), driven by hand-built
//! descriptors at the spec's byte offsets: data moved through Data Block,
//! Segment and Last Segment descriptors, and each malformed SGL completing
//! with its status and moving nothing.

mod support;

use dma_core::Coherent;
use dma_sim::nvme::{opcode, status, NvmeConfig, MAX_SGL_DESCRIPTORS};
use dma_sim::NonCoherentPlatform;
use support::nvme_host::{sqe, Rig};

/// Descriptor types (SGL identifier bits 7:4).
const DATA: u8 = 0x0;
const BIT_BUCKET: u8 = 0x1;
const SEGMENT: u8 = 0x2;
const LAST: u8 = 0x3;

type Mem = Coherent<[u8], NonCoherentPlatform>;

fn rig(config: NvmeConfig) -> Rig {
    Rig::new(21, config, 16)
}

/// A descriptor: address (bytes 7:0), length (11:8), identifier (15).
fn desc(kind: u8, sub_type: u8, addr: u64, len: u32) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[15] = kind << 4 | sub_type;
    d
}

fn data(mem: &Mem, offset: usize, len: u32) -> [u8; 16] {
    desc(DATA, 0, mem.dma_addr().as_u64() + offset as u64, len)
}

fn pointer(kind: u8, segment: &Mem, descriptors: u32) -> [u8; 16] {
    desc(kind, 0, segment.dma_addr().as_u64(), descriptors * 16)
}

/// A Read or Write of `blocks` 512-byte blocks at `lba` with PSDT `psdt`
/// and SGL1 in DPTR (bytes 39:24).
fn command(op: u8, psdt: u8, sgl1: [u8; 16], lba: u32, blocks: u32) -> [u8; 64] {
    let mut e = sqe(op, 1, 0, 0, lba, 0, blocks - 1);
    e[1] |= psdt << 6; // CDW0 bits 15:14
    e[24..40].copy_from_slice(&sgl1);
    e
}

impl Rig {
    fn mem(&self, len: usize) -> Mem {
        Coherent::zeroed_slice(self.p.clone(), len).unwrap()
    }

    fn segment(&self, descriptors: &[[u8; 16]]) -> Mem {
        let mut m = self.mem(descriptors.len() * 16);
        for (i, d) in descriptors.iter().enumerate() {
            m.write_at(i * 16, *d).unwrap();
        }
        m
    }

    fn io(&mut self, entry: [u8; 64]) -> u16 {
        self.host.run(&mut self.ctrl, true, entry).status
    }

    fn sgl(&mut self, op: u8, sgl1: [u8; 16], lba: u32, blocks: u32) -> u16 {
        self.io(command(op, 1, sgl1, lba, blocks))
    }
}

fn fill(mem: &mut Mem, seed: u8) {
    let data: Vec<u8> = (0..mem.len())
        .map(|i| seed.wrapping_add((i * 13 % 251) as u8))
        .collect();
    mem.copy_in(0, &data).unwrap();
}

fn set(mem: &mut Mem, byte: u8) {
    mem.copy_in(0, &vec![byte; mem.len()]).unwrap();
}

fn bytes(mem: &Mem) -> Vec<u8> {
    let mut out = vec![0; mem.len()];
    mem.copy_out(0, &mut out).unwrap();
    out
}

#[test]
fn identify_controller_advertises_sgls_as_configured() {
    for (sgl, sgls) in [(true, 1u32), (false, 0)] {
        let mut r = rig(NvmeConfig {
            sgl,
            ..NvmeConfig::default()
        });
        let (status, id) = r.host.identify(&mut r.ctrl, 1, 0);
        assert_eq!(status, status::SUCCESS);
        assert_eq!(u32::from_le_bytes(id[536..540].try_into().unwrap()), sgls);
    }
}

#[test]
fn a_data_block_in_sgl1_moves_the_transfer_at_any_byte_offset() {
    let mut r = rig(NvmeConfig::default());
    let mut mem = r.mem(4096 + 3);
    fill(&mut mem, 7);
    // Byte aligned: SGLS 01b has no alignment requirement.
    assert_eq!(r.sgl(opcode::WRITE, data(&mem, 3, 4096), 4, 8), 0);
    assert_eq!(&r.ctrl.disk()[2048..2048 + 4096], &bytes(&mem)[3..]);
    let back = r.mem(4096);
    assert_eq!(r.sgl(opcode::READ, data(&back, 0, 4096), 4, 8), 0);
    assert_eq!(bytes(&back), bytes(&mem)[3..]);
    assert!(r.sim.reports().is_empty(), "{:?}", r.sim.reports());
}

#[test]
fn segments_and_a_last_segment_chain_data_blocks_in_order() {
    let mut r = rig(NvmeConfig::default());
    // Five data blocks of 512, 1000, 24, 1536 and 1024 bytes (4096), in
    // SGL1 -> Segment [d0, d1, Segment] -> Segment [d2, Last] -> [d3, d4].
    let mut bufs: Vec<Mem> = [512, 1000, 24, 1536, 1024]
        .iter()
        .map(|&n| r.mem(n))
        .collect();
    for (i, b) in bufs.iter_mut().enumerate() {
        fill(b, i as u8 * 40);
    }
    let d = |i: usize| data(&bufs[i], 0, bufs[i].len() as u32);
    let last = r.segment(&[d(3), d(4)]);
    let middle = r.segment(&[d(2), pointer(LAST, &last, 2)]);
    let first = r.segment(&[d(0), d(1), pointer(SEGMENT, &middle, 2)]);
    let expected: Vec<u8> = bufs.iter().flat_map(bytes).collect();

    assert_eq!(r.sgl(opcode::WRITE, pointer(SEGMENT, &first, 3), 16, 8), 0);
    assert_eq!(&r.ctrl.disk()[16 * 512..16 * 512 + 4096], &expected[..]);

    for b in &mut bufs {
        set(b, 0);
    }
    assert_eq!(r.sgl(opcode::READ, pointer(SEGMENT, &first, 3), 16, 8), 0);
    let back: Vec<u8> = bufs.iter().flat_map(bytes).collect();
    assert_eq!(back, expected);

    // SGL1 may point at the last segment directly; a zero-length data
    // block moves nothing.
    let only = r.segment(&[
        data(&bufs[4], 0, 1024),
        data(&bufs[0], 0, 0),
        data(&bufs[0], 0, 512),
    ]);
    assert_eq!(r.sgl(opcode::WRITE, pointer(LAST, &only, 3), 100, 3), 0);
    let disk = &r.ctrl.disk()[100 * 512..103 * 512];
    assert_eq!(&disk[..1024], &bytes(&bufs[4])[..]);
    assert_eq!(&disk[1024..], &bytes(&bufs[0])[..]);
    assert_eq!(r.ctrl.stats().errors, 0);
    assert!(r.sim.reports().is_empty(), "{:?}", r.sim.reports());
}

/// A write that must fail with `want` and leave the disk as it was.
fn refused(r: &mut Rig, entry: [u8; 64], want: u16, what: &str) {
    let disk = r.ctrl.disk().to_vec();
    let errors = r.ctrl.stats().errors;
    assert_eq!(r.io(entry), want, "{what}");
    assert!(r.ctrl.disk() == &disk[..], "{what}: nothing was written");
    assert_eq!(r.ctrl.stats().errors, errors + 1, "{what}");
}

#[test]
fn unsupported_descriptor_types_and_sub_types_are_invalid() {
    let mut r = rig(NvmeConfig::default());
    let mut mem = r.mem(4096);
    fill(&mut mem, 1);
    let addr = mem.dma_addr().as_u64();
    let w = |sgl1| command(opcode::WRITE, 1, sgl1, 0, 8);
    let bad = status::SGL_DESCRIPTOR_TYPE_INVALID;
    refused(
        &mut r,
        w(desc(BIT_BUCKET, 0, addr, 4096)),
        bad,
        "bit bucket",
    );
    refused(&mut r, w(desc(0x4, 0, addr, 4096)), bad, "keyed data block");
    refused(&mut r, w(desc(0xf, 0, addr, 4096)), bad, "vendor specific");
    refused(
        &mut r,
        w(desc(DATA, 0x1, addr, 4096)),
        bad,
        "offset sub type",
    );
    // The same inside a segment, after a good data block.
    let seg = r.segment(&[data(&mem, 0, 2048), desc(0x6, 0, addr, 2048)]);
    refused(
        &mut r,
        w(pointer(LAST, &seg, 2)),
        bad,
        "reserved type in a segment",
    );
}

#[test]
fn misplaced_or_mis_sized_segment_descriptors_are_invalid() {
    let mut r = rig(NvmeConfig::default());
    let mem = r.mem(4096);
    let tail = r.segment(&[data(&mem, 2048, 2048)]);
    let w = |sgl1| command(opcode::WRITE, 1, sgl1, 0, 8);
    let bad = status::INVALID_SGL_SEGMENT_DESCRIPTOR;

    // A Segment descriptor that is not the last of its segment.
    let s = r.segment(&[pointer(LAST, &tail, 1), data(&mem, 0, 2048)]);
    refused(
        &mut r,
        w(pointer(SEGMENT, &s, 2)),
        bad,
        "pointer mid-segment",
    );
    // A pointer inside the last segment.
    let s = r.segment(&[data(&mem, 0, 2048), pointer(LAST, &tail, 1)]);
    refused(
        &mut r,
        w(pointer(LAST, &s, 2)),
        bad,
        "pointer in the last segment",
    );
    // Lengths: zero, and not a multiple of 16.
    let s = r.segment(&[data(&mem, 0, 4096)]);
    refused(&mut r, w(pointer(LAST, &s, 0)), bad, "empty last segment");
    let odd = desc(LAST, 0, s.dma_addr().as_u64(), 24);
    refused(&mut r, w(odd), bad, "24-byte segment");
    let odd = desc(SEGMENT, 0, s.dma_addr().as_u64(), 8);
    refused(&mut r, w(odd), bad, "8-byte segment");
}

#[test]
fn an_sgl_shorter_or_longer_than_the_transfer_is_a_data_sgl_length_error() {
    let mut r = rig(NvmeConfig::default());
    let mut mem = r.mem(8192);
    let bad = status::DATA_SGL_LENGTH_INVALID;
    let w = |sgl1| command(opcode::WRITE, 1, sgl1, 0, 8);
    refused(&mut r, w(data(&mem, 0, 4095)), bad, "one byte short");
    refused(&mut r, w(data(&mem, 0, 4097)), bad, "one byte long");
    let s = r.segment(&[
        data(&mem, 0, 2048),
        data(&mem, 4096, 2048),
        data(&mem, 0, 1),
    ]);
    refused(&mut r, w(pointer(LAST, &s, 3)), bad, "a block too many");
    refused(&mut r, w(pointer(LAST, &s, 1)), bad, "a block too few");
    // A read is refused before anything is written to host memory.
    set(&mut mem, 0xa5);
    let read = command(opcode::READ, 1, pointer(LAST, &s, 3), 0, 8);
    assert_eq!(r.io(read), bad);
    assert!(bytes(&mem).iter().all(|&b| b == 0xa5));
}

#[test]
fn a_looping_chain_ends_with_invalid_number_of_descriptors() {
    let mut r = rig(NvmeConfig::default());
    // A segment whose only descriptor points back at itself.
    let mut s = r.mem(16);
    let back = pointer(SEGMENT, &s, 1);
    s.write_at(0, back).unwrap();
    let w = command(opcode::WRITE, 1, pointer(SEGMENT, &s, 1), 0, 8);
    refused(&mut r, w, status::INVALID_SGL_DESCRIPTOR_COUNT, "self loop");
    // The limit is on descriptors walked: a last segment claiming more
    // than the limit is refused before it is read.
    let huge = desc(
        LAST,
        0,
        s.dma_addr().as_u64(),
        (MAX_SGL_DESCRIPTORS as u32) * 16,
    );
    let w = command(opcode::WRITE, 1, huge, 0, 8);
    refused(
        &mut r,
        w,
        status::INVALID_SGL_DESCRIPTOR_COUNT,
        "huge segment",
    );
    assert!(r.sim.faults().is_empty(), "{:?}", r.sim.faults());
}

#[test]
fn an_unreachable_segment_is_a_data_transfer_error() {
    let mut r = rig(NvmeConfig::default());
    // Far outside every mapping: the bus refuses the fetch.
    let far = desc(LAST, 0, 0xdead_0000, 16);
    let w = command(opcode::WRITE, 1, far, 0, 8);
    refused(&mut r, w, status::DATA_TRANSFER_ERROR, "unmapped segment");
    assert_eq!(r.sim.take_faults().len(), 1);
}

#[test]
fn psdt_is_checked_against_what_the_controller_supports() {
    let mut r = rig(NvmeConfig::default());
    let mem = r.mem(4096);
    let sgl1 = data(&mem, 0, 4096);
    let bad = status::INVALID_FIELD;
    refused(
        &mut r,
        command(opcode::WRITE, 2, sgl1, 0, 8),
        bad,
        "PSDT 10b",
    );
    refused(
        &mut r,
        command(opcode::WRITE, 3, sgl1, 0, 8),
        bad,
        "PSDT 11b",
    );
    // Admin commands use PRPs.
    let mut identify = sqe(opcode::IDENTIFY, 0, 0, 0, 1, 0, 0);
    identify[1] |= 1 << 6;
    identify[24..40].copy_from_slice(&sgl1);
    assert_eq!(r.host.run(&mut r.ctrl, false, identify).status, bad);
    assert!(bytes(&mem).iter().all(|&b| b == 0));

    // A controller without SGLs refuses PSDT 01b.
    let mut r = rig(NvmeConfig {
        sgl: false,
        ..NvmeConfig::default()
    });
    let mem = r.mem(4096);
    let sgl1 = data(&mem, 0, 4096);
    refused(
        &mut r,
        command(opcode::WRITE, 1, sgl1, 0, 8),
        bad,
        "no SGLS",
    );
}
