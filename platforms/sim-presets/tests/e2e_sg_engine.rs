//! End to end: dma-sg's tables and its generic 16-byte hardware SG
//! encoding, consumed by the simulated DMA engine on all three presets with
//! dma-check on, moving exactly the right bytes.
//!
//! The engine's `SgDescriptor` is an independent implementation of the
//! format dma-sg's `hw` module specifies (addr u64 @0, len u32 @8, flags
//! u32 @12, little-endian; FINAL bit 0, DEST bit 1, ERROR bit 30 and DONE
//! bit 31 written back into the FINAL entry): jobs are written with
//! `encode_hw_copy` and their status read with `HwSgEntry::flags`.

use std::ptr::NonNull;

use dma_check::Checked;
use dma_core::{
    Coherent, DeviceConstraints, DmaAlloc, DmaAttrs, DmaBuf, DmaMap, FromDevice, ToDevice,
};
use dma_sg::hw::{encode_hw_copy, HwSgEntry, HwSgFlags};
use dma_sg::{MappedSgTable, SgLimits, SgTable};
use dma_sim::dma_engine::{DmaEngine, CTRL_EN};
use dma_sim::{run_until_idle, DeviceId, FaultKind, Injection, Sim};
use dma_sim_presets::{Preset, PresetRun};
use tock_registers::interfaces::{Readable, Writeable};

const PAGE: usize = 4096;

/// `count` separately allocated pages filled with `fill`, leaked (the
/// tables map them as external pages the test owns for good). Each is the
/// first half of a two-page allocation, so no two are ever physically
/// adjacent.
fn scattered_pages(count: usize, fill: u8) -> Vec<&'static mut [u8]> {
    (0..count)
        .map(|_| {
            let mut p = DmaBuf::new(2 * PAGE, PAGE).unwrap();
            p.fill(fill);
            &mut Box::leak(Box::new(p))[..PAGE]
        })
        .collect()
}

