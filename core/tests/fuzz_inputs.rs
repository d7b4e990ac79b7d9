//! The fuzz targets' entry points on stable `cargo test`: every committed seed and regression
//! input (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`) is replayed, and real log
//! frames and snapshots written by a ledger, plus deterministic damage of them (bit flips,
//! cuts, zeroed ranges), must be refused or restored, never panic. The long runs are
//! cargo-fuzz's (`fuzz/README.md`, `docs/reliability.md`).
//!
//! `STOCKLEDGER_WRITE_FUZZ_SEEDS=1` (re)writes the seed files from a fresh ledger.

mod common;
#[path = "support/fuzz_files.rs"]
mod fuzz_files;

use std::path::Path;

use common::*;
use fuzz_files::{files, fuzz_dir};
use stockledger::wal::{fuzz_decode, fuzz_replay, fuzz_snapshot};
use stockledger::{Durability, Source};

/// Runs one input through a target's entry point exactly as its `fuzz_target!` does.
fn run_target(target: &str, data: &[u8]) {
    match target {
        "replay" => {
            let _ = fuzz_replay(data);
        }
        "decode" => {
            if let Some((&n, rest)) = data.split_first() {
                let _ = fuzz_decode(rest, n as u16 % 8);
            }
        }
        "snapshot" => {
            let _ = fuzz_snapshot(data);
        }
        other => panic!("unknown fuzz target {other}"),
    }
}

#[test]
fn committed_seeds_and_regressions_do_not_panic() {
    let mut n = 0;
    for target in ["replay", "decode", "snapshot"] {
        n += fuzz_files::replay(target, |data| run_target(target, data));
    }
    assert!(n >= 3, "the committed seeds are missing ({n} files)");
}

/// A ledger folder with records of every kind and a snapshot; returns (frames of the first
/// segment without its header and trailing zeros, the snapshot file's bytes).
fn real_inputs(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    {
        let (l, clock) = on_disk(dir, Durability::Sync);
        l.set_stock("A", "w1", 50, Source::Warehouse).unwrap();
        l.set_stock("B", "w2", 9, Source::Seller("s1")).unwrap();
        l.adjust_stock("A", "w1", -3, "adj-1", Some("count"), Source::Warehouse)
            .unwrap();
        l.reserve("o1", &[line("A", "w1", 2), line("B", "w2", 1)], 60)
            .unwrap();
        l.reserve("o2", &[line("A", "w1", 1)], 60).unwrap();
        l.reserve("o3", &[line("B", "w2", 2)], 1).unwrap();
        l.commit("o1").unwrap();
        l.release("o2").unwrap();
        clock.advance(2_000);
        assert_eq!(l.expire_due().unwrap(), vec!["o3".to_string()]);
        l.checkpoint().unwrap();
        l.reserve("o4", &[line("A", "w1", 4)], 900).unwrap();
        l.close().unwrap();
    }
    let mut seg = Vec::new();
    let mut snap = Vec::new();
    for f in files(dir) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".log") && seg.is_empty() {
            let bytes = std::fs::read(&f).unwrap();
            let end = bytes.iter().rposition(|&b| b != 0).map_or(64, |i| i + 1);
            seg = bytes[64..end.max(64)].to_vec();
        } else if name.ends_with(".rkyv") {
            snap = std::fs::read(&f).unwrap();
        }
    }
    assert!(
        !seg.is_empty() && !snap.is_empty(),
        "no segment or snapshot"
    );
    (seg, snap)
}

/// Deterministic damage: every single-bit flip over a stride, cuts at every length over a
/// stride, zeroed windows.
fn damaged(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let stride = (bytes.len() / 400).max(1);
    for at in (0..bytes.len()).step_by(stride) {
        for bit in [0, 3, 7] {
            let mut b = bytes.to_vec();
            b[at] ^= 1 << bit;
            out.push(b);
        }
        out.push(bytes[..at].to_vec());
        let mut z = bytes.to_vec();
        z[at..(at + 16).min(bytes.len())].fill(0);
        out.push(z);
        let mut ff = bytes.to_vec();
        ff[at..(at + 8).min(bytes.len())].fill(0xFF);
        out.push(ff);
    }
    out
}

#[test]
fn real_frames_and_snapshots_and_their_damage_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, snap) = real_inputs(dir.path());
    // The undamaged inputs go all the way through (the entry points are not vacuous).
    assert!(
        fuzz_replay(&seg) >= 9,
        "every record of the segment applies"
    );
    assert!(fuzz_snapshot(&snap), "a real snapshot restores");
    let snap_payload = &snap[32..];
    assert!(fuzz_snapshot(snap_payload), "its archive alone restores");
    let mut runs = 0;
    for d in damaged(&seg) {
        run_target("replay", &d);
        runs += 1;
    }
    for d in damaged(&snap).into_iter().chain(damaged(snap_payload)) {
        run_target("snapshot", &d);
        runs += 1;
    }
    // The first record's entries: after the 48-byte frame header and the 8-byte record header.
    for d in damaged(&seg[56..seg.len().min(56 + 200)]) {
        for n in 0..8u8 {
            let mut input = vec![n];
            input.extend_from_slice(&d);
            run_target("decode", &input);
            runs += 1;
        }
    }
    assert!(runs > 1_000, "{runs}");

    if std::env::var("STOCKLEDGER_WRITE_FUZZ_SEEDS").is_ok() {
        let seeds = fuzz_dir().join("seeds");
        for (target, name, bytes) in [
            ("replay", "real-segment", seg.clone()),
            ("snapshot", "real-snapshot", snap.clone()),
            ("snapshot", "real-archive", snap_payload.to_vec()),
            ("decode", "real-payload", {
                let len = u32::from_le_bytes(seg[48..52].try_into().unwrap()) as usize;
                let mut v = vec![1u8];
                v.extend_from_slice(&seg[56..56 + len]);
                v
            }),
        ] {
            let d = seeds.join(target);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(name), bytes).unwrap();
        }
    }
}
