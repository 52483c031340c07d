//! A NIC with RX and TX descriptor rings, head/tail registers and
//! descriptor-done write-back, modelled on the Intel 8254x (e1000) legacy
//! descriptors and register offsets (PCI/PCI-X Family of Gigabit Ethernet
//! Controllers Software Developer's Manual, §3.2.3, §3.3.3, §13).
//!
//! # Programming model
//!
//! - Rings are arrays of 16-byte descriptors in DMA memory; the driver
//!   writes `rdba`/`tdba` (base), `rdlen`/`tdlen` (bytes, a multiple of
//!   16), enables with `rctl`/`tctl` bit 1 (EN), and produces descriptors by
//!   advancing the tail (`rdt`, `tdt`). The NIC consumes from the head
//!   (`rdh`, `tdh`), which it advances, and the ring is empty when head
//!   equals tail.
//! - TX ([`TxDescriptor`]): the NIC reads `length` bytes at `addr` and
//!   appends them to the frame; `cmd` EOP ends the frame; with `cmd` RS it
//!   writes `status` DD back when done.
//! - RX ([`RxDescriptor`]): the NIC writes a received frame (at most
//!   [`NicConfig::rx_buffer_size`] bytes per descriptor, spilling into the
//!   next ones), then `length`, `errors` and `status` DD (plus EOP on the
//!   last) in one write-back, status last.
//! - Frames come from [`Nic::receive`] or from TX in loopback mode; sent
//!   frames are taken with [`Nic::take_transmitted`].

use std::collections::VecDeque;

use dma_core::DmaAddr;
use static_assertions::{assert_eq_size, const_assert_eq};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

use crate::device::{Delayed, Injection};
use crate::rng::SplitMix64;
use crate::{Bus, Device, Mmio, RegisterBlock, Step};

/// Legacy transmit descriptor (e1000 manual §3.3.3, Table 3-8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TxDescriptor {
    /// Buffer address.
    pub addr: u64,
    /// Bytes to send from the buffer.
    pub length: u16,
    /// Checksum offset (unused by the model).
    pub cso: u8,
    /// Command: [`tx_cmd`] bits.
    pub cmd: u8,
    /// Status: [`tx_status`] bits, written back by the NIC.
    pub status: u8,
    /// Checksum start (unused).
    pub css: u8,
    /// VLAN tag (unused).
    pub special: u16,
}

/// Legacy receive descriptor (e1000 manual §3.2.3, Table 3-1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RxDescriptor {
    /// Buffer address.
    pub addr: u64,
    /// Bytes received into the buffer (written back).
    pub length: u16,
    /// Packet checksum (written back as 0).
    pub checksum: u16,
    /// Status: [`rx_status`] bits (written back).
    pub status: u8,
    /// Errors: [`rx_errors`] bits (written back).
    pub errors: u8,
    /// VLAN tag (unused).
    pub special: u16,
}

assert_eq_size!(TxDescriptor, [u8; 16]);
assert_eq_size!(RxDescriptor, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(TxDescriptor, length), 8);
const_assert_eq!(core::mem::offset_of!(TxDescriptor, cmd), 11);
const_assert_eq!(core::mem::offset_of!(TxDescriptor, status), 12);
const_assert_eq!(core::mem::offset_of!(RxDescriptor, length), 8);
const_assert_eq!(core::mem::offset_of!(RxDescriptor, status), 12);
const_assert_eq!(core::mem::offset_of!(RxDescriptor, errors), 13);

/// TX command bits (e1000 manual Table 3-10).
pub mod tx_cmd {
    /// End of packet.
    pub const EOP: u8 = 1 << 0;
    /// Report status: write DD back.
    pub const RS: u8 = 1 << 3;
}

/// TX status bits (e1000 manual Table 3-11).
pub mod tx_status {
    /// Descriptor done.
    pub const DD: u8 = 1 << 0;
    /// Excess collisions (used for injected errors).
    pub const EC: u8 = 1 << 1;
}

/// RX status bits (e1000 manual Table 3-2).
pub mod rx_status {
    /// Descriptor done.
    pub const DD: u8 = 1 << 0;
    /// End of packet.
    pub const EOP: u8 = 1 << 1;
}

/// RX error bits (e1000 manual Table 3-3).
pub mod rx_errors {
    /// CRC error (used for injected errors).
    pub const CE: u8 = 1 << 0;
}

