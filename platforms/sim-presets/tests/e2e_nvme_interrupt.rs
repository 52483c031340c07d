//! The reference NVMe driver waiting interrupt-driven: its waiter has an
//! interrupt vector, so each wait sleeps until the interrupt before it
//! looks at the completion queue. The sim models no interrupt lines, so
//! the waiter plays the interrupt controller: a sleep steps the simulated
//! controller until it has executed a command (and posted its completion)
//! and then reports the interrupt, loses it, or never lets the controller
//! run. (Under VFIO the real one is an MSI-X eventfd: `cargo xtask linux`.)

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::nvme::{prp_pools, NvmeBlockDriver, NvmeDriverConfig};
use dma_drivers::Wake;
use dma_drivers::{DriverError, Wait};
use dma_sim::nvme::{NvmeConfig, NvmeController};
use dma_sim::{Device, DeviceId, Sim, Step};
use dma_sim_presets::{Preset, PresetRun};

/// What a sleep does with the controller's completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    /// Steps the controller until it executed a command: the interrupt.
    Interrupt,
    /// Steps it as well, but the interrupt never arrives: the sleep runs
    /// out of budget.
    Lost,
    /// The controller is not run while the driver sleeps.
    Never,
}

struct IrqStepping {
    ctrl: NvmeController,
    delivery: Delivery,
    idle: u32,
    sleeps: u64,
}

impl IrqStepping {
    fn new(ctrl: NvmeController) -> Self {
        Self {
            ctrl,
            delivery: Delivery::Interrupt,
            idle: 0,
            sleeps: 0,
        }
    }
}

impl Wait for IrqStepping {
    fn begin(&mut self) {
        self.idle = 0;
    }

    /// Bring-up and admin commands are polled, one step per pause.
    fn pause(&mut self) -> bool {
        match self.ctrl.step() {
            Step::Progress => self.idle = 0,
            Step::Idle => self.idle += 1,
        }
        self.idle <= 8
    }

    fn interrupt_vector(&self) -> Option<u16> {
        Some(1)
    }

    fn sleep(&mut self) -> Wake {
        self.sleeps += 1;
        if self.delivery == Delivery::Never {
            return Wake::GaveUp;
        }
        let before = self.ctrl.stats().commands;
        for _ in 0..64 {
            self.ctrl.step();
            if self.ctrl.stats().commands > before {
                return match self.delivery {
                    Delivery::Interrupt => Wake::Interrupt,
                    _ => Wake::GaveUp,
                };
            }
        }
        Wake::GaveUp
    }
}

fn disk() -> NvmeConfig {
    NvmeConfig {
        blocks: 4096,
        ..NvmeConfig::default()
    }
}

type Driver<'a, P> = NvmeBlockDriver<'a, &'a Checked<P>, IrqStepping, DmaBuf>;

fn filled<P: DmaMap + DmaAlloc>(p: &Checked<P>, byte: u8) -> DmaBuf {
    let mut b = DmaBuf::for_device(p, 4096).unwrap();
    b.fill(byte);
    b
}

/// Synchronous and batched I/O, each completion found after the
/// interrupt that announced it; then a lost interrupt (the completion is
/// still found, and counted) and one that never comes (a timeout that
/// `recover` answers with the buffer).
struct InterruptDriven;

impl PresetRun for InterruptDriven {
    type Output = ();

    fn device_name(&self) -> &str {
        "nvme0"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let pools = prp_pools(p).unwrap();
        let mut drv: Driver<'_, P> = NvmeBlockDriver::start(
            &regs,
            p,
            &pools,
            IrqStepping::new(ctrl),
            NvmeDriverConfig::default(),
        )
        .unwrap();
        assert_eq!(drv.wait_ref().sleeps, 0, "bring-up polls");

        // Synchronous: write, flush, read; each wait sleeps once and the
        // look after the wake finds the entry. The first wait sleeps
        // before it looks (the queue is known empty); the later ones look
        // once first (the last look found an entry, so more may follow).
        drv.write(8, filled(p, 0x5a)).unwrap();
        drv.flush().unwrap();
        let back = drv.read(8, filled(p, 0)).unwrap();
        assert!(back.iter().all(|&b| b == 0x5a));
        let s = drv.stats();
        assert_eq!((s.commands, s.interrupt_completions), (3, 3));
        assert_eq!((s.interrupt_wakes, s.lost_interrupts), (3, 0));
        assert_eq!(s.empty_polls, 2);
        assert_eq!(drv.wait_ref().sleeps, 3);

        // Batched: four reads under one doorbell; every one comes back.
        for i in 0..4u64 {
            drv.queue_read(8 * i, filled(p, 0xee)).unwrap();
        }
        assert!(drv.submit());
        let mut cids = Vec::new();
        for _ in 0..4 {
            let done = drv.wait().unwrap();
            done.result.unwrap();
            cids.push(done.cid);
        }
        cids.sort_unstable();
        cids.dedup();
        assert_eq!(cids.len(), 4);
        assert_eq!(drv.in_flight(), 0);
        assert_eq!(drv.stats().lost_interrupts, 0);

        // A lost interrupt: the last look finds the completion anyway.
        drv.wait_mut().delivery = Delivery::Lost;
        let before = drv.stats();
        let back = drv.read(8, filled(p, 0)).unwrap();
        assert!(back.iter().all(|&b| b == 0x5a));
        let after = drv.stats();
        assert_eq!(after.lost_interrupts, before.lost_interrupts + 1);
        assert_eq!(after.interrupt_completions, before.interrupt_completions);

        // No interrupt and no progress: a timeout naming the interrupt,
        // then recovery hands the buffer back.
        drv.wait_mut().delivery = Delivery::Never;
        let r = drv.read(16, filled(p, 0x77)).unwrap_err();
        assert_eq!(r.error, DriverError::Timeout("an I/O completion interrupt"));
        drv.wait_mut().delivery = Delivery::Interrupt;
        let back = drv.recover().unwrap();
        assert_eq!(back.len(), 1);
        let again = drv.read(8, back.into_iter().next().unwrap()).unwrap();
        assert!(again.iter().all(|&b| b == 0x5a));
        drv.shutdown().unwrap();
    }
}

#[test]
fn interrupt_driven_waits_sleep_then_find_the_completion_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset
            .run(3, DeviceConstraints::UNCONSTRAINED, InterruptDriven)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
    }
}
