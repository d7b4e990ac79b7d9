//! One test per error code of `domain.md` (those the library decides), plus the limits.

mod common;

use common::*;
use stockledger::{Error, ErrorCode, Payment, PaymentAnswer, Shortfall, Source, Status};

fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorCode {
    r.expect_err("expected an error").code()
}

#[test]
fn invalid_request_names_the_field() {
    let (l, _) = memory();
    let cases: Vec<(Result<_, Error>, &str)> = vec![
        (
            l.reserve("", &[line("A", "w", 1)], 900).map(|_| ()),
            "order_id",
        ),
        (
            l.reserve("o 1", &[line("A", "w", 1)], 900).map(|_| ()),
            "order_id",
        ),
        (
            l.reserve(&"x".repeat(129), &[line("A", "w", 1)], 900)
                .map(|_| ()),
            "order_id",
        ),
        (l.reserve("o", &[], 900).map(|_| ()), "lines"),
        (
            l.reserve("o", &vec![line("A", "w", 1); 101], 900)
                .map(|_| ()),
            "lines",
        ),
        (
            l.reserve("o", &[line("A", "w", 1), line("B", "w", 0)], 900)
                .map(|_| ()),
            "lines[1].qty",
        ),
        (
            l.reserve("o", &[line("A", "w", 1_000_001)], 900)
                .map(|_| ()),
            "lines[0].qty",
        ),
        (
            l.reserve("o", &[line("A/", "w", 1)], 900).map(|_| ()),
            "lines[0].sku",
        ),
        (
            l.reserve("o", &[line("A", &"w".repeat(65), 1)], 900)
                .map(|_| ()),
            "lines[0].warehouse",
        ),
        (
            l.reserve("o", &[line("A", "w", 1), line("A", "w", 2)], 900)
                .map(|_| ()),
            "lines[1]",
        ),
        (
            l.reserve("o", &[line("A", "w", 1)], 0).map(|_| ()),
            "ttl_seconds",
        ),
        (
            l.reserve("o", &[line("A", "w", 1)], 604_801).map(|_| ()),
            "ttl_seconds",
        ),
        (
            l.set_stock("A", "w", 9_007_199_254_740_992, Source::Warehouse)
                .map(|_| ()),
            "on_hand",
        ),
        (
            l.adjust_stock("A", "w", 0, "a", None, Source::Warehouse)
                .map(|_| ()),
            "delta",
        ),
        (
            l.adjust_stock("A", "w", 1, "", None, Source::Warehouse)
                .map(|_| ()),
            "adjustment_id",
        ),
        (
            l.adjust_stock("A", "w", 1, "a", Some(&"r".repeat(257)), Source::Warehouse)
                .map(|_| ()),
            "reason",
        ),
        (l.stock("", "w").map(|_| ()), "sku"),
    ];
    for (r, field) in cases {
        match r {
            Err(Error::InvalidRequest { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected invalid_request on {field}, got {other:?}"),
        }
    }
    // Nothing changed: no sku became known.
    assert_eq!(l.sku_stock("A").unwrap(), None);
    assert_eq!(l.stats().reservations, 0);
}

#[test]
fn insufficient_stock_lists_every_short_line_and_changes_nothing() {
    let (l, _) = memory();
    l.set_stock("A", "w", 5, Source::Warehouse).unwrap();
    l.set_stock("B", "w", 1, Source::Warehouse).unwrap();
    l.set_stock("C", "w", 9, Source::Warehouse).unwrap();
    let err = l
        .reserve(
            "o",
            &[
                line("A", "w", 6),
                line("C", "w", 2),
                line("B", "w", 2),
                line("Z", "w", 1),
            ],
            900,
        )
        .unwrap_err();
    let Error::InsufficientStock { shortfalls } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        shortfalls,
        vec![
            Shortfall {
                sku: "A".into(),
                warehouse: "w".into(),
                requested: 6,
                available: 5
            },
            Shortfall {
                sku: "B".into(),
                warehouse: "w".into(),
                requested: 2,
                available: 1
            },
            Shortfall {
                sku: "Z".into(),
                warehouse: "w".into(),
                requested: 1,
                available: 0
            },
        ]
    );
    assert_eq!(l.stock("C", "w").unwrap().reserved, 0);
    assert_eq!(l.reservation("o").unwrap(), None);
}

#[test]
fn order_conflict_and_idempotent_replay_in_any_line_order() {
    let (l, _) = memory();
    l.set_stock("A", "w", 5, Source::Warehouse).unwrap();
    l.set_stock("B", "w", 5, Source::Warehouse).unwrap();
    let first = l
        .reserve("o", &[line("A", "w", 1), line("B", "w", 2)], 900)
        .unwrap();
    assert!(first.created);
    let again = l
        .reserve("o", &[line("B", "w", 2), line("A", "w", 1)], 60)
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.reservation, first.reservation);
    assert_eq!(l.stock("A", "w").unwrap().reserved, 1);
    assert_eq!(
        code(l.reserve("o", &[line("A", "w", 2), line("B", "w", 2)], 900)),
        ErrorCode::OrderConflict
    );
    assert_eq!(
        code(l.reserve("o", &[line("A", "w", 1)], 900)),
        ErrorCode::OrderConflict
    );
    assert_eq!(
        code(l.reserve("o", &[line("A", "w", 1), line("Q", "w", 2)], 900)),
        ErrorCode::OrderConflict
    );
}

