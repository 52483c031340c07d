//! End to end: the virtio-blk driver (`dma-drivers`, virtio-mmio
//! transport, `dma-ring`'s split and packed queues) against the sim's
//! independent virtio-blk model on all three presets, with and without
//! `EVENT_IDX`, data checked in the model's disk; then every error path,
//! against hostile devices.

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::virtio::spec::Features;
use dma_drivers::virtio::transport::mmio::MmioTransport;
use dma_drivers::virtio::transport::{QueueLayout, VirtioOptions};
use dma_drivers::virtio::{VirtioBlk, VirtioBlkStats};
use dma_drivers::DriverError;
use dma_ring::RingErrorKind;
use dma_sim::virtio::blk::Blk;
use dma_sim::virtio::net::Net;
use dma_sim::virtio::split::{Chain, ChainError};
use dma_sim::virtio::{self as model, Backend, QueueIo, VirtioConfig, VirtioMmio};
use dma_sim::{DeviceId, Sim};
use dma_sim_presets::{virtio_mmio, Preset, PresetRun, Stepping};

#[path = "support/matrix.rs"]
mod matrix;
#[path = "support/tamper.rs"]
mod tamper;
use matrix::Config;
use tamper::Tamper;

const SECTORS: u64 = 256;

fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b * 13 + i * 101 + 7) as u8).collect()
}

fn options(layout: QueueLayout, event_idx: bool, translates: bool) -> VirtioOptions {
    VirtioOptions {
        layout,
        event_idx,
        indirect: true,
        platform_translates: translates,
        queue_size: 16,
    }
}

/// Writes then reads back 48 requests of 1 to 17 sectors through a
/// 16-entry queue (it wraps several times), checking every write in the
/// model's disk and every read against it, with a flush every 8.
struct Traffic(VirtioOptions);

impl PresetRun for Traffic {
    type Output = (Features, VirtioBlkStats);

