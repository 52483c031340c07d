//! Bouncing under the direct and the IOMMU backends: when it happens, what
//! is copied when, the min_align_mask rule, and every error path.

use core::cell::Cell;
use core::ptr::NonNull;

use dma_bounce::{BouncePlatform, SLOT_SIZE};
use dma_coherence::HardwareCoherent;
use dma_core::{
    Bidirectional, Cacheability, DeviceConstraints, DmaAttrs, DmaDirection, DmaMap, ErrorKind,
    FromDevice, HostMemory, Pages, PhysAddr, PhysMemory, RawMapping, Result, StreamingMapping,
    ToDevice,
};
use dma_direct::DirectPlatform;

/// Host memory where pages asked for below 4 GiB come from an arena that
/// pretends to sit at physical 0x1000_0000; everything else pretends to sit
/// 4 GiB above its address, so it is beyond a 32-bit mask on every host (a
/// 32-bit one included, where 64-bit DMA addresses meet 32-bit pointers).
#[derive(Clone, Copy)]
struct LowArena {
    base: NonNull<u8>,
    size: usize,
    next: &'static Cell<usize>,
}

const LOW_PHYS: u64 = 0x1000_0000;
const HIGH_OFFSET: u64 = 1 << 32;

fn to_high(phys: PhysAddr) -> PhysAddr {
    PhysAddr::new(phys.as_u64() + HIGH_OFFSET)
}

impl LowArena {
    fn new(pages: usize) -> Self {
        let p = HostMemory
            .alloc_pages(pages, Cacheability::Cached, u64::MAX)
            .unwrap();
        Self {
            base: p.cpu,
            size: pages * 4096,
            next: Box::leak(Box::new(Cell::new(0))),
        }
    }
    fn inside(&self, cpu: usize) -> bool {
        (self.base.as_ptr() as usize..self.base.as_ptr() as usize + self.size).contains(&cpu)
    }
}

// SAFETY: arena pages are handed out once (bump allocation, never reused)
// and zeroed by HostMemory; the translation is an exact offset inside the
// arena and the identity outside it.
unsafe impl PhysMemory for LowArena {
    fn page_size(&self) -> usize {
        4096
    }
    fn alloc_pages(&self, count: usize, c: Cacheability, max_phys: u64) -> Result<Pages> {
        if max_phys == u64::MAX {
            let pages = HostMemory.alloc_pages(count, c, max_phys)?;
            return Ok(Pages {
                phys: to_high(pages.phys),
                ..pages
            });
        }
        let off = self.next.get();
        if off + count * 4096 > self.size {
            return Err(dma_core::Error::new(ErrorKind::OutOfMemory, "arena full"));
        }
        self.next.set(off + count * 4096);
        // SAFETY: off + count pages lie inside the arena.
        let cpu = unsafe { self.base.add(off) };
        Ok(Pages {
            cpu,
            phys: PhysAddr::new(LOW_PHYS + off as u64),
            count,
            cacheability: c,
        })
    }
    unsafe fn free_pages(&self, pages: Pages) {
        if !self.inside(pages.cpu.as_ptr() as usize) {
            let phys = PhysAddr::new(pages.phys.as_u64() - HIGH_OFFSET);
            // SAFETY: it came from HostMemory above, at `phys` there.
            unsafe { HostMemory.free_pages(Pages { phys, ..pages }) }
        }
    }
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        let a = cpu.as_ptr() as usize;
        if self.inside(a) {
            return Ok(PhysAddr::new(
                LOW_PHYS + (a - self.base.as_ptr() as usize) as u64,
            ));
        }
        HostMemory.virt_to_phys(cpu, len).map(to_high)
    }
    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> Result<NonNull<u8>> {
        let p = phys.as_u64();
        if (LOW_PHYS..LOW_PHYS + self.size as u64).contains(&p) {
            // SAFETY: inside the arena.
            return Ok(unsafe { self.base.add((p - LOW_PHYS) as usize) });
        }
        let identity = p.checked_sub(HIGH_OFFSET).ok_or(dma_core::Error::new(
            ErrorKind::NotContiguous,
            "below the high window and outside the arena",
        ))?;
        HostMemory.phys_to_virt(PhysAddr::new(identity), len)
    }
}

fn dma32(
    mem: LowArena,
    c: DeviceConstraints,
    slots: usize,
) -> BouncePlatform<DirectPlatform<LowArena, HardwareCoherent>, LowArena> {
    BouncePlatform::new(DirectPlatform::x86_coherent(mem, c), mem, slots).unwrap()
}

