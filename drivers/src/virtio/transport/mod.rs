//! How a virtio driver reaches its device: the [`Transport`] trait, its
//! virtio-pci ([`pci`]) and virtio-mmio ([`mmio`]) implementations, the
//! [`RegisterIo`] they reach registers through, and the device
//! initialization sequence of §3.1.1 ([`negotiate`]).

pub mod mmio;
pub mod pci;

use core::marker::PhantomData;
use core::ptr::NonNull;

use dma_core::DmaAddr;
use dma_ring::Doorbell;

use super::spec::{DeviceStatus, Features};
use crate::{poll_until, DriverError, Wait};

/// A window of device registers reached by byte offset: a BAR region, a
/// virtio-mmio window, or a simulator's device that acts on each access.
///
/// virtio registers have side effects on access (writing a select
/// register changes what the next read of another returns), so a
/// simulator cannot present them as a block of RAM the way the NVMe and
/// NIC models do: every access is a call. Real hardware is
/// [`MmioWindow`]. Offsets come from the spec's tock-registers blocks
/// ([`mmio_reg`](super::spec::mmio_reg), [`common_reg`](super::spec::common_reg)).
///
/// An access outside the window, or not aligned to its width, reads as
/// all ones and writes nothing (as a PCI read that nobody answers);
/// the transports check their regions against [`size`](Self::size) before
/// they use them.
pub trait RegisterIo {
    /// Bytes in the window.
    fn size(&self) -> usize;
    /// An 8-bit load.
    fn read8(&self, offset: usize) -> u8;
    /// A 16-bit little-endian load.
    fn read16(&self, offset: usize) -> u16;
    /// A 32-bit little-endian load.
    fn read32(&self, offset: usize) -> u32;
    /// An 8-bit store.
    fn write8(&self, offset: usize, value: u8);
    /// A 16-bit little-endian store.
    fn write16(&self, offset: usize, value: u16);
    /// A 32-bit little-endian store.
    fn write32(&self, offset: usize, value: u32);
}

impl<R: RegisterIo + ?Sized> RegisterIo for &R {
    fn size(&self) -> usize {
        (**self).size()
    }
    fn read8(&self, offset: usize) -> u8 {
        (**self).read8(offset)
    }
    fn read16(&self, offset: usize) -> u16 {
        (**self).read16(offset)
    }
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write8(&self, offset: usize, value: u8) {
        (**self).write8(offset, value);
    }
    fn write16(&self, offset: usize, value: u16) {
        (**self).write16(offset, value);
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value);
    }
}

/// Memory-mapped registers (a BAR or a virtio-mmio window mapped as
/// Device memory), reached with volatile loads and stores of the width
/// asked for.
#[derive(Clone, Copy, Debug)]
pub struct MmioWindow<'a> {
    base: NonNull<u8>,
    size: usize,
    _window: PhantomData<&'a [u8]>,
}

// SAFETY: the window is only ever accessed with volatile loads and stores
// of device registers (no Rust references to it exist), and `new`'s
// contract makes it valid for `'a` from any thread.
unsafe impl Send for MmioWindow<'_> {}
// SAFETY: as for `Send`: shared use is concurrent register access, which
// the device serializes.
unsafe impl Sync for MmioWindow<'_> {}

impl MmioWindow<'_> {
    /// The `size` bytes of registers at `base`.
    ///
    /// # Safety
    ///
    /// `base` is 4-byte aligned (registers sit at their natural alignment
    /// from it) and mapped as device memory (or memory a model watches with
    /// volatile accesses) for `size` bytes, readable and writable with
    /// volatile accesses of 1, 2 and 4 bytes for the window's lifetime,
    /// and no Rust reference to it exists meanwhile.
    pub const unsafe fn new(base: NonNull<u8>, size: usize) -> Self {
        Self {
            base,
            size,
            _window: PhantomData,
        }
    }

    /// The address of `width` bytes at `offset`, if inside and aligned.
    fn at<T>(&self, offset: usize) -> Option<*mut T> {
        let width = core::mem::size_of::<T>();
        let inside = offset
            .checked_add(width)
            .is_some_and(|end| end <= self.size);
        (inside && offset % width == 0).then(|| {
            // `offset` is inside the window, so the add stays in bounds.
            self.base.as_ptr().wrapping_add(offset).cast::<T>()
        })
    }

    fn load<T: Copy>(&self, offset: usize, absent: T) -> T {
        match self.at::<T>(offset) {
            // SAFETY: inside the window and aligned (checked by `at`),
            // which `new`'s contract makes valid for volatile loads.
            Some(p) => unsafe { p.read_volatile() },
            None => absent,
        }
    }

    fn store<T: Copy>(&self, offset: usize, value: T) {
        if let Some(p) = self.at::<T>(offset) {
            // SAFETY: inside the window and aligned (checked by `at`),
            // which `new`'s contract makes valid for volatile stores.
            unsafe { p.write_volatile(value) }
        }
    }
}