#[test]
fn order_not_found_not_active_and_paid() {
    let (l, clock) = memory();
    l.set_stock("A", "w", 5, Source::Warehouse).unwrap();
    assert_eq!(code(l.commit("nope")), ErrorCode::OrderNotFound);
    assert_eq!(code(l.release("nope")), ErrorCode::OrderNotFound);
    l.reserve("r", &[line("A", "w", 1)], 900).unwrap();
    assert_eq!(l.release("r").unwrap().status, Status::Released);
    assert_eq!(l.release("r").unwrap().status, Status::Released);
    assert_eq!(code(l.commit("r")), ErrorCode::OrderNotActive);
    l.reserve("p", &[line("A", "w", 1)], 900).unwrap();
    assert_eq!(l.commit("p").unwrap().status, Status::Paid);
    assert_eq!(l.commit("p").unwrap().status, Status::Paid);
    assert_eq!(code(l.release("p")), ErrorCode::OrderPaid);
    // Past expires_at but not yet processed: not active either.
    l.reserve("e", &[line("A", "w", 1)], 10).unwrap();
    clock.advance(10_000);
    assert_eq!(code(l.commit("e")), ErrorCode::OrderNotActive);
    assert_eq!(l.expire_due().unwrap(), vec!["e".to_string()]);
    assert_eq!(l.reservation("e").unwrap().unwrap().status, Status::Expired);
    assert_eq!(code(l.commit("e")), ErrorCode::OrderNotActive);
    assert_eq!(l.release("e").unwrap().status, Status::Expired);
    let a = l.stock("A", "w").unwrap();
    assert_eq!((a.on_hand, a.reserved, a.available), (4, 0, 4));
}

