//! The sequencer hands out log sequence numbers (lsn) and stages encoded records for the
//! log writer, without a global lock: each thread appends to one of several lanes, and the
//! writer merges the lanes back into lsn order. Between taking an lsn and staging its record
//! a thread never blocks on anything else, so the writer always finds the gap it waits on
//! filled soon.

use std::cell::{Cell as StdCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::CachePadded;

use crate::record::Encoder;

use crate::limits::STAGING_LANES as LANES;
pub(crate) use crate::limits::{MAX_STAGED_BYTES, MAX_STAGED_RECORDS};
/// Staged record header: lsn u64, payload length u32, events u16, entries u16.
pub(crate) const STAGED_HEADER: usize = 16;
/// The byte bound per lane: checked under the lane's own lock, so staging shares no
/// counter between threads (a shared one would be a contended cache line per record).
const MAX_LANE_BYTES: usize = (MAX_STAGED_BYTES / LANES as u64) as usize;

type FailureHook = Box<dyn Fn(String) + Send + Sync>;

pub(crate) type Lsn = u64;

pub(crate) struct Sequencer {
    /// The next lsn to hand out.
    next: CachePadded<AtomicU64>,
    /// Every lsn below this has been taken by the writer.
    pub(crate) drained: CachePadded<AtomicU64>,
    lanes: Box<[CachePadded<Lane>]>,
    /// Set once nothing staged will ever be written (the log is poisoned or its writer
    /// died): callers stop waiting for room and learn it from the log.
    halted: AtomicBool,
    /// Told when an lsn was taken but its record can never be staged (a panic in between):
    /// the log then has a gap no record will fill, so the ledger must stop.
    on_failure: OnceLock<FailureHook>,
}

/// Holds a lane from taking an lsn until its record is staged. A panic in between (in
/// `effect` or `encode`) unwinds through it: it removes the half-staged bytes, so the writer
/// never reads them, and fails the sequencer, since that lsn will never be filled.
struct StageGuard<'a> {
    seq: &'a Sequencer,
    lane: LaneGuard<'a>,
    lsn: Lsn,
    start: usize,
    armed: bool,
}

impl Drop for StageGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let start = self.start;
            self.lane.truncate(start);
            self.seq.fail(format!(
                "a thread panicked between taking lsn {} and staging its record",
                self.lsn
            ));
        }
    }
}

/// A lane's buffer behind a spin lock released by a plain store: the `lock`-prefixed release
/// of a mutex would first wait for every store of the record just encoded to reach the cache
/// (lines the writer thread last read, so each one a miss), while a plain store lets them
/// drain behind the caller's next steps. Lanes are per thread, so the lock is almost never
/// contended; the writer holds it only to swap the buffer.
struct Lane {
    locked: AtomicBool,
    buf: UnsafeCell<Vec<u8>>,
}

// SAFETY: `buf` is only reached through a `LaneGuard`, of which `locked` admits one at a
// time (Acquire on taking it, Release on giving it back).
unsafe impl Sync for Lane {}

impl Lane {
    fn new() -> Lane {
        Lane {
            locked: AtomicBool::new(false),
            buf: UnsafeCell::new(Vec::with_capacity(64 << 10)),
        }
    }

    fn lock(&self) -> LaneGuard<'_> {
        let mut spins = 0u32;
        while self.locked.swap(true, Ordering::Acquire) {
            while self.locked.load(Ordering::Relaxed) {
                backoff(&mut spins);
            }
        }
        LaneGuard { lane: self }
    }
}

struct LaneGuard<'a> {
    lane: &'a Lane,
}

impl std::ops::Deref for LaneGuard<'_> {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        // SAFETY: the guard holds the lane's lock.
        unsafe { &*self.lane.buf.get() }
    }
}

impl std::ops::DerefMut for LaneGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        // SAFETY: the guard holds the lane's lock, and `&mut self` is unique.
        unsafe { &mut *self.lane.buf.get() }
    }
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.lane.locked.store(false, Ordering::Release);
    }
}

/// Spins, then yields, then sleeps 50 us at a time: a lane's holder that lost its core (more
/// callers than cores, or than lanes) gets it back instead of waiting behind spinners.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else if *spins < 128 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

thread_local! {
    static LANE: StdCell<usize> = const { StdCell::new(usize::MAX) };
}
static NEXT_LANE: AtomicUsize = AtomicUsize::new(0);

fn my_lane() -> usize {
    LANE.with(|l| {
        let mut v = l.get();
        if v == usize::MAX {
            v = NEXT_LANE.fetch_add(1, Ordering::Relaxed) % LANES;
            l.set(v);
        }
        v
    })
}

impl Sequencer {
    pub(crate) fn new(next_lsn: Lsn) -> Sequencer {
        assert!(next_lsn >= 1);
        Sequencer {
            next: CachePadded::new(AtomicU64::new(next_lsn)),
            drained: CachePadded::new(AtomicU64::new(next_lsn)),
            lanes: (0..LANES).map(|_| CachePadded::new(Lane::new())).collect(),
            halted: AtomicBool::new(false),
            on_failure: OnceLock::new(),
        }
    }

    /// Sets what is called (once per failure) when a staged record can never be written.
    pub(crate) fn on_failure(&self, hook: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.on_failure.set(Box::new(hook));
    }

