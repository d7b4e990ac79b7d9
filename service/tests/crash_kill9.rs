//! kill -9 through the service, in cycles: the real `stockledgerd` (sync durability, the
//! default) takes reservations, payments (commit) and cancellations (release) over HTTP from
//! several client threads; at a random moment it is killed with SIGKILL, restarted on the
//! same folder, and checked: every acknowledged (2xx) operation is there with its effect, an
//! operation in flight is either whole or absent, stock equals what the orders hold
//! (no oversell, conservation), and the events feed is gap-free and never shrinks. A fifth
//! thread checkpoints over and over, so kills also land in snapshot writes.
//!
//! `STOCKLEDGER_CRASH_CYCLES=<n>` (default 50, ~30 s on 2 cores); the long run is
//! `STOCKLEDGER_CRASH_CYCLES=1000`. `STOCKLEDGER_CRASH_SEED=<n>` changes the kill moments.

mod http_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use http_common::*;
use serde_json::{json, Value};

const SKUS: usize = 8;
const START: u64 = 10_000_000;
const THREADS: usize = 4;

/// Orders checked after a restart: id -> (lines, status).
type Settled = BTreeMap<String, (Vec<(usize, u64)>, String)>;

/// What a client tried for one order and which answers it got.
#[derive(Debug, Clone, Default)]
struct Attempt {
    lines: Vec<(usize, u64)>,
    reserve_acked: bool,
    /// "paid" or "released": the second operation tried, and whether it was acknowledged.
    then: Option<(&'static str, bool)>,
}

fn lines_for(x: u64) -> Vec<(usize, u64)> {
    let a = (x % SKUS as u64) as usize;
    let mut v = vec![(a, x % 3 + 1)];
    if x.is_multiple_of(2) {
        v.push(((a + 3) % SKUS, 1));
    }
    v
}

/// SplitMix64: the kill moments and the clients' choices from one seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One client thread of one cycle: runs until a request fails (the server is dead).
/// The attempts of one cycle; the condvar is notified on every acknowledged reservation.
type Log = Arc<(Mutex<BTreeMap<String, Attempt>>, Condvar)>;

fn client(port: u16, cycle: u64, t: usize, seed: u64, shared: Log) {
    let (log, acked) = (&shared.0, &shared.1);
    for i in 0u64.. {
        let r = mix(seed ^ (cycle << 32) ^ ((t as u64) << 24) ^ i);
        let id = format!("c{cycle}-t{t}-{i}");
        let lines = lines_for(r);
        log.lock().unwrap().insert(
            id.clone(),
            Attempt {
                lines: lines.clone(),
                ..Attempt::default()
            },
        );
        let body: Vec<Value> = lines
            .iter()
            .map(|(k, q)| json!({"sku": format!("S{k}"), "warehouse": "kol", "qty": q}))
            .collect();
        let body = json!({"order_id": id, "lines": body}).to_string();
        let Ok(resp) = raw_request(port, "POST", "/v1/reservations", &[], body.as_bytes()) else {
            return;
        };
        assert!(
            resp.status == 201 || resp.status >= 500,
            "reserve {id}: {}",
            resp.status
        );
        if resp.status != 201 {
            return;
        }
        log.lock().unwrap().get_mut(&id).unwrap().reserve_acked = true;
        acked.notify_all();
        let second = match (r >> 8) % 3 {
            0 => "paid",
            1 => "released",
            _ => continue,
        };
        log.lock().unwrap().get_mut(&id).unwrap().then = Some((second, false));
        let resp = if second == "paid" {
            let b = json!({"payment_id": format!("p-{id}"), "order_id": id,
                "status": "succeeded", "amount_minor": 100, "currency": "RUB"})
            .to_string();
            let ts = now_secs().to_string();
            let sig = sign(SECRET, &ts, b.as_bytes());
            raw_request(
                port,
                "POST",
                "/v1/payments/callback",
                &[("x-timestamp", &ts), ("x-signature", &sig)],
                b.as_bytes(),
            )
        } else {
            raw_request(port, "DELETE", &format!("/v1/reservations/{id}"), &[], b"")
        };
        let Ok(resp) = resp else { return };
        if resp.status == 200 {
            assert_eq!(resp.json()["status"], second, "{id}");
            log.lock().unwrap().get_mut(&id).unwrap().then = Some((second, true));
        } else {
            assert!(resp.status >= 500, "{second} {id}: {}", resp.status);
            return;
        }
    }
}

/// Checkpoints over and over (`POST /v1/admin/checkpoint`) until the server is dead, so that
/// kills land in the middle of snapshot writes too; returns how many succeeded.
fn checkpointer(port: u16) -> u64 {
    let auth = format!("Bearer {ADMIN}");
    let mut done = 0;
    while let Ok(r) = raw_request(
        port,
        "POST",
        "/v1/admin/checkpoint",
        &[("authorization", &auth)],
        b"",
    ) {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        done += 1;
    }
    done
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn kill_dash_nine_in_cycles_loses_nothing_acknowledged() {
    let cycles = env_u64("STOCKLEDGER_CRASH_CYCLES").unwrap_or(50);
    let seed = env_u64("STOCKLEDGER_CRASH_SEED").unwrap_or(10);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let mut s = Server::start_in(&data, &[]);
        for k in 0..SKUS {
            assert_eq!(
                s.set_stock(TOK1, &format!("S{k}"), "kol", START).status,
                200
            );
        }
        s.kill9();
    }
    let mut settled = Settled::new();
    let mut events_seen = 0u64;
    let mut acked_total = 0usize;
    let mut checkpoints = 0u64;
    for cycle in 0..cycles {
        let mut s = Server::start_in(&data, &[]);
        check(&s, &settled, &mut events_seen, cycle);
        let log: Log = Arc::default();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (port, log) = (s.port, log.clone());
                std::thread::spawn(move || client(port, cycle, t, seed, log))
            })
            .collect();
        let port = s.port;
        let checkpointing = std::thread::spawn(move || checkpointer(port));
        // The kill moment: after a random number of acknowledged reservations (0..80), so
        // it lands anywhere in a request, a group commit or a checkpoint.
        let target = (mix(seed ^ cycle) % 80) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempts = log.0.lock().unwrap();
        loop {
            let n = attempts.values().filter(|a| a.reserve_acked).count();
            if n >= target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "load did not get going ({n} acks)"
            );
            attempts = log
                .1
                .wait_timeout(attempts, Duration::from_secs(1))
                .unwrap()
                .0;
        }
        drop(attempts);
        s.kill9();
        for t in threads {
            t.join().unwrap();
        }
        checkpoints += checkpointing.join().unwrap();
        let log = std::mem::take(&mut *log.0.lock().unwrap());
        // Restart and settle this cycle's orders.
        let s = Server::start_in(&data, &[]);
        for (id, a) in log {
            let r = s.get(&format!("/v1/reservations/{id}"));
            let status = match r.status {
                404 => {
                    assert!(!a.reserve_acked, "acknowledged reservation {id} lost");
                    continue;
                }
                200 => r.json()["status"].as_str().unwrap().to_string(),
                other => panic!("GET {id}: {other}"),
            };
            if a.reserve_acked {
                acked_total += 1;
            }
            match a.then {
                Some((want, true)) => assert_eq!(status, want, "acknowledged {want} of {id} lost"),
                Some((want, false)) => assert!(
                    status == "reserved" || status == want,
                    "{id}: {status}, only {want} was tried"
                ),
                None => assert_eq!(status, "reserved", "{id}: nothing but a reserve was tried"),
            }
            settled.insert(id, (a.lines, status));
        }
        check(&s, &settled, &mut events_seen, cycle);
        drop(s);
    }
    eprintln!(
        "crash_kill9: {cycles} cycles, {acked_total} acknowledged reservations, {} orders, {events_seen} events, {checkpoints} checkpoints in {:.1?}",
        settled.len(),
        started.elapsed()
    );
    assert!(acked_total > 0 || cycles == 0);
    assert!(checkpoints > 0 || cycles == 0);
}

