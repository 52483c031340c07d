//! The NVMe data tests, run once per backend: the reference driver
//! (`dma_qemu_virt::driver`) over `dma-ring`'s queue pairs, buffers mapped
//! as `dma-sg` tables through the backend (cache maintenance from
//! `dma-coherence`), data pointers encoded by `dma-sg`'s PRP encoder with
//! list pages from its DMA pools.
//!
//! Every write fills its buffer with the report pattern, so what reaches
//! the disk is checked twice: read back here, and on the host from the
//! `DISK` lines.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use dma_core::{DeviceConstraints, DmaAlloc, DmaBuf, DmaMap, FromDevice, SgEntry, ToDevice};
use dma_drivers::nvme::check_status;
use dma_drivers::nvme::spec::io_opcode as opcode;
use dma_qemu_virt::driver::{NvmeDriver, NSID};
use dma_qemu_virt::report::{fill_pattern, pattern_byte, Reporter};
use dma_qemu_virt::timer::GenericTimer;
use dma_qemu_virt::{BoardError, Result};
use dma_ring::nvme::{NvmeCommand, NvmeCompleted};
use dma_sg::nvme::{encode_prp, NvmePools, PrpRequest};
use dma_sg::{MappedSgTable, SgLimits};
use tock_registers::interfaces::Readable;

use crate::board::Board;
use crate::console::Console;

/// The device's limits: 64-bit addressing, dword-aligned data (PRP1's
/// rule, NVMe 2.0 §4.1.1).
pub fn constraints() -> Result<DeviceConstraints> {
    Ok(DeviceConstraints::builder()
        .addr_bits(64)
        .alignment(4)
        .build()?)
}

/// Logical block size the tests assume (QEMU's default).
pub const BLOCK: u64 = 512;
/// The longest transfer tried: 4 MiB in a page-aligned buffer, 1024 PRP
/// entries (PRP1 and 1023 in the list), so the list takes two chained
/// pages (511 entries and the chain pointer, then 512 entries). Two limits meet here: MDTS (QEMU's
/// default 7 allows 512 KiB, one list page; `cargo xtask qemu` sets
/// `mdts=10`), and QEMU's NVMe model maps at most 1024 PRP entries per
/// command ("number of mappings exceed 1024", status Internal Error), so a
/// 4 MiB buffer that does not start on a page, 1025 entries, is refused.
pub const LONG_TRANSFER: u64 = 4 << 20;
/// I/O queue sizes: different on purpose, so the SQ and CQ wrap at
/// different moments.
pub const IO_SQ_ENTRIES: u32 = 32;
/// See [`IO_SQ_ENTRIES`].
pub const IO_CQ_ENTRIES: u32 = 24;
/// Commands in each direction of the wrap test.
pub const WRAP_COMMANDS: u32 = 160;
/// Blocks one backend's tests write, from its [`DiskLayout::base`].
pub const AREA_BLOCKS: u64 = 64 + LONG_TRANSFER / BLOCK + WRAP_COMMANDS as u64;
/// How long one I/O may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one backend's tests write on the disk.
#[derive(Clone, Copy, Debug)]
pub struct DiskLayout {
    /// First block of this backend's area.
    pub base: u64,
    /// Pattern seed family: each test adds its own number.
    pub seed: u32,
}

/// What a command owns while the controller has it.
pub enum Io<'pool, P: DmaMap + DmaAlloc> {
    /// Data going to the disk.
    Write(
        MappedSgTable<DmaBuf, ToDevice, P, Vec<SgEntry>>,
        PrpRequest<'pool, P>,
    ),
    /// Data coming from the disk, with the pattern offset it should hold.
    Read(
        MappedSgTable<DmaBuf, FromDevice, P, Vec<SgEntry>>,
        PrpRequest<'pool, P>,
        u64,
    ),
    /// A command whose data pointer the test made up (no buffer of ours).
    Unowned,
}

