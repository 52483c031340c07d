//! Board bring-up: what every test in the image starts from.
//!
//! This is the API the NVMe tests call: [`Board::bring_up`] returns the
//! board with the MMU on, the NVMe controller found with its BAR assigned
//! (and still disabled), and the SMMU initialised with translation off.

use alloc::format;
use alloc::string::String;
use core::cell::RefCell;
use core::ptr::NonNull;

use dma_drivers::nvme::Controller;
use dma_drivers::virtio::transport::pci::PciTransport;
use dma_drivers::virtio::transport::MmioWindow as RegisterWindow;
use dma_drivers::DriverError;
use dma_qemu_virt::memmap::{
    ECAM_BASE, NVME_DEVICE_ID, NVME_VENDOR_ID, PCI_MMIO32_BASE, PCI_MMIO32_SIZE, SMMU_BASE,
};
use dma_qemu_virt::memory::BoardMemory;
use dma_qemu_virt::pci::{self, AssignedBar, Ecam, Function, MmioWindow};
use dma_qemu_virt::smmu::{Smmu, SmmuConfig, SmmuIommu};
use dma_qemu_virt::timer::GenericTimer;
use dma_qemu_virt::{BoardError, Result};

/// The board's DMA memory (page pools under the identity map).
// SAFETY: the identity map covers the pools (it is turned on before any
// allocation), nothing else uses the pool regions, and this is the only
// BoardMemory.
pub static MEMORY: BoardMemory = unsafe { BoardMemory::qemu_virt() };

/// The board, brought up.
pub struct Board {
    /// The timer every wait is measured on.
    pub clock: GenericTimer,
    /// DMA pages and address translation.
    pub memory: &'static BoardMemory,
    /// The NVMe controller's PCI function.
    pub nvme_function: Function,
    /// Its BAR0.
    pub nvme_bar: AssignedBar,
    /// The controller, disabled.
    pub nvme: Controller<'static>,
    /// The SMMU (queues on, every stream aborting, translation off), behind
    /// the lock that lets `dma-iommu` drive it.
    pub smmu: SmmuIommu<&'static BoardMemory, GenericTimer>,
    /// Configuration space and what is left of the 32-bit BAR window, for
    /// the devices set up after bring-up.
    pci: RefCell<(Ecam, MmioWindow)>,
}

/// A PCI function found and given its memory BARs.
pub struct PciDevice {
    /// Where it is.
    pub function: Function,
    /// Its memory BARs by index, those asked for assigned.
    pub bars: [Option<AssignedBar>; 6],
}

impl PciDevice {
    /// Its SMMU StreamID (its PCI routing id).
    pub fn stream_id(&self) -> u32 {
        u32::from(self.function.bdf.routing_id())
    }
}

impl Board {
    /// Finds the first function on bus 0 that is `wanted` and assigns its
    /// memory BARs `bars` (memory decoding and bus mastering on).
    ///
    /// # Errors
    ///
    /// [`BoardError::NotFound`] naming `what` when no function is wanted;
    /// the BAR assignment's errors.
    pub fn pci_device(
        &self,
        what: &'static str,
        wanted: impl Fn(&Function) -> bool,
        bars: &[u8],
    ) -> Result<PciDevice> {
        let mut pci = self.pci.borrow_mut();
        let (cfg, window) = &mut *pci;
        let function = pci::find(cfg, wanted).ok_or(BoardError::NotFound(what))?;
        let mut assigned = [None; 6];
        for &bar in bars {
            let slot = assigned
                .get_mut(usize::from(bar))
                .ok_or(BoardError::InvalidArgument(
                    "a type 0 header has BARs 0..=5",
                ))?;
            *slot = Some(pci::assign_memory_bar(cfg, function.bdf, bar, window)?);
        }
        Ok(PciDevice {
            function,
            bars: assigned,
        })
    }

