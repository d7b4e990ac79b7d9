//! Entries kept for the retention and pruned by age (finished reservations, idempotency
//! keys). A pass takes every entry older than its cutoff, whatever order the entries came
//! in, so the live ledger and a replay of its log keep exactly the same ones although their
//! shards differ (each process hashes with its own seed) and a snapshot refills them in its
//! own order. Entries come in time order while the wall clock moves forward: one sorted run,
//! popped from its old end. A clock stepped back starts a new sorted run; a pass takes the
//! old end of every run.

use std::collections::VecDeque;

use crate::limits::MAX_RETENTION_RUNS;
use crate::time::Millis;

/// The time an entry made at `at` is filed under, and whether it starts a new run, given
/// the newest time filed in the newest run (`None`: nothing filed there) and the number of
/// runs. The rule of every retention queue (`retained.rs` files finished orders by it):
/// while the clock moves forward an entry joins the newest run; a step back starts a run,
/// while fewer than `MAX_RETENTION_RUNS` exist; beyond that it joins the newest run under
/// that run's newest time, so it is kept longer than its retention, never shorter.
pub(crate) fn filing(newest: Option<Millis>, runs: usize, at: Millis) -> (Millis, bool) {
    debug_assert!(runs <= MAX_RETENTION_RUNS);
    match newest {
        Some(t) if at >= t => (at, false),
        Some(t) if runs >= MAX_RETENTION_RUNS => (t, false),
        Some(_) => (at, true),
        None => (at, runs == 0),
    }
}

pub(crate) struct Aging<T> {
    /// Each run is sorted by time; the newest run takes the pushes.
    runs: VecDeque<VecDeque<(Millis, T)>>,
    /// Entries of a bulk refill, sorted into the runs by [`Aging::settle`].
    unsorted: Vec<(Millis, T)>,
    len: usize,
}

impl<T> Default for Aging<T> {
    fn default() -> Aging<T> {
        Aging {
            runs: VecDeque::new(),
            unsorted: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Aging<T> {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Files an entry made at `at`. Beyond [`MAX_RETENTION_RUNS`] steps back of the clock
    /// within the retention, a late entry is filed under the newest run's time instead: it
    /// is then kept longer than its retention, never shorter.
    pub(crate) fn push(&mut self, at: Millis, entry: T) {
        debug_assert!(self.unsorted.is_empty(), "push before settle");
        let newest = self.runs.back().and_then(|r| r.back()).map(|&(t, _)| t);
        let (at, new_run) = filing(newest, self.runs.len(), at);
        if new_run {
            self.runs.push_back(VecDeque::new());
        }
        if let Some(run) = self.runs.back_mut() {
            run.push_back((at, entry));
            self.len += 1;
        }
    }

    /// Files an entry of a bulk refill (a snapshot's, in its own order); [`Aging::settle`]
    /// must follow before the next push or pass.
    pub(crate) fn push_unsorted(&mut self, at: Millis, entry: T) {
        self.unsorted.push((at, entry));
        self.len += 1;
    }

    /// Sorts every entry into one run (after a bulk refill).
    pub(crate) fn settle(&mut self) {
        if self.unsorted.is_empty() && self.runs.len() <= 1 {
            return;
        }
        let mut all = std::mem::take(&mut self.unsorted);
        all.extend(self.runs.drain(..).flatten());
        all.sort_by_key(|&(at, _)| at);
        self.runs.push_back(all.into());
    }

    /// Removes every entry older than `cutoff`, handing each to `take` with the time it was
    /// filed under.
    pub(crate) fn prune(&mut self, cutoff: Millis, mut take: impl FnMut(Millis, T)) {
        debug_assert!(self.unsorted.is_empty(), "prune before settle");
        for run in self.runs.iter_mut() {
            while run.front().is_some_and(|&(at, _)| at < cutoff) {
                if let Some((at, entry)) = run.pop_front() {
                    self.len -= 1;
                    take(at, entry);
                }
            }
        }
        // Empty runs go, except the newest, which takes the pushes.
        let newest = self.runs.len().saturating_sub(1);
        let mut i = 0;
        self.runs.retain(|run| {
            let keep = !run.is_empty() || i == newest;
            i += 1;
            keep
        });
        debug_assert!(self.runs.len() <= MAX_RETENTION_RUNS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filing_follows_the_clock_and_caps_the_runs() {
        assert_eq!(
            filing(None, 0, 5),
            (5, true),
            "the first entry starts the first run"
        );
        assert_eq!(
            filing(None, 1, 5),
            (5, false),
            "an emptied newest run takes it"
        );
        assert_eq!(filing(Some(5), 1, 5), (5, false));
        assert_eq!(filing(Some(5), 1, 9), (9, false));
        assert_eq!(filing(Some(9), 1, 5), (5, true), "a step back starts a run");
        let full = MAX_RETENTION_RUNS;
        assert_eq!(
            filing(Some(9), full, 5),
            (9, false),
            "filed later, never earlier"
        );
        assert_eq!(filing(Some(9), full, 12), (12, false));
    }

    /// Against a plain list pruned by time: every pass takes exactly the entries older
    /// than its cutoff, with the clock stepping back and forth.
    #[test]
    fn a_pass_takes_exactly_what_is_older_than_its_cutoff() {
        let mut aging = Aging::default();
        let mut model: Vec<(Millis, u32)> = Vec::new();
        let mut clock = crate::time::SteppingClock::new();
        let mut cutoff: Millis = 0;
        for i in 0..20_000u32 {
            let (x, clock) = clock.tick();
            aging.push(clock, i);
            model.push((clock, i));
            if x.is_multiple_of(31) {
                cutoff = cutoff.max(clock.saturating_sub(3_000));
                let mut taken = Vec::new();
                aging.prune(cutoff, |at, e| taken.push((at, e)));
                let (mut gone, kept): (Vec<_>, Vec<_>) =
                    model.iter().partition(|&&(at, _)| at < cutoff);
                model = kept;
                gone.sort_unstable();
                taken.sort_unstable();
                assert_eq!(taken, gone, "pass at {cutoff}");
                assert_eq!(aging.len(), model.len());
            }
        }
    }

    /// Beyond the runs allowed, a late entry is kept longer, never dropped early.
    #[test]
    fn beyond_the_runs_a_late_entry_is_kept_longer() {
        let mut aging = Aging::default();
        for step in 0..(MAX_RETENTION_RUNS as u64 + 3) {
            aging.push(10_000 - step * 100, step);
        }
        let mut taken = Vec::new();
        aging.prune(
            10_000 - (MAX_RETENTION_RUNS as u64 + 2) * 100 + 1,
            |_, e| taken.push(e),
        );
        assert!(taken.is_empty(), "{taken:?}");
        aging.prune(10_001, |_, e| taken.push(e));
        assert_eq!(taken.len(), MAX_RETENTION_RUNS + 3);
        assert_eq!(aging.len(), 0);
    }

    /// A bulk refill in any order, settled, is pruned exactly as if pushed in time order.
    #[test]
    fn a_settled_refill_prunes_exactly() {
        let mut aging = Aging::default();
        let times = [50u64, 10, 40, 20, 30, 10];
        for (i, &t) in times.iter().enumerate() {
            aging.push_unsorted(t, i);
        }
        aging.settle();
        aging.push(60, 6);
        let mut taken = Vec::new();
        aging.prune(31, |at, _| taken.push(at));
        assert_eq!(taken, [10, 10, 20, 30]);
        assert_eq!(aging.len(), 3);
    }
}
