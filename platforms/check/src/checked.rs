//! The wrapper platform.

use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use dma_core::{
    CoherentRegion, CpuAccess, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs, DmaDirection,
    DmaMap, Error, ErrorKind, PhysAddr, RawMapping, Result, SgEntry,
};

use crate::classify::{Classifier, MemoryClass};
use crate::report::{Mapping, Operation, Report, SyncPoint};
use crate::tracker::{Tracker, Verdict};
use spin::Mutex;

/// What happens when a misuse is detected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Record the report (and pass it to the [`on_report`](Config::on_report)
    /// hook); the call goes on as described in the crate docs.
    #[default]
    Record,
    /// Record it, then panic with its message: for `cargo test` users who
    /// want misuse to fail the test where it happens.
    Panic,
}

/// How a [`Checked`] platform behaves. Built with chained setters:
///
/// ```
/// use dma_check::{Config, Mode};
/// let config = Config::new().mode(Mode::Panic).cache_line(64);
/// assert_eq!(config.get_mode(), Mode::Panic);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Config {
    mode: Mode,
    cache_line: Option<usize>,
    classifier: Option<Classifier>,
    on_report: Option<fn(&Report)>,
    max_reports: usize,
}

impl Config {
    /// Record mode, the platform's `dma_alignment()` as the cache line, no
    /// classifier, no hook, at most 1024 stored reports.
    pub const fn new() -> Self {
        Self {
            mode: Mode::Record,
            cache_line: None,
            classifier: None,
            on_report: None,
            max_reports: 1024,
        }
    }

    /// Sets the mode.
    pub const fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The mode set.
    pub const fn get_mode(&self) -> Mode {
        self.mode
    }

    /// The cache line size for overlap tracking, a power of two. Default:
    /// the wrapped platform's [`dma_alignment`](DmaMap::dma_alignment),
    /// which is 1 on a coherent platform; set 64 there to catch what would
    /// break on a non-coherent one. The checker's own `dma_alignment` is
    /// raised to it, so buffers made with `DmaBuf::for_device` comply.
    pub const fn cache_line(mut self, bytes: usize) -> Self {
        self.cache_line = Some(bytes);
        self
    }

    /// The environment's stack/read-only classifier (see
    /// [`classify`](crate::classify)).
    pub const fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// A hook called with every report as it happens, outside the
    /// checker's lock (a kernel's log, `eprintln!` in a test).
    pub const fn on_report(mut self, hook: fn(&Report)) -> Self {
        self.on_report = Some(hook);
        self
    }

    /// How many reports are kept for [`Checked::reports`]; later ones are
    /// counted in [`Checked::dropped_reports`] (and still reach the hook).
    pub const fn max_reports(mut self, count: usize) -> Self {
        self.max_reports = count;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// A platform that forwards to `P` and checks every call against what it
/// has mapped and allocated, like Linux's `CONFIG_DMA_API_DEBUG`.
///
/// See the crate docs for what is checked and what is forwarded when a
/// check fails.
pub struct Checked<P> {
    inner: P,
    config: Config,
    panic: AtomicBool,
    state: Mutex<Tracker>,
}

impl<P> Checked<P> {
    /// Wraps `inner` with the default [`Config`].
    pub const fn new(inner: P) -> Self {
        Self::with_config(inner, Config::new())
    }

    /// Wraps `inner` in [`Mode::Panic`].
    pub const fn panicking(inner: P) -> Self {
        Self::with_config(inner, Config::new().mode(Mode::Panic))
    }

    /// Wraps `inner` with `config`.
    pub const fn with_config(inner: P, config: Config) -> Self {
        Self {
            inner,
            panic: AtomicBool::new(matches!(config.mode, Mode::Panic)),
            config,
            state: Mutex::new(Tracker::new()),
        }
    }

    /// The wrapped platform.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        if self.panic.load(Ordering::Relaxed) {
            Mode::Panic
        } else {
            Mode::Record
        }
    }

    /// Switches the mode (for example to panic only around the code under
    /// test).
    pub fn set_mode(&self, mode: Mode) {
        self.panic
            .store(matches!(mode, Mode::Panic), Ordering::Relaxed);
    }

    /// Every stored report, oldest first.
    pub fn reports(&self) -> Vec<Report> {
        self.state.lock().reports.clone()
    }

    /// Takes the stored reports, leaving none.
    pub fn take_reports(&self) -> Vec<Report> {
        core::mem::take(&mut self.state.lock().reports)
    }

    /// Reports beyond [`Config::max_reports`] that were not stored.
    pub fn dropped_reports(&self) -> usize {
        self.state.lock().dropped_reports
    }

    /// Every live mapping and allocation, oldest first.
    pub fn live_mappings(&self) -> Vec<Mapping> {
        self.state.lock().live()
    }

    /// The device is being released (Linux's driver unbind): reports every
    /// mapping and allocation still live as a [`Report::Leak`], stops
    /// tracking them, and returns how many there were. They are leaked, not
    /// unmapped or freed: the device may still be using them.
    ///
    /// Dropping the checker does the same.
    pub fn release(&self) -> usize {
        let mut pending = Vec::new();
        self.state.lock().release(&mut pending);
        let n = pending.len();
        self.emit(pending);
        n
    }

