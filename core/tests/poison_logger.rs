//! A logger that blocks must not keep the ledger's waiters hanging when the log fails.
//!
//! `wal::Shared::poison` used to log the cause under the reason lock before it set the
//! poisoned flag and woke the waiters: a logger blocked on a full disk (stderr redirected
//! to it) then held every request waiting for durability forever. Now the flag is set and
//! the waiters are woken first, and the cause is logged after, outside the lock.
//!
//! Its own test binary: the subscriber is the process-wide default (the log writer thread
//! is the one that logs).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use stockledger::wal::{Fault, FaultyStorage};
use stockledger::{Durability, ErrorCode, Ledger, Options, Source};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Blocks the thread that logs "log write failed" until `open` is called.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    entered: Mutex<u32>,
}

impl Gate {
    fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }
}

struct Blocking(Arc<Gate>);

struct Message(bool);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}").contains("log write failed") {
            self.0 = true;
        }
    }
}

impl Subscriber for Blocking {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut m = Message(false);
        event.record(&mut m);
        if !m.0 {
            return;
        }
        *self.0.entered.lock() += 1;
        let mut open = self.0.open.lock();
        while !*open {
            self.0.cv.wait(&mut open);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_blocked_logger_does_not_keep_waiters_hanging_when_the_log_fails() {
    let gate = Arc::new(Gate::default());
    tracing::subscriber::set_global_default(Blocking(gate.clone())).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(
        Ledger::open(
            dir.path(),
            Options {
                durability: Durability::Sync,
                // Creating the segment and the first writes pass; a later write fails.
                storage: Some(Arc::new(FaultyStorage::new(Fault::WriteError, 4))),
                segment_bytes: 1 << 20,
                ..Options::default()
            },
        )
        .expect("the fault fires after the open"),
    );
    // Writers that wait for durability until they are refused (all of it in threads: a
    // writer that hangs must not hang the test).
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for t in 0..4 {
        let l = ledger.clone();
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..10_000 {
                if let Err(e) = l.set_stock(&format!("S{t}-{i}"), "w", 1, Source::Warehouse) {
                    let _ = tx.send(e.code());
                    return;
                }
            }
            let _ = tx.send(ErrorCode::InvalidRequest);
        }));
    }
    drop(tx);

    let mut answers = Vec::new();
    for _ in 0..4 {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(code) => answers.push(code),
            Err(_) => {
                let entered = *gate.entered.lock();
                // Let the writer thread go so the process can end, then fail.
                gate.open();
                panic!(
                    "writers still waiting 20 s after the log failed (logger entered {entered} \
                     time(s)); answers so far: {answers:?}"
                );
            }
        }
    }
    assert!(
        answers.iter().all(|&c| c == ErrorCode::LedgerUnavailable),
        "every writer is refused as unavailable: {answers:?}"
    );
    // The refusals came while the cause was (or was about to be) logged by a blocked
    // logger: it is entered once, and stays blocked until the gate opens.
    let since = std::time::Instant::now();
    while *gate.entered.lock() == 0 && since.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*gate.entered.lock(), 1, "the cause is logged once");
    let reason = ledger.unavailable_reason().expect("poisoned");
    assert!(!reason.is_empty());
    gate.open();
    for t in threads {
        t.join().unwrap();
    }
    let _ = ledger.close();
}