impl RegisterIo for MmioWindow<'_> {
    fn size(&self) -> usize {
        self.size
    }
    fn read8(&self, offset: usize) -> u8 {
        self.load(offset, u8::MAX)
    }
    fn read16(&self, offset: usize) -> u16 {
        u16::from_le(self.load(offset, u16::MAX))
    }
    fn read32(&self, offset: usize) -> u32 {
        u32::from_le(self.load(offset, u32::MAX))
    }
    fn write8(&self, offset: usize, value: u8) {
        self.store(offset, value);
    }
    fn write16(&self, offset: usize, value: u16) {
        self.store(offset, value.to_le());
    }
    fn write32(&self, offset: usize, value: u32) {
        self.store(offset, value.to_le());
    }
}

/// A queue's three areas, as device addresses (§2.7 split: descriptor
/// table, available ring, used ring; §2.8 packed: descriptor ring, driver
/// and device event suppression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueAreas {
    /// Descriptor area.
    pub desc: DmaAddr,
    /// Driver area.
    pub driver: DmaAddr,
    /// Device area.
    pub device: DmaAddr,
}

/// A virtio transport (§4): how the driver negotiates, configures queues,
/// notifies and reads configuration, whatever bus the device sits on.
pub trait Transport {
    /// The doorbell of one queue, rung by `dma-ring`'s virtqueues with the
    /// queue's index.
    type Notify: Doorbell;

    /// The device type ([`device_id`](super::spec::device_id)).
    fn device_type(&self) -> u32;

    /// The 64 feature bits the device offers.
    fn device_features(&self) -> Features;

    /// Writes the feature bits the driver accepts.
    fn set_driver_features(&self, features: Features);

    /// The device status field.
    fn status(&self) -> DeviceStatus;

    /// Writes the device status field (writing empty resets the device).
    fn set_status(&self, status: DeviceStatus);

    /// The largest size queue `queue` supports; 0 when it does not exist.
    fn max_queue_size(&self, queue: u16) -> u16;

    /// Gives queue `queue` its size and areas, without enabling it. The
    /// queue must exist ([`max_queue_size`](Self::max_queue_size) > 0) and
    /// `size` be at most its maximum.
    fn program_queue(&self, queue: u16, size: u16, areas: QueueAreas);

    /// Enables queue `queue` (after [`program_queue`](Self::program_queue)).
    fn enable_queue(&self, queue: u16);

    /// Whether queue `queue` is enabled (the device's answer).
    fn queue_enabled(&self, queue: u16) -> bool;

    /// The doorbell of queue `queue`.
    ///
    /// # Errors
    ///
    /// [`DriverError::Unsupported`] when the device's notify address for
    /// the queue lies outside its notify region.
    fn notifier(&self, queue: u16) -> Result<Self::Notify, DriverError>;

    /// The configuration generation (§2.5.1): equal before and after a
    /// read of several fields means the read was consistent.
    fn config_generation(&self) -> u32;

    /// Bytes of device-specific configuration the transport can reach.
    fn config_size(&self) -> usize;

    /// An 8-bit read of device configuration at `offset`.
    fn read_config_u8(&self, offset: usize) -> u8;

    /// A 16-bit read of device configuration at `offset`.
    fn read_config_u16(&self, offset: usize) -> u16;

