//! Profiling aid for replay: builds (once) a folder whose whole state is in the log (no
//! snapshot): 10,000 stocked cells and N one-line reservations, then times `Ledger::open`.
//! `cargo run -p stockledger --release --example replay_profile -- [N] [dir] [opens]`
use std::time::Instant;

use stockledger::{Command, Durability, Ledger, Line, Options, Source};

const SKUS: usize = 10_000;

fn open(dir: &str, durability: Durability) -> Ledger {
    let options = Options {
        durability,
        ..Options::default()
    };
    Ledger::open(dir, options).expect("open")
}

fn build(dir: &str, records: usize) {
    let _ = std::fs::remove_dir_all(dir);
    let l = open(dir, Durability::Async);
    for s in 0..SKUS {
        l.set_stock(&format!("s{s}"), "w", 1_000_000, Source::Warehouse)
            .expect("stock");
    }
    let mut n = 0;
    while n < records {
        let cmds: Vec<Command> = (0..1000)
            .map(|i| Command::Reserve {
                order_id: format!("r{n}-{i}"),
                lines: vec![Line::new(format!("s{}", (n + i) % SKUS), "w", 1)],
                ttl_seconds: 3600,
            })
            .collect();
        let all_ok = l.execute(&cmds).expect("batch").iter().all(|r| r.is_ok());
        assert!(all_ok);
        n += 1000;
    }
    l.close().expect("close");
    std::fs::write(format!("{dir}/done"), records.to_string()).expect("mark");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let records: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = args.next().unwrap_or_else(|| "/tmp/replay-profile".into());
    let opens: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let built = std::fs::read_to_string(format!("{dir}/done")).ok();
    if built.as_deref() != Some(records.to_string().as_str()) {
        build(&dir, records);
    }
    for _ in 0..opens {
        let start = Instant::now();
        let l = open(&dir, Durability::Sync);
        let took = start.elapsed();
        assert_eq!(l.stats().reservations, records);
        let per_sec = (records + SKUS) as f64 / took.as_secs_f64();
        println!("open: {:.3} s, {per_sec:.0} records/s", took.as_secs_f64());
        drop(l);
    }
}
