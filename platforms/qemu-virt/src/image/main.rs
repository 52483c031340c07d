//! The test image for QEMU's `virt` board: boots at EL1, turns on the MMU
//! and caches, brings up PCIe, the NVMe controller and the SMMUv3, and runs
//! the in-image tests, reporting them on the UART in the protocol of
//! `dma_qemu_virt::report` and exiting through semihosting.
//!
//! It means something only for `aarch64-unknown-none`; `cargo xtask qemu`
//! builds it, runs it under qemu-system-aarch64 and checks the results. On
//! a hosted target this binary only says so.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod board;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
#[macro_use]
mod console;
#[cfg(target_os = "none")]
mod net;
#[cfg(target_os = "none")]
mod suite;
#[cfg(target_os = "none")]
mod virtio_blk;

#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "dma-qemu-virt is a bare-metal image for aarch64-unknown-none; \
         run it with `cargo xtask qemu`"
    );
    std::process::ExitCode::from(2)
}

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

/// The Rust entry, called by `_start` on the boot CPU with a stack, FP/SIMD
/// on and .bss zeroed.
#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn image_main() -> ! {
    console::init();
    println!("dma-qemu-virt test image");
    let code = suite::run();
    dma_qemu_virt::report::exit(code)
}

/// Gives the heap everything from the end of the image to `HEAP_END`.
///
/// # Safety
///
/// Called once, before any allocation, with the identity map on.
#[cfg(target_os = "none")]
unsafe fn init_heap() {
    extern "C" {
        static __heap_start: u8;
    }
    let start = core::ptr::addr_of!(__heap_start) as usize;
    let end = dma_qemu_virt::memmap::HEAP_END as usize;
    // SAFETY: [__heap_start, HEAP_END) is RAM that link.x leaves to the heap
    // and memmap gives no one else; it is called once (the caller).
    unsafe { HEAP.lock().init(start as *mut u8, end - start) };
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let _ = writeln!(console::emergency(), "PANIC {info}");
    dma_qemu_virt::report::exit(dma_qemu_virt::report::ExitCode::Panic)
}
