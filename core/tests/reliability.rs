//! Regression tests for the failure paths of issue 10 (see docs/reliability.md).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use stockledger::wal::{Fault, FaultyStorage};
use stockledger::{Command, Durability, ErrorCode, Ledger, Options, Source};

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

/// Runs `f` on its own thread; `None` if it has not answered within `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

/// Defect 5: if the writer thread dies, writes fail (none hangs, none is acknowledged for
/// nothing) and the ledger says why.
#[test]
fn a_dead_writer_thread_poisons_the_ledger() {
    for durability in [Durability::Sync, Durability::Async] {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(
            Ledger::open(
                dir.path(),
                Options {
                    durability,
                    storage: Some(Arc::new(FaultyStorage::new(Fault::Panic, 3))),
                    segment_bytes: 1 << 20,
                    ..Options::default()
                },
            )
            .unwrap(),
        );
        let l2 = l.clone();
        let outcome = within(20, move || {
            // `async` acknowledges before the writer runs: keep writing until refused.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut i = 0u64;
            while Instant::now() < deadline {
                if let Err(e) = l2.set_stock("A", "w", i, Source::Warehouse) {
                    return Some((i, e));
                }
                i += 1;
            }
            None
        })
        .unwrap_or_else(|| panic!("{durability:?}: a write hangs on a dead writer"));
        let (i, e) = outcome.unwrap_or_else(|| {
            panic!("{durability:?}: writes acknowledged for 5 s by a dead writer")
        });
        assert_eq!(
            e.code(),
            ErrorCode::LedgerUnavailable,
            "{durability:?}/{i}: {e}"
        );
        let why = l.unavailable_reason().unwrap_or_default();
        assert!(why.contains("panicked"), "{why}");
        let l2 = l.clone();
        assert_eq!(within(10, move || l2.close().is_err()), Some(true));
    }
}

/// Defect 4: failing to start the next segment (create/open, rename of the spare, folder
/// fsync) writes no record, so it must not poison the ledger: the roll is retried.
#[test]
fn a_failed_roll_is_retried_instead_of_poisoning() {
    for fault in [Fault::OpenError, Fault::RenameError, Fault::SyncDirError] {
        for after in [1u64, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let storage = Arc::new(FaultyStorage::transient(fault, after, 3));
            let l = Ledger::open(
                dir.path(),
                Options {
                    storage: Some(storage.clone()),
                    segment_bytes: 1 << 20,
                    ..Options::default()
                },
            )
            .unwrap();
            // A roll renames the spare only when the background thread has it ready; on a
            // loaded machine many rolls create their segment directly, so allow many rolls
            // for the fault to fire.
            let mut b = 0;
            while segment_count(dir.path()) < 4
                || (!storage.fired() && segment_count(dir.path()) < 60)
            {
                let results = l
                    .execute(&stock_batch(b, 2000))
                    .unwrap_or_else(|e| panic!("{fault:?}/{after}: batch {b}: {e}"));
                assert!(results.iter().all(|r| r.is_ok()), "{fault:?}/{after}");
                b += 1;
            }
            assert!(storage.fired(), "{fault:?}/{after}: the fault never fired");
            assert_eq!(l.unavailable_reason(), None, "{fault:?}/{after}");
            let last = l.stock("S7", "w").unwrap().on_hand;
            l.close().unwrap();
            let (l, _) = on_disk(dir.path(), Durability::Sync);
            assert_eq!(l.stock("S7", "w").unwrap().on_hand, last);
            let seqs: Vec<u64> = stockledger::read_events(dir.path(), 0)
                .unwrap()
                .map(|e| e.unwrap().seq)
                .collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        }
    }
}

/// A ledger (sync) whose log spans at least `n` segments.
fn rolled(dir: &std::path::Path, n: usize) -> Ledger {
    let (l, _) = on_disk(dir, Durability::Sync);
    let mut b = 0;
    while segment_count(dir) < n {
        l.execute(&stock_batch(b, 2000)).unwrap();
        b += 1;
    }
    l
}

/// Makes `path` unreadable while keeping it present (a directory in its place, like an
/// EMFILE or EIO that passes); returns the closure that puts it back.
fn break_segment(path: &std::path::Path) -> impl FnOnce() {
    let aside = path.with_extension("aside");
    std::fs::rename(path, &aside).unwrap();
    std::fs::create_dir(path).unwrap();
    let path = path.to_path_buf();
    move || {
        std::fs::remove_dir(&path).unwrap();
        std::fs::rename(&aside, &path).unwrap();
    }
}

