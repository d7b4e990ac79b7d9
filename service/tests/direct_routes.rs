//! The routes `server::ConnService` answers without the router (`POST /v1/reservations`,
//! `DELETE /v1/reservations/{order_id}`, `POST /v1/payments/callback`) answer exactly as
//! the router does: the same requests, on and around those routes, against the app served
//! twice (direct path off, then on) give the same bytes (status line, headers, body; only
//! `date` and the reservations' timestamps masked) and the same HTTP metrics.
//!
//! One test in its own binary: the metrics recorder is process-wide, and the two runs are
//! compared by the counts each adds.

mod http_common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_common::{sign, SECRET};
use metrics_exporter_prometheus::PrometheusHandle as Handle;
use stockledger::{Durability, Ledger, ManualClock, Options, Source};
use stockledger_service::auth::Auth;
use stockledger_service::state::AppState;
use stockledger_service::{app, metrics, server};

/// Both apps' ledgers read this pinned clock, so the callbacks' signature windows and the
/// reservations' times are the same in both runs whatever the machine's wall clock does.
const NOW_SECS: i64 = 1_796_000_000;

/// One running app on its own ledger; stopped when dropped.
struct App {
    port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

fn start(rt: &tokio::runtime::Runtime, direct: bool, handle: &Handle) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        durability: Durability::None,
        clock: Arc::new(ManualClock::new(NOW_SECS as u64 * 1000)),
        ..Options::default()
    };
    let ledger = Arc::new(Ledger::open(dir.path(), options).expect("open"));
    for sku in ["A1", "B2"] {
        ledger
            .set_stock(sku, "kol", 1000, Source::Warehouse)
            .expect("stock");
    }
    let shared = Arc::new(AppState {
        ledger,
        auth: Auth::new(&[], None, Some(SECRET)),
        metrics: handle.clone(),
        lag: RwLock::new(None),
        openapi: serde_json::Value::Null,
        request_timeout: Duration::from_secs(1),
    });
    let limits = server::Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(1),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = app::router(shared.clone());
    let direct = direct.then_some(shared);
    rt.spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        server::serve(listener, router, direct, limits, shutdown, Duration::ZERO).await;
    });
    App {
        port,
        _stop: stop,
        _dir: dir,
    }
}

/// Sends `head` (without the Host header, added here; or nothing for [`RAW`]) and `body`,
/// reads the answers until the server closes; `date` is dropped and timestamps masked.
fn exchange(port: u16, head: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = match head {
        RAW => String::new(),
        _ => {
            let (first, rest) = head.split_once("\r\n").unwrap_or((head, ""));
            format!("{first}\r\nHost: t\r\nConnection: close\r\n{rest}\r\n")
        }
    };
    s.write_all(head.as_bytes()).expect("head");
    // The server may answer (413) and close before reading all of a large body.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    if let Err(e) = s.read_to_end(&mut buf) {
        assert!(
            !buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset,
            "{head}: {e}"
        );
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let kept: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect();
    mask_times(&kept.join("\r\n"))
}

