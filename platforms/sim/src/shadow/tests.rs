use std::alloc::Layout;

use proptest::prelude::*;

use super::*;

#[test]
fn runs_split_masks() {
    let v: Vec<_> = runs(bits(3, 9) | bits(20, 21) | bits(120, 128)).collect();
    assert_eq!(v, vec![(3, 9), (20, 21), (120, 128)]);
    assert_eq!(runs(u128::MAX).collect::<Vec<_>>(), vec![(0, 128)]);
    assert_eq!(runs(0).count(), 0);
    assert_eq!(
        ones(bits(1, 3) | 1 << 127).collect::<Vec<_>>(),
        vec![1, 2, 127]
    );
}

#[test]
fn track_untrack_leaves_nothing() {
    let mut s = Shadow::new(64);
    let buf = vec![0u8; 300];
    let a = buf.as_ptr().expose_provenance() as u64;
    // SAFETY: inside `buf`.
    unsafe { s.track(a + 10, a + 10, 200) };
    assert!(s.covers(a + 10, 200));
    assert!(!s.covers(a + 5, 10));
    s.untrack(a + 10, 200, |_| 0);
    assert_eq!(s.pages(), 0);
}

#[test]
fn clean_then_device_reads_cpu_data() {
    let mut s = Shadow::new(64);
    let mut buf = vec![0u8; 256];
    let a = buf.as_mut_ptr().expose_provenance() as u64;
    let a = (a + 63) & !63;
    // SAFETY: inside `buf`.
    unsafe { s.track(a, a, 128) };
    assert!(s.line_full(a));
    // SAFETY: inside `buf`, tracked.
    unsafe { host::write(a, &[7u8; 128]) };
    let mut out = [0u8; 128];
    // SAFETY: tracked.
    let f = unsafe { s.device_read(a, &mut out, true) };
    assert_eq!(f.count, 2, "uncleaned lines are reported");
    assert_eq!(out, [0u8; 128], "and the device read stale RAM");
    // SAFETY: tracked.
    unsafe { s.clean(a, 128) };
    // SAFETY: tracked.
    let f = unsafe { s.device_read(a, &mut out, true) };
    assert_eq!(f.count, 0);
    assert_eq!(out, [7u8; 128]);
    s.untrack(a, 128, |_| 0);
    drop(buf);
}

/// Page-aligned host memory the models may touch.
struct HostPages {
    ptr: *mut u8,
    layout: Layout,
}

impl HostPages {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, PAGE as usize).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Self { ptr, layout }
    }

    fn addr(&self) -> u64 {
        self.ptr.expose_provenance() as u64
    }

    fn bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.layout.size()];
        // SAFETY: the whole allocation, owned by this test.
        unsafe { host::read(self.addr(), &mut v) };
        v
    }
}

