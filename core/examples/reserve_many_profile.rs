//! Profiling aid: reserve_many on an in-memory ledger, 1,000 skus, orders accumulating.
//! `cargo run -p stockledger --release --example reserve_many_profile -- 2000000 [dir]`
//! (with a folder: a durable `sync` ledger there, emptied first).
use std::time::Instant;

use stockledger::{Ledger, LineRef, Options, OrderRef, Source};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let ledger = match std::env::args().nth(2) {
        Some(dir) => {
            let _ = std::fs::remove_dir_all(&dir);
            Ledger::open(&dir, Options::default()).expect("open")
        }
        None => Ledger::in_memory(Options::default()),
    };
    let skus: Vec<String> = (0..1000).map(|i| format!("S{i}")).collect();
    for s in &skus {
        ledger
            .set_stock(s, "kol", 1 << 40, Source::Warehouse)
            .expect("stock");
    }
    let lines: Vec<[LineRef; 1]> = skus
        .iter()
        .map(|s| {
            [LineRef {
                sku: s,
                warehouse: "kol",
                qty: 1,
            }]
        })
        .collect();
    let ids: Vec<String> = (0..10_000).map(|i| format!("b-000000-{i}")).collect();
    let mut ids = ids;
    let t = Instant::now();
    let mut done = 0;
    let mut round = 0;
    while done < n {
        for (i, id) in ids.iter_mut().enumerate() {
            id.replace_range(2..8, &format!("{round:06}"));
            let _ = i;
        }
        let orders: Vec<OrderRef> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| OrderRef {
                order_id: id,
                lines: &lines[(i * 7) % 1000],
                ttl_seconds: 900,
            })
            .collect();
        let got = ledger.reserve_many(&orders).expect("batch");
        assert!(got.iter().all(|r| r.is_ok()));
        done += orders.len();
        round += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{done} reservations in {secs:.2} s: {:.0}/s, {:.2} us each",
        done as f64 / secs,
        secs * 1e6 / done as f64
    );
}