    /// Stores, hooks and (in panic mode) panics on `pending`. Inline, so
    /// the usual empty list costs a compare at each call site.
    #[inline]
    fn emit(&self, pending: Vec<Report>) {
        if !pending.is_empty() {
            self.emit_reports(pending);
        }
    }

    #[cold]
    #[inline(never)]
    fn emit_reports(&self, pending: Vec<Report>) {
        {
            let mut state = self.state.lock();
            for r in &pending {
                if state.reports.len() < self.config.max_reports {
                    state.reports.push(*r);
                } else {
                    state.dropped_reports += 1;
                }
            }
        }
        if let Some(hook) = self.config.on_report {
            pending.iter().for_each(hook);
        }
        if self.mode() == Mode::Panic && !already_panicking() {
            match pending.len() {
                1 => panic!("{}", pending[0]),
                n => panic!("{} (and {} more reports)", pending[0], n - 1),
            }
        }
    }

    fn classify(&self, op: Operation, phys: PhysAddr, len: usize, out: &mut Vec<Report>) {
        if let Some(classify) = self.config.classifier {
            let class = classify(phys, len);
            if class != MemoryClass::Ordinary {
                out.push(Report::BadMemory {
                    op,
                    phys,
                    len,
                    class,
                });
            }
        }
    }
}

#[cfg(feature = "std")]
fn already_panicking() -> bool {
    std::thread::panicking()
}

/// Without `std` a panic during unwinding cannot be detected; kernels
/// usually build with `panic = "abort"`, where it does not matter.
#[cfg(not(feature = "std"))]
fn already_panicking() -> bool {
    false
}

fn refused(message: &'static str, dma: DmaAddr, len: usize) -> Error {
    Error::new(ErrorKind::NotMapped, message)
        .at(dma.as_u64())
        .len(len as u64)
}

impl<P: DmaMap> Checked<P> {
    fn line_size(&self) -> usize {
        self.config
            .cache_line
            .unwrap_or_else(|| self.inner.dma_alignment())
            .max(1)
    }

    fn sync(&self, point: SyncPoint, given: &RawMapping, offset: usize, len: usize) {
        let mut pending = Vec::new();
        let verdict = self
            .state
            .lock()
            .sync(point, given, offset, len, &mut pending);
        self.emit(pending);
        if let Verdict::Forward(m) = verdict {
            match point {
                // SAFETY: `m` is the live record of what the inner platform
                // mapped and the range was checked to lie inside it; the
                // caller promises the device is done with it.
                SyncPoint::ForCpu => unsafe { self.inner.sync_for_cpu(&m, offset, len) },
                // SAFETY: `m` is the live record of what the inner platform
                // mapped and the range was checked to lie inside it; the
                // caller promises the CPU is done with it before the device.
                SyncPoint::ForDevice => unsafe { self.inner.sync_for_device(&m, offset, len) },
            }
        }
    }

    /// Checks a table sync's entry count against the table's (Linux's
    /// `dma_sync_sg_for_*`), then checks and forwards each entry.
    fn sync_sg(&self, point: SyncPoint, entries: &[SgEntry], dir: DmaDirection, attrs: DmaAttrs) {
        let mut pending = Vec::new();
        self.state
            .lock()
            .sync_sg_count(point, entries, &mut pending);
        self.emit(pending);
        for e in entries {
            self.sync(point, &e.as_raw(dir, attrs), 0, e.len);
        }
    }
}

