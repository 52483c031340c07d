//! Event queue records (Arm IHI 0070 E.a, chapter 7 "Events and faults"):
//! 32 bytes each. The SMMU writes them, so every field is validated
//! before it is believed.

use static_assertions::assert_eq_size;

/// A raw 32-byte event record as read (volatile) from the queue.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRecord(pub [u64; 4]);

assert_eq_size!(EventRecord, [u8; 32]);

/// Event types this driver names (§7.3, Table 7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// F_UUT (0x01): unsupported upstream transaction.
    UnsupportedTransaction,
    /// C_BAD_STREAMID (0x02): StreamID beyond the stream table.
    BadStreamId,
    /// F_STE_FETCH (0x03): fetching the STE faulted.
    SteFetch,
    /// C_BAD_STE (0x04): the STE is invalid or malformed.
    BadSte,
    /// F_STREAM_DISABLED (0x06).
    StreamDisabled,
    /// C_BAD_SUBSTREAMID (0x08).
    BadSubstreamId,
    /// F_CD_FETCH (0x09): fetching the CD faulted.
    CdFetch,
    /// C_BAD_CD (0x0a): the CD is invalid or malformed.
    BadCd,
    /// F_WALK_EABT (0x0b): an external abort during the table walk.
    WalkExternalAbort,
    /// F_TRANSLATION (0x10): no valid translation for the address.
    Translation,
    /// F_ADDR_SIZE (0x11): the output address is beyond the size allowed.
    AddressSize,
    /// F_ACCESS (0x12): access flag clear.
    AccessFlag,
    /// F_PERMISSION (0x13): the mapping forbids the access.
    Permission,
    /// Another type, kept raw.
    Other(u8),
}

impl EventKind {
    /// The kind for a raw event type.
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            0x01 => Self::UnsupportedTransaction,
            0x02 => Self::BadStreamId,
            0x03 => Self::SteFetch,
            0x04 => Self::BadSte,
            0x06 => Self::StreamDisabled,
            0x08 => Self::BadSubstreamId,
            0x09 => Self::CdFetch,
            0x0a => Self::BadCd,
            0x0b => Self::WalkExternalAbort,
            0x10 => Self::Translation,
            0x11 => Self::AddressSize,
            0x12 => Self::AccessFlag,
            0x13 => Self::Permission,
            other => Self::Other(other),
        }
    }
}

/// A decoded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The StreamID of the transaction (bits `[63:32]` of word 0).
    pub stream_id: u32,
    /// The faulting input address, for translation-stage faults
    /// (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION, F_WALK_EABT: word 2).
    pub address: Option<u64>,
    /// The transaction was a read (RnW, bit 35 of word 1); for
    /// translation-stage faults only.
    pub read: Option<bool>,
}

impl EventRecord {
    /// Decodes the record.
    pub const fn decode(&self) -> Event {
        let kind = EventKind::from_raw(self.0[0] as u8);
        let has_address = matches!(
            kind,
            EventKind::Translation
                | EventKind::AddressSize
                | EventKind::AccessFlag
                | EventKind::Permission
                | EventKind::WalkExternalAbort
        );
        Event {
            kind,
            stream_id: (self.0[0] >> 32) as u32,
            address: if has_address { Some(self.0[2]) } else { None },
            read: if has_address {
                Some(self.0[1] & 1 << 35 != 0)
            } else {
                None
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_translation_fault() {
        let r = EventRecord([0x0000_0008_0000_0010, 1 << 35, 0x7000_0040, 0]);
        assert_eq!(
            r.decode(),
            Event {
                kind: EventKind::Translation,
                stream_id: 8,
                address: Some(0x7000_0040),
                read: Some(true),
            }
        );
    }

    #[test]
    fn configuration_errors_carry_no_address() {
        let r = EventRecord([0x0000_0009_0000_0004, 0, 0xdead, 0]);
        let e = r.decode();
        assert_eq!(e.kind, EventKind::BadSte);
        assert_eq!(e.stream_id, 9);
        assert_eq!(e.address, None);
        assert_eq!(
            EventRecord([0x7f, 0, 0, 0]).decode().kind,
            EventKind::Other(0x7f)
        );
    }
}
