//! The bug catalogue (docs/bug-catalogue.md) as a test suite: every class
//! the sim and dma-check detect, written as an outside driver author would
//! write it against the public API, next to its fixed twin.
//!
//! Each buggy body must give its report on the presets that can see it;
//! each fixed twin must give no report, no checker finding and no fault on
//! every preset over `SEEDS` seeds (the evictor and every other seeded
//! choice differ per seed).

use dma_check::Checked;
use dma_core::{
    Bidirectional, Coherent, DeviceConstraints, DmaAlloc, DmaAttrs, DmaBuf, DmaMap, FromDevice,
    StreamingMapping, ToDevice,
};
use dma_sg::{MappedSgTable, SgLimits};
use dma_sim::{DeviceId, Report, ReportKind, Sim};
use dma_sim_presets::{Outcome, Preset, PresetRun};

/// Seeds each fixed twin runs over, on every preset.
const SEEDS: u64 = 1000;
/// Seeds each buggy body runs over, on the presets that detect it.
const BUGGY_SEEDS: u64 = 50;
const PAGE: usize = 4096;

/// What a buggy body must produce.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A sim report of one of these kinds, whose hint contains the text.
    Sim(&'static [ReportKind], &'static str),
    /// A dma-check leak report.
    Leak,
}

/// Where a class is seen.
const ALL: &[Preset] = &Preset::ALL;
const CACHED: &[Preset] = &[Preset::NonCoherent, Preset::Iommu];

/// A catalogue body: the buggy variant or its fixed twin.
trait Body {
    fn run<P: DmaMap + DmaAlloc>(sim: &Sim, dev: DeviceId, p: &Checked<P>, fixed: bool);
}

struct Run<B>(bool, core::marker::PhantomData<B>);

impl<B: Body> PresetRun for Run<B> {
    type Output = ();
    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        B::run(sim, dev, p, self.0);
    }
}

fn outcome<B: Body>(preset: Preset, seed: u64, fixed: bool) -> Outcome<()> {
    preset
        .run(
            seed,
            DeviceConstraints::UNCONSTRAINED,
            Run::<B>(fixed, core::marker::PhantomData),
        )
        .unwrap()
}

fn found(o: &Outcome<()>, expect: Expect) -> Option<String> {
    match expect {
        Expect::Sim(kinds, hint) => o
            .reports
            .iter()
            .find(|r: &&Report| kinds.contains(&r.kind) && r.hint().contains(hint))
            .map(ToString::to_string),
        Expect::Leak => o
            .checker
            .iter()
            .find(|r| matches!(r, dma_check::Report::Leak { .. }))
            .map(ToString::to_string),
    }
}

/// Runs the class: detected where it should be, and its twin clean
/// everywhere.
fn check<B: Body>(expect: Expect, seen_on: &[Preset]) {
    for &preset in seen_on {
        for seed in 0..BUGGY_SEEDS {
            let o = outcome::<B>(preset, seed, false);
            assert!(
                found(&o, expect).is_some(),
                "{preset}, seed {seed}: expected {expect:?}, got {:?} / {:?}",
                o.reports,
                o.checker
            );
        }
    }
    for preset in Preset::ALL {
        for seed in 0..SEEDS {
            let o = outcome::<B>(preset, seed, true);
            assert!(
                o.clean() && o.faults.is_empty(),
                "fixed twin on {preset}, seed {seed}: {:?} / {:?} / {:?}",
                o.reports,
                o.checker,
                o.faults
            );
        }
    }
}

fn buf<P: DmaMap>(p: &P, len: usize) -> DmaBuf {
    DmaBuf::for_device(p, len).unwrap()
}

