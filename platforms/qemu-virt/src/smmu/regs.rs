//! The SMMUv3 register frame (Arm IHI 0070 E.a, chapter 6, Table 6.2).
//! Page 0 holds configuration and the command queue; page 1 (64 KiB up)
//! holds the event queue's producer and consumer indices.

use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

/// Register fields (tock-registers generates the `Register` types and
/// value constants; each field is documented where it is defined).
#[allow(missing_docs)]
pub mod fields32 {
    use tock_registers::register_bitfields;

    register_bitfields![u32,
        /// SMMU_IDR0 (§6.3.1).
        pub IDR0 [
            /// Stage 2 translation supported.
            S2P OFFSET(0) NUMBITS(1) [],
            /// Stage 1 translation supported.
            S1P OFFSET(1) NUMBITS(1) [],
            /// Translation table formats: 0b10 AArch64, 0b11 both.
            TTF OFFSET(2) NUMBITS(2) [],
            /// Coherent access to tables and queues.
            COHACC OFFSET(4) NUMBITS(1) [],
            /// 16-bit ASIDs.
            ASID16 OFFSET(12) NUMBITS(1) [],
            /// Translation table endianness: 0b00 mixed, 0b10 little.
            TTENDIAN OFFSET(21) NUMBITS(2) [],
            /// Stall model.
            STALL_MODEL OFFSET(24) NUMBITS(2) [],
            /// Stream table levels: 0b00 linear only.
            ST_LEVEL OFFSET(27) NUMBITS(2) []
        ],
        /// SMMU_IDR1 (§6.3.2).
        pub IDR1 [
            /// StreamID bits.
            SIDSIZE OFFSET(0) NUMBITS(6) [],
            /// SubstreamID bits.
            SSIDSIZE OFFSET(6) NUMBITS(5) [],
            /// log2 of the maximum event queue entries.
            EVENTQS OFFSET(16) NUMBITS(5) [],
            /// log2 of the maximum command queue entries.
            CMDQS OFFSET(21) NUMBITS(5) [],
            /// Queue base registers are fixed (not programmable).
            QUEUES_PRESET OFFSET(29) NUMBITS(1) [],
            /// Stream table base is fixed.
            TABLES_PRESET OFFSET(30) NUMBITS(1) []
        ],
        /// SMMU_IDR5 (§6.3.6).
        pub IDR5 [
            /// Output address size: 0 32, 1 36, 2 40, 3 42, 4 44, 5 48, 6 52 bits.
            OAS OFFSET(0) NUMBITS(3) [],
            /// 4 KiB granule supported.
            GRAN4K OFFSET(4) NUMBITS(1) [],
            /// 16 KiB granule supported.
            GRAN16K OFFSET(5) NUMBITS(1) [],
            /// 64 KiB granule supported.
            GRAN64K OFFSET(6) NUMBITS(1) []
        ],
        /// SMMU_CR0 and SMMU_CR0ACK (§6.3.9, §6.3.10).
        pub CR0 [
            /// Translation enabled (else GBPA governs all traffic).
            SMMUEN OFFSET(0) NUMBITS(1) [],
            /// PRI queue enabled.
            PRIQEN OFFSET(1) NUMBITS(1) [],
            /// Event queue enabled.
            EVENTQEN OFFSET(2) NUMBITS(1) [],
            /// Command queue enabled.
            CMDQEN OFFSET(3) NUMBITS(1) []
        ],
        /// SMMU_CR1 (§6.3.11): cacheability and shareability of queue and
        /// table accesses.
        pub CR1 [
            /// Queue inner cacheability: 0 non-cacheable, 1 write-back.
            QUEUE_IC OFFSET(0) NUMBITS(2) [],
            /// Queue outer cacheability.
            QUEUE_OC OFFSET(2) NUMBITS(2) [],
            /// Queue shareability: 0 non, 2 outer, 3 inner.
            QUEUE_SH OFFSET(4) NUMBITS(2) [],
            /// Table inner cacheability.
            TABLE_IC OFFSET(6) NUMBITS(2) [],
            /// Table outer cacheability.
            TABLE_OC OFFSET(8) NUMBITS(2) [],
            /// Table shareability.
            TABLE_SH OFFSET(10) NUMBITS(2) []
        ],
        /// SMMU_GBPA (§6.3.14): global bypass attributes.
        pub GBPA [
            /// Abort all incoming transactions while SMMUEN = 0.
            ABORT OFFSET(20) NUMBITS(1) [],
            /// Set to apply an update; cleared by the SMMU when done.
            UPDATE OFFSET(31) NUMBITS(1) []
        ],
        /// SMMU_GERROR and SMMU_GERRORN (§6.3.17, §6.3.18).
        pub GERROR [
            /// Command queue error (see SMMU_CMDQ_CONS.ERR).
            CMDQ_ERR OFFSET(0) NUMBITS(1) [],
            /// Event queue write aborted.
            EVENTQ_ABT_ERR OFFSET(2) NUMBITS(1) [],
            /// Service failure mode.
            SFM_ERR OFFSET(8) NUMBITS(1) []
        ],
        /// SMMU_STRTAB_BASE_CFG (§6.3.25).
        pub STRTAB_BASE_CFG [
            /// log2 of the number of STEs (linear format).
            LOG2SIZE OFFSET(0) NUMBITS(6) [],
            /// Split point (two-level format only).
            SPLIT OFFSET(6) NUMBITS(5) [],
            /// Format: 0b00 linear, 0b01 two-level.
            FMT OFFSET(16) NUMBITS(2) [Linear = 0, TwoLevel = 1]
        ],
        /// SMMU_CMDQ_CONS (§6.3.27); the producer register has only the index.
        pub CMDQ_CONS [
            /// Read index, with the wrap bit just above the index bits.
            RD OFFSET(0) NUMBITS(20) [],
            /// Error of the command at RD, if GERROR.CMDQ_ERR is active.
            ERR OFFSET(24) NUMBITS(7) []
        ]
    ];
}
pub use fields32::{CMDQ_CONS, CR0, CR1, GBPA, GERROR, IDR0, IDR1, IDR5, STRTAB_BASE_CFG};

