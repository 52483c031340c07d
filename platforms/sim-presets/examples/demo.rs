//! `cargo xtask demo`: the reference NVMe block driver and NIC driver on
//! the sim's three presets with the checking layer on, one table of what
//! happened, then the classic missing-sync bug being caught.
//!
//! Run it with `cargo run --release -p dma-sim-presets --example demo`.

#[path = "support/pitfall.rs"]
mod pitfall;

use std::time::{Duration, Instant};

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::nic::{NicDriver, NicDriverConfig};
use dma_drivers::nvme::{prp_pools, IoOp, NvmeBlockDriver, NvmeDriverConfig};
use dma_drivers::DriverError;
use dma_sim::nic::{Nic, NicConfig};
use dma_sim::nvme::{NvmeConfig, NvmeController};
use dma_sim::{DeviceId, ReportKind, Sim, SimStats};
use dma_sim_presets::{Outcome, Preset, PresetRun, Stepping};
use pitfall::CopyBreakTx;

const SEED: u64 = 2024;

/// What a workload did, as the driver saw it.
#[derive(Default)]
struct Work {
    commands: u64,
    payload: u64,
    verified: u64,
    mismatches: u64,
    surfaced: Vec<String>,
    elapsed: Duration,
}

/// 4 KiB writes at queue depth 63, the same read back and verified, 64 KiB
/// writes (PRP lists), one refused DMA surfacing as an NVMe status and
/// retried, a flush.
struct NvmeWork;

fn pattern(lba: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |i| (i as u64).wrapping_mul(31).wrapping_add(lba * 7) as u8)
}

impl PresetRun for NvmeWork {
    type Output = Work;

    fn device_name(&self) -> &str {
        "nvme0"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Work {
        let config = NvmeConfig {
            blocks: 1 << 16,
            ..NvmeConfig::default()
        };
        let ctrl = NvmeController::new(sim.bus(dev), config).expect("controller");
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let pools = prp_pools(p).expect("PRP pools");
        let mut disk: NvmeBlockDriver<'_, _, _, DmaBuf> = NvmeBlockDriver::start(
            &regs,
            p,
            &pools,
            Stepping::new(ctrl),
            NvmeDriverConfig::default(),
        )
        .expect("NVMe bring-up");
        let mut work = Work::default();
        let start = Instant::now();
        let mut spare: Vec<DmaBuf> = Vec::new();
        let mut pending = std::collections::HashMap::new();

        for (op, count, blocks) in [
            (IoOp::Write, 8192u64, 8usize),
            (IoOp::Read, 8192, 8),
            (IoOp::Write, 256, 128),
        ] {
            let len = blocks * 512;
            let (mut issued, mut done) = (0u64, 0u64);
            while done < count {
                while issued < count && disk.can_queue() {
                    let lba = issued * blocks as u64;
                    let mut buf = spare
                        .pop()
                        .filter(|b| b.len() == len)
                        .unwrap_or_else(|| DmaBuf::for_device(p, len).expect("buffer"));
                    let queued = if op == IoOp::Write {
                        buf.iter_mut()
                            .zip(pattern(lba, len))
                            .for_each(|(b, v)| *b = v);
                        disk.queue_write(lba, buf)
                    } else {
                        disk.queue_read(lba, buf)
                    };
                    pending.insert(queued.expect("queued"), lba);
                    issued += 1;
                }
                disk.submit();
                let mut next = Some(disk.wait().expect("completion"));
                while let Some(c) = next {
                    c.result.expect("I/O status");
                    let buf = c.buffer.expect("buffer back");
                    let lba = pending.remove(&c.cid).expect("a known command id");
                    if c.op == IoOp::Read {
                        if buf.iter().copied().eq(pattern(lba, len)) {
                            work.verified += 1;
                        } else {
                            work.mismatches += 1;
                        }
                    }
                    work.payload += c.len as u64;
                    spare.push(buf);
                    done += 1;
                    next = disk.poll().expect("poll");
                }
            }
            work.commands += count;
        }

        // A refused DMA (the data transfer of a read) reaches the driver as
        // an NVMe status; the retry succeeds.
        sim.inject_faults_after(dev, 1, 1);
        let err = disk
            .read(0, DmaBuf::for_device(p, 4096).expect("buffer"))
            .expect_err("the injected fault surfaces");
        work.surfaced.push(format!("NVMe: {}", err.error));
        let back = disk
            .read(0, err.buffer.expect("buffer back"))
            .expect("retry");
        work.commands += 2;
        work.payload += 4096;
        work.verified += u64::from(back.iter().copied().eq(pattern(0, 4096)));

        disk.flush().expect("flush");
        work.commands += 1;
        work.elapsed = start.elapsed();
        disk.shutdown().expect("shutdown");
        work
    }
}

