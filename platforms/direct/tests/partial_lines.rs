//! The partial-cache-line policy, checked against a software model of a
//! write-back cache: whatever the offsets, a buffer the device writes is
//! either refused at map time or comes back holding the device's data with
//! its neighbours' data intact.
//!
//! The model holds RAM (what the device sees) and the CPU's cached lines
//! with dirty bits; `CacheMaintenance` moves lines between them. Removing
//! the whole-line rule from `DirectPlatform::map` makes
//! `device_written_buffers_never_cost_anyone_data` fail: the unaligned
//! receive is accepted and the shared edge line loses the neighbour's write.

use std::cell::RefCell;
use std::collections::BTreeMap;

use dma_coherence::CacheMaintenance;
use dma_core::{
    DeviceConstraints, DmaAttrs, DmaBuf, DmaDirection, DmaMap, ErrorKind, HostMemory, PhysAddr,
    RawMapping,
};
use dma_direct::DirectPlatform;

const LINE: usize = 64;
const WINDOW: usize = 256;

/// A write-back, write-allocate data cache over a `WINDOW`-byte region at
/// `base`, which stands for the region's physical memory.
struct ModelCache {
    base: usize,
    ram: RefCell<Vec<u8>>,
    /// Cached lines by index: contents and dirty bit.
    lines: RefCell<BTreeMap<usize, (Vec<u8>, bool)>>,
}

impl ModelCache {
    fn new(base: usize) -> Self {
        assert_eq!(base % LINE, 0);
        Self {
            base,
            ram: RefCell::new(vec![0; WINDOW]),
            lines: RefCell::new(BTreeMap::new()),
        }
    }

    fn offset(&self, addr: usize) -> usize {
        let off = addr
            .checked_sub(self.base)
            .expect("address below the window");
        assert!(off < WINDOW, "address past the window");
        off
    }

    /// Brings line `index` into the cache.
    fn fill(&self, index: usize) {
        let ram = self.ram.borrow();
        self.lines
            .borrow_mut()
            .entry(index)
            .or_insert_with(|| (ram[index * LINE..(index + 1) * LINE].to_vec(), false));
    }

    /// Splits `[off, off + len)` into (line index, offset in line, length)
    /// pieces.
    fn pieces(off: usize, len: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let mut at = off;
        std::iter::from_fn(move || {
            (at < off + len).then(|| {
                let (index, within) = (at / LINE, at % LINE);
                let n = (LINE - within).min(off + len - at);
                at += n;
                (index, within, n)
            })
        })
    }

    fn cpu_write(&self, off: usize, bytes: &[u8]) {
        let mut src = bytes;
        for (index, within, n) in Self::pieces(off, bytes.len()) {
            self.fill(index);
            let mut lines = self.lines.borrow_mut();
            let line = lines.get_mut(&index).unwrap();
            line.0[within..within + n].copy_from_slice(&src[..n]);
            line.1 = true;
            src = &src[n..];
        }
    }

    fn cpu_read(&self, off: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        for (index, within, n) in Self::pieces(off, len) {
            self.fill(index);
            out.extend_from_slice(&self.lines.borrow()[&index].0[within..within + n]);
        }
        out
    }

    fn device_write(&self, off: usize, bytes: &[u8]) {
        self.ram.borrow_mut()[off..off + bytes.len()].copy_from_slice(bytes);
    }

    fn device_read(&self, off: usize, len: usize) -> Vec<u8> {
        self.ram.borrow()[off..off + len].to_vec()
    }

    fn touched(&self, va: usize, len: usize) -> std::ops::RangeInclusive<usize> {
        self.offset(va) / LINE..=self.offset(va + len - 1) / LINE
    }

    fn write_back(&self, index: usize) {
        if let Some((data, dirty)) = self.lines.borrow_mut().get_mut(&index) {
            if *dirty {
                self.ram.borrow_mut()[index * LINE..(index + 1) * LINE].copy_from_slice(data);
                *dirty = false;
            }
        }
    }
}

// SAFETY: a model of a cache over memory it owns; the operations act on
// exactly the lines the range touches, as the contract says.
unsafe impl CacheMaintenance for ModelCache {
    fn is_coherent(&self) -> bool {
        false
    }
    fn line_size(&self) -> usize {
        LINE
    }
    unsafe fn clean(&self, va: usize, len: usize) {
        self.touched(va, len).for_each(|i| self.write_back(i));
    }
    unsafe fn invalidate(&self, va: usize, len: usize) {
        for i in self.touched(va, len) {
            self.lines.borrow_mut().remove(&i);
        }
    }
    unsafe fn clean_invalidate(&self, va: usize, len: usize) {
        for i in self.touched(va, len) {
            self.write_back(i);
            self.lines.borrow_mut().remove(&i);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Map refused the buffer.
    Refused,
    /// The CPU reads the device's data and its own neighbour data.
    Intact,
    /// Somebody's bytes were lost.
    Lost {
        buffer_ok: bool,
        neighbours_ok: bool,
    },
}

const OLD: u8 = 0x11;
const DEVICE: u8 = 0xdd;
const NEIGHBOUR_1: u8 = 0xa0;
const NEIGHBOUR_2: u8 = 0xa1;

/// A receive into `[start, start + len)` of the window, with CPU-owned
/// neighbour data on both sides that the CPU keeps writing while the
/// device owns the buffer.
fn receive(dir: DmaDirection, start: usize, len: usize) -> Outcome {
    let window = DmaBuf::new(WINDOW, LINE).unwrap();
    let model = ModelCache::new(window.as_ptr() as usize);
    let platform =
        DirectPlatform::noncoherent(HostMemory, &model, DeviceConstraints::UNCONSTRAINED);
    let end = start + len;

    model.cpu_write(0, &[NEIGHBOUR_1; WINDOW]);
    model.cpu_write(start, &vec![OLD; len]);

    let phys = PhysAddr::new((model.base + start) as u64);
    // SAFETY: the range is inside `window`, which outlives the mapping; the
    // model, not the real bytes, carries the data.
    let dma = match unsafe { platform.map(phys, len, dir, DmaAttrs::empty()) } {
        Ok(dma) => dma,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Misaligned);
            return Outcome::Refused;
        }
    };
    let raw = RawMapping {
        phys,
        dma,
        len,
        dir,
        attrs: DmaAttrs::empty(),
    };

