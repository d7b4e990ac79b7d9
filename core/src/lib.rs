//! stockledger: a sharded, lock-free inventory reservation ledger with a write-ahead log.
//!
//! Hard reservations on stock cells (sku, warehouse): all-or-nothing multi-line reserve,
//! commit on payment, release, expiry; every change yields an event of a gap-free stream
//! that the write-ahead log makes durable (the log is the outbox). See `docs/`.
//!
//! ```
//! use stockledger::{Ledger, Line, Options, Source};
//! let ledger = Ledger::in_memory(Options::default());
//! ledger.set_stock("A1", "kol", 10, Source::Warehouse).unwrap();
//! let r = ledger.reserve("o-1", &[Line::new("A1", "kol", 2)], 900).unwrap();
//! assert!(r.created);
//! assert_eq!(ledger.stock("A1", "kol").unwrap().available, 8);
//! ledger.commit("o-1").unwrap();
//! assert_eq!(ledger.stock("A1", "kol").unwrap().on_hand, 8);
//! ```

mod aging;
mod apply;
mod batch;
mod cache;
mod catalog;
mod cell;
mod chunked;
mod deferred;
mod error;
mod event;
mod inline;
mod ledger;
pub mod limits;
mod options;
mod order;
mod orders;
mod outbox;
mod payment;
mod record;
mod retained;
mod sequencer;
mod slot_index;
mod state;
mod stats;
mod storage;
mod time;
mod types;
pub mod wal;

pub use batch::{Answered, CallRef, Command, Outcome};
pub use deferred::{Durable, Ticket};
pub use error::{Error, ErrorCode, Result, Shortfall};
pub use event::Event;
pub use ledger::Ledger;
pub use options::{Durability, Options};
pub use payment::{Payment, PaymentAnswer};
pub use record::{Entry, RefundReason};
pub use stats::StatsSnapshot;
pub use time::{format_rfc3339, Clock, ManualClock, Millis, SystemClock};
pub use types::{
    Line, LineRef, OrderLine, OrderRef, Reservation, Reserved, SkuStock, Source, Status, StockLevel,
};
pub use wal::{read_events, EventReader};