fn bits32() -> DeviceConstraints {
    DeviceConstraints::builder().addr_bits(32).build().unwrap()
}

/// The device's view of a mapping: the bytes at its DMA address, which on
/// the direct backend is the (pretend) physical address.
fn device_bytes(mem: &LowArena, dma: u64, len: usize) -> Vec<u8> {
    let p = mem.phys_to_virt(PhysAddr::new(dma), len).unwrap();
    // SAFETY: the mapping is live and the device is not running.
    unsafe { core::slice::from_raw_parts(p.as_ptr(), len) }.to_vec()
}

fn device_write(mem: &LowArena, dma: u64, data: &[u8]) {
    let p = mem.phys_to_virt(PhysAddr::new(dma), data.len()).unwrap();
    // SAFETY: as in device_bytes; the "device" writes its own mapping.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p.as_ptr(), data.len()) };
}

#[test]
fn unreachable_buffer_is_bounced_below_the_mask_and_copied_per_direction() {
    let mem = LowArena::new(64);
    let p = dma32(mem, bits32(), 64);
    let data: Vec<u8> = (0..=255).cycle().take(5000).collect();
    let at = mem
        .virt_to_phys(NonNull::from(&data[0]), data.len())
        .unwrap();
    assert!(
        at.as_u64() > u64::from(u32::MAX),
        "the heap sits above 4 GiB"
    );
    let mut m = StreamingMapping::<_, Bidirectional, _>::map(&p, data.clone()).unwrap();
    let dma = m.dma_addr().as_u64();
    assert!(p.is_bounced(m.dma_addr()));
    assert!(dma + 5000 <= 1 << 32);
    assert_eq!(device_bytes(&mem, dma, 5000), data, "copied in at map");
    assert_eq!(p.pool_usage().1, 3, "5000 bytes take three 2 KiB slots");
    device_write(&mem, dma + 10, b"device");
    m.sync_range_for_cpu(10, 6).unwrap();
    let mut got = [0u8; 6];
    m.read(10, &mut got).unwrap();
    assert_eq!(&got, b"device", "copied back at sync_for_cpu");
    m.write(0, b"cpu").unwrap();
    m.sync_range_for_device(0, 3).unwrap();
    assert_eq!(
        device_bytes(&mem, dma, 3),
        b"cpu",
        "copied in at sync_for_device"
    );
    device_write(&mem, dma + 4000, b"tail");
    let back = m.unmap().unwrap();
    assert_eq!(&back[4000..4004], b"tail", "copied back at unmap");
    assert_eq!(p.pool_usage().1, 0);
}

#[test]
fn to_device_is_never_copied_back_and_from_device_keeps_unwritten_bytes() {
    let mem = LowArena::new(64);
    let p = dma32(mem, bits32(), 64);
    let m = StreamingMapping::<_, ToDevice, _>::map(&p, vec![1u8; 100]).unwrap();
    device_write(&mem, m.dma_addr().as_u64(), &[9; 100]);
    assert_eq!(m.unmap().unwrap(), vec![1u8; 100]);
    // The device writes only part of a FromDevice buffer: the rest comes
    // back as it was, not as stale pool contents.
    let m = StreamingMapping::<_, FromDevice, _>::map(&p, vec![7u8; 100]).unwrap();
    device_write(&mem, m.dma_addr().as_u64(), &[3; 10]);
    let back = m.unmap().unwrap();
    assert_eq!(&back[..10], &[3; 10]);
    assert!(back[10..].iter().all(|&b| b == 7));
}

#[test]
fn reachable_buffers_pass_through_untouched() {
    let mem = LowArena::new(64);
    let p = dma32(mem, DeviceConstraints::UNCONSTRAINED, 8);
    let m = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 64]).unwrap();
    assert!(!p.is_bounced(m.dma_addr()));
    assert_eq!(m.dma_addr().as_u64(), m.raw().phys.as_u64());
    assert_eq!(p.pool_usage().1, 0);
}