impl Drop for HostPages {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

const SPAN: usize = 3 * PAGE as usize;

/// One step of a random run. Offsets are reduced modulo the span (or a
/// live region) when applied.
#[derive(Clone, Debug)]
enum Op {
    /// With `map`, cleaned at once, as the backend's map does (through
    /// `clean_unchanged` when the model may).
    Track {
        off: usize,
        len: usize,
        map: bool,
    },
    Untrack {
        pick: usize,
    },
    CpuWrite {
        off: usize,
        len: usize,
        byte: u8,
    },
    Clean {
        off: usize,
        len: usize,
    },
    Invalidate {
        off: usize,
        len: usize,
    },
    EvictRange {
        off: usize,
        len: usize,
    },
    Evict {
        off: usize,
    },
    DeviceRead {
        pick: usize,
        off: usize,
        len: usize,
    },
    DeviceWrite {
        pick: usize,
        off: usize,
        len: usize,
        byte: u8,
    },
    CpuModified {
        off: usize,
        len: usize,
    },
    NotInvalidated {
        off: usize,
        len: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let off = 0..SPAN;
    // Lengths favour whole pages and lines, the drivers' common case.
    let len = prop_oneof![1..300usize, Just(64usize), Just(4096usize), 1..SPAN];
    prop_oneof![
        3 => (0..SPAN / 64, prop_oneof![Just(64usize), Just(4096), Just(8192), 1..600usize], any::<bool>())
            .prop_map(|(l, len, map)| Op::Track { off: l * 64, len, map }),
        2 => (off.clone(), len.clone(), any::<bool>())
            .prop_map(|(off, len, map)| Op::Track { off, len, map }),
        2 => any::<usize>().prop_map(|pick| Op::Untrack { pick }),
        4 => (off.clone(), len.clone(), any::<u8>())
            .prop_map(|(off, len, byte)| Op::CpuWrite { off, len, byte }),
        3 => (off.clone(), len.clone()).prop_map(|(off, len)| Op::Clean { off, len }),
        3 => (off.clone(), len.clone()).prop_map(|(off, len)| Op::Invalidate { off, len }),
        1 => (off.clone(), len.clone()).prop_map(|(off, len)| Op::EvictRange { off, len }),
        3 => off.clone().prop_map(|off| Op::Evict { off }),
        3 => (any::<usize>(), any::<usize>(), len.clone())
            .prop_map(|(pick, off, len)| Op::DeviceRead { pick, off, len }),
        3 => (any::<usize>(), any::<usize>(), len.clone(), any::<u8>())
            .prop_map(|(pick, off, len, byte)| Op::DeviceWrite { pick, off, len, byte }),
        2 => (off.clone(), len.clone()).prop_map(|(off, len)| Op::CpuModified { off, len }),
        1 => (off, len).prop_map(|(off, len)| Op::NotInvalidated { off, len }),
    ]
}

/// Clamps `[off, off + len)` to the span.
fn clamp(off: usize, len: usize) -> (u64, u64) {
    let off = off % SPAN;
    (off as u64, len.min(SPAN - off).max(1) as u64)
}

/// Runs `ops` on the bitmap model and on the reference model, each over its
/// own copy of host memory, and checks they agree on every answer and on
/// every host byte after every step.
fn differential(line: usize, ops: &[Op]) {
    let (mine, theirs) = (HostPages::new(SPAN), HostPages::new(SPAN));
    let (m0, t0) = (mine.addr(), theirs.addr());
    let mut model = Shadow::new(line);
    let mut oracle = reference::Shadow::new(line);
    let mut live: Vec<(u64, u64)> = Vec::new();
    let line = line as u64;
    for (step, op) in ops.iter().enumerate() {
        let what = format!("step {step}: {op:?}");
        match *op {
            Op::Track { off, len, map } => {
                if live.len() >= 8 {
                    continue;
                }
                let (o, n) = clamp(off, len);
                live.push((o, n));
                // SAFETY: inside the test's own allocations.
                let filled = unsafe {
                    oracle.track(t0 + o, n);
                    model.track(m0 + o, m0 + o, n)
                };
                if map {
                    // SAFETY: the oracle's copy lies inside the test's own allocation.
                    let b = unsafe { oracle.clean(t0 + o, n) };
                    let a = if filled {
                        model.clean_unchanged(m0 + o, n)
                    } else {
                        // SAFETY: the model's range lies inside the test's own allocation.
                        unsafe { model.clean(m0 + o, n) }
                    };
                    assert_eq!(rel(a, m0), rel(b, t0), "{what}");
                }
            }
            Op::Untrack { pick } => {
                if live.is_empty() {
                    continue;
                }
                let (o, n) = live.swap_remove(pick % live.len());
                // What the other regions still cover of line `l` (relative).
                let still = |l: u64| {
                    let mut mask = 0u128;
                    for &(ro, rn) in &live {
                        let (lo, hi) = (ro.max(l), (ro + rn).min(l + line));
                        if lo < hi {
                            mask |= bits((lo - l) as usize, (hi - l) as usize);
                        }
                    }
                    mask
                };
                model.untrack(m0 + o, n, |l| still(l - m0));
                oracle.untrack(t0 + o, n, |l| still(l - t0));
            }
            Op::CpuWrite { off, len, byte } => {
                let (o, n) = clamp(off, len);
                let data: Vec<u8> = (0..n).map(|i| byte.wrapping_add(i as u8)).collect();
                // SAFETY: the CPU writes its own memory.
                unsafe {
                    host::write(m0 + o, &data);
                    host::write(t0 + o, &data);
                }
            }
            Op::Clean { off, len } => {
                let (o, n) = clamp(off, len);
                // SAFETY: tracked bytes lie in the test's allocations.
                let (a, b) = unsafe { (model.clean(m0 + o, n), oracle.clean(t0 + o, n)) };
                assert_eq!(rel(a, m0), rel(b, t0), "{what}");
            }
            Op::Invalidate { off, len } => {
                let (o, n) = clamp(off, len);
                // SAFETY: tracked bytes lie in the test's allocations.
                let (a, b) = unsafe { (model.invalidate(m0 + o, n), oracle.invalidate(t0 + o, n)) };
                assert_eq!(rel(a, m0), rel(b, t0), "{what}");
            }
            Op::EvictRange { off, len } => {
                let (o, n) = clamp(off, len);
                // SAFETY: tracked bytes lie in the test's allocations.
                let (a, b) = unsafe {
                    (
                        model.clean_by_eviction(m0 + o, n),
                        oracle.clean_by_eviction(t0 + o, n),
                    )
                };
                assert_eq!(rel(a, m0), rel(b, t0), "{what}");
            }
            Op::Evict { off } => {
                let o = (off % SPAN) as u64;
                // SAFETY: the evicted line lies in the test's allocations.
                let (a, b) = unsafe { (model.evict(m0 + o), oracle.evict(t0 + o)) };
                assert_eq!(a, b, "{what}");
            }
            Op::DeviceRead { pick, off, len } | Op::DeviceWrite { pick, off, len, .. } => {
                if live.is_empty() {
                    continue;
                }
                let (ro, rn) = live[pick % live.len()];
                let o = ro + (off as u64 % rn);
                let n = (len as u64).min(ro + rn - o).max(1);
                for detect in [true, false] {
                    let (a, b) = if let Op::DeviceWrite { byte, .. } = *op {
                        let data: Vec<u8> = (0..n)
                            .map(|i| byte ^ (i as u8) ^ u8::from(detect))
                            .collect();
                        // SAFETY: inside a tracked region.
                        unsafe {
                            (
                                model.device_write(m0 + o, &data, detect),
                                oracle.device_write(t0 + o, &data, detect),
                            )
                        }
                    } else {
                        let (mut x, mut y) = (vec![0u8; n as usize], vec![0u8; n as usize]);
                        // SAFETY: inside a tracked region.
                        let r = unsafe {
                            (
                                model.device_read(m0 + o, &mut x, detect),
                                oracle.device_read(t0 + o, &mut y, detect),
                            )
                        };
                        assert_eq!(x, y, "{what}: the device read different RAM");
                        r
                    };
                    let expected = if detect {
                        rel_f(b, t0)
                    } else {
                        Finding::default()
                    };
                    assert_eq!(rel_f(a, m0), expected, "{what} (detect {detect})");
                }
            }
            Op::CpuModified { off, len } => {
                let (o, n) = clamp(off, len);
                // SAFETY: tracked bytes lie in the test's allocations.
                let (a, b) = unsafe {
                    (
                        model.cpu_modified(m0 + o, n),
                        oracle.cpu_modified(t0 + o, n),
                    )
                };
                assert_eq!(rel_f(a, m0), rel_f(b, t0), "{what}");
            }
            Op::NotInvalidated { off, len } => {
                let (o, n) = clamp(off, len);
                let (a, b) = (
                    model.not_invalidated(m0 + o, n),
                    oracle.not_invalidated(t0 + o, n),
                );
                assert_eq!(rel_f(a, m0), rel_f(b, t0), "{what}");
            }
        }
        assert_eq!(mine.bytes(), theirs.bytes(), "{what}: host memory differs");
        assert_eq!(model.pages(), oracle.pages(), "{what}");
        // RAM as the device sees it, over every live region.
        for &(o, n) in &live {
            let (mut x, mut y) = (vec![0u8; n as usize], vec![0u8; n as usize]);
            // SAFETY: live regions are tracked.
            unsafe {
                model.device_read(m0 + o, &mut x, false);
                oracle.device_read(t0 + o, &mut y, false);
            }
            assert_eq!(x, y, "{what}: RAM differs in region {o:#x}+{n:#x}");
        }
    }
    for (o, n) in live.drain(..) {
        model.untrack(m0 + o, n, |_| u128::MAX);
        oracle.untrack(t0 + o, n, |_| u128::MAX);
    }
}

/// A finding with its line relative to the buffer, so the two models'
/// buffers compare.
fn rel_f(f: Finding, base: u64) -> Finding {
    Finding {
        first: f.first.map(|a| a - base),
        count: f.count,
    }
}

fn rel(o: Outcome, base: u64) -> Outcome {
    Outcome {
        lines: o.lines,
        finding: rel_f(o.finding, base),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// The bitmap model answers, writes and reads exactly as the
    /// line-by-line reference does, for every line size.
    #[test]
    fn agrees_with_the_reference_model(
        line in prop_oneof![Just(32usize), Just(64), Just(128)],
        ops in proptest::collection::vec(op(), 1..48),
    ) {
        differential(line, &ops);
    }
}

/// The NVMe bench's pattern, page-sized and page-aligned, next to a
/// region sharing the page: whole-page reloads (which swap RAM and the
/// cache's copy) and partial ones (which copy).
#[test]
fn agrees_on_whole_page_transfers() {
    for line in [32, 64, 128] {
        for neighbour in [false, true] {
            let mut ops = vec![Op::Track {
                off: 4096,
                len: if neighbour { 2048 } else { 4096 },
                map: true,
            }];
            if neighbour {
                ops.push(Op::Track {
                    off: 6144,
                    len: 2048,
                    map: true,
                });
            }
            ops.extend([
                Op::CpuWrite {
                    off: 4100,
                    len: 9,
                    byte: 1,
                },
                Op::DeviceWrite {
                    pick: 0,
                    off: 0,
                    len: 4096,
                    byte: 2,
                },
                Op::Invalidate {
                    off: 4096,
                    len: 4096,
                },
                Op::CpuWrite {
                    off: 5000,
                    len: 3,
                    byte: 3,
                },
                Op::DeviceWrite {
                    pick: 0,
                    off: 64,
                    len: 100,
                    byte: 4,
                },
                Op::Evict { off: 5000 },
                Op::Invalidate {
                    off: 4096,
                    len: 2048,
                },
                Op::DeviceRead {
                    pick: 0,
                    off: 0,
                    len: 4096,
                },
                Op::CpuModified {
                    off: 4096,
                    len: 4096,
                },
                Op::Untrack { pick: 0 },
            ]);
            differential(line, &ops);
        }
    }
}
