//! Register blocks shared between a driver and a simulated device.

use std::sync::Arc;

/// A register block type that may live in ordinary memory: every bit
/// pattern, zero included, is a valid value (true of structs made only of
/// tock-registers `ReadWrite`/`ReadOnly`/`WriteOnly` fields and arrays of
/// them, which are `UnsafeCell`s of plain integers).
///
/// # Safety
///
/// Implementors are `#[repr(C)]` structs of integer registers (no
/// references, no padding-sensitive invariants), valid when zeroed.
pub unsafe trait RegisterBlock: Sized {}

/// A device's register block, in host memory, shared by the driver (which
/// dereferences it to the tock-registers struct, as it would a pointer to
/// a BAR) and the device model (which polls it in [`Device::step`](crate::Device::step)).
///
/// Both sides access it only through tock-registers' volatile reads and
/// writes of whole registers, as CPU and device share real MMIO; the block
/// is never moved while shared (it is boxed and reference-counted).
pub struct Mmio<R: RegisterBlock> {
    // Boxed so it can be allocated zeroed without a value of R in hand.
    #[allow(clippy::redundant_allocation)]
    block: Arc<Box<R>>,
}

impl<R: RegisterBlock> Mmio<R> {
    /// A zeroed register block.
    pub fn new_zeroed() -> Self {
        const {
            assert!(
                core::mem::size_of::<R>() > 0,
                "a register block has registers"
            )
        };
        let layout = std::alloc::Layout::new::<R>();
        // SAFETY: the layout has non-zero size (asserted above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<R>();
        if raw.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `raw` is a fresh allocation with R's layout, and zeroed
        // memory is a valid R (RegisterBlock's contract).
        let block = unsafe { Box::from_raw(raw) };
        Self {
            block: Arc::new(block),
        }
    }

    /// The address of the block (what a driver would map).
    pub fn as_ptr(&self) -> *const R {
        &**self.block
    }
}

impl<R: RegisterBlock> Clone for Mmio<R> {
    fn clone(&self) -> Self {
        Self {
            block: self.block.clone(),
        }
    }
}

impl<R: RegisterBlock> core::ops::Deref for Mmio<R> {
    type Target = R;

    fn deref(&self) -> &R {
        &self.block
    }
}

impl<R: RegisterBlock> core::fmt::Debug for Mmio<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mmio").field("at", &self.as_ptr()).finish()
    }
}

// SAFETY: the block is only accessed through volatile whole-register reads
// and writes (tock-registers), never through references to its contents,
// and stays put while any handle lives; that is how a CPU and a device
// share MMIO registers, and the same discipline as DMA memory.
unsafe impl<R: RegisterBlock> Send for Mmio<R> {}
// SAFETY: `&Mmio` reaches the block only through volatile whole-register
// accesses (tock-registers' cells), which concurrent threads may issue as
// a CPU and a device do; no reference to the contents is formed.
unsafe impl<R: RegisterBlock> Sync for Mmio<R> {}
