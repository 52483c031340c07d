//! virtio-drivers' own `VirtIOBlk` on the sim's virtio-blk model, on the
//! non-coherent machine with the detector and `dma-check` on.

mod support;

use dma_sim::virtio::blk::{self, Blk};
use dma_sim::virtio::{Features, Status, VirtioConfig, VirtioMmio};
use support::{describe, Hal, IommuHal, Preset, Rig, SimTransport};
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};

const SECTORS: u64 = 64;

/// Line-aligned sectors, so the data itself is mapped directly (only
/// virtio-drivers' own small buffers bounce) and the detector watches it.
#[repr(C, align(128))]
struct Sectors<const N: usize>([u8; N]);

fn pattern(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn device<P: Preset>(rig: &Rig<P>, config: VirtioConfig) -> VirtioMmio<Blk> {
    let model = VirtioMmio::new(rig.sim.bus(rig.dev), Blk::new(SECTORS, false), config);
    model.with_backend(|b| {
        let disk = pattern(0x40, b.disk().len());
        b.disk_mut().copy_from_slice(&disk);
    });
    model
}

/// Reads, writes, flush and GET_ID, enough requests to wrap the 16-entry
/// queue several times; every byte checked on the model's disk.
fn exercise(seed: u64) {
    let rig = Rig::new(seed, "virtio-blk");
    let model = device(&rig, VirtioConfig::default());
    let transport = SimTransport::new(model.clone()).expect("a virtio-blk device");
    let mut drv = VirtIOBlk::<Hal, _>::new(transport).expect("virtio-blk bring-up");
    assert_eq!(drv.capacity(), SECTORS);
    let negotiated = model.negotiated();
    assert!(
        negotiated.contains(Features::VERSION_1 | Features::INDIRECT_DESC | Features::EVENT_IDX)
    );

    let mut two = Sectors([0u8; 2 * SECTOR_SIZE]);
    drv.read_blocks(3, &mut two.0).expect("read");
    let disk = model.with_backend(|b| b.disk().to_vec());
    assert_eq!(&two.0[..], &disk[3 * SECTOR_SIZE..5 * SECTOR_SIZE]);

    for round in 0..40u8 {
        let sector = usize::from(round) % (SECTORS as usize - 4);
        let data = pattern(round, 4 * SECTOR_SIZE);
        let mut out = Sectors([0u8; 4 * SECTOR_SIZE]);
        out.0.copy_from_slice(&data);
        drv.write_blocks(sector, &out.0).expect("write");
        let on_disk =
            model.with_backend(|b| b.disk()[sector * SECTOR_SIZE..][..data.len()].to_vec());
        assert_eq!(
            on_disk, data,
            "round {round}: the model's disk holds what was written"
        );
        let mut back = Sectors([0u8; 4 * SECTOR_SIZE]);
        drv.read_blocks(sector, &mut back.0).expect("read back");
        assert_eq!(&back.0[..], &data[..], "round {round}: read back");
    }

    // An unaligned Vec the device writes: it bounces.
    let mut plain = vec![0u8; SECTOR_SIZE + 1];
    drv.read_blocks(7, &mut plain[1..])
        .expect("read into an unaligned buffer");
    let disk = model.with_backend(|b| b.disk()[7 * SECTOR_SIZE..8 * SECTOR_SIZE].to_vec());
    assert_eq!(&plain[1..], &disk[..]);

    drv.flush().expect("flush");
    let mut id = [0u8; 20];
    let n = drv.device_id(&mut id).expect("GET_ID");
    assert_eq!(&id[..n], b"dma-sim-vd");
    // Past the end: the model answers IOERR.
    let mut one = Sectors([0u8; SECTOR_SIZE]);
    assert!(drv.read_blocks(SECTORS as usize, &mut one.0).is_err());

    let stats = model.with_backend(|b| b.stats());
    assert_eq!(stats.flushes, 1);
    assert_eq!(stats.sectors_written, 40 * 4);
    assert_eq!(stats.errors, 1);
    assert!(model.errors().is_empty(), "{:?}", model.errors());
    drop(drv);

    let outcome = rig.finish(());
    assert!(outcome.faults.is_empty(), "{}", describe(&outcome));
    assert!(outcome.clean(), "{}", describe(&outcome));
    assert!(outcome.stats.device_writes > 0 && outcome.stats.lines_invalidated > 0);
}

#[test]
fn virtio_drivers_blk_on_the_non_coherent_machine() {
    for seed in [1, 2, 3] {
        exercise(seed);
    }
}

/// Behind the sim's IOMMU the device sees IOVAs (and bounce addresses),
/// although virtio-drivers declined `ACCESS_PLATFORM`: the model, like
/// QEMU's devices behind an IOMMU, translates regardless.
#[test]
fn virtio_drivers_blk_behind_the_iommu() {
    let rig = Rig::iommu(12, "virtio-blk");
    let model = device(&rig, VirtioConfig::default());
    let transport = SimTransport::new(model.clone()).expect("a virtio-blk device");
    let mut drv = VirtIOBlk::<IommuHal, _>::new(transport).expect("virtio-blk bring-up");
    assert!(!model.negotiated().contains(Features::ACCESS_PLATFORM));
    for round in 0..20u8 {
        let sector = usize::from(round) * 3 % 60;
        let mut out = Sectors([0u8; 2 * SECTOR_SIZE]);
        out.0.copy_from_slice(&pattern(round, 2 * SECTOR_SIZE));
        drv.write_blocks(sector, &out.0).expect("write");
        let on_disk =
            model.with_backend(|b| b.disk()[sector * SECTOR_SIZE..][..out.0.len()].to_vec());
        assert_eq!(&on_disk[..], &out.0[..]);
        let mut back = Sectors([0u8; 2 * SECTOR_SIZE]);
        drv.read_blocks(sector, &mut back.0).expect("read back");
        assert_eq!(&back.0[..], &out.0[..], "round {round}");
    }
    drop(drv);
    let outcome = rig.finish(());
    assert!(outcome.faults.is_empty(), "{}", describe(&outcome));
    assert!(outcome.clean(), "{}", describe(&outcome));
    assert!(
        outcome.stats.iommu_walks > 0,
        "the device went through the IOMMU"
    );
}

/// The device on its own thread, racing virtio-drivers' polling of the
/// used ring, on the non-coherent machine with evictions.
#[test]
fn virtio_drivers_blk_with_the_device_on_its_own_thread() {
    let rig = Rig::new(8, "virtio-blk");
    let model = device(&rig, VirtioConfig::default());
    let thread = dma_sim::DeviceThread::spawn(model.clone());
    let transport = SimTransport::threaded(model.clone()).expect("a virtio-blk device");
    let mut drv = VirtIOBlk::<Hal, _>::new(transport).expect("virtio-blk bring-up");
    for round in 0..24u8 {
        let sector = usize::from(round) % 60;
        let mut out = Sectors([0u8; 2 * SECTOR_SIZE]);
        out.0
            .copy_from_slice(&pattern(round ^ 0x5a, 2 * SECTOR_SIZE));
        drv.write_blocks(sector, &out.0).expect("write");
        let mut back = Sectors([0u8; 2 * SECTOR_SIZE]);
        drv.read_blocks(sector, &mut back.0).expect("read back");
        assert_eq!(&back.0[..], &out.0[..], "round {round}");
    }
    drop(drv);
    drop(thread.stop());
    assert!(model.errors().is_empty(), "{:?}", model.errors());
    let outcome = rig.finish(());
    assert!(outcome.faults.is_empty(), "{}", describe(&outcome));
    assert!(outcome.clean(), "{}", describe(&outcome));
}

/// virtio-drivers shares `VirtIOBlk`'s one-byte status from the stack; on
/// the non-coherent machine without bouncing the direct backend refuses
/// it (a partial cache line the device writes), and `Hal::share` has no
/// error path: the adapter panics with the platform's error.
#[test]
#[should_panic(expected = "refused to map 1 bytes FromDevice")]
fn non_coherent_without_bounce_refuses_the_status_byte() {
    use dma_core::DeviceConstraints;
    use dma_sim::{NonCoherentPlatform, Sim, SimConfig};
    use dma_virtio_hal::{StaticPlatform, VirtioHal};
    use std::sync::OnceLock;

    struct Bare;
    struct Machine(Sim, NonCoherentPlatform);
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    fn machine() -> &'static Machine {
        MACHINE.get_or_init(|| {
            let sim = Sim::new(SimConfig::non_coherent().seed(9)).expect("machine");
            let dev = sim.add_device("virtio-blk");
            let p = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
            Machine(sim, p)
        })
    }
    impl StaticPlatform for Bare {
        type Platform = NonCoherentPlatform;
        fn platform() -> &'static NonCoherentPlatform {
            &machine().1
        }
        unsafe fn mmio_phys_to_virt(paddr: u64, _size: usize) -> core::ptr::NonNull<u8> {
            core::ptr::NonNull::new(paddr as usize as *mut u8).expect("not at 0")
        }
    }
    let m = machine();
    let model = VirtioMmio::new(
        m.0.bus(m.1.device()),
        Blk::new(SECTORS, false),
        VirtioConfig::default(),
    );
    let transport = SimTransport::new(model).expect("a virtio-blk device");
    let mut drv = VirtIOBlk::<VirtioHal<Bare>, _>::new(transport).expect("bring-up");
    let mut one = Sectors([0u8; SECTOR_SIZE]);
    let _ = drv.read_blocks(0, &mut one.0);
}