    fn device_name(&self) -> &str {
        "vda"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Self::Output {
        let config = VirtioConfig {
            queue_num_max: 16,
            ..VirtioConfig::default()
        };
        let disk = VirtioMmio::new(sim.bus(dev), Blk::new(SECTORS, false), config);
        let opts = self.0;
        let mut vda = VirtioBlk::start(
            virtio_mmio(&disk).unwrap(),
            p,
            Stepping::new(disk.clone()),
            opts,
        )
        .unwrap();
        assert_eq!(vda.capacity(), SECTORS);
        let mut spans = Vec::new();
        for i in 0..48 {
            let sectors = 1 + (i * 5) % 17;
            let sector = ((i * 37) % (SECTORS as usize - sectors)) as u64;
            let bytes = pattern(i, sectors * 512);
            let mut buf = DmaBuf::for_device(p, bytes.len()).unwrap();
            buf.copy_from_slice(&bytes);
            let buf = vda.write(sector, buf).unwrap();
            assert_eq!(buf[..], bytes[..]);
            let start = sector as usize * 512;
            disk.with_backend(|b| {
                assert!(
                    b.disk()[start..start + bytes.len()] == bytes[..],
                    "write {i}"
                );
            });
            spans.push((sector, sectors));
            if i % 8 == 7 {
                vda.flush().unwrap();
            }
        }
        let image = disk.with_backend(|b| b.disk().to_vec());
        for (i, &(sector, sectors)) in spans.iter().enumerate() {
            let back = vda
                .read(sector, DmaBuf::for_device(p, sectors * 512).unwrap())
                .unwrap();
            let start = sector as usize * 512;
            assert!(back[..] == image[start..start + sectors * 512], "read {i}");
        }
        let features = vda.features();
        let stats = vda.stats();
        assert!(vda.shutdown().unwrap().is_empty());
        assert!(disk.status().is_empty(), "reset by shutdown");
        assert_eq!(
            disk.with_backend(|b| b.stats().sectors_written),
            spans.iter().map(|s| s.1 as u64).sum()
        );
        (features, stats)
    }
}

#[test]
fn blk_runs_clean_on_every_preset_split_and_packed_with_and_without_event_idx_and_indirect() {
    for c in Config::all() {
        let (features, stats) = c.run_clean(11, Traffic(c.options(16)));
        assert!(features.contains(Features::ACCESS_PLATFORM), "{c}");
        assert_eq!(
            (stats.writes, stats.reads, stats.flushes, stats.errors),
            (48, 48, 6, 0)
        );
    }
}

// ---- error paths ----------------------------------------------------------

fn sim_platform(seed: u64) -> (Sim, DeviceId) {
    let sim = Sim::new(dma_sim::SimConfig::non_coherent().seed(seed)).unwrap();
    let dev = sim.add_device("vda");
    (sim, dev)
}

fn failed(status: model::Status) -> bool {
    status.contains(model::Status::FAILED)
}

/// Bring-up refusals: each leaves the device FAILED with a typed error.
#[test]
fn bring_up_errors_are_typed_and_leave_the_device_failed() {
    let (sim, dev) = sim_platform(1);
    let p = Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
    let start = |t: Tamper<Blk>, disk: &VirtioMmio<Blk>, translates: bool| {
        let opts = options(QueueLayout::Split, true, translates);
        VirtioBlk::<_, _, _, DmaBuf>::start(
            MmioTransport::new(t).unwrap(),
            &p,
            Stepping::new(disk.clone()),
            opts,
        )
        .err()
    };
    let new_disk = || VirtioMmio::new(sim.bus(dev), Blk::new(8, false), VirtioConfig::default());

    let disk = new_disk();
    let e = start(Tamper::new(&disk, Features::VERSION_1, false), &disk, false);
    assert!(
        matches!(e, Some(DriverError::Unsupported(m)) if m.contains("VERSION_1")),
        "{e:?}"
    );
    assert!(failed(disk.status()));

    let disk = new_disk();
    let e = start(
        Tamper::new(&disk, Features::ACCESS_PLATFORM, false),
        &disk,
        true,
    );
    assert!(
        matches!(e, Some(DriverError::Unsupported(m)) if m.contains("ACCESS_PLATFORM")),
        "{e:?}"
    );
    assert!(failed(disk.status()));
    // Without translation the same device is fine.
    let disk = new_disk();
    assert!(start(
        Tamper::new(&disk, Features::ACCESS_PLATFORM, false),
        &disk,
        false
    )
    .is_none());

    let disk = new_disk();
    let e = start(Tamper::new(&disk, Features::empty(), true), &disk, false);
    assert_eq!(e, Some(DriverError::FeaturesRefused));
    assert!(failed(disk.status()));

    // The model itself refuses FEATURES_OK to a driver that declines
    // ACCESS_PLATFORM when it requires it; hiding the bit makes the
    // driver decline it.
    let strict = VirtioConfig {
        require_access_platform: true,
        ..VirtioConfig::default()
    };
    let disk = VirtioMmio::new(sim.bus(dev), Blk::new(8, false), strict);
    let e = start(
        Tamper::new(&disk, Features::ACCESS_PLATFORM, false),
        &disk,
        false,
    );
    assert_eq!(e, Some(DriverError::FeaturesRefused));
    assert!(disk.errors().iter().any(|m| m.contains("ACCESS_PLATFORM")));

    // A queue too small for header, data and status.
    let tiny = VirtioConfig {
        queue_num_max: 2,
        ..VirtioConfig::default()
    };
    let disk = VirtioMmio::new(sim.bus(dev), Blk::new(8, false), tiny);
    let e = start(Tamper::new(&disk, Features::empty(), false), &disk, false);
    assert!(
        matches!(e, Some(DriverError::Unsupported(m)) if m.contains("large enough")),
        "{e:?}"
    );
    assert!(failed(disk.status()));

    // A network card is not a disk.
    let nic = VirtioMmio::new(
        sim.bus(dev),
        Net::new([2, 0, 0, 0, 0, 1], 4),
        VirtioConfig::default(),
    );
    let e = VirtioBlk::<_, _, _, DmaBuf>::start(
        virtio_mmio(&nic).unwrap(),
        &p,
        Stepping::new(nic.clone()),
        VirtioOptions::default(),
    )
    .err();
    assert!(
        matches!(e, Some(DriverError::Unsupported(m)) if m.contains("device type")),
        "{e:?}"
    );
    assert!(failed(nic.status()));

    // A queue size below one request is the caller's mistake.
    let disk = new_disk();
    let e = VirtioBlk::<_, _, _, DmaBuf>::start(
        virtio_mmio(&disk).unwrap(),
        &p,
        Stepping::new(disk.clone()),
        VirtioOptions {
            queue_size: 2,
            ..VirtioOptions::default()
        },
    )
    .err();
    assert!(matches!(e, Some(DriverError::InvalidArgument(_))), "{e:?}");

    p.release();
    assert!(p.reports().is_empty() && sim.reports().is_empty());
}

/// Requests the driver refuses before the device sees them: the buffer
/// comes back untouched.
#[test]
fn bad_requests_are_refused_with_the_buffer_back() {
    let (sim, dev) = sim_platform(2);
    let p = Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
    let disk = VirtioMmio::new(sim.bus(dev), Blk::new(8, false), VirtioConfig::default());
    let mut vda = VirtioBlk::start(
        virtio_mmio(&disk).unwrap(),
        &p,
        Stepping::new(disk.clone()),
        VirtioOptions::default(),
    )
    .unwrap();
    let r = vda
        .write(0, DmaBuf::for_device(&p, 1000).unwrap())
        .unwrap_err();
    assert!(
        matches!(r.error, DriverError::InvalidArgument(m) if m.contains("whole")),
        "{:?}",
        r.error
    );
    assert_eq!(r.buffer.map(|b| b.len()), Some(1000));
    let r = vda
        .write(7, DmaBuf::for_device(&p, 1024).unwrap())
        .unwrap_err();
    assert!(matches!(r.error, DriverError::InvalidArgument(m) if m.contains("inside the disk")));
    assert!(r.buffer.is_some());
    let r = vda
        .read(u64::MAX, DmaBuf::for_device(&p, 512).unwrap())
        .unwrap_err();
    assert!(matches!(r.error, DriverError::InvalidArgument(_)));
    assert!(vda.shutdown().unwrap().is_empty());

    let ro = VirtioMmio::new(sim.bus(dev), Blk::new(8, true), VirtioConfig::default());
    let mut vdb = VirtioBlk::start(
        virtio_mmio(&ro).unwrap(),
        &p,
        Stepping::new(ro.clone()),
        VirtioOptions::default(),
    )
    .unwrap();
    assert!(vdb.read_only());
    let r = vdb
        .write(0, DmaBuf::for_device(&p, 512).unwrap())
        .unwrap_err();
    assert!(matches!(r.error, DriverError::InvalidArgument(m) if m.contains("read-only")));
    assert!(r.buffer.is_some());
    drop(vdb);
    assert!(ro.status().is_empty(), "drop resets the device");
    p.release();
    assert!(
        p.reports().is_empty() && sim.reports().is_empty(),
        "{:?}",
        p.reports()
    );
}

/// What a hostile block device does with each request.
#[derive(Clone, Copy, Debug)]
enum Misbehave {
    /// Writes this status byte, used length right.
    Status(u8),
    /// Status OK, used length one past the writable buffers.
    LongLength,
    /// Status OK, used length 1 for a read (no data written).
    ShortRead,
    /// Status OK, used length 0.
    NoLength,
    /// Used length right, status byte never written.
    NoStatus,
    /// Never completes.
    Silent,
    /// Reports the chain malformed (DEVICE_NEEDS_RESET).
    Broken,
}

struct HostileBlk(Misbehave);

impl Backend for HostileBlk {
    const DEVICE_ID: u32 = 2;
    const QUEUES: u16 = 1;

