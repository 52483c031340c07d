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
pub fn nvme_controller(regs: &Mmio<NvmeRegisters>) -> Result<Controller<'_>, DriverError> {
    let bar = core::ptr::NonNull::from(&**regs).cast::<u8>();
    // SAFETY: the block is a boxed `#[repr(C)]` struct of tock-registers
    // cells, `size_of::<NvmeRegisters>()` bytes with BAR0's layout (the
    // properties at 0x00..0x38, doorbells from 0x1000), kept alive by the
    // borrowed `Mmio` for the controller's lifetime. Its cells are
    // `UnsafeCell`s, so writing through a pointer derived from `&` is
    // allowed, and the device model reaches them only with volatile
    // accesses of whole registers, as hardware would.
    unsafe { Controller::new(bar, size_of::<NvmeRegisters>()) }
}

/// `dma-drivers`' view of a simulated NIC's register block, for
/// [`NicDriver`](dma_drivers::nic::NicDriver).
pub fn nic_registers(regs: &Mmio<SimNic>) -> &DriverNic {
    let block: *const SimNic = &**regs;
    // SAFETY: both types are `#[repr(C)]` tock-registers structs of the
    // same size (asserted above), every register the driver's struct names
    // sits at the same offset in the model's (asserted above), and both are
    // made only of `UnsafeCell<u32>` registers and padding, so every bit
    // pattern of one is a valid other. The reference borrows `regs`, which
    // keeps the boxed block alive and in place; shared references to
    // `UnsafeCell`s alias soundly, and both sides access the cells only
    // with volatile reads and writes of whole registers.
    unsafe { &*block.cast::<DriverNic>() }
}
