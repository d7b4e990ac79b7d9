//! The payment callback: signature checks first, then the body, then every domain case.

mod http_common;

use std::time::{Duration, Instant};

use http_common::*;
use serde_json::{json, Value};

fn setup(on_hand: u64) -> Server {
    let s = Server::start();
    assert_eq!(s.set_stock(TOK1, "A1", "kol", on_hand).status, 200);
    s
}

fn body(payment_id: &str, order_id: &str, status: &str) -> Vec<u8> {
    json!({"payment_id": payment_id, "order_id": order_id, "status": status,
           "amount_minor": 129900, "currency": "RUB"})
    .to_string()
    .into_bytes()
}

fn kinds(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

fn stock(s: &Server) -> (u64, u64) {
    let v = s.get("/v1/stock/A1").json();
    (
        v["on_hand"].as_u64().unwrap(),
        v["reserved"].as_u64().unwrap(),
    )
}

fn wait_status(s: &Server, order: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = s.get(&format!("/v1/reservations/{order}")).json()["status"].clone();
        if st == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{order} stayed {st}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn signature_is_checked_first() {
    let s = setup(10);
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 2)], None).status, 201);
    let b = body("p-1", "o-1", "succeeded");
    let now = now_secs();
    s.pay_raw(&b, now, "wrong-secret").err(401, "unauthorized");
    s.pay_raw(&b, now - 301, SECRET).err(401, "unauthorized");
    s.pay_raw(&b, now + 301, SECRET).err(401, "unauthorized");
    // Signature over another body.
    let ts = now.to_string();
    let sig = sign(SECRET, &ts, &body("p-1", "o-1", "failed"));
    s.req(
        "POST",
        "/v1/payments/callback",
        &[("x-timestamp", &ts), ("x-signature", &sig)],
        &b,
    )
    .err(401, "unauthorized");
    let good = sign(SECRET, &ts, &b);
    let bare = good.trim_start_matches("sha256=");
    for headers in [
        vec![("x-timestamp", ts.as_str())],
        vec![("x-signature", good.as_str())],
        vec![("x-timestamp", "12a"), ("x-signature", good.as_str())],
        vec![("x-timestamp", ts.as_str()), ("x-signature", bare)],
        vec![("x-timestamp", ts.as_str()), ("x-signature", "sha256=zz")],
    ] {
        s.req("POST", "/v1/payments/callback", &headers, &b)
            .err(401, "unauthorized");
    }
    // A malformed body with a wrong signature is still 401; nothing changed so far.
    s.pay_raw(b"{oops", now, "wrong").err(401, "unauthorized");
    assert_eq!(s.get("/v1/reservations/o-1").json()["status"], "reserved");
    assert_eq!(kinds(&s.events(0)), ["stock.set", "reservation.created"]);

    // Correctly signed but malformed: 400 naming the field.
    for (bad, field) in [
        (b"{oops".to_vec(), "body"),
        (b"[]".to_vec(), "body"),
        (br#"{"order_id":"o-1","status":"succeeded","amount_minor":1,"currency":"RUB"}"#.to_vec(), "payment_id"),
        (br#"{"payment_id":"p","order_id":"o-1","status":"ok","amount_minor":1,"currency":"RUB"}"#.to_vec(), "status"),
        (br#"{"payment_id":"p","order_id":"o-1","status":"failed","amount_minor":"1","currency":"RUB"}"#.to_vec(), "amount_minor"),
        (br#"{"payment_id":"p","order_id":"o-1","status":"failed","amount_minor":1.5,"currency":"RUB"}"#.to_vec(), "amount_minor"),
        (br#"{"payment_id":"p","order_id":"o-1","status":"failed","amount_minor":-1,"currency":"RUB"}"#.to_vec(), "amount_minor"),
        (br#"{"payment_id":"p","order_id":"o-1","status":"failed","amount_minor":9007199254740992,"currency":"RUB"}"#.to_vec(), "amount_minor"),
        (br#"{"payment_id":"p","order_id":"o-1","status":"failed","amount_minor":1,"currency":"rub"}"#.to_vec(), "currency"),
        (br#"{"payment_id":"p","order_id":"o-1","status":"failed","amount_minor":1,"currency":"RUBL"}"#.to_vec(), "currency"),
        (br#"{"payment_id":"","order_id":"o-1","status":"failed","amount_minor":1,"currency":"RUB"}"#.to_vec(), "payment_id"),
    ] {
        let e = s.pay_raw(&bad, now_secs(), SECRET).err(400, "invalid_request");
        let m = e["message"].as_str().unwrap();
        assert!(m.starts_with(field), "expected {field}: {m}");
    }
    // Within the window (either side) is accepted.
    let r = s.pay_raw(&b, now_secs() - 290, SECRET);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"order_id": "o-1", "payment_id": "p-1", "status": "paid"})
    );
    s.pay("p-x", "nope", "succeeded")
        .err(404, "order_not_found");
}

#[test]
fn success_replay_conflict_and_double_charge() {
    let s = setup(10);
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 2)], None).status, 201);
    assert_eq!(s.reserve("o-2", &[("A1", "kol", 1)], None).status, 201);
    let r = s.pay("p-1", "o-1", "succeeded");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "paid");
    assert_eq!(s.get("/v1/reservations/o-1").json()["status"], "paid");
    assert_eq!(stock(&s), (8, 1));
    let ev = s.events(0);
    assert_eq!(ev.last().unwrap()["type"], "order.paid");
    assert_eq!(ev.last().unwrap()["payment_id"], "p-1");
    let n = ev.len();

    // Replay: same answer, no change, no event.
    for _ in 0..3 {
        assert_eq!(s.pay("p-1", "o-1", "succeeded").json()["status"], "paid");
    }
    assert_eq!(s.events(0).len(), n);
    assert_eq!(stock(&s), (8, 1));
    // Same payment_id with another status or order: conflict, nothing changes.
    s.pay("p-1", "o-1", "failed").err(409, "payment_conflict");
    s.pay("p-1", "o-2", "succeeded")
        .err(409, "payment_conflict");
    assert_eq!(s.get("/v1/reservations/o-2").json()["status"], "reserved");

    // A second charge for a paid order.
    let r = s.pay("p-2", "o-1", "succeeded");
    assert_eq!(r.json()["status"], "refund_required");
    let ev = s.events(0);
    assert_eq!(ev.len(), n + 1);
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "payment.refund_required");
    assert_eq!(last["reason"], "double_charge");
    assert_eq!(last["payment_id"], "p-2");
    assert_eq!(last["amount_minor"], 129900);
    assert_eq!(last["currency"], "RUB");
    assert_eq!(stock(&s), (8, 1));
    // Its replay is answered the same.
    assert_eq!(
        s.pay("p-2", "o-1", "succeeded").json()["status"],
        "refund_required"
    );
    assert_eq!(s.events(0).len(), n + 1);
    // failed for a paid order: status as it is, nothing changes.
    assert_eq!(s.pay("p-3", "o-1", "failed").json()["status"], "paid");
    assert_eq!(s.events(0).len(), n + 1);
}

