// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
//! Submit + complete throughput with the device on the other core: our
//! NVMe queue pair (64-byte commands, 16-byte phase-tagged completions,
//! ownership and validation included) against rtrb and crossbeam's
//! ArrayQueue moving the same 64-byte requests (`NvmeCommand`) and 16-byte
//! completions (`NvmeCompletion`) between two threads. One doorbell per
//! entry, and one per batch of 32.
//!
//! Every peer builds each request as a value from a template and folds
//! each completion into a checksum it hands to `black_box` once per batch;
//! ours submits through a batch (`NvmeQueuePair::batch`) and reaps with
//! `poll_many` (every posted entry in one call, as a driver's completion
//! handler does) and writes the CQ head doorbell once per batch.
//!
//! `DMA_BENCH_ITERS=N` instead runs N round trips with the device's step
//! inline on one thread, for instruction counts under callgrind
//! ([`inline_device`]; docs/performance.md has the method).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use dma_coherence::barrier::{after_completion_flag, before_doorbell, publish_descriptors};
use dma_coherence::HardwareCoherent;
use dma_core::{Coherent, DeviceConstraints, HostMemory};
use dma_direct::DirectPlatform;
use dma_ring::nvme::{
    opcode, NvmeCommand, NvmeCompletion, NvmeDoorbells, NvmeQueueConfig, NvmeQueuePair, NvmeStatus,
};
use dma_ring::{AtomicDoorbell, Doorbell, MemoryView, RingMemory, Slot};

const DEPTH: u32 = 64;
const BATCHES: [u32; 2] = [1, 32];

type Platform = DirectPlatform<HostMemory, HardwareCoherent>;
type Qp =
    NvmeQueuePair<Coherent<[u64], &'static Platform>, Arc<AtomicDoorbell>, u32, Vec<Slot<u32>>>;