/// Defect 2: a segment that exists but cannot be read fails the read (to be retried); its
/// events are never skipped, by the live feed nor by `read_events`.
#[test]
fn an_unreadable_segment_fails_the_read_instead_of_being_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let l = rolled(dir.path(), 3);
    let last = l.last_seq();
    let middle = files_with_ext(dir.path(), "log")[1].clone();

    let mut repair = Some(break_segment(&middle));
    let (mut after, mut seqs) = (0, Vec::new());
    loop {
        match l.events(after, 10_000) {
            Ok(evs) if evs.is_empty() => break,
            Ok(evs) => {
                after = evs.last().unwrap().seq;
                seqs.extend(evs.iter().map(|e| e.seq));
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::LedgerUnavailable, "{e}");
                (repair.take().expect("a second failure after the repair"))();
            }
        }
    }
    assert!(repair.is_none(), "the broken segment was never noticed");
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());

    let mut repair = Some(break_segment(&middle));
    let mut reader = stockledger::read_events(dir.path(), 0).unwrap();
    let mut seqs = Vec::new();
    for e in reader.by_ref() {
        match e {
            Ok(e) => seqs.push(e.seq),
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::LedgerUnavailable, "{e}");
                (repair.take().expect("a second failure after the repair"))();
            }
        }
    }
    assert!(
        repair.is_none(),
        "read_events never noticed the broken segment"
    );
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
}

fn first_event(l: &Ledger, after: u64) -> stockledger::Result<u64> {
    Ok(l.events(after, 1)?.first().map_or(0, |e| e.seq))
}

/// Defect 3: events a checkpoint removed are answered with `EventsPruned` (and the oldest
/// seq still readable), never skipped; with a retention they are kept, across a restart too.
#[test]
fn pruned_events_are_reported_and_retained_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let l = rolled(dir.path(), 3);
    // The second checkpoint removes what the first snapshot covers (the first is kept).
    l.checkpoint().unwrap();
    l.checkpoint().unwrap();
    let e = first_event(&l, 0).unwrap_err();
    let oldest = match e {
        stockledger::Error::EventsPruned { oldest_seq } => oldest_seq,
        other => panic!("expected EventsPruned, got {other}"),
    };
    assert!(oldest > 1);
    assert_eq!(e.code().as_str(), "events_pruned");
    assert_eq!(first_event(&l, oldest - 1).unwrap(), oldest);
    drop(l);
    let (l, _) = on_disk(dir.path(), Durability::Sync);
    assert!(matches!(
        first_event(&l, 0),
        Err(stockledger::Error::EventsPruned { oldest_seq }) if oldest_seq == oldest
    ));
    drop(l);

    let dir = tempfile::tempdir().unwrap();
    let l = rolled(dir.path(), 3);
    l.retain_events_for(Duration::from_secs(3600));
    l.checkpoint().unwrap();
    l.checkpoint().unwrap();
    assert_eq!(
        segment_count(dir.path()),
        3,
        "retained segments were removed"
    );
    assert_eq!(first_event(&l, 0).unwrap(), 1);
    drop(l);
    // After a restart the retained (snapshot-covered) segments are still readable.
    let (l, _) = on_disk(dir.path(), Durability::Sync);
    assert_eq!(first_event(&l, 0).unwrap(), 1);
    l.retain_events_for(Duration::from_secs(3600));
    l.checkpoint().unwrap();
    assert_eq!(first_event(&l, 0).unwrap(), 1);
}

/// Defect 6: a payment note replayed from the log keeps its time, so the first expiry pass
/// after a restart does not prune its key (a conflicting callback stays a conflict).
#[test]
fn a_replayed_payment_note_keeps_its_key_until_retention() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (l, clock) = on_disk(dir.path(), Durability::Sync);
        l.set_stock("A", "w", 10, Source::Warehouse).unwrap();
        l.reserve("o1", &[line("A", "w", 1)], 900).unwrap();
        l.release("o1").unwrap();
        clock.advance(1_000);
        // A failed callback for a released order: answered with a payment note.
        let p = stockledger::Payment {
            payment_id: "p1",
            order_id: "o1",
            succeeded: false,
            amount_minor: 100,
            currency: "EUR",
        };
        assert_eq!(l.pay(p).unwrap(), stockledger::PaymentAnswer::Released);
        l.close().unwrap();
    }
    let (l, clock) = on_disk(dir.path(), Durability::Sync);
    clock.advance(60_000);
    l.expire_due().unwrap();
    let conflicting = stockledger::Payment {
        payment_id: "p1",
        order_id: "o1",
        succeeded: true,
        amount_minor: 100,
        currency: "EUR",
    };
    let e = l.pay(conflicting).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PaymentConflict, "{e}");
}

/// A clock that moves one millisecond each time it is read.
struct TickingClock(std::sync::atomic::AtomicU64);