register_structs! {
    /// The NIC's registers at e1000 offsets (manual §13.4). The driver
    /// writes the control, base, length and tail registers; the NIC writes
    /// `status` and the heads.
    pub NicRegisters {
        /// Device control (unused by the model).
        (0x0000 => pub ctrl: ReadWrite<u32>),
        (0x0004 => _reserved0),
        /// Device status: bit 1 (LU) link up.
        (0x0008 => pub status: ReadWrite<u32>),
        (0x000c => _reserved1),
        /// Receive control: bit 1 EN.
        (0x0100 => pub rctl: ReadWrite<u32>),
        (0x0104 => _reserved2),
        /// Transmit control: bit 1 EN.
        (0x0400 => pub tctl: ReadWrite<u32>),
        (0x0404 => _reserved3),
        /// RX descriptor base, low 32 bits.
        (0x2800 => pub rdbal: ReadWrite<u32>),
        /// RX descriptor base, high 32 bits.
        (0x2804 => pub rdbah: ReadWrite<u32>),
        /// RX ring length in bytes.
        (0x2808 => pub rdlen: ReadWrite<u32>),
        (0x280c => _reserved4),
        /// RX head (NIC-owned).
        (0x2810 => pub rdh: ReadWrite<u32>),
        (0x2814 => _reserved5),
        /// RX tail (driver-owned).
        (0x2818 => pub rdt: ReadWrite<u32>),
        (0x281c => _reserved6),
        /// TX descriptor base, low 32 bits.
        (0x3800 => pub tdbal: ReadWrite<u32>),
        /// TX descriptor base, high 32 bits.
        (0x3804 => pub tdbah: ReadWrite<u32>),
        /// TX ring length in bytes.
        (0x3808 => pub tdlen: ReadWrite<u32>),
        (0x380c => _reserved7),
        /// TX head (NIC-owned).
        (0x3810 => pub tdh: ReadWrite<u32>),
        (0x3814 => _reserved8),
        /// TX tail (driver-owned).
        (0x3818 => pub tdt: ReadWrite<u32>),
        (0x381c => @END),
    }
}

// SAFETY: a repr(C) struct of integer registers, valid when zeroed.
unsafe impl RegisterBlock for NicRegisters {}

/// `rctl`/`tctl` bit 1.
pub const CTL_EN: u32 = 1 << 1;
/// `status` bit 1: link up.
pub const STATUS_LU: u32 = 1 << 1;

/// How the NIC is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicConfig {
    /// Bytes the NIC writes into one RX buffer (e1000 RCTL.BSIZE).
    pub rx_buffer_size: u16,
    /// Sent frames are received again.
    pub loopback: bool,
    /// Frames held while no RX descriptor is free; more are dropped.
    pub rx_fifo_frames: usize,
}

impl Default for NicConfig {
    fn default() -> Self {
        Self {
            rx_buffer_size: 2048,
            loopback: false,
            rx_fifo_frames: 64,
        }
    }
}

/// The NIC's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames written into RX buffers.
    pub rx_frames: u64,
    /// Frames dropped for want of RX descriptors or FIFO room.
    pub rx_dropped: u64,
    /// Bytes moved in either direction.
    pub bytes: u64,
    /// Descriptors whose buffer access faulted.
    pub faults: u64,
}

/// The NIC model.
#[derive(Debug)]
pub struct Nic {
    bus: Bus,
    regs: Mmio<NicRegisters>,
    config: NicConfig,
    rx_fifo: VecDeque<Vec<u8>>,
    rx_partial: Option<(Vec<u8>, usize)>,
    tx_frame: Vec<u8>,
    transmitted: VecDeque<Vec<u8>>,
    steps: u64,
    injections: VecDeque<Injection>,
    delayed: Delayed<(DmaAddr, [u8; 8])>,
    rng: SplitMix64,
    stats: NicStats,
}

impl Nic {
    /// A NIC doing DMA through `bus`, link up.
    pub fn new(bus: Bus, config: NicConfig) -> Self {
        let regs = Mmio::<NicRegisters>::new_zeroed();
        regs.status.set(STATUS_LU);
        let seed = bus.sim().config().seed_value() ^ (u64::from(bus.device().index()) << 32);
        Self {
            bus,
            regs,
            config,
            rx_fifo: VecDeque::new(),
            rx_partial: None,
            tx_frame: Vec::new(),
            transmitted: VecDeque::new(),
            steps: 0,
            injections: VecDeque::new(),
            delayed: Delayed::default(),
            rng: SplitMix64::new(seed),
            stats: NicStats::default(),
        }
    }

    /// The register block, for the driver.
    pub fn registers(&self) -> Mmio<NicRegisters> {
        self.regs.clone()
    }

