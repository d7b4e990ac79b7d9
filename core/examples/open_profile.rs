//! Profiling aid for recovery: builds (once) a folder with 1M cells and 1M live
//! reservations in a snapshot plus 100k log records, then times `Ledger::open` on it.
//! `cargo run -p stockledger --release --example open_profile -- /tmp/open-profile`
use std::time::Instant;

use stockledger::{Command, Durability, Ledger, Line, Options};

fn open(dir: &str, durability: Durability) -> Ledger {
    Ledger::open(
        dir,
        Options {
            durability,
            ..Options::default()
        },
    )
    .expect("open")
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/open-profile".into());
    let (cells, reservations, tail) = (1_000_000usize, 1_000_000usize, 100_000usize);
    if !std::path::Path::new(&dir).join("done").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let l = open(&dir, Durability::Async);
        for chunk in (0..cells).collect::<Vec<_>>().chunks(10_000) {
            let cmds: Vec<Command> = chunk
                .iter()
                .map(|i| Command::SetStock {
                    sku: format!("sku-{i:07}"),
                    warehouse: "w".into(),
                    on_hand: 100,
                })
                .collect();
            assert!(l.execute(&cmds).expect("batch").iter().all(|r| r.is_ok()));
        }
        let reserve = |from: usize, to: usize| {
            for chunk in (from..to).collect::<Vec<_>>().chunks(10_000) {
                let cmds: Vec<Command> = chunk
                    .iter()
                    .map(|i| Command::Reserve {
                        order_id: format!("order-{i:08}"),
                        lines: vec![Line::new(format!("sku-{:07}", i % cells), "w", 1)],
                        ttl_seconds: 3600,
                    })
                    .collect();
                assert!(l.execute(&cmds).expect("batch").iter().all(|r| r.is_ok()));
            }
        };
        reserve(0, reservations);
        l.checkpoint().expect("checkpoint");
        reserve(reservations, reservations + tail);
        l.close().expect("close");
        std::fs::write(std::path::Path::new(&dir).join("done"), b"").expect("marker");
    }
    let start = Instant::now();
    let l = open(&dir, Durability::Sync);
    let took = start.elapsed();
    let s = l.stats();
    println!(
        "open: {} cells + {} reservations in {:.2} s",
        s.cells,
        s.reservations,
        took.as_secs_f64()
    );
}
