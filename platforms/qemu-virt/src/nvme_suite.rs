//! The NVMe checks every board image runs through the family's reference
//! block driver, `dma_drivers::nvme::NvmeBlockDriver`: Identify, writes
//! read back through each PRP shape (PRP1 alone, PRP2 as a data pointer,
//! one list, chained list pages) and through an SGL, both queues wrapping
//! many times, refused requests, flush and shutdown. Nothing here knows the architecture: a
//! board passes its controller, a platform (its cache policy and address
//! translation) and a [`Wait`] on its clock, and the lines go to its
//! console in the [`report`](crate::report) protocol, with `DISK` lines
//! for every area written, so the host checks the disk image as well.
//!
//! The checks are judged by the driver's counters
//! ([`NvmeDriverStats::prp_lists`]): a transfer of one block needs no
//! list, two pages need PRP2 and no list, 64 KiB one list, and more than
//! 512 pages chain a second list page. The SGL check needs Identify
//! Controller's SGLS to offer SGLs (QEMU's NVMe does), and both its
//! commands to go by SGL ([`NvmeDriverStats::sgl_commands`]); a buffer
//! in one allocation is one device segment, so it is one Data Block in
//! SGL1 (the sim's presets chain segments).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use dma_core::{DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::nvme::{
    prp_pools, Controller, IoCompletion, IoOp, NvmeBlockDriver, NvmeDriverConfig, NvmeDriverStats,
    SglUse,
};
use dma_drivers::{DriverError, Wait};

use crate::report::{fill_pattern, pattern_mismatch, Reporter};

/// The logical block size the checks expect (QEMU's default LBA format).
pub const BLOCK: usize = 512;
/// The memory page size PRPs describe.
const PAGE: usize = 4096;
/// A transfer that needs one PRP list: 16 pages, PRP1 and 15 list entries.
const ONE_LIST: usize = 64 << 10;

/// What a board's run of the checks looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuiteConfig {
    /// Prefix of every test name (`<prefix>.<test>`), no spaces.
    pub prefix: &'static str,
    /// The PCI vendor id Identify Controller must report.
    pub vendor: u16,
    /// First logical block of the area the checks write.
    pub base_lba: u64,
    /// Pattern seed family: each check adds its own number.
    pub seed: u32,
    /// The longest transfer: more than 512 pages chains PRP list pages.
    /// It must fit the controller's MDTS (QEMU: `mdts=10`, 4 MiB).
    pub long_transfer: usize,
    /// One-block commands in each direction of the queue-wrap check.
    pub wrap_commands: u32,
    /// Queue sizes: different SQ and CQ sizes wrap at different moments.
    pub queues: NvmeDriverConfig,
}

impl SuiteConfig {
    /// QEMU's NVMe (`-device nvme,...,mdts=10`): 4 MiB transfers, 160
    /// commands each way through a 32-entry SQ and a 24-entry CQ.
    pub const fn qemu(prefix: &'static str, base_lba: u64, seed: u32) -> Self {
        Self {
            prefix,
            vendor: 0x1b36,
            base_lba,
            seed,
            long_transfer: 4 << 20,
            wrap_commands: 160,
            queues: NvmeDriverConfig {
                admin_entries: 8,
                io_sq_entries: 32,
                io_cq_entries: 24,
                sgl: SglUse::Never,
            },
        }
    }

    /// Blocks the checks write from [`base_lba`](Self::base_lba).
    pub const fn area_blocks(&self) -> u64 {
        self.sgl_lba() - self.base_lba + (ONE_LIST / BLOCK) as u64
    }

    /// Where the queue-wrap check writes: after the long transfer.
    const fn wrap_lba(&self) -> u64 {
        self.long_lba() + (self.long_transfer / BLOCK) as u64
    }

    /// Where the SGL check writes: after the queue-wrap area.
    const fn sgl_lba(&self) -> u64 {
        self.wrap_lba() + self.wrap_commands as u64
    }

    /// Where the long transfer goes: after the short ones (1 + 16 + 128
    /// blocks, rounded up).
    const fn long_lba(&self) -> u64 {
        self.base_lba + 256
    }
}

type Outcome = Result<String, String>;

