//! The backends under test. Each one is built fresh for a run (empty state, catalogue
//! seeded), hands out one client per connection, and reports its totals afterwards.

use anyhow::Result;

use crate::workload::Catalogue;

pub mod http;
pub mod ledger;
pub mod naive;
pub mod pg;
pub mod redis_lua;

/// What a reserve call answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answer {
    Reserved,
    /// All-or-nothing refusal because a line was short (insufficient stock).
    Refused,
}

/// One connection (or, in process, one caller). Order ids are unique per run.
pub trait Client: Send {
    fn reserve(&mut self, order_id: &str, skus: &[&str]) -> Result<Answer>;
    fn commit(&mut self, order_id: &str) -> Result<()>;
    fn release(&mut self, order_id: &str) -> Result<()>;
}

/// State after a run, read back from the backend itself.
#[derive(Default, Debug)]
pub struct Totals {
    /// Units held or sold, summed over every sku: initial stock minus what is available.
    pub consumed: u64,
    /// Cells where more is held or sold than there was (must be 0).
    pub oversold: u64,
    /// The hot sku's available units (flash sale), if it exists.
    pub hot_available: Option<u64>,
}

pub trait Backend: Send + Sync {
    fn connect(&self) -> Result<Box<dyn Client>>;
    /// Sets the flash-sale sku's stock (it is unknown until then).
    fn set_hot(&self, qty: u64) -> Result<()>;
    fn totals(&self, cat: &Catalogue, hot_stock: u64) -> Result<Totals>;
    /// The server process whose CPU is measured; None: in process (the harness's own CPU).
    fn server_pid(&self) -> Option<u32>;
}

/// Folds one cell into the totals; `initial` is what it started with.
pub fn add_cell(t: &mut Totals, initial: u64, on_hand: u64, reserved: u64) {
    if reserved > on_hand || on_hand > initial {
        t.oversold += 1;
    }
    t.consumed += initial.saturating_sub(on_hand) + reserved;
}
