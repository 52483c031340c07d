//! Virtio devices over the virtio-mmio transport (virtio 1.2, §4.2): a
//! block device ([`blk`]) and a network device ([`net`]) with split and
//! packed virtqueues.
//!
//! These models are a reading of the virtio 1.2 specification written
//! independently of `dma-ring`'s virtio queues and of any driver, on
//! purpose: a driver and these models can only agree by both following the
//! spec, so each cross-checks the other (the NVMe and NIC models are
//! independent in the same way). Everything is parsed from raw bytes at
//! the spec's offsets, and every access to driver memory goes through the
//! device's [`Bus`], so the machine's detector and fault recording see it.
//!
//! What is modelled:
//! - the modern virtio-mmio register layout (`Version` 2, §4.2.2) and its
//!   side effects: feature words selected by `*FeaturesSel`, per-queue
//!   registers selected by `QueueSel`, `QueueNotify`, `InterruptStatus` /
//!   `InterruptACK`, `Status` (writing 0 resets), `ConfigGeneration`, and
//!   the device configuration space at 0x100;
//! - feature negotiation (§3.1.1, §6): `VERSION_1` is required (there is no
//!   legacy interface), the driver may only accept offered bits, and with
//!   [`VirtioConfig::require_access_platform`] a driver that declines
//!   `ACCESS_PLATFORM` is refused, as §6.1 allows. A refused negotiation
//!   leaves `FEATURES_OK` clear in `Status`;
//! - split ([`split`]) and packed ([`packed`], with `RING_PACKED`)
//!   virtqueues, each with `INDIRECT_DESC` and `EVENT_IDX` (offered with
//!   `ACCESS_PLATFORM`).
//!
//! Driver input is untrusted: a malformed chain or a ring the device cannot
//! reach sets `DEVICE_NEEDS_RESET` (§2.1.2) and a configuration-change
//! interrupt, records the reason ([`VirtioMmio::errors`]) and stops the
//! device until the driver resets it; nothing panics.
//!
//! # Registers
//!
//! virtio-mmio registers have side effects on access (the select
//! registers, `QueueNotify`, `InterruptACK`), so unlike the NVMe and NIC
//! models, whose registers are a shared memory block the device polls,
//! this transport traps each access: [`VirtioMmio::read`] and
//! [`VirtioMmio::write`] are what a load or store at `offset` in the
//! device's MMIO window does. The offsets are in [`regs`].
//!
//! The device does its work in [`Device::step`], one chain per step; a
//! driver's notify only records which queue was kicked.

pub mod blk;
pub mod net;
pub mod packed;
pub mod split;

use std::sync::{Arc, Mutex, MutexGuard};

use bitflags::bitflags;

use crate::{Bus, Device, Step};
use split::{Chain, ChainError, Virtqueue};

/// virtio-mmio register offsets (virtio 1.2 §4.2.2, Table 4.1).
pub mod regs {
    /// `0x74726976` ("virt").
    pub const MAGIC_VALUE: usize = 0x000;
    /// 2 for the modern interface.
    pub const VERSION: usize = 0x004;
    /// Device type (§5).
    pub const DEVICE_ID: usize = 0x008;
    /// Vendor id.
    pub const VENDOR_ID: usize = 0x00c;
    /// The 32 feature bits selected by `DEVICE_FEATURES_SEL`.
    pub const DEVICE_FEATURES: usize = 0x010;
    /// Which word of the device features to show.
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    /// The 32 accepted feature bits selected by `DRIVER_FEATURES_SEL`.
    pub const DRIVER_FEATURES: usize = 0x020;
    /// Which word of the driver features is written.
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    /// Which queue the queue registers address.
    pub const QUEUE_SEL: usize = 0x030;
    /// Largest size the selected queue supports (0: no such queue).
    pub const QUEUE_NUM_MAX: usize = 0x034;
    /// Size the driver chose for the selected queue.
    pub const QUEUE_NUM: usize = 0x038;
    /// The selected queue is ready (1) or not (0).
    pub const QUEUE_READY: usize = 0x044;
    /// Write a queue index: there is work in it.
    pub const QUEUE_NOTIFY: usize = 0x050;
    /// Bit 0: used buffer notification; bit 1: configuration change.
    pub const INTERRUPT_STATUS: usize = 0x060;
    /// Clears the written `INTERRUPT_STATUS` bits.
    pub const INTERRUPT_ACK: usize = 0x064;
    /// Device status (§2.1); writing 0 resets the device.
    pub const STATUS: usize = 0x070;
    /// Descriptor table address, low word.
    pub const QUEUE_DESC_LOW: usize = 0x080;
    /// Descriptor table address, high word.
    pub const QUEUE_DESC_HIGH: usize = 0x084;
    /// Driver area address, low word.
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    /// Driver area address, high word.
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    /// Device area address, low word.
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    /// Device area address, high word.
    pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
    /// Shared memory region select (no regions: lengths read all ones).
    pub const SHM_SEL: usize = 0x0ac;
    /// Shared memory length, low word.
    pub const SHM_LEN_LOW: usize = 0x0b0;
    /// Shared memory length, high word.
    pub const SHM_LEN_HIGH: usize = 0x0b4;
    /// Configuration atomicity value.
    pub const CONFIG_GENERATION: usize = 0x0fc;
    /// Start of the device configuration space.
    pub const CONFIG: usize = 0x100;
    /// `MAGIC_VALUE`'s value.
    pub const MAGIC: u32 = 0x7472_6976;
}