    fn features(&self) -> model::Features {
        model::blk::features::FLUSH
    }

    fn config(&self) -> Vec<u8> {
        64u64.to_le_bytes().to_vec()
    }

    fn work(&mut self, io: &mut QueueIo<'_>) -> Result<bool, ChainError> {
        if matches!(self.0, Misbehave::Silent) {
            return Ok(false);
        }
        let Some(chain) = io.pop(0)? else {
            return Ok(false);
        };
        let w = chain.writable_len();
        let status = |c: &Chain, io: &QueueIo<'_>, s: u8| c.write_at(io.bus(), w - 1, &[s]);
        let len = match self.0 {
            Misbehave::Status(s) => {
                status(&chain, io, s)?;
                w as u32
            }
            Misbehave::LongLength => {
                status(&chain, io, 0)?;
                w as u32 + 1
            }
            Misbehave::ShortRead => {
                status(&chain, io, 0)?;
                1
            }
            Misbehave::NoLength => {
                status(&chain, io, 0)?;
                0
            }
            Misbehave::NoStatus => w as u32,
            Misbehave::Silent => unreachable!("returned above"),
            Misbehave::Broken => return Err(ChainError::Malformed("hostile: refuses every chain")),
        };
        io.push_used(0, &chain, len)?;
        Ok(true)
    }
}

struct Hostile(Misbehave, QueueLayout);

impl PresetRun for Hostile {
    type Output = (DriverError, bool, usize);

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Self::Output {
        let disk = VirtioMmio::new(sim.bus(dev), HostileBlk(self.0), VirtioConfig::default());
        let opts = options(self.1, true, false);
        let mut vda = VirtioBlk::start(
            virtio_mmio(&disk).unwrap(),
            p,
            Stepping::new(disk.clone()),
            opts,
        )
        .unwrap();
        let r = vda
            .read(3, DmaBuf::for_device(p, 1024).unwrap())
            .unwrap_err();
        let returned = r.buffer.is_some();
        let later = vda.shutdown().unwrap().len();
        (r.error, returned, later)
    }
}

#[test]
fn device_errors_are_typed_and_no_buffer_is_lost() {
    use Misbehave::*;
    for layout in [QueueLayout::Split, QueueLayout::Packed] {
        for (bad, check) in [
            (
                Status(1),
                &(|e: &DriverError| *e == DriverError::BlockStatus(1))
                    as &dyn Fn(&DriverError) -> bool,
            ),
            (Status(2), &|e| *e == DriverError::BlockStatus(2)),
            (
                Status(0x7f),
                &|e| matches!(e, DriverError::DeviceProtocol(m) if m.contains("status byte")),
            ),
            (
                ShortRead,
                &|e| matches!(e, DriverError::DeviceProtocol(m) if m.contains("used length")),
            ),
            (
                NoLength,
                &|e| matches!(e, DriverError::DeviceProtocol(m) if m.contains("length 0")),
            ),
            (
                NoStatus,
                &|e| matches!(e, DriverError::DeviceProtocol(m) if m.contains("status byte")),
            ),
            (
                LongLength,
                &|e| matches!(e, DriverError::Ring(r) if r.kind() == RingErrorKind::LengthTooLarge),
            ),
            (Silent, &|e| matches!(e, DriverError::Timeout(_))),
            (Broken, &|e| *e == DriverError::DeviceNeedsReset),
        ] {
            let out = Preset::NonCoherent
                .run(5, DeviceConstraints::UNCONSTRAINED, Hostile(bad, layout))
                .unwrap();
            let (error, returned, later) = out.output;
            assert!(check(&error), "{bad:?} {layout:?}: {error:?}");
            // Completed requests give the buffer back at once; ones the
            // device never finished come back from shutdown.
            let stuck = matches!(bad, LongLength | Silent | Broken);
            assert_eq!(
                (returned, later),
                (!stuck, usize::from(stuck)),
                "{bad:?} {layout:?}"
            );
            assert!(
                out.clean(),
                "{bad:?} {layout:?}: {:?} {:?}",
                out.checker,
                out.reports
            );
        }
    }
}

/// Completes every request OK and records how many packed ring
/// descriptors each took.
struct Recorder(Vec<u16>);

impl Backend for Recorder {
    const DEVICE_ID: u32 = 2;
    const QUEUES: u16 = 1;

