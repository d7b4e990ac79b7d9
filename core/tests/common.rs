#![allow(dead_code)]
//! Helpers shared by the core's integration tests.

use std::sync::Arc;

use stockledger::{Durability, Ledger, Line, ManualClock, Options};

pub const T0: u64 = 1_800_000_000_000;

pub fn memory() -> (Ledger, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let ledger = Ledger::in_memory(Options {
        clock: clock.clone(),
        ..Options::default()
    });
    (ledger, clock)
}

pub fn on_disk(dir: &std::path::Path, durability: Durability) -> (Ledger, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let ledger = Ledger::open(
        dir,
        Options {
            durability,
            clock: clock.clone(),
            // Small segments: cheap to create in tests, and they roll.
            segment_bytes: 1 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    (ledger, clock)
}

pub fn line(sku: &str, wh: &str, qty: u64) -> Line {
    Line::new(sku, wh, qty)
}