bitflags! {
    /// The device-independent feature bits (virtio 1.2 §6). Device-specific
    /// bits (0 to 23) overlap between device types, so each device module
    /// names its own ([`blk::features`], [`net::features`]).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Features: u64 {
        /// §6: indirect descriptors (§2.7.5.3).
        const INDIRECT_DESC = 1 << 28;
        /// §6: `used_event` / `avail_event` (§2.7.7, §2.7.10).
        const EVENT_IDX = 1 << 29;
        /// §6: compliant with virtio 1.x (no legacy interface).
        const VERSION_1 = 1 << 32;
        /// §6: the device reaches memory through the platform's DMA
        /// translation (an IOMMU), as the driver must then set it up.
        const ACCESS_PLATFORM = 1 << 33;
        /// §6: packed virtqueues (§2.8) instead of split ones.
        const RING_PACKED = 1 << 34;
    }
}

bitflags! {
    /// Device status bits (§2.1).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Status: u32 {
        /// The driver found the device.
        const ACKNOWLEDGE = 1;
        /// The driver knows how to drive it.
        const DRIVER = 2;
        /// The driver is ready.
        const DRIVER_OK = 4;
        /// Feature negotiation is complete (cleared by the device if it
        /// refused the driver's features).
        const FEATURES_OK = 8;
        /// The device hit an error and needs a reset.
        const DEVICE_NEEDS_RESET = 64;
        /// The driver gave up on the device.
        const FAILED = 128;
    }
}

/// `InterruptStatus` bit 0: a used buffer notification.
pub const INT_USED_BUFFER: u32 = 1;
/// `InterruptStatus` bit 1: a configuration change (also raised with
/// `DEVICE_NEEDS_RESET`).
pub const INT_CONFIG_CHANGE: u32 = 2;

/// How a virtio device is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioConfig {
    /// `QueueNumMax` of every queue.
    pub queue_num_max: u16,
    /// Refuse `FEATURES_OK` when the driver declines `ACCESS_PLATFORM`
    /// (§6.1: a device MAY fail to operate further then; real devices
    /// behind an IOMMU do).
    pub require_access_platform: bool,
}

impl Default for VirtioConfig {
    fn default() -> Self {
        Self {
            queue_num_max: 256,
            require_access_platform: false,
        }
    }
}

/// What a device type adds to the transport: its id, features, config
/// space and what it does with a queue.
pub trait Backend: Send + 'static {
    /// Device id (§5: 1 network, 2 block).
    const DEVICE_ID: u32;
    /// Number of virtqueues.
    const QUEUES: u16;

    /// The device-specific features offered (the transport adds
    /// `VERSION_1`, `INDIRECT_DESC`, `EVENT_IDX` and `ACCESS_PLATFORM`).
    fn features(&self) -> Features;

    /// The configuration space's bytes.
    fn config(&self) -> Vec<u8>;

    /// Does one unit of work on the queues through `io`; returns whether
    /// it did anything.
    ///
    /// # Errors
    ///
    /// A malformed chain or unreachable ring: the transport then needs a
    /// reset.
    fn work(&mut self, io: &mut QueueIo<'_>) -> Result<bool, ChainError>;

    /// The driver reset the device.
    fn reset(&mut self) {}
}

