//! How a ledger is opened: durability mode, capacity, storage, clock.

use std::sync::Arc;

use crate::time::{Clock, Millis, SystemClock};

/// How a change is made durable before it is acknowledged (`domain.md`, durability modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged after the log holding the change is fsync'd (group commit).
    #[default]
    Sync,
    /// Acknowledged at once; the log is fsync'd at least every 10 ms.
    Async,
    /// Memory only.
    None,
}

impl std::str::FromStr for Durability {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Durability, crate::Error> {
        match s {
            "sync" => Ok(Durability::Sync),
            "async" => Ok(Durability::Async),
            "none" => Ok(Durability::None),
            _ => Err(crate::Error::invalid(
                "durability",
                "must be one of sync, async, none",
            )),
        }
    }
}

/// Options of [`crate::Ledger::open`].
#[derive(Clone)]
pub struct Options {
    pub durability: Durability,
    /// Time source; tests inject a [`crate::ManualClock`].
    pub clock: Arc<dyn Clock>,
    /// How long finished reservations and idempotency keys stay readable.
    pub retention_ms: Millis,
    /// Roll to a new log segment past this size.
    pub segment_bytes: u64,
    /// Write a snapshot automatically once this many log bytes follow the last one (0: never).
    pub checkpoint_every_bytes: u64,
    /// On a bad record in the middle of the log, truncate there instead of refusing to open.
    /// This drops every record after the damage; only an operator should ask for it.
    pub truncate_corrupt_tail: bool,
    /// Storage seam for fault injection; `None` means the real file system.
    pub storage: Option<Arc<dyn crate::storage::Storage>>,
    /// Reservations held at once, live and retained (finished ones stay for
    /// `retention_ms`); beyond it a reserve is refused with `capacity_exhausted`.
    pub max_orders: usize,
    /// How long the log keeps retrying to start its next segment (create, header, folder
    /// fsync: nothing acknowledged is at stake) while writers wait, before it gives up and
    /// refuses writes with `ledger_unavailable` as for any other write failure. A full disk
    /// freed within this time costs only the wait; a device that keeps failing does not
    /// leave `sync` callers waiting for ever.
    pub roll_retry_ms: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            durability: Durability::Sync,
            clock: Arc::new(SystemClock),
            retention_ms: 24 * 3600 * 1000,
            segment_bytes: 32 << 20,
            checkpoint_every_bytes: 256 << 20,
            truncate_corrupt_tail: false,
            storage: None,
            max_orders: crate::limits::MAX_ORDERS,
            roll_retry_ms: 30_000,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("durability", &self.durability)
            .field("retention_ms", &self.retention_ms)
            .field("segment_bytes", &self.segment_bytes)
            .field("checkpoint_every_bytes", &self.checkpoint_every_bytes)
            .field("truncate_corrupt_tail", &self.truncate_corrupt_tail)
            .field("max_orders", &self.max_orders)
            .field("roll_retry_ms", &self.roll_retry_ms)
            .finish_non_exhaustive()
    }
}
