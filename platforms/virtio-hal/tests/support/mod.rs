//! The test rig: virtio-drivers' `Transport` over the sim's virtio-mmio
//! device models, and a `StaticPlatform` per test thread over the sim's
//! non-coherent machine under `dma-check`.

#![allow(dead_code)] // each test file uses a part

use core::marker::PhantomData;
use core::ptr::NonNull;
use std::cell::Cell;
use std::thread::LocalKey;

use dma_bounce::BouncePlatform;
use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaMap};
use dma_sim::virtio::{regs, Backend, VirtioMmio};
use dma_sim::{
    run_until_idle, DeviceId, IommuTranslatedPlatform, NonCoherentPlatform, Sim, SimConfig,
    SimMemory,
};
use dma_sim_presets::Outcome;
use dma_virtio_hal::{StaticPlatform, VirtioHal};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The platform under test: a preset's backend, bounce buffering for what
/// it refuses, `dma-check` outermost.
pub type Platform<P = NonCoherentPlatform> = Checked<BouncePlatform<P, SimMemory>>;

/// Bounce slots (2 KiB each): enough for a net device's posted receive
/// buffers plus requests in flight.
const BOUNCE_SLOTS: usize = 256;

/// Steps the device may take for one notify before the rig gives up.
const MAX_STEPS: usize = 100_000;

type Slot<P> = Cell<Option<&'static Platform<P>>>;

thread_local! {
    // Each test runs on its own thread with its own machine; the `Hal`
    // reaches it through here (one slot per preset type).
    static NON_COHERENT: Slot<NonCoherentPlatform> = const { Cell::new(None) };
    static IOMMU: Slot<IommuTranslatedPlatform> = const { Cell::new(None) };
    // The machine whose physical addresses `classify` is asked about.
    static CLASSIFIED: std::cell::RefCell<Option<Sim>> = const { std::cell::RefCell::new(None) };
}

/// `dma-check`'s classifier for this thread's machine: the sim's physical
/// addresses are its own layout, so the address is turned back into the
/// host address the hosted classifier (stack bounds, read-only image)
/// understands.
fn classify(phys: dma_core::PhysAddr, len: usize) -> dma_check::classify::MemoryClass {
    use dma_core::PhysMemory;
    let host = CLASSIFIED.with(|m| {
        let sim = m.borrow();
        sim.as_ref()?.memory().phys_to_virt(phys, len).ok()
    });
    match host {
        Some(host) => {
            let host = dma_core::PhysAddr::new(host.as_ptr() as u64);
            dma_check::classify::host_linux(host, len)
        }
        None => dma_check::classify::MemoryClass::Ordinary,
    }
}

/// A preset's backend on the non-coherent machine.
pub trait Preset: DmaMap + DmaAlloc + Sync + Sized + 'static {
    /// The backend serving `dev`.
    fn build(sim: &Sim, dev: DeviceId) -> Self;
    /// This thread's installed platform of this type.
    fn slot() -> &'static LocalKey<Slot<Self>>;
}

impl Preset for NonCoherentPlatform {
    fn build(sim: &Sim, dev: DeviceId) -> Self {
        sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED)
    }
    fn slot() -> &'static LocalKey<Slot<Self>> {
        &NON_COHERENT
    }
}

impl Preset for IommuTranslatedPlatform {
    fn build(sim: &Sim, dev: DeviceId) -> Self {
        sim.iommu_platform(dev, DeviceConstraints::UNCONSTRAINED)
            .expect("an IOMMU domain")
    }
    fn slot() -> &'static LocalKey<Slot<Self>> {
        &IOMMU
    }
}

/// The marker type whose `StaticPlatform` is this thread's machine.
pub struct SimBoard<P = NonCoherentPlatform>(PhantomData<P>);

impl<P: Preset> StaticPlatform for SimBoard<P> {
    type Platform = Platform<P>;

    fn platform() -> &'static Platform<P> {
        P::slot()
            .with(Cell::get)
            .expect("the test installs its platform (Rig::new) before using the Hal")
    }

    unsafe fn mmio_phys_to_virt(paddr: u64, _size: usize) -> NonNull<u8> {
        // Not reached: `SimTransport` talks to the device model directly
        // and virtio-drivers never maps MMIO through the `Hal` for it.
        NonNull::new(paddr as usize as *mut u8).expect("MMIO is never at address 0")
    }
}

