//! Crash test: a child process does random operations in `sync` mode and reports every
//! acknowledgement through a pipe; the parent kills it with SIGKILL at a random moment,
//! reopens the folder and checks that every acknowledged operation is there, that nothing
//! is half applied (invariants 1-3), and that the event stream agrees with the state.
//! 50 kill cycles by default; `STOCKLEDGER_CRASH_CYCLES=500` for a longer run.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use stockledger::{Entry, Ledger, Line, Options, Source, Status};

const SKUS: usize = 20;
const STOCK: u64 = 1_000_000;
const CHILD_ENV: &str = "STOCKLEDGER_CRASH_CHILD";

fn options() -> Options {
    Options {
        segment_bytes: 1 << 20,
        checkpoint_every_bytes: 4 << 20,
        ..Options::default()
    }
}

/// The child: runs until killed. Not a test on its own (returns at once without the env).
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, cycle) = spec.split_once('|').unwrap();
    let ledger = Arc::new(Ledger::open(dir, options()).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    writeln!(out.lock().unwrap(), "\nSTOCKLEDGER-READY").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (ledger, out, cycle) = (ledger.clone(), out.clone(), cycle.to_string());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t + cycle.len() as u64 * 1000);
                for i in 0.. {
                    let id = format!("c{cycle}-t{t}-{i}");
                    let mut lines: Vec<Line> = Vec::new();
                    for _ in 0..rng.random_range(1..4) {
                        let sku = format!("s{}", rng.random_range(0..SKUS));
                        if !lines.iter().any(|l| l.sku == sku) {
                            lines.push(Line::new(sku, "w", rng.random_range(1..4)));
                        }
                    }
                    ledger.reserve(&id, &lines, 3600).unwrap();
                    writeln!(out.lock().unwrap(), "R {id}").unwrap();
                    match rng.random_range(0..3) {
                        0 => {
                            ledger.commit(&id).unwrap();
                            writeln!(out.lock().unwrap(), "C {id}").unwrap();
                        }
                        1 => {
                            ledger.release(&id).unwrap();
                            writeln!(out.lock().unwrap(), "X {id}").unwrap();
                        }
                        _ => {}
                    }
                    if t == 0 && i % 500 == 499 {
                        ledger.checkpoint().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[derive(Default)]
struct Acks {
    reserved: Vec<String>,
    paid: Vec<String>,
    released: Vec<String>,
}

#[test]
fn kill_dash_nine_loses_nothing_acknowledged() {
    let cycles: u32 = std::env::var("STOCKLEDGER_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(dir.path(), options()).unwrap();
        for s in 0..SKUS {
            ledger
                .set_stock(&format!("s{s}"), "w", STOCK, Source::Warehouse)
                .unwrap();
        }
        ledger.close().unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut acks = Acks::default();
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{cycle}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let pump = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the child to be up, then let it run a random while before SIGKILL.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(deadline - Instant::now())
                .expect("child never got ready");
            if line.ends_with("STOCKLEDGER-READY") {
                break;
            }
        }
        let run_for = Duration::from_millis(rng.random_range(5..120));
        let until = Instant::now() + run_for;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => record(&mut acks, line),
                Err(_) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        pump.join().unwrap();
        // Lines already in the pipe were acknowledged before the kill.
        for line in rx.try_iter() {
            record(&mut acks, line);
        }
        verify(dir.path(), &acks, cycle);
    }
    assert!(
        acks.reserved.len() as u32 >= cycles,
        "too few acknowledged operations ({}) to mean anything",
        acks.reserved.len()
    );
    println!(
        "{cycles} kill cycles, {} reservations, {} commits, {} releases acknowledged",
        acks.reserved.len(),
        acks.paid.len(),
        acks.released.len()
    );
}

fn record(acks: &mut Acks, line: String) {
    let Some((kind, id)) = line.split_once(' ') else {
        return;
    };
    match kind {
        "R" => acks.reserved.push(id.to_string()),
        "C" => acks.paid.push(id.to_string()),
        "X" => acks.released.push(id.to_string()),
        _ => {}
    }
}

fn verify(dir: &std::path::Path, acks: &Acks, cycle: u32) {
    let ledger = Ledger::open(dir, options())
        .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
    ledger
        .check_invariants()
        .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
    for id in &acks.reserved {
        assert!(
            ledger.reservation(id).unwrap().is_some(),
            "cycle {cycle}: acknowledged reservation {id} lost"
        );
    }
    for id in &acks.paid {
        assert_eq!(
            ledger.reservation(id).unwrap().unwrap().status,
            Status::Paid,
            "cycle {cycle}: {id}"
        );
    }
    for id in &acks.released {
        assert_eq!(
            ledger.reservation(id).unwrap().unwrap().status,
            Status::Released,
            "cycle {cycle}: {id}"
        );
    }
    // The event stream from seq 1, replayed by a simple model, gives the same cells and
    // the same reservation states: no event without its change, no change without its event.
    let mut cells: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut orders: HashMap<String, &'static str> = HashMap::new();
    let mut expect_seq = 1;
    for ev in stockledger::read_events(dir, 0).unwrap() {
        let ev = ev.unwrap();
        assert_eq!(ev.seq, expect_seq, "cycle {cycle}: gap in the event stream");
        expect_seq += 1;
        match &ev.entry {
            Entry::Stock { sku, delta, .. } => cells.entry(sku.clone()).or_default().0 += delta,
            Entry::Created {
                order_id, lines, ..
            } => {
                assert!(
                    orders.insert(order_id.clone(), "reserved").is_none(),
                    "created twice: {order_id}"
                );
                for (s, _, q) in lines {
                    cells.entry(s.clone()).or_default().1 += *q as i64;
                }
            }
            Entry::Finished {
                order_id, lines, ..
            } => {
                let state = orders.get_mut(order_id).expect("finished before created");
                assert_eq!(*state, "reserved", "finished twice: {order_id}");
                *state = match ev.kind() {
                    "order.paid" => "paid",
                    "reservation.expired" => "expired",
                    _ => "released",
                };
                for (s, _, q) in lines {
                    let c = cells.entry(s.clone()).or_default();
                    c.1 -= *q as i64;
                    if *state == "paid" {
                        c.0 -= *q as i64;
                    }
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        expect_seq - 1,
        ledger.last_seq(),
        "cycle {cycle}: stream and ledger disagree on the last seq"
    );
    for (sku, (on_hand, reserved)) in &cells {
        let l = ledger.stock(sku, "w").unwrap();
        assert_eq!(
            (l.on_hand as i64, l.reserved as i64),
            (*on_hand, *reserved),
            "cycle {cycle}: cell {sku}"
        );
    }
    for (id, state) in &orders {
        assert_eq!(
            ledger.reservation(id).unwrap().unwrap().status.as_str(),
            *state,
            "cycle {cycle}: {id}"
        );
    }
    ledger.close().unwrap();
}