/// A backend's access to the live queues during [`Backend::work`].
pub struct QueueIo<'a> {
    bus: &'a Bus,
    features: Features,
    queues: &'a mut [Virtqueue],
    interrupt: &'a mut u32,
    interrupts: &'a mut u64,
}

impl QueueIo<'_> {
    /// The device's port onto memory.
    pub fn bus(&self) -> &Bus {
        self.bus
    }

    /// The negotiated features.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Takes the next available chain of queue `q` (none for a queue that
    /// does not exist or is not ready).
    ///
    /// # Errors
    ///
    /// As [`Virtqueue::pop`].
    pub fn pop(&mut self, q: u16) -> Result<Option<Chain>, ChainError> {
        let Some(queue) = self.queues.get_mut(usize::from(q)).filter(|q| q.ready) else {
            return Ok(None);
        };
        if !self.features.contains(Features::RING_PACKED) {
            return queue.pop(self.bus, self.features);
        }
        // A packed chain's ring length is needed again at its completion;
        // it travels in the chain (`ring_len`).
        Ok(queue.pop_packed(self.bus, self.features)?.map(|p| Chain {
            ring_len: p.count,
            ..p.chain
        }))
    }

    /// Whether queue `q` has a chain available, without taking it.
    ///
    /// # Errors
    ///
    /// A faulting ring access.
    pub fn has_available(&mut self, q: u16) -> Result<bool, ChainError> {
        if self.features.contains(Features::RING_PACKED) {
            return Ok(match self.queues.get(usize::from(q)) {
                Some(queue) if queue.ready => queue.available_packed(self.bus)?,
                _ => false,
            });
        }
        match self.queues.get(usize::from(q)) {
            Some(queue) if queue.ready => {
                let mut b = [0u8; 2];
                self.bus
                    .read(dma_core::DmaAddr::new(queue.driver + 2), &mut b)?;
                Ok(u16::from_le_bytes(b) != queue.last_avail)
            }
            _ => Ok(false),
        }
    }

    /// Returns `chain` to queue `q` with `written` bytes written, and
    /// raises the used-buffer interrupt if the driver wants one.
    ///
    /// # Errors
    ///
    /// A faulting ring access.
    pub fn push_used(&mut self, q: u16, chain: &Chain, written: u32) -> Result<(), ChainError> {
        let queue = self
            .queues
            .get_mut(usize::from(q))
            .ok_or(ChainError::Malformed("no such queue"))?;
        let notify = if self.features.contains(Features::RING_PACKED) {
            queue.push_used_packed(self.bus, self.features, chain.head, chain.ring_len, written)?
        } else {
            queue.push_used(self.bus, self.features, chain.head, written)?
        };
        if notify {
            *self.interrupt |= INT_USED_BUFFER;
            *self.interrupts += 1;
        }
        Ok(())
    }
}

struct Transport<B> {
    bus: Bus,
    config: VirtioConfig,
    backend: B,
    status: Status,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    negotiated: Features,
    queue_sel: u32,
    queues: Vec<Virtqueue>,
    interrupt: u32,
    interrupts: u64,
    errors: Vec<String>,
}

impl<B: Backend> Transport<B> {
    fn offered(&self) -> Features {
        self.backend.features()
            | Features::VERSION_1
            | Features::INDIRECT_DESC
            | Features::EVENT_IDX
            | Features::ACCESS_PLATFORM
            | Features::RING_PACKED
    }

    fn selected(&mut self) -> Option<&mut Virtqueue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn fail(&mut self, why: String) {
        self.status |= Status::DEVICE_NEEDS_RESET;
        self.interrupt |= INT_CONFIG_CHANGE;
        self.errors.push(why);
    }

    fn reset(&mut self) {
        self.status = Status::empty();
        self.driver_features = 0;
        self.negotiated = Features::empty();
        self.interrupt = 0;
        self.queues = vec![Virtqueue::default(); usize::from(B::QUEUES)];
        self.backend.reset();
    }

