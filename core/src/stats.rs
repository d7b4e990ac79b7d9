//! Counters of what a ledger did, striped so hot threads do not share one cache line.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

const STRIPES: usize = 8;

#[derive(Default)]
pub(crate) struct Counter {
    stripes: [CachePadded<AtomicU64>; STRIPES],
}

thread_local! {
    static STRIPE: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES
    };
}

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let i = STRIPE.with(|s| *s);
        self.stripes[i].fetch_add(n, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1)
    }
    pub(crate) fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) reserved: Counter,
    pub(crate) refusals: Counter,
    pub(crate) replays: Counter,
    pub(crate) committed: Counter,
    pub(crate) released: Counter,
    pub(crate) expired: Counter,
    pub(crate) transient_retries: Counter,
    pub(crate) spurious_refusals: Counter,
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub reserved: u64,
    pub refused: u64,
    pub replays: u64,
    pub committed: u64,
    pub released: u64,
    pub expired: u64,
    /// Multi-line reserves that hit a line held only briefly by another order and retried.
    pub transient_retries: u64,
    /// Reserves refused after every retry still met such a brief hold.
    pub spurious_refusals: u64,
    pub cells: usize,
    pub skus: usize,
    pub reservations: usize,
    /// Reservations in state `reserved` now (live holds).
    pub live_reservations: usize,
    /// fdatasync calls of the log writer, and records it wrote (records / fsyncs is the
    /// group-commit factor).
    pub fsyncs: u64,
    pub records_written: u64,
}

impl Stats {
    pub(crate) fn snapshot(
        &self,
        cells: usize,
        skus: usize,
        reservations: (usize, usize),
        log: (u64, u64),
    ) -> StatsSnapshot {
        StatsSnapshot {
            reserved: self.reserved.get(),
            refused: self.refusals.get(),
            replays: self.replays.get(),
            committed: self.committed.get(),
            released: self.released.get(),
            expired: self.expired.get(),
            transient_retries: self.transient_retries.get(),
            spurious_refusals: self.spurious_refusals.get(),
            cells,
            skus,
            reservations: reservations.0,
            live_reservations: reservations.1,
            fsyncs: log.0,
            records_written: log.1,
        }
    }
}