    /// A 32-bit read of device configuration at `offset`.
    fn read_config_u32(&self, offset: usize) -> u32;

    /// Resets the device: writes 0 to the status and waits until it reads
    /// back 0 (§4.1.4.3.2, §4.2.3.1: the reset is done only then). The
    /// device has stopped all DMA to the queues when this returns `Ok`.
    ///
    /// # Errors
    ///
    /// [`DriverError::Timeout`] when the status never reads 0.
    fn reset(&self, wait: &mut impl Wait) -> Result<(), DriverError> {
        self.set_status(DeviceStatus::empty());
        poll_until(
            wait,
            "the virtio device status to read 0 after reset",
            || self.status().is_empty().then_some(Ok(())),
        )
    }

    /// Sets `FAILED` (§3.1.1 step 8): the driver gave up on the device.
    fn fail(&self) {
        self.set_status(self.status() | DeviceStatus::FAILED);
    }

    /// Reads `fields` of device configuration consistently: retries while
    /// the configuration generation changes across the read (§2.5.1).
    ///
    /// # Errors
    ///
    /// [`DriverError::Timeout`] when the generation keeps changing.
    fn read_config<T>(&self, fields: impl Fn(&Self) -> T) -> Result<T, DriverError> {
        for _ in 0..CONFIG_READ_TRIES {
            let before = self.config_generation();
            let value = fields(self);
            if self.config_generation() == before {
                return Ok(value);
            }
        }
        Err(DriverError::Timeout(
            "a stable virtio configuration generation",
        ))
    }

    /// A 64-bit configuration field as two 32-bit reads (low then high,
    /// which §4.1.3.1 and §4.2.2.2 allow); call inside
    /// [`read_config`](Self::read_config).
    fn read_config_u64(&self, offset: usize) -> u64 {
        let lo = self.read_config_u32(offset);
        let hi = self.read_config_u32(offset + 4);
        u64::from(lo) | u64::from(hi) << 32
    }
}

/// Reads of configuration retried before a changing generation is an error.
const CONFIG_READ_TRIES: u32 = 16;

/// Which virtqueue layout a driver wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QueueLayout {
    /// Split virtqueues (§2.7).
    #[default]
    Split,
    /// Packed virtqueues (§2.8) when the device offers `RING_PACKED`,
    /// split ones otherwise.
    Packed,
}

/// What a driver asks of feature negotiation, besides its device's own
/// features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioOptions {
    /// Split or packed queues.
    pub layout: QueueLayout,
    /// Take `EVENT_IDX` when offered.
    pub event_idx: bool,
    /// Take `INDIRECT_DESC` when offered: requests of several segments
    /// then take one queue entry each.
    pub indirect: bool,
    /// The platform's DMA addresses are translated (an IOMMU gives IOVAs,
    /// not physical addresses). Then the device must offer
    /// `ACCESS_PLATFORM`: one without it uses physical addresses (§6.1),
    /// and would DMA to whatever the IOVAs are as physical addresses, so
    /// bring-up refuses it. `ACCESS_PLATFORM` is accepted whenever
    /// offered either way (§6.1: the driver SHOULD), which is harmless
    /// without translation: the platform's addresses then are physical.
    pub platform_translates: bool,
    /// Entries wanted per queue (clamped to what the device allows; split
    /// queues round down to a power of two).
    pub queue_size: u16,
}

impl Default for VirtioOptions {
    fn default() -> Self {
        Self {
            layout: QueueLayout::Split,
            event_idx: true,
            indirect: true,
            platform_translates: false,
            queue_size: 128,
        }
    }
}