/// A device that requires `ACCESS_PLATFORM` (§6.1) refuses virtio-drivers'
/// features by leaving `FEATURES_OK` clear; virtio-drivers 0.13 does not
/// re-read the status (§3.1.1 step 6) and reports a working device.
#[test]
fn access_platform_refusal_goes_unnoticed() {
    let rig = Rig::new(4, "virtio-blk");
    let config = VirtioConfig {
        require_access_platform: true,
        ..VirtioConfig::default()
    };
    let model = device(&rig, config);
    let transport = SimTransport::new(model.clone()).expect("a virtio-blk device");
    let drv = VirtIOBlk::<Hal, _>::new(transport);
    assert!(drv.is_ok(), "virtio-drivers accepted the device");
    assert!(!model.status().contains(Status::FEATURES_OK));
    assert!(
        model.errors()[0].contains("ACCESS_PLATFORM"),
        "{:?}",
        model.errors()
    );
    assert!(model.negotiated().is_empty());
    drop(drv);
    let outcome = rig.finish(());
    assert!(outcome.clean(), "{}", describe(&outcome));
}

/// The model's own negotiation rules, through the registers.
#[test]
fn negotiation_refuses_what_was_not_offered_and_legacy() {
    use dma_sim::virtio::regs;
    let rig = Rig::new(5, "virtio-blk");
    let model = device(&rig, VirtioConfig::default());
    let features_ok = |driver: u64| {
        model.write(regs::STATUS, 0);
        model.write(regs::STATUS, (Status::ACKNOWLEDGE | Status::DRIVER).bits());
        for (sel, word) in [(0, driver as u32), (1, (driver >> 32) as u32)] {
            model.write(regs::DRIVER_FEATURES_SEL, sel);
            model.write(regs::DRIVER_FEATURES, word);
        }
        model.write(
            regs::STATUS,
            (Status::ACKNOWLEDGE | Status::DRIVER | Status::FEATURES_OK).bits(),
        );
        Status::from_bits_retain(model.read(regs::STATUS)).contains(Status::FEATURES_OK)
    };
    assert!(features_ok(
        Features::VERSION_1.bits() | blk::features::FLUSH.bits()
    ));
    assert!(!features_ok(blk::features::FLUSH.bits()), "no VERSION_1");
    assert!(
        !features_ok(Features::VERSION_1.bits() | 1 << 35),
        "IN_ORDER (bit 35) not offered"
    );
    let errors = model.errors();
    assert!(errors[0].contains("VERSION_1"), "{errors:?}");
    assert!(errors[1].contains("did not offer"), "{errors:?}");
    rig.finish(());
}

