//! The guest suite's checks that hand the device a mapping something was
//! done to behind the driver's back, through a platform wrapper
//! ([`Tampering`]) the unchanged NVMe driver maps through.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dma_core::{DmaAlloc, DmaAttrs, DmaBuf, DmaDirection, DmaMap, PhysAddr, RawMapping};
use dma_drivers::nvme::{prp_pools, Controller, NvmeBlockDriver, NvmeDriverConfig};
use dma_vfio::VfioPlatform;

use super::{common, e, Outcome};

/// What an armed [`Tampering`] platform does to each streaming mapping
/// right after the real platform made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tamper {
    /// Unmaps it again: the device is handed an IOVA that the IOMMU no
    /// longer translates, as a driver with a use-after-unmap bug would
    /// hand it.
    Revoke,
    /// Writes this byte over a buffer mapped for the device to read, as
    /// `StreamingMapping::write` may while the mapping is live.
    WriteAfterMap(u8),
}

/// The real platform, with a [`Tamper`] applied to streaming mappings
/// made while `armed`.
#[derive(Clone, Copy)]
struct Tampering<'a> {
    platform: &'a VfioPlatform,
    armed: &'a AtomicBool,
    tamper: Tamper,
}

impl Tampering<'_> {
    fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }
}

// SAFETY: every call forwards to the real platform. An armed `Revoke`
// unmaps again before returning, so the device can reach less than the
// contract promises (nothing), never more, and its `unmap` has nothing
// left to end. An armed `WriteAfterMap` writes only inside the buffer the
// caller just handed over for the device to read, before the device is
// told of it, as the safe `StreamingMapping::write` may. `armed` only
// changes while no streaming mapping is live.
unsafe impl DmaMap for Tampering<'_> {
    fn constraints(&self) -> &dma_core::DeviceConstraints {
        self.platform.constraints()
    }
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> dma_core::Result<PhysAddr> {
        self.platform.virt_to_phys(cpu, len)
    }
    fn dma_alignment(&self) -> usize {
        self.platform.dma_alignment()
    }
    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> dma_core::Result<dma_core::DmaAddr> {
        // SAFETY: the caller's promise is passed on.
        let dma = unsafe { self.platform.map(phys, len, dir, attrs) }?;
        match self.tamper {
            _ if !self.armed() => {}
            Tamper::Revoke => {
                let raw = RawMapping {
                    phys,
                    dma,
                    len,
                    dir,
                    attrs,
                };
                // SAFETY: mapped just above; the device has not been told.
                unsafe { self.platform.unmap(&raw) }?;
            }
            Tamper::WriteAfterMap(byte) if dir == DmaDirection::ToDevice => {
                let at = phys.as_u64() as usize as *mut u8;
                for i in 0..len {
                    // SAFETY: VfioPlatform's physical addresses are this process's virtual ones, so
                    // `at..at + len` is the caller's buffer, which it owns and the device only
                    // reads; the device has not been told of it yet.
                    unsafe { at.add(i).write_volatile(byte) };
                }
            }
            Tamper::WriteAfterMap(_) => {}
        }
        Ok(dma)
    }
    unsafe fn unmap(&self, mapping: &RawMapping) -> dma_core::Result<()> {
        if self.armed() && self.tamper == Tamper::Revoke {
            return Ok(());
        }
        // SAFETY: the caller's promise is passed on (every mapping but a
        // revoked one is a real one).
        unsafe { self.platform.unmap(mapping) }
    }
    unsafe fn sync_for_cpu(&self, m: &RawMapping, o: usize, l: usize) {
        // SAFETY: the caller's promise is passed on.
        unsafe { self.platform.sync_for_cpu(m, o, l) }
    }
    unsafe fn sync_for_device(&self, m: &RawMapping, o: usize, l: usize) {
        // SAFETY: the caller's promise is passed on.
        unsafe { self.platform.sync_for_device(m, o, l) }
    }
}

// SAFETY: forwards to the real platform unchanged.
unsafe impl DmaAlloc for Tampering<'_> {
    fn alloc_coherent(
        &self,
        size: usize,
        attrs: DmaAttrs,
    ) -> dma_core::Result<dma_core::CoherentRegion> {
        self.platform.alloc_coherent(size, attrs)
    }
    unsafe fn free_coherent(
        &self,
        region: dma_core::CoherentRegion,
        attrs: DmaAttrs,
    ) -> dma_core::Result<()> {
        // SAFETY: the caller's promise is passed on.
        unsafe { self.platform.free_coherent(region, attrs) }
    }
}

