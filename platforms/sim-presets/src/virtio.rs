//! The sim's virtio-mmio devices, as `dma-drivers`' virtio transports
//! reach them.
//!
//! A simulated virtio-mmio device acts on every register access (select
//! registers, `QueueNotify`, `Status` writes that reset or negotiate), so
//! it is not a block of RAM the driver could be pointed at: each access of
//! the driver's [`RegisterIo`] becomes a call into the model.

use dma_drivers::virtio::transport::mmio::MmioTransport;
use dma_drivers::virtio::transport::RegisterIo;
use dma_drivers::DriverError;
use dma_sim::virtio::{regs, Backend, VirtioMmio};

/// A simulated virtio-mmio device's register window: the 0x100 bytes of
/// registers, then its configuration space.
///
/// The model answers 32-bit accesses; 8- and 16-bit reads are taken from
/// the aligned word around them (the driver makes them only in the
/// configuration space, §4.2.2.2). Narrower writes are dropped: the spec
/// allows only 32-bit writes to the registers, and the models' block and
/// network configuration spaces have no field a driver writes.
#[derive(Debug)]
pub struct SimVirtioWindow<B> {
    device: VirtioMmio<B>,
    size: usize,
}

impl<B> Clone for SimVirtioWindow<B> {
    /// Another window onto the same device.
    fn clone(&self) -> Self {
        Self {
            device: self.device.clone(),
            size: self.size,
        }
    }
}

impl<B: Backend> SimVirtioWindow<B> {
    /// The window of `device` (a handle: the same device).
    pub fn new(device: &VirtioMmio<B>) -> Self {
        Self {
            device: device.clone(),
            size: regs::CONFIG + device.config_len().next_multiple_of(4),
        }
    }

    fn word(&self, offset: usize) -> Option<u32> {
        let aligned = offset & !3;
        (aligned + 4 <= self.size).then(|| self.device.read(aligned))
    }
}

impl<B: Backend> RegisterIo for SimVirtioWindow<B> {
    fn size(&self) -> usize {
        self.size
    }

    fn read8(&self, offset: usize) -> u8 {
        self.word(offset)
            .map_or(u8::MAX, |w| (w >> (8 * (offset & 3))) as u8)
    }

    fn read16(&self, offset: usize) -> u16 {
        match self.word(offset) {
            Some(w) if offset % 2 == 0 => (w >> (8 * (offset & 2))) as u16,
            _ => u16::MAX,
        }
    }

    fn read32(&self, offset: usize) -> u32 {
        match self.word(offset) {
            Some(w) if offset % 4 == 0 => w,
            _ => u32::MAX,
        }
    }

    fn write8(&self, _offset: usize, _value: u8) {}

    fn write16(&self, _offset: usize, _value: u16) {}

    fn write32(&self, offset: usize, value: u32) {
        if offset % 4 == 0 && offset + 4 <= self.size {
            self.device.write(offset, value);
        }
    }
}

/// `dma-drivers`' virtio-mmio transport over a simulated device.
///
/// # Errors
///
/// As [`MmioTransport::new`] (never, for the sim's models).
///
/// # Example
///
/// ```
/// use dma_core::{DeviceConstraints, DmaBuf};
/// use dma_drivers::virtio::transport::VirtioOptions;
/// use dma_drivers::virtio::VirtioBlk;
/// use dma_sim::virtio::{blk::Blk, VirtioConfig, VirtioMmio};
/// use dma_sim::{Sim, SimConfig};
/// use dma_sim_presets::{virtio_mmio, Stepping};
///
/// let sim = Sim::new(SimConfig::non_coherent().seed(3))?;
/// let dev = sim.add_device("vda");
/// let platform = dma_check::Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
/// let disk = VirtioMmio::new(sim.bus(dev), Blk::new(64, false), VirtioConfig::default());
/// let mut vda = VirtioBlk::start(virtio_mmio(&disk)?, &platform, Stepping::new(disk.clone()), VirtioOptions::default())?;
///
/// let mut out = DmaBuf::for_device(&platform, 1024)?;
/// out.copy_from_slice(&[0x5a; 1024]);
/// let out = vda.write(4, out)?; // two sectors
/// assert!(disk.with_backend(|b| b.disk()[4 * 512..6 * 512].iter().all(|&x| x == 0x5a)));
/// let back = vda.read(4, DmaBuf::for_device(&platform, 1024)?)?;
/// assert_eq!(back[..], out[..]);
/// vda.shutdown()?;
/// assert!(sim.reports().is_empty() && platform.reports().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn virtio_mmio<B: Backend>(
    device: &VirtioMmio<B>,
) -> Result<MmioTransport<SimVirtioWindow<B>>, DriverError> {
    MmioTransport::new(SimVirtioWindow::new(device))
}
