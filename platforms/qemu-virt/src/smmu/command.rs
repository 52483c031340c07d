//! Command queue entries (Arm IHI 0070 E.a, chapter 4 "Commands"): 16 bytes
//! each, opcode in bits `[7:0]`.

use static_assertions::assert_eq_size;

/// One 16-byte command.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command(pub [u64; 2]);

assert_eq_size!(Command, [u8; 16]);

/// Opcodes used here (§4.1.1 "Command opcodes").
pub mod opcode {
    /// CMD_CFGI_STE: invalidate cached copies of one STE.
    pub const CFGI_STE: u8 = 0x03;
    /// CMD_CFGI_STE_RANGE (CMD_CFGI_ALL when Range = 31).
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// CMD_CFGI_CD: invalidate cached copies of one CD.
    pub const CFGI_CD: u8 = 0x05;
    /// CMD_CFGI_CD_ALL: invalidate every CD of a stream.
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// CMD_TLBI_NH_ALL: invalidate all non-hypervisor stage-1 TLB entries.
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// CMD_TLBI_NH_ASID: invalidate one ASID's entries.
    pub const TLBI_NH_ASID: u8 = 0x11;
    /// CMD_TLBI_NH_VA: invalidate the entries for one address and ASID.
    pub const TLBI_NH_VA: u8 = 0x12;
    /// CMD_SYNC: complete every earlier command before consuming this one.
    pub const SYNC: u8 = 0x46;
}

impl Command {
    /// The opcode.
    pub const fn opcode(&self) -> u8 {
        self.0[0] as u8
    }

    /// CMD_CFGI_STE for StreamID `sid`, Leaf = 1 (§4.3.1).
    pub const fn cfgi_ste(sid: u32) -> Self {
        Self([opcode::CFGI_STE as u64 | (sid as u64) << 32, 1])
    }

    /// CMD_CFGI_ALL: CMD_CFGI_STE_RANGE with Range = 31 (§4.3.2, §4.3.5).
    pub const fn cfgi_all() -> Self {
        Self([opcode::CFGI_STE_RANGE as u64, 31])
    }

    /// CMD_CFGI_CD for StreamID `sid`, SubstreamID 0, Leaf = 1 (§4.3.3).
    pub const fn cfgi_cd(sid: u32) -> Self {
        Self([opcode::CFGI_CD as u64 | (sid as u64) << 32, 1])
    }

    /// CMD_CFGI_CD_ALL for StreamID `sid` (§4.3.4).
    pub const fn cfgi_cd_all(sid: u32) -> Self {
        Self([opcode::CFGI_CD_ALL as u64 | (sid as u64) << 32, 0])
    }

    /// CMD_TLBI_NH_ALL (§4.4.2).
    pub const fn tlbi_nh_all() -> Self {
        Self([opcode::TLBI_NH_ALL as u64, 0])
    }

    /// CMD_TLBI_NH_ASID for `asid`, VMID 0 (§4.4.3).
    pub const fn tlbi_nh_asid(asid: u16) -> Self {
        Self([opcode::TLBI_NH_ASID as u64 | (asid as u64) << 48, 0])
    }

    /// CMD_TLBI_NH_VA for the 4 KiB page at `iova` in `asid`, all levels
    /// (Leaf = 0: table entries are invalidated too, as after an unmap that
    /// freed a table), NUM/SCALE = 0: one page (§4.4.4).
    pub const fn tlbi_nh_va(asid: u16, iova: u64) -> Self {
        Self([
            opcode::TLBI_NH_VA as u64 | (asid as u64) << 48,
            iova & !0xfff,
        ])
    }

    /// CMD_SYNC with CS = SIG_NONE: completion is seen by polling
    /// SMMU_CMDQ_CONS (§4.7.3).
    pub const fn sync() -> Self {
        Self([opcode::SYNC as u64, 0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_follow_chapter_4() {
        assert_eq!(Command::cfgi_ste(8).0, [0x0000_0008_0000_0003, 1]);
        assert_eq!(Command::cfgi_all().0, [0x04, 31]);
        assert_eq!(Command::cfgi_cd(8).0, [0x0000_0008_0000_0005, 1]);
        assert_eq!(Command::cfgi_cd_all(9).0, [0x0000_0009_0000_0006, 0]);
        assert_eq!(Command::tlbi_nh_all().0, [0x10, 0]);
        assert_eq!(Command::tlbi_nh_asid(3).0, [0x0003_0000_0000_0011, 0]);
        assert_eq!(
            Command::tlbi_nh_va(3, 0x1234_5678).0,
            [0x0003_0000_0000_0012, 0x1234_5000]
        );
        assert_eq!(Command::sync().0, [0x46, 0]);
        assert_eq!(Command::sync().opcode(), opcode::SYNC);
    }
}
