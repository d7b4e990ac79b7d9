//! Finished reservations kept for the retention, in compact form. A finished order leaves
//! its 112-byte slot (the next reservation reuses it at once) for a record of its id, lines,
//! times and status, appended to 64 KiB chunks in the order orders finish: a
//! typical record is 48-88 bytes, and the slab of live slots stays as small as the live set.
//! Pruning marks records dead; a chunk whose records are all dead is freed (a few are kept
//! for reuse, so a ledger past its first day of retention takes no fresh memory).
//!
//! The stream of records is also the retention queue: records come in finish order while the
//! wall clock moves forward, so a pruning pass walks from the oldest one until it meets one
//! not past the cutoff. A step back of the clock starts a new run of the stream, and a pass
//! walks every run, so it takes exactly the records past the cutoff whatever the clock did
//! (`aging.rs` does the same for idempotency keys; see there why exactness matters).
//! Beyond `MAX_RETENTION_RUNS` steps back, a late record is filed under the newest time (kept
//! longer, never shorter) and carries that time in an 8-byte trailer.
//!
//! Record (little endian, padded to 8 bytes): tag u32 (the index's, for pruning), status u8
//! (bit 7 set once dead), id length u8, line count u8, flags u8 (bit 0: a trailer follows),
//! created_at u64, finished_at u64, ttl_ms u32, then per line cell u32 and qty u32, the id
//! bytes, and the filing time u64 when the flag says so.

use std::collections::VecDeque;

use crate::aging::filing;
use crate::limits::{MAX_KEY_BYTES, MAX_LINES};
use crate::order::{HeldLine, Lines, Order};
use crate::time::Millis;
use crate::types::Status;

/// Records are appended to chunks of this size.
const CHUNK_BYTES: usize = 64 << 10;
const ALIGN: usize = 8;
/// A handle names a record by its chunk's number (low bits) and its offset in 8-byte units.
const OFFSET_BITS: u32 = CHUNK_BYTES.trailing_zeros() - ALIGN.trailing_zeros();
const SEQ_BITS: u32 = 31 - OFFSET_BITS;
/// Chunks a store spans at most, from its oldest held chunk to its newest: handles name a
/// chunk by the low `SEQ_BITS` of its number (16 GiB of records per shard).
pub(crate) const MAX_CHUNKS: usize = 1 << SEQ_BITS;
/// The index's values with this bit set are record handles; below it, live slots.
pub(crate) const RECORD_BIT: u32 = 1 << 31;
const HEADER_BYTES: usize = 28;
const LINE_BYTES: usize = 8;
const TRAILER_BYTES: usize = 8;
/// The largest record: the most lines, the longest order id, a trailer.
pub(crate) const MAX_RECORD_BYTES: usize =
    (HEADER_BYTES + MAX_LINES * LINE_BYTES + MAX_KEY_BYTES + TRAILER_BYTES).next_multiple_of(ALIGN);
const DEAD: u8 = 0x80;
const FILED_LATER: u8 = 1;
/// Emptied chunks kept for the next ones, at most.
const SPARE_CHUNKS: usize = 2;

const _: () = assert!(OFFSET_BITS + SEQ_BITS == 31 && CHUNK_BYTES.is_power_of_two());
const _: () = assert!(MAX_RECORD_BYTES <= CHUNK_BYTES);
const _: () = assert!(MAX_LINES <= u8::MAX as usize);
const _: () = assert!(MAX_KEY_BYTES <= u8::MAX as usize);

/// Where a record is: its chunk's number times `CHUNK_BYTES` plus its offset. Numbers are
/// never reused, so a stale position finds nothing rather than another record.
pub(crate) type RecordAt = u64;

/// The index handle of the record at `at`.
#[inline]
pub(crate) fn handle_of(at: RecordAt) -> u32 {
    let seq = (at / CHUNK_BYTES as u64) as u32 & (MAX_CHUNKS as u32 - 1);
    let offset = (at % CHUNK_BYTES as u64) as u32 / ALIGN as u32;
    RECORD_BIT | (seq << OFFSET_BITS) | offset
}

