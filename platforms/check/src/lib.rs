//! A checking wrapper for any DMA platform: Linux's `CONFIG_DMA_API_DEBUG`
//! as a value you put around your platform.
//!
//! [`Checked<P>`](Checked) implements [`DmaMap`](dma_core::DmaMap) and
//! [`DmaAlloc`](dma_core::DmaAlloc) by forwarding to `P`, and keeps a record
//! of every live mapping and allocation. Each call is checked against that
//! record, and every misuse becomes a [`Report`]: data a test can match on,
//! with a `Display` that names the mapping, the addresses and the broken
//! rule. In [`Mode::Panic`] each report is also a panic, for test suites
//! that want misuse to fail loudly where it happens.
//!
//! # Example
//!
//! ```
//! use dma_core::{DeviceConstraints, DmaDirection, DmaAttrs, DmaMap, FromDevice, HostMemory,
//!               RawMapping, StreamingMapping};
//! use dma_check::{Checked, Operation, Report};
//! use dma_direct::DirectPlatform;
//!
//! let platform = Checked::new(DirectPlatform::x86_coherent(
//!     HostMemory,
//!     DeviceConstraints::UNCONSTRAINED,
//! ));
//!
//! // Correct use through the safe types: nothing to report.
//! let mut rx = StreamingMapping::<_, FromDevice, _>::map(&platform, vec![0u8; 2048])?;
//! rx.sync_for_cpu();
//! let raw: RawMapping = *rx.raw();
//! let _buffer: Vec<u8> = rx.unmap()?;
//! assert!(platform.reports().is_empty());
//!
//! // A double unmap through the raw contract is reported, not forwarded.
//! // SAFETY (of the example): the checker refuses the call, so the inner
//! // platform never sees it.
//! let err = unsafe { platform.unmap(&raw) }.unwrap_err();
//! assert_eq!(err.kind(), dma_core::ErrorKind::NotMapped);
//! let reports = platform.take_reports();
//! assert!(matches!(
//!     reports[..],
//!     [Report::NotMapped { op: Operation::Unmap, previous: Some(_), .. }]
//! ));
//! println!("{}", reports[0]); // "DMA-API: unmap of memory that is not mapped (...): already ended, ..."
//! # Ok::<(), dma_core::Error>(())
//! ```
//!
//! Switch to panics with [`Checked::panicking`],
//! [`Config::mode`]`(`[`Mode::Panic`]`)` or [`Checked::set_mode`]; log each
//! report as it happens with [`Config::on_report`].
//!
//! # What is checked, and what is forwarded
//!
//! The rule: the wrapper never makes things worse than the platform alone.
//! When a call names a live record unambiguously (same device address,
//! CPU side and kind), the inner platform is given *its own record* of the
//! mapping, so a wrong size or direction cannot make it unmap, sync or copy
//! the wrong bytes. When it names none, nothing is forwarded: the memory
//! is leaked rather than released twice, which the platform contract allows
//! ("the caller must then assume the device may still reach the buffer").
//!
//! | misuse (Linux dma-debug message) | report | forwarded |
//! | --- | --- | --- |
//! | unmap/free/sync of memory never mapped or already unmapped | [`Report::NotMapped`] (`previous` says which) | no; `Err(NotMapped)` |
//! | unmap with a different size or direction | [`Report::Mismatch`] `Size`/`Direction` | yes, the record |
//! | unmap/free/sync of a different kind (single, sg, coherent) | [`Report::Mismatch`] `Kind` | no; `Err(NotMapped)` |
//! | free of a coherent allocation with a different CPU address | [`Report::Mismatch`] `CpuAddress` | no; `Err(NotMapped)` |
//! | free of a coherent allocation with a different size or attributes | [`Report::Mismatch`] `Size`/`Attrs` | yes, the record |
//! | unmap/sync of a streaming mapping with a different physical address | [`Report::Mismatch`] `Phys` | no |
//! | unmap or sync of an sg table with a different entry count | [`Report::Mismatch`] `SgCount` | yes, the whole recorded table |
//! | sync of unmapped memory | [`Report::NotMapped`] | no |
//! | sync outside the mapped range | [`Report::SyncOutOfRange`] | no |
//! | sync naming another direction than mapped (not bidirectional) | [`Report::Mismatch`] `Direction` | yes, the record |
//! | ... which makes it a sync for the CPU of memory the device only reads, or for the device of memory it only writes | also [`Report::SyncWrongDirection`] | yes, the record |
//! | map of stack or read-only memory (where a [`classify`] hook can tell) | [`Report::BadMemory`] | no; `Err(Unsupported)` |
//! | mapped sg entry longer than the device's maximum segment | [`Report::SegmentTooLong`] | mapped |
//! | mapped sg entry crossing the device's boundary | [`Report::SegmentCrossesBoundary`] | mapped |
//! | two mappings the device may write sharing a cache line | [`Report::CacheLineOverlap`] | mapped |
//! | mappings still live when the device is released | [`Report::Leak`] | leaked |
//! | a map error never checked | impossible: see below | |
//!
//! Sync directions follow Linux's `check_sync` exactly: any sync of a
//! bidirectional mapping, and any sync that names the mapped direction, is
//! correct; that includes `sync_for_device` of a from-device mapping, which
//! hands a receive buffer back to the device after the CPU read it (as
//! `page_pool` does), and `sync_for_cpu` of a to-device one. A sync naming
//! another direction is reported but still synced, with the recorded
//! mapping: the platform alone would have synced it. Syncs outside a
//! mapping are not forwarded: they would invalidate, clean or copy memory
//! the caller does not own. The three "mapped" classes are reported after the platform
//! mapped correctly: refusing them would turn a warning into a failure the
//! driver did not have without the checker.
//!
//! Scatter-gather: every entry is its own record (as in Linux), so an entry
//! synced on its own through [`SgEntry::as_raw`](dma_core::SgEntry::as_raw)
//! is checked like a single mapping. `DmaMap` has no sg sync, so the entry
//! count at sync is checked by the checker's own
//! `DmaMap::sync_sg_for_cpu` / `DmaMap::sync_sg_for_device`.
//!
//! Cache lines: the line size is [`Config::cache_line`], by default the
//! platform's `dma_alignment()`. As in Linux, only mappings the device may
//! write are tracked, and `SKIP_CPU_SYNC` mappings are exempt.
//!
//! # What the types already rule out
//!
//! Through `dma-core`'s safe types most of these classes cannot be written
//! at all; the checker exists for the raw `unsafe` contract (backends,
//! pools, rings, and code that must go below the safe types). These do not
//! compile:
//!
//! A sync the direction does not allow (`StreamingMapping` has no
//! `sync_for_cpu` when the device only reads):
//!
//! ```compile_fail,E0599
//! # use dma_core::{DeviceConstraints, HostMemory, StreamingMapping, ToDevice};
//! # let p = dma_check::Checked::new(dma_direct::DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED));
//! let mut tx = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 64]).unwrap();
//! tx.sync_for_cpu();
//! ```
//!
//! A double unmap, or a sync after unmap (`unmap` consumes the mapping):
//!
//! ```compile_fail,E0382
//! # use dma_core::{DeviceConstraints, FromDevice, HostMemory, StreamingMapping};
//! # let p = dma_check::Checked::new(dma_direct::DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED));
//! let rx = StreamingMapping::<_, FromDevice, _>::map(&p, vec![0u8; 64]).unwrap();
//! let buf = rx.unmap().unwrap();
//! let again = rx.unmap();
//! ```
//!
//! An unmap with a different size, direction or kind: `StreamingMapping`
//! and `Coherent` keep their raw description private and hand exactly it
//! back, so there is nothing to get wrong.
//!
//! Mapping stack memory (a buffer must be owned or `'static`):
//!
//! ```compile_fail,E0597
//! # use dma_core::{DeviceConstraints, FromDevice, HostMemory, StreamingMapping};
//! # let p = dma_check::Checked::new(dma_direct::DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED));
//! let mut on_stack = [0u8; 64];
//! let rx = StreamingMapping::<_, FromDevice, _>::map(&p, &mut on_stack[..]).unwrap();
//! ```
//!
//! Mapping read-only memory (a shared reference is not a `DmaBuffer`):
//!
//! ```compile_fail,E0277
//! # use dma_core::{DeviceConstraints, HostMemory, StreamingMapping, ToDevice};
//! # let p = dma_check::Checked::new(dma_direct::DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED));
//! static FIRMWARE: [u8; 4] = [1, 2, 3, 4];
//! let tx = StreamingMapping::<_, ToDevice, _>::map(&p, &FIRMWARE[..]).unwrap();
//! ```
//!
//! ## Unchecked map errors
//!
//! Linux reports a driver that never calls `dma_mapping_error()` on a
//! returned address, because there an error is an in-band address value.
//! Here `map` returns `Result<DmaAddr>`: the address cannot be had without
//! looking at the error, and dropping the `Result` is a `must_use` warning
//! (an error under `#![deny(unused_must_use)]` or `-D warnings`, as CI
//! runs). Both do not compile:
//!
//! ```compile_fail,E0308
//! # use dma_core::{DeviceConstraints, DmaAddr, DmaAttrs, DmaDirection, DmaMap, HostMemory, PhysAddr};
//! # let p = dma_check::Checked::new(dma_direct::DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED));
//! let dma: DmaAddr = unsafe { p.map(PhysAddr::new(0x1000), 64, DmaDirection::ToDevice, DmaAttrs::empty()) };
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! # use dma_core::{DeviceConstraints, DmaAttrs, DmaDirection, DmaMap, HostMemory, PhysAddr};
//! # let p = dma_check::Checked::new(dma_direct::DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED));
//! unsafe { p.map(PhysAddr::new(0x1000), 64, DmaDirection::ToDevice, DmaAttrs::empty()) };
//! ```
//!
//! So this class has no report: what is left of it (`let _ = map(..)`,
//! which discards a successful mapping too) surfaces as a [`Report::Leak`].
//!
//! ## Stack and read-only memory through the raw contract
//!
//! A platform maps physical addresses, and only the environment knows
//! which are stacks or read-only. Give the checker a [`classify::Classifier`]
//! (a kernel: its task stack and `.rodata` bounds); with the `std` feature
//! on Linux, [`classify::host_linux`] checks the calling thread's exact
//! stack and the executable's read-only segments for identity-mapped
//! memory (`HostMemory`). Without a classifier neither class is detected.
//!
//! # `no_std`
//!
//! The crate is `#![no_std]` with `alloc` (records live in hash maps,
//! `hashbrown`'s, by device address; docs/performance.md has their cost) so a
//! kernel can wrap its platform in it as Linux enables
//! `CONFIG_DMA_API_DEBUG`. The records are guarded by a small spin lock held
//! only for a lookup and an insert or remove, never across a call into the
//! wrapped platform or a hook; it does not mask interrupts. The `std`
//! feature (default) adds the hosted classifier and keeps a panic-mode
//! leak report from panicking while a thread is already unwinding.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod bucket;
mod checked;
pub mod classify;
mod lines;
mod records;
mod report;
mod tracker;

pub use checked::{Checked, Config, Mode};
pub use report::{
    CpuSide, Field, Mapping, MappingKind, MemoryClass, Operation, Report, SgSlot, SyncPoint,
};
