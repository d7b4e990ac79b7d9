//! Measures the resident memory per cell, per live reservation and per finished one kept
//! for the retention: `cargo run --release -p stockledger --example memory` (a durable
//! `async` ledger).
use stockledger::{Command, Durability, Ledger, Line, Options};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n = 1_000_000usize;
    // A durable ledger keeps its events in the log on disk; a memory-only one would also
    // hold its last 64 MiB of events in memory (`STOCKLEDGER_MEMORY_MODE=none` measures that).
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = if std::env::var("STOCKLEDGER_MEMORY_MODE").as_deref() == Ok("none") {
        Ledger::in_memory(Options::default())
    } else {
        Ledger::open(
            dir.path(),
            Options {
                durability: Durability::Async,
                checkpoint_every_bytes: 0,
                ..Options::default()
            },
        )
        .expect("open")
    };
    let base = rss_bytes();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let cmds: Vec<Command> = chunk
            .iter()
            .map(|i| Command::SetStock {
                sku: format!("sku-{i:07}"),
                warehouse: "kol".into(),
                on_hand: 100,
            })
            .collect();
        assert!(ledger.execute(&cmds).unwrap().iter().all(|r| r.is_ok()));
    }
    let after_cells = rss_bytes();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let cmds: Vec<Command> = chunk
            .iter()
            .map(|i| Command::Reserve {
                order_id: format!("order-{i:08}"),
                lines: vec![Line::new(format!("sku-{i:07}"), "kol", 1)],
                ttl_seconds: 900,
            })
            .collect();
        assert!(ledger.execute(&cmds).unwrap().iter().all(|r| r.is_ok()));
    }
    let after_orders = rss_bytes();
    println!(
        "per cell (sku of 11 bytes, one warehouse): {} bytes; per live 1-line reservation (order id of 14 bytes): {} bytes",
        (after_cells - base) / n as u64,
        (after_orders - after_cells) / n as u64
    );
    // Whole lifecycles once the live ones are released: each reserve reuses a freed slot,
    // so what grows is what a finished reservation keeps for the retention.
    release(&ledger, (0..n).map(|i| format!("order-{i:08}")));
    let after_release = rss_bytes();
    for chunk in (n..2 * n).collect::<Vec<_>>().chunks(10_000) {
        let cmds: Vec<Command> = chunk
            .iter()
            .map(|i| Command::Reserve {
                order_id: format!("order-{i:08}"),
                lines: vec![Line::new(format!("sku-{:07}", i - n), "kol", 1)],
                ttl_seconds: 900,
            })
            .collect();
        assert!(ledger.execute(&cmds).unwrap().iter().all(|r| r.is_ok()));
        release(&ledger, chunk.iter().map(|i| format!("order-{i:08}")));
    }
    let after_lifecycles = rss_bytes();
    println!(
        "per finished 1-line reservation kept for the retention: {} bytes (releasing the live ones: {} bytes each)",
        (after_lifecycles - after_release) / n as u64,
        after_release as i64 / n as i64 - after_orders as i64 / n as i64
    );
}

fn release(ledger: &Ledger, ids: impl Iterator<Item = String>) {
    let ids: Vec<String> = ids.collect();
    for chunk in ids.chunks(10_000) {
        let cmds: Vec<Command> = chunk
            .iter()
            .map(|id| Command::Release {
                order_id: id.clone(),
            })
            .collect();
        assert!(ledger.execute(&cmds).unwrap().iter().all(|r| r.is_ok()));
    }
}
