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

/// A memory-only ledger keeps at most `MEM_LOG_BYTES` of framed events: written one record
/// per batch (the service's pattern), past the bound, the oldest are answered as pruned,
/// the rest are read back gap-free from the oldest kept seq, and the process does not pin a
/// buffer per batch (the first version kept each batch's 1 MiB buffer: this ran out of
/// memory or took minutes).
#[test]
fn memory_log_evicts_whole_chunks_and_stays_gap_free() {
    let ledger = stockledger::Ledger::in_memory(stockledger::Options::default());
    ledger
        .set_stock("A", "w", 10_000_000, Source::Warehouse)
        .unwrap();
    let pad = "p".repeat(100);
    let rss_before = rss_bytes();
    let mut id = String::new();
    let mut n = 0u64;
    // Each reserve is its own batch once acknowledged (`reserve_ack` waits for the writer).
    while ledger.events(0, 1).is_ok() {
        id.clear();
        id.push_str(&pad);
        id.push_str(&n.to_string());
        ledger.reserve_ack(&id, &[line("A", "w", 1)], 900).unwrap();
        n += 1;
        assert!(n < 2_000_000, "the memory log never evicted");
    }
    let oldest = match ledger.events(0, 1) {
        Err(stockledger::Error::EventsPruned { oldest_seq }) => oldest_seq,
        other => panic!("expected EventsPruned, got {other:?}"),
    };
    assert!(oldest > 1);
    let mut after = oldest - 1;
    loop {
        let batch = ledger.events(after, 1000).unwrap();
        if batch.is_empty() {
            break;
        }
        for e in batch {
            assert_eq!(e.seq, after + 1, "gap in the memory feed");
            after = e.seq;
        }
    }
    assert_eq!(after, ledger.last_seq());
    let kept_mb = (rss_bytes().saturating_sub(rss_before)) >> 20;
    // The log's 64 MiB plus the orders table (~n * 400 bytes); a buffer per batch was GiBs.
    let limit_mb = 64 + 64 + ((n * 400) >> 20);
    assert!(
        kept_mb <= limit_mb,
        "rss grew {kept_mb} MiB (limit {limit_mb})"
    );
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
