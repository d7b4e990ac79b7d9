//! Process lifecycle: configuration, restart, signals, the data dir lock, expiry,
//! concurrency, and kill -9 under load.

mod http_common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use http_common::*;
use serde_json::{json, Value};

/// Unix milliseconds of `2026-11-25T10:00:00.123Z`.
fn parse_ms(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    ((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60_000 + n(17, 19) * 1000 + n(20, 23)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn expiry_within_one_second() {
    let s = Server::start();
    assert_eq!(s.set_stock(TOK1, "A1", "kol", 5).status, 200);
    let r = s.reserve("o-1", &[("A1", "kol", 3)], Some(1));
    assert_eq!(r.status, 201);
    let expires_at = parse_ms(r.json()["expires_at"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = s.get("/v1/reservations/o-1").json();
        if st["status"] == "expired" {
            break;
        }
        assert_eq!(st["status"], "reserved");
        assert!(Instant::now() < deadline, "never expired");
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = now_ms();
    assert!(
        seen - expires_at <= 1000,
        "expired {} ms after expires_at",
        seen - expires_at
    );
    assert_eq!(s.get("/v1/stock/A1").json()["available"], 5);
    let ev = s.events(0);
    let e = ev
        .iter()
        .find(|e| e["type"] == "reservation.expired")
        .unwrap();
    assert_eq!(e["order_id"], "o-1");
    let at = parse_ms(e["at"].as_str().unwrap());
    assert!(
        at >= expires_at && at - expires_at <= 1000,
        "event at {at}, due {expires_at}"
    );
}

#[test]
fn restart_keeps_state_and_ownership() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    assert_eq!(s.set_stock(TOK1, "A1", "kol", 10).status, 200);
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 2)], None).status, 201);
    assert_eq!(s.reserve("o-2", &[("A1", "kol", 3)], None).status, 201);
    assert_eq!(s.pay("p-2", "o-2", "succeeded").json()["status"], "paid");
    let a = format!("Bearer {TOK1}");
    let adj = json!({"delta": 1, "adjustment_id": "adj-1"}).to_string();
    assert_eq!(
        s.req(
            "POST",
            "/v1/partner/stock/A1/kol/adjust",
            &[("authorization", &a)],
            adj.as_bytes()
        )
        .status,
        200
    );
    let before_stock = s.get("/v1/stock/A1").json();
    let before_events = s.events(0);
    assert!(s.terminate().success());

    let s = Server::start_in(&data, &[]);
    assert_eq!(s.get("/v1/stock/A1").json(), before_stock);
    assert_eq!(s.events(0), before_events);
    assert_eq!(s.get("/v1/reservations/o-1").json()["status"], "reserved");
    assert_eq!(s.get("/v1/reservations/o-2").json()["status"], "paid");
    // Ownership survives: s2 is still refused.
    s.set_stock(TOK2, "A1", "kol", 1).err(403, "forbidden");
    // Idempotency keys survive too.
    assert_eq!(s.pay("p-2", "o-2", "succeeded").json()["status"], "paid");
    s.pay("p-2", "o-2", "failed").err(409, "payment_conflict");
    let r = s.req(
        "POST",
        "/v1/partner/stock/A1/kol/adjust",
        &[("authorization", &a)],
        adj.as_bytes(),
    );
    assert_eq!(r.json()["on_hand"], before_stock["on_hand"]);
    assert_eq!(s.reserve("o-1", &[("A1", "kol", 2)], None).status, 200);
    assert_eq!(s.events(0).len(), before_events.len());
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut s = Server::start();
        assert_eq!(s.set_stock(TOK1, "A1", "kol", 1).status, 200);
        s.signal(sig);
        let st = s.wait_exit(Duration::from_secs(15));
        assert_eq!(st.code(), Some(0), "signal {sig}: {}", s.stderr_text());
    }
}

