//! The Zicbom cache-block management instructions as 32-bit words.
//!
//! The riscv64 maintenance (`ZicbomMaintenance`) emits these words itself
//! (`.4byte`) rather than the `cbo.*` mnemonics, so the instructions a hart
//! runs are exactly the ones this module computes, and the host tests below
//! check them against the specification's encoding on any machine. Nothing
//! here executes an instruction, so it is compiled for every target.
//!
//! Encoding (RISC-V CMO specification v1.0.1, chapter "Instructions",
//! sections `cbo.clean`, `cbo.flush`, `cbo.inval`; the same diagrams are in
//! the Unprivileged ISA's "CMO" Extensions chapter): an I-type word with
//! opcode MISC-MEM (`0b000_1111`), `rd` = 0, funct3 = CBO (`0b010`), the
//! base address register in `rs1`, and `imm[11:0]` selecting the
//! operation.

/// One of the three cache-block management operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(any(test, target_arch = "riscv64")), allow(dead_code))]
pub(crate) enum CboOp {
    /// `cbo.inval`: deallocate the block (may flush instead).
    Inval,
    /// `cbo.clean`: write the block back if modified.
    Clean,
    /// `cbo.flush`: clean, then invalidate.
    Flush,
}

impl CboOp {
    /// `imm[11:0]`, the field that selects the operation.
    const fn imm(self) -> u32 {
        match self {
            Self::Inval => 0x000,
            Self::Clean => 0x001,
            Self::Flush => 0x002,
        }
    }
}

/// The major opcode MISC-MEM.
const MISC_MEM: u32 = 0b000_1111;
/// funct3 of the CBO instructions.
const FUNCT3_CBO: u32 = 0b010;

/// The register the riscv64 maintenance passes the block address in: `a0`
/// (`x10`), named as an explicit `asm!` operand because the register is
/// part of the emitted word.
pub(crate) const BASE_REG: u32 = 10;

/// The instruction word of `op` on the block at the address in `x{rs1}`.
#[cfg_attr(not(any(test, target_arch = "riscv64")), allow(dead_code))]
pub(crate) const fn encode(op: CboOp, rs1: u32) -> u32 {
    op.imm() << 20 | (rs1 & 0x1f) << 15 | FUNCT3_CBO << 12 | MISC_MEM
}

/// `cbo.clean 0(a0)`.
#[cfg_attr(not(target_arch = "riscv64"), allow(dead_code))]
pub(crate) const CLEAN_A0: u32 = encode(CboOp::Clean, BASE_REG);
/// `cbo.flush 0(a0)`.
#[cfg_attr(not(target_arch = "riscv64"), allow(dead_code))]
pub(crate) const FLUSH_A0: u32 = encode(CboOp::Flush, BASE_REG);
/// `cbo.inval 0(a0)`.
#[cfg_attr(not(target_arch = "riscv64"), allow(dead_code))]
pub(crate) const INVAL_A0: u32 = encode(CboOp::Inval, BASE_REG);

#[cfg(test)]
mod tests {
    use super::*;

    /// Bits `hi..=lo` of `word`.
    fn field(word: u32, hi: u32, lo: u32) -> u32 {
        (word >> lo) & ((1 << (hi - lo + 1)) - 1)
    }

    /// Every word the riscv64 maintenance emits, field by field against
    /// the CMO specification v1.0.1, chapter "Instructions" (`cbo.clean`,
    /// `cbo.flush`, `cbo.inval`): bits 6:0 = MISC-MEM 0001111, bits 11:7 =
    /// 0, bits 14:12 = CBO 010, bits 19:15 = rs1 (the base), bits 31:20 =
    /// 0x001 clean, 0x002 flush, 0x000 inval.
    #[test]
    fn words_follow_the_cmo_specification() {
        for (word, imm) in [(CLEAN_A0, 0x001), (FLUSH_A0, 0x002), (INVAL_A0, 0x000)] {
            assert_eq!(field(word, 6, 0), 0b000_1111, "{word:#010x}: opcode");
            assert_eq!(field(word, 11, 7), 0, "{word:#010x}: rd");
            assert_eq!(field(word, 14, 12), 0b010, "{word:#010x}: funct3");
            assert_eq!(field(word, 19, 15), 10, "{word:#010x}: rs1 = a0");
            assert_eq!(field(word, 31, 20), imm, "{word:#010x}: imm[11:0]");
        }
    }

    /// The words Debian 12's `riscv64-linux-gnu-as -march=rv64gc_zicbom`
    /// (binutils 2.40) assembles for `cbo.clean (a0)`, `cbo.flush (a0)`,
    /// `cbo.inval (a0)`, `cbo.clean (t0)` and `cbo.inval (t6)`.
    #[test]
    fn words_match_the_assembler() {
        assert_eq!(CLEAN_A0, 0x0015_200f);
        assert_eq!(FLUSH_A0, 0x0025_200f);
        assert_eq!(INVAL_A0, 0x0005_200f);
    }

    #[test]
    fn the_base_register_is_rs1() {
        assert_eq!(encode(CboOp::Clean, 5), 0x0012_a00f, "cbo.clean (t0)");
        assert_eq!(encode(CboOp::Inval, 31), 0x000f_a00f, "cbo.inval (t6)");
    }
}