/// The PRP shape a transfer was encoded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrpShape {
    /// PRP1.
    pub prp1: u64,
    /// PRP2 (zero when unused).
    pub prp2: u64,
    /// List blocks (chained pages when more than one).
    pub list_blocks: usize,
}

impl core::fmt::Display for PrpShape {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "PRP1 {:#x} PRP2 {:#x} list blocks {}",
            self.prp1, self.prp2, self.list_blocks
        )
    }
}

/// One backend's driver, pools and namespace.
pub struct Session<'a, P: DmaMap + DmaAlloc + Clone> {
    /// The driver.
    pub driver: NvmeDriver<'a, P, Io<'a, P>, GenericTimer>,
    pools: &'a NvmePools<P>,
    limits: SgLimits,
}

impl<'a, P: DmaMap + DmaAlloc + Clone> Session<'a, P> {
    /// A write of `len` bytes of pattern `seed` (from pattern offset
    /// `offset`) to `lba`, in a buffer aligned to `align`.
    fn write_command(
        &self,
        lba: u64,
        seed: u32,
        offset: u64,
        len: usize,
        align: usize,
    ) -> Result<(NvmeCommand, Io<'a, P>, PrpShape)> {
        let mut buf = DmaBuf::new(len, align)?;
        fill_pattern(seed, offset, &mut buf);
        let platform = self.driver.platform().clone();
        let data = MappedSgTable::<_, ToDevice, _, _>::map(platform, buf, self.limits)
            .map_err(|e| e.error)?;
        let prps = encode_prp(self.pools, data.segments())?;
        let (cmd, shape) = rw_command(opcode::WRITE, lba, len, &prps)?;
        Ok((cmd, Io::Write(data, prps), shape))
    }

    /// A read of `len` bytes from `lba` into a buffer aligned to `align`,
    /// expected to hold pattern bytes from `tag` on.
    fn read_command(
        &self,
        lba: u64,
        len: usize,
        align: usize,
        tag: u64,
    ) -> Result<(NvmeCommand, Io<'a, P>, PrpShape)> {
        let buf = DmaBuf::new(len, align)?;
        let platform = self.driver.platform().clone();
        let data = MappedSgTable::<_, FromDevice, _, _>::map(platform, buf, self.limits)
            .map_err(|e| e.error)?;
        let prps = encode_prp(self.pools, data.segments())?;
        let (cmd, shape) = rw_command(opcode::READ, lba, len, &prps)?;
        Ok((cmd, Io::Read(data, prps, tag), shape))
    }

