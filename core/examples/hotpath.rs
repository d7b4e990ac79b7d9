//! Quick timing of the in-memory hot path: `cargo run --release --example hotpath`.
use std::fmt::Write;
use std::time::Instant;
use stockledger::{Durability, Ledger, Line, Options, Source};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    for retention in [24 * 3600 * 1000u64, 0] {
        let l = Ledger::in_memory(Options {
            durability: Durability::None,
            retention_ms: retention,
            ..Options::default()
        });
        l.set_stock("A", "w", u64::MAX >> 12, Source::Warehouse)
            .unwrap();
        let lines = vec![Line::new("A", "w", 1)];
        let mut id = String::new();
        let t = Instant::now();
        for i in 0..n {
            id.clear();
            let _ = write!(id, "o{i}");
            l.reserve_ack(&id, &lines, 900).unwrap();
            l.release_ack(&id).unwrap();
            if retention == 0 && i % 10_000 == 0 {
                l.expire_due().unwrap();
            }
        }
        let el = t.elapsed();
        println!(
            "retention {retention}: {:.0} ns per reserve+release",
            el.as_nanos() as f64 / n as f64
        );
    }
}
