//! `stockledgerd verify|log|snapshot|stock|repair` (operations.md), run as the real binary on
//! healthy, damaged and locked ledger folders.

mod http_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use stockledger::{Durability, Ledger, Line, Options, Source};

use http_common::{segments, Server, TOK1};

fn admin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stockledgerd"))
        .args(args)
        .output()
        .expect("run stockledgerd")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Every file of the folder and its bytes (to prove a command changed nothing).
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// A closed ledger: two cells of A1, one paid, one live, one released order, a snapshot in
/// the middle. Returns its last seq.
fn healthy(dir: &Path) -> u64 {
    let l = Ledger::open(dir, Options::default()).unwrap();
    l.set_stock("A1", "kol", 10, Source::Warehouse).unwrap();
    l.set_stock("A1", "waw", 5, Source::Warehouse).unwrap();
    l.reserve("o-1", &[Line::new("A1", "kol", 2)], 900).unwrap();
    l.commit("o-1").unwrap();
    l.reserve("o-2", &[Line::new("A1", "waw", 1)], 900).unwrap();
    l.checkpoint().unwrap();
    l.reserve("o-3", &[Line::new("A1", "kol", 3)], 900).unwrap();
    l.release("o-3").unwrap();
    let last = l.last_seq();
    l.close().unwrap();
    last
}

#[test]
fn a_healthy_folder_verifies_and_reads_back_without_being_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let last = healthy(&dir);
    assert!(last >= 7, "{last}");
    let before = contents(&dir);

    let o = admin(&["verify", s(&dir)]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains(&format!("last seq {last}")), "{out}");
    assert!(out.contains("invariants 1-3 hold"), "{out}");

    let o = admin(&["stock", s(&dir), "A1", "--json"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["on_hand"], 13, "{v}");
    assert_eq!(v["reserved"], 1, "{v}");
    assert_eq!(v["available"], 12, "{v}");
    assert_eq!(v["warehouses"][0]["warehouse"], "kol");
    assert_eq!(v["warehouses"][0]["on_hand"], 8);
    assert_eq!(v["warehouses"][1]["reserved"], 1);
    let o = admin(&["stock", s(&dir), "A1"]);
    assert!(text(&o).0.contains("total"), "{:?}", text(&o));

    let events = json_lines(&admin(&["log", s(&dir), "--json"]));
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"order.paid") && kinds.contains(&"reservation.released"));
    let after = json_lines(&admin(&[
        "log",
        s(&dir),
        "--json",
        "--after",
        "3",
        "--limit",
        "2",
    ]));
    assert_eq!(after.len(), 2);
    assert_eq!(after[0]["seq"], 4);
    let plain = admin(&["log", s(&dir)]);
    assert_eq!(text(&plain).0.lines().count() as u64, last);
    assert!(text(&plain).0.contains("reservation.created"));

    let records = json_lines(&admin(&["log", s(&dir), "--records", "--json"]));
    assert!(!records.is_empty());
    let lsns: Vec<u64> = records.iter().map(|r| r["lsn"].as_u64().unwrap()).collect();
    assert!(lsns.windows(2).all(|w| w[1] == w[0] + 1), "{lsns:?}");
    assert_eq!(records[0]["offset"], 64);

    let o = admin(&["snapshot", s(&dir)]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0, "{out}");
    assert!(
        out.contains("snapshot-") && out.contains("used by recovery"),
        "{out}"
    );
    assert!(out.contains("events up to seq 5"), "{out}");

    assert!(
        before == contents(&dir),
        "a read-only subcommand changed the folder"
    );

    // Bad input: a clear error, exit 2 (usage) or 1 (folder).
    assert_eq!(code(&admin(&["stock", s(&dir)])), 2);
    assert_eq!(code(&admin(&["stock", s(&dir), "bad sku!"])), 2);
    assert_eq!(code(&admin(&["log", s(&dir), "--after", "x"])), 2);
    assert_eq!(code(&admin(&["log", s(&dir), "--bogus"])), 2);
    // A subcommand is recognised only as the first argument: elsewhere it is the flag
    // parser's business, as before.
    let o = admin(&["--data-dir", s(&dir), "verify"]);
    assert_eq!(code(&o), 2, "{:?}", text(&o));
    assert!(text(&o).1.contains("unexpected argument"), "{:?}", text(&o));
    let o = admin(&["stock", s(&dir), "NOPE"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).1.contains("not found"), "{:?}", text(&o));
    let o = admin(&["verify", s(&tmp.path().join("missing"))]);
    assert_eq!(code(&o), 1);
    assert!(
        !tmp.path().join("missing").exists(),
        "verify created a folder"
    );
    assert!(before == contents(&dir));
}