#[inline]
pub(crate) fn is_record(handle: u32) -> bool {
    handle & RECORD_BIT != 0
}

fn encoded_len(id: &str, lines: usize, trailer: bool) -> usize {
    let trailer = if trailer { TRAILER_BYTES } else { 0 };
    (HEADER_BYTES + lines * LINE_BYTES + id.len() + trailer).next_multiple_of(ALIGN)
}

/// A stretch of the record stream filed in time order.
struct Run {
    /// Where the next pass starts: every record before it is gone.
    front: RecordAt,
    /// Where the run ends (exclusive) once a newer run started; `None` for the newest run.
    end: Option<RecordAt>,
    /// The latest filing time in the run.
    newest: Millis,
}

struct Chunk {
    /// Allocated at `CHUNK_BYTES` and never grown: records never move.
    bytes: Vec<u8>,
    /// Records not yet dead.
    live: u32,
}

#[derive(Default)]
pub(crate) struct Retained {
    /// Chunk `first_seq + i` at `i`; `None` once freed (the front is trimmed).
    chunks: VecDeque<Option<Chunk>>,
    first_seq: u64,
    spare: Vec<Vec<u8>>,
    len: usize,
    /// At most `MAX_RETENTION_RUNS`, oldest first.
    runs: VecDeque<Run>,
    /// A smaller span than `MAX_CHUNKS / 2` past which `is_nearly_full` holds, so tests
    /// reach it without gigabytes of records.
    #[cfg(test)]
    pub(crate) span_limit: Option<usize>,
}

impl Retained {
    /// Records not dead.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The position of an indexed handle (valid while its record is alive).
    #[inline]
    pub(crate) fn at_of(&self, handle: u32) -> RecordAt {
        debug_assert!(is_record(handle));
        let low = u64::from(handle >> OFFSET_BITS) & (MAX_CHUNKS as u64 - 1);
        let seq = self.first_seq + (low.wrapping_sub(self.first_seq) & (MAX_CHUNKS as u64 - 1));
        let offset = u64::from(handle & ((1 << OFFSET_BITS) - 1)) * ALIGN as u64;
        seq * CHUNK_BYTES as u64 + offset
    }