macro_rules! class {
    ($(#[$doc:meta])* $test:ident, $expect:expr, $seen_on:expr,
     |$sim:ident, $dev:ident, $p:ident, $fixed:ident| $body:block) => {
        $(#[$doc])*
        #[test]
        fn $test() {
            struct B;
            impl Body for B {
                #[allow(unused_variables)]
                fn run<P: DmaMap + DmaAlloc>($sim: &Sim, $dev: DeviceId, $p: &Checked<P>, $fixed: bool) $body
            }
            check::<B>($expect, $seen_on);
        }
    };
}

class!(
    /// The CPU writes a `ToDevice` buffer and the device reads it without a
    /// `sync_for_device` in between.
    missing_clean_before_device_reads,
    Expect::Sim(&[ReportKind::DeviceReadUncleaned], "sync_for_device"),
    CACHED,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, ToDevice, _>::map(p, buf(p, PAGE)).unwrap();
        m.write(0, b"command").unwrap();
        if fixed {
            m.sync_for_device();
        }
        let mut seen = [0u8; 7];
        sim.bus(dev).read(m.dma_addr(), &mut seen).unwrap();
        m.unmap().unwrap();
    }
);

class!(
    /// (b) A buffer the CPU filled is mapped with `SKIP_CPU_SYNC` and never
    /// cleaned: RAM may not hold what the CPU wrote before mapping.
    skip_cpu_sync_without_clean,
    Expect::Sim(&[ReportKind::DeviceReadNeverCleaned], "SKIP_CPU_SYNC"),
    CACHED,
    |sim, dev, p, fixed| {
        let mut b = buf(p, PAGE);
        b[..7].copy_from_slice(b"command");
        let attrs = if fixed {
            DmaAttrs::empty()
        } else {
            DmaAttrs::SKIP_CPU_SYNC
        };
        let m = StreamingMapping::<_, ToDevice, _>::map_with_attrs(p, b, attrs).unwrap();
        let mut seen = [0u8; 7];
        sim.bus(dev).read(m.dma_addr(), &mut seen).unwrap();
        m.unmap().unwrap();
    }
);

class!(
    /// (a) The CPU reads a `FromDevice` buffer the device wrote without
    /// `sync_for_cpu` first.
    read_before_sync_for_cpu,
    Expect::Sim(&[ReportKind::CpuReadDeviceOwned], "sync_for_cpu"),
    ALL,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, FromDevice, _>::map(p, buf(p, PAGE)).unwrap();
        sim.bus(dev).write(m.dma_addr(), &[0xab; 64]).unwrap();
        if fixed {
            m.sync_for_cpu();
        }
        let mut got = [0u8; 64];
        m.read(0, &mut got).unwrap();
        m.unmap().unwrap();
    }
);

class!(
    /// (a) `sync_range_for_cpu` covers less than the device wrote and the
    /// CPU reads all of it.
    sync_range_shorter_than_written,
    Expect::Sim(&[ReportKind::CpuReadDeviceOwned], "sync_range_for_cpu"),
    ALL,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, FromDevice, _>::map(p, buf(p, PAGE)).unwrap();
        sim.bus(dev).write(m.dma_addr(), &[0xcd; 512]).unwrap();
        m.sync_range_for_cpu(0, if fixed { 512 } else { 128 }).unwrap();
        let mut got = [0u8; 512];
        m.read(0, &mut got).unwrap();
        m.unmap().unwrap();
    }
);

class!(
    /// (a) `sync_for_cpu` and a read before the device wrote: the CPU
    /// reads what was there, and the device's write lands in a buffer the
    /// CPU owns.
    sync_for_cpu_before_device_wrote,
    Expect::Sim(&[ReportKind::DeviceAccessCpuOwned], "sync_for_device"),
    ALL,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, FromDevice, _>::map(p, buf(p, PAGE)).unwrap();
        let mut got = [0u8; 64];
        if !fixed {
            m.sync_for_cpu();
            m.read(0, &mut got).unwrap();
        }
        sim.bus(dev).write(m.dma_addr(), &[0x5a; 64]).unwrap();
        if fixed {
            m.sync_for_cpu();
            m.read(0, &mut got).unwrap();
        }
        m.unmap().unwrap();
    }
);

class!(
    /// The CPU writes a `Bidirectional` buffer the device owns (after map,
    /// before `sync_for_cpu`).
    cpu_writes_device_owned,
    Expect::Sim(&[ReportKind::CpuWroteDeviceOwned], "sync_for_cpu"),
    ALL,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, Bidirectional, _>::map(p, buf(p, PAGE)).unwrap();
        if fixed {
            m.sync_for_cpu();
        }
        m.write(0, b"request").unwrap();
        m.sync_for_device();
        let mut seen = [0u8; 7];
        sim.bus(dev).read(m.dma_addr(), &mut seen).unwrap();
        m.unmap().unwrap();
    }
);

class!(
    /// (c, g) A receive buffer the CPU took back, read and rewrote is
    /// reposted without being handed back: the device writes bytes the
    /// CPU owns (and on a non-coherent machine the CPU's dirty lines can
    /// later be written back over the device's data).
    repost_without_sync_for_device,
    Expect::Sim(&[ReportKind::DeviceAccessCpuOwned], "hand them back with sync_for_device"),
    ALL,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, Bidirectional, _>::map(p, buf(p, PAGE)).unwrap();
        let bus = sim.bus(dev);
        bus.write(m.dma_addr(), &[1; 256]).unwrap();
        m.sync_for_cpu();
        let mut got = [0u8; 256];
        m.read(0, &mut got).unwrap();
        m.write(0, &[0; 16]).unwrap();
        if fixed {
            m.sync_for_device();
        }
        bus.write(m.dma_addr(), &[2; 256]).unwrap();
        m.sync_for_cpu();
        m.read(0, &mut got).unwrap();
        m.unmap().unwrap();
    }
);

