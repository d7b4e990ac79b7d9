//! Every JSON body the service parses: the first byte picks the route (reservation,
//! payment callback, stock set, stock adjust, stock query), the rest is the body. It goes
//! through the handler's own parser and checks, then the ledger call (in memory); nothing
//! may panic, no 5xx but 503 capacity_exhausted, and every 400 names a field of the body
//! (`service/tests/bodies/mod.rs`, shared with the stable `service/tests/http_bodies.rs`).
#![no_main]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

#[path = "../../service/tests/bodies/mod.rs"]
mod bodies;

static LEDGER: OnceLock<(stockledger::Ledger, Arc<stockledger::ManualClock>)> = OnceLock::new();
static RUNS: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let (ledger, clock) = LEDGER.get_or_init(bodies::ledger);
    bodies::run(data, ledger);
    // Bounded: every 1000 inputs a day passes, finished orders and keys are pruned.
    if RUNS.fetch_add(1, Ordering::Relaxed) % 1000 == 999 {
        clock.advance(2 * 24 * 3600 * 1000);
        let _ = ledger.expire_due();
        bodies::reset(ledger);
    }
});
