//! The driver's side of the Intel 8254x-family register file (8254x
//! Software Developer's Manual; QEMU's e1000 and e1000e models implement
//! the legacy subset): the control registers a polled legacy-descriptor
//! driver uses and the per-queue descriptor-ring registers.
//!
//! The legacy descriptors themselves ([`RxDesc`](dma_ring::nic::RxDesc),
//! [`TxDesc`](dma_ring::nic::TxDesc)) are `dma-ring`'s: they are ring
//! protocol.

use dma_core::DmaAddr;
use tock_registers::interfaces::Writeable;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    /// One descriptor ring's registers, laid out as the receive and
    /// transmit queue blocks (8254x SDM §13.4.27-31: `RDBAL`/`TDBAL` at +0,
    /// `*BAH` +4, `*LEN` +8, `*DH` +0x10, `*DT` +0x18; RX at 0x2800, TX at
    /// 0x3800 in BAR0).
    pub NicQueueRegs {
        /// Ring base address, low 32 bits.
        (0x00 => pub base_lo: ReadWrite<u32>),
        /// Ring base address, high 32 bits.
        (0x04 => pub base_hi: ReadWrite<u32>),
        /// Ring length in bytes (a multiple of 128).
        (0x08 => pub len: ReadWrite<u32>),
        (0x0c => _reserved0),
        /// Head: the next descriptor the device processes (device-owned).
        (0x10 => pub head: ReadWrite<u32>),
        (0x14 => _reserved1),
        /// Tail: one past the last descriptor given to the device.
        (0x18 => pub tail: ReadWrite<u32>),
        (0x1c => @END),
    }
}

static_assertions::const_assert_eq!(core::mem::size_of::<NicQueueRegs>(), 0x1c);

register_structs! {
    /// The start of BAR0 up to the first transmit queue: what a polled
    /// driver of legacy descriptors touches (8254x SDM §13.4: `CTRL` at 0,
    /// `STATUS` 0x8, `RCTL` 0x100, `TCTL` 0x400, receive queue 0 at 0x2800,
    /// transmit queue 0 at 0x3800).
    pub NicRegisters {
        /// Device control.
        (0x0000 => pub ctrl: ReadWrite<u32>),
        (0x0004 => _reserved0),
        /// Device status ([`STATUS_LU`]: link up).
        (0x0008 => pub status: ReadOnly<u32>),
        (0x000c => _reserved1),
        /// Receive control ([`RCTL_EN`]).
        (0x0100 => pub rctl: ReadWrite<u32>),
        (0x0104 => _reserved2),
        /// Transmit control ([`TCTL_EN`]).
        (0x0400 => pub tctl: ReadWrite<u32>),
        (0x0404 => _reserved3),
        /// Receive queue 0.
        (0x2800 => pub rx: NicQueueRegs),
        (0x281c => _reserved4),
        /// Transmit queue 0.
        (0x3800 => pub tx: NicQueueRegs),
        (0x381c => @END),
    }
}

static_assertions::const_assert_eq!(core::mem::size_of::<NicRegisters>(), 0x381c);

/// `RCTL.EN` (bit 1): the receiver is enabled (8254x SDM §13.4.22).
pub const RCTL_EN: u32 = 1 << 1;
/// `RCTL.LBM` = 01 (bits 7:6): MAC loopback, every transmitted frame is
/// received by this NIC and none goes out (a test mode).
pub const RCTL_LBM_MAC: u32 = 0b01 << 6;
/// `RCTL.BAM` (bit 15): accept broadcast frames.
pub const RCTL_BAM: u32 = 1 << 15;
/// `RCTL.BSEX` (bit 25): the `BSIZE` field counts 16 times larger.
pub const RCTL_BSEX: u32 = 1 << 25;
/// `RCTL.SECRC` (bit 26): strip the Ethernet CRC before the frame is
/// written, so the length the NIC reports is the frame's.
pub const RCTL_SECRC: u32 = 1 << 26;
/// `TCTL.EN` (bit 1): the transmitter is enabled (8254x SDM §13.4.33).
pub const TCTL_EN: u32 = 1 << 1;
/// `TCTL.PSP` (bit 3): pad frames shorter than 64 bytes (CRC included).
pub const TCTL_PSP: u32 = 1 << 3;