    model.device_write(start, &vec![DEVICE; len]);
    // The neighbours are the CPU's: it may write them at any time.
    model.cpu_write(0, &vec![NEIGHBOUR_2; start]);
    model.cpu_write(end, &vec![NEIGHBOUR_2; WINDOW - end]);

    // SAFETY: live mapping, whole range; the device has finished.
    unsafe { platform.sync_for_cpu(&raw, 0, len) };
    // SAFETY: `raw` is the live mapping, unmapped once.
    unsafe { platform.unmap(&raw) }.unwrap();

    let buffer_ok = model.cpu_read(start, len).iter().all(|&b| b == DEVICE);
    let neighbours_ok = model.cpu_read(0, start).iter().all(|&b| b == NEIGHBOUR_2)
        && model
            .cpu_read(end, WINDOW - end)
            .iter()
            .all(|&b| b == NEIGHBOUR_2);
    if buffer_ok && neighbours_ok {
        Outcome::Intact
    } else {
        Outcome::Lost {
            buffer_ok,
            neighbours_ok,
        }
    }
}

#[test]
fn device_written_buffers_never_cost_anyone_data() {
    let cases = [
        (0, 64),
        (64, 128),
        (0, 256),
        (16, 128),
        (64, 100),
        (8, 8),
        (63, 2),
        (1, 254),
        (128, 65),
    ];
    for dir in [DmaDirection::FromDevice, DmaDirection::Bidirectional] {
        for (start, len) in cases {
            let outcome = receive(dir, start, len);
            assert!(
                !matches!(outcome, Outcome::Lost { .. }),
                "{dir:?} {start}+{len}: {outcome:?}"
            );
            let aligned = start % LINE == 0 && (start + len) % LINE == 0;
            if aligned {
                assert_eq!(outcome, Outcome::Intact, "{dir:?} {start}+{len}");
            } else {
                assert_eq!(
                    outcome,
                    Outcome::Refused,
                    "{dir:?} {start}+{len}: an unaligned buffer the device writes was accepted"
                );
            }
        }
    }
}

#[test]
fn unaligned_transmit_buffers_are_fine() {
    let window = DmaBuf::new(WINDOW, LINE).unwrap();
    let model = ModelCache::new(window.as_ptr() as usize);
    let platform =
        DirectPlatform::noncoherent(HostMemory, &model, DeviceConstraints::UNCONSTRAINED);
    model.cpu_write(0, &[NEIGHBOUR_1; WINDOW]);
    model.cpu_write(10, &[0x42; 100]);
    let phys = PhysAddr::new((model.base + 10) as u64);
    // SAFETY: inside `window`; unmapped below.
    let dma =
        unsafe { platform.map(phys, 100, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap();
    assert_eq!(
        model.device_read(10, 100),
        vec![0x42; 100],
        "map cleaned the frame"
    );
    model.cpu_write(0, &[NEIGHBOUR_2; 10]);
    let raw = RawMapping {
        phys,
        dma,
        len: 100,
        dir: DmaDirection::ToDevice,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: the live mapping, unmapped once.
    unsafe { platform.unmap(&raw) }.unwrap();
    assert_eq!(model.cpu_read(0, 10), vec![NEIGHBOUR_2; 10]);
    assert_eq!(model.cpu_read(10, 100), vec![0x42; 100]);
}

/// Why no edge handling short of refusing works: both ways of maintaining
/// a shared line at sync-for-CPU time lose data in the model.
#[test]
fn shared_edge_lines_cannot_be_maintained_safely() {
    let window = DmaBuf::new(WINDOW, LINE).unwrap();
    let setup = || {
        let model = ModelCache::new(window.as_ptr() as usize);
        // Buffer [16, 128): line 0 is shared with the neighbour [0, 16).
        model.cpu_write(0, &[NEIGHBOUR_1; 16]);
        model.cpu_write(16, &[OLD; 112]);
        // SAFETY: the model owns its window.
        unsafe { model.clean(model.base + 16, 112) };
        model.device_write(16, &[DEVICE; 112]);
        model.cpu_write(0, &[NEIGHBOUR_2; 16]);
        model
    };

    let m = setup();
    // SAFETY: the range lies inside the model's own window (a software
    // cache over `window`); no hardware maintenance runs.
    unsafe { m.invalidate(m.base + 16, 112) };
    assert_eq!(m.cpu_read(16, 112), vec![DEVICE; 112]);
    assert_eq!(
        m.cpu_read(0, 16),
        vec![NEIGHBOUR_1; 16],
        "invalidate lost the neighbour's write"
    );

    let m = setup();
    // SAFETY: the range lies inside the model's own window (a software
    // cache over `window`); no hardware maintenance runs.
    unsafe { m.clean_invalidate(m.base + 16, 112) };
    assert_eq!(m.cpu_read(0, 16), vec![NEIGHBOUR_2; 16]);
    assert_eq!(
        m.cpu_read(16, 48),
        vec![OLD; 48],
        "clean+invalidate wrote stale bytes over the device's"
    );
}