fn err(what: &str) -> impl Fn(DriverError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Runs every check on the controller `ctrl` through `platform`, waiting
/// with `wait`, and reports each on `r`. The controller is left disabled.
pub fn run<P, W, O>(
    r: &mut Reporter<O>,
    ctrl: &Controller<'_>,
    platform: P,
    wait: W,
    config: &SuiteConfig,
) where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    O: Write,
{
    let t = |test: &str| format!("{}.{test}", config.prefix);
    let pools = match prp_pools(platform.clone()) {
        Ok(p) => p,
        Err(e) => {
            r.outcome::<&str, _>(&t("identify"), Err(format!("PRP pools: {e}")));
            return;
        }
    };
    let started = NvmeBlockDriver::<_, _>::start(ctrl, platform, &pools, wait, config.queues);
    let mut disk = match started {
        Ok(d) => d,
        Err(e) => {
            r.outcome::<&str, _>(&t("identify"), Err(format!("bring-up: {e}")));
            return;
        }
    };
    if !r.outcome(&t("identify"), identify(&disk, config)) {
        return;
    }

    let base = config.base_lba;
    let seed = config.seed;
    let shapes: [(&str, u64, usize, usize, u64, u64); 4] = [
        // name, lba, length, alignment, list blocks per command (min, max)
        ("rw_1_block", base, BLOCK, BLOCK, 0, 0),
        ("rw_2_pages_prp2", base + 8, 2 * PAGE, PAGE, 0, 0),
        ("rw_prp_list", base + 32, ONE_LIST, PAGE, 1, 1),
        (
            "rw_chained_prp_list",
            config.long_lba(),
            config.long_transfer,
            PAGE,
            2,
            u64::MAX,
        ),
    ];
    for (i, (name, lba, len, align, min, max)) in shapes.into_iter().enumerate() {
        let seed = seed + 1 + i as u32;
        let outcome = round_trip(&mut disk, lba, len, align, seed, (min, max));
        if outcome.is_ok() {
            r.disk(lba, (len / BLOCK) as u64, seed);
        }
        r.outcome(&t(name), outcome);
    }

    let sgl_seed = seed + 9;
    let sgl = sgl_round_trip(&mut disk, config.sgl_lba(), sgl_seed);
    if sgl.is_ok() {
        r.disk(config.sgl_lba(), (ONE_LIST / BLOCK) as u64, sgl_seed);
    }
    r.outcome(&t("rw_sgl"), sgl);

    let wrap_lba = config.wrap_lba();
    let wrap_seed = seed + 8;
    let wrapped = wrap(&mut disk, wrap_lba, wrap_seed, config);
    if wrapped.is_ok() {
        r.disk(wrap_lba, u64::from(config.wrap_commands), wrap_seed);
    }
    r.outcome(&t("queue_wrap"), wrapped);
    r.outcome(&t("refuses_bad_io"), refusals(&mut disk));
    r.outcome(
        &t("flush"),
        disk.flush()
            .map(|()| String::from("volatile write cache flushed"))
            .map_err(err("flush")),
    );
    let stats = disk.stats();
    r.outcome(
        &t("shutdown"),
        disk.shutdown()
            .map(|()| summary(&stats))
            .map_err(err("shutdown")),
    );
}

fn identify<P, W>(disk: &NvmeBlockDriver<'_, P, W>, config: &SuiteConfig) -> Outcome
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let id = disk.identity();
    let end = config.base_lba + config.area_blocks();
    if id.vendor != config.vendor || id.block_size as usize != BLOCK {
        Err(format!(
            "VID {:#06x} (expected {:#06x}), {}-byte blocks (expected {BLOCK})",
            id.vendor, config.vendor, id.block_size
        ))
    } else if id.blocks < end {
        Err(format!(
            "namespace of {} blocks ends before block {end}",
            id.blocks
        ))
    } else {
        Ok(format!(
            "{:?} VID {:#06x} MDTS {} ({} KiB), namespace {} x {} B",
            id.model,
            id.vendor,
            id.mdts,
            id.max_transfer() / 1024,
            id.blocks,
            id.block_size
        ))
    }
}

/// Writes pattern `seed` over `len` bytes at `lba` from a buffer aligned to
/// `align`, reads it back into another, compares, and checks the PRP list
/// blocks each command used against `lists` (min, max).
fn round_trip<P, W>(
    disk: &mut NvmeBlockDriver<'_, P, W>,
    lba: u64,
    len: usize,
    align: usize,
    seed: u32,
    lists: (u64, u64),
) -> Outcome
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let max = disk.identity().max_transfer();
    if len > max {
        return Err(format!(
            "MDTS allows {max} bytes, the check needs {len} (QEMU: -device nvme,mdts=10)"
        ));
    }
    let buffer = |what| DmaBuf::new(len, align).map_err(|e| format!("{what} buffer: {e}"));
    let mut out = buffer("write")?;
    fill_pattern(seed, 0, &mut out);
    let before = disk.stats().prp_lists;
    disk.write(lba, out)
        .map_err(|refused| format!("write: {}", refused.error))?;
    let written = disk.stats().prp_lists - before;
    let back = disk
        .read(lba, buffer("read")?)
        .map_err(|refused| format!("read: {}", refused.error))?;
    let read = disk.stats().prp_lists - written - before;
    if let Some(m) = pattern_mismatch(&back, seed, 0, "the driver") {
        return Err(m);
    }
    let (min, max) = lists;
    for (dir, used) in [("write", written), ("read", read)] {
        if used < min || used > max {
            return Err(format!(
                "the {dir} used {used} PRP list blocks, expected {min}..={max}"
            ));
        }
    }
    Ok(format!(
        "{len} B at lba {lba}: {written} PRP list block(s) per command"
    ))
}

