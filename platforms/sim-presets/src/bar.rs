//! The sim's register blocks, as the drivers see them.
//!
//! A simulated device's registers live in host memory as the device
//! model's own tock-registers struct (its independent reading of the
//! spec); a driver reaches them through `dma-drivers`' driver-side struct,
//! exactly as it would a BAR mapped as Device memory. The two structs are
//! separate on purpose, so these functions are the one place where one is
//! seen as the other, with the layout they must share asserted at compile
//! time.

use core::mem::{offset_of, size_of};

use dma_drivers::nic::spec::{NicQueueRegs, NicRegisters as DriverNic};
use dma_drivers::nvme::Controller;
use dma_drivers::DriverError;
use dma_sim::nic::NicRegisters as SimNic;
use dma_sim::nvme::NvmeRegisters;
use dma_sim::Mmio;

// The NIC registers the driver uses sit where the model keeps them.
const _: () = {
    assert!(size_of::<SimNic>() == size_of::<DriverNic>());
    assert!(offset_of!(SimNic, ctrl) == offset_of!(DriverNic, ctrl));
    assert!(offset_of!(SimNic, status) == offset_of!(DriverNic, status));
    assert!(offset_of!(SimNic, rctl) == offset_of!(DriverNic, rctl));
    assert!(offset_of!(SimNic, tctl) == offset_of!(DriverNic, tctl));
    let rx = offset_of!(DriverNic, rx);
    assert!(offset_of!(SimNic, rdbal) == rx + offset_of!(NicQueueRegs, base_lo));
    assert!(offset_of!(SimNic, rdbah) == rx + offset_of!(NicQueueRegs, base_hi));
    assert!(offset_of!(SimNic, rdlen) == rx + offset_of!(NicQueueRegs, len));
    assert!(offset_of!(SimNic, rdh) == rx + offset_of!(NicQueueRegs, head));
    assert!(offset_of!(SimNic, rdt) == rx + offset_of!(NicQueueRegs, tail));
    let tx = offset_of!(DriverNic, tx);
    assert!(offset_of!(SimNic, tdbal) == tx + offset_of!(NicQueueRegs, base_lo));
    assert!(offset_of!(SimNic, tdbah) == tx + offset_of!(NicQueueRegs, base_hi));
    assert!(offset_of!(SimNic, tdlen) == tx + offset_of!(NicQueueRegs, len));
    assert!(offset_of!(SimNic, tdh) == tx + offset_of!(NicQueueRegs, head));
    assert!(offset_of!(SimNic, tdt) == tx + offset_of!(NicQueueRegs, tail));
};

/// `dma-drivers`' view of a simulated NVMe controller's register block:
/// the block is laid out as BAR0 (registers, then doorbells from 0x1000).
///
/// # Errors
///
/// [`DriverError::Unsupported`] when the model's CAP lacks what the
/// driver needs (the NVM command set, 4 KiB pages).
///
/// # Example
///
/// ```
/// use dma_core::{DeviceConstraints, DmaBuf};
/// use dma_drivers::nvme::{prp_pools, NvmeBlockDriver, NvmeDriverConfig};
/// use dma_sim_presets::{nvme_controller, Stepping};
/// use dma_sim::nvme::{NvmeConfig, NvmeController};
/// use dma_sim::{Sim, SimConfig};
///
/// let sim = Sim::new(SimConfig::non_coherent().seed(42))?;
/// let dev = sim.add_device("nvme0");
/// let platform = dma_check::Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
/// let ctrl = NvmeController::new(sim.bus(dev), NvmeConfig::default())?;
/// let regs = ctrl.registers(); // the register block in RAM
/// let regs = nvme_controller(&regs)?; // the BAR, as the driver sees it
///
/// let pools = prp_pools(&platform)?; // PRP list memory
/// let mut disk = NvmeBlockDriver::start(&regs, &platform, &pools, Stepping::new(ctrl), NvmeDriverConfig::default())?;
/// assert_eq!(disk.identity().block_size, 512);
///
/// let mut out = DmaBuf::for_device(&platform, 8192)?; // 16 blocks, PRP1 + PRP2
/// out.copy_from_slice(&[0xa5; 8192]);
/// let out = disk.write(100, out)?;       // mapped (cleaned), written, unmapped
/// disk.flush()?;
/// let back = disk.read(100, DmaBuf::for_device(&platform, 8192)?)?; // invalidated on unmap
/// assert_eq!(back[..], out[..]);
/// disk.shutdown()?;
/// assert!(sim.reports().is_empty() && platform.reports().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn nvme_controller(regs: &Mmio<NvmeRegisters>) -> Result<Controller<'_>, DriverError> {
    let bar = core::ptr::NonNull::from(&**regs).cast::<u8>();
    // The block's cells are `UnsafeCell`s, so writing through a pointer
    // derived from `&` is allowed, and the device model reaches them only
    // with volatile accesses of whole registers, as hardware would.
    // SAFETY: a boxed `#[repr(C)]` block of `size_of::<NvmeRegisters>()` bytes with BAR0's layout
    // (properties at 0x00..0x38, doorbells from 0x1000), kept alive by the borrowed `Mmio`.
    unsafe { Controller::new(bar, size_of::<NvmeRegisters>()) }
}

/// `dma-drivers`' view of a simulated NIC's register block, for
/// [`NicDriver`](dma_drivers::nic::NicDriver).
///
/// # Example
///
/// ```
/// use dma_core::{DeviceConstraints, DmaBuf};
/// use dma_drivers::nic::{NicDriver, NicDriverConfig};
/// use dma_sim_presets::{nic_registers, Stepping};
/// use dma_sim::nic::{Nic, NicConfig};
/// use dma_sim::{Sim, SimConfig};
///
/// let sim = Sim::new(SimConfig::non_coherent().seed(9))?;
/// let dev = sim.add_device("eth0");
/// let platform = dma_check::Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
/// let nic = Nic::new(sim.bus(dev), NicConfig { loopback: true, ..NicConfig::default() });
/// let regs = nic.registers(); // the model's block in RAM
/// let regs = nic_registers(&regs); // BAR0, as the driver sees it
/// let mut eth = NicDriver::start(regs, &platform, Stepping::new(nic), NicDriverConfig::default())?;
///
/// let mut frame = DmaBuf::for_device(&platform, 60)?;
/// frame.copy_from_slice(&[0x42; 60]);
/// eth.send(frame)?;                 // mapped, cleaned, TX descriptor, tail
/// let sent = eth.wait_sent()?;      // DD written back: the buffer is ours again
/// assert!(sent.result.is_ok());
/// let echoed = eth.wait_frame()?;   // looped back into a recycled RX buffer
/// assert_eq!(echoed, vec![0x42; 60]);
/// drop(eth);
/// assert!(sim.reports().is_empty() && platform.reports().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn nic_registers(regs: &Mmio<SimNic>) -> &DriverNic {
    let block: *const SimNic = &**regs;
    // Both types are `#[repr(C)]` tock-registers structs of the same size,
    // every register the driver's struct names sits at the same offset in
    // the model's (both asserted above), and both are made only of
    // `UnsafeCell<u32>` registers and padding. Both sides access the cells
    // only with volatile reads and writes of whole registers.
    // SAFETY: so every bit pattern of one is a valid other, and shared references to the cells
    // alias soundly; the reference borrows `regs`, which keeps the boxed block alive and in place.
    unsafe { &*block.cast::<DriverNic>() }
}
