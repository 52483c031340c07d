//! PCI configuration over ECAM, enumeration, and BAR assignment.
//!
//! With `-kernel` no firmware runs, so nobody has assigned the BARs: the
//! board sizes each memory BAR (PCI Local Bus 3.0 §6.2.5.1: write all ones,
//! read back the size mask), places it in the host bridge's 32-bit window,
//! and then enables memory decoding and bus mastering in the command
//! register.

use core::ptr::NonNull;

use dma_drivers::virtio::transport::pci::PciConfigSpace;

use crate::{BoardError, Result};

/// A bus/device/function triple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl Bdf {
    /// The 16-bit routing id `bus << 8 | device << 3 | function`. On QEMU's
    /// `virt` machine the SMMU StreamID of a device on the root bus is its
    /// routing id (the device tree's `iommu-map` is the identity).
    pub const fn routing_id(self) -> u16 {
        (self.bus as u16) << 8 | (self.device as u16) << 3 | self.function as u16
    }

    /// The byte offset of register `reg` of this function in an ECAM region
    /// (PCIe Base 5.0 §7.2.2: bus << 20 | device << 15 | function << 12).
    pub const fn ecam_offset(self, reg: u16) -> usize {
        (self.bus as usize) << 20
            | (self.device as usize & 0x1f) << 15
            | (self.function as usize & 0x7) << 12
            | (reg as usize & 0xffc)
    }
}

/// Configuration space register offsets (type 0 header, PCI 3.0 §6.1).
pub mod reg {
    /// Vendor id (low half) and device id (high half).
    pub const ID: u16 = 0x00;
    /// Command (low half) and status (high half).
    pub const COMMAND: u16 = 0x04;
    /// Class code, subclass, programming interface, revision.
    pub const CLASS: u16 = 0x08;
    /// Cache line size, latency timer, header type (bits 23:16), BIST.
    pub const HEADER: u16 = 0x0c;
    /// Base address register 0.
    pub const BAR0: u16 = 0x10;
}

/// Command register: respond to memory-space accesses.
pub const COMMAND_MEMORY: u32 = 1 << 1;
/// Command register: the function may master (DMA).
pub const COMMAND_BUS_MASTER: u32 = 1 << 2;

/// Access to configuration space: 32-bit reads and writes.
pub trait ConfigSpace {
    /// Reads the 32-bit register at `reg` (4-byte aligned) of `bdf`.
    fn read(&mut self, bdf: Bdf, reg: u16) -> u32;
    /// Writes the 32-bit register at `reg` (4-byte aligned) of `bdf`.
    fn write(&mut self, bdf: Bdf, reg: u16, value: u32);
}

/// An ECAM region: configuration space as memory-mapped registers.
pub struct Ecam {
    base: NonNull<u8>,
    buses: u16,
}

impl Ecam {
    /// The ECAM at `base` covering `buses` buses (1 MiB each).
    ///
    /// # Safety
    ///
    /// `base` maps `buses` MiB of ECAM as Device memory for the lifetime of
    /// the value, and nothing else accesses it meanwhile.
    pub unsafe fn new(base: NonNull<u8>, buses: u16) -> Self {
        Self { base, buses }
    }

    fn register(&self, bdf: Bdf, reg: u16) -> Option<*mut u32> {
        if u16::from(bdf.bus) >= self.buses {
            return None;
        }
        // SAFETY: the offset lies within the `buses` MiB `new` was given.
        Some(unsafe { self.base.as_ptr().add(bdf.ecam_offset(reg)) }.cast::<u32>())
    }
}

impl Ecam {
    /// Reads the 32-bit register at `reg` of `bdf`; all ones outside the
    /// region, as an absent function reads.
    pub fn read32(&self, bdf: Bdf, reg: u16) -> u32 {
        match self.register(bdf, reg) {
            // SAFETY: an aligned register inside the ECAM region (`new`).
            Some(p) => unsafe { p.read_volatile() },
            None => u32::MAX,
        }
    }

    /// The configuration space of `bdf` alone, as the virtio-pci
    /// transport's capability walk reads it.
    pub fn function(&self, bdf: Bdf) -> FunctionConfig<'_> {
        FunctionConfig { ecam: self, bdf }
    }
}

/// One function's configuration space in an [`Ecam`]: what `dma-drivers`'
/// virtio-pci transport walks for its capabilities.
pub struct FunctionConfig<'a> {
    ecam: &'a Ecam,
    bdf: Bdf,
}