#[test]
fn second_instance_exits_naming_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start_in(&data, &[]);
    for mode in ["sync", "async", "none"] {
        let port = free_port();
        let start = Instant::now();
        let out = Command::new(bin())
            .args([
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--durability", mode])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(start.elapsed() < Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains("lock"), "{mode}: {err}");
    }
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn invalid_configuration_names_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = tmp.path().join("bad.toml");
    std::fs::write(&toml, "durability = \"fast\"\n").unwrap();
    let unknown = tmp.path().join("unknown.toml");
    std::fs::write(&unknown, "colour = \"blue\"\n").unwrap();
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--listen".into(), "not-an-address".into()],
            vec![],
            "listen",
        ),
        (
            vec!["--durability".into(), "fast".into()],
            vec![],
            "durability",
        ),
        (
            vec![],
            vec![("STOCKLEDGER_DURABILITY", "fast")],
            "durability",
        ),
        (
            vec!["--partner-token".into(), "no-colon".into()],
            vec![],
            "partner-token",
        ),
        (
            vec!["--partner-token".into(), "warehouse:tok".into()],
            vec![],
            "warehouse",
        ),
        (
            vec!["--config".into(), toml.to_str().unwrap().into()],
            vec![],
            "durability",
        ),
        (
            vec!["--config".into(), unknown.to_str().unwrap().into()],
            vec![],
            "colour",
        ),
        (
            vec!["--config".into(), "/nonexistent/x.toml".into()],
            vec![],
            "config",
        ),
        (vec!["--no-such-flag".into()], vec![], "no-such-flag"),
    ];
    for (args, env, needle) in cases {
        let out = Command::new(bin())
            .args(["--data-dir", tmp.path().join("d").to_str().unwrap()])
            .args(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn environment_and_toml_configure_and_flags_win() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = tmp.path().join("c.toml");
    std::fs::write(
        &toml,
        format!(
            "data-dir = \"{}\"\nlisten = \"127.0.0.1:1\"\npartner-tokens = [\"s9:file-tok\"]\nadmin-token = \"file-admin\"\n",
            tmp.path().join("d").display()
        ),
    )
    .unwrap();
    // listen from the environment beats the file; the admin flag beats the file.
    let mut child = Command::new(bin())
        .args([
            "--config",
            toml.to_str().unwrap(),
            "--admin-token",
            "flag-admin",
        ])
        .env("STOCKLEDGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("STOCKLEDGER_PAYMENT_SECRET", "env-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while raw_request(port, "GET", "/healthz", &[], b"").is_err() {
        assert!(Instant::now() < deadline, "did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = raw_request(
        port,
        "PUT",
        "/v1/partner/stock/A1/kol",
        &[("authorization", "Bearer file-tok")],
        br#"{"on_hand":1}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let adm = |t: &str| {
        raw_request(
            port,
            "POST",
            "/v1/admin/checkpoint",
            &[("authorization", &format!("Bearer {t}"))],
            b"",
        )
        .unwrap()
        .status
    };
    assert_eq!(adm("flag-admin"), 200);
    assert_eq!(adm("file-admin"), 401);
    assert!(tmp.path().join("d").join("LOCK").exists());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn four_hundred_buyers_on_one_hundred_units() {
    let s = Server::start();
    assert_eq!(s.set_stock(TOK1, "HOT", "kol", 100).status, 200);
    let port = s.port;
    let barrier = Arc::new(Barrier::new(400));
    let handles: Vec<_> = (0..400)
        .map(|i| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                let body = json!({"order_id": format!("buyer-{i}"),
                    "lines": [{"sku": "HOT", "warehouse": "kol", "qty": 1}]})
                .to_string();
                b.wait();
                raw_request(port, "POST", "/v1/reservations", &[], body.as_bytes()).unwrap()
            })
        })
        .collect();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for h in handles {
        let r = h.join().unwrap();
        if r.status == 409 {
            assert_eq!(r.json()["error"], "insufficient_stock");
        }
        *by_status.entry(r.status).or_default() += 1;
    }
    assert_eq!(by_status.get(&201), Some(&100), "{by_status:?}");
    assert_eq!(by_status.get(&409), Some(&300), "{by_status:?}");
    let st = s.get("/v1/stock/HOT").json();
    assert_eq!(
        (st["reserved"].as_u64(), st["available"].as_u64()),
        (Some(100), Some(0))
    );
}

const SKUS: usize = 16;
const START: u64 = 1_000_000;

fn lines_of(t: usize, i: usize) -> Vec<(String, u64)> {
    let a = (t * 7 + i) % SKUS;
    let mut v = vec![(format!("S{a}"), (i % 3 + 1) as u64)];
    if i.is_multiple_of(2) {
        v.push((format!("S{}", (a + 5) % SKUS), 1));
    }
    v
}

#[test]
fn kill_9_under_load_keeps_every_acknowledged_change() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    for k in 0..SKUS {
        assert_eq!(
            s.set_stock(TOK1, &format!("S{k}"), "kol", START).status,
            200
        );
    }
    let port = s.port;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    // (order id, was the reservation acknowledged, was its payment acknowledged)
    type Attempt = (String, usize, usize, bool, bool);
    let log: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (stop, acked, log) = (stop.clone(), acked.clone(), log.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("t{t}-{i}");
                    let lines: Vec<Value> = lines_of(t, i)
                        .iter()
                        .map(|(sku, q)| json!({"sku": sku, "warehouse": "kol", "qty": q}))
                        .collect();
                    let body = json!({"order_id": id, "lines": lines}).to_string();
                    let r = raw_request(port, "POST", "/v1/reservations", &[], body.as_bytes());
                    let ok = matches!(&r, Ok(r) if r.status == 201);
                    let mut paid = false;
                    if ok && i % 3 == 0 {
                        let b = json!({"payment_id": format!("p-{id}"), "order_id": id,
                            "status": "succeeded", "amount_minor": 100, "currency": "RUB"})
                        .to_string();
                        let ts = now_secs().to_string();
                        let sig = sign(SECRET, &ts, b.as_bytes());
                        let r = raw_request(
                            port,
                            "POST",
                            "/v1/payments/callback",
                            &[("x-timestamp", &ts), ("x-signature", &sig)],
                            b.as_bytes(),
                        );
                        paid =
                            matches!(&r, Ok(r) if r.status == 200 && r.json()["status"] == "paid");
                    }
                    log.lock().unwrap().push((id, t, i, ok, paid));
                    if ok {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    if r.is_err() {
                        break;
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Relaxed) < 400 {
        assert!(Instant::now() < deadline, "load did not get going");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    let s = Server::start_in(&data, &[]);
    let log = log.lock().unwrap().clone();
    let mut reserved = [0u64; SKUS];
    let mut taken = [0u64; SKUS];
    let mut acked_n = 0;
    for (id, t, i, ok, paid) in &log {
        let r = s.get(&format!("/v1/reservations/{id}"));
        if *ok {
            acked_n += 1;
            assert_eq!(r.status, 200, "acknowledged {id} lost");
        }
        if r.status == 404 {
            continue;
        }
        let st = r.json()["status"].as_str().unwrap().to_string();
        if *paid {
            assert_eq!(st, "paid", "acknowledged payment of {id} lost");
        }
        for (sku, q) in lines_of(*t, *i) {
            let k: usize = sku[1..].parse().unwrap();
            match st.as_str() {
                "reserved" => reserved[k] += q,
                "paid" => taken[k] += q,
                other => panic!("{id} is {other}"),
            }
        }
    }
    assert!(acked_n >= 400);
    for k in 0..SKUS {
        let v = s.get(&format!("/v1/stock/S{k}")).json();
        assert_eq!(v["reserved"], reserved[k], "S{k}");
        assert_eq!(v["on_hand"], START - taken[k], "S{k}");
    }
    // The event stream has no gaps.
    let after = s.events_gap_free(0, "lifecycle");
    assert!(after as usize >= SKUS + acked_n);
}

/// cli.md: "On SIGTERM ... exits 0". A SIGTERM while the ledger is still being recovered
/// (before the port opens) used to kill the process: the handler was installed only once it
/// served. Now it is caught from the start, the service stops as soon as it is up, exits 0,
/// and nothing is lost.
#[test]
fn sigterm_during_recovery_exits_0_and_loses_nothing() {
    use std::io::BufRead;
    use stockledger::{Command as Cmd, Ledger, Line, Options, Source};
    const ORDERS: usize = 200_000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        // Enough log that recovery takes a while.
        let l = Ledger::open(&data, Options::default()).unwrap();
        l.set_stock("A", "kol", 1_000_000_000, Source::Warehouse)
            .unwrap();
        let lines = [Line::new("A", "kol", 1)];
        for b in 0..ORDERS / 2_000 {
            let ids: Vec<String> = (0..2_000).map(|i| format!("o-{b}-{i}")).collect();
            let batch: Vec<Cmd> = ids.iter().map(|id| Cmd::reserve(id, &lines, 900)).collect();
            assert!(l.execute(&batch).unwrap().iter().all(|r| r.is_ok()));
        }
        l.close().unwrap();
    }
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "stderr ended: {seen}"
        );
        seen.push_str(&line);
        if line.contains("recovering the ledger") {
            break;
        }
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    let status = child.wait().unwrap();
    let rest = drain.join().unwrap();
    assert!(
        status.success(),
        "exit after SIGTERM during recovery: {status}\n{seen}{rest}"
    );
    let l = Ledger::open(&data, Options::default()).unwrap();
    assert_eq!(l.stock("A", "kol").unwrap().reserved, ORDERS as u64);
}
