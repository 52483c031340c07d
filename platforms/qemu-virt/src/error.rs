//! The board's error type.

use core::fmt;

/// What went wrong while bringing up or driving the board's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BoardError {
    /// A device did not reach the state waited for in time; names the wait.
    Timeout(&'static str),
    /// No device or resource matched; names what was looked for.
    NotFound(&'static str),
    /// The hardware lacks a feature the driver needs; names it.
    Unsupported(&'static str),
    /// A caller passed a value the hardware cannot take; names the rule.
    InvalidArgument(&'static str),
    /// The NVMe controller set CSTS.CFS (controller fatal status).
    ControllerFatal,
    /// The SMMU rejected a command (`SMMU_CMDQ_CONS.ERR`, IHI 0070 §4.6).
    SmmuCommand {
        /// The CERROR code: 1 illegal command, 2 abort, 3 ATC invalidation sync.
        code: u8,
        /// The opcode of the command the SMMU stopped on.
        opcode: u8,
    },
    /// The SMMU reported a global error (`SMMU_GERROR`, IHI 0070 §6.3.63).
    SmmuGlobalError(u32),
    /// A DMA-layer error (allocation, translation).
    Dma(dma_api::Error),
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Self::NotFound(what) => write!(f, "not found: {what}"),
            Self::Unsupported(what) => write!(f, "hardware does not support {what}"),
            Self::InvalidArgument(rule) => write!(f, "invalid argument: {rule}"),
            Self::ControllerFatal => f.write_str("NVMe controller fatal status (CSTS.CFS)"),
            Self::SmmuCommand { code, opcode } => {
                write!(f, "SMMU command {opcode:#04x} failed with CERROR {code}")
            }
            Self::SmmuGlobalError(bits) => write!(f, "SMMU global error {bits:#x}"),
            Self::Dma(e) => write!(f, "DMA error: {e:?}"),
        }
    }
}

impl From<dma_api::Error> for BoardError {
    fn from(e: dma_api::Error) -> Self {
        Self::Dma(e)
    }
}

/// The board's result type.
pub type Result<T> = core::result::Result<T, BoardError>;

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            BoardError::Timeout("CSTS.RDY").to_string(),
            "timed out waiting for CSTS.RDY"
        );
        assert_eq!(
            BoardError::SmmuCommand {
                code: 1,
                opcode: 0x46
            }
            .to_string(),
            "SMMU command 0x46 failed with CERROR 1"
        );
        let dma: BoardError = dma_api::Error::new(dma_api::ErrorKind::OutOfMemory, "x").into();
        assert!(matches!(dma, BoardError::Dma(_)));
    }
}