/// A spinning device thread, stopped on drop.
struct Device {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Device {
    fn spawn(mut step: impl FnMut() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                step();
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// How the modelled controller makes its completions visible.
#[derive(Clone, Copy)]
enum Posting {
    /// Each entry's payload, a write barrier, then its phase tag: what a
    /// CPU model must do one entry at a time.
    PerEntry,
    /// Every payload of the run first, one write barrier, then the run's
    /// tags back to back: the driver never sees a tag whose line is still
    /// being filled for long, as with a controller that writes each
    /// 16-byte entry in one posted write.
    WholeRun,
}

/// The controller: consume the SQ, post phase-tagged completions.
fn nvme_device(
    sq: MemoryView,
    cq: MemoryView,
    sq_db: Arc<AtomicDoorbell>,
    cq_db: Arc<AtomicDoorbell>,
    posting: Posting,
) -> impl FnMut() + Send {
    let (mut sq_head, mut cq_tail, mut phase) = (0u32, 0u32, true);
    let mut tags = [(0usize, 0u16); DEPTH as usize];
    move || {
        let tail = sq_db.value();
        let cq_head = cq_db.value();
        if tail == sq_head {
            std::hint::spin_loop();
            return;
        }
        after_completion_flag();
        let mut run = 0;
        while sq_head != tail && (cq_tail + 1) % DEPTH != cq_head {
            let base = sq_head as usize * 64;
            // SAFETY: inside the SQ, which outlives the device thread.
            let words: [u64; 8] = std::array::from_fn(|i| unsafe { sq.read_u64(base + 8 * i) });
            let cmd = NvmeCommand::from_words(words);
            sq_head = (sq_head + 1) % DEPTH;
            let done = NvmeCompletion {
                dw0: cmd.cdw10[0],
                dw1: 0,
                sq_head: sq_head as u16,
                sq_id: 1,
                cid: cmd.cid(),
                status: NvmeStatus::SUCCESS.with_phase(phase),
            };
            let [w0, w1] = done.to_words();
            let cbase = cq_tail as usize * 16;
            // SAFETY: cbase + 16 <= the CQ's DEPTH * 16 bytes, aligned.
            unsafe {
                cq.write_u64(cbase, w0);
                cq.write_u32(cbase + 8, w1 as u32);
                cq.write_u16(cbase + 12, done.cid);
            }
            match posting {
                Posting::PerEntry => {
                    publish_descriptors();
                    // SAFETY: the status word of the entry written above.
                    unsafe { cq.store_flag(cbase + 14, done.status.0) };
                }
                Posting::WholeRun => {
                    tags[run] = (cbase + 14, done.status.0);
                    run += 1;
                }
            }
            cq_tail += 1;
            if cq_tail == DEPTH {
                cq_tail = 0;
                phase = !phase;
            }
        }
        if run > 0 {
            publish_descriptors();
            for &(offset, status) in &tags[..run] {
                // SAFETY: the status word of an entry written in this run.
                unsafe { cq.store_flag(offset, status) };
            }
        }
    }
}

/// The request every peer moves: a 64-byte NVMe read.
fn request() -> NvmeCommand {
    let mut cmd = NvmeCommand::new(opcode::READ);
    cmd.prp1 = 0x1000;
    cmd
}

/// Request `k` of a batch, built as a value: a driver fills a fresh
/// command per request (storing into one long-lived command and copying it
/// out would stall every peer on store-to-load forwarding instead).
#[inline(always)]
fn numbered(mut cmd: NvmeCommand, k: u32) -> NvmeCommand {
    cmd.cdw10[0] = k;
    cmd
}

/// What the bare ring reaches directly: the queue pair's memory and its
/// doorbells.
struct Views {
    sq: MemoryView,
    cq: MemoryView,
    sq_db: Arc<AtomicDoorbell>,
    cq_db: Arc<AtomicDoorbell>,
}

/// A queue pair of `DEPTH` entries on the x86-coherent platform, with the
/// device model running on its own thread (it stops when the returned
/// `Device` is dropped, which the caller does before dropping the pair).
fn queue_pair(posting: Posting) -> (Qp, Device, Views) {
    let (qp, step, views) = queue_pair_with_step(posting);
    (qp, Device::spawn(step), views)
}

/// [`queue_pair`] with the device model handed back as a step function
/// instead of running on its own thread (the caller runs it inline).
fn queue_pair_with_step(posting: Posting) -> (Qp, impl FnMut() + Send + 'static, Views) {
    let platform: &'static Platform = Box::leak(Box::new(DirectPlatform::x86_coherent(
        HostMemory,
        DeviceConstraints::UNCONSTRAINED,
    )));
    let (sq_db, cq_db) = (
        Arc::new(AtomicDoorbell::default()),
        Arc::new(AtomicDoorbell::default()),
    );
    let config = NvmeQueueConfig {
        qid: 1,
        sq_size: DEPTH,
        cq_size: DEPTH,
    };
    let doorbells = NvmeDoorbells {
        sq_tail: sq_db.clone(),
        cq_head: cq_db.clone(),
    };
    let qp = Qp::allocate(platform, config, doorbells).unwrap();
    // SAFETY: the memory lives as long as `qp`, and every caller drops the
    // device step (stopping its thread, if it has one) before `qp`.
    let (sq, cq) = unsafe {
        (
            MemoryView::of(qp.sq_memory()),
            MemoryView::of(qp.cq_memory()),
        )
    };
    let step = nvme_device(sq, cq, sq_db.clone(), cq_db.clone(), posting);
    let views = Views {
        sq,
        cq,
        sq_db,
        cq_db,
    };
    (qp, step, views)
}

/// One round trip of `batch` requests through our queue pair: a batch
/// submit, one doorbell, `poll_many` until all are back, one CQ head
/// doorbell. `idle` runs whenever nothing was posted (a spin hint with the
/// device on its own thread, the device's step when it runs inline).
#[inline(always)]
fn ours_round_trip(qp: &mut Qp, template: NvmeCommand, batch: u32, mut idle: impl FnMut()) {
    let mut submit = qp.batch();
    for k in 0..batch {
        // The token is the request's owned "buffer".
        submit.push(numbered(template, k), k).unwrap();
    }
    submit.ring_doorbell();
    let (mut got, mut sum) = (0, 0u32);
    while got < batch {
        let reaped = qp
            .poll_many(batch - got, |done| sum = sum.wrapping_add(done.buffers))
            .unwrap();
        if reaped == 0 {
            idle();
        }
        got += reaped;
    }
    qp.release_completions();
    black_box(sum);
}

