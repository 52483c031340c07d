//! What the dma-ring fuzz targets share: a platform, a hostile device that
//! writes anything anywhere in ring memory, and a ledger that checks every
//! buffer comes back exactly once (from a completion, a refusal or a
//! reset) and that every error is a device fault or `Broken`.

use std::collections::HashMap;
use std::sync::OnceLock;

use dma_coherence::HardwareCoherent;
use dma_core::{DeviceConstraints, HostMemory};
use dma_direct::DirectPlatform;
use dma_ring::{MemoryView, Rejected, RingErrorKind, RingMemory};
use libfuzzer_sys::arbitrary::{self, Arbitrary};

/// The platform every target allocates ring memory from.
pub type Platform = DirectPlatform<HostMemory, HardwareCoherent>;

/// A cache-coherent platform over host memory, made once.
pub fn platform() -> &'static Platform {
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    PLATFORM.get_or_init(|| DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED))
}

/// One 16-bit store by the device, anywhere in the ring memory.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Scribble {
    /// Half-word index, taken modulo the memory's half-words.
    pub at: u16,
    /// The value stored.
    pub value: u16,
}

impl Scribble {
    /// Stores the value through `view` (as flag stores: what a device's
    /// completion write looks like to the driver).
    pub fn apply(&self, view: &MemoryView) {
        let halves = view.len() / 2;
        if halves == 0 {
            return;
        }
        let offset = usize::from(self.at) % halves * 2;
        // SAFETY: offset is 2-aligned and below the view's length; the view
        // outlives this call (the target keeps the ring alive).
        unsafe { view.store_flag(offset, self.value) };
    }
}

/// Every buffer in flight, by token, with the bytes the device may write.
#[derive(Debug, Default)]
pub struct Ledger {
    next: u32,
    in_flight: HashMap<u32, u32>,
}

impl Ledger {
    /// A fresh token for the next submission.
    pub fn token(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    /// Records what a submission of `token` with `writable` device-writable
    /// bytes returned: in flight if accepted, else its buffer must be the
    /// token, and the reason a caller's kind.
    pub fn submitted<R>(&mut self, token: u32, writable: u32, result: Result<R, Rejected<u32>>) {
        match result {
            Ok(_) => assert!(self.in_flight.insert(token, writable).is_none()),
            Err(rejected) => {
                assert_eq!(rejected.buffers, token, "a refusal hands back the buffers");
                assert!(
                    !rejected.kind().is_device_fault(),
                    "a submission is refused for the caller's reasons: {rejected:?}"
                );
            }
        }
    }

    /// A completion handed back `token` with `len` bytes written: it was in
    /// flight, comes back once, and `len` fits what was posted.
    pub fn completed(&mut self, token: u32, len: u32) {
        let posted = self
            .in_flight
            .remove(&token)
            .unwrap_or_else(|| panic!("buffer {token} handed back twice or never submitted"));
        assert!(len <= posted, "length {len} beyond the {posted} bytes posted");
    }

    /// A poll failed: only the device's fault, or the ring already broken.
    pub fn failed(&self, kind: RingErrorKind) {
        assert!(
            kind.is_device_fault() || kind == RingErrorKind::Broken,
            "poll failed for a reason that is not the device's: {kind:?}"
        );
    }

    /// A reset handed back `tokens`: exactly everything still in flight.
    pub fn reset(&mut self, tokens: impl Iterator<Item = u32>) {
        for token in tokens {
            self.completed(token, 0);
        }
        assert!(
            self.in_flight.is_empty(),
            "reset kept buffers: {:?}",
            self.in_flight.keys()
        );
    }
}
