//! Profiling aid: reserve_many on a ledger, 1,000 skus, orders accumulating.
//! `cargo run -p stockledger --release --example reserve_many_profile -- 2000000 [dir|-] [callers]`
//! (with a folder: a durable `sync` ledger there, emptied first; `-` keeps it in memory;
//! `callers` threads share the orders, each with its own ids).
use std::time::Instant;

use stockledger::{Ledger, LineRef, Options, OrderRef, Source};

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let n: usize = arg(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let ledger = match arg(2).filter(|d| d != "-") {
        Some(dir) => {
            let _ = std::fs::remove_dir_all(&dir);
            Ledger::open(&dir, Options::default()).expect("open")
        }
        None => Ledger::in_memory(Options::default()),
    };
    let callers: usize = arg(3).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
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
    let t = Instant::now();
    let done: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..callers)
            .map(|c| {
                let (ledger, lines) = (&ledger, &lines);
                scope.spawn(move || caller(ledger, lines, c, n / callers))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("caller")).sum()
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{done} reservations by {callers} caller(s) in {secs:.2} s: {:.0}/s, {:.2} us each",
        done as f64 / secs,
        secs * 1e6 / done as f64
    );
}

/// Reserves `n` orders in batches of 10,000; ids are rewritten in place, not formatted.
fn caller(ledger: &Ledger, lines: &[[LineRef<'_>; 1]], c: usize, n: usize) -> usize {
    let mut ids: Vec<String> = (0..10_000).map(|i| format!("c{c}-000000-{i}")).collect();
    let prefix = format!("c{c}-").len();
    let mut done = 0;
    let mut round = 0u32;
    while done < n {
        let digits = format!("{round:06}");
        for id in ids.iter_mut() {
            id.replace_range(prefix..prefix + 6, &digits);
        }
        let orders: Vec<OrderRef> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| OrderRef {
                order_id: id,
                lines: &lines[(i * 7 + c) % lines.len()],
                ttl_seconds: 900,
            })
            .collect();
        let got = ledger.reserve_many(&orders).expect("batch");
        assert!(got.iter().all(|r| r.is_ok()));
        done += orders.len();
        round += 1;
    }
    done
}
