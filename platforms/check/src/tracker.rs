//! The bookkeeping: every live mapping and allocation, and the rules that
//! compare a call against them. Pure data, no platform: `Checked` decides
//! what to forward from what this returns.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use dma_core::{
    CpuAccess, CpuOwned, DeviceConstraints, DmaAddr, DmaAttrs, DmaDirection, PhysAddr, RawMapping,
    SgEntry,
};

use crate::lines::{LineIndex, Span};
use crate::records::{Key, Lines, Live, Records};
use crate::report::{CpuSide, Field, Mapping, MappingKind, Operation, Report, SgSlot, SyncPoint};

/// How many ended records are kept to tell "already unmapped" from "never
/// mapped".
const HISTORY: usize = 64;

struct Table {
    entries: Vec<SgEntry>,
    dir: DmaDirection,
}

/// Everything the checker knows, behind its lock.
pub(crate) struct Tracker {
    next_id: u64,
    /// Live records by device address; several may share one (the same
    /// buffer mapped twice on a direct platform).
    live: Records,
    /// Scatter-gather tables by table id, as mapped.
    tables: BTreeMap<u64, Table>,
    /// The cache lines of device-writable streaming mappings.
    lines: LineIndex,
    history: History,
    pub(crate) reports: Vec<Report>,
    pub(crate) dropped_reports: usize,
}

/// The last [`HISTORY`] ended records, in a ring written in place: an
/// unmap stores one record, where a `VecDeque` moved one out and one in.
struct History {
    ring: Vec<Mapping>,
    /// Where the next record goes (the oldest once the ring is full).
    next: usize,
}

impl History {
    const fn new() -> Self {
        Self {
            ring: Vec::new(),
            next: 0,
        }
    }

    fn push(&mut self, m: Mapping) {
        match self.ring.get_mut(self.next) {
            Some(oldest) => *oldest = m,
            None => self.ring.push(m),
        }
        self.next = (self.next + 1) % HISTORY;
    }

    /// The records, newest first.
    fn newest_first(&self) -> impl Iterator<Item = &Mapping> {
        let (newer, older) = self.ring.split_at(self.next);
        newer.iter().rev().chain(older.iter().rev())
    }
}

/// What `Checked` forwards once a call has been checked.
pub(crate) enum Verdict<T> {
    /// Forward this (the recorded description).
    Forward(T),
    /// Do not forward: the call names no unambiguous live record.
    Refuse,
}

