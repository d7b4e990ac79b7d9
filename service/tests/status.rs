//! `GET /v1/stats`, `GET /v1/events/stream` and the status page's assets (operations.md).

mod http_common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use http_common::{Server, TOK1};
use serde_json::Value;

/// Opens an SSE stream; returns the reader positioned after the response head, and the head.
fn open_stream(port: u16, path: &str, extra: &str) -> (BufReader<TcpStream>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    (r, head)
}

/// The next `count` events' (id, event type, data) from a chunked SSE body.
fn next_events(r: &mut BufReader<TcpStream>, count: usize) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let (mut id, mut kind) = (String::new(), String::new());
    while out.len() < count {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.to_string();
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            let data: Value = serde_json::from_str(v).unwrap();
            out.push((std::mem::take(&mut id), std::mem::take(&mut kind), data));
        }
    }
    out
}

fn stats(s: &Server) -> Value {
    let r = s.get("/v1/stats");
    assert_eq!(r.status, 200);
    r.json()
}

#[test]
fn stats_follow_the_ledger_and_the_page_is_served() {
    let s = Server::start();
    for path in ["/", "/ui/"] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/html"));
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains("/ui/app.js") && !body.contains("http"),
            "no CDN: {body}"
        );
    }
    assert!(String::from_utf8_lossy(&s.get("/ui/app.js").body).contains("/v1/events/stream"));
    assert_eq!(s.get("/ui/app.css").status, 200);

    let first = stats(&s);
    assert_eq!(first["ready"], true);
    assert_eq!(first["totals"]["reservations"], 0);
    assert_eq!(s.set_stock(TOK1, "H1", "kol", 3).status, 200);
    for i in 0..4 {
        let r = s.reserve(&format!("o{i}"), &[("H1", "kol", 1)], None);
        assert_eq!(r.status, if i < 3 { 201 } else { 409 });
    }
    assert_eq!(s.delete("/v1/reservations/o0").status, 200);
    // Sampled once a second: poll until a sample has seen everything.
    let deadline = Instant::now() + Duration::from_secs(15);
    let v = loop {
        let v = stats(&s);
        if v["totals"]["released"] == 1 && v["hot_skus"][0]["sku"] == "H1" {
            break v;
        }
        assert!(Instant::now() < deadline, "stats never caught up: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["totals"]["reservations"], 3, "{v}");
    assert_eq!(v["totals"]["refusals"], 1, "{v}");
    assert_eq!(v["live_holds"], 2, "{v}");
    assert_eq!(v["last_seq"], 5, "{v}");
    assert_eq!(
        v["outbox_lag"], 5,
        "without Kafka nothing is delivered: {v}"
    );
    assert_eq!(v["hot_skus"][0]["available"], 1, "{v}");
    assert_eq!(v["hot_skus"][0]["reservations"], 3, "{v}");
    let text = v.to_string();
    for secret in [http_common::SECRET, http_common::ADMIN, TOK1] {
        assert!(!text.contains(secret), "a secret in /v1/stats");
    }
}

#[test]
fn the_events_stream_tails_the_log_and_resumes_after_the_last_id() {
    let s = Server::start();
    assert_eq!(s.set_stock(TOK1, "E1", "kol", 10).status, 200);
    assert_eq!(s.reserve("e-1", &[("E1", "kol", 1)], None).status, 201);

    let (mut r, head) = open_stream(s.port, "/v1/events/stream?after=0", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    let got = next_events(&mut r, 2);
    assert_eq!(got[0].0, "1");
    assert_eq!(got[0].1, "stock.set");
    assert_eq!(got[1].2["order_id"], "e-1");
    // A write after the stream opened arrives on it.
    assert_eq!(s.reserve("e-2", &[("E1", "kol", 1)], None).status, 201);
    let got = next_events(&mut r, 1);
    assert_eq!(
        (got[0].0.as_str(), got[0].2["seq"].as_u64()),
        ("3", Some(3))
    );
    drop(r);

    // A reconnect with Last-Event-ID resumes after it, whatever `after` says.
    let (mut r, _) = open_stream(s.port, "/v1/events/stream?after=0", "Last-Event-ID: 2\r\n");
    assert_eq!(next_events(&mut r, 1)[0].0, "3");

    // Bad input: a clear error.
    let r = s.get("/v1/events/stream?after=x");
    r.err(400, "invalid_request");
}

#[test]
fn streams_beyond_the_limit_are_refused_not_queued() {
    let s = Server::start();
    let open: Vec<_> = (0..32)
        .map(|_| {
            let (r, head) = open_stream(s.port, "/v1/events/stream", "");
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            r
        })
        .collect();
    let r = s.get("/v1/events/stream");
    r.err(503, "overloaded");
    drop(open);
    // Closing streams frees their places (the server notices at its next write or poll).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_r, head) = open_stream(s.port, "/v1/events/stream", "");
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "places never freed: {head}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
