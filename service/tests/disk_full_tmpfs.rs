//! A real full disk under the real service: `stockledgerd` (sync durability) runs with its
//! data dir on a 40 MiB tmpfs, and its stderr goes to a file on the same tmpfs (as a log
//! redirected to a full disk would). The first 32 MiB log segment is sized but sparse, so
//! it fills as records are written; the background spare segment takes what is left. Four
//! clients reserve orders of 100 lines with long names (~14 KB of log each) until a log
//! write fails with ENOSPC. Checked:
//! - that write and every later one answer 503 `ledger_unavailable` (no other error, no
//!   hang, no 2xx after the failure), `/readyz` answers 503;
//! - reads keep working: every acknowledged reservation and the stock are served;
//! - after a kill and a restart on the same folder with space (the tmpfs grown to 256 MiB),
//!   every acknowledged reservation is there, whole; an order in flight is whole or absent;
//!   each sku's `reserved` equals the orders present, `available = on_hand - reserved`;
//!   and the service takes writes again.
//!
//! Before the fix in `service/src/main.rs` (`log_internal_errors(false)`) every request
//! waiting at the failure hung: tracing-subscriber reports a failed stderr write with
//! `eprintln!`, which panics; the log writer thread panicked while poisoning the ledger,
//! again inside its panic handler, and died without waking anyone.
//!
//! Needs root (mount). Without it, or if mounting fails, it prints `SKIPPED: <reason>` and
//! passes. The mount is undone by a guard whatever happens (the server is killed first).
//! ~2 s.

mod http_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_common::*;
use serde_json::{json, Value};

const SKUS: usize = 100;
const ON_HAND: u64 = 1_000_000_000;
const THREADS: usize = 4;

fn sku(i: usize) -> String {
    let s = format!("sku-{i:03}-{}", "x".repeat(56));
    assert_eq!(s.len(), 64);
    s
}

fn warehouse() -> String {
    format!("warehouse-{}", "w".repeat(54))
}

/// Unmounts (lazily, so a busy mount still goes) when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let st = Command::new("umount").arg("-l").arg(&self.0).status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!("could not unmount {}: {st:?}", self.0.display());
        }
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: cannot mount a tmpfs".into());
    }
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Mount(dir.to_path_buf()))
}