    /// A frame arrives from the wire; false if the FIFO is full (dropped).
    pub fn receive(&mut self, frame: &[u8]) -> bool {
        if self.rx_fifo.len() >= self.config.rx_fifo_frames || frame.is_empty() {
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

    /// Queues a fault for the next descriptor processed (RX or TX).
    pub fn inject(&mut self, injection: Injection) {
        self.injections.push_back(injection);
    }

    /// The counters.
    pub fn stats(&self) -> NicStats {
        self.stats
    }

    fn ring(base_lo: u32, base_hi: u32, len: u32) -> Option<(u64, u32)> {
        let base = u64::from(base_lo) | u64::from(base_hi) << 32;
        (len >= 16 && len % 16 == 0 && base % 16 == 0).then_some((base, len / 16))
    }

    /// Writes back bytes 8-15 of a descriptor (length/flags first, then
    /// the status byte, so DD is seen last), honouring an injection.
    fn write_back(&mut self, desc: DmaAddr, mut tail: [u8; 8], injection: Option<Injection>) {
        match injection {
            Some(Injection::DropCompletion) => return,
            Some(Injection::DelayCompletion { steps }) => {
                self.delayed
                    .push(self.steps + u64::from(steps), (desc, tail));
                return;
            }
            Some(Injection::GarbageCompletion) => {
                self.rng.fill(&mut tail);
                tail[4] |= 1; // DD: it looks done
            }
            _ => {}
        }
        let first = DmaAddr::new(desc.as_u64() + 8);
        let status = DmaAddr::new(desc.as_u64() + 12);
        let _ = self.bus.write(first, &tail[..4]);
        let _ = self.bus.write(status, &tail[4..]);
    }

    fn step_tx(&mut self) -> bool {
        if self.regs.tctl.get() & CTL_EN == 0 {
            return false;
        }
        let Some((base, count)) = Self::ring(
            self.regs.tdbal.get(),
            self.regs.tdbah.get(),
            self.regs.tdlen.get(),
        ) else {
            return false;
        };
        let (head, tail) = (self.regs.tdh.get(), self.regs.tdt.get());
        if head == tail || head >= count || tail >= count {
            return false;
        }
        let desc = DmaAddr::new(base + u64::from(head) * 16);
        let mut raw = [0u8; 16];
        if self.bus.read(desc, &mut raw).is_err() {
            return false; // the ring itself is unreachable: stall
        }
        let addr = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
        let length = u16::from_le_bytes([raw[8], raw[9]]);
        let cmd = raw[11];
        let injection = self.injections.pop_front();
        let mut status = tx_status::DD;
        let start = self.tx_frame.len();
        self.tx_frame.resize(start + usize::from(length), 0);
        let read = self
            .bus
            .read(DmaAddr::new(addr), &mut self.tx_frame[start..]);
        if read.is_err() || injection == Some(Injection::Error) {
            self.tx_frame.truncate(start);
            status |= tx_status::EC;
            self.stats.faults += u64::from(read.is_err());
        } else {
            self.stats.bytes += u64::from(length);
        }
        if cmd & tx_cmd::EOP != 0 {
            let frame = std::mem::take(&mut self.tx_frame);
            if status & tx_status::EC == 0 && !frame.is_empty() {
                self.stats.tx_frames += 1;
                if self.config.loopback {
                    self.receive(&frame);
                } else {
                    self.transmitted.push_back(frame);
                }
            }
        }
        if cmd & tx_cmd::RS != 0 {
            let mut wb = [0u8; 8];
            wb[..4].copy_from_slice(&raw[8..12]);
            wb[4] = status;
            self.write_back(desc, wb, injection);
        }
        self.regs.tdh.set((head + 1) % count);
        true
    }

    fn step_rx(&mut self) -> bool {
        if self.regs.rctl.get() & CTL_EN == 0 {
            return false;
        }
        let Some((base, count)) = Self::ring(
            self.regs.rdbal.get(),
            self.regs.rdbah.get(),
            self.regs.rdlen.get(),
        ) else {
            return false;
        };
        let (head, tail) = (self.regs.rdh.get(), self.regs.rdt.get());
        if head >= count || tail >= count {
            return false;
        }
        if self.rx_partial.is_none() {
            let Some(frame) = self.rx_fifo.pop_front() else {
                return false;
            };
            self.rx_partial = Some((frame, 0));
        }
        if head == tail {
            // No buffer: a frame not yet started is dropped, as a NIC
            // with a full FIFO drops (RX missed).
            if let Some((_, 0)) = self.rx_partial {
                self.rx_partial = None;
                self.stats.rx_dropped += 1;
                return true;
            }
            return false;
        }
        let desc = DmaAddr::new(base + u64::from(head) * 16);
        let Ok(addr) = self.bus.read_u64(desc) else {
            return false;
        };
        let Some((frame, done)) = self.rx_partial.take() else {
            return false;
        };
        let n = (frame.len() - done).min(usize::from(self.config.rx_buffer_size));
        let injection = self.injections.pop_front();
        let mut errors = 0u8;
        if injection == Some(Injection::Error) {
            errors |= rx_errors::CE;
        } else if self
            .bus
            .write(DmaAddr::new(addr), &frame[done..done + n])
            .is_err()
        {
            errors |= rx_errors::CE;
            self.stats.faults += 1;
        } else {
            self.stats.bytes += n as u64;
        }
        let last = done + n == frame.len();
        let mut wb = [0u8; 8];
        wb[..2].copy_from_slice(&(n as u16).to_le_bytes());
        wb[4] = rx_status::DD | if last { rx_status::EOP } else { 0 };
        wb[5] = errors;
        self.write_back(desc, wb, injection);
        if last {
            self.stats.rx_frames += 1;
        } else {
            self.rx_partial = Some((frame, done + n));
        }
        self.regs.rdh.set((head + 1) % count);
        true
    }
}

impl Device for Nic {
    fn step(&mut self) -> Step {
        self.steps += 1;
        if let Some((desc, wb)) = self.delayed.pop_due(self.steps) {
            self.write_back(desc, wb, None);
            return Step::Progress;
        }
        let tx = self.step_tx();
        let rx = self.step_rx();
        if tx || rx || !self.delayed.is_empty() {
            Step::Progress
        } else {
            Step::Idle
        }
    }
}