#[test]
fn a_flipped_byte_is_reported_with_file_and_offset_and_repair_cuts_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let l = Ledger::open(&dir, Options::default()).unwrap();
    for i in 0..10 {
        l.set_stock(&format!("S{i}"), "w", 10 + i, Source::Warehouse)
            .unwrap();
    }
    l.close().unwrap();
    let records = json_lines(&admin(&["log", s(&dir), "--records", "--json"]));
    assert_eq!(records.len(), 10);
    let victim = &records[4];
    let offset = victim["offset"].as_u64().unwrap();
    let seg = segments(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[offset as usize + 30] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();

    let o = admin(&["verify", s(&dir)]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&name) && err.contains(&format!("at offset {offset}")),
        "{err}"
    );
    assert!(err.contains("checksum"), "{err}");
    // The service would refuse it too.
    assert!(Ledger::open(&dir, Options::default()).is_err());

    assert_eq!(
        code(&admin(&["repair", s(&dir)])),
        2,
        "repair without the flag"
    );
    let o = admin(&["repair", s(&dir), "--truncate-corrupt-tail"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    assert!(text(&o).0.contains("ends at seq 4"), "{:?}", text(&o));
    let o = admin(&["verify", s(&dir)]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let events = json_lines(&admin(&["log", s(&dir), "--json"]));
    assert_eq!(events.len(), 4);
    let o = admin(&["stock", s(&dir), "S5"]);
    assert_eq!(code(&o), 1, "S5 was after the damage: {:?}", text(&o));

    // The repaired folder takes writes again.
    let l = Ledger::open(&dir, Options::default()).unwrap();
    l.set_stock("S9", "w", 1, Source::Warehouse).unwrap();
    l.close().unwrap();
    assert_eq!(code(&admin(&["verify", s(&dir)])), 0);
}

#[test]
fn truncated_segments_a_torn_tail_passes_a_cut_middle_segment_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let options = Options {
        durability: Durability::Async,
        segment_bytes: 1 << 20,
        ..Options::default()
    };
    let l = Ledger::open(&dir, options).unwrap();
    let mut i = 0u64;
    while segments(&dir).len() < 3 && i < 200_000 {
        l.set_stock(&format!("K{}", i % 500), "w", i, Source::Warehouse)
            .unwrap();
        i += 1;
    }
    l.close().unwrap();
    let segs = segments(&dir);
    assert!(segs.len() >= 3, "{i} writes gave {} segments", segs.len());
    assert_eq!(code(&admin(&["verify", s(&dir)])), 0);

    // The last segment cut inside its last frame: a write never acknowledged (torn tail).
    let records = json_lines(&admin(&["log", s(&dir), "--records", "--json"]));
    let last = records.last().unwrap();
    let last_file = dir.join(last["file"].as_str().unwrap());
    let cut = last["offset"].as_u64().unwrap() + 10;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&last_file)
        .unwrap();
    f.set_len(cut).unwrap();
    drop(f);
    let o = admin(&["verify", s(&dir)]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(err.contains("torn tail"), "{err}");

    // A segment that is not the last cut in half: corruption, named.
    let first = &segs[0];
    let len = std::fs::metadata(first).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(first).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    let o = admin(&["verify", s(&dir)]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&name) && err.contains("not the last"), "{err}");
}

#[test]
fn a_folder_held_by_a_running_service_is_read_without_its_lock_and_not_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[]);
    assert_eq!(server.set_stock(TOK1, "B7", "kol", 20).status, 200);
    for i in 0..5 {
        let r = server.reserve(&format!("ord-{i}"), &[("B7", "kol", 2)], None);
        assert!(r.status == 200 || r.status == 201, "{}", r.status);
    }

    let o = admin(&["verify", s(&dir)]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(out.contains("held by a running service"), "{out}");

    let o = admin(&["stock", s(&dir), "B7", "--json"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(
        (v["on_hand"].as_u64(), v["reserved"].as_u64()),
        (Some(20), Some(10)),
        "{v}"
    );

    let events = json_lines(&admin(&["log", s(&dir), "--json"]));
    assert_eq!(events.len(), 6, "{events:?}");
    assert_eq!(code(&admin(&["snapshot", s(&dir)])), 0);

    let o = admin(&["repair", s(&dir), "--truncate-corrupt-tail"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(err.contains("LOCK") && err.contains("locked"), "{err}");

    // The service kept its lock and still serves writes.
    let r = server.reserve("ord-after", &[("B7", "kol", 1)], None);
    assert!(r.status == 200 || r.status == 201, "{}", r.status);
    drop(server);
}

#[test]
fn verify_beside_a_service_that_is_writing_never_reports_its_tail_as_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = std::sync::Arc::new(Server::start_in(&dir, &[]));
    assert_eq!(server.set_stock(TOK1, "W1", "kol", 1_000_000).status, 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = server.reserve(&format!("w{t}-{n}"), &[("W1", "kol", 1)], None);
                    assert_eq!(r.status, 201);
                    n += 1;
                }
                n
            })
        })
        .collect();
    for _ in 0..5 {
        let o = admin(&["verify", s(&dir)]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{out}{err}");
        assert!(out.contains("held by a running service"), "{out}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(written > 0);
    let o = admin(&["stock", s(&dir), "W1", "--json"]);
    assert_eq!(json_lines(&o)[0]["reserved"].as_u64(), Some(written));
}
