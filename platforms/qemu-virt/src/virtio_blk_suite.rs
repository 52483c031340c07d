//! The virtio-blk checks through `dma-drivers`' [`VirtioBlk`], over any
//! [`Transport`]: bring-up with the features the run expects negotiated,
//! a read of data the host prepared on the disk (checked here), writes of
//! several shapes read back (and claimed with `DISK` lines, so the host
//! checks the disk image too), enough requests to wrap a small queue many
//! times, refused requests, flush and shutdown. Nothing here knows the
//! architecture or the transport.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use dma_core::{DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::virtio::spec::Features;
use dma_drivers::virtio::transport::{QueueLayout, Transport, VirtioOptions};
use dma_drivers::virtio::VirtioBlk;
use dma_drivers::{DriverError, Refused, Wait};

use crate::report::{fill_pattern, pattern_byte, pattern_mismatch, Reporter, PREPARED};

/// A sector.
pub const SECTOR: usize = 512;

/// One run of the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkRun {
    /// Prefix of every test name (`<prefix>.<test>`), no spaces.
    pub prefix: &'static str,
    /// The QEMU drive id the `DISK` lines name.
    pub drive: &'static str,
    /// Split or packed queue; the device must offer packed for `Packed`.
    pub layout: QueueLayout,
    /// Take `INDIRECT_DESC` (the device must offer it): every request,
    /// being three segments, then takes one queue entry and a table.
    pub indirect: bool,
    /// The platform translates (an IOMMU): the device must offer and the
    /// driver accept `ACCESS_PLATFORM`.
    pub translates: bool,
    /// Whether `ACCESS_PLATFORM` must end up negotiated.
    pub access_platform: bool,
    /// First sector of the area the checks write ([`AREA`] sectors).
    pub base: u64,
    /// Pattern seed family: each check adds its own number.
    pub seed: u32,
}

/// Entries in the request queue: small, so the wrap check goes round it
/// many times (a request takes three descriptors).
pub const QUEUE_SIZE: u16 = 16;
/// One-sector writes in the wrap check.
const WRAP_REQUESTS: u64 = 40;
/// Sectors a run writes from its base.
pub const AREA: u64 = 512;

type Outcome = Result<String, String>;

fn err(what: &str) -> impl Fn(DriverError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn refused(what: &str) -> impl Fn(Refused<DmaBuf>) -> String + '_ {
    move |e| format!("{what}: {}", e.error)
}

/// Runs every check on the device behind `transport` through `platform`,
/// waiting with `wait`, and reports each on `r`. The device is left reset.
pub fn run<T, P, W, O>(r: &mut Reporter<O>, transport: T, platform: P, wait: W, run: &BlkRun)
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
    O: Write,
{
    let t = |test: &str| format!("{}.{test}", run.prefix);
    let options = VirtioOptions {
        layout: run.layout,
        event_idx: true,
        indirect: run.indirect,
        platform_translates: run.translates,
        queue_size: QUEUE_SIZE,
    };
    let disk = VirtioBlk::<T, P, W, DmaBuf>::start(transport, platform.clone(), wait, options);
    let mut disk = match disk {
        Ok(d) => d,
        Err(e) => {
            r.outcome::<&str, _>(&t("start"), Err(format!("bring-up: {e}")));
            return;
        }
    };
    if !r.outcome(&t("start"), negotiated(&disk, run)) {
        return;
    }
    r.outcome(&t("read_prepared"), read_prepared(&mut disk, &platform));

    let shapes: [(&str, u64, usize); 3] = [
        ("rw_1_sector", 0, SECTOR),
        ("rw_4k", 8, 4096),
        // 16 pages in one request.
        ("rw_64k", 64, 64 << 10),
    ];
    for (i, (name, offset, len)) in shapes.into_iter().enumerate() {
        let seed = run.seed + 1 + i as u32;
        let sector = run.base + offset;
        let outcome = round_trip(&mut disk, &platform, sector, len, seed);
        if outcome.is_ok() {
            r.disk_on(run.drive, sector, (len / SECTOR) as u64, seed);
        }
        r.outcome(&t(name), outcome);
    }
    let wrap_sector = run.base + 256;
    let wrap_seed = run.seed + 8;
    let wrapped = wrap(&mut disk, &platform, wrap_sector, wrap_seed);
    if wrapped.is_ok() {
        r.disk_on(run.drive, wrap_sector, WRAP_REQUESTS, wrap_seed);
    }
    r.outcome(&t("queue_wrap"), wrapped);
    r.outcome(&t("refuses_bad_io"), refusals(&mut disk, &platform));
    r.outcome(
        &t("flush"),
        disk.flush()
            .map(|()| String::from("FLUSH completed"))
            .map_err(err("flush")),
    );
    let stats = disk.stats();
    r.outcome(
        &t("shutdown"),
        disk.shutdown().map_err(err("shutdown")).and_then(|left| {
            if left.is_empty() {
                Ok(format!(
                    "reset, no buffer left behind; {} reads, {} writes, {} flushes, {} errors",
                    stats.reads, stats.writes, stats.flushes, stats.errors
                ))
            } else {
                Err(format!("{} buffers were still with the device", left.len()))
            }
        }),
    );
}