    /// §3.1.1 step 5-6: accept the driver's features or leave
    /// `FEATURES_OK` clear.
    fn negotiate(&mut self) -> Result<(), String> {
        let accepted = Features::from_bits_retain(self.driver_features);
        if !self.offered().contains(accepted) {
            return Err(format!(
                "driver accepted features the device did not offer: {:#x}",
                self.driver_features & !self.offered().bits()
            ));
        }
        if !accepted.contains(Features::VERSION_1) {
            return Err("driver declined VERSION_1; this device has no legacy interface".into());
        }
        if self.config.require_access_platform && !accepted.contains(Features::ACCESS_PLATFORM) {
            return Err(
                "driver declined ACCESS_PLATFORM, which this device requires (§6.1)".into(),
            );
        }
        self.negotiated = accepted;
        Ok(())
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut new = Status::from_bits_retain(value);
        if new.contains(Status::FEATURES_OK) && !self.status.contains(Status::FEATURES_OK) {
            if let Err(why) = self.negotiate() {
                new.remove(Status::FEATURES_OK);
                self.errors.push(why);
            }
        }
        // The device's own bit survives driver writes.
        new.set(
            Status::DEVICE_NEEDS_RESET,
            self.status.contains(Status::DEVICE_NEEDS_RESET),
        );
        self.status = new;
    }

    fn write_queue(&mut self, offset: usize, value: u32) {
        let max = self.config.queue_num_max;
        let packed = self.negotiated.contains(Features::RING_PACKED);
        let Some(q) = self.selected() else {
            return; // no such queue: the write goes nowhere
        };
        let hi = |old: u64| (old & 0xffff_ffff) | u64::from(value) << 32;
        let lo = |old: u64| (old & !0xffff_ffff) | u64::from(value);
        match offset {
            regs::QUEUE_NUM => q.size = u16::try_from(value).unwrap_or(0).min(max),
            regs::QUEUE_DESC_LOW => q.desc = lo(q.desc),
            regs::QUEUE_DESC_HIGH => q.desc = hi(q.desc),
            regs::QUEUE_DRIVER_LOW => q.driver = lo(q.driver),
            regs::QUEUE_DRIVER_HIGH => q.driver = hi(q.driver),
            regs::QUEUE_DEVICE_LOW => q.device = lo(q.device),
            regs::QUEUE_DEVICE_HIGH => q.device = hi(q.device),
            regs::QUEUE_READY => {
                if value & 1 == 0 {
                    q.ready = false;
                    return;
                }
                let checked = if packed {
                    q.validate_packed()
                } else {
                    q.validate()
                };
                q.ready = checked.is_ok();
                q.last_avail = 0;
                q.used_idx = 0;
                // Both wrap counters start at 1 (§2.8.1).
                q.avail_wrap = true;
                q.used_wrap = true;
                if let Err(e) = checked {
                    self.fail(e.to_string());
                }
            }
            _ => {}
        }
    }

