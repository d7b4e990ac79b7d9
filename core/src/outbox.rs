//! The log as the outbox: what a publisher of the events needs from the ledger (pins,
//! epochs, retention, durability of everything so far). The log implements them; this layer
//! only exposes them on `Ledger`, so the log never knows the ledger.

use crate::error::Result;
use crate::ledger::Ledger;

impl Ledger {
    /// Keeps log segments that hold events with a seq above `seq` even once a snapshot
    /// covers them (the Kafka publisher pins what it has not delivered yet). `None` unpins.
    pub fn keep_events_after(&self, seq: Option<u64>) {
        self.log.keep_events_after(seq);
    }

    /// Starts a new epoch: events written from now on get event_ids no earlier event had,
    /// even where their seqs repeat ones given before (the Kafka publisher calls it when its
    /// cursor is past the log, i.e. when the seqs after the log's end were given before).
    /// Returns once a segment of the new epoch is durable. Memory-only ledgers: no-op.
    pub fn new_epoch(&self) -> Result<()> {
        self.log.new_epoch()
    }

    /// Waits until every change made so far (by any caller) is durable, whatever the
    /// durability mode; fails if the log cannot make it so. What an `async` caller does
    /// before telling an outside system a change is safe (the stock feed's Kafka offsets).
    pub fn wait_durable(&self) -> Result<()> {
        self.log.flush(self.seq.next_lsn() - 1)
    }

    /// Keeps log segments written less than `retention` ago even once a snapshot covers
    /// them, so readers of the events feed find them (`--events-retention`). Zero (the
    /// default) keeps only what the outbox pin asks for. Events read past what is kept
    /// are answered with `EventsPruned`, never skipped.
    pub fn retain_events_for(&self, retention: std::time::Duration) {
        let ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        self.log.retain_events_for(ms);
    }
}
