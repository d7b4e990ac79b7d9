//! Retention is decided once, by the live ledger's expiry pass, and written to the log as a
//! retention note (format v2, 2026-12-03): recovery and checkpoints prune at the same point
//! of the log, whatever the clock of the process replaying it says. Before, replay restored
//! every finished reservation and key the live ledger had pruned, and snapshots kept them
//! for ever (a checkpoint rebuilds from the previous snapshot and never pruned).

mod common;

use common::*;
use stockledger::{Durability, Source};

const DAY_MS: u64 = 24 * 3600 * 1000;

#[test]
fn what_the_live_ledger_pruned_stays_pruned_after_a_restart_and_in_snapshots() {
    for checkpoint in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        {
            let (l, clock) = on_disk(dir.path(), Durability::Sync);
            l.set_stock("A", "w", 10, Source::Warehouse).unwrap();
            l.reserve("old", &[line("A", "w", 1)], 900).unwrap();
            l.release("old").unwrap();
            l.adjust_stock("A", "w", 1, "adj-old", None, Source::Warehouse)
                .unwrap();
            clock.advance(DAY_MS + 1_000);
            l.reserve("recent", &[line("A", "w", 1)], 900).unwrap();
            l.release("recent").unwrap();
            assert!(l.expire_due().unwrap().is_empty());
            assert_eq!(l.reservation("old").unwrap(), None, "pruned live");
            if checkpoint {
                l.checkpoint().unwrap();
            }
            l.close().unwrap();
        }
        // The reopening process's clock is back at T0: the log says what was pruned.
        let (l, _) = on_disk(dir.path(), Durability::Sync);
        assert_eq!(
            l.reservation("old").unwrap(),
            None,
            "checkpoint {checkpoint}"
        );
        assert!(l.reservation("recent").unwrap().is_some());
        // The adjustment's key was forgotten too: its id applies again, as it would live.
        let before = l.stock("A", "w").unwrap().on_hand;
        l.adjust_stock("A", "w", 1, "adj-old", None, Source::Warehouse)
            .unwrap();
        assert_eq!(l.stock("A", "w").unwrap().on_hand, before + 1);
        l.check_invariants().unwrap();
    }
}

#[test]
fn a_restart_alone_prunes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (l, clock) = on_disk(dir.path(), Durability::Sync);
        l.set_stock("A", "w", 10, Source::Warehouse).unwrap();
        l.reserve("old", &[line("A", "w", 1)], 900).unwrap();
        l.release("old").unwrap();
        clock.advance(2 * DAY_MS);
        l.set_stock("A", "w", 11, Source::Warehouse).unwrap();
        l.close().unwrap();
    }
    // No expiry pass ran: retention is at least 24 h, and it is the live ledger's to decide.
    let (l, _) = on_disk(dir.path(), Durability::Sync);
    assert!(l.reservation("old").unwrap().is_some());
}

/// The clock stepped back: orders finished after the step carry earlier times than orders
/// finished before it. A pass must prune every finished order past its retention, wherever
/// it sits in its shard's queue, and a restart (from the log, or from a snapshot that
/// refills the queues in its own order) must keep exactly what the live ledger kept. Before
/// `aging.rs`, a pass stopped at the first entry of a queue not past the cutoff, so the
/// early orders behind a late one stayed live, and a restarted ledger (other shards, other
/// order) pruned a different set (the simulator's seed 71).
#[test]
fn a_clock_stepped_back_prunes_exactly_live_and_after_a_restart() {
    const N: usize = 300;
    let kept = |l: &stockledger::Ledger, prefix: &str| {
        (0..N)
            .filter(|i| l.reservation(&format!("{prefix}-{i}")).unwrap().is_some())
            .count()
    };
    for checkpoint_before_pass in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        {
            let (l, clock) = on_disk(dir.path(), Durability::Sync);
            l.set_stock("A", "w", 1_000_000, Source::Warehouse).unwrap();
            clock.advance(10 * 3600 * 1000);
            for i in 0..N {
                l.reserve(&format!("late-{i}"), &[line("A", "w", 1)], 900)
                    .unwrap();
                l.release(&format!("late-{i}")).unwrap();
            }
            // Back by ten hours: these finish "before" the ones above.
            clock.set(T0);
            for i in 0..N {
                l.reserve(&format!("early-{i}"), &[line("A", "w", 1)], 900)
                    .unwrap();
                l.release(&format!("early-{i}")).unwrap();
            }
            if checkpoint_before_pass {
                l.checkpoint().unwrap();
            }
            // Past the early ones' retention, not the late ones'.
            clock.set(T0 + DAY_MS + 3600 * 1000);
            l.expire_due().unwrap();
            assert_eq!(kept(&l, "early"), 0, "live, every early order is pruned");
            assert_eq!(kept(&l, "late"), N, "live, every late order is kept");
            l.close().unwrap();
        }
        let (l, _) = on_disk(dir.path(), Durability::Sync);
        assert_eq!(kept(&l, "early"), 0, "checkpoint {checkpoint_before_pass}");
        assert_eq!(kept(&l, "late"), N, "checkpoint {checkpoint_before_pass}");
        l.check_invariants().unwrap();
    }
}