/// The `Hal` the drivers run on (the non-coherent preset).
pub type Hal = VirtioHal<SimBoard>;

/// The `Hal` over the IOMMU preset.
pub type IommuHal = VirtioHal<SimBoard<IommuTranslatedPlatform>>;

fn machine(seed: u64) -> SimConfig {
    SimConfig::non_coherent().seed(seed).panic_on_report(true)
}

/// One test's machine.
pub struct Rig<P: Preset = NonCoherentPlatform> {
    pub sim: Sim,
    pub dev: DeviceId,
    pub platform: &'static Platform<P>,
}

impl Rig {
    /// A non-coherent machine with `seed`, one device, its platform
    /// installed as this thread's [`SimBoard`]. A detector report panics
    /// where it happens, with its text and the command that replays it.
    pub fn new(seed: u64, device: &str) -> Self {
        Self::build(machine(seed), device, false)
    }

    /// As [`new`](Self::new), with `dma-check` classifying stack and
    /// read-only memory as Linux's dma-debug does (the hosted classifier,
    /// on the host address each sim physical address stands for).
    pub fn with_stack_check(seed: u64, device: &str) -> Self {
        Self::build(machine(seed), device, true)
    }
}

impl Rig<IommuTranslatedPlatform> {
    /// As [`Rig::new`], behind the sim's IOMMU.
    pub fn iommu(seed: u64, device: &str) -> Self {
        Self::build(machine(seed), device, false)
    }
}

impl<P: Preset> Rig<P> {
    fn build(config: SimConfig, device: &str, classify: bool) -> Self {
        let sim = Sim::new(config).expect("valid machine");
        let dev = sim.add_device(device);
        let backend = P::build(&sim, dev);
        let bounce = BouncePlatform::new(backend, sim.memory(), BOUNCE_SLOTS).expect("bounce pool");
        let mut checker = dma_check::Config::new().cache_line(config.line());
        if classify {
            CLASSIFIED.with(|m| *m.borrow_mut() = Some(sim.clone()));
            checker = checker.classifier(self::classify);
        }
        // Leaked: `Hal` needs a `&'static`; one small platform per test.
        let platform: &'static Platform<P> =
            Box::leak(Box::new(Checked::with_config(bounce, checker)));
        P::slot().with(|c| c.set(Some(platform)));
        Self { sim, dev, platform }
    }

    /// What the checker and the detector saw (every mapping still live is
    /// reported as a leak), as `Preset::run` collects it.
    pub fn finish<T>(self, output: T) -> Outcome<T> {
        self.platform.release();
        P::slot().with(|c| c.set(None));
        Outcome {
            output,
            checker: self.platform.take_reports(),
            reports: self.sim.take_reports(),
            faults: self.sim.take_faults(),
            stats: self.sim.stats(),
        }
    }
}

/// Prints what an outcome holds, for assertion messages.
pub fn describe<T>(o: &Outcome<T>) -> String {
    let mut s = String::new();
    for r in &o.checker {
        s += &format!("dma-check: {r}\n");
    }
    for r in &o.reports {
        s += &format!("dma-sim: {r}\n");
    }
    for f in &o.faults {
        s += &format!("fault: {f}\n");
    }
    s
}

/// virtio-drivers' `Transport` over a sim virtio-mmio device. By default
/// a notify steps the device until it is idle, so a run is deterministic:
/// the driver finds its completions when it next looks. Built with
/// [`threaded`](Self::threaded), a notify only writes the register and the
/// device runs on its own thread, concurrently with the driver's polling.
pub struct SimTransport<B> {
    dev: VirtioMmio<B>,
    kind: DeviceType,
    step_on_notify: bool,
}

