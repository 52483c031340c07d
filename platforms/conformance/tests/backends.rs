//! The conformance suite against every backend configuration in the
//! workspace: one module per configuration, one test per property, so
//! `cargo test -p dma-conformance` names both (`iommu_deferred_noncoherent::
//! partial_lines`).

use dma_bounce::BouncePlatform;
use dma_check::Checked;
use dma_coherence::{CacheMaintenance, HardwareCoherent};
use dma_conformance::{conformance, Env};
use dma_core::{DmaMap, HostMemory, Result};
use dma_direct::{BusOffset, DirectPlatform};
use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage};
use dma_iommu::soft::SoftIommu;
use dma_iommu::{
    Asid, Deferred, DeviceId, DomainConfig, InvalidationPolicy, IommuPlatform, Strict,
};
use dma_sim::{Sim, SimConfig};
use dma_sim_presets::Preset;

fn direct<C: CacheMaintenance>(env: &Env, cache: C) -> Result<DirectPlatform<HostMemory, C>> {
    Ok(DirectPlatform::new(
        HostMemory,
        cache,
        BusOffset::IDENTITY,
        env.constraints,
    ))
}

type Iommu<C, F> = IommuPlatform<HostMemory, C, SoftIommu<HostMemory>, F>;

fn iommu<C, F>(env: &Env, cache: C, policy: F) -> Result<Iommu<C, F>>
where
    C: CacheMaintenance + Clone,
    F: InvalidationPolicy,
{
    iommu_with(env, cache, policy, Format::default())
}

/// The IOMMU backend on tables of `format` (the software IOMMU walks any).
fn iommu_with<C, F>(env: &Env, cache: C, policy: F, format: Format) -> Result<Iommu<C, F>>
where
    C: CacheMaintenance + Clone,
    F: InvalidationPolicy,
{
    IommuPlatform::new(
        HostMemory,
        cache,
        SoftIommu::new(HostMemory, 16),
        policy,
        env.constraints,
        DomainConfig::new(DeviceId(1), Asid(1)).with_format(format),
    )
}

/// A stage-1 format of `granule` and `bits` of input.
fn format(granule: Granule, bits: u32) -> Format {
    Format::new(granule, bits, Stage::One).expect("32..=48 input bits")
}

fn bounce<P: DmaMap>(inner: Result<P>) -> Result<BouncePlatform<P, HostMemory>> {
    BouncePlatform::new(inner?, HostMemory, 64)
}

fn checked<P>(inner: Result<P>) -> Result<Checked<P>> {
    Ok(Checked::new(inner?))
}

/// Each backend configuration, once bare and once under dma-check.
macro_rules! with_and_without_check {
    ($($name:ident, $checked:ident: $make:expr;)*) => {$(
        conformance!($name, $make);
        conformance!($checked, |env: &Env| checked(($make)(env)));
    )*};
}

with_and_without_check! {
    direct_coherent, checked_direct_coherent:
        |env: &Env| direct(env, HardwareCoherent);
    iommu_strict_coherent, checked_iommu_strict_coherent:
        |env: &Env| iommu(env, HardwareCoherent, Strict);
    iommu_deferred_coherent, checked_iommu_deferred_coherent:
        |env: &Env| iommu(env, HardwareCoherent, Deferred::<8>::new());
    bounce_direct_coherent, checked_bounce_direct_coherent:
        |env: &Env| bounce(direct(env, HardwareCoherent));
}

// The other granules, and a smaller input size, on both cache policies:
// the granule is the IOVA page, so every size and alignment rule meets it.
with_and_without_check! {
    iommu_64k_strict_coherent, checked_iommu_64k_strict_coherent:
        |env: &Env| iommu_with(env, HardwareCoherent, Strict, format(Granule::K64, 48));
    iommu_64k_deferred_noncoherent, checked_iommu_64k_deferred_noncoherent:
        |env: &Env| iommu_with(env, env.cache(), Deferred::<8>::new(), format(Granule::K64, 48));
    iommu_16k_strict_noncoherent, checked_iommu_16k_strict_noncoherent:
        |env: &Env| iommu_with(env, env.cache(), Strict, format(Granule::K16, 40));
    iommu_16k_deferred_coherent, checked_iommu_16k_deferred_coherent:
        |env: &Env| iommu_with(env, HardwareCoherent, Deferred::<8>::new(), format(Granule::K16, 48));
}

with_and_without_check! {
    direct_noncoherent, checked_direct_noncoherent:
        |env: &Env| direct(env, env.cache());
    iommu_strict_noncoherent, checked_iommu_strict_noncoherent:
        |env: &Env| iommu(env, env.cache(), Strict);
    iommu_deferred_noncoherent, checked_iommu_deferred_noncoherent:
        |env: &Env| iommu(env, env.cache(), Deferred::<8>::new());
    bounce_direct_noncoherent, checked_bounce_direct_noncoherent:
        |env: &Env| bounce(direct(env, env.cache()));
    bounce_iommu_noncoherent, checked_bounce_iommu_noncoherent:
        |env: &Env| bounce(iommu(env, env.cache(), Strict));
}

// The sim's presets, as `Preset::run` builds them but without the checking
// layer (the configurations above cover dma-check).
const _: () = assert!(
    Preset::ALL.len() == 3,
    "a new sim preset needs its conformance configuration here"
);

/// The test's machine for `config`: a property may build several
/// platforms (a probe, then the one under test) and hand memory from one
/// to the next, and a physical address belongs to the machine that gave
/// it out. Each test runs on its own thread, so it gets its own machine.
fn sim(config: SimConfig) -> Sim {
    thread_local! {
        static MACHINES: std::cell::RefCell<Vec<(SimConfig, Sim)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    MACHINES.with(|m| {
        let mut m = m.borrow_mut();
        if let Some((_, sim)) = m.iter().find(|(c, _)| *c == config) {
            return sim.clone();
        }
        let sim = Sim::new(config).expect("a valid sim configuration");
        m.push((config, sim.clone()));
        sim
    })
}

conformance!(sim_coherent, |env: &Env| {
    let sim = sim(Preset::Coherent.config(1));
    let dev = sim.add_device("conformance");
    Ok(sim.coherent_platform(dev, env.constraints))
});
conformance!(sim_noncoherent, |env: &Env| {
    let sim = sim(Preset::NonCoherent.config(1));
    let dev = sim.add_device("conformance");
    Ok(sim.non_coherent_platform(dev, env.constraints))
});
conformance!(sim_iommu, |env: &Env| {
    let sim = sim(Preset::Iommu.config(1));
    let dev = sim.add_device("conformance");
    sim.iommu_platform(dev, env.constraints)
});
