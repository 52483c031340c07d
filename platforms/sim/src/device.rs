//! Running devices: one step at a time, or on a thread of their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The device did a unit of work (a command, a descriptor, a state
    /// change) and may have more.
    Progress,
    /// Nothing to do until the driver acts.
    Idle,
}

/// A simulated device: a state machine advanced by [`step`](Self::step).
///
/// A step reads the device's registers (the driver's MMIO writes), does at
/// most one unit of work through its [`Bus`](crate::Bus), and returns. In
/// tests, stepping from the driver's thread makes a run deterministic; a
/// [`DeviceThread`] steps it concurrently instead.
pub trait Device: Send {
    /// Does at most one unit of work.
    fn step(&mut self) -> Step;
}

/// Steps `device` until it is idle or `max_steps` steps were taken;
/// returns the number of steps that made progress.
pub fn run_until_idle<D: Device + ?Sized>(device: &mut D, max_steps: usize) -> usize {
    let mut progressed = 0;
    for _ in 0..max_steps {
        match device.step() {
            Step::Progress => progressed += 1,
            Step::Idle => break,
        }
    }
    progressed
}

/// A device running on its own thread until stopped.
///
/// ```
/// use dma_sim::{Device, DeviceThread, Step};
/// struct Counter(u32);
/// impl Device for Counter {
///     fn step(&mut self) -> Step {
///         if self.0 < 10 { self.0 += 1; Step::Progress } else { Step::Idle }
///     }
/// }
/// let t = DeviceThread::spawn(Counter(0));
/// let c = t.stop();
/// assert!(c.0 <= 10);
/// ```
#[derive(Debug)]
pub struct DeviceThread<D: Device + 'static> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<D>>,
}

impl<D: Device + 'static> DeviceThread<D> {
    /// Starts stepping `device` on a new thread; when idle it yields the
    /// processor rather than spinning hard.
    pub fn spawn(mut device: D) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut idle_rounds = 0u32;
            while !flag.load(Ordering::Acquire) {
                match device.step() {
                    Step::Progress => idle_rounds = 0,
                    Step::Idle => {
                        idle_rounds = idle_rounds.saturating_add(1);
                        if idle_rounds > 64 {
                            std::thread::sleep(std::time::Duration::from_micros(20));
                        } else {
                            std::thread::yield_now();
                        }
                    }
                }
            }
            device
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread after its current step and gives the device back.
    ///
    /// # Panics
    ///
    /// If the device panicked on its thread (the panic is propagated).
    pub fn stop(mut self) -> D {
        self.stop.store(true, Ordering::Release);
        let handle = self.handle.take().expect("joined only here");
        match handle.join() {
            Ok(d) => d,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<D: Device + 'static> Drop for DeviceThread<D> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A fault a test asks a device model to commit on its next unit of work
/// (IOMMU and bus faults are injected on the machine instead:
/// [`Sim::inject_faults`](crate::Sim::inject_faults)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Complete the next command or descriptor with an error, without
    /// doing it.
    Error,
    /// Do the next unit of work but never report its completion (a lost
    /// completion).
    DropCompletion,
    /// Report the next completion only after this many more steps (a late
    /// completion).
    DelayCompletion {
        /// Steps to wait.
        steps: u32,
    },
    /// Write seeded garbage into the next completion entry instead of the
    /// real one (it still looks new: the phase or done bit is right).
    GarbageCompletion,
}

/// Completions held back by [`Injection::DelayCompletion`].
#[derive(Debug)]
pub(crate) struct Delayed<T> {
    queue: std::collections::VecDeque<(u64, T)>,
}

impl<T> Default for Delayed<T> {
    fn default() -> Self {
        Self {
            queue: std::collections::VecDeque::new(),
        }
    }
}

impl<T> Delayed<T> {
    pub(crate) fn push(&mut self, due: u64, item: T) {
        self.queue.push_back((due, item));
    }

    /// The first item due at `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<T> {
        let i = self.queue.iter().position(|(due, _)| *due <= now)?;
        self.queue.remove(i).map(|(_, t)| t)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
