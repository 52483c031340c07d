//! The configurations the virtio driver tests run in (every preset, both
//! queue layouts, `EVENT_IDX` and `INDIRECT_DESC` each on and off) and the
//! checks every such run must pass.

use std::fmt;

use dma_core::DeviceConstraints;
use dma_drivers::virtio::spec::Features;
use dma_drivers::virtio::transport::{QueueLayout, VirtioOptions};
use dma_sim_presets::{Preset, PresetRun};

/// One configuration of a driver run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub preset: Preset,
    pub layout: QueueLayout,
    pub event_idx: bool,
    pub indirect: bool,
}

impl Config {
    /// Every configuration: 3 presets x 2 layouts x 4 feature choices.
    pub fn all() -> impl Iterator<Item = Self> {
        Preset::ALL.into_iter().flat_map(|preset| {
            [QueueLayout::Split, QueueLayout::Packed]
                .into_iter()
                .flat_map(move |layout| {
                    [(false, false), (true, false), (false, true), (true, true)]
                        .into_iter()
                        .map(move |(event_idx, indirect)| Self {
                            preset,
                            layout,
                            event_idx,
                            indirect,
                        })
                })
        })
    }

    /// The driver options asking for this configuration with queues of
    /// `queue_size` entries (the IOMMU preset translates, so the driver
    /// must insist on `ACCESS_PLATFORM` there).
    pub fn options(self, queue_size: u16) -> VirtioOptions {
        VirtioOptions {
            layout: self.layout,
            event_idx: self.event_idx,
            indirect: self.indirect,
            platform_translates: self.preset == Preset::Iommu,
            queue_size,
        }
    }

    /// Runs `body` on this configuration's preset with `seed`; requires
    /// the checker and the detector to be silent, no device fault, and the
    /// driver to have negotiated exactly what was asked. Returns the
    /// negotiated features and the body's statistics.
    pub fn run_clean<R, S>(self, seed: u64, body: R) -> (Features, S)
    where
        R: PresetRun<Output = (Features, S)>,
    {
        let out = self
            .preset
            .run(seed, DeviceConstraints::UNCONSTRAINED, body)
            .unwrap();
        assert!(out.clean(), "{self}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{self}: {:?}", out.faults);
        let (features, stats) = out.output;
        assert!(features.contains(Features::VERSION_1), "{self}");
        assert_eq!(
            features.contains(Features::RING_PACKED),
            self.layout == QueueLayout::Packed,
            "{self}"
        );
        assert_eq!(
            features.contains(Features::EVENT_IDX),
            self.event_idx,
            "{self}"
        );
        assert_eq!(
            features.contains(Features::INDIRECT_DESC),
            self.indirect,
            "{self}"
        );
        (features, stats)
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} event_idx={} indirect={}",
            self.preset, self.layout, self.event_idx, self.indirect
        )
    }
}