    /// `dma-drivers`' modern virtio-pci transport for `dev`: its
    /// capabilities walked in ECAM, its structures reached in the BARs
    /// assigned (BAR4 on QEMU).
    ///
    /// # Errors
    ///
    /// The transport's: not a modern virtio function, a capability naming
    /// a BAR not assigned, or pointing past its end.
    pub fn virtio_transport(
        &self,
        dev: &PciDevice,
    ) -> core::result::Result<PciTransport<RegisterWindow<'static>>, DriverError> {
        let pci = self.pci.borrow();
        let config = pci.0.function(dev.function.bdf);
        PciTransport::new(&config, |index| {
            let bar = (*dev.bars.get(usize::from(index))?)?;
            let base = NonNull::new(bar.addr as *mut u8)?;
            // SAFETY: an assigned BAR, Device-nGnRE in the identity map with
            // decoding on: `size` bytes of registers only this transport
            // reaches, by volatile accesses, for the rest of the run.
            Some(unsafe { RegisterWindow::new(base, bar.size as usize) })
        })
    }

    /// The NVMe controller's SMMU StreamID (its PCI routing id).
    pub fn nvme_stream_id(&self) -> u32 {
        u32::from(self.nvme_function.bdf.routing_id())
    }

    /// Turns on the MMU and caches, then finds and sets up the devices.
    /// Each step's outcome goes to `step` (name, detail or error) so the
    /// suite can report it.
    ///
    /// # Errors
    ///
    /// The first failing step's error.
    pub fn bring_up(mut step: impl FnMut(&str, Result<String>)) -> Result<Self> {
        // SAFETY: called once from image_main, at EL1 with the MMU off,
        // before anything depends on memory types.
        unsafe { dma_qemu_virt::mmu::enable_identity_map() };
        // SAFETY: once, with the identity map on, before any allocation.
        unsafe { crate::init_heap() };
        let (m, c, i) = dma_qemu_virt::mmu::mmu_and_caches_on();
        let mmu = if m && c && i {
            Ok(String::from("SCTLR_EL1.{M,C,I} = 1"))
        } else {
            Err(BoardError::Unsupported("SCTLR_EL1.{M,C,I} stayed clear"))
        };
        step("mmu.caches_on", mmu.clone());
        mmu?;

        let clock = GenericTimer;
        let ecam = NonNull::new(ECAM_BASE as *mut u8).ok_or(BoardError::NotFound("ECAM"))?;
        // SAFETY: the highmem ECAM covers 256 buses at ECAM_BASE, mapped
        // Device-nGnRE by the identity map, and only this code uses it.
        let mut cfg = unsafe { Ecam::new(ecam, 256) };
        let found = pci::find(&mut cfg, |f| {
            f.vendor == NVME_VENDOR_ID && f.device == NVME_DEVICE_ID
        })
        .ok_or(BoardError::NotFound("NVMe 1b36:0010 on bus 0"));
        step(
            "pci.nvme_found",
            found
                .as_ref()
                .map_err(|e| *e)
                .map(|f| format!("{:02x}:{:02x}.{}", f.bdf.bus, f.bdf.device, f.bdf.function)),
        );
        let nvme_function = found?;

        let mut window = MmioWindow::new(PCI_MMIO32_BASE, PCI_MMIO32_SIZE);
        let bar = pci::assign_memory_bar(&mut cfg, nvme_function.bdf, 0, &mut window);
        step(
            "pci.bar0_assigned",
            bar.as_ref().map_err(|e| *e).map(|b| {
                format!(
                    "{:#x} size {:#x} 64-bit {}",
                    b.addr, b.size, b.kind.is_64bit
                )
            }),
        );
        let nvme_bar = bar?;

        let bar_ptr = NonNull::new(nvme_bar.addr as *mut u8).ok_or(BoardError::NotFound("BAR0"))?;
        // SAFETY: BAR0 was just placed in the 32-bit window, which the identity map maps Device-
        // nGnRE; memory decoding is on; only this driver uses it.
        let nvme =
            unsafe { Controller::new(bar_ptr, nvme_bar.size as usize) }.map_err(BoardError::from);
        step(
            "nvme.capabilities",
            nvme.as_ref()
                .map(|c| format!("doorbell stride {}", c.capabilities().doorbell_stride))
                .map_err(|e| *e),
        );
        let nvme = nvme?;

        let smmu_base = NonNull::new(SMMU_BASE as *mut u8).ok_or(BoardError::NotFound("SMMU"))?;
        // SAFETY: the SMMUv3 frame at SMMU_BASE is mapped Device-nGnRE by the
        // identity map; the pools' physical addresses are what the SMMU
        // sees (no offset on `virt`); nothing else drives the SMMU.
        let smmu = unsafe { Smmu::new(smmu_base, &MEMORY, SmmuConfig::default(), &clock) };
        step(
            "smmu.init",
            smmu.as_ref()
                .map(|_| String::from("queues on, streams abort"))
                .map_err(|e| *e),
        );
        let smmu = smmu?;

        Ok(Self {
            clock,
            memory: &MEMORY,
            nvme_function,
            nvme_bar,
            nvme,
            smmu: SmmuIommu::new(smmu, clock),
            pci: RefCell::new((cfg, window)),
        })
    }
}