fn ours(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    batch: u32,
    posting: Posting,
) {
    let (mut qp, device, _) = queue_pair(posting);
    let name = match posting {
        Posting::PerEntry => "dma-ring nvme",
        Posting::WholeRun => "dma-ring nvme, whole-run device",
    };
    let template = request();
    group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                ours_round_trip(&mut qp, template, batch, std::hint::spin_loop);
            }
            start.elapsed()
        })
    });
    drop(device);
}

/// A phase-tag queue pair written the simplest way: commands copied into
/// the SQ, one doorbell, completions found by their phase tags and folded
/// in, no ownership or validation.
struct BareRing {
    views: Views,
    sq_tail: u32,
    cq_head: u32,
    phase: bool,
}

impl BareRing {
    #[inline(always)]
    fn round_trip(&mut self, template: NvmeCommand, batch: u32, mut idle: impl FnMut()) {
        let Views {
            sq,
            cq,
            sq_db,
            cq_db,
        } = &self.views;
        for k in 0..batch {
            let mut cmd = numbered(template, k);
            cmd.set_cid(k as u16);
            // SAFETY: sq_tail < DEPTH, so the 64 bytes lie in the SQ;
            // the device reads them only after the doorbell.
            unsafe { sq.write_u64s(self.sq_tail as usize * 64, &cmd.to_words()) };
            self.sq_tail = (self.sq_tail + 1) % DEPTH;
        }
        before_doorbell();
        sq_db.ring(self.sq_tail);
        let (mut got, mut sum) = (0, 0u32);
        while got < batch {
            let base = self.cq_head as usize * 16;
            // SAFETY: cq_head < DEPTH, the status word of an entry.
            let status = NvmeStatus(unsafe { cq.load_flag(base + 14) });
            if status.phase() != self.phase {
                idle();
                continue;
            }
            after_completion_flag();
            // SAFETY: the entry's first word, posted before its tag.
            sum = sum.wrapping_add(unsafe { cq.read_u32(base) });
            got += 1;
            self.cq_head += 1;
            if self.cq_head == DEPTH {
                self.cq_head = 0;
                self.phase = !self.phase;
            }
        }
        before_doorbell();
        cq_db.ring(self.cq_head);
        black_box(sum);
    }
}

/// The bare ring against the same device as ours: what it costs over rtrb
/// is the protocol's; what ours costs over it is ours.
fn bare_phase_tags(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    batch: u32,
) {
    // Only the queue pair's memory and doorbells are used; its methods are
    // not called, but it must outlive the device (dropped explicitly below).
    let (_qp, device, views) = queue_pair(Posting::PerEntry);
    let mut ring = BareRing {
        views,
        sq_tail: 0,
        cq_head: 0,
        phase: true,
    };
    let template = request();
    group.bench_with_input(
        BenchmarkId::new("bare phase-tag ring", batch),
        &batch,
        |b, &batch| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    ring.round_trip(template, batch, std::hint::spin_loop);
                }
                start.elapsed()
            })
        },
    );
    drop(device);
}

type Requests = (rtrb::Producer<NvmeCommand>, rtrb::Consumer<NvmeCompletion>);

/// Two rtrb queues of `DEPTH` and the device's step: move every request
/// found to a completion carrying its first command dword.
fn rtrb_pair() -> (Requests, impl FnMut() + Send + 'static) {
    let (req_tx, mut req_rx) = rtrb::RingBuffer::<NvmeCommand>::new(DEPTH as usize);
    let (mut cpl_tx, cpl_rx) = rtrb::RingBuffer::<NvmeCompletion>::new(DEPTH as usize);
    let step = move || {
        let n = req_rx.slots().min(cpl_tx.slots());
        if n == 0 {
            std::hint::spin_loop();
            return;
        }
        let Ok(chunk) = req_rx.read_chunk(n) else {
            return;
        };
        let mut out = [NvmeCompletion::default(); DEPTH as usize];
        for (o, r) in out.iter_mut().zip(chunk) {
            o.dw0 = r.cdw10[0];
        }
        if let Ok(w) = cpl_tx.write_chunk_uninit(n) {
            w.fill_from_iter(out.into_iter().take(n));
        }
    };
    ((req_tx, cpl_rx), step)
}

