//! Regression tests for the failure paths of issue 10 (see docs/reliability.md).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use stockledger::{Command, Durability, Ledger, Options, Source};

/// A batch that grows the log but not the state (so checkpoints stay cheap).
fn stock_batch(b: u64, n: u64) -> Vec<Command> {
    (0..n)
        .map(|i| Command::SetStock {
            sku: format!("S{}", i % 8),
            warehouse: "w".into(),
            on_hand: b * n + i,
        })
        .collect()
}

fn segment_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
        })
        .count()
}

/// Defect 1: checkpoints taken while the writer keeps rolling segments must succeed.
#[test]
fn checkpoints_succeed_while_the_writer_rolls_segments() {
    let dir = tempfile::tempdir().unwrap();
    let l = Arc::new(
        Ledger::open(
            dir.path(),
            Options {
                durability: Durability::Async,
                segment_bytes: 1 << 20,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    l.set_stock("A", "w", 1 << 40, Source::Warehouse).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (l, stop) = (l.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut b = 0;
            while !stop.load(Ordering::SeqCst) {
                l.execute(&stock_batch(b, 2000)).unwrap();
                b += 1;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut done = 0;
    let mut result = Ok(0);
    // Enough checkpoints, over enough rolls, that one overlapping a roll is all but certain.
    while done < 30 && Instant::now() < deadline {
        result = l.checkpoint();
        if result.is_err() {
            break;
        }
        done += 1;
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let rolled = segment_count(dir.path());
    result.unwrap_or_else(|e| panic!("checkpoint {done} failed: {e}"));
    assert!(
        done >= 10,
        "only {done} checkpoints in 20 s ({rolled} segments)"
    );
}