    /// Nothing staged from now on will be written: stop making callers wait for room.
    pub(crate) fn halt(&self) {
        self.halted.store(true, Ordering::SeqCst);
    }

    fn fail(&self, why: String) {
        self.halt();
        if let Some(hook) = self.on_failure.get() {
            hook(why);
        }
    }

    /// The lsn the next record will get.
    pub(crate) fn next_lsn(&self) -> Lsn {
        self.next.load(Ordering::Acquire)
    }

    /// Takes an lsn, runs `effect` (which must not block: it is where an effect that frees
    /// stock is applied, after its lsn is fixed), and stages the entries `encode` writes.
    pub(crate) fn stage<R>(
        &self,
        effect: impl FnOnce() -> R,
        encode: impl FnOnce(&mut Encoder<'_>, &R),
    ) -> (Lsn, R) {
        self.wait_for_room();
        let lane = self.lane_with_room();
        let lsn = self.next.fetch_add(1, Ordering::AcqRel);
        let start = lane.len();
        let mut g = StageGuard {
            seq: self,
            lane,
            lsn,
            start,
            armed: true,
        };
        let r = effect();
        g.lane.extend_from_slice(&[0u8; STAGED_HEADER]);
        let mut enc = Encoder::new(&mut g.lane);
        encode(&mut enc, &r);
        let (events, entries) = (enc.events, enc.entries);
        let end = g.lane.len();
        let len = (end - start - STAGED_HEADER) as u32;
        let h = &mut g.lane[start..start + STAGED_HEADER];
        h[0..8].copy_from_slice(&lsn.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..14].copy_from_slice(&events.to_le_bytes());
        h[14..16].copy_from_slice(&entries.to_le_bytes());
        g.armed = false;
        (lsn, r)
    }

    fn wait_for_room(&self) {
        let mut spins = 0u32;
        while self.next.load(Ordering::Relaxed) - self.drained.load(Ordering::Acquire)
            > MAX_STAGED_RECORDS
            && !self.halted.load(Ordering::Relaxed)
        {
            backoff(&mut spins);
        }
    }

    /// This thread's lane, locked, once it holds at most `MAX_LANE_BYTES` (the writer
    /// empties lanes as it takes them).
    fn lane_with_room(&self) -> LaneGuard<'_> {
        let mut spins = 0u32;
        loop {
            let lane = self.lanes[my_lane()].lock();
            if lane.len() <= MAX_LANE_BYTES || self.halted.load(Ordering::Relaxed) {
                return lane;
            }
            drop(lane);
            backoff(&mut spins);
        }
    }

    /// The writer swaps every lane's buffer with an empty one of its own.
    pub(crate) fn take_lanes(&self, spare: &mut Vec<Vec<u8>>, out: &mut Vec<Vec<u8>>) {
        for lane in self.lanes.iter() {
            let mut buf = spare.pop().unwrap_or_default();
            buf.clear();
            {
                let mut l = lane.lock();
                if l.is_empty() {
                    spare.push(buf);
                    continue;
                }
                std::mem::swap(&mut *l, &mut buf);
            }
            out.push(buf);
        }
    }
}

/// One staged record, borrowed from a lane buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staged<'a> {
    pub(crate) lsn: Lsn,
    pub(crate) events: u16,
    pub(crate) entries: u16,
    pub(crate) payload: &'a [u8],
}

/// Walks the staged records of one lane buffer.
pub(crate) fn staged_records(buf: &[u8]) -> impl Iterator<Item = Staged<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at + STAGED_HEADER > buf.len() {
            return None;
        }
        let h = &buf[at..at + STAGED_HEADER];
        let lsn = u64::from_le_bytes(h[0..8].try_into().ok()?);
        let len = u32::from_le_bytes(h[8..12].try_into().ok()?) as usize;
        let events = u16::from_le_bytes(h[12..14].try_into().ok()?);
        let entries = u16::from_le_bytes(h[14..16].try_into().ok()?);
        let payload = &buf[at + STAGED_HEADER..at + STAGED_HEADER + len];
        at += STAGED_HEADER + len;
        Some(Staged {
            lsn,
            events,
            entries,
            payload,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Defect 5: large records are bounded by their bytes, not only by their count.
    #[test]
    fn staging_waits_once_the_staged_bytes_reach_the_bound() {
        let seq = Arc::new(Sequencer::new(1));
        let record = 1usize << 20;
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = seq.clone();
        // One thread, so one lane: fill it just past its bound (the record headers take it
        // over), then stage once more.
        std::thread::spawn(move || {
            for _ in 0..(MAX_LANE_BYTES / record) {
                s2.stage(|| (), |enc, _| enc.buf.resize(enc.buf.len() + record, 1));
            }
            let _ = tx.send(0);
            let (lsn, ()) = s2.stage(|| (), |enc, _| enc.buf.push(1));
            let _ = tx.send(lsn);
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).ok(), Some(0));
        // A wait with nothing to poll: the stage must still be blocked after it.
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "staged past {MAX_LANE_BYTES} bytes in one lane"
        );
        let (mut spare, mut out) = (Vec::new(), Vec::new());
        seq.take_lanes(&mut spare, &mut out);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).ok(),
            Some((MAX_LANE_BYTES / record) as u64 + 1)
        );
        assert!(LANES as u64 * MAX_LANE_BYTES as u64 <= MAX_STAGED_BYTES);
    }
}
