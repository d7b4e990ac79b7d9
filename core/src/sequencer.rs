//! The sequencer hands out log sequence numbers (lsn) and stages encoded records for the
//! log writer, without a global lock: each thread appends to one of several lanes, and the
//! writer merges the lanes back into lsn order. Between taking an lsn and staging its record
//! a thread never blocks on anything else, so the writer always finds the gap it waits on
//! filled soon.

use std::cell::Cell as StdCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::record::Encoder;

const LANES: usize = 16;
/// Staged record header: lsn u64, payload length u32, events u16, entries u16.
pub(crate) const STAGED_HEADER: usize = 16;
/// Records staged but not yet taken by the writer, at most; callers wait beyond it.
pub(crate) const MAX_STAGED_RECORDS: u64 = 1 << 20;

pub(crate) type Lsn = u64;

pub(crate) struct Sequencer {
    /// The next lsn to hand out.
    next: CachePadded<AtomicU64>,
    /// Every lsn below this has been taken by the writer.
    pub(crate) drained: CachePadded<AtomicU64>,
    lanes: Box<[CachePadded<Mutex<Vec<u8>>>]>,
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
            lanes: (0..LANES)
                .map(|_| CachePadded::new(Mutex::new(Vec::with_capacity(64 << 10))))
                .collect(),
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
        let mut lane = self.lanes[my_lane()].lock();
        let lsn = self.next.fetch_add(1, Ordering::AcqRel);
        let r = effect();
        let start = lane.len();
        lane.extend_from_slice(&[0u8; STAGED_HEADER]);
        let mut enc = Encoder::new(&mut lane);
        encode(&mut enc, &r);
        let (events, entries) = (enc.events, enc.entries);
        let len = (lane.len() - start - STAGED_HEADER) as u32;
        let h = &mut lane[start..start + STAGED_HEADER];
        h[0..8].copy_from_slice(&lsn.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..14].copy_from_slice(&events.to_le_bytes());
        h[14..16].copy_from_slice(&entries.to_le_bytes());
        (lsn, r)
    }

    fn wait_for_room(&self) {
        let mut spins = 0u32;
        while self.next.load(Ordering::Relaxed) - self.drained.load(Ordering::Acquire)
            > MAX_STAGED_RECORDS
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
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
