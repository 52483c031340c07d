//! Links the test image at 0x8000_0000 with `link.x`, for the bare-metal
//! target only: on a hosted target the binary is an ordinary program that
//! explains how to run the image.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=link.x");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() == Ok("riscv64gc-unknown-none-elf") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.x");
    }
}
