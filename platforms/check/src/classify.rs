//! Telling stack and read-only memory apart from ordinary memory.
//!
//! A platform maps by physical address, and whether an address is a stack
//! or read-only is something only the environment knows: a kernel knows
//! its task stacks and its `.rodata` section bounds (Linux's dma-debug uses
//! `object_is_on_stack` and the kernel's text/rodata symbols); a hosted
//! process can ask its thread library and `/proc/self/maps`. So the checker
//! takes a [`Classifier`] from the environment, and without one it detects
//! neither class.
//!
//! Through `dma-core`'s safe types neither can happen at all (see the crate
//! docs): buffers are owned, `'static`-or-heap, and writable.

use dma_core::PhysAddr;

pub use crate::report::MemoryClass;

/// Classifies `len` bytes at a physical address. It is called on every map
/// outside the checker's lock, so it may take its own locks, and should be
/// quick.
pub type Classifier = fn(PhysAddr, usize) -> MemoryClass;

/// A classifier for a hosted Linux process whose physical addresses are its
/// virtual ones (`dma_core::HostMemory`).
///
/// - **Stack**: the calling thread's exact stack bounds, from
///   `pthread_getattr_np`. Other threads' stacks are not seen: a buffer on
///   thread A's stack mapped by thread B is reported as ordinary.
/// - **Read-only**: the non-writable mappings of the program's own
///   executable (its code and constants), read from `/proc/self/maps` once,
///   on first use. Read-only mappings of shared libraries and of files
///   mapped later are not seen.
#[cfg(all(feature = "std", target_os = "linux"))]
pub fn host_linux(phys: PhysAddr, len: usize) -> MemoryClass {
    let Ok(start) = usize::try_from(phys.as_u64()) else {
        return MemoryClass::Ordinary;
    };
    let end = start.saturating_add(len);
    let overlaps = |(lo, hi): (usize, usize)| start < hi && end > lo;
    if host::current_stack().is_some_and(overlaps) {
        return MemoryClass::Stack;
    }
    if host::read_only_image().iter().copied().any(overlaps) {
        return MemoryClass::ReadOnly;
    }
    MemoryClass::Ordinary
}

#[cfg(all(feature = "std", target_os = "linux"))]
mod host {
    extern crate std;

    use std::sync::OnceLock;
    use std::vec::Vec;

    /// The calling thread's stack as `[low, high)`.
    pub(super) fn current_stack() -> Option<(usize, usize)> {
        let mut attr = core::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        // SAFETY: pthread_getattr_np initialises `attr` for the calling
        // thread when it returns 0; it is destroyed below in that case only.
        if unsafe { libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) } != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = core::ptr::null_mut();
        let mut size: libc::size_t = 0;
        // SAFETY: `attr` was initialised above; the out-pointers are valid.
        let ok = unsafe { libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) } == 0;
        // SAFETY: `attr` was initialised by pthread_getattr_np and is
        // destroyed exactly once.
        unsafe { libc::pthread_attr_destroy(attr.as_mut_ptr()) };
        ok.then(|| (addr as usize, (addr as usize).saturating_add(size)))
    }

    /// The executable's non-writable mappings, read once.
    pub(super) fn read_only_image() -> &'static [(usize, usize)] {
        static IMAGE: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
        IMAGE.get_or_init(|| {
            let (Ok(exe), Ok(maps)) = (
                std::env::current_exe(),
                std::fs::read_to_string("/proc/self/maps"),
            ) else {
                return Vec::new();
            };
            let exe = exe.to_string_lossy();
            maps.lines()
                .filter_map(|line| parse_read_only(line, &exe))
                .collect()
        })
    }

    /// `start-end perms offset dev inode path` -> the range, if the line is
    /// a non-writable mapping of `exe` (proc(5), /proc/pid/maps).
    fn parse_read_only(line: &str, exe: &str) -> Option<(usize, usize)> {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let perms = fields.next()?;
        let path = fields.nth(3)?;
        if perms.as_bytes().get(1) != Some(&b'-') || path != exe {
            return None;
        }
        let (lo, hi) = range.split_once('-')?;
        Some((
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        ))
    }

    #[cfg(test)]
    mod tests {
        use super::parse_read_only;

        #[test]
        fn parses_only_non_writable_lines_of_the_executable() {
            let exe = "/tmp/prog";
            assert_eq!(
                parse_read_only("55d0a000-55d0b000 r--p 00000000 08:01 42 /tmp/prog", exe),
                Some((0x55d0_a000, 0x55d0_b000))
            );
            assert_eq!(
                parse_read_only("55d0b000-55d0c000 rw-p 00001000 08:01 42 /tmp/prog", exe),
                None
            );
            assert_eq!(
                parse_read_only("7f00-8f00 r--p 00000000 08:01 43 /lib/libc.so.6", exe),
                None
            );
            assert_eq!(
                parse_read_only("7f00-8f00 rw-p 00000000 00:00 0", exe),
                None
            );
        }
    }
}
