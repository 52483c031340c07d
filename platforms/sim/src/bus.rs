//! A device's port onto the machine's memory.

use dma_core::DmaAddr;

use crate::machine::DeviceData;
use crate::{DeviceId, Fault, Sim};

/// What a simulated device uses to do DMA: every access is translated
/// (directly or through the IOMMU), checked against the regions live for
/// the device, and moved through the device's view of memory (RAM behind
/// the cache model on a non-coherent machine). A refused access is
/// recorded as a [`Fault`] and nothing of it reaches memory.
///
/// Each access is ordered after the previous one (a release fence before
/// host writes, an acquire fence after host reads), so a device that
/// writes an entry and then its flag in two accesses is seen in that order.
#[derive(Clone, Debug)]
pub struct Bus {
    pub(crate) sim: Sim,
    pub(crate) device: DeviceId,
}

impl Bus {
    /// The device this port belongs to.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The machine.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Reads `buf.len()` bytes at device address `addr`.
    ///
    /// # Errors
    ///
    /// The [`Fault`] that refused the access (also recorded); `buf` is then
    /// left unchanged.
    pub fn read(&self, addr: DmaAddr, buf: &mut [u8]) -> Result<(), Fault> {
        let device = self.device;
        self.sim
            .machine
            .with(|s, cfg| s.device_access(cfg, device, addr.as_u64(), DeviceData::Read(buf)))
    }

    /// Writes `data` at device address `addr`.
    ///
    /// # Errors
    ///
    /// The [`Fault`] that refused the access (also recorded); nothing was
    /// written.
    pub fn write(&self, addr: DmaAddr, data: &[u8]) -> Result<(), Fault> {
        let device = self.device;
        self.sim
            .machine
            .with(|s, cfg| s.device_access(cfg, device, addr.as_u64(), DeviceData::Write(data)))
    }

    /// Writes `first` at `a`, then (if that was allowed) `second` at `b`,
    /// under one hold of the machine: the same two accesses, in the same
    /// order, as two [`write`](Self::write)s (a completion entry, then its
    /// phase word).
    pub(crate) fn write_then(
        &self,
        (a, first): (DmaAddr, &[u8]),
        (b, second): (DmaAddr, &[u8]),
    ) -> Result<(), Fault> {
        let device = self.device;
        self.sim.machine.with(|s, cfg| {
            s.device_access(cfg, device, a.as_u64(), DeviceData::Write(first))?;
            if s.will_panic() {
                // Two writes would raise the first one's report before the
                // second: so does this.
                return Ok(());
            }
            s.device_access(cfg, device, b.as_u64(), DeviceData::Write(second))
        })
    }

    /// Reads a little-endian `u32`.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    pub fn read_u32(&self, addr: DmaAddr) -> Result<u32, Fault> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64`.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    pub fn read_u64(&self, addr: DmaAddr) -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u32`.
    ///
    /// # Errors
    ///
    /// As for [`write`](Self::write).
    pub fn write_u32(&self, addr: DmaAddr, value: u32) -> Result<(), Fault> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Writes a little-endian `u64`.
    ///
    /// # Errors
    ///
    /// As for [`write`](Self::write).
    pub fn write_u64(&self, addr: DmaAddr, value: u64) -> Result<(), Fault> {
        self.write(addr, &value.to_le_bytes())
    }
}