// SAFETY: every call is forwarded unchanged except where a check fails; then
// the inner platform is given either nothing or its own record of what it
// mapped (never a range it did not hand out), so each of its promises holds
// for what the caller receives. Map results are the inner platform's own.
// The checker itself reads and writes no DMA memory.
unsafe impl<P: DmaMap> DmaMap for Checked<P> {
    fn constraints(&self) -> &DeviceConstraints {
        self.inner.constraints()
    }

    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        self.inner.virt_to_phys(cpu, len)
    }

    /// The inner platform's, raised to the configured cache line: a
    /// driver that asks (`DmaBuf::for_device`) then gets buffers that pass
    /// the overlap check it is being held to.
    fn dma_alignment(&self) -> usize {
        let inner = self.inner.dma_alignment();
        self.config.cache_line.map_or(inner, |line| inner.max(line))
    }

    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaAddr> {
        let mut pending = Vec::new();
        self.classify(Operation::Map, phys, len, &mut pending);
        if !pending.is_empty() {
            self.emit(pending);
            return Err(Error::new(
                ErrorKind::Unsupported,
                "dma-check refused to map stack or read-only memory",
            )
            .at(phys.as_u64())
            .len(len as u64));
        }
        // SAFETY: the caller's promise is passed on unchanged.
        let dma = unsafe { self.inner.map(phys, len, dir, attrs) }?;
        let raw = RawMapping {
            phys,
            dma,
            len,
            dir,
            attrs,
        };
        let line_size = self.line_size();
        self.state.lock().add_single(&raw, line_size, &mut pending);
        self.emit(pending);
        Ok(dma)
    }

    unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()> {
        let mut pending = Vec::new();
        let verdict = self.state.lock().unmap(mapping, &mut pending);
        self.emit(pending);
        match verdict {
            // SAFETY: `m` is the inner platform's own live mapping, now
            // removed from tracking so it is unmapped once; the caller
            // promises the device has stopped.
            Verdict::Forward(m) => unsafe { self.inner.unmap(&m) },
            Verdict::Refuse => Err(refused(
                "dma-check: unmap names no live single mapping; not forwarded",
                mapping.dma,
                mapping.len,
            )),
        }
    }

    unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize) {
        self.sync(SyncPoint::ForCpu, mapping, offset, len);
    }

    unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize) {
        self.sync(SyncPoint::ForDevice, mapping, offset, len);
    }

    fn cpu_access(&self, mapping: &RawMapping, offset: usize, len: usize, access: CpuAccess) {
        let mut pending = Vec::new();
        self.state
            .lock()
            .cpu_access(mapping, offset, len, access, &mut pending);
        self.emit(pending);
        self.inner.cpu_access(mapping, offset, len, access);
    }

    unsafe fn map_sg(
        &self,
        entries: &mut [SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        let mut pending = Vec::new();
        for e in entries.iter() {
            self.classify(Operation::MapSg, e.phys, e.len, &mut pending);
        }
        if let Some(Report::BadMemory { phys, len, .. }) = pending.first().copied() {
            self.emit(pending);
            return Err(Error::new(
                ErrorKind::Unsupported,
                "dma-check refused to map stack or read-only memory",
            )
            .at(phys.as_u64())
            .len(len as u64));
        }
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.map_sg(entries, dir, attrs) }?;
        let line_size = self.line_size();
        self.state.lock().add_table(
            entries,
            dir,
            attrs,
            self.inner.constraints(),
            line_size,
            &mut pending,
        );
        self.emit(pending);
        Ok(())
    }

    unsafe fn unmap_sg(
        &self,
        entries: &[SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        let mut pending = Vec::new();
        let verdict = self.state.lock().unmap_sg(entries, dir, &mut pending);
        self.emit(pending);
        match verdict {
            // SAFETY: the whole table exactly as the inner platform mapped
            // it, now removed from tracking so it is unmapped once.
            Verdict::Forward((table, dir)) => unsafe { self.inner.unmap_sg(&table, dir, attrs) },
            Verdict::Refuse => {
                let first = entries
                    .first()
                    .map_or((DmaAddr::ZERO, 0), |e| (e.dma, e.len));
                Err(refused(
                    "dma-check: unmap_sg names no live sg table; not forwarded",
                    first.0,
                    first.1,
                ))
            }
        }
    }

    unsafe fn sync_sg_for_cpu(&self, entries: &[SgEntry], dir: DmaDirection, attrs: DmaAttrs) {
        self.sync_sg(SyncPoint::ForCpu, entries, dir, attrs);
    }

    unsafe fn sync_sg_for_device(&self, entries: &[SgEntry], dir: DmaDirection, attrs: DmaAttrs) {
        self.sync_sg(SyncPoint::ForDevice, entries, dir, attrs);
    }
}

// SAFETY: allocations are the inner platform's own, unchanged; frees forward
// only the inner platform's record of a live allocation, once.
unsafe impl<P: DmaAlloc> DmaAlloc for Checked<P> {
    fn alloc_coherent(&self, size: usize, attrs: DmaAttrs) -> Result<CoherentRegion> {
        let region = self.inner.alloc_coherent(size, attrs)?;
        self.state.lock().add_coherent(
            region.cpu.as_ptr() as usize,
            region.dma,
            region.size,
            attrs,
        );
        Ok(region)
    }

    unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()> {
        let mut pending = Vec::new();
        let verdict = self.state.lock().free_coherent(
            region.cpu.as_ptr() as usize,
            region.dma,
            region.size,
            attrs,
            &mut pending,
        );
        self.emit(pending);
        match verdict {
            Verdict::Forward(m) => {
                let recorded = CoherentRegion {
                    cpu: region.cpu,
                    dma: m.dma,
                    size: m.len,
                };
                // SAFETY: the inner platform's own live allocation (same CPU
                // and device address, its size and attributes), removed
                // from tracking so it is freed once.
                unsafe { self.inner.free_coherent(recorded, m.attrs) }
            }
            Verdict::Refuse => Err(refused(
                "dma-check: free_coherent names no live allocation; not forwarded",
                region.dma,
                region.size,
            )),
        }
    }
}

impl<P> Drop for Checked<P> {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        self.state.get_mut().release(&mut pending);
        self.emit(pending);
    }
}

impl<P: fmt::Debug> fmt::Debug for Checked<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Checked")
            .field("inner", &self.inner)
            .field("mode", &self.mode())
            .field("live", &state.live().len())
            .field("reports", &state.reports.len())
            .finish()
    }
}
