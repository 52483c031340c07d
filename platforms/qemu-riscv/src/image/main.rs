//! The test image for QEMU's riscv64 `virt` board: boots in M-mode, brings
//! up PCIe and the NVMe controller, and runs the shared NVMe checks through
//! the reference block driver on the hardware-coherent policy, reporting on
//! the UART in the protocol of `dma_qemu_virt::report` and exiting through
//! the `sifive_test` finisher.
//!
//! It means something only for `riscv64gc-unknown-none-elf`; `cargo xtask
//! qemu` builds it, runs it under qemu-system-riscv64 and checks the
//! results. On any other target this binary only says so.
#![cfg_attr(all(target_arch = "riscv64", target_os = "none"), no_std, no_main)]

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
extern crate alloc;

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod boot;
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod console;
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod suite;

#[cfg(not(all(target_arch = "riscv64", target_os = "none")))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "dma-qemu-riscv is a bare-metal image for riscv64gc-unknown-none-elf; \
         run it with `cargo xtask qemu`"
    );
    std::process::ExitCode::from(2)
}

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
#[global_allocator]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

/// The Rust entry, called by `_start` on hart 0 with a stack, the FPU on,
/// .bss zeroed and the trap vector installed.
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
#[no_mangle]
extern "C" fn image_main() -> ! {
    use core::fmt::Write;
    console::init();
    let _ = writeln!(console::Console, "dma-qemu-riscv test image");
    // SAFETY: once, before any allocation.
    unsafe { init_heap() };
    let code = suite::run();
    dma_qemu_riscv::test_device::exit(code)
}

/// Gives the heap everything from the end of the image to `HEAP_END`.
///
/// # Safety
///
/// Called once, before any allocation.
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
unsafe fn init_heap() {
    extern "C" {
        static __heap_start: u8;
    }
    let start = core::ptr::addr_of!(__heap_start) as usize;
    let end = dma_qemu_riscv::memmap::HEAP_END as usize;
    // SAFETY: [__heap_start, HEAP_END) is RAM that link.x leaves to the heap
    // and memmap gives no one else; it is called once (the caller).
    unsafe { HEAP.lock().init(start as *mut u8, end - start) };
}

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let _ = writeln!(console::emergency(), "PANIC {info}");
    dma_qemu_riscv::test_device::exit(dma_qemu_virt::report::ExitCode::Panic)
}
