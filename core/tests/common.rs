#![allow(dead_code)]
//! Helpers shared by the core's integration tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stockledger::{Command, Durability, Ledger, Line, ManualClock, Options, Source};

pub const T0: u64 = 1_800_000_000_000;

pub fn memory() -> (Ledger, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let ledger = Ledger::in_memory(Options {
        clock: clock.clone(),
        ..Options::default()
    });
    (ledger, clock)
}

pub fn on_disk(dir: &Path, durability: Durability) -> (Ledger, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let ledger = Ledger::open(
        dir,
        Options {
            durability,
            clock: clock.clone(),
            // Small segments: cheap to create in tests, and they roll.
            segment_bytes: 1 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    (ledger, clock)
}

pub fn line(sku: &str, wh: &str, qty: u64) -> Line {
    Line::new(sku, wh, qty)
}

/// The files of a ledger folder with this extension (`log`, `rkyv`), sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// A closed ledger of `n` reservations (of A/w, on hand 1,000) in one segment; returns the
/// segment's path.
pub fn ledger_with(dir: &Path, n: usize) -> PathBuf {
    let (l, _) = on_disk(dir, Durability::Sync);
    l.set_stock("A", "w", 1_000, Source::Warehouse).unwrap();
    for i in 0..n {
        l.reserve(&format!("o{i}"), &[line("A", "w", 1)], 900)
            .unwrap();
    }
    l.close().unwrap();
    files_with_ext(dir, "log").pop().unwrap()
}

/// The frames of a segment file (format v2: 48-byte frame headers): (start, size), walking
/// the length fields from the end of the 64-byte header to the first zero length (or the end of the file).
pub fn frames(segment: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut v = Vec::new();
    let mut at = 64;
    while at + 48 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if len == 0 || at + 48 + len > bytes.len() {
            break;
        }
        v.push((at, 48 + len));
        at += 48 + len;
    }
    v
}

/// A ledger folder whose every snapshot is damaged (a bit flipped at offset 100) and whose
/// log they cover is gone: 30,000 reservations through the batch entry point roll several
/// 1 MiB segments, and the second of two checkpoints removes what the first covers (the
/// previous snapshot and its log are kept). Returns the damaged snapshots.
pub fn damaged_snapshots_whose_log_is_gone(dir: &Path) -> Vec<PathBuf> {
    let snaps = snapshots_whose_log_is_gone(dir);
    for snap in &snaps {
        flip_a_bit(snap);
    }
    snaps
}

/// Flips one bit of a snapshot's payload (past its 64-byte header).
pub fn flip_a_bit(snap: &Path) {
    let mut b = std::fs::read(snap).unwrap();
    b[100] ^= 1;
    std::fs::write(snap, b).unwrap();
}

/// A ledger of 30,002 reservations whose log before its two snapshots was pruned; returns
/// the snapshots, oldest first.
pub fn snapshots_whose_log_is_gone(dir: &Path) -> Vec<PathBuf> {
    {
        let (l, _) = on_disk(dir, Durability::Sync);
        l.set_stock("A", "w", 1_000_000, Source::Warehouse).unwrap();
        for b in 0..30 {
            let batch: Vec<Command> = (0..1000)
                .map(|i| Command::Reserve {
                    order_id: format!("order-{b:03}-{i:05}"),
                    lines: vec![line("A", "w", 1)],
                    ttl_seconds: 900,
                })
                .collect();
            assert!(l.execute(&batch).unwrap().iter().all(|r| r.is_ok()));
        }
        l.checkpoint().unwrap();
        l.reserve("between", &[line("A", "w", 1)], 900).unwrap();
        l.checkpoint().unwrap();
        l.reserve("last", &[line("A", "w", 1)], 900).unwrap();
    }
    assert!(
        files_with_ext(dir, "log").len() < 3,
        "covered segments were removed"
    );
    files_with_ext(dir, "rkyv")
}