    /// The record at `at`, if it is alive.
    #[inline]
    pub(crate) fn get(&self, at: RecordAt) -> Option<Record<'_>> {
        let seq = at / CHUNK_BYTES as u64;
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        let chunk = self.chunks.get(i)?.as_ref()?;
        let bytes = chunk.bytes.get((at % CHUNK_BYTES as u64) as usize..)?;
        let record = Record::parse(bytes)?;
        (!record.dead()).then_some(record)
    }

    /// The alive record of an indexed handle.
    #[inline]
    pub(crate) fn indexed(&self, handle: u32) -> Record<'_> {
        match self.get(self.at_of(handle)) {
            Some(r) => r,
            None => panic!("index handle {handle:#x} names no live record"),
        }
    }

    /// Appends a finished order's record.
    pub(crate) fn push(&mut self, tag: u32, id: &str, order: &Order) -> RecordAt {
        assert!(
            order.status.is_finished(),
            "only finished orders are retained"
        );
        assert!(id.len() <= MAX_KEY_BYTES && order.lines.len() <= MAX_LINES);
        let filed_at = self.filing_time(order.finished_at);
        let late = filed_at != order.finished_at;
        let n = encoded_len(id, order.lines.len(), late);
        let fits = matches!(self.chunks.back(), Some(Some(c)) if c.bytes.len() + n <= CHUNK_BYTES);
        if !fits {
            self.open_chunk();
        }
        let seq = self.first_seq + self.chunks.len() as u64 - 1;
        let Some(Some(chunk)) = self.chunks.back_mut() else {
            unreachable!("open_chunk leaves an open chunk at the back");
        };
        let at = seq * CHUNK_BYTES as u64 + chunk.bytes.len() as u64;
        let b = &mut chunk.bytes;
        let start = b.len();
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&[
            order.status.to_u8(),
            id.len() as u8,
            order.lines.len() as u8,
            if late { FILED_LATER } else { 0 },
        ]);
        b.extend_from_slice(&order.created_at.to_le_bytes());
        b.extend_from_slice(&order.finished_at.to_le_bytes());
        b.extend_from_slice(&order.ttl_ms.to_le_bytes());
        for l in &order.lines {
            b.extend_from_slice(&l.cell.to_le_bytes());
            b.extend_from_slice(&l.qty.to_le_bytes());
        }
        b.extend_from_slice(id.as_bytes());
        if late {
            b.extend_from_slice(&filed_at.to_le_bytes());
        }
        b.resize(start + n, 0);
        debug_assert!(b.len() <= CHUNK_BYTES && b.capacity() == CHUNK_BYTES);
        chunk.live += 1;
        self.len += 1;
        at
    }

    /// The time a record finished at `at` is filed under; starts a new run when the clock
    /// stepped back (and runs are left).
    fn filing_time(&mut self, at: Millis) -> Millis {
        let newest = self.runs.back().map(|run| run.newest);
        let (at, new_run) = filing(newest, self.runs.len(), at);
        if new_run {
            let end = self.end();
            if let Some(run) = self.runs.back_mut() {
                run.end = Some(end);
            }
            self.runs.push_back(Run {
                front: end,
                end: None,
                newest: at,
            });
        } else if let Some(run) = self.runs.back_mut() {
            run.newest = at;
        }
        at
    }

    /// Where the next record would go (or, past a full chunk, before it).
    fn end(&self) -> RecordAt {
        let next = self.first_seq + self.chunks.len() as u64;
        match self.chunks.back() {
            Some(Some(c)) => (next - 1) * CHUNK_BYTES as u64 + c.bytes.len() as u64,
            _ => next * CHUNK_BYTES as u64,
        }
    }

    /// The first record at or after `at` (dead or alive), skipping freed chunks and the
    /// unused tails of full ones; `None` past the last record.
    fn next_from(&self, mut at: RecordAt) -> Option<(RecordAt, Record<'_>)> {
        let end = self.end();
        while at < end {
            let seq = (at / CHUNK_BYTES as u64).max(self.first_seq);
            at = at.max(seq * CHUNK_BYTES as u64);
            let chunk = self.chunks.get((seq - self.first_seq) as usize);
            let offset = (at % CHUNK_BYTES as u64) as usize;
            match chunk.and_then(|c| Record::parse(c.as_ref()?.bytes.get(offset..)?)) {
                Some(record) => return Some((at, record)),
                None => at = (seq + 1) * CHUNK_BYTES as u64,
            }
        }
        None
    }

    /// Takes every record filed before `cutoff`, handing each alive one's tag and handle to
    /// `forget` (the index) before it dies; returns how many died.
    pub(crate) fn prune(&mut self, cutoff: Millis, mut forget: impl FnMut(u32, u32)) -> usize {
        let mut pruned = 0;
        for r in 0..self.runs.len() {
            let (mut front, end) = (self.runs[r].front, self.runs[r].end);
            while let Some((at, r)) = self.next_from(front) {
                let (len, dead, tag, filed_at) = (r.len(), r.dead(), r.tag(), r.filed_at());
                if end.is_some_and(|end| at >= end) || filed_at >= cutoff {
                    front = at;
                    break;
                }
                front = at + len as u64;
                if !dead {
                    forget(tag, handle_of(at));
                    self.kill(at);
                    pruned += 1;
                }
            }
            self.runs[r].front = front.max(self.runs[r].front);
        }
        // Runs walked to their end go, except the newest, which takes the pushes.
        let stream_end = self.end();
        let newest = self.runs.len().saturating_sub(1);
        let mut i = 0;
        self.runs.retain(|run| {
            let done = run.front >= run.end.unwrap_or(stream_end);
            i += 1;
            !done || i - 1 == newest
        });
        pruned
    }

    fn open_chunk(&mut self) {
        if let Some(Some(c)) = self.chunks.back() {
            if c.live == 0 {
                self.free(self.chunks.len() - 1);
            }
        }
        // The span bound keeps handles unambiguous; `Orders` refuses new reservations
        // long before (see `Retained::is_nearly_full`).
        assert!(
            self.chunks.len() < MAX_CHUNKS,
            "retained records span too many chunks"
        );
        let bytes = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_BYTES));
        self.chunks.push_back(Some(Chunk { bytes, live: 0 }));
    }

    /// Whether the span of chunks is past half of what handles can name: new reservations
    /// are refused then, so the live ones can always finish into a record.
    pub(crate) fn is_nearly_full(&self) -> bool {
        #[cfg(test)]
        if let Some(limit) = self.span_limit {
            return self.chunks.len() >= limit;
        }
        self.chunks.len() >= MAX_CHUNKS / 2
    }

    /// Marks the record at `at` dead (pruned, or replaced by a new order of its id).
    pub(crate) fn kill(&mut self, at: RecordAt) {
        let seq = at / CHUNK_BYTES as u64;
        let i = (seq - self.first_seq) as usize;
        let last = self.chunks.len() - 1;
        let Some(Some(chunk)) = self.chunks.get_mut(i) else {
            panic!("killing a record of a freed chunk");
        };
        let status = &mut chunk.bytes[(at % CHUNK_BYTES as u64) as usize + 4];
        assert_eq!(*status & DEAD, 0, "killing a dead record");
        *status |= DEAD;
        chunk.live -= 1;
        self.len -= 1;
        if chunk.live == 0 && i != last {
            self.free(i);
        }
    }

    fn free(&mut self, i: usize) {
        if let Some(mut chunk) = self.chunks[i].take() {
            if self.spare.len() < SPARE_CHUNKS {
                chunk.bytes.clear();
                self.spare.push(chunk.bytes);
            }
        }
        while matches!(self.chunks.front(), Some(None)) {
            self.chunks.pop_front();
            self.first_seq += 1;
        }
    }

    /// Every alive record with its position, oldest chunk first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (RecordAt, Record<'_>)> {
        let mut next = self.first_seq * CHUNK_BYTES as u64;
        std::iter::from_fn(move || {
            let (at, record) = self.next_from(next)?;
            next = at + record.len() as u64;
            Some((at, record))
        })
        .filter(|(_, r)| !r.dead())
    }
}

