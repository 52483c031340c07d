//! Per-architecture cache maintenance. Each module is compiled only for its
//! own architecture, so every crate still builds for every target.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
mod cbo;
#[cfg(target_arch = "riscv64")]
pub mod riscv64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use dma_core::{Error, ErrorKind, Result};

/// Validates a cache block size that the platform configures rather than
/// the CPU reports (riscv64 Zicbom): a power of two from 16 to 4096 bytes,
/// so a block never spans pages.
#[cfg_attr(not(target_arch = "riscv64"), allow(dead_code))]
pub(crate) fn check_block_size(block_size: usize) -> Result<usize> {
    if block_size.is_power_of_two() && (16..=4096).contains(&block_size) {
        Ok(block_size)
    } else {
        Err(Error::new(
            ErrorKind::InvalidConstraints,
            "Zicbom block size must be a power of two from 16 to 4096 bytes",
        )
        .len(block_size as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes() {
        assert_eq!(check_block_size(64), Ok(64));
        assert_eq!(check_block_size(16), Ok(16));
        assert_eq!(check_block_size(4096), Ok(4096));
        for bad in [0, 8, 48, 8192] {
            let e = check_block_size(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConstraints);
            assert_eq!(e.length(), Some(bad as u64));
        }
    }
}