    fn read(&self, offset: usize) -> u32 {
        let feature_word = |bits: u64, sel: u32| match sel {
            0 => bits as u32,
            1 => (bits >> 32) as u32,
            _ => 0,
        };
        let queue = self.queues.get(self.queue_sel as usize);
        match offset {
            regs::MAGIC_VALUE => regs::MAGIC,
            regs::VERSION => 2,
            regs::DEVICE_ID => B::DEVICE_ID,
            regs::VENDOR_ID => 0x554d_4953, // "SIMU"
            regs::DEVICE_FEATURES => feature_word(self.offered().bits(), self.device_features_sel),
            regs::QUEUE_NUM_MAX => queue.map_or(0, |_| u32::from(self.config.queue_num_max)),
            regs::QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready)),
            regs::INTERRUPT_STATUS => self.interrupt,
            regs::STATUS => self.status.bits(),
            regs::SHM_LEN_LOW | regs::SHM_LEN_HIGH => u32::MAX,
            regs::CONFIG_GENERATION => 0,
            o if o >= regs::CONFIG => {
                let config = self.backend.config();
                let mut word = [0u8; 4];
                for (i, b) in word.iter_mut().enumerate() {
                    *b = config.get(o - regs::CONFIG + i).copied().unwrap_or(0);
                }
                u32::from_le_bytes(word)
            }
            _ => 0,
        }
    }

    fn write(&mut self, offset: usize, value: u32) {
        match offset {
            regs::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            regs::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            regs::DRIVER_FEATURES if !self.status.contains(Status::FEATURES_OK) => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                self.driver_features =
                    (self.driver_features & !(0xffff_ffff << shift)) | u64::from(value) << shift;
            }
            regs::QUEUE_SEL => self.queue_sel = value,
            regs::QUEUE_NUM
            | regs::QUEUE_READY
            | regs::QUEUE_DESC_LOW
            | regs::QUEUE_DESC_HIGH
            | regs::QUEUE_DRIVER_LOW
            | regs::QUEUE_DRIVER_HIGH
            | regs::QUEUE_DEVICE_LOW
            | regs::QUEUE_DEVICE_HIGH => self.write_queue(offset, value),
            regs::QUEUE_NOTIFY => {} // the device looks at every ready queue each step
            regs::INTERRUPT_ACK => self.interrupt &= !value,
            regs::STATUS => self.write_status(value),
            _ => {}
        }
    }

    fn step(&mut self) -> Step {
        let live = Status::FEATURES_OK | Status::DRIVER_OK;
        if !self.status.contains(live) || self.status.contains(Status::DEVICE_NEEDS_RESET) {
            return Step::Idle;
        }
        let mut io = QueueIo {
            bus: &self.bus,
            features: self.negotiated,
            queues: &mut self.queues,
            interrupt: &mut self.interrupt,
            interrupts: &mut self.interrupts,
        };
        match self.backend.work(&mut io) {
            Ok(true) => Step::Progress,
            Ok(false) => Step::Idle,
            Err(e) => {
                self.fail(e.to_string());
                Step::Progress
            }
        }
    }
}

/// A virtio-mmio device with backend `B`: a cheap handle (clones are the
/// same device), shared by the driver's transport, the test and, if it
/// runs on its own thread, a [`DeviceThread`](crate::DeviceThread).
pub struct VirtioMmio<B> {
    inner: Arc<Mutex<Transport<B>>>,
}

impl<B> Clone for VirtioMmio<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<B> core::fmt::Debug for VirtioMmio<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioMmio").finish_non_exhaustive()
    }
}

impl<B: Backend> VirtioMmio<B> {
    /// A device doing DMA through `bus`, in reset state.
    pub fn new(bus: Bus, backend: B, config: VirtioConfig) -> Self {
        let mut t = Transport {
            bus,
            config,
            backend,
            status: Status::empty(),
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            negotiated: Features::empty(),
            queue_sel: 0,
            queues: Vec::new(),
            interrupt: 0,
            interrupts: 0,
            errors: Vec::new(),
        };
        t.reset();
        Self {
            inner: Arc::new(Mutex::new(t)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Transport<B>> {
        // Every mutation of the transport completes before anything can
        // panic, so a poisoned lock holds consistent state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A 32-bit load at `offset` in the MMIO window.
    pub fn read(&self, offset: usize) -> u32 {
        self.lock().read(offset)
    }

    /// A 32-bit store at `offset` in the MMIO window.
    pub fn write(&self, offset: usize, value: u32) {
        self.lock().write(offset, value);
    }

    /// Reads `buf.len()` bytes of configuration space at `offset` (bytes
    /// past its end read as 0).
    pub fn read_config(&self, offset: usize, buf: &mut [u8]) {
        let config = self.lock().backend.config();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = config.get(offset + i).copied().unwrap_or(0);
        }
    }

    /// Bytes of configuration space the device type defines.
    pub fn config_len(&self) -> usize {
        self.lock().backend.config().len()
    }

    /// The features both sides agreed on (empty before `FEATURES_OK`).
    pub fn negotiated(&self) -> Features {
        self.lock().negotiated
    }

    /// The status register.
    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// Why the device refused a negotiation or needs a reset, oldest
    /// first.
    pub fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    /// Used-buffer interrupts raised so far.
    pub fn interrupts(&self) -> u64 {
        self.lock().interrupts
    }

    /// Runs `f` on the backend (to look at a disk, queue a frame, ...).
    pub fn with_backend<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        f(&mut self.lock().backend)
    }
}

impl<B: Backend> Device for VirtioMmio<B> {
    fn step(&mut self) -> Step {
        self.lock().step()
    }
}
