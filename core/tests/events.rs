//! The event stream read back while the ledger is live: from the ledger (`events`) and from
//! the folder (`read_events`), with segments rolling and checkpoints removing old ones.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use stockledger::{Durability, Source};

#[test]
fn readers_follow_a_live_ledger_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = on_disk(dir.path(), Durability::Sync);
    let ledger = Arc::new(ledger);
    ledger
        .set_stock("A", "w", 1_000_000, Source::Warehouse)
        .unwrap();
    ledger.keep_events_after(Some(0)); // pin: a reader from 0 must find everything
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ledger, done) = (ledger.clone(), done.clone());
        std::thread::spawn(move || {
            for b in 0..40 {
                let cmds: Vec<stockledger::Command> = (0..500)
                    .map(|i| stockledger::Command::Reserve {
                        order_id: format!("order-{b:03}-{i:04}-padding-to-roll-segments-sooner"),
                        lines: vec![line("A", "w", 1)],
                        ttl_seconds: 900,
                    })
                    .collect();
                assert!(ledger.execute(&cmds).unwrap().iter().all(|r| r.is_ok()));
                if b % 10 == 9 {
                    ledger.checkpoint().unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    // Tail through the ledger's own feed while it writes.
    let mut after = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        for e in ledger.events(after, 1000).unwrap() {
            assert_eq!(e.seq, after + 1, "gap in the live feed");
            after = e.seq;
        }
        if finished && after == ledger.last_seq() {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(after, 20_001);
    // And from the folder, from outside, in one pass.
    let seqs: Vec<u64> = stockledger::read_events(dir.path(), 0)
        .unwrap()
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(seqs, (1..=20_001).collect::<Vec<_>>());
    let tail: Vec<u64> = stockledger::read_events(dir.path(), 19_990)
        .unwrap()
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(tail, (19_991..=20_001).collect::<Vec<_>>());
    // Unpinned, a checkpoint removes covered segments; the feed then starts later.
    let segs_before = std::fs::read_dir(dir.path()).unwrap().count();
    ledger.keep_events_after(None);
    ledger.checkpoint().unwrap();
    let segs_after = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(segs_after < segs_before, "{segs_before} -> {segs_after}");
}
