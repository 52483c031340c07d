//! The machine's CPU cache as a `dma-coherence` maintenance policy.

use std::sync::atomic::Ordering;

use dma_coherence::CacheMaintenance;

use crate::report::ReportKind;
use crate::Sim;

/// The sim's [`CacheMaintenance`]: clean writes the CPU's dirty lines to
/// the device's view, invalidate reloads the CPU's lines from it. Only
/// lines of live cached regions are modelled; maintenance elsewhere does
/// nothing (no device can see that memory). On a coherent machine it
/// reports itself coherent and does nothing.
///
/// The operations take CPU (host) addresses, as the instructions do; the
/// model finds the lines by their physical addresses (see
/// [`SimMemory`](crate::SimMemory)). A range that is not inside one piece
/// of sim memory holds no tracked line.
#[derive(Clone, Debug)]
pub struct SimCache {
    pub(crate) sim: Sim,
}

// SAFETY: on a non-coherent machine the operations complete the model's
// write-back and reload before returning, which is exactly what the device
// sees; `line_size` is the machine's one line size; on a coherent machine
// `is_coherent` is true and devices see the CPU's bytes directly.
unsafe impl CacheMaintenance for SimCache {
    fn is_coherent(&self) -> bool {
        self.sim.machine.config.is_coherent()
    }

    fn line_size(&self) -> usize {
        self.sim.machine.config.line()
    }

    unsafe fn clean(&self, va: usize, len: usize) {
        if self.is_coherent() {
            return;
        }
        self.sim.machine.maintenance.fetch_add(1, Ordering::Relaxed);
        self.sim.machine.with(|s, cfg| {
            s.tick(cfg);
            let Some(phys) = s.phys.to_sim(va as u64, len as u64) else {
                return;
            };
            let range = (phys, len as u64);
            let out = if s.filled.take() == Some(range) {
                // The map that just made the range live: the CPU has not run
                // since its lines were filled.
                s.shadow.clean_unchanged(range.0, range.1)
            } else {
                // SAFETY: only tracked bytes are touched, and tracked bytes
                // belong to live regions whose memory is allocated.
                unsafe { s.shadow.clean(range.0, range.1) }
            };
            s.stats.lines_cleaned += out.lines as u64;
            s.report(
                cfg,
                ReportKind::DirtyWritebackOverDeviceData,
                out.finding,
                None,
                None,
            );
        });
    }

    unsafe fn invalidate(&self, va: usize, len: usize) {
        if self.is_coherent() {
            return;
        }
        self.sim.machine.maintenance.fetch_add(1, Ordering::Relaxed);
        self.sim.machine.with(|s, cfg| {
            s.tick(cfg);
            s.filled = None;
            let Some(phys) = s.phys.to_sim(va as u64, len as u64) else {
                return;
            };
            // SAFETY: as for clean; the caller owns the lines (contract).
            let out = unsafe { s.shadow.invalidate(phys, len as u64) };
            s.stats.lines_invalidated += out.lines as u64;
        });
    }

    unsafe fn clean_invalidate(&self, va: usize, len: usize) {
        // SAFETY: the caller's promise covers both halves.
        unsafe {
            self.clean(va, len);
            self.invalidate(va, len);
        }
    }
}