/// One round trip of `batch` requests through two rtrb queues.
#[inline(always)]
fn rtrb_round_trip(
    (req_tx, cpl_rx): &mut Requests,
    template: NvmeCommand,
    batch: u32,
    mut idle: impl FnMut(),
) {
    let w = loop {
        if let Ok(w) = req_tx.write_chunk_uninit(batch as usize) {
            break w;
        }
        idle();
    };
    w.fill_from_iter((0..batch).map(|k| numbered(template, k)));
    let (mut got, mut sum) = (0, 0u32);
    while got < batch {
        match cpl_rx.pop() {
            Ok(c) => {
                sum = sum.wrapping_add(c.dw0);
                got += 1;
            }
            Err(_) => idle(),
        }
    }
    black_box(sum);
}

fn peer_rtrb(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    batch: u32,
) {
    let (mut queues, step) = rtrb_pair();
    let device = Device::spawn(step);
    let template = request();
    group.bench_with_input(BenchmarkId::new("rtrb", batch), &batch, |b, &batch| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rtrb_round_trip(&mut queues, template, batch, std::hint::spin_loop);
            }
            start.elapsed()
        })
    });
    drop(device);
}

fn peer_array_queue(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    batch: u32,
) {
    let req = Arc::new(ArrayQueue::<NvmeCommand>::new(DEPTH as usize));
    let cpl = Arc::new(ArrayQueue::<NvmeCompletion>::new(DEPTH as usize));
    let device = {
        let (req, cpl) = (req.clone(), cpl.clone());
        Device::spawn(move || match req.pop() {
            Some(r) => {
                let c = NvmeCompletion {
                    dw0: r.cdw10[0],
                    ..Default::default()
                };
                while cpl.push(c).is_err() {
                    std::hint::spin_loop();
                }
            }
            None => std::hint::spin_loop(),
        })
    };
    let template = request();
    group.bench_with_input(
        BenchmarkId::new("crossbeam ArrayQueue", batch),
        &batch,
        |b, &batch| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for k in 0..batch {
                        while req.push(numbered(template, k)).is_err() {
                            std::hint::spin_loop();
                        }
                    }
                    let (mut got, mut sum) = (0, 0u32);
                    while got < batch {
                        match cpl.pop() {
                            Some(c) => {
                                sum = sum.wrapping_add(c.dw0);
                                got += 1;
                            }
                            None => std::hint::spin_loop(),
                        }
                    }
                    black_box(sum);
                }
                start.elapsed()
            })
        },
    );
    drop(device);
}

/// `DMA_BENCH_ITERS=N` round trips of `DMA_BENCH_BATCH` (default 32)
/// requests with the device's step run inline on this thread, for an
/// instruction count under callgrind: `DMA_BENCH_CASE` `ours` (default),
/// `bare` or `rtrb`. Counts the driver's per-entry work and the device
/// model's alike (the same model for ours and the bare ring); no cache
/// line crosses a core, so it shows instructions, not transfers.
fn inline_device(iters: u64) {
    let batch = std::env::var("DMA_BENCH_BATCH")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(32);
    let case = std::env::var("DMA_BENCH_CASE").unwrap_or_else(|_| "ours".into());
    let template = request();
    match case.as_str() {
        "ours" => {
            let (mut qp, mut step, _) = queue_pair_with_step(Posting::PerEntry);
            for _ in 0..iters {
                ours_round_trip(&mut qp, template, batch, &mut step);
            }
            drop(step);
        }
        "bare" => {
            let (_qp, mut step, views) = queue_pair_with_step(Posting::PerEntry);
            let mut ring = BareRing {
                views,
                sq_tail: 0,
                cq_head: 0,
                phase: true,
            };
            for _ in 0..iters {
                ring.round_trip(template, batch, &mut step);
            }
            drop(step);
        }
        "rtrb" => {
            let (mut queues, mut step) = rtrb_pair();
            for _ in 0..iters {
                rtrb_round_trip(&mut queues, template, batch, &mut step);
            }
        }
        other => panic!("DMA_BENCH_CASE={other}: use ours, bare or rtrb"),
    }
}