/// BAR0 offset of `RAL0`, the low half of receive address 0 (8254x SDM
/// §13.4.41); `RAH0` follows at +4. Outside [`NicRegisters`]: a driver
/// that only uses the address the NIC was given at reset never writes it.
pub const RAL0: usize = 0x5400;
/// `RAH.AV` (bit 31): the receive address is valid.
pub const RAH_AV: u32 = 1 << 31;

/// The MAC address in a `RAL`/`RAH` pair (the first byte in `RAL`'s low
/// byte), or `None` when `RAH.AV` is clear.
pub const fn receive_address(ral: u32, rah: u32) -> Option<[u8; 6]> {
    if rah & RAH_AV == 0 {
        return None;
    }
    let l = ral.to_le_bytes();
    let h = rah.to_le_bytes();
    Some([l[0], l[1], l[2], l[3], h[0], h[1]])
}

/// `RCTL.BSIZE`/`BSEX` for receive buffers of `bytes` bytes (8254x SDM
/// §13.4.22: 2048, 1024, 512 or 256 bytes, or with `BSEX` 16384, 8192 or
/// 4096), or `None` for a size the NIC cannot be told: it writes up to
/// `BSIZE` bytes into every buffer, so a buffer of any other size would be
/// overrun or half used.
pub const fn rctl_buffer_size(bytes: u16) -> Option<u32> {
    Some(match bytes {
        2048 => 0b00 << 16,
        1024 => 0b01 << 16,
        512 => 0b10 << 16,
        256 => 0b11 << 16,
        16384 => RCTL_BSEX | 0b01 << 16,
        8192 => RCTL_BSEX | 0b10 << 16,
        4096 => RCTL_BSEX | 0b11 << 16,
        _ => return None,
    })
}
/// `STATUS.LU` (bit 1): link up (8254x SDM §13.4.2).
pub const STATUS_LU: u32 = 1 << 1;

impl NicQueueRegs {
    /// Points the device at a ring of `bytes` bytes at `base`, with head and
    /// tail at 0 (the ring empty, as after reset).
    pub fn program(&self, base: DmaAddr, bytes: u32) {
        let base = base.as_u64();
        self.base_lo.set(base as u32);
        self.base_hi.set((base >> 32) as u32);
        self.len.set(bytes);
        self.head.set(0);
        self.tail.set(0);
    }
}

#[cfg(test)]
mod tests {
    use tock_registers::interfaces::Readable;

    use super::*;

    #[test]
    fn receive_address_reads_as_qemu_sets_it() {
        // QEMU's e1000e with mac=52:54:00:00:00:02 after reset.
        assert_eq!(
            receive_address(0x0000_5452, 0x8000_0200),
            Some([0x52, 0x54, 0, 0, 0, 2])
        );
        assert_eq!(receive_address(0x0000_5452, 0x0000_0200), None);
    }

    #[test]
    fn buffer_sizes_encode_as_the_sdm_table() {
        assert_eq!(rctl_buffer_size(2048), Some(0));
        assert_eq!(rctl_buffer_size(256), Some(0b11 << 16));
        assert_eq!(rctl_buffer_size(4096), Some(RCTL_BSEX | 0b11 << 16));
        assert_eq!(rctl_buffer_size(16384), Some(0x0201_0000));
        for bad in [0, 128, 1000, 1536, 32768] {
            assert_eq!(rctl_buffer_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn program_points_the_queue_at_the_ring_and_empties_it() {
        let mut block = [0xffff_ffffu32; 7];
        // SAFETY: 28 bytes, 4-aligned, live for the test; the register
        // types are UnsafeCell-based, so writing through `&` is fine.
        let regs: &NicQueueRegs = unsafe { &*block.as_mut_ptr().cast::<NicQueueRegs>() };
        regs.program(DmaAddr::new(0x1_2345_6000), 256);
        assert_eq!(regs.base_lo.get(), 0x2345_6000);
        assert_eq!(regs.base_hi.get(), 1);
        assert_eq!(
            (regs.len.get(), regs.head.get(), regs.tail.get()),
            (256, 0, 0)
        );
    }
}