/// (g) The reposted buffer is blamed on the missing hand-back: the CPU's
/// writes while it owned the buffer are not reported with a wrong fix (a
/// seeded eviction may add a write-back report, which is also true).
#[test]
fn repost_is_blamed_on_the_missing_hand_back_only() {
    struct B;
    impl Body for B {
        fn run<P: DmaMap + DmaAlloc>(sim: &Sim, dev: DeviceId, p: &Checked<P>, _: bool) {
            let mut m = StreamingMapping::<_, Bidirectional, _>::map(p, buf(p, PAGE)).unwrap();
            let bus = sim.bus(dev);
            bus.write(m.dma_addr(), &[1; 256]).unwrap();
            m.sync_for_cpu();
            m.write(0, &[0; 16]).unwrap();
            bus.write(m.dma_addr(), &[2; 256]).unwrap();
            m.sync_for_cpu();
            m.unmap().unwrap();
        }
    }
    for preset in Preset::ALL {
        let o = outcome::<B>(preset, 3, false);
        let kinds: Vec<_> = o.reports.iter().map(|r| r.kind).collect();
        assert!(
            kinds.contains(&ReportKind::DeviceAccessCpuOwned)
                && !kinds.contains(&ReportKind::CpuWroteDeviceOwned),
            "{preset}: {kinds:?}"
        );
    }
}

class!(
    /// (c) The device overruns its receive buffer into the neighbouring
    /// buffer of the same allocation, which the CPU owns at that moment.
    /// Behind the IOMMU the neighbour is not at the next IOVA: a fault.
    overrun_into_cpu_owned_neighbour,
    Expect::Sim(
        &[ReportKind::DeviceAccessCpuOwned, ReportKind::DeviceFault],
        ""
    ),
    ALL,
    |sim, dev, p, fixed| {
        let whole: &'static mut DmaBuf = Box::leak(Box::new(buf(p, 2 * PAGE)));
        let (a, b) = whole.split_at_mut(PAGE);
        let a = StreamingMapping::<_, FromDevice, _>::map(p, a).unwrap();
        let mut b = StreamingMapping::<_, FromDevice, _>::map(p, b).unwrap();
        b.sync_for_cpu();
        let len = if fixed { PAGE } else { PAGE + 64 };
        let _ = sim.bus(dev).write(a.dma_addr(), &vec![7u8; len]);
        a.unmap().unwrap();
        b.unmap().unwrap();
    }
);

class!(
    /// (d, e) The device writes a buffer after the driver unmapped it.
    use_after_unmap,
    Expect::Sim(&[ReportKind::DeviceFault], "use after unmap"),
    ALL,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, FromDevice, _>::map(p, buf(p, PAGE)).unwrap();
        let dma = m.dma_addr();
        if fixed {
            sim.bus(dev).write(dma, &[3; 64]).unwrap();
            m.sync_for_cpu();
            m.unmap().unwrap();
        } else {
            m.unmap().unwrap();
            let _ = sim.bus(dev).write(dma, &[3; 64]);
        }
    }
);

class!(
    /// (d, e) The device is told a length beyond the mapping and writes
    /// past its end.
    overrun_past_mapping,
    Expect::Sim(&[ReportKind::DeviceFault], "beyond the mapping"),
    ALL,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, FromDevice, _>::map(p, buf(p, PAGE)).unwrap();
        let len = if fixed { PAGE } else { PAGE + 512 };
        let _ = sim.bus(dev).write(m.dma_addr(), &vec![9u8; len]);
        m.sync_for_cpu();
        m.unmap().unwrap();
    }
);

class!(
    /// (d) The device writes a buffer mapped `ToDevice`.
    device_writes_to_device_mapping,
    Expect::Sim(&[ReportKind::DeviceFault], ""),
    ALL,
    |sim, dev, p, fixed| {
        let m = StreamingMapping::<_, ToDevice, _>::map(p, buf(p, PAGE)).unwrap();
        let bus = sim.bus(dev);
        if fixed {
            let mut seen = [0u8; 64];
            bus.read(m.dma_addr(), &mut seen).unwrap();
        } else {
            let _ = bus.write(m.dma_addr(), &[1; 64]);
        }
        m.unmap().unwrap();
    }
);

