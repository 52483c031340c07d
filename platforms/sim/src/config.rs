//! How a simulated machine is built.

use dma_core::{Error, ErrorKind, Result};

/// The machine's shape: coherent or not, its cache line, its seed.
///
/// ```
/// use dma_sim::SimConfig;
/// let cfg = SimConfig::non_coherent().line_size(128).seed(7).eviction_per_mille(500);
/// assert_eq!(cfg.line(), 128);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimConfig {
    coherent: bool,
    line_size: usize,
    seed: u64,
    eviction_per_mille: u16,
    detector: bool,
    panic_on_report: bool,
}

impl SimConfig {
    /// A coherent machine (x86-like): CPU and devices see the same bytes.
    pub const fn coherent() -> Self {
        Self {
            coherent: true,
            line_size: 64,
            seed: 0,
            eviction_per_mille: 0,
            detector: true,
            panic_on_report: false,
        }
    }

    /// A non-coherent machine (ARM-like): write-back CPU caches that
    /// devices do not snoop, 64-byte lines, seed 0, an eviction chance of
    /// 250 per mille at every sim event, detector on.
    pub const fn non_coherent() -> Self {
        Self {
            coherent: false,
            line_size: 64,
            seed: 0,
            eviction_per_mille: 250,
            detector: true,
            panic_on_report: false,
        }
    }

    /// Sets the cache line size (32, 64 or 128; checked by [`Sim::new`](crate::Sim::new)).
    pub const fn line_size(mut self, bytes: usize) -> Self {
        self.line_size = bytes;
        self
    }

    /// Sets the seed of every random choice the machine makes.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the chance, per sim event (device access, platform call), that
    /// one randomly chosen tracked line is evicted (written back if dirty).
    pub const fn eviction_per_mille(mut self, per_mille: u16) -> Self {
        self.eviction_per_mille = per_mille;
        self
    }

    /// Turns the coherency-bug detector on or off (the cache model itself
    /// always runs).
    pub const fn detector(mut self, on: bool) -> Self {
        self.detector = on;
        self
    }

    /// Makes every detector report a panic (after it is recorded), for
    /// tests that want the first bug to stop them.
    pub const fn panic_on_report(mut self, on: bool) -> Self {
        self.panic_on_report = on;
        self
    }

    /// Whether the machine is coherent.
    pub const fn is_coherent(&self) -> bool {
        self.coherent
    }

    /// The cache line size.
    pub const fn line(&self) -> usize {
        self.line_size
    }

    /// The seed.
    pub const fn seed_value(&self) -> u64 {
        self.seed
    }

    pub(crate) const fn eviction(&self) -> u16 {
        self.eviction_per_mille
    }

    pub(crate) const fn detector_on(&self) -> bool {
        self.detector
    }

    pub(crate) const fn panics(&self) -> bool {
        self.panic_on_report
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !matches!(self.line_size, 32 | 64 | 128) {
            return Err(Error::new(
                ErrorKind::InvalidConstraints,
                "sim cache line size must be 32, 64 or 128",
            )
            .len(self.line_size as u64));
        }
        if self.eviction_per_mille > 1000 {
            return Err(Error::new(
                ErrorKind::InvalidConstraints,
                "eviction chance is per mille: at most 1000",
            ));
        }
        Ok(())
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::non_coherent()
    }
}