/// With the stack classifier on (what Linux's dma-debug checks with
/// `object_is_on_stack`), `dma-check` refuses the map of `VirtIOBlk`'s
/// request header, which lives on the stack of `read_blocks`; the adapter
/// has no error path and panics.
#[test]
fn virtio_drivers_maps_stack_memory() {
    use dma_check::{MemoryClass, Report};
    let rig = Rig::with_stack_check(6, "virtio-blk");
    let model = device(&rig, VirtioConfig::default());
    let transport = SimTransport::new(model).expect("a virtio-blk device");
    let mut drv = VirtIOBlk::<Hal, _>::new(transport).expect("bring-up");
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut one = Sectors([0u8; SECTOR_SIZE]);
        let _ = drv.read_blocks(0, &mut one.0);
    }));
    let message = read.expect_err("the map of a stack buffer is refused");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("refused to map 16 bytes ToDevice"),
        "{message}"
    );
    let reports = rig.platform.take_reports();
    assert!(
        matches!(
            reports.as_slice(),
            [Report::BadMemory {
                class: MemoryClass::Stack,
                len: 16,
                ..
            }]
        ),
        "{reports:?}"
    );
    // The driver is left mid-request (the panic unwound through
    // virtio-drivers' VirtQueue::add): it is leaked, not dropped.
    std::mem::forget(drv);
}
