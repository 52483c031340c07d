//! The guest suite's bad-input checks: each wrong way to open or use the
//! device fails with its typed [`VfioError`] whose message gives the fix,
//! and leaves nothing behind: afterwards the device opens again (nothing
//! kept its group), maps DMA and reads its registers.
//!
//! The unprivileged cases run in a child process (this binary again,
//! under [`CHILD`]) with uid and gid 65534, which drops every capability.

use std::os::unix::process::CommandExt;
use std::process::Command;

use dma_core::{DeviceConstraints, DmaAlloc, DmaAttrs, ErrorKind};
use dma_drivers::nvme::Controller;
use dma_vfio::{DmaMapFlags, VfioDevice, VfioError, VfioPlatform};

use super::{e, Outcome};

/// The first argument that makes this binary one of the unprivileged
/// children: `CHILD <case> <pci-address>`.
pub const CHILD: &str = "--unprivileged-child";

/// The user and group the children run as (`nobody`/`nogroup`).
const NOBODY: u32 = 65534;

/// The memlock limit the memlock child sets, and what it then maps.
const MEMLOCK_LIMIT: u64 = 64 << 10;
const MEMLOCK_MAP: usize = 1 << 20;

/// `Ok` when `got` is the error `expected` says and its message names `fix`.
fn expect(
    what: &str,
    got: Result<VfioDevice, VfioError>,
    expected: impl Fn(&VfioError) -> bool,
    fix: &str,
) -> Result<String, String> {
    match got {
        Err(err) if expected(&err) && err.to_string().contains(fix) => Ok(err.to_string()),
        Err(err) => Err(format!("{what}: {err:?} ({err})")),
        Ok(_) => Err(format!("{what}: opened")),
    }
}

/// After an error: the device opens again, a DMA mapping comes and goes,
/// and BAR0 holds a controller.
fn still_usable(address: &str) -> Result<(), String> {
    let device = VfioDevice::open(address).map_err(e("open again after the error"))?;
    let platform = VfioPlatform::new(&device, DeviceConstraints::UNCONSTRAINED)
        .map_err(e("platform after the error"))?;
    let region = platform
        .alloc_coherent(4096, DmaAttrs::empty())
        .map_err(e("DMA mapping after the error"))?;
    // SAFETY: allocated just above; no device was given its address.
    unsafe { platform.free_coherent(region, DmaAttrs::empty()) }.map_err(e("unmap"))?;
    let bar = device.map_bar(0).map_err(e("BAR0 after the error"))?;
    // SAFETY: BAR0 of the NVMe controller, mapped for as long as `bar`;
    // only its CAP and VS registers are read, and no driver runs meanwhile.
    let ctrl = unsafe { Controller::new(bar.as_ptr(), bar.len()) }.map_err(e("registers"))?;
    if ctrl.capabilities().max_queue_entries < 2 {
        return Err(format!("CAP reads {:?}", ctrl.capabilities()));
    }
    Ok(())
}

/// `outcome`, then [`still_usable`].
fn then_usable(address: &str, outcome: Result<String, String>) -> Outcome {
    let message = outcome?;
    still_usable(address)?;
    Ok(format!("{message} -- then opened and used it"))
}

/// A malformed and a missing PCI address.
pub fn bad_address(address: &str) -> Outcome {
    let malformed = expect(
        "0000:00:1f.9",
        VfioDevice::open("0000:00:1f.9"),
        |e| matches!(e, VfioError::BadPciAddress(_)),
        "domain:bus:device.function",
    )?;
    let missing = expect(
        "0000:7f:1f.7",
        VfioDevice::open("0000:7f:1f.7"),
        |e| matches!(e, VfioError::NoSuchDevice(_)),
        "lspci -D",
    );
    then_usable(address, missing.map(|m| format!("{malformed} / {m}")))
}