fn remount(dir: &Path, size: &str) {
    let st = Command::new("mount")
        .args(["-o", &format!("remount,size={size}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "remount {size}");
}

fn order_body(id: &str, wh: &str) -> Vec<u8> {
    let lines: Vec<Value> = (0..SKUS)
        .map(|i| json!({"sku": sku(i), "warehouse": wh, "qty": 1}))
        .collect();
    json!({"order_id": id, "lines": lines, "ttl_seconds": 604800})
        .to_string()
        .into_bytes()
}

#[derive(Debug, Default)]
struct Log {
    acked: Vec<String>,
    /// No answer, or an answer that is not a 2xx: whole or absent after the restart.
    in_flight: Vec<String>,
    /// 503 ledger_unavailable answers seen.
    unavailable: usize,
    /// Anything else: the test fails on these.
    unexpected: Vec<String>,
}

#[test]
fn a_full_tmpfs_gives_503_keeps_reads_and_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _mount = match mount_tmpfs(&mnt, "40m") {
        Ok(m) => m,
        Err(why) => {
            println!("SKIPPED: {why}");
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let data = mnt.join("data");
    let wh = warehouse();
    let started = Instant::now();
    // The server is declared after the mount guard: dropped (killed) first.
    let mut server = Server::start_in(&data, &["--request-timeout", "120"]);
    for i in 0..SKUS {
        let r = server.set_stock(TOK1, &sku(i), &wh, ON_HAND);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let port = server.port;
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let (log, stop, wh) = (log.clone(), stop.clone(), wh.clone());
            std::thread::spawn(move || {
                for n in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let id = format!("df-{t}-{n}");
                    let r =
                        raw_request(port, "POST", "/v1/reservations", &[], &order_body(&id, &wh));
                    let mut g = log.lock().unwrap();
                    match r {
                        Ok(r) if r.status == 201 => g.acked.push(id),
                        Ok(r) if r.status == 503 && r.json()["error"] == "ledger_unavailable" => {
                            g.in_flight.push(id);
                            g.unavailable += 1;
                            // Keep going a little: every later write must get the same.
                            if g.unavailable >= 20 {
                                stop.store(true, Ordering::SeqCst);
                            }
                        }
                        Ok(r) => {
                            g.in_flight.push(id.clone());
                            g.unexpected.push(format!(
                                "{id}: {} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ));
                            stop.store(true, Ordering::SeqCst);
                        }
                        Err(e) => {
                            g.in_flight.push(id.clone());
                            g.unexpected.push(format!("{id}: {e}"));
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    // Bounded: the segment fills in about a second.
    let deadline = Instant::now() + Duration::from_secs(240);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    let filled = started.elapsed();
    eprintln!(
        "disk full after {filled:?}: {} acknowledged, {} answered ledger_unavailable, {} in flight",
        log.acked.len(),
        log.unavailable,
        log.in_flight.len()
    );
    if !log.unexpected.is_empty() {
        let ls = Command::new("ls").arg("-la").arg(&data).output().unwrap();
        let df = Command::new("df").arg(&mnt).output().unwrap();
        eprintln!(
            "{}\n{}\nstderr of the server:\n{}",
            String::from_utf8_lossy(&ls.stdout),
            String::from_utf8_lossy(&df.stdout),
            server.stderr_text()
        );
    }
    assert!(
        log.unexpected.is_empty(),
        "unexpected answers: {:?}",
        log.unexpected
    );
    assert!(
        log.unavailable >= 20,
        "the writes on a full disk never got 503 ledger_unavailable"
    );
    assert!(
        log.acked.len() > 1000,
        "the segment held too few orders: {}",
        log.acked.len()
    );

    // Reads keep working; writes and readiness say unavailable.
    server.get("/readyz").err(503, "ledger_unavailable");
    server
        .set_stock(TOK1, &sku(0), &wh, ON_HAND)
        .err(503, "ledger_unavailable");
    for id in &log.acked {
        let r = server.get(&format!("/v1/reservations/{id}"));
        assert_eq!(r.status, 200, "read of {id} on a full disk");
        assert_eq!(r.json()["status"], "reserved");
    }
    let r = server.get(&format!("/v1/stock/{}", sku(0)));
    assert_eq!(r.status, 200, "stock read on a full disk");

    // Space comes back; restart on the same folder.
    server.kill9();
    remount(&mnt, "256m");
    let server = Server::start_in(&data, &[]);
    server.get("/readyz");
    let mut present: BTreeMap<String, bool> = BTreeMap::new();
    for id in &log.acked {
        let r = server.get(&format!("/v1/reservations/{id}"));
        assert_eq!(r.status, 200, "acknowledged {id} lost after the restart");
        let v = r.json();
        assert_eq!(v["status"], "reserved", "{id}: {v}");
        assert_eq!(
            v["lines"].as_array().map(|l| l.len()),
            Some(SKUS),
            "{id} whole"
        );
        present.insert(id.clone(), true);
    }
    let mut in_flight_present = 0;
    for id in &log.in_flight {
        let r = server.get(&format!("/v1/reservations/{id}"));
        match r.status {
            200 => {
                let v = r.json();
                assert_eq!(
                    v["lines"].as_array().map(|l| l.len()),
                    Some(SKUS),
                    "{id} whole"
                );
                in_flight_present += 1;
                present.insert(id.clone(), true);
            }
            404 => {}
            s => panic!("{id}: {s}"),
        }
    }
    let held = present.len() as u64;
    for i in 0..SKUS {
        let v = server.get(&format!("/v1/stock/{}", sku(i))).json();
        assert_eq!(
            v["reserved"], held,
            "sku {i}: reserved equals the orders present: {v}"
        );
        assert_eq!(v["on_hand"], ON_HAND, "sku {i}: {v}");
        assert_eq!(v["available"], ON_HAND - held, "sku {i}: {v}");
    }
    // Writable again.
    let r = raw_request(
        server.port,
        "POST",
        "/v1/reservations",
        &[],
        &order_body("df-after", &wh),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200);
    eprintln!(
        "after the restart: {} acknowledged all there, {in_flight_present} of {} in flight present; {:?} in all",
        log.acked.len(),
        log.in_flight.len(),
        started.elapsed()
    );
}
