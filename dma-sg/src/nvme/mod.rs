//! NVMe data pointers: PRP entries and lists, and SGL descriptors
//! (NVM Express Base Specification 2.0, section 4.1 "Data Structures":
//! 4.1.1 "Physical Region Page Entry and List", 4.1.2 "Scatter Gather
//! List (SGL)").
//!
//! A command's data pointer (`DPTR`, command dwords 6 to 9) holds either
//! PRP1 and PRP2 or one SGL descriptor (SGL1). Transfers that need more
//! than that put the rest in list memory from [`NvmePools`], which the
//! returned request object owns and hands back when it is dropped, that is
//! when the command has completed.

pub mod prp;
pub mod sgl;

#[cfg(feature = "alloc")]
mod pools;

#[cfg(feature = "alloc")]
pub use pools::NvmePools;
#[cfg(feature = "alloc")]
pub use prp::{encode_prp, PrpRequest};
pub use prp::{walk_prp, PrpEntries, PrpLayout};
#[cfg(feature = "alloc")]
pub use sgl::{encode_sgl, SglRequest};
pub use sgl::{SglDescriptor, SglDescriptorType};