/// Stock equals what the settled orders hold; the events feed is gap-free and reaches at
/// least as far as it did before (read from the last event seen, which must still be there:
/// the feed before it was checked gap-free from 1 by earlier calls).
fn check(s: &Server, settled: &Settled, events_seen: &mut u64, cycle: u64) {
    let mut reserved = [0u64; SKUS];
    let mut taken = [0u64; SKUS];
    for (lines, status) in settled.values() {
        for (k, q) in lines {
            match status.as_str() {
                "reserved" => reserved[*k] += q,
                "paid" => taken[*k] += q,
                "released" => {}
                other => panic!("status {other}"),
            }
        }
    }
    for k in 0..SKUS {
        let v = s.get(&format!("/v1/stock/S{k}")).json();
        assert_eq!(v["reserved"], reserved[k], "cycle {cycle}: S{k} {v}");
        assert_eq!(v["on_hand"], START - taken[k], "cycle {cycle}: S{k} {v}");
        assert_eq!(v["available"], START - taken[k] - reserved[k], "S{k}");
    }
    let after = s.events_gap_free(events_seen.saturating_sub(1), &format!("cycle {cycle}"));
    assert!(
        after >= *events_seen,
        "cycle {cycle}: the feed ends at {after}, {} was read before",
        *events_seen
    );
    *events_seen = after;
}