impl PciConfigSpace for FunctionConfig<'_> {
    fn read32(&self, offset: u16) -> u32 {
        self.ecam.read32(self.bdf, offset)
    }
}

impl ConfigSpace for Ecam {
    fn read(&mut self, bdf: Bdf, reg: u16) -> u32 {
        self.read32(bdf, reg)
    }

    fn write(&mut self, bdf: Bdf, reg: u16, value: u32) {
        if let Some(p) = self.register(bdf, reg) {
            // SAFETY: an aligned register inside the ECAM region (`new`).
            unsafe { p.write_volatile(value) }
        }
    }
}

/// A function found on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub bdf: Bdf,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// Class code (base class, subclass, programming interface).
    pub class: u32,
}

/// Scans bus 0 (QEMU's `virt` root bus; no bridges are configured) and
/// returns the first function for which `wanted` is true.
pub fn find(cfg: &mut impl ConfigSpace, wanted: impl Fn(&Function) -> bool) -> Option<Function> {
    for device in 0..32 {
        for function in 0..8 {
            let bdf = Bdf {
                bus: 0,
                device,
                function,
            };
            let id = cfg.read(bdf, reg::ID);
            if id & 0xffff == 0xffff {
                if function == 0 {
                    break;
                }
                continue;
            }
            let found = Function {
                bdf,
                vendor: id as u16,
                device: (id >> 16) as u16,
                class: cfg.read(bdf, reg::CLASS) >> 8,
            };
            if wanted(&found) {
                return Some(found);
            }
            let multifunction = cfg.read(bdf, reg::HEADER) & (1 << 23) != 0;
            if function == 0 && !multifunction {
                break;
            }
        }
    }
    None
}

/// What a memory BAR decodes, from its low bits (PCI 3.0 §6.2.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarKind {
    /// A 64-bit BAR (type 0b10), which takes the next BAR as its high half.
    pub is_64bit: bool,
    /// Prefetchable.
    pub prefetchable: bool,
}

impl BarKind {
    /// Decodes the low bits of a BAR; `None` for an I/O BAR or a reserved type.
    pub const fn decode(low: u32) -> Option<Self> {
        if low & 1 != 0 {
            return None;
        }
        let is_64bit = match (low >> 1) & 0b11 {
            0b00 => false,
            0b10 => true,
            _ => return None,
        };
        Some(Self {
            is_64bit,
            prefetchable: low & 0b1000 != 0,
        })
    }
}

/// The size a memory BAR decodes, from the value read back after writing all
/// ones (`low` and, for 64-bit BARs, `high`). `None` when the BAR is
/// unimplemented (reads back zero).
pub const fn bar_size(low: u32, high: u32) -> Option<u64> {
    let mask = (high as u64) << 32 | (low & !0xf) as u64;
    if mask == 0 {
        return None;
    }
    Some((!mask).wrapping_add(1))
}

/// A bump allocator over a host bridge's memory window: each BAR is placed
/// at the next address aligned to its size (BARs are naturally aligned).
#[derive(Clone, Copy, Debug)]
pub struct MmioWindow {
    next: u64,
    end: u64,
}

impl MmioWindow {
    /// The window `[base, base + size)`.
    pub const fn new(base: u64, size: u64) -> Self {
        Self {
            next: base,
            end: base.saturating_add(size),
        }
    }

    /// Takes `size` bytes (a power of two) aligned to `size`.
    ///
    /// # Errors
    ///
    /// [`BoardError::InvalidArgument`] for a size that is not a power of
    /// two; [`BoardError::NotFound`] when the window has no room left.
    pub fn take(&mut self, size: u64) -> Result<u64> {
        if !size.is_power_of_two() {
            return Err(BoardError::InvalidArgument("BAR size is a power of two"));
        }
        let start = self
            .next
            .checked_add(size - 1)
            .map(|x| x & !(size - 1))
            .ok_or(BoardError::NotFound("room in the PCI memory window"))?;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= self.end)
            .ok_or(BoardError::NotFound("room in the PCI memory window"))?;
        self.next = end;
        Ok(start)
    }
}

/// A memory BAR once placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssignedBar {
    /// Its bus (= physical, on `virt`) address.
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// What it decodes.
    pub kind: BarKind,
}