    /// Submits one command, waits for it, checks its status.
    fn run(&mut self, cmd: NvmeCommand, io: Io<'a, P>) -> Result<Io<'a, P>> {
        let q = self.driver.io()?;
        q.submit(cmd, io).map_err(|r| r.error)?;
        let done = self.driver.wait_io(IO_TIMEOUT)?;
        check_status(cmd.opcode(), done.status)?;
        Ok(done.buffers)
    }

    /// Writes pattern `seed` over `len` bytes at `lba`.
    pub fn write(&mut self, lba: u64, seed: u32, len: usize, align: usize) -> Result<PrpShape> {
        let (cmd, io, shape) = self.write_command(lba, seed, 0, len, align)?;
        finish_write(self.run(cmd, io)?)?;
        Ok(shape)
    }

    /// Reads `len` bytes at `lba` and returns them with the PRP shape.
    pub fn read(&mut self, lba: u64, len: usize, align: usize) -> Result<(DmaBuf, PrpShape)> {
        let (cmd, io, shape) = self.read_command(lba, len, align, 0)?;
        match self.run(cmd, io)? {
            Io::Read(data, prps, _) => Ok((finish_read(data, prps)?, shape)),
            _ => Err(BoardError::InvalidArgument("a read returns its buffer")),
        }
    }
}

fn rw_command<P: DmaAlloc>(
    op: u8,
    lba: u64,
    len: usize,
    prps: &PrpRequest<'_, P>,
) -> Result<(NvmeCommand, PrpShape)> {
    let blocks = u32::try_from(len as u64 / BLOCK)
        .map_err(|_| BoardError::InvalidArgument("transfer too long"))?;
    let mut cmd = dma_qemu_virt::driver::read_write(op, NSID, lba, blocks)?;
    cmd.prp1 = prps.prp1().as_u64();
    cmd.prp2 = prps.prp2().as_u64();
    let shape = PrpShape {
        prp1: cmd.prp1,
        prp2: cmd.prp2,
        list_blocks: prps.list_blocks(),
    };
    Ok((cmd, shape))
}

/// Takes a completed write's buffer back (unmapping it) and returns its
/// list memory to the pools.
fn finish_write<P: DmaMap + DmaAlloc>(io: Io<'_, P>) -> Result<()> {
    match io {
        Io::Write(data, prps) => {
            drop(prps);
            data.unmap()?;
            Ok(())
        }
        _ => Err(BoardError::InvalidArgument("a write returns its buffer")),
    }
}

/// Hands a completed read's buffer back to the CPU.
fn finish_read<P: DmaMap + DmaAlloc>(
    mut data: MappedSgTable<DmaBuf, FromDevice, P, Vec<SgEntry>>,
    prps: PrpRequest<'_, P>,
) -> Result<DmaBuf> {
    drop(prps);
    data.sync_for_cpu();
    Ok(data.unmap()?)
}

/// The first byte of `data` that is not pattern `seed` from `offset`.
fn mismatch(data: &[u8], seed: u32, offset: u64) -> Option<(usize, u8, u8)> {
    data.iter()
        .enumerate()
        .find(|&(i, &b)| b != pattern_byte(seed, offset + i as u64))
        .map(|(i, &b)| (i, b, pattern_byte(seed, offset + i as u64)))
}

/// Runs the data tests over `platform`, then `extra` (backend-specific
/// tests) while the queues are still up, then shuts the controller down.
pub fn run<P, F>(
    r: &mut Reporter<Console>,
    board: &Board,
    name: &str,
    platform: P,
    layout: DiskLayout,
    extra: F,
) where
    P: DmaMap + DmaAlloc + Clone,
    F: FnOnce(&mut Reporter<Console>, &mut Session<'_, P>),
{
    let t = |test: &str| format!("{name}.{test}");
    let pools = match NvmePools::new(platform.clone(), 4096, 16, 64) {
        Ok(p) => p,
        Err(e) => {
            r.outcome::<&str, _>(&t("pools"), Err(format!("{e:?}")));
            return;
        }
    };
    let limits = match constraints().and_then(|c| Ok(SgLimits::new(4096, &c)?)) {
        Ok(l) => l,
        Err(e) => {
            r.outcome::<&str, _>(&t("limits"), Err(format!("{e}")));
            return;
        }
    };
    let started = NvmeDriver::start(&board.nvme, platform, &board.clock, 16);
    let ok = r.outcome(
        &t("nvme_ready"),
        started
            .as_ref()
            .map(|d| {
                format!(
                    "CSTS.RDY = 1, admin SQ {:#x} CQ {:#x}",
                    d.controller().regs().asq.get(),
                    d.controller().regs().acq.get()
                )
            })
            .map_err(|e| format!("{e}")),
    );
    let Ok(mut driver) = started else { return };
    if !ok {
        return;
    }
    let identity = driver
        .identify_controller()
        .and_then(|c| Ok((c, driver.identify_namespace(NSID)?)));
    let shown = identity
        .as_ref()
        .map_err(|e| format!("{e}"))
        .and_then(|(c, n)| {
            let limit = c
                .max_transfer(4096)
                .map_or(String::from("unlimited"), |b| format!("{} KiB", b / 1024));
            if c.vid != dma_qemu_virt::memmap::NVME_VENDOR_ID || u64::from(n.block_size) != BLOCK {
                Err(format!("VID {:#06x} block size {}", c.vid, n.block_size))
            } else {
                Ok(format!(
                    "VID {:#06x} MDTS {} ({limit}) namespace {} x {} B",
                    c.vid, c.mdts, n.blocks, n.block_size
                ))
            }
        });
    let ok = r.outcome(&t("identify"), shown);
    let Ok((controller, namespace)) = identity else {
        return;
    };
    if !ok {
        return;
    }
    if namespace.blocks < layout.base + AREA_BLOCKS {
        r.outcome::<&str, _>(
            &t("disk_size"),
            Err(format!(
                "the namespace ends before block {}",
                layout.base + AREA_BLOCKS
            )),
        );
        return;
    }
    let queues = driver.create_io_queues(IO_SQ_ENTRIES, IO_CQ_ENTRIES);
    let ok = r.outcome(
        &t("io_queues"),
        queues
            .map(|()| format!("SQ {IO_SQ_ENTRIES} CQ {IO_CQ_ENTRIES} entries, qid 1"))
            .map_err(|e| format!("{e}")),
    );
    if !ok {
        return;
    }
    let mut s = Session {
        driver,
        pools: &pools,
        limits,
    };

    round_trip(
        r,
        &mut s,
        &t("rw_1_block"),
        layout.base,
        layout.seed + 1,
        512,
        512,
        |sh| {
            (sh.prp2 == 0 && sh.list_blocks == 0)
                .then_some(())
                .ok_or("one block needs PRP1 only")
        },
    );
    round_trip(
        r,
        &mut s,
        &t("rw_2_pages_prp2"),
        layout.base + 8,
        layout.seed + 2,
        8192,
        4096,
        |sh| {
            (sh.prp2 != 0 && sh.list_blocks == 0)
                .then_some(())
                .ok_or("two pages need PRP2 as a data pointer, no list")
        },
    );
    let long = match controller.max_transfer(4096) {
        Some(max) if max < LONG_TRANSFER => max,
        _ => LONG_TRANSFER,
    };
    round_trip(
        r,
        &mut s,
        &t("rw_chained_prp_list"),
        layout.base + 64,
        layout.seed + 3,
        long as usize,
        4096,
        |sh| {
            // 512 slots a list page, the last a chain pointer: more than 512
            // entries means at least two list pages.
            (sh.list_blocks >= 2)
                .then_some(())
                .ok_or("MDTS allows no transfer long enough to chain PRP list pages")
        },
    );
    let wrap_lba = layout.base + 64 + LONG_TRANSFER / BLOCK;
    let wrapped = wrap(&mut s, wrap_lba, layout.seed + 4);
    if wrapped.is_ok() {
        r.disk(wrap_lba, u64::from(WRAP_COMMANDS), layout.seed + 4);
    }
    r.outcome(&t("queue_wrap"), wrapped);

    extra(r, &mut s);

    let down = s.driver.shutdown();
    r.outcome(
        &t("shutdown"),
        down.map(|()| "I/O queues deleted, CSTS.RDY = 0")
            .map_err(|e| format!("{e}")),
    );
}

/// Writes, reads back and compares one transfer; `shape` judges how its
/// PRPs were encoded.
#[allow(clippy::too_many_arguments)]
fn round_trip<P: DmaMap + DmaAlloc + Clone>(
    r: &mut Reporter<Console>,
    s: &mut Session<'_, P>,
    name: &str,
    lba: u64,
    seed: u32,
    len: usize,
    align: usize,
    shape: impl Fn(&PrpShape) -> core::result::Result<(), &'static str>,
) {
    let outcome = (|| -> core::result::Result<String, String> {
        let e = |e: BoardError| format!("{e}");
        let written = s.write(lba, seed, len, align).map_err(e)?;
        shape(&written).map_err(|why| format!("{why}: write {written}"))?;
        let (data, read) = s.read(lba, len, align).map_err(e)?;
        shape(&read).map_err(|why| format!("{why}: read {read}"))?;
        if let Some((i, got, want)) = mismatch(&data, seed, 0) {
            return Err(format!("byte {i} read back {got:#04x}, wrote {want:#04x}"));
        }
        Ok(format!(
            "{len} B at lba {lba}: write {written}; read {read}"
        ))
    })();
    if outcome.is_ok() {
        r.disk(lba, len as u64 / BLOCK, seed);
    }
    r.outcome(name, outcome);
}

/// [`WRAP_COMMANDS`] one-block writes, then as many reads, pushed in
/// batches as deep as the queues allow and reaped as they complete, so the
/// SQ and the CQ each wrap several times.
fn wrap<P: DmaMap + DmaAlloc + Clone>(
    s: &mut Session<'_, P>,
    lba: u64,
    seed: u32,
) -> core::result::Result<String, String> {
    let block = BLOCK as usize;
    // Block i holds pattern bytes i * 512.. of `seed`; each command's tag
    // is its block's pattern offset.
    let (w_rings, w_deepest) = pump(
        s,
        |s, i| s.write_command(lba + i, seed, i * BLOCK, block, block),
        |c| {
            check_status(opcode::WRITE, c.status)?;
            finish_write(c.buffers)
        },
    )
    .map_err(|e| format!("writes: {e}"))?;
    let (r_rings, r_deepest) = pump(
        s,
        |s, i| s.read_command(lba + i, block, block, i * BLOCK),
        |c| {
            check_status(opcode::READ, c.status)?;
            let Io::Read(data, prps, tag) = c.buffers else {
                return Err(BoardError::InvalidArgument("a read returns its buffer"));
            };
            let buf = finish_read(data, prps)?;
            match mismatch(&buf, seed, tag) {
                None => Ok(()),
                Some(_) => Err(BoardError::InvalidArgument(
                    "a read returned other data than its block was written with",
                )),
            }
        },
    )
    .map_err(|e| format!("reads: {e}"))?;
    let total = 2 * WRAP_COMMANDS;
    Ok(format!(
        "{total} commands ({WRAP_COMMANDS} writes, {WRAP_COMMANDS} reads) in {} doorbells, \
         up to {} in flight: SQ ({IO_SQ_ENTRIES}) wrapped {} times, CQ ({IO_CQ_ENTRIES}) {} times",
        w_rings + r_rings,
        w_deepest.max(r_deepest),
        total / IO_SQ_ENTRIES,
        total / IO_CQ_ENTRIES
    ))
}

/// Runs [`WRAP_COMMANDS`] commands made by `make` (given their index)
/// through the I/O queue: push while there is room, one doorbell per
/// batch, then reap; every completion goes to `check`. Returns the
/// doorbells rung and the deepest the queue got.
fn pump<'a, P: DmaMap + DmaAlloc + Clone>(
    s: &mut Session<'a, P>,
    mut make: impl FnMut(&Session<'a, P>, u64) -> Result<(NvmeCommand, Io<'a, P>, PrpShape)>,
    mut check: impl FnMut(NvmeCompleted<Io<'a, P>>) -> Result<()>,
) -> Result<(u32, u32)> {
    let (mut next, mut done, mut rings, mut deepest) = (0u32, 0u32, 0u32, 0u32);
    while done < WRAP_COMMANDS {
        while next < WRAP_COMMANDS && s.driver.io()?.can_push() {
            let (cmd, io, _) = make(s, u64::from(next))?;
            s.driver.io()?.push(cmd, io).map_err(|r| r.error)?;
            next += 1;
        }
        deepest = deepest.max(s.driver.io()?.in_flight());
        rings += u32::from(s.driver.io()?.ring_doorbell());
        check(s.driver.wait_io(IO_TIMEOUT)?)?;
        done += 1;
        // Whatever else has completed, then one CQ head doorbell.
        let mut first_error = Ok(());
        done += s.driver.io()?.drain(|c| {
            if first_error.is_ok() {
                first_error = check(c);
            }
        })?;
        first_error?;
    }
    Ok((rings, deepest))
}