#[test]
fn failed_and_cancelled() {
    let s = setup(10);
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 3)], None).status, 201);
    let r = s.pay("p-1", "o-1", "failed");
    assert_eq!(r.json()["status"], "released");
    assert_eq!(s.get("/v1/reservations/o-1").json()["status"], "released");
    assert_eq!(stock(&s), (10, 0));
    let ev = s.events(0);
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "order.payment_failed");
    assert_eq!(last["payment_id"], "p-1");
    // Then a success for the released order: refund (cancelled).
    let r = s.pay("p-2", "o-1", "succeeded");
    assert_eq!(r.json()["status"], "refund_required");
    assert_eq!(s.events(0).last().unwrap()["reason"], "cancelled");
    // failed again on a released order: as it is, no event.
    let n = s.events(0).len();
    assert_eq!(s.pay("p-3", "o-1", "failed").json()["status"], "released");
    assert_eq!(s.events(0).len(), n);

    // The buyer cancels, then the bank says succeeded.
    assert_eq!(s.reserve("o-2", &[("A1", "kol", 1)], None).status, 201);
    assert_eq!(
        s.delete("/v1/reservations/o-2").json()["status"],
        "released"
    );
    let r = s.pay("p-4", "o-2", "succeeded");
    assert_eq!(r.json()["status"], "refund_required");
    let last = s.events(0).last().unwrap().clone();
    assert_eq!(
        (last["type"].as_str(), last["reason"].as_str()),
        (Some("payment.refund_required"), Some("cancelled"))
    );
    assert_eq!(stock(&s), (10, 0));
}

#[test]
fn late_payment_after_expiry_with_stock() {
    let s = setup(5);
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 2)], Some(1)).status, 201);
    wait_status(&s, "o-1", "expired");
    assert_eq!(stock(&s), (5, 0));
    // failed for an expired order: as it is.
    assert_eq!(s.pay("p-0", "o-1", "failed").json()["status"], "expired");
    let r = s.pay("p-1", "o-1", "succeeded");
    assert_eq!(r.json()["status"], "paid");
    assert_eq!(s.get("/v1/reservations/o-1").json()["status"], "paid");
    assert_eq!(stock(&s), (3, 0));
    let k = kinds(&s.events(0));
    assert_eq!(
        k,
        [
            "stock.set",
            "reservation.created",
            "reservation.expired",
            "reservation.created",
            "order.paid"
        ]
    );
    assert_eq!(s.pay("p-1", "o-1", "succeeded").json()["status"], "paid");
    assert_eq!(s.events(0).len(), 5);
}

#[test]
fn late_payment_after_expiry_without_stock() {
    let s = setup(2);
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 2)], Some(1)).status, 201);
    wait_status(&s, "o-1", "expired");
    // Someone else takes the stock in the meantime.
    assert_eq!(s.reserve("o-2", &[("A1", "kol", 1)], None).status, 201);
    let r = s.pay("p-1", "o-1", "succeeded");
    assert_eq!(r.json()["status"], "refund_required");
    let last = s.events(0).last().unwrap().clone();
    assert_eq!(last["type"], "payment.refund_required");
    assert_eq!(last["reason"], "expired_no_stock");
    assert_eq!(last["order_id"], "o-1");
    assert_eq!(stock(&s), (2, 1));
    assert_eq!(s.get("/v1/reservations/o-1").json()["status"], "expired");
}