impl stockledger::Clock for TickingClock {
    fn now_ms(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

fn payment<'a>(
    payment_id: &'a str,
    order_id: &'a str,
    succeeded: bool,
) -> stockledger::Payment<'a> {
    stockledger::Payment {
        payment_id,
        order_id,
        succeeded,
        amount_minor: 100,
        currency: "EUR",
    }
}

/// Defect 11: a callback checked one millisecond before the expiry and committed in it is a
/// late payment (paid again, or refund), never a 409.
#[test]
fn a_payment_in_the_expiry_millisecond_takes_the_late_payment_path() {
    let clock = Arc::new(TickingClock(std::sync::atomic::AtomicU64::new(T0)));
    let l = Ledger::in_memory(Options {
        clock: clock.clone(),
        ..Options::default()
    });
    l.set_stock("A", "w", 10, Source::Warehouse).unwrap();
    let r = l.reserve("o1", &[line("A", "w", 1)], 1).unwrap();
    let expires = r.reservation.expires_at;
    // The payment path's first read gives expires - 1, the next ones expires and later.
    clock.0.store(expires - 1, Ordering::SeqCst);
    let answer = l
        .pay(payment("p1", "o1", true))
        .unwrap_or_else(|e| panic!("a payment in the expiry millisecond was refused: {e}"));
    assert_eq!(answer, stockledger::PaymentAnswer::Paid);
    assert_eq!(l.stock("A", "w").unwrap().on_hand, 9);
    l.check_invariants().unwrap();
}

/// Defect 11: a `failed` callback for a reservation already past its expiry treats it as
/// expired (answer `expired`), not as released by the payment.
#[test]
fn a_failed_payment_after_the_expiry_is_an_expiry() {
    let (l, clock) = memory();
    l.set_stock("A", "w", 10, Source::Warehouse).unwrap();
    l.reserve("o1", &[line("A", "w", 1)], 60).unwrap();
    clock.advance(61_000);
    let answer = l.pay(payment("p1", "o1", false)).unwrap();
    assert_eq!(answer, stockledger::PaymentAnswer::Expired);
    let r = l.reservation("o1").unwrap().unwrap();
    assert_eq!(r.status, stockledger::Status::Expired);
    assert_eq!(l.stock("A", "w").unwrap().available, 10);
    // Its replay gets the same answer.
    assert_eq!(
        l.pay(payment("p1", "o1", false)).unwrap(),
        stockledger::PaymentAnswer::Expired
    );
    let types: Vec<String> = l
        .events(0, 100)
        .unwrap()
        .iter()
        .map(|e| e.to_json()["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        !types.iter().any(|t| t == "order.payment_failed"),
        "{types:?}"
    );
}

/// Defect 9: the previous snapshot and the log after it are kept, so a damaged newest
/// snapshot falls back to it and loses nothing.
#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let (last, expect) = {
        let l = rolled(dir.path(), 3);
        l.checkpoint().unwrap();
        let mut b = 1_000;
        while segment_count(dir.path()) < 6 {
            l.execute(&stock_batch(b, 2000)).unwrap();
            b += 1;
        }
        l.checkpoint().unwrap();
        l.set_stock("S0", "w", 7, Source::Warehouse).unwrap();
        let expect: Vec<u64> = (0..8)
            .map(|i| l.stock(&format!("S{i}"), "w").unwrap().on_hand)
            .collect();
        (l.last_seq(), expect)
    };
    let snaps = files_with_ext(dir.path(), "rkyv");
    assert_eq!(snaps.len(), 2, "the previous snapshot was removed");
    let newest = snaps.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x5a;
    std::fs::write(newest, bytes).unwrap();
    let (l, _) = on_disk(dir.path(), Durability::Sync);
    assert_eq!(l.last_seq(), last);
    let got: Vec<u64> = (0..8)
        .map(|i| l.stock(&format!("S{i}"), "w").unwrap().on_hand)
        .collect();
    assert_eq!(got, expect);
    l.check_invariants().unwrap();
}

/// Defect 7 (core side): `wait_durable` returns only once every change made so far is in
/// the log, in `async` mode too (the stock feed commits its Kafka offsets after it).
#[test]
fn wait_durable_covers_every_change_made_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = on_disk(dir.path(), Durability::Async);
    for round in 0..20u64 {
        for i in 0..500u64 {
            l.set_stock("A", "w", round * 1000 + i, Source::Warehouse)
                .unwrap();
        }
        l.wait_durable().unwrap();
        // Read from the folder, as a restart would: every change is there.
        let n = stockledger::read_events(dir.path(), 0).unwrap().count() as u64;
        assert_eq!(n, (round + 1) * 500, "round {round}");
    }
}