fn roundtrip(c: &mut Criterion) {
    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("submit_complete_64B/batch_{batch}"));
        group.throughput(Throughput::Elements(batch.into()));
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.sample_size(20);
        ours(&mut group, batch, Posting::PerEntry);
        ours(&mut group, batch, Posting::WholeRun);
        bare_phase_tags(&mut group, batch);
        peer_rtrb(&mut group, batch);
        peer_array_queue(&mut group, batch);
        group.finish();
    }
}

criterion_group!(benches, roundtrip);

/// Round trips per timed chunk in [`wall_clock`].
const CHUNK: u32 = 100;

/// The three cases [`wall_clock`] compares, in the order of its columns.
const WALL_CASES: [&str; 3] = ["ours", "bare", "rtrb"];

/// `DMA_BENCH_WALL=N`: ours, the bare ring and rtrb at batch 1 and 32,
/// interleaved. One device thread serves all three (it runs the step of
/// the case being timed), and each round times one chunk of [`CHUNK`]
/// round trips per case, in a rotating order, after N rounds to warm up.
/// The VM this was written on moves between states where every case runs
/// 4x slower; timing cases minutes or even seconds apart compared the
/// states, not the rings. Interleaved, each round's three chunks share a
/// state, so each round gives a ratio. Prints, per case, the fastest and
/// the median chunk, and the median of the rounds' ratios to rtrb and to
/// the bare ring.
fn wall_clock(rounds: usize) {
    let rounds = rounds.max(1);
    let template = request();
    for batch in BATCHES {
        let (mut qp, ours_step, _) = queue_pair_with_step(Posting::PerEntry);
        let (_bare_qp, bare_step, views) = queue_pair_with_step(Posting::PerEntry);
        let mut ring = BareRing {
            views,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
        };
        let (mut queues, rtrb_step) = rtrb_pair();
        let current = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let device = {
            let current = current.clone();
            let (mut ours_step, mut bare_step, mut rtrb_step) = (ours_step, bare_step, rtrb_step);
            Device::spawn(move || match current.load(Ordering::Relaxed) {
                0 => ours_step(),
                1 => bare_step(),
                _ => rtrb_step(),
            })
        };
        let mut times = [const { Vec::new() }; 3];
        for round in 0..2 * rounds {
            for turn in 0..3 {
                let case = (round + turn) % 3;
                current.store(case, Ordering::Relaxed);
                let start = Instant::now();
                for _ in 0..CHUNK {
                    match case {
                        0 => ours_round_trip(&mut qp, template, batch, std::hint::spin_loop),
                        1 => ring.round_trip(template, batch, std::hint::spin_loop),
                        _ => rtrb_round_trip(&mut queues, template, batch, std::hint::spin_loop),
                    }
                }
                let ns = start.elapsed().as_nanos() as f64 / f64::from(CHUNK);
                if round >= rounds {
                    times[case].push(ns);
                }
            }
        }
        drop(device);
        let fastest_and_median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[0], v[v.len() / 2])
        };
        let ratio_to = |case: usize, peer: usize| {
            let ratios = times[case].iter().zip(&times[peer]).map(|(t, p)| t / p);
            fastest_and_median(ratios.collect()).1
        };
        for (case, name) in WALL_CASES.iter().enumerate() {
            let (fastest, median) = fastest_and_median(times[case].clone());
            println!(
                "batch {batch:2} {name:4}: fastest {fastest:7.1} ns, median {median:7.1} ns per round trip; median round ratio {:.3} to rtrb, {:.3} to bare",
                ratio_to(case, 2),
                ratio_to(case, 1),
            );
        }
    }
}

fn main() {
    let knob = |name| std::env::var(name).ok().and_then(|n| n.parse().ok());
    if let Some(iters) = knob("DMA_BENCH_ITERS") {
        inline_device(iters);
        return;
    }
    if let Some(chunks) = knob("DMA_BENCH_WALL") {
        wall_clock(chunks as usize);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