/// Another PCI device of the guest, which vfio-pci does not own.
pub fn not_bound(address: &str) -> Outcome {
    let other = std::fs::read_dir("/sys/bus/pci/devices")
        .map_err(e("/sys/bus/pci/devices"))?
        .filter_map(|d| d.ok())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|d| d != address)
        .min()
        .ok_or("the guest has no other PCI device")?;
    let driver = std::fs::read_link(format!("/sys/bus/pci/devices/{other}/driver"))
        .ok()
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
    let want = driver.clone();
    let got = expect(
        &other,
        VfioDevice::open(&other),
        |e| matches!(e, VfioError::NotBound { driver, .. } if *driver == want),
        "driver_override",
    );
    then_usable(address, got)
}

/// A DMA mapping at an IOVA in the hole after the first usable range.
pub fn iova_hole(address: &str) -> Outcome {
    let device = VfioDevice::open(address).map_err(e("open"))?;
    let container = device.container();
    let ranges = container.iova_ranges().to_vec();
    let first = ranges.first().ok_or("no IOVA ranges")?;
    if first.end == u64::MAX {
        return Err(format!("no hole to map into: {ranges:x?}"));
    }
    let hole = first.end + 1;
    let mem = vec![0u8; 8192];
    let va = (mem.as_ptr() as u64 + 4095) & !4095;
    // SAFETY: `mem` outlives the call, and the call must fail before
    // anything is mapped (checked below).
    let got = unsafe { container.map_dma(va, hole, 4096, DmaMapFlags::READ) };
    let message = match got {
        Err(err @ VfioError::OutsideIovaRanges { .. })
            if err.to_string().contains("iova_ranges") =>
        {
            err.to_string()
        }
        other => return Err(format!("IOVA {hole:#x} in the hole: {other:?}")),
    };
    let left = container
        .unmap_dma(hole, 4096)
        .map_err(e("unmap the hole"))?;
    if left != 0 {
        return Err(format!("{left} bytes were mapped in the hole"));
    }
    drop(device);
    then_usable(
        address,
        Ok(format!("{message} (usable ranges {ranges:x?})")),
    )
}

/// A second open of a group this process holds.
pub fn group_busy(address: &str) -> Outcome {
    let first = VfioDevice::open(address).map_err(e("first open"))?;
    let got = expect(
        "second open",
        VfioDevice::open(address),
        |e| matches!(e, VfioError::GroupBusy { .. }),
        "fuser",
    );
    drop(first);
    then_usable(address, got)
}