/// Sizes memory BAR `index` of `bdf`, places it in `window`, writes its
/// address (both halves for a 64-bit BAR), and turns on memory decoding
/// and bus mastering. Decoding is off while the BAR holds all ones.
///
/// # Errors
///
/// [`BoardError::InvalidArgument`] for a BAR index past the header,
/// [`BoardError::Unsupported`] for an I/O BAR, [`BoardError::NotFound`] for
/// an unimplemented BAR or a full window.
pub fn assign_memory_bar(
    cfg: &mut impl ConfigSpace,
    bdf: Bdf,
    index: u8,
    window: &mut MmioWindow,
) -> Result<AssignedBar> {
    if index > 5 {
        return Err(BoardError::InvalidArgument(
            "a type 0 header has BARs 0..=5",
        ));
    }
    let reg = reg::BAR0 + 4 * u16::from(index);
    let original = cfg.read(bdf, reg);
    let kind =
        BarKind::decode(original).ok_or(BoardError::Unsupported("I/O or reserved-type BARs"))?;
    if kind.is_64bit && index == 5 {
        return Err(BoardError::InvalidArgument(
            "a 64-bit BAR needs a following BAR",
        ));
    }
    let command = cfg.read(bdf, reg::COMMAND) & 0xffff;
    cfg.write(
        bdf,
        reg::COMMAND,
        command & !(COMMAND_MEMORY | COMMAND_BUS_MASTER),
    );

    cfg.write(bdf, reg, u32::MAX);
    let low = cfg.read(bdf, reg);
    let high = if kind.is_64bit {
        cfg.write(bdf, reg + 4, u32::MAX);
        cfg.read(bdf, reg + 4)
    } else {
        u32::MAX
    };
    let size = match bar_size(low, high) {
        Some(size) => size,
        None => {
            cfg.write(bdf, reg, original);
            cfg.write(bdf, reg::COMMAND, command);
            return Err(BoardError::NotFound("an implemented BAR"));
        }
    };
    let addr = match window.take(size) {
        Ok(addr) if kind.is_64bit || addr >> 32 == 0 => addr,
        _ => {
            cfg.write(bdf, reg, original);
            cfg.write(bdf, reg::COMMAND, command);
            return Err(BoardError::NotFound("room in the PCI memory window"));
        }
    };
    cfg.write(bdf, reg, addr as u32);
    if kind.is_64bit {
        cfg.write(bdf, reg + 4, (addr >> 32) as u32);
    }
    cfg.write(
        bdf,
        reg::COMMAND,
        command | COMMAND_MEMORY | COMMAND_BUS_MASTER,
    );
    Ok(AssignedBar { addr, size, kind })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::HashMap;

    use super::*;

    /// One function with a 64-bit BAR0 of `size` bytes, modelled as
    /// hardware does: BAR bits below the size read as zero.
    struct FakeBus {
        regs: HashMap<(u16, u16), u32>,
        bar_mask: u64,
        writes: std::vec::Vec<(u16, u32)>,
    }

    const NVME: Bdf = Bdf {
        bus: 0,
        device: 1,
        function: 0,
    };

    impl FakeBus {
        fn with_nvme(bar_size: u64, bar_low: u32) -> Self {
            let mut regs = HashMap::new();
            let id = NVME.routing_id();
            // Host bridge at 00:00.0, then the NVMe at 00:01.0.
            regs.insert((0, reg::ID), 0x0008_1b36);
            regs.insert((id, reg::ID), 0x0010_1b36);
            regs.insert((id, reg::CLASS), 0x0108_0202);
            regs.insert((id, reg::BAR0), bar_low);
            regs.insert((id, reg::COMMAND), 0x0010_0000);
            Self {
                regs,
                bar_mask: !(bar_size - 1),
                writes: std::vec::Vec::new(),
            }
        }
    }

    impl ConfigSpace for FakeBus {
        fn read(&mut self, bdf: Bdf, reg: u16) -> u32 {
            *self.regs.get(&(bdf.routing_id(), reg)).unwrap_or(&u32::MAX)
        }
        fn write(&mut self, bdf: Bdf, reg: u16, value: u32) {
            self.writes.push((reg, value));
            let key = (bdf.routing_id(), reg);
            let Some(old) = self.regs.get(&key).copied() else {
                return;
            };
            let new = match reg {
                reg::BAR0 => (value & self.bar_mask as u32 & !0xf) | (old & 0xf),
                0x14 => value & (self.bar_mask >> 32) as u32,
                reg::COMMAND => (old & 0xffff_0000) | (value & 0xffff),
                _ => value,
            };
            self.regs.insert(key, new);
        }
    }

    #[test]
    fn ecam_offsets_follow_pcie() {
        assert_eq!(NVME.ecam_offset(reg::BAR0), 0x8010);
        let b = Bdf {
            bus: 2,
            device: 31,
            function: 7,
        };
        assert_eq!(b.ecam_offset(0xffc), 0x2f_fffc);
        assert_eq!(NVME.routing_id(), 8);
    }

    #[test]
    fn finds_the_nvme_and_assigns_its_64bit_bar() {
        let mut bus = FakeBus::with_nvme(0x4000, 0b0100);
        bus.regs.insert((NVME.routing_id(), 0x14), 0);
        let f = find(&mut bus, |f| f.vendor == 0x1b36 && f.device == 0x0010).unwrap();
        assert_eq!(f.bdf, NVME);
        assert_eq!(f.class, 0x01_08_02);
        let mut window = MmioWindow::new(0x1000_1000, 0x10_0000);
        let bar = assign_memory_bar(&mut bus, f.bdf, 0, &mut window).unwrap();
        assert_eq!(bar.size, 0x4000);
        assert_eq!(bar.addr, 0x1000_4000, "naturally aligned");
        assert!(bar.kind.is_64bit);
        assert_eq!(bus.read(NVME, reg::BAR0) & !0xf, 0x1000_4000);
        assert_eq!(bus.read(NVME, 0x14), 0);
        assert_eq!(bus.read(NVME, reg::COMMAND) & 0b110, 0b110);
        // Decoding was off while the BAR was being sized.
        let first_bar_write = bus.writes.iter().position(|w| w.0 == reg::BAR0).unwrap();
        assert_eq!(bus.writes[first_bar_write - 1], (reg::COMMAND, 0));
        // The next BAR lands after this one.
        assert_eq!(window.take(0x1000).unwrap(), 0x1000_8000);
    }

    #[test]
    fn missing_device_is_not_found() {
        let mut bus = FakeBus::with_nvme(0x4000, 0b0100);
        assert!(find(&mut bus, |f| f.device == 0x1234).is_none());
    }

    #[test]
    fn bar_errors_are_typed() {
        let mut bus = FakeBus::with_nvme(0x4000, 0b0001);
        let mut w = MmioWindow::new(0x1000_0000, 0x1_0000);
        assert_eq!(
            assign_memory_bar(&mut bus, NVME, 0, &mut w),
            Err(BoardError::Unsupported("I/O or reserved-type BARs"))
        );
        assert!(matches!(
            assign_memory_bar(&mut bus, NVME, 6, &mut w),
            Err(BoardError::InvalidArgument(_))
        ));
        let mut bus = FakeBus::with_nvme(0x4000, 0b0100);
        bus.regs.insert((NVME.routing_id(), 0x14), 0);
        let mut tiny = MmioWindow::new(0x1000_0000, 0x2000);
        assert_eq!(
            assign_memory_bar(&mut bus, NVME, 0, &mut tiny),
            Err(BoardError::NotFound("room in the PCI memory window"))
        );
        // The BAR and the command register were restored.
        assert_eq!(bus.read(NVME, reg::BAR0), 0b0100);
        assert_eq!(bus.read(NVME, reg::COMMAND) & 0xffff, 0);
    }

    #[test]
    fn bar_arithmetic() {
        assert_eq!(bar_size(0xffff_c004, 0xffff_ffff), Some(0x4000));
        assert_eq!(bar_size(0xfff0_0000, 0xffff_ffff), Some(0x10_0000));
        assert_eq!(bar_size(0, 0), None);
        assert_eq!(BarKind::decode(0b0110), None);
        assert_eq!(
            BarKind::decode(0b1000),
            Some(BarKind {
                is_64bit: false,
                prefetchable: true
            })
        );
        let mut w = MmioWindow::new(0, u64::MAX);
        assert!(matches!(w.take(3), Err(BoardError::InvalidArgument(_))));
        let mut w = MmioWindow::new(u64::MAX - 2, 1);
        assert!(w.take(0x1000).is_err());
    }
}