/// A write and a read of [`ONE_LIST`] bytes at `lba` with SGLs (PSDT
/// 01b), checked as [`round_trip`] checks PRPs, both commands counted as
/// SGL commands and no PRP list used. Fails, showing SGLS, on a
/// controller that offers no SGLs.
fn sgl_round_trip<P, W>(disk: &mut NvmeBlockDriver<'_, P, W>, lba: u64, seed: u32) -> Outcome
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let sgls = disk.identity().sgls;
    if !disk.identity().sgl().supported() {
        return Err(format!(
            "Identify Controller SGLS is {sgls:#010x}: the controller takes no SGLs"
        ));
    }
    let before = disk.stats();
    disk.set_sgl(SglUse::Always);
    let done = round_trip(disk, lba, ONE_LIST, BLOCK, seed, (0, 0));
    disk.set_sgl(SglUse::Never);
    done?;
    let after = disk.stats();
    let (sgl, segments) = (
        after.sgl_commands - before.sgl_commands,
        after.sgl_segments - before.sgl_segments,
    );
    if sgl != 2 {
        return Err(format!("{sgl} of the 2 commands went by SGL"));
    }
    Ok(format!(
        "SGLS {sgls:#010x}: {ONE_LIST} B at lba {lba} written and read back by SGL, \
         {segments} SGL segment block(s)"
    ))
}

/// What one queued command was for: its command id and block index.
type Tag = (u16, u64);

/// `wrap_commands` one-block writes, then as many reads, queued as deep as
/// the queues allow, one doorbell per batch, reaped as they complete, so
/// the SQ and the CQ each wrap several times. Block `i` holds pattern bytes
/// `i * 512..` of `seed`, so a read landing in the wrong block is caught.
fn wrap<P, W>(
    disk: &mut NvmeBlockDriver<'_, P, W>,
    lba: u64,
    seed: u32,
    config: &SuiteConfig,
) -> Outcome
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let n = u64::from(config.wrap_commands);
    let write = |disk: &mut NvmeBlockDriver<'_, P, W>, i: u64| {
        let mut buf = DmaBuf::new(BLOCK, BLOCK).map_err(|e| format!("buffer: {e}"))?;
        fill_pattern(seed, i * BLOCK as u64, &mut buf);
        disk.queue_write(lba + i, buf)
            .map_err(|refused| format!("queue write {i}: {}", refused.error))
    };
    let (w_rings, w_deep) = pump(disk, n, write, |_, _| Ok(()))?;
    let read = |disk: &mut NvmeBlockDriver<'_, P, W>, i: u64| {
        let buf = DmaBuf::new(BLOCK, BLOCK).map_err(|e| format!("buffer: {e}"))?;
        disk.queue_read(lba + i, buf)
            .map_err(|refused| format!("queue read {i}: {}", refused.error))
    };
    let check =
        |i: u64, data: &[u8]| match pattern_mismatch(data, seed, i * BLOCK as u64, "the driver") {
            None => Ok(()),
            Some(m) => Err(format!("block {}: {m}", lba + i)),
        };
    let (r_rings, r_deep) = pump(disk, n, read, check)?;
    let total = 2 * n;
    let q = config.queues;
    Ok(format!(
        "{total} commands in {} doorbells, up to {} in flight: SQ ({}) wrapped {} times, \
         CQ ({}) {} times",
        w_rings + r_rings,
        w_deep.max(r_deep),
        q.io_sq_entries,
        total / u64::from(q.io_sq_entries),
        q.io_cq_entries,
        total / u64::from(q.io_cq_entries)
    ))
}

