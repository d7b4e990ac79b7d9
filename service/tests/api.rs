//! Every endpoint and every status/error code of http-api.md, against the real binary.

mod http_common;

use http_common::*;
use serde_json::{json, Value};

fn seed(s: &Server, sku: &str, wh: &str, n: u64) {
    assert_eq!(s.set_stock(TOK1, sku, wh, n).status, 200);
}

#[test]
fn reservation_lifecycle_and_stock() {
    let s = Server::start();
    seed(&s, "A1", "kol", 10);
    seed(&s, "A1", "msk", 5);
    seed(&s, "B2", "kol", 3);

    let r = s.reserve("o-1", &[("A1", "kol", 2), ("B2", "kol", 1)], None);
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["order_id"], "o-1");
    assert_eq!(v["status"], "reserved");
    assert_eq!(v["lines"].as_array().unwrap().len(), 2);
    let created = v["created_at"].as_str().unwrap();
    let expires = v["expires_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    assert!(expires > created);

    // Replay with lines in another order: 200, the same reservation, nothing more reserved.
    let r = s.reserve("o-1", &[("B2", "kol", 1), ("A1", "kol", 2)], Some(5));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["expires_at"], expires);
    // Same id, other lines.
    s.reserve("o-1", &[("A1", "kol", 3)], None)
        .err(409, "order_conflict");

    let st = s.get("/v1/stock/A1");
    assert_eq!(st.status, 200);
    assert_eq!(
        st.json(),
        json!({"sku": "A1", "on_hand": 15, "reserved": 2, "available": 13, "warehouses": [
            {"warehouse": "kol", "on_hand": 10, "reserved": 2, "available": 8},
            {"warehouse": "msk", "on_hand": 5, "reserved": 0, "available": 5}]})
    );
    s.get("/v1/stock/NOPE").err(404, "sku_not_found");

    // Insufficient: every short line listed, nothing reserved.
    let e = s
        .reserve(
            "o-2",
            &[("A1", "kol", 9), ("B2", "kol", 5), ("A1", "msk", 1)],
            None,
        )
        .err(409, "insufficient_stock");
    let mut short = e["shortfalls"].as_array().unwrap().clone();
    short.sort_by_key(|v| v["sku"].as_str().unwrap().to_string());
    assert_eq!(
        short,
        vec![
            json!({"sku": "A1", "warehouse": "kol", "requested": 9, "available": 8}),
            json!({"sku": "B2", "warehouse": "kol", "requested": 5, "available": 2}),
        ]
    );
    assert_eq!(s.get("/v1/stock/A1").json()["warehouses"][1]["reserved"], 0);
    s.get("/v1/reservations/o-2").err(404, "order_not_found");

    let g = s.get("/v1/reservations/o-1");
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["status"], "reserved");

    // Query: same order as asked, duplicates allowed, unknown skus zero.
    let q = s.post(
        "/v1/stock/query",
        &json!({"skus": ["B2", "ZZ", "A1", "B2"]}),
    );
    assert_eq!(q.status, 200);
    let items = q.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["sku"], "B2");
    assert_eq!(items[0]["reserved"], 1);
    assert_eq!(
        items[1],
        json!({"sku": "ZZ", "on_hand": 0, "reserved": 0, "available": 0, "warehouses": []})
    );
    assert_eq!(items[2]["on_hand"], 15);
    assert_eq!(items[3], items[0]);

    // Release, then release again (no change), then cannot release a paid one.
    let d = s.delete("/v1/reservations/o-1");
    assert_eq!(d.status, 200);
    assert_eq!(d.json()["status"], "released");
    let d = s.delete("/v1/reservations/o-1");
    assert_eq!(d.status, 200);
    assert_eq!(d.json()["status"], "released");
    assert_eq!(s.get("/v1/stock/A1").json()["reserved"], 0);
    s.delete("/v1/reservations/none")
        .err(404, "order_not_found");

    assert_eq!(s.reserve("o-3", &[("A1", "kol", 1)], None).status, 201);
    assert_eq!(s.pay("p-3", "o-3", "succeeded").json()["status"], "paid");
    s.delete("/v1/reservations/o-3").err(409, "order_paid");
    // A replay of a finished reservation answers it as it is now.
    let r = s.reserve("o-3", &[("A1", "kol", 1)], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "paid");
    assert_eq!(s.get("/v1/stock/A1").json()["on_hand"], 14);
}