/// 8192 frames of 64..1514 bytes through a loopback NIC: mapped per frame
/// on transmit, received into recycled buffers, verified.
struct NicWork;

impl PresetRun for NicWork {
    type Output = Work;

    fn device_name(&self) -> &str {
        "eth0"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Work {
        let nic = Nic::new(
            sim.bus(dev),
            NicConfig {
                loopback: true,
                ..NicConfig::default()
            },
        );
        let regs = nic.registers();
        let regs = dma_sim_presets::nic_registers(&regs);
        let mut eth: NicDriver<'_, _, _, DmaBuf> =
            NicDriver::start(regs, p, Stepping::new(nic), NicDriverConfig::default())
                .expect("NIC bring-up");
        let mut work = Work::default();
        let start = Instant::now();
        let frame = |i: u64| -> Vec<u8> {
            (0..64 + (i as usize * 191) % 1451)
                .map(|b| (b as u64 ^ i) as u8)
                .collect()
        };
        let (mut sent, mut received) = (0u64, 0u64);
        while received < 8192 {
            while sent < 8192 && sent - received < 16 && eth.tx_in_flight() < 16 {
                let bytes = frame(sent);
                let mut buf = DmaBuf::for_device(p, bytes.len()).expect("buffer");
                buf.copy_from_slice(&bytes);
                eth.queue_send(buf).expect("queued");
                sent += 1;
            }
            eth.kick();
            while eth.tx_in_flight() > 0 {
                eth.wait_sent().expect("sent").result.expect("TX status");
            }
            while received < sent {
                let got = eth.wait_frame().expect("frame");
                if got == frame(received) {
                    work.verified += 1;
                } else {
                    work.mismatches += 1;
                }
                work.payload += 2 * got.len() as u64;
                received += 1;
            }
        }
        work.commands = 2 * 8192; // each frame: one TX and one RX descriptor
        work.elapsed = start.elapsed();
        work
    }
}

struct Row {
    preset: Preset,
    commands: u64,
    bytes: u64,
    syncs: u64,
    lines: u64,
    maps: u64,
    faults: u64,
    checker: usize,
    detector: usize,
    elapsed: Duration,
    verified: u64,
    mismatches: u64,
    surfaced: Vec<String>,
}

fn add(a: SimStats, b: SimStats) -> SimStats {
    SimStats {
        maps: a.maps + b.maps,
        syncs_for_device: a.syncs_for_device + b.syncs_for_device,
        syncs_for_cpu: a.syncs_for_cpu + b.syncs_for_cpu,
        lines_cleaned: a.lines_cleaned + b.lines_cleaned,
        lines_invalidated: a.lines_invalidated + b.lines_invalidated,
        bytes_read: a.bytes_read + b.bytes_read,
        bytes_written: a.bytes_written + b.bytes_written,
        faults: a.faults + b.faults,
        ..SimStats::default()
    }
}

fn row(preset: Preset) -> Row {
    let any = DeviceConstraints::UNCONSTRAINED;
    let nvme: Outcome<Work> = preset.run(SEED, any, NvmeWork).expect("NVMe run");
    let nic: Outcome<Work> = preset.run(SEED, any, NicWork).expect("NIC run");
    let s = add(nvme.stats, nic.stats);
    let mut surfaced = nvme.output.surfaced.clone();
    surfaced.extend(nic.output.surfaced.iter().cloned());
    Row {
        preset,
        commands: nvme.output.commands + nic.output.commands,
        bytes: s.bytes_read + s.bytes_written,
        syncs: s.syncs_for_device + s.syncs_for_cpu,
        lines: s.lines_cleaned + s.lines_invalidated,
        maps: s.maps,
        faults: s.faults,
        checker: nvme.checker.len() + nic.checker.len(),
        detector: nvme.reports.len() + nic.reports.len(),
        elapsed: nvme.output.elapsed + nic.output.elapsed,
        verified: nvme.output.verified + nic.output.verified,
        mismatches: nvme.output.mismatches + nic.output.mismatches,
        surfaced,
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    let started = Instant::now();
    println!();
    println!("dma-sim demo: reference drivers on mock hardware, dma-check on, seed {SEED}");
    println!(
        "  NVMe: bring-up, Identify, 8,192 x 4 KiB writes read back and verified, 256 x 64 KiB"
    );
    println!("        writes (PRP lists), queue depth 63, one injected DMA fault, flush");
    println!("  NIC:  8,192 frames of 64..1514 bytes through TX and RX rings (loopback), verified");
    println!();

    let rows: Vec<Row> = Preset::ALL.into_iter().map(row).collect();
    let header = [
        "preset",
        "commands",
        "bytes moved",
        "syncs",
        "lines maintained",
        "maps",
        "faults",
        "checker",
        "detector",
        "throughput",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            [
                r.preset.to_string(),
                grouped(r.commands),
                mib(r.bytes),
                grouped(r.syncs),
                grouped(r.lines),
                if r.preset == Preset::Iommu {
                    format!("{} (IOMMU)", grouped(r.maps))
                } else {
                    grouped(r.maps)
                },
                grouped(r.faults),
                r.checker.to_string(),
                r.detector.to_string(),
                format!("{} cmd/s", grouped((r.commands as f64 / secs) as u64)),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..10)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: [&str; 10]| {
        let mut s = String::from(" ");
        for (c, text) in cols.iter().enumerate() {
            if c == 0 {
                s += &format!(" {text:<w$} ", w = widths[c]);
            } else {
                s += &format!(" {text:>w$} ", w = widths[c]);
            }
        }
        println!("{}", s.trim_end());
    };
    line(header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(std::array::from_fn(|i| rule[i].as_str()));
    for r in &cells {
        line(std::array::from_fn(|i| r[i].as_str()));
    }
    println!();
    println!("  commands: NVMe I/O commands, plus one TX and one RX descriptor per frame");
    println!(
        "  bytes moved: device DMA (data, descriptors, completions); syncs: explicit sync calls;"
    );
    println!("  lines maintained: cache lines cleaned + invalidated by the backend (none when coherent);");
    println!(
        "  maps: streaming mappings (sg entries count one each); faults: refused device accesses;"
    );
    println!(
        "  checker: dma-check reports (API misuse, leaks); detector: sim coherency-bug reports"
    );
    for r in &rows {
        let verdict = if r.mismatches == 0 {
            format!("{} transfers verified byte for byte", grouped(r.verified))
        } else {
            format!("{} MISMATCHES", r.mismatches)
        };
        println!(
            "  {:<13} {verdict}; injected fault surfaced as: {}",
            r.preset.to_string() + ":",
            r.surfaced.join("; ")
        );
    }

    pitfall();
    println!();
    println!("demo finished in {:.2} s", started.elapsed().as_secs_f64());
}

/// Sends two 1000-byte frames through the copy-break TX path; returns
/// whether the wire carried them.
struct CopyBreak<const SYNCS: bool>;

impl<const SYNCS: bool> PresetRun for CopyBreak<SYNCS> {
    type Output = Result<bool, DriverError>;

    fn device_name(&self) -> &str {
        "eth0"
    }

    fn run<P: DmaMap + DmaAlloc>(
        self,
        sim: &Sim,
        dev: DeviceId,
        p: &Checked<P>,
    ) -> Result<bool, DriverError> {
        let nic = Nic::new(sim.bus(dev), NicConfig::default());
        let regs = nic.registers();
        let regs = dma_sim_presets::nic_registers(&regs);
        let mut tx = CopyBreakTx::<'_, _, _, SYNCS>::start(regs, p, Stepping::new(nic), 2, 1024)?;
        let frames = [[0x5au8; 1000], [0xa7u8; 1000]];
        for f in &frames {
            tx.send(f)?;
        }
        tx.wait_idle()?;
        let wire = tx.wait_mut().device_mut().take_transmitted();
        Ok(wire.len() == 2 && wire.iter().zip(&frames).all(|(w, f)| w[..] == f[..]))
    }
}

fn copy_break<const SYNCS: bool>(preset: Preset, seed: u64) -> Outcome<Result<bool, DriverError>> {
    preset
        .run(seed, DeviceConstraints::UNCONSTRAINED, CopyBreak::<SYNCS>)
        .expect("pitfall run")
}

fn pitfall() {
    println!();
    println!("The classic bug: a copy-break transmit path that copies each frame into a");
    println!(
        "pre-mapped buffer and forgets sync_for_device (examples/support/pitfall.rs: BuggyTx)"
    );
    println!();
    let wire = |ok: &Result<bool, DriverError>| match ok {
        Ok(true) => "frames intact on the wire".to_owned(),
        Ok(false) => "STALE BYTES on the wire".to_owned(),
        Err(e) => format!("driver error: {e}"),
    };
    let coherent = copy_break::<false>(Preset::Coherent, SEED);
    println!(
        "  coherent (x86-like):     {}, {} reports  <- this is how it ships",
        wire(&coherent.output),
        coherent.checker.len() + coherent.reports.len()
    );
    let caught = copy_break::<false>(Preset::NonCoherent, SEED);
    println!(
        "  non-coherent (Arm-like): {}, {} detector reports, {} checker reports; the first:",
        wire(&caught.output),
        caught.reports.len(),
        caught.checker.len()
    );
    if let Some(r) = caught.reports.first() {
        let text = r.to_string();
        let (what, fix) = text
            .split_once(": missing")
            .map_or((text.as_str(), ""), |(a, b)| (a, b));
        println!("      {what}");
        if !fix.is_empty() {
            println!("      -> missing{fix}");
        }
    }

    let start = Instant::now();
    let seeds = 1000u64;
    let caught_seeds = (0..seeds)
        .filter(|&s| {
            copy_break::<false>(Preset::NonCoherent, s)
                .reports
                .iter()
                .any(|r| r.kind == ReportKind::DeviceReadUncleaned)
        })
        .count();
    let mut fixed_reports = 0;
    let mut fixed_bad_wire = 0;
    for preset in Preset::ALL {
        for s in 0..seeds {
            let out = copy_break::<true>(preset, s);
            fixed_reports += out.checker.len() + out.reports.len();
            fixed_bad_wire += usize::from(!matches!(out.output, Ok(true)));
        }
    }
    println!();
    println!(
        "  buggy driver, {seeds} seeds on the non-coherent preset: caught {caught_seeds}/{seeds}"
    );
    println!(
        "  fixed twin (one added line: staging.sync_range_for_device(0, len)), {seeds} seeds x 3 presets: {fixed_reports} reports, {fixed_bad_wire} bad frames"
    );
    println!(
        "  ({} runs in {:.2} s)",
        seeds * 4,
        start.elapsed().as_secs_f64()
    );
}