/// Defect 12: a sku's totals over many cells saturate instead of wrapping around.
#[test]
fn sku_totals_over_many_cells_saturate() {
    let (l, _) = memory();
    let max = stockledger::limits::MAX_ON_HAND;
    for w in 0..2100 {
        l.set_stock("A", &format!("w{w}"), max, Source::Warehouse)
            .unwrap();
    }
    let s = l.sku_stock("A").unwrap().unwrap();
    assert_eq!(s.warehouses.len(), 2100);
    assert_eq!(s.total.on_hand, u64::MAX);
    assert_eq!(s.total.available, u64::MAX);
}

fn ids(dir: &std::path::Path) -> Vec<(u64, String)> {
    stockledger::read_events(dir, 0)
        .unwrap()
        .map(|e| e.map(|e| (e.seq, e.event_id)).unwrap())
        .collect()
}

/// Defect 8: seqs given again after `truncate_corrupt_tail` cut the log get event_ids the
/// dropped events never had; kept events keep theirs; ids are stable across restarts.
#[test]
fn seqs_given_again_after_a_truncation_get_new_event_ids() {
    let dir = tempfile::tempdir().unwrap();
    let seg = ledger_with(dir.path(), 10);
    let before = ids(dir.path());
    assert_eq!(before.len(), 11);
    // Damage the 6th frame.
    let at = frames(&seg)[5].0;
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[at + 30] ^= 0x10;
    std::fs::write(&seg, bytes).unwrap();
    let l = Ledger::open(
        dir.path(),
        Options {
            truncate_corrupt_tail: true,
            segment_bytes: 1 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    let kept = l.last_seq();
    assert_eq!(kept, 5);
    for i in 0..3 {
        l.reserve(&format!("n{i}"), &[line("A", "w", 1)], 900)
            .unwrap();
    }
    l.close().unwrap();
    drop(l);
    let after = ids(dir.path());
    assert_eq!(after.len(), 8);
    assert_eq!(after[..5], before[..5], "kept events changed ids");
    for (seq, id) in &after[5..] {
        let old = &before[*seq as usize - 1];
        assert_eq!(old.0, *seq);
        assert_ne!(&old.1, id, "seq {seq} reuses a dropped event's id");
    }
    // Stable on redelivery: the same ids after a restart, and from the live feed.
    let (l, _) = on_disk(dir.path(), Durability::Sync);
    let live: Vec<(u64, String)> = l
        .events(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.event_id))
        .collect();
    assert_eq!(live, after);
}

/// Defect 8 (cursor side): after `new_epoch` (the publisher's cursor clamp), events get ids
/// no earlier event had; earlier ones keep theirs; both survive a restart unchanged.
#[test]
fn a_new_epoch_gives_new_event_ids_and_keeps_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let (l, _) = on_disk(dir.path(), Durability::Sync);
        l.set_stock("A", "w", 100, Source::Warehouse).unwrap();
        first = ids(dir.path());
        l.new_epoch().unwrap();
        // Twice in a row, with no record in between, too.
        l.new_epoch().unwrap();
        l.set_stock("A", "w", 50, Source::Warehouse).unwrap();
        l.close().unwrap();
    }
    let all = ids(dir.path());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], first[0]);
    assert!(all[1].1.contains(".2-"), "{:?}", all[1]);
    let (l, _) = on_disk(dir.path(), Durability::Sync);
    l.set_stock("A", "w", 40, Source::Warehouse).unwrap();
    let live: Vec<(u64, String)> = l
        .events(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.event_id))
        .collect();
    assert_eq!(live[..2], all[..]);
    assert!(
        live[2].1.contains(".2-"),
        "the epoch was lost at restart: {:?}",
        live[2]
    );
}

/// Every `sync` caller is woken once its record is durable, however many wait on one
/// fsync: the writer unparks a few and each woken caller unparks a few more, so a caller
/// left out of that chain would wait forever (the deadline turns the hang into a failure).
#[test]
fn every_one_of_many_sync_callers_is_woken() {
    const CALLERS: usize = 64;
    const EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _clock) = on_disk(dir.path(), Durability::Sync);
    let ledger = Arc::new(ledger);
    ledger
        .set_stock("s", "w", 1_000_000, Source::Warehouse)
        .unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    for c in 0..CALLERS {
        let (ledger, done) = (ledger.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..EACH {
                let line = [line("s", "w", 1)];
                ledger
                    .reserve_ack(&format!("c{c}-{i}"), &line, 900)
                    .unwrap();
            }
            done.send(c).unwrap();
        });
    }
    for _ in 0..CALLERS {
        finished
            .recv_timeout(Duration::from_secs(120))
            .expect("a sync caller was never woken");
    }
    let stats = ledger.stats();
    assert_eq!(stats.reservations, CALLERS * EACH);
    assert!(
        stats.fsyncs < (CALLERS * EACH) as u64,
        "no group commit: {stats:?}"
    );
}