/// One record, read in place.
#[derive(Clone, Copy)]
pub(crate) struct Record<'a> {
    bytes: &'a [u8],
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

impl<'a> Record<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Record<'a>> {
        let head = bytes.get(..HEADER_BYTES)?;
        let trailer = if head[7] & FILED_LATER != 0 {
            TRAILER_BYTES
        } else {
            0
        };
        let n = HEADER_BYTES + usize::from(head[6]) * LINE_BYTES + usize::from(head[5]) + trailer;
        bytes
            .get(..n.next_multiple_of(ALIGN))
            .map(|bytes| Record { bytes })
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn dead(&self) -> bool {
        self.bytes[4] & DEAD != 0
    }

    /// The time the record is filed under for the retention.
    fn filed_at(&self) -> Millis {
        if self.bytes[7] & FILED_LATER != 0 {
            u64_at(self.bytes, self.lines_end() + usize::from(self.bytes[5]))
        } else {
            self.finished_at()
        }
    }

    pub(crate) fn tag(&self) -> u32 {
        u32_at(self.bytes, 0)
    }

    fn lines_end(&self) -> usize {
        HEADER_BYTES + usize::from(self.bytes[6]) * LINE_BYTES
    }

    #[inline]
    pub(crate) fn id_bytes(&self) -> &'a [u8] {
        let start = self.lines_end();
        &self.bytes[start..start + usize::from(self.bytes[5])]
    }

    pub(crate) fn id(&self) -> &'a str {
        // Only whole `&str`s are written.
        std::str::from_utf8(self.id_bytes()).unwrap_or("")
    }

    pub(crate) fn status(&self) -> Status {
        Status::from_u8(self.bytes[4] & !DEAD).unwrap_or(Status::Released)
    }

    pub(crate) fn finished_at(&self) -> Millis {
        u64_at(self.bytes, 16)
    }

    /// The order as the table's other readers see it.
    pub(crate) fn order(&self) -> Order {
        let b = self.bytes;
        let lines: Lines = (0..usize::from(b[6]))
            .map(|i| HeldLine {
                cell: u32_at(b, HEADER_BYTES + i * LINE_BYTES),
                qty: u32_at(b, HEADER_BYTES + i * LINE_BYTES + 4),
            })
            .collect();
        Order::from_ttl(
            lines,
            self.status(),
            u64_at(b, 8),
            u32_at(b, 24),
            self.finished_at(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_RETENTION_RUNS;

    fn finished(lines: usize, at: Millis) -> Order {
        let lines = (0..lines as u32)
            .map(|i| HeldLine {
                cell: i * 7,
                qty: i + 1,
            })
            .collect();
        Order::new(lines, Status::Paid, at, at + 900_000, at + 5).expect("ttl fits")
    }

    fn same(a: &Order, b: &Order) -> bool {
        a.lines == b.lines
            && a.status == b.status
            && a.created_at == b.created_at
            && a.expires_at() == b.expires_at()
            && a.finished_at == b.finished_at
    }

    /// Against a plain map: records read back as written, through their position and
    /// their index handle, dead ones vanish, emptied chunks are freed and reused.
    #[test]
    fn records_round_trip_die_and_free_their_chunks() {
        let mut store = Retained::default();
        let mut model: Vec<(RecordAt, String, Order)> = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..60_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = "o".repeat(1 + (x % MAX_KEY_BYTES as u64) as usize) + &i.to_string();
            let id = &id[id.len().saturating_sub(MAX_KEY_BYTES)..];
            let order = finished(1 + (x >> 8) as usize % MAX_LINES, i);
            let at = store.push(x as u32, id, &order);
            assert_eq!(store.at_of(handle_of(at)), at);
            model.push((at, id.to_string(), order));
            // Kill the oldest half now and then, and a random one often.
            if x.is_multiple_of(5) && !model.is_empty() {
                let (at, _, _) = model.swap_remove((x >> 20) as usize % model.len());
                store.kill(at);
                assert!(store.get(at).is_none());
            }
            if i % 20_000 == 19_999 {
                model.sort_by_key(|m| m.0);
                for (at, _, _) in model.drain(..model.len() / 2) {
                    store.kill(at);
                }
            }
        }
        assert_eq!(store.len(), model.len());
        for (at, id, order) in &model {
            let r = store.indexed(handle_of(*at));
            assert_eq!(r.id(), id);
            assert!(same(&r.order(), order));
        }
        let mut seen: Vec<RecordAt> = store.iter().map(|(at, _)| at).collect();
        let mut want: Vec<RecordAt> = model.iter().map(|m| m.0).collect();
        seen.sort_unstable();
        want.sort_unstable();
        assert_eq!(seen, want);
        // The chunks held are those with live records (plus the open one).
        let held = store.chunks.iter().filter(|c| c.is_some()).count();
        let mut with_live: Vec<u64> = want.iter().map(|at| at / CHUNK_BYTES as u64).collect();
        with_live.dedup();
        assert!(held <= with_live.len() + 1, "{held} > {}", with_live.len());
    }

    fn finished_at(at: Millis) -> Order {
        let lines = [HeldLine { cell: 1, qty: 1 }].into_iter().collect();
        Order::new(lines, Status::Released, at.saturating_sub(10), at, at).expect("ttl fits")
    }

    /// Against a plain list pruned by time: every pass takes exactly the records finished
    /// before its cutoff, with the clock stepping back and forth, records dying early
    /// (replaced) and chunks freed under the runs' feet.
    #[test]
    fn a_pass_takes_exactly_the_records_older_than_its_cutoff() {
        let mut store = Retained::default();
        let mut model: Vec<(Millis, RecordAt)> = Vec::new();
        let mut clock = crate::time::SteppingClock::new();
        let mut cutoff: Millis = 0;
        for i in 0..200_000u32 {
            let (x, clock) = clock.tick();
            let at = store.push(i, &format!("id-{i}"), &finished_at(clock));
            model.push((clock, at));
            if x.is_multiple_of(7) {
                let (_, at) = model.swap_remove((x >> 24) as usize % model.len());
                store.kill(at);
            }
            if x.is_multiple_of(31) {
                cutoff = cutoff.max(clock.saturating_sub(3_000));
                let mut taken = Vec::new();
                store.prune(cutoff, |tag, handle| taken.push((tag, handle)));
                let (gone, kept): (Vec<_>, Vec<_>) = model.iter().partition(|&&(t, _)| t < cutoff);
                model = kept;
                let mut gone: Vec<u32> = gone.iter().map(|&(_, at)| handle_of(at)).collect();
                let mut taken: Vec<u32> = taken.iter().map(|&(_, h)| h).collect();
                gone.sort_unstable();
                taken.sort_unstable();
                assert_eq!(taken, gone, "pass at {cutoff}");
                assert_eq!(store.len(), model.len());
                assert!(store.runs.len() <= MAX_RETENTION_RUNS);
            }
        }
        for &(_, at) in &model {
            assert!(store.get(at).is_some());
        }
    }

    /// Beyond the runs allowed, a late record is kept longer, never dropped early.
    #[test]
    fn beyond_the_runs_a_late_record_is_kept_longer() {
        let mut store = Retained::default();
        let steps = MAX_RETENTION_RUNS as u64 + 3;
        for step in 0..steps {
            store.push(step as u32, "o", &finished_at(10_000 - step * 100));
        }
        let mut taken = 0;
        store.prune(10_000 - (steps - 1) * 100 + 1, |_, _| taken += 1);
        assert_eq!(taken, 0);
        // The late ones read back their own finish time, not the one they are filed under.
        let times: Vec<Millis> = store.iter().map(|(_, r)| r.finished_at()).collect();
        assert_eq!(times.last(), Some(&(10_000 - (steps - 1) * 100)));
        assert_eq!(store.prune(10_001, |_, _| ()), steps as usize);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn a_record_is_as_small_as_its_contents() {
        let order = finished(2, 1);
        // 28 header + 16 lines + 14 id = 58 -> 64.
        assert_eq!(encoded_len("order-12345678", 2, false), 64);
        let mut store = Retained::default();
        let a = store.push(1, "order-12345678", &order);
        let b = store.push(2, "order-12345679", &order);
        assert_eq!(b - a, 64);
        const { assert!(MAX_RECORD_BYTES < 1_100) };
    }

    /// Handles name chunks by the low bits of their number: after far more chunks than
    /// that than have come and gone, a handle still finds its record.
    #[test]
    fn handles_stay_unambiguous_as_chunk_numbers_wrap() {
        let mut store = Retained {
            first_seq: MAX_CHUNKS as u64 * 3 - 2,
            ..Retained::default()
        };
        let order = finished(1, 1);
        let mut ats = Vec::new();
        for i in 0..5_000u32 {
            ats.push(store.push(i, &format!("{i:0>100}"), &order));
        }
        assert!(ats.last().map(|at| at / CHUNK_BYTES as u64) > Some(MAX_CHUNKS as u64 * 3));
        for (i, at) in ats.iter().enumerate() {
            assert_eq!(store.at_of(handle_of(*at)), *at);
            assert_eq!(store.indexed(handle_of(*at)).tag(), i as u32);
        }
    }
}