class!(
    /// A buffer mapped with `SKIP_CPU_SYNC` is unmapped without a
    /// `sync_for_cpu`: the device's data is never invalidated into view.
    missing_invalidate_at_unmap,
    Expect::Sim(&[ReportKind::CpuReadNotInvalidated], "sync_for_cpu"),
    CACHED,
    |sim, dev, p, fixed| {
        let attrs = DmaAttrs::SKIP_CPU_SYNC;
        let mut m =
            StreamingMapping::<_, FromDevice, _>::map_with_attrs(p, buf(p, PAGE), attrs).unwrap();
        sim.bus(dev).write(m.dma_addr(), &[4; 128]).unwrap();
        if fixed {
            m.sync_for_cpu();
        }
        m.unmap().unwrap();
    }
);

class!(
    /// (6) The platform is configured coherent for a device that does not
    /// snoop (a wrong `dma-coherent` in the device tree): every sync the
    /// driver makes reaches no cache.
    coherent_platform_for_non_snooping_device,
    Expect::Sim(&[ReportKind::PlatformSkipsMaintenance], "dma-coherent"),
    CACHED,
    |sim, dev, p, fixed| {
        let other = sim.add_device("dt-node");
        let unconstrained = DeviceConstraints::UNCONSTRAINED;
        let mut seen = [0u8; 7];
        if fixed {
            let q = sim.non_coherent_platform(other, unconstrained);
            let mut m = StreamingMapping::<_, ToDevice, _>::map(&q, buf(&q, PAGE)).unwrap();
            m.write(0, b"command").unwrap();
            m.sync_for_device();
            sim.bus(other).read(m.dma_addr(), &mut seen).unwrap();
            m.unmap().unwrap();
        } else {
            let q = sim.coherent_platform(other, unconstrained);
            let mut m = StreamingMapping::<_, ToDevice, _>::map(&q, buf(&q, PAGE)).unwrap();
            m.write(0, b"command").unwrap();
            m.sync_for_device();
            sim.bus(other).read(m.dma_addr(), &mut seen).unwrap();
            m.unmap().unwrap();
        }
    }
);

class!(
    /// (6) Ring memory the CPU maps cacheable while the device reads RAM:
    /// a coherent allocation made by a platform that believes the device
    /// snoops.
    cacheable_ring_memory,
    Expect::Sim(&[ReportKind::CacheableCoherentMemory], "cacheable"),
    CACHED,
    |sim, dev, p, fixed| {
        let other = sim.add_device("ring");
        let unconstrained = DeviceConstraints::UNCONSTRAINED;
        let mut seen = [0u8; 8];
        if fixed {
            let q = sim.non_coherent_platform(other, unconstrained);
            let mut ring = Coherent::<[u64], _>::zeroed_slice(&q, 16).unwrap();
            ring.write(0, 0x1234).unwrap();
            sim.bus(other).read(ring.dma_addr(), &mut seen).unwrap();
        } else {
            let q = sim.coherent_platform(other, unconstrained);
            let mut ring = Coherent::<[u64], _>::zeroed_slice(&q, 16).unwrap();
            ring.write(0, 0x1234).unwrap();
            sim.bus(other).read(ring.dma_addr(), &mut seen).unwrap();
        }
    }
);

class!(
    /// A mapping is forgotten instead of unmapped (dma-check's leak
    /// report when the device is released).
    leaked_mapping,
    Expect::Leak,
    ALL,
    |sim, dev, p, fixed| {
        let mut m = StreamingMapping::<_, FromDevice, _>::map(p, buf(p, PAGE)).unwrap();
        sim.bus(dev).write(m.dma_addr(), &[8; 64]).unwrap();
        m.sync_for_cpu();
        if fixed {
            m.unmap().unwrap();
        } else {
            core::mem::forget(m);
        }
    }
);

class!(
    /// (a) The same read-before-sync through a scatter-gather table.
    sg_read_before_sync_for_cpu,
    Expect::Sim(&[ReportKind::CpuReadDeviceOwned], "sync_for_cpu"),
    ALL,
    |sim, dev, p, fixed| {
        let limits = SgLimits::new(PAGE, p.constraints()).unwrap();
        let mut t = MappedSgTable::<_, FromDevice, _, _>::map(p, buf(p, 2 * PAGE), limits)
            .unwrap();
        let first = t.entries()[0];
        sim.bus(dev).write(first.dma, &[6; 64]).unwrap();
        if fixed {
            t.sync_for_cpu();
        }
        let mut got = [0u8; 64];
        t.read(0, &mut got).unwrap();
        t.unmap().unwrap();
    }
);
