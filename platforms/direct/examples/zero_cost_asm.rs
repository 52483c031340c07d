//! On the coherent preset a sync is no code at all. The functions below are
//! kept out of line under fixed names so their machine code can be read:
//!
//! ```text
//! cargo build --release -p dma-direct --example zero_cost_asm
//! objdump -d --no-show-raw-insn target/release/examples/zero_cost_asm \
//!     | grep -A2 -E '<coherent_sync_for_(cpu|device)>:'
//! ```
//!
//! Each is a bare `ret`. Built for aarch64-unknown-linux-gnu, the
//! non-coherent counterparts show the `dc civac` / `dc cvac` loops and
//! `dsb sy` instead.

use std::hint::black_box;

use dma_coherence::HardwareCoherent;
use dma_core::{Bidirectional, DeviceConstraints, HostMemory, StreamingMapping};
use dma_direct::DirectPlatform;

/// The x86-coherent preset on the hosted environment.
type CoherentPlatform = DirectPlatform<HostMemory, HardwareCoherent>;

/// A buffer mapped both ways on it.
type CoherentMapping<'a> = StreamingMapping<Vec<u8>, Bidirectional, &'a CoherentPlatform>;

/// `sync_for_cpu` on the coherent preset.
#[no_mangle]
#[inline(never)]
pub fn coherent_sync_for_cpu(m: &mut CoherentMapping<'_>) {
    m.sync_for_cpu();
}

/// `sync_for_device` on the coherent preset.
#[no_mangle]
#[inline(never)]
pub fn coherent_sync_for_device(m: &mut CoherentMapping<'_>) {
    m.sync_for_device();
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use dma_coherence::arch::aarch64::Aarch64Maintenance;

    /// The ARM non-coherent preset on the hosted environment.
    pub type ArmPlatform = DirectPlatform<HostMemory, Aarch64Maintenance>;

    /// A buffer mapped both ways on it.
    pub type ArmMapping<'a> = StreamingMapping<dma_core::DmaBuf, Bidirectional, &'a ArmPlatform>;

    /// `sync_for_cpu` on the ARM non-coherent preset, for contrast.
    #[no_mangle]
    #[inline(never)]
    pub fn noncoherent_sync_for_cpu(m: &mut ArmMapping<'_>) {
        m.sync_for_cpu();
    }

    /// `sync_for_device` on the ARM non-coherent preset, for contrast.
    #[no_mangle]
    #[inline(never)]
    pub fn noncoherent_sync_for_device(m: &mut ArmMapping<'_>) {
        m.sync_for_device();
    }
}

fn main() -> Result<(), dma_core::Error> {
    let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
    let mut m = StreamingMapping::<_, Bidirectional, _>::map(&platform, vec![0u8; 4096])?;
    // Called through opaque pointers, so the functions stay in the binary
    // under their names instead of being inlined or dropped.
    let for_device: fn(&mut CoherentMapping<'_>) = black_box(coherent_sync_for_device);
    let for_cpu: fn(&mut CoherentMapping<'_>) = black_box(coherent_sync_for_cpu);
    for_device(&mut m);
    for_cpu(&mut m);
    m.unmap()?;

    #[cfg(target_arch = "aarch64")]
    {
        let arm = DirectPlatform::arm_noncoherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
        let buf = dma_core::DmaBuf::for_device(&arm, 4096)?;
        let mut m = StreamingMapping::<_, Bidirectional, _>::map(&arm, buf)?;
        let for_device: fn(&mut arm::ArmMapping<'_>) = black_box(arm::noncoherent_sync_for_device);
        let for_cpu: fn(&mut arm::ArmMapping<'_>) = black_box(arm::noncoherent_sync_for_cpu);
        for_device(&mut m);
        for_cpu(&mut m);
        m.unmap()?;
    }
    println!("synced; disassemble this example to see the code each sync is");
    Ok(())
}
