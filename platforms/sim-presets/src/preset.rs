//! The sim's three machines, each with the checking layer on, for running
//! one generic driver body on all of them.

use core::fmt;

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaMap, Result};

use dma_sim::{DeviceId, Fault, Report, Sim, SimConfig, SimStats};

/// One of the sim's presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// x86-like: caches coherent with devices, physical addressing
    /// ([`Sim::coherent_platform`]).
    Coherent,
    /// Arm-like: write-back caches devices do not snoop, with the seeded
    /// evictor and the coherency-bug detector, physical addressing
    /// ([`Sim::non_coherent_platform`]).
    NonCoherent,
    /// Behind the sim's IOMMU (`dma-iommu`'s tables, walked by the sim), on
    /// the non-coherent machine: an Arm SoC with an SMMU
    /// ([`Sim::iommu_platform`]).
    Iommu,
}

impl Preset {
    /// All three, in table order.
    pub const ALL: [Self; 3] = [Self::Coherent, Self::NonCoherent, Self::Iommu];

    /// A short name for tables.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Coherent => "coherent",
            Self::NonCoherent => "non-coherent",
            Self::Iommu => "iommu",
        }
    }

    /// The machine this preset runs on, with `seed`.
    pub const fn config(self, seed: u64) -> SimConfig {
        match self {
            Self::Coherent => SimConfig::coherent().seed(seed),
            Self::NonCoherent | Self::Iommu => SimConfig::non_coherent().seed(seed),
        }
    }

    /// Builds the machine with `seed`, adds one device, wraps the preset's
    /// platform for it (under `constraints`) in `dma-check`'s [`Checked`]
    /// (cache line = the machine's), runs `body`, then releases the device
    /// (every mapping still live is reported as a leak) and collects what
    /// the checker and the sim saw.
    ///
    /// # Errors
    ///
    /// An invalid machine configuration, or constraints the IOMMU backend
    /// refuses.
    pub fn run<R: PresetRun>(
        self,
        seed: u64,
        constraints: DeviceConstraints,
        body: R,
    ) -> Result<Outcome<R::Output>> {
        let config = self.config(seed);
        let sim = Sim::new(config)?;
        let dev = sim.add_device(body.device_name());
        let checker = dma_check::Config::new().cache_line(config.line());
        match self {
            Self::Coherent => {
                let p = Checked::with_config(sim.coherent_platform(dev, constraints), checker);
                Ok(finish(&sim, &p, body.run(&sim, dev, &p)))
            }
            Self::NonCoherent => {
                let p = Checked::with_config(sim.non_coherent_platform(dev, constraints), checker);
                Ok(finish(&sim, &p, body.run(&sim, dev, &p)))
            }
            Self::Iommu => {
                let p = Checked::with_config(sim.iommu_platform(dev, constraints)?, checker);
                Ok(finish(&sim, &p, body.run(&sim, dev, &p)))
            }
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn finish<P, T>(sim: &Sim, platform: &Checked<P>, output: T) -> Outcome<T> {
    platform.release();
    Outcome {
        output,
        checker: platform.take_reports(),
        reports: sim.take_reports(),
        faults: sim.take_faults(),
        stats: sim.stats(),
    }
}

/// A driver body generic over the platform, run by [`Preset::run`].
///
/// (A trait rather than a closure: a closure cannot be generic over the
/// platform type, and each preset's platform is a different type.)
pub trait PresetRun {
    /// What the body returns.
    type Output;

    /// The device's name on the machine.
    fn device_name(&self) -> &str {
        "dev0"
    }

    /// Runs the body against `platform`, which serves `device` on `sim`.
    /// Everything mapped or allocated must be released before it returns.
    fn run<P: DmaMap + DmaAlloc>(
        self,
        sim: &Sim,
        device: DeviceId,
        platform: &Checked<P>,
    ) -> Self::Output;
}

/// What a [`Preset::run`] produced and what the checking layers saw.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The body's result.
    pub output: T,
    /// `dma-check`'s reports (API misuse, leaks at release).
    pub checker: Vec<dma_check::Report>,
    /// The sim's coherency-bug detector reports.
    pub reports: Vec<Report>,
    /// Device accesses the machine refused (IOMMU and bus faults).
    pub faults: Vec<Fault>,
    /// The machine's counters at the end.
    pub stats: SimStats,
}

impl<T> Outcome<T> {
    /// Whether neither the checker nor the detector reported anything.
    pub fn clean(&self) -> bool {
        self.checker.is_empty() && self.reports.is_empty()
    }
}
