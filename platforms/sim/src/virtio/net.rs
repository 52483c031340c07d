//! A virtio network device (virtio 1.2 §5.1) with one receive and one
//! transmit queue and a wire the test holds.
//!
//! Every buffer starts with the 12-byte `virtio_net_hdr` (§5.1.6: `flags:
//! u8, gso_type: u8, hdr_len: le16, gso_size: le16, csum_start: le16,
//! csum_offset: le16, num_buffers: le16`; `num_buffers` is there because
//! `VERSION_1` is negotiated). No checksum or segmentation offload is
//! offered, so a transmit header must ask for neither.
//!
//! - Transmit (queue 1): a chain of device-readable buffers, header then
//!   frame; the frame is appended to [`Net::take_transmitted`]. A chain
//!   with writable buffers is malformed (a device error); a header asking
//!   for an offload that was not negotiated, or an empty frame, drops the
//!   frame ([`NetStats::tx_dropped`]).
//! - Receive (queue 0): a frame from [`Net::receive`] is written, after a
//!   header with `num_buffers` 1, into one chain of device-writable
//!   buffers (no `MRG_RXBUF`). A chain too small for it is returned with
//!   nothing written and the frame is dropped ([`NetStats::rx_dropped`]).

use std::collections::VecDeque;

use super::split::{Chain, ChainError};
use super::{Backend, Features, QueueIo};

/// Network feature bits (§5.1.3).
pub mod features {
    use super::Features;

    /// `mac` in the configuration space is valid.
    pub const MAC: Features = Features::from_bits_retain(1 << 5);
    /// `status` in the configuration space is valid.
    pub const STATUS: Features = Features::from_bits_retain(1 << 16);
}

/// Bytes of `virtio_net_hdr` with `VERSION_1` (§5.1.6).
pub const HEADER: usize = 12;
/// `status` bit: link up (§5.1.4).
pub const LINK_UP: u16 = 1;
const RECEIVEQ: u16 = 0;
const TRANSMITQ: u16 = 1;

/// The network device's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames sent by the driver.
    pub tx_frames: u64,
    /// Transmit chains whose frame was dropped.
    pub tx_dropped: u64,
    /// Frames delivered to the driver.
    pub rx_frames: u64,
    /// Frames dropped (receive buffer too small or unreachable, FIFO full).
    pub rx_dropped: u64,
}

/// The network backend.
#[derive(Debug)]
pub struct Net {
    mac: [u8; 6],
    rx_fifo: VecDeque<Vec<u8>>,
    rx_fifo_frames: usize,
    transmitted: VecDeque<Vec<u8>>,
    stats: NetStats,
}

impl Net {
    /// A device with address `mac`, holding at most `rx_fifo_frames`
    /// frames while the driver posts no receive buffers.
    pub fn new(mac: [u8; 6], rx_fifo_frames: usize) -> Self {
        Self {
            mac,
            rx_fifo: VecDeque::new(),
            rx_fifo_frames,
            transmitted: VecDeque::new(),
            stats: NetStats::default(),
        }
    }

    /// A frame arrives from the wire; false if the FIFO is full or the
    /// frame empty (dropped).
    pub fn receive(&mut self, frame: &[u8]) -> bool {
        if frame.is_empty() || self.rx_fifo.len() >= self.rx_fifo_frames {
            self.stats.rx_dropped += 1;
            return false;
        }
        self.rx_fifo.push_back(frame.to_vec());
        true
    }

    /// Takes the frames sent so far.
    pub fn take_transmitted(&mut self) -> Vec<Vec<u8>> {
        self.transmitted.drain(..).collect()
    }

    /// The counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    fn transmit(&mut self, io: &mut QueueIo<'_>, chain: &Chain) -> Result<(), ChainError> {
        if chain.writable_len() != 0 {
            return Err(ChainError::Malformed(
                "transmit chain with device-writable buffers (§5.1.6.2)",
            ));
        }
        match chain.read_all(io.bus()) {
            // flags (NEEDS_CSUM) and gso_type need offloads not offered.
            Ok(bytes) if bytes.len() > HEADER && bytes[0] == 0 && bytes[1] == 0 => {
                self.transmitted.push_back(bytes[HEADER..].to_vec());
                self.stats.tx_frames += 1;
            }
            _ => self.stats.tx_dropped += 1,
        }
        io.push_used(TRANSMITQ, chain, 0)
    }

    fn deliver(
        &mut self,
        io: &mut QueueIo<'_>,
        chain: &Chain,
        frame: &[u8],
    ) -> Result<(), ChainError> {
        if chain.readable_len() != 0 {
            return Err(ChainError::Malformed(
                "receive chain with device-readable buffers (§5.1.6.3)",
            ));
        }
        let total = HEADER + frame.len();
        let mut written = 0;
        if chain.writable_len() >= total as u64 {
            let mut hdr = [0u8; HEADER];
            hdr[10..12].copy_from_slice(&1u16.to_le_bytes()); // num_buffers
            let ok = chain.write_at(io.bus(), 0, &hdr).is_ok()
                && chain.write_at(io.bus(), HEADER as u64, frame).is_ok();
            if ok {
                written = total as u32;
                self.stats.rx_frames += 1;
            }
        }
        if written == 0 {
            self.stats.rx_dropped += 1;
        }
        io.push_used(RECEIVEQ, chain, written)
    }
}

impl Backend for Net {
    const DEVICE_ID: u32 = 1;
    const QUEUES: u16 = 2;

    fn features(&self) -> Features {
        features::MAC | features::STATUS
    }

    /// `mac: [u8; 6]` at 0, `status: le16` at 6 (§5.1.4).
    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; 8];
        c[..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&LINK_UP.to_le_bytes());
        c
    }

    fn work(&mut self, io: &mut QueueIo<'_>) -> Result<bool, ChainError> {
        if let Some(chain) = io.pop(TRANSMITQ)? {
            self.transmit(io, &chain)?;
            return Ok(true);
        }
        if self.rx_fifo.is_empty() || !io.has_available(RECEIVEQ)? {
            return Ok(false);
        }
        let Some(chain) = io.pop(RECEIVEQ)? else {
            return Ok(false);
        };
        // Taken only now that a chain holds it; a malformed chain loses
        // the frame as a device in error would.
        let frame = self.rx_fifo.pop_front().unwrap_or_default();
        self.deliver(io, &chain, &frame)?;
        Ok(true)
    }

    fn reset(&mut self) {
        self.rx_fifo.clear();
    }
}