/// Steps 1 to 6 of device initialization (§3.1.1): reset, `ACKNOWLEDGE`,
/// `DRIVER`, feature negotiation and `FEATURES_OK`, checked by re-reading
/// the status. Returns the negotiated features. On any error after the
/// reset the device is left `FAILED`.
///
/// The driver takes `VERSION_1` (required: this driver has no legacy
/// path), `ACCESS_PLATFORM` when offered, `RING_PACKED`, `EVENT_IDX` and
/// `INDIRECT_DESC` when offered and asked for in `options`, and of
/// `device_features` what the device offers.
///
/// # Errors
///
/// [`DriverError::Unsupported`] for another device type, a device without
/// `VERSION_1`, or without `ACCESS_PLATFORM` on a translating platform;
/// [`DriverError::FeaturesRefused`] when the device clears `FEATURES_OK`;
/// [`DriverError::Timeout`] when the reset does not finish.
pub fn negotiate<T: Transport>(
    transport: &T,
    device_type: u32,
    device_features: Features,
    options: &VirtioOptions,
    wait: &mut impl Wait,
) -> Result<Features, DriverError> {
    transport.reset(wait)?;
    let result = negotiate_after_reset(transport, device_type, device_features, options);
    if result.is_err() {
        transport.fail();
    }
    result
}

fn negotiate_after_reset<T: Transport>(
    transport: &T,
    device_type: u32,
    device_features: Features,
    options: &VirtioOptions,
) -> Result<Features, DriverError> {
    let mut status = DeviceStatus::ACKNOWLEDGE;
    transport.set_status(status);
    if transport.device_type() != device_type {
        return Err(DriverError::Unsupported(
            "the device type this driver drives",
        ));
    }
    status |= DeviceStatus::DRIVER;
    transport.set_status(status);
    let offered = transport.device_features();
    if !offered.contains(Features::VERSION_1) {
        return Err(DriverError::Unsupported(
            "VERSION_1 (a legacy-only virtio device)",
        ));
    }
    if options.platform_translates && !offered.contains(Features::ACCESS_PLATFORM) {
        return Err(DriverError::Unsupported(
            "ACCESS_PLATFORM, which a platform with an IOMMU needs: without it the device would \
             use physical addresses (attach the device without translation, or enable \
             iommu_platform on the device)",
        ));
    }
    let mut wanted = Features::VERSION_1 | Features::ACCESS_PLATFORM | device_features;
    if options.layout == QueueLayout::Packed {
        wanted |= Features::RING_PACKED;
    }
    if options.event_idx {
        wanted |= Features::EVENT_IDX;
    }
    if options.indirect {
        wanted |= Features::INDIRECT_DESC;
    }
    let accepted = offered & wanted;
    transport.set_driver_features(accepted);
    status |= DeviceStatus::FEATURES_OK;
    transport.set_status(status);
    if !transport.status().contains(DeviceStatus::FEATURES_OK) {
        return Err(DriverError::FeaturesRefused);
    }
    Ok(accepted)
}

/// Step 8 of §3.1.1: the driver is ready (after its queues are set up).
///
/// # Errors
///
/// [`DriverError::DeviceNeedsReset`] when the device reports
/// `DEVICE_NEEDS_RESET` instead (it rejected a queue).
pub fn driver_ok<T: Transport>(transport: &T) -> Result<(), DriverError> {
    let status = transport.status();
    if status.contains(DeviceStatus::DEVICE_NEEDS_RESET) {
        return Err(DriverError::DeviceNeedsReset);
    }
    transport.set_status(status | DeviceStatus::DRIVER_OK);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_window_reads_ones_and_drops_writes_outside_or_misaligned() {
        let mut cells = [0u32; 4];
        let base = NonNull::from(&mut cells).cast::<u8>();
        // SAFETY: 16 bytes of a live local array, reached only through the
        // window until its last use below (before `cells` is read).
        let w = unsafe { MmioWindow::new(base, 16) };
        w.write32(4, 0x1234_5678);
        w.write16(8, 0xabcd);
        w.write8(13, 0x7f);
        w.write32(16, 1); // outside: dropped
        w.write32(2, 1); // misaligned: dropped
        assert_eq!(w.read32(4), 0x1234_5678);
        assert_eq!(w.read16(8), 0xabcd);
        assert_eq!(w.read8(13), 0x7f);
        assert_eq!(w.read32(14), u32::MAX);
        assert_eq!(w.read16(15), u16::MAX);
        assert_eq!(w.read8(16), u8::MAX);
        assert_eq!(w.read32(0), 0);
        assert_eq!(cells.map(u32::from_le), [0, 0x1234_5678, 0xabcd, 0x7f00]);
    }
}