/// Runs this binary as `nobody` for `case`; its last stdout line is the
/// verdict (`OK ...` or anything else).
fn child(case: &str, address: &str) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(e("this binary's path"))?;
    let out = Command::new(exe)
        .args([CHILD, case, address])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .map_err(e("spawn the unprivileged child"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default().to_string();
    match last.strip_prefix("OK ") {
        Some(detail) if out.status.success() => Ok(detail.to_string()),
        _ => Err(format!(
            "child {case} ({}): {last} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Opening the device as `nobody`: `/dev/vfio/<group>` is root's.
pub fn unprivileged(address: &str) -> Outcome {
    then_usable(address, child("open", address))
}

/// As `nobody` given the group's device node, with a 64 KiB memlock
/// limit: the device opens, a 1 MiB DMA mapping cannot be pinned.
pub fn memlock(address: &str) -> Outcome {
    let node = group_node(address)?;
    std::os::unix::fs::chown(&node, Some(NOBODY), Some(NOBODY)).map_err(e("chown"))?;
    let got = child("memlock", address);
    let back = std::os::unix::fs::chown(&node, Some(0), Some(0)).map_err(e("chown back"));
    then_usable(address, back.and(got))
}

/// `/dev/vfio/<group>` of the device.
fn group_node(address: &str) -> Result<String, String> {
    let link = std::fs::read_link(format!("/sys/bus/pci/devices/{address}/iommu_group"))
        .map_err(e("iommu_group"))?;
    let group = link
        .file_name()
        .ok_or("iommu_group names no group")?
        .to_string_lossy();
    Ok(format!("/dev/vfio/{group}"))
}

/// The unprivileged child's side (`args`: case, address). Prints `OK` and
/// what it saw, and exits 0, only when the case failed as it must.
pub fn child_main(args: &[String]) -> ! {
    let (case, address) = match args {
        [case, address] => (case.as_str(), address.as_str()),
        _ => exit_with("usage: CHILD open|memlock <pci-address>"),
    };
    // SAFETY: getuid and geteuid take no arguments and cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if uid != NOBODY || euid != NOBODY {
        exit_with(&format!("still uid {uid}/{euid}"));
    }
    let verdict = match case {
        "open" => expect(
            "open as nobody",
            VfioDevice::open(address),
            |e| matches!(e, VfioError::NoPrivileges(_)),
            "run as root",
        ),
        "memlock" => memlock_child(address),
        other => Err(format!("unknown case {other}")),
    };
    match verdict {
        Ok(detail) => {
            println!("OK {detail}");
            std::process::exit(0)
        }
        Err(why) => exit_with(&why),
    }
}

fn exit_with(why: &str) -> ! {
    println!("FAIL {why}");
    std::process::exit(1)
}

/// Lowers the memlock limit, opens the device (its node is ours now) and
/// maps more than the limit: through the container (a typed
/// [`VfioError::MemlockTooLow`]) and through the platform (dma-core's
/// `OutOfMemory` with the fix); nothing stays mapped.
fn memlock_child(address: &str) -> Result<String, String> {
    let limit = libc::rlimit {
        rlim_cur: MEMLOCK_LIMIT as libc::rlim_t,
        rlim_max: MEMLOCK_LIMIT as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the one rlimit we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    let device = VfioDevice::open(address).map_err(e("open with the node ours"))?;
    let platform =
        VfioPlatform::new(&device, DeviceConstraints::UNCONSTRAINED).map_err(e("platform"))?;
    // Written, so every page is its own: untouched anonymous pages are the
    // shared zero page, which VFIO pins as reserved and never charges to
    // the memlock limit.
    let mem = vec![1u8; MEMLOCK_MAP + 4096];
    let va = (mem.as_ptr() as u64 + 4095) & !4095;
    let iova = platform.iova_window().0;
    // SAFETY: `mem` outlives the mapping, which the unmap below ends (or
    // which was never made).
    let got = unsafe {
        device.container().map_dma(
            va,
            iova,
            MEMLOCK_MAP as u64,
            DmaMapFlags::READ | DmaMapFlags::WRITE,
        )
    };
    let left = device
        .container()
        .unmap_dma(iova, MEMLOCK_MAP as u64)
        .map_err(e("unmap"))?;
    let message = match got {
        Err(
            err @ VfioError::MemlockTooLow {
                limit: Some(MEMLOCK_LIMIT),
                ..
            },
        ) if err.to_string().contains("ulimit -l") => err.to_string(),
        other => return Err(format!("map {MEMLOCK_MAP} bytes: {other:?}")),
    };
    if left != 0 {
        return Err(format!("{left} bytes stayed mapped after the refusal"));
    }
    let dma = platform.alloc_coherent(MEMLOCK_MAP, DmaAttrs::empty());
    match dma {
        Err(err) if err.kind() == ErrorKind::OutOfMemory && err.message().contains("ulimit -l") => {
        }
        Err(err) => return Err(format!("coherent allocation: {err}")),
        Ok(region) => {
            // SAFETY: allocated just above; no device was given its address.
            let _ = unsafe { platform.free_coherent(region, DmaAttrs::empty()) };
            return Err("a 1 MiB coherent allocation was pinned over the limit".into());
        }
    }
    if platform.live_mappings() != 0 {
        return Err("the platform kept a mapping after the refusal".into());
    }
    Ok(format!(
        "{message}; the platform says the same as dma-core's OutOfMemory"
    ))
}