fn payment<'a>(payment_id: &'a str, order_id: &'a str) -> stockledger::Payment<'a> {
    stockledger::Payment {
        payment_id,
        order_id,
        succeeded: true,
        amount_minor: 100,
        currency: "EUR",
    }
}

/// Finished orders are kept as compact records (`retained.rs`, 2026-12-04): what a record
/// holds (lines beyond the four a slot keeps inline, the longest id, the payment that paid
/// it) reads back the same live, after a restart from the log and from a snapshot, and
/// keeps answering idempotent retries, conflicts and second payments.
#[test]
fn a_finished_order_reads_back_whole_from_its_record_live_and_after_restarts() {
    use stockledger::PaymentAnswer;
    let long_id = "L".repeat(stockledger::limits::MAX_KEY_BYTES);
    let six: Vec<_> = (0..6).map(|i| line(&format!("S{i}"), "w", i + 1)).collect();
    for checkpoint in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let check = |l: &stockledger::Ledger, stage: &str| {
            let paid = l.reservation("paid").unwrap().expect("paid kept");
            assert_eq!(paid.status.as_str(), "paid", "{stage}");
            assert_eq!(paid.lines.len(), 2, "{stage}");
            let long = l.reservation(&long_id).unwrap().expect("long kept");
            assert_eq!(long.status.as_str(), "released", "{stage}");
            assert_eq!(long.lines.len(), 6, "{stage}");
            // The first payment again is answered as paid; another one is a double charge.
            assert_eq!(l.pay(payment("p1", "paid")).unwrap(), PaymentAnswer::Paid);
            let second = l.pay(payment(&format!("p2-{stage}"), "paid")).unwrap();
            assert_eq!(second, PaymentAnswer::RefundRequired, "{stage}");
            // A retry of the same lines is answered from the record; other lines conflict.
            let again = l.reserve(&long_id, &six, 900).unwrap();
            assert!(!again.created, "{stage}");
            assert_eq!(again.reservation.status.as_str(), "released", "{stage}");
            assert!(l.reserve(&long_id, &six[..5], 900).is_err(), "{stage}");
            l.check_invariants().unwrap();
        };
        {
            let (l, _) = on_disk(dir.path(), Durability::Sync);
            for i in 0..6 {
                l.set_stock(&format!("S{i}"), "w", 100, Source::Warehouse)
                    .unwrap();
            }
            l.reserve("paid", &six[..2], 900).unwrap();
            assert_eq!(l.pay(payment("p1", "paid")).unwrap(), PaymentAnswer::Paid);
            l.reserve(&long_id, &six, 900).unwrap();
            l.release(&long_id).unwrap();
            check(&l, "live");
            if checkpoint {
                l.checkpoint().unwrap();
            }
            l.close().unwrap();
        }
        let (l, _) = on_disk(dir.path(), Durability::Sync);
        check(&l, if checkpoint { "snapshot" } else { "log" });
    }
}
