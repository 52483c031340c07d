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
    Dma(dma_core::Error),
    /// A queue refused a command, or the device wrote a completion the
    /// queue could not accept.
    Ring(dma_ring::RingError),
    /// A reference-driver error with no board counterpart (a NIC's
    /// transmit or receive error).
    Driver(dma_drivers::DriverError),
    /// An NVMe command completed with an error status.
    NvmeStatus {
        /// The command's opcode.
        opcode: u8,
        /// Status code type (SCT).
        code_type: u8,
        /// Status code (SC).
        code: u8,
    },
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
            Self::Ring(e) => write!(f, "queue error: {e}"),
            Self::Driver(e) => write!(f, "driver error: {e}"),
            Self::NvmeStatus {
                opcode,
                code_type,
                code,
            } => write!(
                f,
                "NVMe command {opcode:#04x} failed: status type {code_type:#x} code {code:#04x}"
            ),
        }
    }
}

impl From<dma_core::Error> for BoardError {
    fn from(e: dma_core::Error) -> Self {
        Self::Dma(e)
    }
}

impl From<dma_ring::RingError> for BoardError {
    fn from(e: dma_ring::RingError) -> Self {
        Self::Ring(e)
    }
}

impl From<dma_drivers::DriverError> for BoardError {
    fn from(e: dma_drivers::DriverError) -> Self {
        use dma_drivers::DriverError as D;
        match e {
            D::Dma(e) => Self::Dma(e),
            D::Ring(e) => Self::Ring(e),
            D::Nvme {
                opcode,
                code_type,
                code,
            } => Self::NvmeStatus {
                opcode,
                code_type,
                code,
            },
            D::Timeout(what) => Self::Timeout(what),
            D::ControllerFatal => Self::ControllerFatal,
            D::InvalidArgument(rule) => Self::InvalidArgument(rule),
            D::Unsupported(what) => Self::Unsupported(what),
            other => Self::Driver(other),
        }
    }
}

impl From<BoardError> for dma_core::Error {
    /// For the `dma-core` traits the board implements (the SMMU behind
    /// `dma-iommu`): the kind that fits, the board's static message.
    fn from(e: BoardError) -> Self {
        use dma_core::{Error, ErrorKind};
        match e {
            BoardError::Dma(e) => e,
            BoardError::Timeout(what) => Error::new(ErrorKind::DeviceMisbehaved, what),
            BoardError::NotFound(what) => Error::new(ErrorKind::Unsupported, what),
            BoardError::Unsupported(what) => Error::new(ErrorKind::Unsupported, what),
            BoardError::InvalidArgument(rule) => Error::new(ErrorKind::InvalidConstraints, rule),
            BoardError::ControllerFatal => Error::new(
                ErrorKind::DeviceMisbehaved,
                "NVMe controller fatal status (CSTS.CFS)",
            ),
            BoardError::SmmuCommand { opcode, .. } => Error::new(
                ErrorKind::DeviceMisbehaved,
                "the SMMU rejected a command (CMDQ_ERR)",
            )
            .at(u64::from(opcode)),
            BoardError::Ring(e) => e.into(),
            BoardError::Driver(_) => {
                Error::new(ErrorKind::DeviceFault, "a device reported a transfer error")
            }
            BoardError::NvmeStatus {
                code_type, code, ..
            } => Error::new(
                ErrorKind::DeviceFault,
                "NVMe command completed with an error status",
            )
            .at(u64::from(code_type) << 8 | u64::from(code)),
            BoardError::SmmuGlobalError(bits) => {
                Error::new(ErrorKind::DeviceMisbehaved, "SMMU global error").at(u64::from(bits))
            }
        }
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
        let dma: BoardError = dma_core::Error::new(dma_core::ErrorKind::OutOfMemory, "x").into();
        assert!(matches!(dma, BoardError::Dma(_)));
    }

    #[test]
    fn driver_errors_become_their_board_counterparts() {
        use dma_drivers::DriverError as D;
        assert_eq!(
            BoardError::from(D::ControllerFatal),
            BoardError::ControllerFatal
        );
        assert_eq!(BoardError::from(D::Timeout("x")), BoardError::Timeout("x"));
        assert_eq!(
            BoardError::from(D::InvalidArgument("r")),
            BoardError::InvalidArgument("r")
        );
        assert_eq!(
            BoardError::from(D::Nvme {
                opcode: 2,
                code_type: 0,
                code: 0x80
            }),
            BoardError::NvmeStatus {
                opcode: 2,
                code_type: 0,
                code: 0x80
            }
        );
        let tx = D::Transmit(dma_ring::nic::TxStatus::empty());
        assert_eq!(BoardError::from(tx), BoardError::Driver(tx));
        assert_eq!(
            dma_core::Error::from(BoardError::Driver(tx)).kind(),
            dma_core::ErrorKind::DeviceFault
        );
    }

    #[test]
    fn converts_to_dma_core_errors() {
        use dma_core::ErrorKind;
        let kind = |e: BoardError| dma_core::Error::from(e).kind();
        let inner = dma_core::Error::new(ErrorKind::OutOfMemory, "x");
        assert_eq!(dma_core::Error::from(BoardError::Dma(inner)), inner);
        assert_eq!(
            kind(BoardError::Timeout("SMMU CMD_SYNC")),
            ErrorKind::DeviceMisbehaved
        );
        assert_eq!(
            dma_core::Error::from(BoardError::Timeout("SMMU CMD_SYNC")).message(),
            "SMMU CMD_SYNC"
        );
        assert_eq!(kind(BoardError::NotFound("x")), ErrorKind::Unsupported);
        assert_eq!(kind(BoardError::Unsupported("x")), ErrorKind::Unsupported);
        assert_eq!(
            kind(BoardError::InvalidArgument("x")),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(BoardError::ControllerFatal),
            ErrorKind::DeviceMisbehaved
        );
        let cmd = dma_core::Error::from(BoardError::SmmuCommand {
            code: 1,
            opcode: 0x12,
        });
        assert_eq!(
            (cmd.kind(), cmd.addr()),
            (ErrorKind::DeviceMisbehaved, Some(0x12))
        );
        assert_eq!(
            kind(BoardError::SmmuGlobalError(1)),
            ErrorKind::DeviceMisbehaved
        );
        let ring = dma_ring::RingError::new(dma_ring::RingErrorKind::Full);
        assert_eq!(BoardError::from(ring), BoardError::Ring(ring));
        assert_eq!(kind(BoardError::Ring(ring)), ErrorKind::PoolExhausted);
        let status = BoardError::NvmeStatus {
            opcode: 0x02,
            code_type: 0,
            code: 0x80,
        };
        assert_eq!(
            status.to_string(),
            "NVMe command 0x02 failed: status type 0x0 code 0x80"
        );
        let e = dma_core::Error::from(status);
        assert_eq!((e.kind(), e.addr()), (ErrorKind::DeviceFault, Some(0x80)));
    }
}
