//! A virtio block device (virtio 1.2 §5.2) over an in-memory disk.
//!
//! One request queue (queue 0). A request is a chain of a 16-byte
//! device-readable header (`type: le32, reserved: le32, sector: le64`),
//! the data (device-readable for writes, device-writable for reads) and a
//! final device-writable status byte (§5.2.6). Implemented: `IN` (read),
//! `OUT` (write), `FLUSH` and `GET_ID`; anything else completes with
//! `UNSUPP`. A request the device can still answer (a bad length, a
//! sector past the end, a write to a read-only disk, a data buffer the bus
//! refuses) completes with `IOERR`; one without a status byte cannot be
//! answered and is a device error (`DEVICE_NEEDS_RESET`).

use super::split::{Chain, ChainError};
use super::{Backend, Features, QueueIo};

/// Block feature bits (§5.2.3).
pub mod features {
    use super::Features;

    /// The disk is read-only.
    pub const RO: Features = Features::from_bits_retain(1 << 5);
    /// `blk_size` in the configuration space is valid.
    pub const BLK_SIZE: Features = Features::from_bits_retain(1 << 6);
    /// The `FLUSH` command exists.
    pub const FLUSH: Features = Features::from_bits_retain(1 << 9);
}

/// Request types (§5.2.6).
pub mod req {
    /// Read sectors.
    pub const IN: u32 = 0;
    /// Write sectors.
    pub const OUT: u32 = 1;
    /// Flush the write cache.
    pub const FLUSH: u32 = 4;
    /// Read the 20-byte device id string.
    pub const GET_ID: u32 = 8;
}

/// Status byte values (§5.2.6).
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Device or driver error.
    pub const IOERR: u8 = 1;
    /// Unsupported request.
    pub const UNSUPP: u8 = 2;
}

/// Bytes per sector: the unit of `sector` and of `capacity` (§5.2.4).
pub const SECTOR: u64 = 512;
/// Bytes of the request header.
pub const HEADER: u64 = 16;
/// Bytes of the `GET_ID` answer (§5.2.6).
pub const ID_BYTES: usize = 20;
/// The one request queue.
const REQUESTQ: u16 = 0;

/// The block device's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    /// Sectors read by the driver.
    pub sectors_read: u64,
    /// Sectors written by the driver.
    pub sectors_written: u64,
    /// `FLUSH` requests.
    pub flushes: u64,
    /// Requests completed with `IOERR` or `UNSUPP`.
    pub errors: u64,
}

/// The block backend: a disk of whole sectors.
#[derive(Debug)]
pub struct Blk {
    disk: Vec<u8>,
    read_only: bool,
    id: [u8; ID_BYTES],
    stats: BlkStats,
}

impl Blk {
    /// A zeroed disk of `sectors` sectors.
    pub fn new(sectors: u64, read_only: bool) -> Self {
        let mut id = [0u8; ID_BYTES];
        id[..10].copy_from_slice(b"dma-sim-vd");
        Self {
            disk: vec![0; (sectors * SECTOR) as usize],
            read_only,
            id,
            stats: BlkStats::default(),
        }
    }

    /// The disk's bytes.
    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    /// The disk's bytes, for a test to prepare.
    pub fn disk_mut(&mut self) -> &mut [u8] {
        &mut self.disk
    }

    /// The counters.
    pub fn stats(&self) -> BlkStats {
        self.stats
    }

    /// The disk byte range of `len` bytes at `sector`, if inside the disk.
    fn span(&self, sector: u64, len: u64) -> Option<core::ops::Range<usize>> {
        let start = sector.checked_mul(SECTOR)?;
        let end = start.checked_add(len)?;
        (len % SECTOR == 0 && end <= self.disk.len() as u64).then_some(start as usize..end as usize)
    }

    /// Carries out one request; returns the status and the data bytes
    /// written into the chain before the status byte.
    fn serve(&mut self, io: &QueueIo<'_>, chain: &Chain, readable: &[u8]) -> (u8, u64) {
        let kind = u32::from_le_bytes(readable[0..4].try_into().unwrap_or_default());
        let sector = u64::from_le_bytes(readable[8..16].try_into().unwrap_or_default());
        let data_in = chain.writable_len() - 1; // room before the status byte
        match kind {
            req::IN => {
                let Some(span) = self.span(sector, data_in) else {
                    return (status::IOERR, 0);
                };
                if chain.write_at(io.bus(), 0, &self.disk[span]).is_err() {
                    return (status::IOERR, 0);
                }
                self.stats.sectors_read += data_in / SECTOR;
                (status::OK, data_in)
            }
            req::OUT => {
                let data = &readable[HEADER as usize..];
                match self.span(sector, data.len() as u64) {
                    Some(span) if !self.read_only => {
                        self.disk[span].copy_from_slice(data);
                        self.stats.sectors_written += data.len() as u64 / SECTOR;
                        (status::OK, 0)
                    }
                    _ => (status::IOERR, 0),
                }
            }
            req::FLUSH => {
                self.stats.flushes += 1;
                (status::OK, 0)
            }
            req::GET_ID if data_in >= ID_BYTES as u64 => {
                match chain.write_at(io.bus(), 0, &self.id) {
                    Ok(()) => (status::OK, ID_BYTES as u64),
                    Err(_) => (status::IOERR, 0),
                }
            }
            req::GET_ID => (status::IOERR, 0),
            _ => (status::UNSUPP, 0),
        }
    }
}

impl Backend for Blk {
    const DEVICE_ID: u32 = 2;
    const QUEUES: u16 = 1;

    fn features(&self) -> Features {
        let ro = if self.read_only {
            features::RO
        } else {
            Features::empty()
        };
        features::BLK_SIZE | features::FLUSH | ro
    }

    /// `capacity: le64` at 0, `blk_size: le32` at 20 (§5.2.4); the fields
    /// between belong to features not offered and read as 0.
    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; 24];
        c[0..8].copy_from_slice(&(self.disk.len() as u64 / SECTOR).to_le_bytes());
        c[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        c
    }

    fn work(&mut self, io: &mut QueueIo<'_>) -> Result<bool, ChainError> {
        let Some(chain) = io.pop(REQUESTQ)? else {
            return Ok(false);
        };
        if chain.writable_len() == 0 {
            return Err(ChainError::Malformed(
                "block request without a device-writable status byte (§5.2.6)",
            ));
        }
        let (st, data) = match chain.read_all(io.bus()) {
            Ok(readable) if readable.len() as u64 >= HEADER => self.serve(io, &chain, &readable),
            _ => (status::IOERR, 0),
        };
        if st != status::OK {
            self.stats.errors += 1;
        }
        // Without the status byte written the driver cannot tell what
        // happened; a refused write here is the bus's fault record.
        let _ = chain.write_at(io.bus(), chain.writable_len() - 1, &[st]);
        io.push_used(REQUESTQ, &chain, (data + 1) as u32)?;
        Ok(true)
    }
}