/// The kernel log (klogctl SYSLOG_ACTION_READ_ALL).
fn kernel_log() -> String {
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: klogctl writes at most len bytes into our buffer.
    let n = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), buf.len() as i32) };
    buf.truncate(n.max(0) as usize);
    String::from_utf8_lossy(&buf).into_owned()
}

fn iommu_faults(log: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("DMAR: [DMA Write") || (l.contains("arm-smmu-v3") && l.contains("event"))
        })
        .count()
}

/// A read at `lba` whose buffer's IOVA was unmapped: the IOMMU must block
/// the device's write, the buffer stay as it was, and the kernel log the
/// fault.
pub fn fault(nvme: &common::Nvme, ctrl: &Controller<'_>, lba: u64) -> Outcome {
    let armed = AtomicBool::new(false);
    let revoking = Tampering {
        platform: &nvme.platform,
        armed: &armed,
        tamper: Tamper::Revoke,
    };
    let rpools = prp_pools(revoking).map_err(e("PRP pools"))?;
    let mut disk = NvmeBlockDriver::<_, _>::start(
        ctrl,
        revoking,
        &rpools,
        common::Polled::new(Duration::from_secs(10)),
        NvmeDriverConfig::default(),
    )
    .map_err(e("start"))?;
    // The blocks there were never written: a read that got through would
    // turn the 0xee fill into zeros.
    let before = iommu_faults(&kernel_log());
    let mut buf = DmaBuf::for_device(&nvme.platform, 4096).map_err(e("buffer"))?;
    buf.fill(0xee);
    armed.store(true, Ordering::Relaxed);
    let outcome = disk.read(lba, buf);
    armed.store(false, Ordering::Relaxed);
    let _ = disk.shutdown();
    let buf = match outcome {
        Ok(b) => b,
        Err(refused) => refused
            .buffer
            .ok_or(format!("read refused: {}", refused.error))?,
    };
    if buf.iter().any(|&b| b != 0xee) {
        return Err("the device wrote through an unmapped IOVA".into());
    }
    std::thread::sleep(Duration::from_millis(100));
    let after = iommu_faults(&kernel_log());
    if after <= before {
        return Err("the buffer is untouched but the kernel logged no IOMMU fault".into());
    }
    Ok(format!(
        "buffer untouched, {} new IOMMU fault lines in the kernel log",
        after - before
    ))
}

/// Bytes of the [`cpu_write_after_map`] buffer.
const FRESH: usize = 1 << 20;

/// `len` bytes of new anonymous memory that nothing has written: until
/// the first write, every page of it is the kernel's shared zero page.
/// (A heap allocation may reuse written pages, so it would not do.)
fn fresh_pages(len: usize) -> Result<&'static mut [u8], String> {
    // SAFETY: a new private anonymous mapping; it aliases nothing.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `len` readable and writable bytes that nothing else refers
    // to; never unmapped, so they live as long as the process.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// A buffer whose pages the CPU never wrote, mapped for the device to
/// read and written by the CPU after that: the device must read what the
/// CPU wrote (not the zero page the kernel would have pinned), checked by
/// writing it to the disk at `lba` and reading it back.
pub fn cpu_write_after_map(nvme: &common::Nvme, ctrl: &Controller<'_>, lba: u64) -> Outcome {
    const BYTE: u8 = 0xc5;
    let armed = AtomicBool::new(false);
    let writing = Tampering {
        platform: &nvme.platform,
        armed: &armed,
        tamper: Tamper::WriteAfterMap(BYTE),
    };
    let pools = prp_pools(writing).map_err(e("PRP pools"))?;
    let mut disk = NvmeBlockDriver::<_, _, &'static mut [u8]>::start(
        ctrl,
        writing,
        &pools,
        common::Polled::new(Duration::from_secs(10)),
        NvmeDriverConfig::default(),
    )
    .map_err(e("start"))?;
    let fresh = fresh_pages(FRESH)?;
    let back = fresh_pages(FRESH)?;
    armed.store(true, Ordering::Relaxed);
    let written = disk.write(lba, fresh);
    armed.store(false, Ordering::Relaxed);
    let outcome = written
        .map_err(|r| format!("write: {}", r.error))
        .and_then(|_| {
            disk.read(lba, back)
                .map_err(|r| format!("read: {}", r.error))
        });
    let _ = disk.shutdown();
    let back = outcome?;
    let stale = back.iter().filter(|&&b| b != BYTE).count();
    if stale != 0 {
        return Err(format!(
            "the device read {stale} of {FRESH} bytes as they were before the CPU wrote them \
             (the zero page stayed pinned)"
        ));
    }
    Ok(format!(
        "{} KiB of never-written pages mapped for the device, then written by the CPU: the disk holds the CPU's bytes",
        FRESH >> 10
    ))
}