impl Tracker {
    pub(crate) const fn new() -> Self {
        Self {
            next_id: 1,
            live: Records::new(),
            tables: BTreeMap::new(),
            lines: LineIndex::new(),
            history: History::new(),
            reports: Vec::new(),
            dropped_reports: 0,
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Every live record, oldest first.
    pub(crate) fn live(&self) -> Vec<Mapping> {
        let mut all: Vec<Mapping> = self.live.values().map(|l| l.mapping).collect();
        all.sort_unstable_by_key(|m| m.id);
        all
    }

    // ---- recording -------------------------------------------------------

    /// Records a successful single map; returns the record.
    pub(crate) fn add_single(
        &mut self,
        raw: &RawMapping,
        line_size: usize,
        out: &mut Vec<Report>,
    ) -> Mapping {
        let mapping = Mapping {
            id: self.next_id(),
            kind: MappingKind::Single,
            cpu: CpuSide::Phys(raw.phys),
            dma: raw.dma,
            len: raw.len,
            dir: raw.dir,
            attrs: raw.attrs,
            sg: None,
        };
        self.insert_streaming(mapping, line_size, out);
        mapping
    }

    /// Records a successful `map_sg`, and checks its entries against the
    /// device's segment limits.
    pub(crate) fn add_table(
        &mut self,
        entries: &[SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
        constraints: &DeviceConstraints,
        line_size: usize,
        out: &mut Vec<Report>,
    ) {
        let count = entries.len();
        let mut table = 0;
        for (index, e) in entries.iter().enumerate() {
            let id = self.next_id();
            if index == 0 {
                table = id;
            }
            let mapping = Mapping {
                id,
                kind: MappingKind::Sg,
                cpu: CpuSide::Phys(e.phys),
                dma: e.dma,
                len: e.len,
                dir,
                attrs,
                sg: Some(SgSlot {
                    table,
                    index,
                    count,
                }),
            };
            // Linux's check_sg_segment: the device limits apply to what the
            // device is given, so they are checked on the mapped addresses.
            let max = constraints.max_segment_size();
            if e.len as u64 > max {
                out.push(Report::SegmentTooLong { mapping, max });
            }
            if let Some(boundary) = constraints.boundary() {
                if constraints.crosses_boundary(e.dma, e.len as u64) {
                    out.push(Report::SegmentCrossesBoundary { mapping, boundary });
                }
            }
            self.insert_streaming(mapping, line_size, out);
        }
        if count > 0 {
            self.tables.insert(
                table,
                Table {
                    entries: entries.to_vec(),
                    dir,
                },
            );
        }
    }

    /// Records a coherent allocation.
    pub(crate) fn add_coherent(&mut self, cpu: usize, dma: DmaAddr, size: usize, attrs: DmaAttrs) {
        let mapping = Mapping {
            id: self.next_id(),
            kind: MappingKind::Coherent,
            cpu: CpuSide::Virt(cpu),
            dma,
            len: size,
            dir: DmaDirection::Bidirectional,
            attrs,
            sg: None,
        };
        self.live.insert(Live {
            mapping,
            lines: Lines::NONE,
            cpu_owned: CpuOwned::default(),
        });
    }

    fn insert_streaming(&mut self, mapping: Mapping, line_size: usize, out: &mut Vec<Report>) {
        let lines = self.track_lines(&mapping, line_size, out);
        self.live.insert(Live {
            mapping,
            lines: Lines::new(lines),
            cpu_owned: CpuOwned::default(),
        });
    }

    /// Linux's active-cacheline tracking: only mappings the device may
    /// write are tracked (two readers of one line are harmless), and
    /// `SKIP_CPU_SYNC` mappings are exempt because the driver syncs exactly
    /// what it means to.
    fn track_lines(
        &mut self,
        m: &Mapping,
        line_size: usize,
        out: &mut Vec<Report>,
    ) -> Option<(u64, u64)> {
        let CpuSide::Phys(phys) = m.cpu else {
            return None;
        };
        if !m.dir.device_writes() || m.attrs.contains(DmaAttrs::SKIP_CPU_SYNC) || m.len == 0 {
            return None;
        }
        let ls = line_size.max(1) as u64;
        let first = line_of(phys.as_u64(), ls);
        let last = line_of(phys.as_u64().checked_add(m.len as u64 - 1)?, ls);
        if let Some(clash) = self.lines.track(line_span(m, first, last)) {
            if let Some(existing) = self.live.get((clash.dma, clash.id)).map(|l| l.mapping) {
                out.push(Report::CacheLineOverlap {
                    mapping: *m,
                    existing,
                    line: PhysAddr::new(clash.first.max(first) * ls),
                    line_size: ls as usize,
                });
            }
        }
        Some((first, last))
    }

    // ---- lookup and removal ---------------------------------------------

    /// The live record at `dma` that best matches, like Linux's
    /// `bucket_find_exact`: a full match first, then one with the same
    /// kind and CPU side, then the oldest.
    fn find(
        &self,
        dma: DmaAddr,
        kind: MappingKind,
        cpu: CpuSide,
        len: usize,
    ) -> Option<(Key, Mapping)> {
        let at = best_match(
            || self.live.at(dma.as_u64()).map(|(_, l)| l),
            kind,
            cpu,
            len,
        )?;
        self.live
            .at(dma.as_u64())
            .nth(at)
            .map(|(k, l)| (k, l.mapping))
    }

    fn remove(&mut self, key: Key) -> Option<Mapping> {
        let live = self.live.remove(key)?;
        retire(&mut self.lines, &mut self.history, &live);
        Some(live.mapping)
    }

    fn not_mapped(&self, op: Operation, dma: DmaAddr, len: usize) -> Report {
        let previous = self.history.newest_first().find(|m| m.dma == dma).copied();
        Report::NotMapped {
            op,
            dma,
            len,
            previous,
        }
    }

    // ---- checks --------------------------------------------------------

    /// Checks an `unmap`; on `Forward` the record is gone and the recorded
    /// mapping is what the platform must be given.
    pub(crate) fn unmap(
        &mut self,
        given: &RawMapping,
        out: &mut Vec<Report>,
    ) -> Verdict<RawMapping> {
        let op = Operation::Unmap;
        let cpu = CpuSide::Phys(given.phys);
        // One probe finds the record and, when the checks pass, removes it.
        let Some(slot) = self.live.slot(given.dma.as_u64()) else {
            out.push(self.not_mapped(op, given.dma, given.len));
            return Verdict::Refuse;
        };
        // A bucket is never empty, so there is always a best match.
        // With one record there (the usual case) it is the best match.
        let at = if slot.is_single() {
            0
        } else {
            best_match(|| slot.iter(), MappingKind::Single, cpu, given.len).unwrap_or(0)
        };
        let Some(live) = slot.iter().nth(at) else {
            out.push(self.not_mapped(op, given.dma, given.len));
            return Verdict::Refuse;
        };
        // Checked in place: the record is copied only into a report.
        let m = &live.mapping;
        if m.kind != MappingKind::Single {
            out.push(Report::Mismatch {
                op,
                mapping: *m,
                field: Field::Kind(MappingKind::Single),
            });
            return Verdict::Refuse;
        }
        if m.cpu != cpu {
            out.push(Report::Mismatch {
                op,
                mapping: *m,
                field: Field::Phys(given.phys),
            });
            return Verdict::Refuse;
        }
        describe_mismatches(op, m, given.len, given.dir, out);
        let (dma, len, dir) = (m.dma, m.len, m.dir);
        let pos = slot.remove_at(at);
        let Self {
            live,
            lines,
            history,
            ..
        } = self;
        live.vacate(pos, |l| retire(lines, history, l));
        Verdict::Forward(RawMapping {
            phys: given.phys,
            dma,
            len,
            dir,
            // Attributes may legitimately differ at unmap (SKIP_CPU_SYNC).
            attrs: given.attrs,
        })
    }

    /// Finds the table whose first entry `first` names, reporting when it
    /// cannot be identified.
    fn find_table(&self, op: Operation, first: &SgEntry, out: &mut Vec<Report>) -> Option<Mapping> {
        let cpu = CpuSide::Phys(first.phys);
        let Some((_, m)) = self.find(first.dma, MappingKind::Sg, cpu, first.len) else {
            out.push(self.not_mapped(op, first.dma, first.len));
            return None;
        };
        if m.kind != MappingKind::Sg {
            out.push(Report::Mismatch {
                op,
                mapping: m,
                field: Field::Kind(MappingKind::Sg),
            });
            return None;
        }
        if m.cpu != cpu {
            out.push(Report::Mismatch {
                op,
                mapping: m,
                field: Field::Phys(first.phys),
            });
            return None;
        }
        Some(m)
    }

    /// Checks an `unmap_sg`; on `Forward` the whole recorded table is gone
    /// and is what the platform must be given.
    pub(crate) fn unmap_sg(
        &mut self,
        entries: &[SgEntry],
        dir: DmaDirection,
        out: &mut Vec<Report>,
    ) -> Verdict<(Vec<SgEntry>, DmaDirection)> {
        let op = Operation::UnmapSg;
        let Some(first) = entries.first() else {
            return Verdict::Forward((Vec::new(), dir));
        };
        let Some(head) = self.find_table(op, first, out) else {
            return Verdict::Refuse;
        };
        let slot = head.sg.expect("sg records carry their slot");
        let Some(table) = self.tables.remove(&slot.table) else {
            return Verdict::Refuse;
        };
        if entries.len() != slot.count {
            out.push(Report::Mismatch {
                op,
                mapping: head,
                field: Field::SgCount(entries.len()),
            });
        }
        if dir != table.dir {
            out.push(Report::Mismatch {
                op,
                mapping: head,
                field: Field::Direction(dir),
            });
        }
        let mut ended = Vec::with_capacity(table.entries.len());
        for (index, e) in table.entries.iter().enumerate() {
            let key = self
                .live
                .at(e.dma.as_u64())
                .find(|(_, l)| {
                    l.mapping
                        .sg
                        .is_some_and(|s| s.table == slot.table && s.index == index)
                })
                .map(|(k, _)| k);
            if let Some(m) = key.and_then(|k| self.remove(k)) {
                ended.push(m);
            }
        }
        for (given, m) in entries.iter().zip(&ended) {
            if given.len != m.len {
                out.push(Report::Mismatch {
                    op,
                    mapping: *m,
                    field: Field::Size(given.len),
                });
            }
        }
        Verdict::Forward((table.entries, table.dir))
    }

    /// Checks a sync; on `Forward` the recorded mapping is what the
    /// platform must be given (the range was checked against it).
    pub(crate) fn sync(
        &mut self,
        point: SyncPoint,
        given: &RawMapping,
        offset: usize,
        len: usize,
        out: &mut Vec<Report>,
    ) -> Verdict<RawMapping> {
        let op = sync_operation(point);
        let cpu = CpuSide::Phys(given.phys);
        // A sync takes any streaming record, single or sg.
        let found = self.live.find_mut(given.dma.as_u64(), |l| {
            l.mapping.kind != MappingKind::Coherent && l.mapping.cpu == cpu
        });
        let Some(live) = found else {
            out.push(self.not_mapped(op, given.dma, given.len));
            return Verdict::Refuse;
        };
        let m = &live.mapping;
        if m.kind == MappingKind::Coherent {
            out.push(Report::Mismatch {
                op,
                mapping: *m,
                field: Field::Kind(MappingKind::Single),
            });
            return Verdict::Refuse;
        }
        if m.cpu != cpu {
            out.push(Report::Mismatch {
                op,
                mapping: *m,
                field: Field::Phys(given.phys),
            });
            return Verdict::Refuse;
        }
        if given.len != m.len {
            out.push(Report::Mismatch {
                op,
                mapping: *m,
                field: Field::Size(given.len),
            });
        }
        check_sync_direction(point, m, given.dir, out);
        if offset.checked_add(len).is_none_or(|end| end > m.len) {
            out.push(Report::SyncOutOfRange {
                op,
                mapping: *m,
                offset,
                len,
            });
            // The platform's contract forbids it: maintenance or a bounce
            // copy there would touch memory the caller does not own.
            return Verdict::Refuse;
        }
        // Direction reports are warnings, as in Linux: the platform alone
        // would have synced, so the recorded mapping is synced (a
        // `sync_for_device` of a from-device buffer is how a driver hands
        // it back after reading it).
        let (lo, hi) = (offset as u64, (offset + len) as u64);
        match point {
            SyncPoint::ForCpu => live.cpu_owned.take(lo, hi),
            SyncPoint::ForDevice => live.cpu_owned.give(lo, hi),
        }
        Verdict::Forward(RawMapping {
            phys: given.phys,
            dma: m.dma,
            len: m.len,
            dir: m.dir,
            attrs: m.attrs,
        })
    }

    /// Checks a CPU access through the safe accessors: every byte must be
    /// the CPU's, for a mapping the device writes (a `ToDevice` one is
    /// written by the CPU between transfers, with `sync_for_device` after).
    /// Linux's dma-debug sees no CPU accesses and cannot check this.
    pub(crate) fn cpu_access(
        &self,
        given: &RawMapping,
        offset: usize,
        len: usize,
        access: CpuAccess,
        out: &mut Vec<Report>,
    ) {
        let cpu = CpuSide::Phys(given.phys);
        let Some(live) = self
            .live
            .at(given.dma.as_u64())
            .map(|(_, l)| l)
            .find(|l| l.mapping.kind != MappingKind::Coherent && l.mapping.cpu == cpu)
        else {
            return;
        };
        if !live.mapping.dir.device_writes() || len == 0 {
            return;
        }
        let (lo, hi) = (offset as u64, (offset + len) as u64);
        if let Some(first) = live.cpu_owned.first_not_owned(lo, hi) {
            out.push(Report::CpuAccessDeviceOwned {
                mapping: live.mapping,
                access,
                offset: first as usize,
                len: (hi - first) as usize,
            });
        }
    }

    /// Checks the entry count of an sg sync against the table's.
    pub(crate) fn sync_sg_count(
        &self,
        point: SyncPoint,
        entries: &[SgEntry],
        out: &mut Vec<Report>,
    ) {
        let op = sync_operation(point);
        let Some(first) = entries.first() else {
            return;
        };
        // An unidentifiable table is reported entry by entry by the syncs.
        let mut quiet = Vec::new();
        if let Some(head) = self.find_table(op, first, &mut quiet) {
            let count = head.sg.map_or(0, |s| s.count);
            if entries.len() != count {
                out.push(Report::Mismatch {
                    op,
                    mapping: head,
                    field: Field::SgCount(entries.len()),
                });
            }
        }
    }

    /// Checks a coherent free; on `Forward` the record is gone and the
    /// recorded region and attributes are what the platform must be given.
    pub(crate) fn free_coherent(
        &mut self,
        cpu: usize,
        dma: DmaAddr,
        size: usize,
        attrs: DmaAttrs,
        out: &mut Vec<Report>,
    ) -> Verdict<Mapping> {
        let op = Operation::FreeCoherent;
        let side = CpuSide::Virt(cpu);
        let Some((key, m)) = self.find(dma, MappingKind::Coherent, side, size) else {
            out.push(self.not_mapped(op, dma, size));
            return Verdict::Refuse;
        };
        if m.kind != MappingKind::Coherent {
            out.push(Report::Mismatch {
                op,
                mapping: m,
                field: Field::Kind(MappingKind::Coherent),
            });
            return Verdict::Refuse;
        }
        if m.cpu != side {
            out.push(Report::Mismatch {
                op,
                mapping: m,
                field: Field::CpuAddress(cpu),
            });
            return Verdict::Refuse;
        }
        if size != m.len {
            out.push(Report::Mismatch {
                op,
                mapping: m,
                field: Field::Size(size),
            });
        }
        if attrs != m.attrs {
            out.push(Report::Mismatch {
                op,
                mapping: m,
                field: Field::Attrs(attrs),
            });
        }
        self.remove(key);
        Verdict::Forward(m)
    }

    /// Ends tracking of everything live, returning a leak report for each.
    pub(crate) fn release(&mut self, out: &mut Vec<Report>) {
        for mapping in self.live() {
            out.push(Report::Leak { mapping });
        }
        self.live.clear();
        self.tables.clear();
        self.lines.clear();
    }
}

/// Forgets a removed record's cache lines and keeps it in the history.
#[inline]
fn retire(lines: &mut LineIndex, history: &mut History, live: &Live) {
    if let Some((first, last)) = live.lines.get() {
        lines.remove(line_span(&live.mapping, first, last));
    }
    history.push(live.mapping);
}

/// The position among `candidates` (oldest first) of the best match, like
/// Linux's `bucket_find_exact`: a full match first, then one with the same
/// kind and CPU side, then the oldest.
fn best_match<'a, I: Iterator<Item = &'a Live>>(
    candidates: impl Fn() -> I,
    kind: MappingKind,
    cpu: CpuSide,
    len: usize,
) -> Option<usize> {
    let same = |l: &Live| l.mapping.kind == kind && l.mapping.cpu == cpu;
    candidates()
        .position(|l| same(l) && l.mapping.len == len)
        .or_else(|| candidates().position(same))
        .or_else(|| candidates().next().map(|_| 0))
}

/// The line `addr` lies in: a shift for the usual power-of-two line size
/// (a 64-bit division costs tens of cycles on every map), else a division.
fn line_of(addr: u64, line_size: u64) -> u64 {
    if line_size.is_power_of_two() {
        addr >> line_size.trailing_zeros()
    } else {
        addr / line_size
    }
}

fn line_span(m: &Mapping, first: u64, last: u64) -> Span {
    Span {
        first,
        last,
        id: m.id,
        dma: m.dma.as_u64(),
    }
}

fn sync_operation(point: SyncPoint) -> Operation {
    match point {
        SyncPoint::ForCpu => Operation::SyncForCpu,
        SyncPoint::ForDevice => Operation::SyncForDevice,
    }
}

/// Linux's `check_sync` direction rules (kernel/dma/debug.c): any sync of a
/// bidirectional mapping, and any sync naming the mapped direction, is
/// fine, `sync_for_cpu` of a to-device mapping and `sync_for_device` of a
/// from-device one included. Otherwise the direction differs, and it is
/// also a sync for the CPU of memory the device only reads, or for the
/// device of memory the device only writes, when the direction named
/// does not make it one.
fn check_sync_direction(point: SyncPoint, m: &Mapping, dir: DmaDirection, out: &mut Vec<Report>) {
    use DmaDirection::{Bidirectional, FromDevice, ToDevice};
    if m.dir == Bidirectional || dir == m.dir {
        return;
    }
    out.push(Report::Mismatch {
        op: sync_operation(point),
        mapping: *m,
        field: Field::Direction(dir),
    });
    let wrong = match point {
        SyncPoint::ForCpu => m.dir != FromDevice && dir != ToDevice,
        SyncPoint::ForDevice => m.dir != ToDevice && dir != FromDevice,
    };
    if wrong {
        out.push(Report::SyncWrongDirection {
            mapping: *m,
            sync: point,
        });
    }
}

fn describe_mismatches(
    op: Operation,
    m: &Mapping,
    len: usize,
    dir: DmaDirection,
    out: &mut Vec<Report>,
) {
    if len != m.len {
        out.push(Report::Mismatch {
            op,
            mapping: *m,
            field: Field::Size(len),
        });
    }
    if dir != m.dir {
        out.push(Report::Mismatch {
            op,
            mapping: *m,
            field: Field::Direction(dir),
        });
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use dma_core::{DmaAddr, DmaAttrs, DmaDirection, PhysAddr};

    use super::{History, HISTORY};
    use crate::report::{CpuSide, Mapping, MappingKind};

    fn ended(id: u64) -> Mapping {
        Mapping {
            id,
            kind: MappingKind::Single,
            cpu: CpuSide::Phys(PhysAddr::new(id * 4096)),
            dma: DmaAddr::new(id % 3),
            len: 4096,
            dir: DmaDirection::ToDevice,
            attrs: DmaAttrs::empty(),
            sg: None,
        }
    }

    /// The ring keeps the last `HISTORY` records, newest first, at every
    /// fill level: before it is full, full, and wrapped more than once.
    #[test]
    fn history_keeps_the_newest_records_newest_first() {
        let mut history = History::new();
        assert_eq!(history.newest_first().count(), 0);
        for pushed in 1..=(2 * HISTORY as u64 + 5) {
            history.push(ended(pushed));
            let ids: Vec<u64> = history.newest_first().map(|m| m.id).collect();
            let oldest = pushed.saturating_sub(HISTORY as u64) + 1;
            let want: Vec<u64> = (oldest..=pushed).rev().collect();
            assert_eq!(ids, want, "after {pushed} records");
        }
        // What `not_mapped` asks: the newest ended record at an address.
        // The last pushed is 2 * HISTORY + 5 (at 133 % 3 == 1); the newest
        // at address 2 is two before it.
        let newest_at_2 = history.newest_first().find(|m| m.dma == DmaAddr::new(2));
        assert_eq!(newest_at_2.map(|m| m.id), Some(2 * HISTORY as u64 + 3));
    }
}