impl<B: Backend> SimTransport<B> {
    /// Checks the magic value, the modern version and the device id as a
    /// driver probing an MMIO window would.
    pub fn new(dev: VirtioMmio<B>) -> Result<Self, String> {
        if dev.read(regs::MAGIC_VALUE) != regs::MAGIC {
            return Err("bad magic".into());
        }
        if dev.read(regs::VERSION) != 2 {
            return Err("not a modern virtio-mmio device".into());
        }
        let kind = DeviceType::try_from(dev.read(regs::DEVICE_ID)).map_err(|e| e.to_string())?;
        Ok(Self {
            dev,
            kind,
            step_on_notify: true,
        })
    }

    /// For a device stepped by a [`DeviceThread`](dma_sim::DeviceThread).
    pub fn threaded(dev: VirtioMmio<B>) -> Result<Self, String> {
        let mut t = Self::new(dev)?;
        t.step_on_notify = false;
        Ok(t)
    }

    fn select(&mut self, queue: u16) {
        self.dev.write(regs::QUEUE_SEL, u32::from(queue));
    }

    fn write_u64(&mut self, low: usize, high: usize, value: u64) {
        self.dev.write(low, value as u32);
        self.dev.write(high, (value >> 32) as u32);
    }

    /// Runs the device until idle (a frame arriving, say).
    pub fn pump(&mut self) {
        run_until_idle(&mut self.dev.clone(), MAX_STEPS);
    }
}

impl<B: Backend> Transport for SimTransport<B> {
    fn device_type(&self) -> DeviceType {
        self.kind
    }

    fn read_device_features(&mut self) -> u64 {
        self.dev.write(regs::DEVICE_FEATURES_SEL, 0);
        let low = self.dev.read(regs::DEVICE_FEATURES);
        self.dev.write(regs::DEVICE_FEATURES_SEL, 1);
        u64::from(low) | u64::from(self.dev.read(regs::DEVICE_FEATURES)) << 32
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.dev.write(regs::DRIVER_FEATURES_SEL, 0);
        self.dev
            .write(regs::DRIVER_FEATURES, driver_features as u32);
        self.dev.write(regs::DRIVER_FEATURES_SEL, 1);
        self.dev
            .write(regs::DRIVER_FEATURES, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.select(queue);
        self.dev.read(regs::QUEUE_NUM_MAX)
    }

    fn notify(&mut self, queue: u16) {
        self.dev.write(regs::QUEUE_NOTIFY, u32::from(queue));
        if self.step_on_notify {
            self.pump();
        }
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.dev.read(regs::STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.dev.write(regs::STATUS, status.bits());
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {
        // Legacy only; the modern interface has no such register.
    }

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.select(queue);
        self.dev.write(regs::QUEUE_NUM, size);
        self.write_u64(regs::QUEUE_DESC_LOW, regs::QUEUE_DESC_HIGH, descriptors);
        self.write_u64(regs::QUEUE_DRIVER_LOW, regs::QUEUE_DRIVER_HIGH, driver_area);
        self.write_u64(regs::QUEUE_DEVICE_LOW, regs::QUEUE_DEVICE_HIGH, device_area);
        self.dev.write(regs::QUEUE_READY, 1);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.select(queue);
        self.dev.write(regs::QUEUE_READY, 0);
        self.dev.write(regs::QUEUE_NUM, 0);
        self.write_u64(regs::QUEUE_DESC_LOW, regs::QUEUE_DESC_HIGH, 0);
        self.write_u64(regs::QUEUE_DRIVER_LOW, regs::QUEUE_DRIVER_HIGH, 0);
        self.write_u64(regs::QUEUE_DEVICE_LOW, regs::QUEUE_DEVICE_HIGH, 0);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.select(queue);
        self.dev.read(regs::QUEUE_READY) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let pending = self.dev.read(regs::INTERRUPT_STATUS);
        self.dev.write(regs::INTERRUPT_ACK, pending);
        InterruptStatus::from_bits_truncate(pending)
    }

    fn read_config_generation(&self) -> u32 {
        self.dev.read(regs::CONFIG_GENERATION)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let len = core::mem::size_of::<T>();
        if offset + len > self.dev.config_len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        let mut buf = vec![0u8; len];
        self.dev.read_config(offset, &mut buf);
        T::read_from_bytes(&buf).map_err(|_| Error::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> Result<(), Error> {
        // Neither model has a writable configuration field.
        Err(Error::Unsupported)
    }
}