/// The negotiated features are what the run asked for and the device
/// offers.
fn negotiated<T, P, W>(disk: &VirtioBlk<T, P, W, DmaBuf>, run: &BlkRun) -> Outcome
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let f = disk.features();
    let packed = run.layout == QueueLayout::Packed;
    let detail = format!(
        "features {:#x}: VERSION_1 {}, RING_PACKED {}, INDIRECT_DESC {}, EVENT_IDX {}, \
         ACCESS_PLATFORM {}; {} sectors",
        f.bits(),
        f.contains(Features::VERSION_1),
        f.contains(Features::RING_PACKED),
        f.contains(Features::INDIRECT_DESC),
        f.contains(Features::EVENT_IDX),
        f.contains(Features::ACCESS_PLATFORM),
        disk.capacity()
    );
    let (prepared_end, end) = (PREPARED.0 + PREPARED.1, run.base + AREA);
    if !f.contains(Features::VERSION_1)
        || f.contains(Features::RING_PACKED) != packed
        || f.contains(Features::INDIRECT_DESC) != run.indirect
        || f.contains(Features::ACCESS_PLATFORM) != run.access_platform
    {
        Err(format!(
            "{detail} (wanted RING_PACKED {packed}, INDIRECT_DESC {}, ACCESS_PLATFORM {})",
            run.indirect, run.access_platform
        ))
    } else if disk.capacity() < end.max(prepared_end) {
        Err(format!("{detail}: too small for the checks"))
    } else {
        Ok(detail)
    }
}

/// Reads the data the host wrote before boot and checks every byte.
fn read_prepared<T, P, W>(disk: &mut VirtioBlk<T, P, W, DmaBuf>, platform: &P) -> Outcome
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let (sector, sectors, seed) = PREPARED;
    let len = sectors as usize * SECTOR;
    let buf = DmaBuf::for_device(platform, len).map_err(|e| format!("buffer: {e}"))?;
    let buf = disk.read(sector, buf).map_err(refused("read"))?;
    match pattern_mismatch(&buf, seed, 0, "the host") {
        None => Ok(format!(
            "{len} B at sector {sector}, as the host wrote them"
        )),
        Some(m) => Err(m),
    }
}

/// Writes `len` bytes of `pattern(seed)` at `sector`, reads them back into
/// a zeroed buffer and compares.
fn round_trip<T, P, W>(
    disk: &mut VirtioBlk<T, P, W, DmaBuf>,
    platform: &P,
    sector: u64,
    len: usize,
    seed: u32,
) -> Outcome
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let mut out = DmaBuf::for_device(platform, len).map_err(|e| format!("buffer: {e}"))?;
    fill_pattern(seed, 0, &mut out);
    disk.write(sector, out).map_err(refused("write"))?;
    let back = DmaBuf::for_device(platform, len).map_err(|e| format!("buffer: {e}"))?;
    let back = disk.read(sector, back).map_err(refused("read"))?;
    match pattern_mismatch(&back, seed, 0, "the driver") {
        None => Ok(format!("{len} B at sector {sector} written and read back")),
        Some(m) => Err(m),
    }
}

/// [`WRAP_REQUESTS`] one-sector writes (each three descriptors, or one
/// entry with an indirect table) through a [`QUEUE_SIZE`]-entry queue,
/// then one read of them all.
fn wrap<T, P, W>(
    disk: &mut VirtioBlk<T, P, W, DmaBuf>,
    platform: &P,
    sector: u64,
    seed: u32,
) -> Outcome
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    for i in 0..WRAP_REQUESTS {
        let mut out = DmaBuf::for_device(platform, SECTOR).map_err(|e| format!("buffer: {e}"))?;
        fill_pattern(seed, i * SECTOR as u64, &mut out);
        disk.write(sector + i, out)
            .map_err(refused(&format!("write {i}")))?;
    }
    let len = WRAP_REQUESTS as usize * SECTOR;
    let back = DmaBuf::for_device(platform, len).map_err(|e| format!("buffer: {e}"))?;
    let back = disk.read(sector, back).map_err(refused("read"))?;
    match (0..len).find(|&i| back[i] != pattern_byte(seed, i as u64)) {
        None => Ok(format!(
            "{WRAP_REQUESTS} writes of 3 segments through a {QUEUE_SIZE}-entry queue, read back"
        )),
        Some(i) => Err(format!(
            "sector {} byte {} read back as {:#04x}",
            i / SECTOR,
            i % SECTOR,
            back[i]
        )),
    }
}

/// A length that is not whole sectors and a range past the end are
/// refused before the device sees them, with the buffer back.
fn refusals<T, P, W>(disk: &mut VirtioBlk<T, P, W, DmaBuf>, platform: &P) -> Outcome
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    let mut messages = Vec::new();
    // 128 bytes: whole cache lines (so the platform maps it on any
    // machine) but not a whole sector, which the driver must refuse.
    let cases = [(0, 128usize), (disk.capacity(), SECTOR)];
    for (sector, len) in cases {
        let buf = DmaBuf::for_device(platform, len).map_err(|e| format!("buffer: {e}"))?;
        match disk.read(sector, buf) {
            Ok(_) => return Err(format!("{len} B at sector {sector} was accepted")),
            Err(Refused {
                error: DriverError::InvalidArgument(m),
                buffer: Some(_),
            }) => messages.push(m),
            Err(e) => {
                return Err(format!(
                    "{len} B at sector {sector}: {} (buffer back: {})",
                    e.error,
                    e.buffer.is_some()
                ))
            }
        }
    }
    Ok(format!(
        "refused with the buffer back: {}",
        messages.join("; ")
    ))
}