/// `2026-12-03T16:58:25.123Z` -> `0000-00-00T00:00:00.000Z`: the two ledgers' clocks differ.
fn mask_times(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = b.to_vec();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    for i in 0..b.len().saturating_sub(shape.len()) {
        let hit = shape.iter().zip(&b[i..]).all(|(p, c)| match p {
            b'd' => c.is_ascii_digit(),
            p => p == c,
        });
        if hit {
            let mut j = i;
            while j < b.len() && b[j] != b'"' {
                if b[j].is_ascii_digit() {
                    out[j] = b'0';
                }
                j += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A signed callback's head (timestamp `ts`, signature over `body` with `secret`).
fn signed(body: &[u8], ts: i64, secret: &str, extra: &str) -> String {
    let ts = ts.to_string();
    let sig = sign(secret, &ts, body);
    format!(
        "POST /v1/payments/callback HTTP/1.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nX-Timestamp: {ts}\r\nX-Signature: {sig}\r\n{extra}",
        body.len()
    )
}

fn pay_body(payment: &str, order: &str, status: &str) -> Vec<u8> {
    format!(
        r#"{{"payment_id":"{payment}","order_id":"{order}","status":"{status}","amount_minor":100,"currency":"RUB"}}"#
    )
    .into_bytes()
}

fn reserve(order: &str) -> (String, Vec<u8>) {
    let body =
        format!(r#"{{"order_id":"{order}","lines":[{{"sku":"A1","warehouse":"kol","qty":1}}]}}"#);
    let head = format!(
        "POST /v1/reservations HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    (head, body.into_bytes())
}

fn delete(path: &str, extra: &str) -> (String, Vec<u8>) {
    (format!("DELETE {path} HTTP/1.1\r\n{extra}"), Vec::new())
}

/// The requests, in order (later ones depend on the state earlier ones left).
fn requests() -> Vec<(String, Vec<u8>)> {
    let mut r: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 1..=12 {
        r.push(reserve(&format!("o-{i}")));
    }
    r.extend(release_requests());
    r.extend(payment_requests());
    r.push(pipelined());
    r
}

fn release_requests() -> Vec<(String, Vec<u8>)> {
    let long = "x".repeat(129);
    let mut r = vec![
        delete("/v1/reservations/o-1", ""),
        delete("/v1/reservations/o-1", ""),
        delete("/v1/reservations/nope", ""),
        delete("/v1/reservations/o-2?x=1&y", ""),
        delete("/v1/reservations/o%2D3", ""),
        delete("/v1/reservations/%FF", ""),
        delete("/v1/reservations/%zz", ""),
        delete("/v1/reservations/a%20b", ""),
        delete("/v1/reservations/", ""),
        delete("/v1/reservations/o-4/", ""),
        delete("/v1/reservations/o-4/extra", ""),
        delete("/v1/reservations//o-4", ""),
        delete("/v1/reservations", ""),
        delete("/v1/Reservations/o-4", ""),
        delete("/v1/reservations/a+b;c=d,e:f@g!h$i&j'k(l)m*n~o", ""),
        delete("/v1/reservations/a|b", ""),
        delete(&format!("/v1/reservations/{long}"), ""),
        delete("http://t/v1/reservations/o-4", ""),
        delete("/v1/reservations/o-5", "Content-Length: 5\r\n"),
        delete(
            "/v1/reservations/o-6",
            "Expect: 100-continue\r\nContent-Length: 5\r\n",
        ),
        delete("/v1/reservations/o-6", "Transfer-Encoding: chunked\r\n"),
        (
            "PUT /v1/reservations/o-7 HTTP/1.1\r\nContent-Length: 2\r\n".into(),
            b"{}".to_vec(),
        ),
        ("PATCH /v1/reservations/o-7 HTTP/1.1\r\n".into(), Vec::new()),
        ("HEAD /v1/reservations/o-7 HTTP/1.1\r\n".into(), Vec::new()),
        ("GET /v1/reservations/o-7 HTTP/1.1\r\n".into(), Vec::new()),
        ("POST /v1/reservations/o-7 HTTP/1.1\r\n".into(), Vec::new()),
    ];
    // Bodies sent with the DELETEs that declared them.
    r[18].1 = b"hello".to_vec();
    r[19].1 = b"hello".to_vec();
    r[20].1 = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
    r
}

fn payment_requests() -> Vec<(String, Vec<u8>)> {
    let now = NOW_SECS;
    let ok = pay_body("p-8", "o-8", "succeeded");
    let big = vec![b' '; (1 << 20) + 10];
    let mut r = vec![
        (signed(&ok, now, SECRET, ""), ok.clone()),
        (signed(&ok, now, SECRET, ""), ok.clone()),
        (
            signed(&pay_body("p-8", "o-9", "succeeded"), now, SECRET, ""),
            pay_body("p-8", "o-9", "succeeded"),
        ),
        (
            signed(&pay_body("p-9", "o-9", "failed"), now, SECRET, ""),
            pay_body("p-9", "o-9", "failed"),
        ),
        (
            signed(&pay_body("p-x", "nope", "succeeded"), now, SECRET, ""),
            pay_body("p-x", "nope", "succeeded"),
        ),
        (signed(&ok, now, "wrong", ""), ok.clone()),
        (signed(&ok, now - 301, SECRET, ""), ok.clone()),
        (signed(&ok, now + 301, SECRET, ""), ok.clone()),
        (signed(b"{", now, SECRET, ""), b"{".to_vec()),
        (signed(b"", now, SECRET, ""), Vec::new()),
        (signed(b"[1]", now, SECRET, ""), b"[1]".to_vec()),
        (
            signed(br#"{"x":1}"#, now, SECRET, ""),
            br#"{"x":1}"#.to_vec(),
        ),
        (signed(&big, now, SECRET, ""), big.clone()),
        (
            signed(&big, now, SECRET, "Expect: 100-continue\r\n"),
            big.clone(),
        ),
        (
            signed(
                &pay_body("p-10", "o-10", "succeeded"),
                now,
                SECRET,
                "Expect: 100-continue\r\n",
            ),
            pay_body("p-10", "o-10", "succeeded"),
        ),
        (
            signed(
                &pay_body("p-11", "o-11", "succeeded"),
                now,
                SECRET,
                "X-Other: 1\r\n",
            )
            .replace("/callback", "/callback?x=1"),
            pay_body("p-11", "o-11", "succeeded"),
        ),
        delete("/v1/reservations/o-8", ""),
    ];
    let ts = now.to_string();
    let p = "POST /v1/payments/callback HTTP/1.1\r\nContent-Length: 2\r\n";
    let heads = [
        p.to_string(),
        format!("{p}X-Timestamp: {ts}\r\n"),
        format!("{p}X-Timestamp: 12a\r\nX-Signature: sha256=00\r\n"),
        format!("{p}X-Timestamp: {ts}\r\nX-Signature: 00\r\n"),
        format!("{p}X-Timestamp: {ts}\r\nX-Signature: sha256=zz\r\n"),
        p.replace("callback", "callback/"),
        p.replace("callback", "Callback"),
        "GET /v1/payments/callback HTTP/1.1\r\n".to_string(),
        p.replace("POST", "PUT"),
        "DELETE /v1/payments/callback HTTP/1.1\r\n".to_string(),
    ];
    for h in heads {
        let body = if h.contains("Content-Length") {
            b"{}".to_vec()
        } else {
            Vec::new()
        };
        r.push((h, body));
    }
    // Unsigned and over the limit: the body is read (and refused) before the signature.
    r.push((
        format!(
            "POST /v1/payments/callback HTTP/1.1\r\nContent-Length: {}\r\n",
            big.len()
        ),
        big,
    ));
    // A body that never comes: 408 after the request timeout.
    r.push((
        signed(&ok, now, SECRET, "").replace(&format!("Length: {}", ok.len()), "Length: 999"),
        ok[..10].to_vec(),
    ));
    // Chunked and signed; then with a chunk size that does not fit (a body read error).
    let body = pay_body("p-12", "o-12", "succeeded");
    let head = signed(&body, now, SECRET, "Transfer-Encoding: chunked\r\n")
        .replace(&format!("Content-Length: {}\r\n", body.len()), "");
    let chunk = |n: usize| {
        let mut c = format!("{n:x}\r\n").into_bytes();
        c.extend_from_slice(&body);
        c.extend_from_slice(b"\r\n0\r\n\r\n");
        c
    };
    r.push((head.clone(), chunk(body.len())));
    r.push((head, chunk(body.len() - 3)));
    r
}

/// Requests sent verbatim on one kept-alive connection (pipelined; the last one closes).
fn pipelined() -> (String, Vec<u8>) {
    let now = NOW_SECS;
    let body = pay_body("p-13", "o-13", "succeeded");
    let pay = signed(&body, now, SECRET, "");
    let mut raw = format!(
        "DELETE /v1/reservations/o-12 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
         DELETE /v1/reservations/o-11 HTTP/1.1\r\nHost: t\r\n\r\n\
         {pay}Host: t\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    raw.extend_from_slice(
        b"DELETE /v1/reservations/o-10 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    (RAW.into(), raw)
}

/// The head of a request sent verbatim as its body (see [`exchange`]).
const RAW: &str = "RAW";

/// The HTTP series' counts as rendered, by series.
fn counts(handle: &Handle) -> BTreeMap<String, f64> {
    handle
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("stockledger_http_requests_total{")
                || l.starts_with("stockledger_http_request_duration_seconds_count{")
                || l.starts_with("stockledger_reservations_total{")
        })
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn run(
    rt: &tokio::runtime::Runtime,
    direct: bool,
    handle: &Handle,
) -> (Vec<String>, BTreeMap<String, f64>) {
    let app = start(rt, direct, handle);
    let before = counts(handle);
    let answers = requests()
        .iter()
        .map(|(head, body)| exchange(app.port, head, body))
        .collect();
    (answers, delta(&counts(handle), &before))
}

#[test]
fn direct_routes_answer_as_the_router() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let handle = metrics::install().expect("recorder");
    let (routed, routed_metrics) = run(&rt, false, &handle);
    let (direct, direct_metrics) = run(&rt, true, &handle);
    let reqs = requests();
    for ((want, got), (head, _)) in routed.iter().zip(&direct).zip(&reqs) {
        assert_eq!(want, got, "{head}");
    }
    assert_eq!(routed.len(), direct.len());
    assert_eq!(routed_metrics, direct_metrics);
    // The cases cover what they should: each route's answers, and its metrics.
    let all = routed.join("\n");
    // Signed at the pinned clock: accepted only if the window is judged by the ledger's clock.
    assert!(all.contains(r#""status":"paid""#), "no callback accepted");
    for status in [
        "200", "201", "400", "401", "404", "405", "408", "409", "413",
    ] {
        assert!(all.contains(&format!("HTTP/1.1 {status} ")), "no {status}");
    }
    for route in ["/v1/reservations/{order_id}", "/v1/payments/callback"] {
        let key = format!("route=\"{route}\"");
        assert!(
            routed_metrics.keys().any(|k| k.contains(&key)),
            "{route}: {routed_metrics:?}"
        );
    }
}