/// Runs `n` commands made by `queue` (given their index): queue while
/// there is room, one doorbell per batch, then reap everything completed;
/// each successful completion's data goes to `check`. Returns the
/// doorbells rung and the deepest the queue got.
fn pump<P, W>(
    disk: &mut NvmeBlockDriver<'_, P, W>,
    n: u64,
    mut queue: impl FnMut(&mut NvmeBlockDriver<'_, P, W>, u64) -> Result<u16, String>,
    mut check: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<(u32, u32), String>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let (mut next, mut done, mut rings, mut deepest) = (0u64, 0u64, 0u32, 0u32);
    let mut tags: Vec<Tag> = Vec::new();
    while done < n {
        while next < n && disk.can_queue() {
            tags.push((queue(disk, next)?, next));
            next += 1;
        }
        deepest = deepest.max(disk.in_flight());
        rings += u32::from(disk.submit());
        let mut reap = |c: IoCompletion<DmaBuf>| -> Result<(), String> {
            let at = tags
                .iter()
                .position(|&(cid, _)| cid == c.cid)
                .ok_or(format!("completion for unknown command id {}", c.cid))?;
            let (_, i) = tags.swap_remove(at);
            c.result.map_err(err("completion"))?;
            let data = c.buffer.ok_or("the buffer did not come back")?;
            match c.op {
                IoOp::Read => check(i, &data),
                _ => Ok(()),
            }
        };
        reap(disk.wait().map_err(err("wait"))?)?;
        done += 1;
        while let Some(c) = disk.poll().map_err(err("poll"))? {
            reap(c)?;
            done += 1;
        }
    }
    Ok((rings, deepest))
}

/// Requests the driver must refuse before they are queued, each handing
/// the buffer back untouched: not a whole block, and past the end of the
/// namespace.
fn refusals<P, W>(disk: &mut NvmeBlockDriver<'_, P, W>) -> Outcome
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let blocks = disk.identity().blocks;
    let (commands, in_flight) = (disk.stats().commands, disk.in_flight());
    // Whole 128-byte cache lines but not whole blocks: a non-coherent
    // platform maps it for the device, so the driver's own check refuses it.
    let cases = [
        (0, BLOCK + 128, "not a whole number of blocks"),
        (blocks, BLOCK, "past the end of the namespace"),
    ];
    let mut seen = Vec::new();
    for (lba, len, why) in cases {
        let mut buf = DmaBuf::new(len, BLOCK).map_err(|e| format!("buffer: {e}"))?;
        buf.fill(0x5a);
        match disk.queue_read(lba, buf) {
            Ok(cid) => return Err(format!("a read {why} was queued as command {cid}")),
            Err(refused) => {
                let DriverError::InvalidArgument(message) = refused.error else {
                    return Err(format!("a read {why}: {}", refused.error));
                };
                let back = refused
                    .buffer
                    .ok_or(format!("a read {why} lost its buffer"))?;
                if back.len() != len || back.iter().any(|&b| b != 0x5a) {
                    return Err(format!("a read {why} changed its buffer"));
                }
                seen.push(message);
            }
        }
    }
    if disk.stats().commands != commands || disk.in_flight() != in_flight {
        return Err(String::from("a refused request reached the controller"));
    }
    Ok(format!("refused with the buffer back: {}", seen.join("; ")))
}

fn summary(s: &NvmeDriverStats) -> String {
    format!(
        "I/O queues deleted, controller disabled; {} reads ({} B), {} writes ({} B), \
         {} flushes, {} PRP list blocks, {} SGL commands, {} errors",
        s.reads,
        s.bytes_read,
        s.writes,
        s.bytes_written,
        s.flushes,
        s.prp_lists,
        s.sgl_commands,
        s.errors
    )
}