#[test]
fn min_align_mask_bits_survive_the_bounce() {
    let mem = LowArena::new(256);
    let c = DeviceConstraints::builder()
        .addr_bits(32)
        .min_align_mask(0xfff)
        .build()
        .unwrap();
    let p = dma32(mem, c, 256);
    for offset in [0usize, 8, 0x7f8, 0x800, 0xabc] {
        let buf = vec![0u8; 0x3000];
        let base = buf.as_ptr() as usize;
        let start = (base + 0xfff) & !0xfff;
        // The fixture's physical address of that byte (heap memory sits
        // 4 GiB above its host address there).
        let cpu = NonNull::new((start + offset) as *mut u8).unwrap();
        let phys = mem.virt_to_phys(cpu, 512).unwrap();
        // SAFETY: `buf` outlives the mapping and is not touched meanwhile.
        let dma = unsafe { p.map(phys, 512, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap();
        assert_eq!(
            dma.as_u64() & 0xfff,
            offset as u64,
            "offset {offset:#x} kept"
        );
        let raw = RawMapping {
            phys,
            dma,
            len: 512,
            dir: DmaDirection::ToDevice,
            attrs: DmaAttrs::empty(),
        };
        // SAFETY: the mapping made just above.
        unsafe { p.unmap(&raw) }.unwrap();
        drop(buf);
    }
}

#[test]
fn misaligned_buffer_is_bounced_under_the_iommu_backend() {
    use dma_iommu::{soft::SoftIommu, Asid, DeviceId, DomainConfig, IommuPlatform, Strict};
    let hw = SoftIommu::new(HostMemory, 0);
    let c = DeviceConstraints::builder().alignment(256).build().unwrap();
    let iommu = IommuPlatform::new(
        HostMemory,
        HardwareCoherent,
        &hw,
        Strict,
        c,
        DomainConfig::new(DeviceId(1), Asid(1)),
    )
    .unwrap();
    let p = BouncePlatform::new(iommu, HostMemory, 16).unwrap();
    // Room for the 1000 bytes at 64 into the first page boundary inside,
    // whatever the allocator's alignment.
    let buf = vec![0u8; 2 * 4096];
    let start = (buf.as_ptr() as u64 + 4095) & !4095;
    let phys = PhysAddr::new(start + 64); // 64 into a page: breaks 256
                                          // SAFETY: `buf` outlives the mapping and is not touched meanwhile.
    let dma = unsafe { p.map(phys, 1000, DmaDirection::FromDevice, DmaAttrs::empty()) }.unwrap();
    assert!(p.is_bounced(dma));
    assert_eq!(dma.as_u64() % 256, 0);
    hw.device_write(DeviceId(1), dma, b"via iommu").unwrap();
    let raw = RawMapping {
        phys,
        dma,
        len: 1000,
        dir: DmaDirection::FromDevice,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: the mapping made just above.
    unsafe { p.unmap(&raw) }.unwrap();
    let at = (start - buf.as_ptr() as u64) as usize + 64;
    assert_eq!(&buf[at..at + 9], b"via iommu");
}

#[test]
fn errors_are_typed() {
    let mem = LowArena::new(64);
    let p = dma32(mem, bits32(), 4); // four slots: 8 KiB
    let big = vec![0u8; 129 * SLOT_SIZE];
    let e = StreamingMapping::<_, ToDevice, _>::map(&p, big).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::SegmentTooLarge,
        "beyond 128 slots: no policy serves it"
    );
    let e = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 5 * SLOT_SIZE]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BounceExhausted);
    let a = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 3 * SLOT_SIZE]).unwrap();
    let e = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 2 * SLOT_SIZE]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BounceExhausted, "full pool");
    let e = StreamingMapping::<_, ToDevice, _>::map(&p, Vec::<u8>::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ZeroSize);
    // Unmapping something never mapped, or twice, is refused.
    let raw = *a.raw();
    let wrong = RawMapping {
        phys: PhysAddr::new(raw.phys.as_u64() + 1),
        ..raw
    };
    // SAFETY: deliberately wrong; the platform must refuse it.
    let e = unsafe { p.unmap(&wrong) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped);
    drop(a.unmap().unwrap());
    // SAFETY: a double unmap; the platform must refuse it.
    let e = unsafe { p.unmap(&raw) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped);
    assert_eq!(p.pool_usage().1, 0);
    // min_align_mask keeping an offset the alignment forbids.
    let c = DeviceConstraints::builder()
        .addr_bits(32)
        .alignment(16)
        .min_align_mask(0xf)
        .build()
        .unwrap();
    let p = dma32(mem, c, 4);
    let buf = [0u8; 64];
    let base = mem.virt_to_phys(NonNull::from(&buf[0]), 64).unwrap();
    let phys = PhysAddr::new(((base.as_u64() + 15) & !15) + 4);
    // SAFETY: `buf` outlives the attempt.
    let e = unsafe { p.map(phys, 8, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misaligned);
}