    fn features(&self) -> model::Features {
        model::Features::empty()
    }

    fn config(&self) -> Vec<u8> {
        64u64.to_le_bytes().to_vec()
    }

    fn work(&mut self, io: &mut QueueIo<'_>) -> Result<bool, ChainError> {
        let Some(chain) = io.pop(0)? else {
            return Ok(false);
        };
        self.0.push(chain.ring_len);
        let w = chain.writable_len();
        chain.write_at(io.bus(), w - 1, &[0])?;
        io.push_used(0, &chain, w as u32)?;
        Ok(true)
    }
}

/// With INDIRECT_DESC a request of several segments takes one packed
/// ring descriptor; without, one per segment.
#[test]
fn indirect_requests_take_one_ring_entry() {
    for indirect in [false, true] {
        let (sim, dev) = sim_platform(9);
        let p = Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
        let disk = VirtioMmio::new(sim.bus(dev), Recorder(Vec::new()), VirtioConfig::default());
        let opts = VirtioOptions {
            indirect,
            ..options(QueueLayout::Packed, true, false)
        };
        let mut vda = VirtioBlk::start(
            virtio_mmio(&disk).unwrap(),
            &p,
            Stepping::new(disk.clone()),
            opts,
        )
        .unwrap();
        vda.write(0, DmaBuf::for_device(&p, 3 * 4096).unwrap())
            .unwrap();
        vda.flush().unwrap_or(()); // FLUSH not offered: nothing sent
        vda.shutdown().unwrap();
        let ring_lens = disk.with_backend(|r| r.0.clone());
        assert_eq!(ring_lens.len(), 1);
        if indirect {
            assert_eq!(ring_lens, [1]);
        } else {
            assert!(ring_lens[0] >= 3, "header, data, status: {ring_lens:?}");
        }
        p.release();
        assert!(p.reports().is_empty() && sim.reports().is_empty());
    }
}

/// Failures the device causes through its registers: a queue it does not
/// enable, `DEVICE_NEEDS_RESET` at `DRIVER_OK`, and resets that never
/// finish (at bring-up, and at shutdown, where the rings are then leaked
/// rather than freed under a device that may still write them).
#[test]
fn register_level_failures_are_typed() {
    let (sim, dev) = sim_platform(3);
    let p = Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
    let disk = || VirtioMmio::new(sim.bus(dev), Blk::new(8, false), VirtioConfig::default());
    let start = |t: &Tamper<Blk>, d: &VirtioMmio<Blk>| {
        VirtioBlk::<_, _, _, DmaBuf>::start(
            MmioTransport::new(t.clone()).unwrap(),
            &p,
            Stepping::new(d.clone()),
            options(QueueLayout::Split, true, false),
        )
    };

    let d = disk();
    let t = Tamper::new(&d, Features::empty(), false);
    t.lies.never_ready.set(true);
    let e = start(&t, &d).err();
    assert!(
        matches!(e, Some(DriverError::Unsupported(m)) if m.contains("enables")),
        "{e:?}"
    );
    assert!(failed(d.status()));

    let d = disk();
    let t = Tamper::new(&d, Features::empty(), false);
    t.lies.needs_reset.set(true);
    assert_eq!(start(&t, &d).err(), Some(DriverError::DeviceNeedsReset));
    assert!(failed(d.status()));

    let d = disk();
    let t = Tamper::new(&d, Features::empty(), false);
    t.lies.stuck.set(true);
    assert!(matches!(start(&t, &d).err(), Some(DriverError::Timeout(_))));

    p.release();
    assert!(p.take_reports().is_empty() && sim.reports().is_empty());

    let d = disk();
    let t = Tamper::new(&d, Features::empty(), false);
    let mut vda = start(&t, &d).unwrap();
    vda.write(1, DmaBuf::for_device(&p, 512).unwrap()).unwrap();
    t.lies.stuck.set(true);
    assert!(matches!(vda.shutdown(), Err(DriverError::Timeout(_))));
    // The queue and request memory were leaked, not freed.
    assert!(
        p.release() > 0,
        "ring memory freed under a device that never reset"
    );
}

/// A block device with the given features and configuration that
/// completes requests OK only while `serve` is set.
struct OddBlk {
    features: model::Features,
    config: Vec<u8>,
    serve: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl OddBlk {
    fn new(features: model::Features, config: Vec<u8>, serve: bool) -> Self {
        Self {
            features,
            config,
            serve: std::sync::Arc::new(serve.into()),
        }
    }
}

impl Backend for OddBlk {
    const DEVICE_ID: u32 = 2;
    const QUEUES: u16 = 1;