#[test]
fn partner_gateway() {
    let s = Server::start();
    let put = |tok: Option<&str>, path: &str, body: &str| {
        let auth = tok.map(|t| format!("Bearer {t}"));
        let h: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        s.req("PUT", path, &h, body.as_bytes())
    };
    let adjust = |tok: &str, path: &str, body: Value| {
        let a = format!("Bearer {tok}");
        s.req(
            "POST",
            path,
            &[("authorization", &a)],
            body.to_string().as_bytes(),
        )
    };
    // 401 before anything else, even before a bad path or body.
    put(None, "/v1/partner/stock/A1/kol", r#"{"on_hand":1}"#).err(401, "unauthorized");
    put(
        Some("wrong"),
        "/v1/partner/stock/A1/kol",
        r#"{"on_hand":1}"#,
    )
    .err(401, "unauthorized");
    put(Some("wrong"), "/v1/partner/stock/bad%20sku/kol", "nope").err(401, "unauthorized");
    let r = s.req(
        "PUT",
        "/v1/partner/stock/A1/kol",
        &[("authorization", "Basic dG9rLW9uZQ==")],
        br#"{"on_hand":1}"#,
    );
    r.err(401, "unauthorized");

    let r = put(Some(TOK1), "/v1/partner/stock/A1/kol", r#"{"on_hand":10}"#);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"sku": "A1", "warehouse": "kol", "on_hand": 10, "reserved": 0, "available": 10})
    );
    // 400 comes before 403: s2 with a bad body on s1's sku.
    put(Some(TOK2), "/v1/partner/stock/A1/kol", r#"{"on_hand":-1}"#).err(400, "invalid_request");
    put(
        Some(TOK2),
        "/v1/partner/stock/A1/kol",
        r#"{"on_hand":9007199254740992}"#,
    )
    .err(400, "invalid_request");
    put(Some(TOK2), "/v1/partner/stock/A1/k%20l", r#"{"on_hand":1}"#).err(400, "invalid_request");
    put(Some(TOK2), "/v1/partner/stock/A1/kol", r#"{"on_hand":5}"#).err(403, "forbidden");
    // Ownership covers every warehouse of the sku.
    put(Some(TOK2), "/v1/partner/stock/A1/msk", r#"{"on_hand":5}"#).err(403, "forbidden");
    adjust(
        TOK2,
        "/v1/partner/stock/A1/kol/adjust",
        json!({"delta": 1, "adjustment_id": "x"}),
    )
    .err(403, "forbidden");
    assert_eq!(
        put(Some(TOK2), "/v1/partner/stock/B2/kol", r#"{"on_hand":5}"#).status,
        200
    );

    // below_reserved with its extra fields.
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 4)], None).status, 201);
    let e =
        put(Some(TOK1), "/v1/partner/stock/A1/kol", r#"{"on_hand":3}"#).err(409, "below_reserved");
    assert_eq!(
        (e["on_hand"].as_u64(), e["reserved"].as_u64()),
        (Some(10), Some(4))
    );
    assert_eq!(e["requested_on_hand"], 3);

    // Adjust: idempotent by adjustment_id.
    let path = "/v1/partner/stock/A1/kol/adjust";
    let r = adjust(
        TOK1,
        path,
        json!({"delta": -3, "adjustment_id": "adj-1", "reason": "damaged"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["on_hand"], 7);
    let r = adjust(
        TOK1,
        path,
        json!({"delta": -3, "adjustment_id": "adj-1", "reason": "damaged"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["on_hand"], 7);
    adjust(TOK1, path, json!({"delta": -2, "adjustment_id": "adj-1"}))
        .err(409, "adjustment_conflict");
    adjust(
        TOK1,
        "/v1/partner/stock/A1/msk/adjust",
        json!({"delta": -3, "adjustment_id": "adj-1"}),
    )
    .err(409, "adjustment_conflict");
    let e = adjust(TOK1, path, json!({"delta": -4, "adjustment_id": "adj-2"}))
        .err(409, "below_reserved");
    assert_eq!(e["requested_on_hand"], 3);
    for bad in [
        json!({"delta": 0, "adjustment_id": "a"}),
        json!({"delta": 1.5, "adjustment_id": "a"}),
        json!({"delta": "1", "adjustment_id": "a"}),
        json!({"delta": 1}),
        json!({"delta": 1, "adjustment_id": ""}),
        json!({"delta": 1, "adjustment_id": "a", "reason": "x".repeat(257)}),
        json!({"delta": 9007199254740992i64, "adjustment_id": "a"}),
    ] {
        let e = adjust(TOK1, path, bad.clone()).err(400, "invalid_request");
        assert!(e["message"].as_str().unwrap().contains(':'), "{bad} {e}");
    }
    // A no-op adjust replays without a new event; stock events carry source and reason.
    let ev = s.events(0);
    let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "stock.set",
            "stock.set",
            "reservation.created",
            "stock.adjusted"
        ]
    );
    assert_eq!(ev[0]["source"], "s1");
    assert_eq!(ev[1]["source"], "s2");
    assert_eq!(ev[3]["reason"], "damaged");
    assert_eq!(ev[3]["adjustment_id"], "adj-1");
    assert_eq!(ev[3]["delta"], -3);
}

#[test]
fn bad_input_is_400_and_changes_nothing() {
    let s = Server::start();
    seed(&s, "A1", "kol", 10);
    let post = |body: &[u8]| s.req("POST", "/v1/reservations", &[], body);
    let field = |body: &[u8], f: &str| {
        let e = post(body).err(400, "invalid_request");
        let m = e["message"].as_str().unwrap().to_string();
        assert!(m.starts_with(f), "expected field {f}: {m}");
    };
    field(b"{not json", "body");
    field(b"[1,2]", "body");
    field(b"\"str\"", "body");
    field(b"", "body");
    field(
        br#"{"lines":[{"sku":"A1","warehouse":"kol","qty":1}]}"#,
        "order_id",
    );
    field(
        br#"{"order_id":5,"lines":[{"sku":"A1","warehouse":"kol","qty":1}]}"#,
        "order_id",
    );
    field(
        br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":"2"}]}"#,
        "lines[0].qty",
    );
    field(
        br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":2.5}]}"#,
        "lines[0].qty",
    );
    field(br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":1},{"sku":"A1","warehouse":"kol","qty":-1}]}"#, "lines[1].qty");
    field(
        br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":0}]}"#,
        "lines[0].qty",
    );
    field(
        br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":1000001}]}"#,
        "lines[0].qty",
    );
    field(
        br#"{"order_id":"o","lines":[{"sku":"A 1","warehouse":"kol","qty":1}]}"#,
        "lines[0].sku",
    );
    field(
        br#"{"order_id":"o","lines":[{"sku":"A1","qty":1}]}"#,
        "lines[0]",
    );
    field(br#"{"order_id":"o","lines":[]}"#, "lines");
    field(br#"{"order_id":"o","lines":{}}"#, "lines");
    field(br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":1},{"sku":"A1","warehouse":"kol","qty":2}]}"#, "lines[1]");
    field(
        br#"{"order_id":"","lines":[{"sku":"A1","warehouse":"kol","qty":1}]}"#,
        "order_id",
    );
    field(
        format!(
            r#"{{"order_id":"{}","lines":[{{"sku":"A1","warehouse":"kol","qty":1}}]}}"#,
            "o".repeat(129)
        )
        .as_bytes(),
        "order_id",
    );
    field(
        br#"{"order_id":"o p","lines":[{"sku":"A1","warehouse":"kol","qty":1}]}"#,
        "order_id",
    );
    field(
        br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":1}],"ttl_seconds":0}"#,
        "ttl_seconds",
    );
    field(br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":1}],"ttl_seconds":604801}"#, "ttl_seconds");
    field(
        br#"{"order_id":"o","lines":[{"sku":"A1","warehouse":"kol","qty":1}],"ttl_seconds":"9"}"#,
        "ttl_seconds",
    );
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"sku": format!("S{i}"), "warehouse": "kol", "qty": 1}))
        .collect();
    field(
        json!({"order_id": "o", "lines": many})
            .to_string()
            .as_bytes(),
        "lines",
    );
    // Unknown fields are ignored.
    let r = post(br#"{"order_id":"o-x","lines":[{"sku":"A1","warehouse":"kol","qty":1,"color":"red"}],"note":1}"#);
    assert_eq!(r.status, 201);

    // Over 1 MiB: 413.
    let big = format!(r#"{{"order_id":"o","pad":"{}"}}"#, "x".repeat(1 << 20));
    post(big.as_bytes()).err(413, "payload_too_large");
    // Just under the limit still parses (and is refused for its content only).
    let under = format!(
        r#"{{"order_id":"o","pad":"{}"}}"#,
        "x".repeat((1 << 20) - 40)
    );
    post(under.as_bytes()).err(400, "invalid_request");

    // Stock query limits.
    s.post("/v1/stock/query", &json!({"skus": []}))
        .err(400, "invalid_request");
    let skus: Vec<String> = (0..1001).map(|i| format!("S{i}")).collect();
    s.post("/v1/stock/query", &json!({ "skus": skus }))
        .err(400, "invalid_request");
    let e = s
        .post("/v1/stock/query", &json!({"skus": ["A1", "b d"]}))
        .err(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().starts_with("skus[1]"), "{e}");
    s.post("/v1/stock/query", &json!({"skus": "A1"}))
        .err(400, "invalid_request");

    // Path segments are percent-decoded and checked.
    s.get("/v1/stock/%FF").err(400, "invalid_request");
    s.get("/v1/stock/a%20b").err(400, "invalid_request");
    s.get("/v1/stock/a%2Fb").err(400, "invalid_request");
    s.get(&format!("/v1/stock/{}", "a".repeat(65)))
        .err(400, "invalid_request");
    s.get(&format!("/v1/reservations/{}", "o".repeat(129)))
        .err(400, "invalid_request");
    s.get("/v1/reservations/o%00x").err(400, "invalid_request");
    s.delete("/v1/reservations/%C3%A9")
        .err(400, "invalid_request");
    // Decoding works for valid ids too.
    assert_eq!(s.get("/v1/stock/A%31").status, 200);
    assert_eq!(s.get("/v1/reservations/o%2Dx").json()["order_id"], "o-x");

    // Routes and methods.
    s.get("/v1/nothing").err(404, "not_found");
    // "/" is the status page (operations.md).
    s.get("/nothing").err(404, "not_found");
    s.req("PATCH", "/v1/reservations", &[], b"{}")
        .err(405, "method_not_allowed");
    s.req("POST", "/healthz", &[], b"")
        .err(405, "method_not_allowed");
    s.req("GET", "/v1/payments/callback", &[], b"")
        .err(405, "method_not_allowed");

    // Nothing of the above changed anything.
    let st = s.get("/v1/stock/A1").json();
    assert_eq!(st["reserved"], 1);
    let ev = s.events(0);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn events_feed() {
    let s = Server::start();
    seed(&s, "A1", "kol", 10);
    for i in 0..5 {
        assert_eq!(
            s.reserve(&format!("o-{i}"), &[("A1", "kol", 1)], None)
                .status,
            201
        );
    }
    let r = s.get("/v1/events");
    assert_eq!(r.status, 200);
    let v = r.json();
    let ev = v["events"].as_array().unwrap();
    assert_eq!(ev.len(), 6);
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert!(e["event_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(e["at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(ev[1]["type"], "reservation.created");
    assert_eq!(ev[1]["order_id"], "o-0");
    assert_eq!(
        ev[1]["lines"],
        json!([{"sku": "A1", "warehouse": "kol", "qty": 1}])
    );
    assert!(ev[1]["expires_at"].is_string());
    assert_eq!(v["next"], 6);

    let page = s.get("/v1/events?after=2&limit=2").json();
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4]);
    assert_eq!(page["next"], 4);
    let page = s.get("/v1/events?after=6").json();
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["next"], 6);
    let page = s.get("/v1/events?after=100").json();
    assert_eq!(page["next"], 100);
    for q in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "after=-1",
        "after=1.5",
        "limit=2.0",
        "after=99999999999999999999999",
    ] {
        s.get(&format!("/v1/events?{q}"))
            .err(400, "invalid_request");
    }
    assert_eq!(s.get("/v1/events?limit=1000").status, 200);
    // Same event ids on every read.
    assert_eq!(s.events(0)[3]["event_id"], s.events(2)[1]["event_id"]);
}

#[test]
fn ops_endpoints() {
    let s = Server::start();
    assert_eq!(s.get("/healthz").json(), json!({"status": "ok"}));
    let r = s.get("/readyz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["outbox_lag"], 0);
    seed(&s, "A1", "kol", 10);
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 1)], None).status, 201);
    s.reserve("o-2", &[("A1", "kol", 100)], None)
        .err(409, "insufficient_stock");
    // Kafka is off: nothing is delivered, so every durable event is lag.
    assert_eq!(s.get("/readyz").json()["outbox_lag"], 2);

    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(m.body).unwrap();
    for needle in [
        "stockledger_http_requests_total{route=\"/v1/reservations\",status=\"201\"} 1",
        "stockledger_http_requests_total{route=\"/v1/reservations\",status=\"409\"} 1",
        "stockledger_http_request_duration_seconds_bucket{route=\"/v1/reservations\"",
        "stockledger_reservations_total{result=\"created\"} 1",
        "stockledger_reservations_total{result=\"insufficient_stock\"} 1",
        "stockledger_wal_fsync_seconds_bucket",
        "stockledger_wal_batch_records_bucket",
        "stockledger_outbox_lag_events 2",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    // Admin checkpoint.
    s.req("POST", "/v1/admin/checkpoint", &[], b"")
        .err(401, "unauthorized");
    s.req(
        "POST",
        "/v1/admin/checkpoint",
        &[("authorization", &format!("Bearer {TOK1}"))],
        b"",
    )
    .err(401, "unauthorized");
    let c = s.req(
        "POST",
        "/v1/admin/checkpoint",
        &[("authorization", &format!("Bearer {ADMIN}"))],
        b"",
    );
    assert_eq!(c.status, 200);
    assert_eq!(c.json()["seq"], 2);

    // The OpenAPI document describes every endpoint.
    let doc = s.get("/openapi.json").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (p, method) in [
        ("/v1/reservations", "post"),
        ("/v1/reservations/{order_id}", "get"),
        ("/v1/reservations/{order_id}", "delete"),
        ("/v1/stock/{sku}", "get"),
        ("/v1/stock/query", "post"),
        ("/v1/partner/stock/{sku}/{warehouse}", "put"),
        ("/v1/partner/stock/{sku}/{warehouse}/adjust", "post"),
        ("/v1/payments/callback", "post"),
        ("/v1/events", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/admin/checkpoint", "post"),
    ] {
        assert!(
            paths.get(p).and_then(|x| x.get(method)).is_some(),
            "{method} {p} undocumented"
        );
    }
}

#[test]
fn unconfigured_credentials_refuse_with_401() {
    // No secret or tokens: partner, payment and admin endpoints all answer 401.
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(bin())
        .args(["--data-dir", tmp.path().join("d").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while raw_request(port, "GET", "/healthz", &[], b"").is_err() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let r = raw_request(
        port,
        "PUT",
        "/v1/partner/stock/A1/kol",
        &[("authorization", "Bearer x")],
        br#"{"on_hand":1}"#,
    )
    .unwrap();
    r.err(401, "unauthorized");
    let body =
        br#"{"payment_id":"p","order_id":"o","status":"failed","amount_minor":1,"currency":"RUB"}"#;
    let ts = now_secs().to_string();
    let sig = sign("", &ts, body);
    let r = raw_request(
        port,
        "POST",
        "/v1/payments/callback",
        &[("x-timestamp", &ts), ("x-signature", &sig)],
        body,
    )
    .unwrap();
    r.err(401, "unauthorized");
    let r = raw_request(
        port,
        "POST",
        "/v1/admin/checkpoint",
        &[("authorization", "Bearer ")],
        b"",
    )
    .unwrap();
    r.err(401, "unauthorized");
    let _ = child.kill();
    let _ = child.wait();
}
