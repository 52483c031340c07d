//! The shared virtio-blk checks (`dma_qemu_virt::virtio_blk_suite`) on the
//! sim's independent virtio-blk model over virtio-mmio, on the
//! non-coherent machine: what the aarch64 image runs on QEMU's
//! virtio-blk-pci must pass on a second reading of the spec, its `DISK`
//! claims must hold in the model's disk, and a disk without the host's
//! data must fail the read check by name.

use dma_core::DeviceConstraints;
use dma_drivers::virtio::transport::QueueLayout;
use dma_qemu_virt::report::{fill_pattern, pattern_byte, ExitCode, Reporter, PREPARED};
use dma_qemu_virt::virtio_blk_suite::{run, BlkRun, SECTOR};
use dma_sim::virtio::blk::Blk;
use dma_sim::virtio::{VirtioConfig, VirtioMmio};
use dma_sim::{Sim, SimConfig};
use dma_sim_presets::{virtio_mmio, Stepping};

const SECTORS: u64 = 8192;

/// Runs the checks with `layout` on a disk that holds the host's data when
/// `prepared`; returns the lines, the exit code and the model's disk.
fn run_on_sim(layout: QueueLayout, prepared: bool) -> (String, ExitCode, Vec<u8>) {
    run_with(layout, false, prepared)
}

/// As [`run_on_sim`], with indirect tables when `indirect`.
fn run_with(layout: QueueLayout, indirect: bool, prepared: bool) -> (String, ExitCode, Vec<u8>) {
    let sim = Sim::new(SimConfig::non_coherent().seed(9)).unwrap();
    let dev = sim.add_device("vda");
    let platform = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
    let config = VirtioConfig {
        queue_num_max: 16,
        ..VirtioConfig::default()
    };
    let disk = VirtioMmio::new(sim.bus(dev), Blk::new(SECTORS, false), config);
    if prepared {
        let (sector, sectors, seed) = PREPARED;
        let range = sector as usize * SECTOR..(sector + sectors) as usize * SECTOR;
        disk.with_backend(|b| fill_pattern(seed, 0, &mut b.disk_mut()[range]));
    }
    let blk = BlkRun {
        prefix: "sim",
        drive: "v0",
        layout,
        indirect,
        translates: false,
        // The model offers ACCESS_PLATFORM on every device.
        access_platform: true,
        base: 512,
        seed: 0x700,
    };
    let mut r = Reporter::new(String::new());
    let transport = virtio_mmio(&disk).unwrap();
    run(
        &mut r,
        transport,
        &platform,
        Stepping::new(disk.clone()),
        &blk,
    );
    let code = r.done();
    assert!(sim.reports().is_empty(), "{:?}", sim.reports());
    let bytes = disk.with_backend(|b| b.disk().to_vec());
    (r.out().clone(), code, bytes)
}

/// Checks every `DISK` line against the model's disk; returns how many.
fn claims_hold(out: &str, disk: &[u8]) -> usize {
    let mut n = 0;
    for line in out.lines().filter(|l| l.starts_with("DISK ")) {
        let w: Vec<&str> = line.split(' ').collect();
        assert_eq!(w.len(), 5, "{line}");
        assert_eq!(w[4], "v0", "{line}");
        let sector: usize = w[1].parse().unwrap();
        let sectors: usize = w[2].parse().unwrap();
        let seed = u32::from_str_radix(w[3].trim_start_matches("0x"), 16).unwrap();
        let area = &disk[sector * SECTOR..(sector + sectors) * SECTOR];
        for (i, &b) in area.iter().enumerate() {
            assert_eq!(b, pattern_byte(seed, i as u64), "{line}: byte {i}");
        }
        n += 1;
    }
    n
}

#[test]
fn every_check_passes_split_and_packed() {
    for layout in [QueueLayout::Split, QueueLayout::Packed] {
        let (out, code, disk) = run_on_sim(layout, true);
        assert_eq!(code, ExitCode::Pass, "{layout:?}:\n{out}");
        assert!(out.contains("DONE 9 0 0\n"), "{out}");
        let packed = layout == QueueLayout::Packed;
        assert!(
            out.contains(&format!(
                "RING_PACKED {packed}, INDIRECT_DESC false, EVENT_IDX true"
            )),
            "{out}"
        );
        assert_eq!(claims_hold(&out, &disk), 4, "{out}");
    }
}

#[test]
fn every_check_passes_with_indirect_tables() {
    for layout in [QueueLayout::Split, QueueLayout::Packed] {
        let (out, code, disk) = run_with(layout, true, true);
        assert_eq!(code, ExitCode::Pass, "{layout:?}:\n{out}");
        assert!(out.contains("INDIRECT_DESC true"), "{out}");
        assert_eq!(claims_hold(&out, &disk), 4, "{out}");
    }
}

#[test]
fn a_disk_without_the_hosts_data_fails_by_name() {
    let (out, code, _) = run_on_sim(QueueLayout::Split, false);
    assert!(
        out.contains("TEST sim.read_prepared FAIL byte 0 is 0x00, the host wrote"),
        "{out}"
    );
    assert_eq!(code, ExitCode::TestFailed);
    assert!(out.contains("TEST sim.queue_wrap PASS"), "{out}");
}