fn phys_of<P: DmaMap>(p: &P, pages: &[&'static mut [u8]]) -> Vec<dma_core::PhysAddr> {
    pages
        .iter()
        .map(|pg| p.virt_to_phys(NonNull::from(&pg[0]), PAGE).unwrap())
        .collect()
}

/// Runs the one job in `table[..count]`: the engine's ring is the table
/// itself (head reset by disabling, tail = count). Returns the FINAL
/// entry's flags as written back.
fn run_job<P: DmaAlloc>(
    engine: &mut DmaEngine,
    table: &Coherent<[HwSgEntry], P>,
    count: usize,
) -> u32 {
    let regs = engine.registers();
    regs.ctrl.set(0);
    run_until_idle(engine, 4);
    regs.ring_base.set(table.dma_addr().as_u64());
    regs.ring_size.set(count as u32 + 1);
    regs.ctrl.set(CTRL_EN);
    dma_coherence::barrier::before_doorbell();
    regs.tail.set(count as u32);
    run_until_idle(engine, 16);
    assert_eq!(regs.head.get(), count as u32, "the engine consumed the job");
    table.read(count - 1).unwrap().raw_flags()
}

/// Copies 5 scattered pages (from 0x80 into the first) to 5 other
/// scattered pages (from 0x40) through one job table written by
/// `encode_hw_copy`, then checks every destination byte, inside and outside
/// the mapped range.
struct ScatteredCopy {
    inject: Option<Injection>,
    fault_source: bool,
}

impl PresetRun for ScatteredCopy {
    type Output = (usize, usize, u32);

    fn device_name(&self) -> &str {
        "dma0"
    }

    fn run<P: DmaMap + DmaAlloc>(
        self,
        sim: &Sim,
        dev: DeviceId,
        p: &Checked<P>,
    ) -> (usize, usize, u32) {
        let mut engine = DmaEngine::new(sim.bus(dev));
        let len = 5 * PAGE - 0x100;
        let limits = SgLimits::new(PAGE, p.constraints()).unwrap();

        let mut src_pages = scattered_pages(5, 0);
        let mut expected = Vec::with_capacity(len);
        for (n, pg) in src_pages.iter_mut().enumerate() {
            for (i, b) in pg.iter_mut().enumerate() {
                *b = (i * 13 + n * 101) as u8;
            }
        }
        let flat: Vec<u8> = src_pages.iter().flat_map(|p| p.iter().copied()).collect();
        expected.extend_from_slice(&flat[0x80..0x80 + len]);
        let dst_pages = scattered_pages(5, 0xcc);

        let src_table = SgTable::from_pages(limits, &phys_of(p, &src_pages), 0x80, len).unwrap();
        let dst_table = SgTable::from_pages(limits, &phys_of(p, &dst_pages), 0x40, len).unwrap();
        // SAFETY: the pages are leaked, so they stay allocated, and the test
        // does not touch them while they are mapped (it reads the
        // destination only after unmap).
        let src = unsafe {
            MappedSgTable::<_, ToDevice, _, _>::map_pages(p, src_table, DmaAttrs::empty())
        }
        .map_err(|e| e.error)
        .unwrap();
        // SAFETY: the destination pages are leaked, so they stay allocated, and
        // the test reads them only after unmap.
        let dst = unsafe {
            MappedSgTable::<_, FromDevice, _, _>::map_pages(p, dst_table, DmaAttrs::empty())
        }
        .map_err(|e| e.error)
        .unwrap();
        let (n_src, n_dst) = (src.segment_count(), dst.segment_count());

        let mut table = Coherent::<[HwSgEntry], _>::zeroed_slice(p, 32).unwrap();
        let count = encode_hw_copy(src.segments(), dst.segments(), &mut table).unwrap();
        assert_eq!(count, n_src + n_dst);
        if let Some(i) = self.inject {
            engine.inject(i);
        }
        if self.fault_source {
            // Let the engine read the job's entries, then refuse its first
            // source read.
            sim.inject_faults_after(dev, count as u32, 1);
        }
        let flags = run_job(&mut engine, &table, count);

        drop(src.unmap().unwrap());
        drop(dst.unmap().unwrap()); // syncs the destination for the CPU
        let out: Vec<u8> = dst_pages.iter().flat_map(|p| p.iter().copied()).collect();
        let (before, rest) = out.split_at(0x40);
        let (copied, after) = rest.split_at(len);
        assert!(
            before.iter().chain(after).all(|&b| b == 0xcc),
            "nothing written outside"
        );
        let failed = flags & HwSgFlags::ERROR.bits() != 0;
        if failed {
            assert!(
                copied.iter().all(|&b| b == 0xcc),
                "a failed job writes nothing"
            );
        } else {
            assert!(
                copied == expected,
                "the destination holds exactly the source"
            );
        }
        (n_src, n_dst, flags)
    }
}

#[test]
fn hw_sg_tables_from_scattered_pages_move_exactly_the_right_bytes_on_every_preset() {
    for preset in Preset::ALL {
        let body = ScatteredCopy {
            inject: None,
            fault_source: false,
        };
        let out = preset
            .run(31, DeviceConstraints::UNCONSTRAINED, body)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{preset}: {:?}", out.faults);
        let (n_src, n_dst, flags) = out.output;
        assert_eq!(flags & HwSgFlags::DONE.bits(), HwSgFlags::DONE.bits());
        assert_eq!(flags & HwSgFlags::ERROR.bits(), 0, "{preset}");
        if preset == Preset::Iommu {
            // One IOVA range per table: dma-sg merged the pages.
            assert_eq!((n_src, n_dst), (1, 1));
        } else {
            // Direct addressing: one segment per (never adjacent) page.
            assert_eq!((n_src, n_dst), (5, 5));
        }
    }
}

#[test]
fn engine_errors_and_refused_dma_surface_in_the_final_entry() {
    for preset in Preset::ALL {
        for (inject, fault_source) in [(Some(Injection::Error), false), (None, true)] {
            let body = ScatteredCopy {
                inject,
                fault_source,
            };
            let out = preset
                .run(32, DeviceConstraints::UNCONSTRAINED, body)
                .unwrap();
            assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
            let (.., flags) = out.output;
            let done_error = (HwSgFlags::DONE | HwSgFlags::ERROR).bits();
            assert_eq!(flags & done_error, done_error, "{preset}");
            if fault_source {
                assert_eq!(out.faults.len(), 1);
                assert_eq!(out.faults[0].kind, FaultKind::Injected);
            }
        }
    }
}

/// A persistent 8-entry ring, 100 two-entry jobs (source, destination):
/// the ring wraps 25 times; every job's bytes are checked.
struct Wrapping;

impl PresetRun for Wrapping {
    type Output = u64;

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> u64 {
        const SIZE: u32 = 8;
        let mut engine = DmaEngine::new(sim.bus(dev));
        let regs = engine.registers();
        let mut ring = Coherent::<[HwSgEntry], _>::zeroed_slice(p, SIZE as usize).unwrap();
        regs.ring_base.set(ring.dma_addr().as_u64());
        regs.ring_size.set(SIZE);
        regs.ctrl.set(CTRL_EN);
        let limits = SgLimits::new(PAGE, p.constraints()).unwrap();
        let mut tail = 0u32;
        for job in 0..100u32 {
            let len = 64 * (1 + job as usize % 8);
            let mut data = DmaBuf::for_device(p, len).unwrap();
            data.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i as u32 ^ job) as u8);
            let expected = data.to_vec();
            let src = MappedSgTable::<_, ToDevice, _, _>::map(p, data, limits)
                .map_err(|e| e.error)
                .unwrap();
            let dst = MappedSgTable::<_, FromDevice, _, _>::map(
                p,
                DmaBuf::for_device(p, len).unwrap(),
                limits,
            )
            .map_err(|e| e.error)
            .unwrap();
            let s = src.segments().next().unwrap();
            let d = dst.segments().next().unwrap();
            let last = (tail + 1) % SIZE;
            ring.write(
                tail as usize,
                HwSgEntry::new(s.addr, s.len as u32, HwSgFlags::empty()),
            )
            .unwrap();
            let dest_final = HwSgFlags::FINAL | HwSgFlags::DEST;
            ring.write(
                last as usize,
                HwSgEntry::new(d.addr, d.len as u32, dest_final),
            )
            .unwrap();
            tail = (tail + 2) % SIZE;
            dma_coherence::barrier::before_doorbell();
            regs.tail.set(tail);
            run_until_idle(&mut engine, 8);
            let flags = ring.read(last as usize).unwrap().raw_flags();
            assert_eq!(
                flags & HwSgFlags::DONE.bits(),
                HwSgFlags::DONE.bits(),
                "job {job}"
            );
            assert_eq!(flags & HwSgFlags::ERROR.bits(), 0, "job {job}");
            drop(src.unmap().unwrap());
            let got = dst.unmap().unwrap();
            assert!(got[..] == expected[..], "job {job}");
        }
        regs.ctrl.set(0);
        u64::from(regs.completed.get())
    }
}

#[test]
fn engine_ring_wraps_many_times_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset
            .run(33, DeviceConstraints::UNCONSTRAINED, Wrapping)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert_eq!(out.output, 100);
    }
}