#[test]
fn below_reserved_on_set_and_adjust() {
    let (l, _) = memory();
    l.set_stock("A", "w", 5, Source::Warehouse).unwrap();
    l.reserve("o", &[line("A", "w", 4)], 900).unwrap();
    match l.set_stock("A", "w", 3, Source::Warehouse) {
        Err(Error::BelowReserved {
            on_hand: 5,
            reserved: 4,
            requested_on_hand: 3,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(l.adjust_stock("A", "w", -2, "a1", None, Source::Warehouse)),
        ErrorCode::BelowReserved
    );
    assert_eq!(
        code(l.adjust_stock("N", "w", -1, "a2", None, Source::Warehouse)),
        ErrorCode::BelowReserved
    );
    assert_eq!(
        l.sku_stock("N").unwrap(),
        None,
        "a refused write must not create the sku"
    );
    assert_eq!(
        l.set_stock("A", "w", 4, Source::Warehouse)
            .unwrap()
            .available,
        0
    );
}

#[test]
fn adjustment_replay_and_conflict() {
    let (l, _) = memory();
    l.set_stock("A", "w", 5, Source::Warehouse).unwrap();
    assert_eq!(
        l.adjust_stock("A", "w", -3, "adj", Some("damaged"), Source::Warehouse)
            .unwrap()
            .on_hand,
        2
    );
    l.set_stock("A", "w", 10, Source::Warehouse).unwrap();
    // A replay returns the cell as it is now and applies nothing.
    assert_eq!(
        l.adjust_stock("A", "w", -3, "adj", Some("damaged"), Source::Warehouse)
            .unwrap()
            .on_hand,
        10
    );
    assert_eq!(
        code(l.adjust_stock("A", "w", -2, "adj", None, Source::Warehouse)),
        ErrorCode::AdjustmentConflict
    );
    assert_eq!(
        code(l.adjust_stock("B", "w", -3, "adj", None, Source::Warehouse)),
        ErrorCode::AdjustmentConflict
    );
    assert_eq!(
        l.set_stock_once("A", "w", 7, "feed-1", Source::Warehouse)
            .unwrap()
            .on_hand,
        7
    );
    l.set_stock("A", "w", 8, Source::Warehouse).unwrap();
    assert_eq!(
        l.set_stock_once("A", "w", 7, "feed-1", Source::Warehouse)
            .unwrap()
            .on_hand,
        8
    );
    assert_eq!(
        code(l.set_stock_once("A", "w", 6, "feed-1", Source::Warehouse)),
        ErrorCode::AdjustmentConflict
    );
}

#[test]
fn forbidden_for_another_seller() {
    let (l, _) = memory();
    l.set_stock("A", "w", 5, Source::Seller("s1")).unwrap();
    assert_eq!(
        code(l.set_stock("A", "w2", 5, Source::Seller("s2"))),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(l.adjust_stock("A", "w", 1, "x", None, Source::Seller("s2"))),
        ErrorCode::Forbidden
    );
    assert_eq!(l.owner("A").as_deref(), Some("s1"));
    assert_eq!(
        l.set_stock("A", "w2", 3, Source::Seller("s1"))
            .unwrap()
            .on_hand,
        3
    );
    // The warehouse side is not a seller and may always write.
    assert_eq!(
        l.adjust_stock("A", "w", 1, "x", None, Source::Warehouse)
            .unwrap()
            .on_hand,
        6
    );
}

fn pay<'a>(pid: &'a str, oid: &'a str, ok: bool) -> Payment<'a> {
    Payment {
        payment_id: pid,
        order_id: oid,
        succeeded: ok,
        amount_minor: 100,
        currency: "RUB",
    }
}

#[test]
fn payments_every_case() {
    let (l, clock) = memory();
    l.set_stock("A", "w", 3, Source::Warehouse).unwrap();
    assert_eq!(
        code(l.pay(pay("p0", "none", true))),
        ErrorCode::OrderNotFound
    );
    l.reserve("o1", &[line("A", "w", 1)], 900).unwrap();
    assert_eq!(l.pay(pay("p1", "o1", true)).unwrap(), PaymentAnswer::Paid);
    assert_eq!(
        l.pay(pay("p1", "o1", true)).unwrap(),
        PaymentAnswer::Paid,
        "replay"
    );
    assert_eq!(
        code(l.pay(pay("p1", "o1", false))),
        ErrorCode::PaymentConflict
    );
    assert_eq!(
        code(l.pay(pay("p1", "o2", true))),
        ErrorCode::PaymentConflict
    );
    assert_eq!(
        l.pay(pay("p2", "o1", true)).unwrap(),
        PaymentAnswer::RefundRequired,
        "double charge"
    );
    assert_eq!(
        l.pay(pay("p3", "o1", false)).unwrap(),
        PaymentAnswer::Paid,
        "failed on paid: as it is"
    );

    l.reserve("o2", &[line("A", "w", 1)], 900).unwrap();
    assert_eq!(
        l.pay(pay("p4", "o2", false)).unwrap(),
        PaymentAnswer::Released
    );
    assert_eq!(
        l.pay(pay("p5", "o2", true)).unwrap(),
        PaymentAnswer::RefundRequired,
        "cancelled"
    );

    // Late payment with stock left: re-reserved and paid.
    l.reserve("o3", &[line("A", "w", 1)], 1).unwrap();
    clock.advance(2_000);
    assert_eq!(l.pay(pay("p6", "o3", true)).unwrap(), PaymentAnswer::Paid);
    assert_eq!(l.reservation("o3").unwrap().unwrap().status, Status::Paid);
    // Late payment without stock: refund.
    l.reserve("o4", &[line("A", "w", 1)], 1).unwrap();
    clock.advance(2_000);
    l.expire_due().unwrap();
    l.set_stock("A", "w", 0, Source::Warehouse).unwrap();
    assert_eq!(
        l.pay(pay("p7", "o4", true)).unwrap(),
        PaymentAnswer::RefundRequired
    );
    assert_eq!(
        l.pay(pay("p8", "o4", false)).unwrap(),
        PaymentAnswer::Expired
    );
    assert_eq!(
        code(l.pay(Payment {
            currency: "rub",
            ..pay("p9", "o4", true)
        })),
        ErrorCode::InvalidRequest
    );
    l.check_invariants().unwrap();
    let kinds: Vec<String> = l
        .events(0, 1000)
        .unwrap()
        .iter()
        .map(|e| e.kind().to_string())
        .collect();
    for k in [
        "order.paid",
        "payment.refund_required",
        "order.payment_failed",
        "reservation.expired",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
    }
}

#[test]
fn ledger_unavailable_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = on_disk(dir.path(), stockledger::Durability::Sync);
    l.set_stock("A", "w", 1, Source::Warehouse).unwrap();
    l.close().unwrap();
    assert_eq!(
        code(l.reserve("o", &[line("A", "w", 1)], 9)),
        ErrorCode::LedgerUnavailable
    );
    assert_eq!(
        code(l.set_stock("A", "w", 1, Source::Warehouse)),
        ErrorCode::LedgerUnavailable
    );
    // The folder is free again.
    let (l2, _) = on_disk(dir.path(), stockledger::Durability::Sync);
    assert_eq!(l2.stock("A", "w").unwrap().on_hand, 1);
}

#[test]
fn second_open_of_a_folder_names_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (_l, _) = on_disk(dir.path(), stockledger::Durability::Sync);
    for d in [stockledger::Durability::Sync, stockledger::Durability::None] {
        let err = stockledger::Ledger::open(
            dir.path(),
            stockledger::Options {
                durability: d,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::LedgerUnavailable);
        assert!(err.to_string().contains("LOCK"), "{err}");
    }
}

#[test]
fn events_have_gap_free_seqs_and_contract_shape() {
    let (l, _) = memory();
    l.set_stock("A", "w", 5, Source::Seller("s1")).unwrap();
    l.reserve("o", &[line("A", "w", 2)], 900).unwrap();
    l.commit("o").unwrap();
    l.adjust_stock("A", "w", -1, "adj", None, Source::Seller("s1"))
        .unwrap();
    let evs = l.events(0, 100).unwrap();
    assert_eq!(
        evs.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let j: Vec<serde_json::Value> = evs.iter().map(|e| e.to_json()).collect();
    assert_eq!(j[0]["type"], "stock.set");
    assert_eq!(j[0]["source"], "s1");
    assert_eq!(j[0]["delta"], 5);
    assert_eq!(j[1]["type"], "reservation.created");
    assert_eq!(j[1]["lines"][0]["qty"], 2);
    assert!(j[1]["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(j[2]["type"], "order.paid");
    assert_eq!(j[3]["type"], "stock.adjusted");
    assert_eq!(j[3]["on_hand"], 2);
    assert_eq!(j[3]["reason"], serde_json::Value::Null);
    assert_ne!(j[0]["event_id"], j[1]["event_id"]);
    assert_eq!(l.events(2, 1).unwrap()[0].seq, 3);
}