/// Register fields (tock-registers generates the `Register` types and
/// value constants; each field is documented where it is defined).
#[allow(missing_docs)]
pub mod fields64 {
    use tock_registers::register_bitfields;

    register_bitfields![u64,
        /// SMMU_STRTAB_BASE (§6.3.24).
        pub STRTAB_BASE [
            /// Physical address bits `[51:6]` of the stream table.
            ADDR OFFSET(6) NUMBITS(46) [],
            /// Read-allocate hint.
            RA OFFSET(62) NUMBITS(1) []
        ],
        /// SMMU_CMDQ_BASE and SMMU_EVENTQ_BASE (§6.3.26, §6.3.29).
        pub QUEUE_BASE [
            /// log2 of the number of entries.
            LOG2SIZE OFFSET(0) NUMBITS(5) [],
            /// Physical address bits `[51:5]` of the queue.
            ADDR OFFSET(5) NUMBITS(47) [],
            /// Read- (command queue) or write- (event queue) allocate hint.
            ALLOCATE OFFSET(62) NUMBITS(1) []
        ]
    ];
}
pub use fields64::{QUEUE_BASE, STRTAB_BASE};

register_structs! {
    /// Register page 0 (Table 6.2, offsets from the SMMU base).
    pub SmmuPage0 {
        /// Identification 0: translation stages and formats.
        (0x000 => pub idr0: ReadOnly<u32, IDR0::Register>),
        /// Identification 1: StreamID bits, queue sizes.
        (0x004 => pub idr1: ReadOnly<u32, IDR1::Register>),
        /// Identification 2.
        (0x008 => pub idr2: ReadOnly<u32>),
        /// Identification 3.
        (0x00c => pub idr3: ReadOnly<u32>),
        /// Identification 4 (implementation defined).
        (0x010 => pub idr4: ReadOnly<u32>),
        /// Identification 5: output size, granules.
        (0x014 => pub idr5: ReadOnly<u32, IDR5::Register>),
        /// Implementation identification.
        (0x018 => pub iidr: ReadOnly<u32>),
        /// Architecture version.
        (0x01c => pub aidr: ReadOnly<u32>),
        /// Control 0: enables.
        (0x020 => pub cr0: ReadWrite<u32, CR0::Register>),
        /// Control 0 acknowledgement.
        (0x024 => pub cr0ack: ReadOnly<u32, CR0::Register>),
        /// Control 1: table and queue attributes.
        (0x028 => pub cr1: ReadWrite<u32, CR1::Register>),
        /// Control 2.
        (0x02c => pub cr2: ReadWrite<u32>),
        (0x030 => _reserved0),
        /// Status.
        (0x040 => pub statusr: ReadOnly<u32>),
        /// Global bypass attributes.
        (0x044 => pub gbpa: ReadWrite<u32, GBPA::Register>),
        /// Alternate global bypass attributes.
        (0x048 => pub agbpa: ReadWrite<u32>),
        (0x04c => _reserved1),
        /// Interrupt enables.
        (0x050 => pub irq_ctrl: ReadWrite<u32>),
        /// Interrupt enables acknowledgement.
        (0x054 => pub irq_ctrlack: ReadOnly<u32>),
        (0x058 => _reserved2),
        /// Global errors (active when different from GERRORN).
        (0x060 => pub gerror: ReadOnly<u32, GERROR::Register>),
        /// Global errors acknowledged.
        (0x064 => pub gerrorn: ReadWrite<u32, GERROR::Register>),
        /// Global error MSI address.
        (0x068 => pub gerror_irq_cfg0: ReadWrite<u64>),
        /// Global error MSI data.
        (0x070 => pub gerror_irq_cfg1: ReadWrite<u32>),
        /// Global error MSI attributes.
        (0x074 => pub gerror_irq_cfg2: ReadWrite<u32>),
        (0x078 => _reserved3),
        /// Stream table base.
        (0x080 => pub strtab_base: ReadWrite<u64, STRTAB_BASE::Register>),
        /// Stream table format and size.
        (0x088 => pub strtab_base_cfg: ReadWrite<u32, STRTAB_BASE_CFG::Register>),
        (0x08c => _reserved4),
        /// Command queue base and size.
        (0x090 => pub cmdq_base: ReadWrite<u64, QUEUE_BASE::Register>),
        /// Command queue producer index (software).
        (0x098 => pub cmdq_prod: ReadWrite<u32>),
        /// Command queue consumer index and error (SMMU).
        (0x09c => pub cmdq_cons: ReadWrite<u32, CMDQ_CONS::Register>),
        /// Event queue base and size.
        (0x0a0 => pub eventq_base: ReadWrite<u64, QUEUE_BASE::Register>),
        (0x0a8 => _reserved5),
        /// Event queue MSI address.
        (0x0b0 => pub eventq_irq_cfg0: ReadWrite<u64>),
        /// Event queue MSI data.
        (0x0b8 => pub eventq_irq_cfg1: ReadWrite<u32>),
        /// Event queue MSI attributes.
        (0x0bc => pub eventq_irq_cfg2: ReadWrite<u32>),
        (0x0c0 => @END),
    }
}

register_structs! {
    /// Register page 1, at SMMU base + 0x1_0000 (Table 6.2).
    pub SmmuPage1 {
        (0x000 => _reserved0),
        /// Event queue producer index and overflow flag (SMMU).
        (0x0a8 => pub eventq_prod: ReadWrite<u32>),
        /// Event queue consumer index and overflow acknowledgement (software).
        (0x0ac => pub eventq_cons: ReadWrite<u32>),
        (0x0b0 => @END),
    }
}

/// Offset of register page 1 from the SMMU base.
pub const PAGE1_OFFSET: usize = 0x1_0000;

/// Bit 31 of SMMU_EVENTQ_PROD: the queue overflowed (toggles per overflow).
pub const EVENTQ_PROD_OVFLG: u32 = 1 << 31;
/// Bit 31 of SMMU_EVENTQ_CONS: the overflow acknowledged.
pub const EVENTQ_CONS_OVACKFLG: u32 = 1 << 31;

static_assertions::const_assert_eq!(core::mem::size_of::<SmmuPage0>(), 0xc0);
static_assertions::const_assert_eq!(core::mem::size_of::<SmmuPage1>(), 0xb0);