    fn features(&self) -> model::Features {
        self.features
    }

    fn config(&self) -> Vec<u8> {
        self.config.clone()
    }

    fn work(&mut self, io: &mut QueueIo<'_>) -> Result<bool, ChainError> {
        if !self.serve.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        let Some(chain) = io.pop(0)? else {
            return Ok(false);
        };
        let w = chain.writable_len();
        chain.write_at(io.bus(), w - 1, &[0])?;
        io.push_used(0, &chain, w as u32)?;
        Ok(true)
    }
}

/// `capacity` 64, then `seg_max` and `size_max` as given.
fn blk_config(size_max: u32, seg_max: u32) -> Vec<u8> {
    let mut c = 64u64.to_le_bytes().to_vec();
    c.extend(size_max.to_le_bytes());
    c.extend(seg_max.to_le_bytes());
    c
}

/// Requests refused for the device's limits or for lack of room, and
/// requests that time out and complete later: typed errors, every
/// buffer back (at once, or from shutdown).
#[test]
fn limits_room_and_late_completions() {
    let (sim, dev) = sim_platform(8);
    let pages = DeviceConstraints::builder()
        .max_segment_size(4096)
        .build()
        .unwrap();
    let p = Checked::new(sim.non_coherent_platform(dev, pages));
    let start = |b: OddBlk, queue_size: u16, indirect: bool| {
        let d = VirtioMmio::new(sim.bus(dev), b, VirtioConfig::default());
        let opts = VirtioOptions {
            queue_size,
            indirect,
            ..options(QueueLayout::Split, true, false)
        };
        let r = VirtioBlk::<_, _, _, DmaBuf>::start(
            virtio_mmio(&d).unwrap(),
            &p,
            Stepping::new(d.clone()),
            opts,
        );
        (r, d)
    };
    let none = model::Features::empty();
    let seg_max = model::Features::from_bits_retain(1 << 2);
    let size_max = model::Features::from_bits_retain(1 << 1);

    // No configuration space: no capacity.
    let (r, d) = start(OddBlk::new(none, Vec::new(), true), 16, true);
    assert!(matches!(r.err(), Some(DriverError::Unsupported(m)) if m.contains("capacity")));
    assert!(failed(d.status()));
    // size_max below a page.
    let (r, _) = start(OddBlk::new(size_max, blk_config(512, 0), true), 16, true);
    assert!(matches!(r.err(), Some(DriverError::Unsupported(m)) if m.contains("size_max")));

    // seg_max 1: a two-page write is refused, a one-page one goes.
    let (r, _) = start(OddBlk::new(seg_max, blk_config(0, 1), true), 16, true);
    let mut vda = r.unwrap();
    let e = vda
        .write(0, DmaBuf::for_device(&p, 8192).unwrap())
        .unwrap_err();
    assert!(matches!(e.error, DriverError::InvalidArgument(m) if m.contains("pieces")));
    assert_eq!(e.buffer.map(|b| b.len()), Some(8192));
    vda.write(0, DmaBuf::for_device(&p, 4096).unwrap()).unwrap();
    vda.shutdown().unwrap();

    // A queue of 4 without indirect tables: one stuck 3-descriptor
    // request fills it.
    let (r, _) = start(OddBlk::new(none, blk_config(0, 0), false), 4, false);
    let mut vda = r.unwrap();
    let e = vda
        .read(0, DmaBuf::for_device(&p, 512).unwrap())
        .unwrap_err();
    assert!(matches!(e.error, DriverError::Timeout(_)) && e.buffer.is_none());
    let e = vda
        .read(0, DmaBuf::for_device(&p, 512).unwrap())
        .unwrap_err();
    assert!(
        matches!(e.error, DriverError::Ring(r) if r.kind() == RingErrorKind::Full),
        "{e:?}"
    );
    assert!(e.buffer.is_some());
    assert_eq!(vda.in_flight(), 1);
    assert_eq!(vda.shutdown().unwrap().len(), 1);

    // With indirect tables the queue has room, and the request areas (2
    // for a queue of 4) run out first.
    let (r, _) = start(OddBlk::new(none, blk_config(0, 0), false), 4, true);
    let mut vda = r.unwrap();
    for _ in 0..2 {
        let e = vda
            .read(0, DmaBuf::for_device(&p, 512).unwrap())
            .unwrap_err();
        assert!(matches!(e.error, DriverError::Timeout(_)));
    }
    let e = vda
        .read(0, DmaBuf::for_device(&p, 512).unwrap())
        .unwrap_err();
    assert!(matches!(e.error, DriverError::InvalidArgument(m) if m.contains("request slot")));
    assert!(e.buffer.is_some());
    assert_eq!(vda.shutdown().unwrap().len(), 2);

    // A request that timed out completes during the next one: the next
    // one succeeds, the late one's buffer comes back from shutdown.
    let late = OddBlk::new(none, blk_config(0, 0), false);
    let serve = late.serve.clone();
    let (r, _) = start(late, 16, true);
    let mut vda = r.unwrap();
    let e = vda
        .read(2, DmaBuf::for_device(&p, 512).unwrap())
        .unwrap_err();
    assert!(matches!(e.error, DriverError::Timeout(_)));
    serve.store(true, std::sync::atomic::Ordering::Relaxed);
    vda.read(3, DmaBuf::for_device(&p, 1024).unwrap()).unwrap();
    assert_eq!(vda.stats().late, 1);
    let back = vda.shutdown().unwrap();
    assert_eq!(back.iter().map(|b| b.len()).collect::<Vec<_>>(), [512]);

    p.release();
    assert!(
        p.reports().is_empty() && sim.reports().is_empty(),
        "{:?}",
        p.reports()
    );
}
