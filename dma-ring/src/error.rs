//! Errors: what the caller did wrong, and what the device did wrong.

use core::fmt;

/// What went wrong, for matching.
///
/// The `Device*`-free kinds are the caller's (a full ring, a bad size);
/// every kind for which [`is_device_fault`](Self::is_device_fault) holds
/// means the device wrote something a correct device never writes. After
/// such an error the ring is *broken*: it refuses further work with
/// [`Broken`](Self::Broken) and keeps the in-flight buffers until the
/// driver resets the device and calls the ring's `reset`, which hands every
/// buffer back exactly once (Linux's virtqueue does the same with
/// `vq->broken`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RingErrorKind {
    /// A ring size the protocol does not allow.
    InvalidSize,
    /// The ring memory is smaller than the layout needs, or misaligned.
    BadMemory,
    /// No free entry, slot or descriptor for the request.
    Full,
    /// A request with no segments, or more than the ring can ever hold.
    BadRequest,
    /// An earlier device error broke the ring; reset it.
    Broken,
    /// The device named an id or descriptor head outside the table.
    UnknownId,
    /// The device completed an id that is not in flight (already completed,
    /// never submitted, or from an earlier use of the slot).
    NotInFlight,
    /// The device reported more bytes than the posted buffers hold.
    LengthTooLarge,
    /// A device index (used index, SQ head) moved past what was posted, or
    /// backwards.
    IndexJump,
    /// A completion flag (phase tag, done bit, used flags) appeared where
    /// nothing was made available to the device.
    UnexpectedCompletion,
    /// A completion names another queue.
    WrongQueue,
    /// A reset's [`Drain`](crate::Drain) was leaked before handing back
    /// every buffer; the ring keeps them and takes no new request until
    /// its `reset` is called again and that drain is used up or dropped.
    Unreclaimed,
    /// A ring position at or beyond the ring's size.
    PositionOutOfRange,
    /// An indirect request on a queue without indirect descriptor tables.
    IndirectUnavailable,
    /// A change that needs an idle queue while requests are in flight.
    Busy,
}

impl RingErrorKind {
    /// A short description.
    pub const fn description(self) -> &'static str {
        match self {
            Self::InvalidSize => "ring size not allowed by the protocol",
            Self::BadMemory => "ring memory too small or misaligned for the layout",
            Self::Full => "ring or slot table full",
            Self::BadRequest => "request has no segments or more than the ring holds",
            Self::Broken => "ring broken by an earlier device error; reset it",
            Self::UnknownId => "device named an id outside the table",
            Self::NotInFlight => "device completed an id that is not in flight",
            Self::LengthTooLarge => "device reported a length larger than the posted buffers",
            Self::IndexJump => "device index moved past what was posted",
            Self::UnexpectedCompletion => "completion flag where nothing was posted",
            Self::WrongQueue => "completion names another queue",
            Self::Unreclaimed => {
                "buffers from a reset were not all taken (its drain was leaked); call reset again and use up the drain"
            }
            Self::PositionOutOfRange => "ring position at or beyond the ring size",
            Self::IndirectUnavailable => {
                "queue has no indirect descriptor tables: negotiate VIRTIO_F_INDIRECT_DESC and call set_indirect, or add the request directly"
            }
            Self::Busy => {
                "requests are in flight: do this before adding any, or after the device reset and the queue's reset"
            }
        }
    }

    /// Whether the device, not the caller, caused it.
    pub const fn is_device_fault(self) -> bool {
        matches!(
            self,
            Self::UnknownId
                | Self::NotInFlight
                | Self::LengthTooLarge
                | Self::IndexJump
                | Self::UnexpectedCompletion
                | Self::WrongQueue
        )
    }
}

/// A ring error: its kind and the value involved (the id, length or index
/// the device wrote, or the size asked for).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingError {
    kind: RingErrorKind,
    value: Option<u64>,
}

impl RingError {
    /// An error of `kind`.
    pub const fn new(kind: RingErrorKind) -> Self {
        Self { kind, value: None }
    }

    /// An error of `kind` about `value`.
    pub const fn with(kind: RingErrorKind, value: u64) -> Self {
        Self {
            kind,
            value: Some(value),
        }
    }

    /// The kind, for matching.
    pub const fn kind(&self) -> RingErrorKind {
        self.kind
    }

    /// The id, length, index or size involved, if any.
    pub const fn value(&self) -> Option<u64> {
        self.value
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.description())?;
        match self.value {
            Some(v) => write!(f, " (value {v:#x})"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingError({:?}: {self})", self.kind)
    }
}

impl core::error::Error for RingError {}

impl From<RingError> for dma_core::Error {
    fn from(e: RingError) -> Self {
        use dma_core::ErrorKind as K;
        let kind = match e.kind {
            RingErrorKind::InvalidSize
            | RingErrorKind::BadRequest
            | RingErrorKind::PositionOutOfRange => K::OutOfRange,
            RingErrorKind::BadMemory => K::Misaligned,
            RingErrorKind::Full | RingErrorKind::Unreclaimed => K::PoolExhausted,
            RingErrorKind::IndirectUnavailable | RingErrorKind::Busy => K::Unsupported,
            _ => K::DeviceMisbehaved,
        };
        let err = dma_core::Error::new(kind, e.kind.description());
        match e.value {
            Some(v) => err.at(v),
            None => err,
        }
    }
}

/// A submission the ring refused, with the buffers handed back.
pub struct Rejected<T> {
    /// Why.
    pub error: RingError,
    /// The request's buffers, untouched.
    pub buffers: T,
}

impl<T> Rejected<T> {
    pub(crate) fn new(kind: RingErrorKind, buffers: T) -> Self {
        Self {
            error: RingError::new(kind),
            buffers,
        }
    }

    /// The kind, for matching.
    pub fn kind(&self) -> RingErrorKind {
        self.error.kind()
    }
}

impl<T> fmt::Debug for Rejected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rejected({:?})", self.error)
    }
}

impl<T> fmt::Display for Rejected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "submission refused: {}", self.error)
    }
}

/// `Result` with [`RingError`].
pub type Result<T, E = RingError> = core::result::Result<T, E>;
