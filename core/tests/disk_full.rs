//! A full disk through the storage seam: creating (preallocating) a segment fails with
//! ENOSPC, as it does on a real full disk (writes into the zero-filled, already allocated
//! segment still succeed). The ledger must not poison itself for that: it retries the roll
//! while writers wait, loses nothing acknowledged, goes on once space returns, and a ledger
//! closed while the disk is still full reopens with everything it acknowledged.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use stockledger::wal::{FsStorage, Storage, StorageFile};
use stockledger::{Command, Durability, ErrorCode, Ledger, Options, Source, Status};

#[derive(Debug, Default)]
struct Disk {
    full: AtomicBool,
    /// Creates refused with ENOSPC, counted under the mutex so a test can wait for them.
    refused: Mutex<u64>,
    changed: Condvar,
    creates: AtomicU64,
    /// Writes at offset 0 (a new segment's header) fail with EIO, as on a device gone bad.
    eio_headers: AtomicBool,
}

struct File {
    inner: Box<dyn StorageFile>,
    disk: Arc<Disk>,
}

impl StorageFile for File {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset == 0 && self.disk.eio_headers.load(Ordering::SeqCst) {
            *self.disk.refused.lock().unwrap() += 1;
            self.disk.changed.notify_all();
            return Err(io::Error::other("injected EIO on a segment header"));
        }
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

#[derive(Debug, Clone, Default)]
struct FullDisk(Arc<Disk>);

impl Storage for FullDisk {
    fn create(&self, path: &Path, len: u64, zero_fill: bool) -> io::Result<Box<dyn StorageFile>> {
        self.0.creates.fetch_add(1, Ordering::SeqCst);
        if self.0.full.load(Ordering::SeqCst) {
            *self.0.refused.lock().unwrap() += 1;
            self.0.changed.notify_all();
            return Err(io::Error::from_raw_os_error(28));
        }
        Ok(Box::new(File {
            inner: FsStorage.create(path, len, zero_fill)?,
            disk: self.0.clone(),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(File {
            inner: FsStorage.open(path)?,
            disk: self.0.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }
}

impl FullDisk {
    /// Waits until `n` creates were refused (the ledger tried to roll on the full disk).
    fn wait_refused(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut refused = self.0.refused.lock().unwrap();
        while *refused < n {
            assert!(Instant::now() < deadline, "no roll was tried ({refused})");
            refused = self
                .0
                .changed
                .wait_timeout(refused, Duration::from_millis(200))
                .unwrap()
                .0;
        }
    }
}

fn open(dir: &Path, disk: &FullDisk) -> Ledger {
    open_retrying(dir, disk, Options::default().roll_retry_ms)
}

/// `open` with how long a failing roll is retried.
fn open_retrying(dir: &Path, disk: &FullDisk, roll_retry_ms: u64) -> Ledger {
    Ledger::open(
        dir,
        Options {
            durability: Durability::Sync,
            segment_bytes: 1 << 20, // the smallest the ledger takes
            storage: Some(Arc::new(disk.clone())),
            roll_retry_ms,
            ..Options::default()
        },
    )
    .unwrap()
}

/// Writes batches of 500 reservations until `stop` or `batches`; returns the acknowledged ids
/// and the first error.
fn writer(
    l: Arc<Ledger>,
    batches: usize,
    acked: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<Option<stockledger::Error>> {
    std::thread::spawn(move || {
        for b in 0..batches {
            let batch: Vec<Command> = (0..500)
                .map(|i| Command::Reserve {
                    order_id: format!("order-{b:04}-{i:03}"),
                    lines: vec![line("A", "w", 1)],
                    ttl_seconds: 3600,
                })
                .collect();
            match l.execute(&batch) {
                Ok(results) => {
                    let mut acked = acked.lock().unwrap();
                    for (c, r) in batch.iter().zip(results) {
                        match (c, r) {
                            (Command::Reserve { order_id, .. }, Ok(_)) => {
                                acked.push(order_id.clone())
                            }
                            (_, Err(e)) => return Some(e),
                            _ => {}
                        }
                    }
                }
                Err(e) => return Some(e),
            }
        }
        None
    })
}

fn reopen_and_check(dir: &Path, acked: &[String]) -> Ledger {
    let (l, _) = on_disk(dir, Durability::Sync);
    l.check_invariants().unwrap();
    for id in acked {
        assert_eq!(
            l.reservation(id).unwrap().map(|r| r.status),
            Some(Status::Reserved),
            "acknowledged {id} lost"
        );
    }
    let held = l.stock("A", "w").unwrap().reserved;
    assert!(held >= acked.len() as u64, "{held} < {}", acked.len());
    let evs: Vec<u64> = l
        .events(0, 1 << 20)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(evs, (1..=evs.len() as u64).collect::<Vec<_>>(), "gap-free");
    l
}

#[test]
fn a_full_disk_at_a_roll_makes_writers_wait_and_space_returning_lets_them_on() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FullDisk::default();
    let l = Arc::new(open(dir.path(), &disk));
    l.set_stock("A", "w", 1_000_000, Source::Warehouse).unwrap();
    disk.0.full.store(true, Ordering::SeqCst);
    let acked = Arc::new(Mutex::new(Vec::new()));
    // 60 batches of 500 reservations: several 1 MiB segments, so rolls must start segments
    // while the disk is full (the spare made in advance covers at most one).
    let w = writer(l.clone(), 60, acked.clone());
    disk.wait_refused(3);
    // Retried, not poisoned; reads go on meanwhile.
    assert!(
        l.unavailable_reason().is_none(),
        "a full disk at a roll poisoned the ledger"
    );
    assert!(l.stock("A", "w").is_ok());
    let before = acked.lock().unwrap().len();
    assert!(before < 30_000, "the writer never waited");
    disk.0.full.store(false, Ordering::SeqCst);
    assert!(
        w.join().unwrap().is_none(),
        "writes failed once space returned"
    );
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 30_000);
    assert_eq!(l.stock("A", "w").unwrap().reserved, 30_000);
    l.close().unwrap();
    drop(l);
    let l = reopen_and_check(dir.path(), &acked);
    assert_eq!(l.stock("A", "w").unwrap().reserved, 30_000);
}

#[test]
fn a_ledger_closed_while_the_disk_stays_full_keeps_everything_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FullDisk::default();
    let l = Arc::new(open(dir.path(), &disk));
    l.set_stock("A", "w", 1_000_000, Source::Warehouse).unwrap();
    disk.0.full.store(true, Ordering::SeqCst);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = writer(l.clone(), 60, acked.clone());
    disk.wait_refused(3);
    // The operator stops the service: closing ends the retries; the waiting writer is
    // refused, never acknowledged.
    let closed = l.close();
    let err = w.join().unwrap().expect("the waiting writer was refused");
    assert_eq!(err.code(), ErrorCode::LedgerUnavailable, "{err}");
    assert!(closed.is_err() || l.unavailable_reason().is_some());
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty() && acked.len() < 30_000, "{}", acked.len());
    drop(l);
    // Space is back (the real file system): everything acknowledged is there and the
    // ledger takes writes again.
    let l = reopen_and_check(dir.path(), &acked);
    l.reserve("after", &[line("A", "w", 1)], 60).unwrap();
    drop(l);
    let l = reopen_and_check(dir.path(), &acked);
    assert!(l.reservation("after").unwrap().is_some());
}

/// Found by the simulator (seeds 4 and 31, before its watchdog): an EIO that stays on the
/// header write of a new segment is retried like a full disk, without bound. Writers are
/// never answered until the ledger is closed; nothing is lost. This pins that behaviour
/// (and that close ends it); a bound on the retries is for the lead to decide
/// (docs/reliability.md).
#[test]
fn an_eio_on_a_new_segment_header_is_retried_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FullDisk::default();
    let l = Arc::new(open(dir.path(), &disk));
    l.set_stock("A", "w", 1_000_000, Source::Warehouse).unwrap();
    disk.0.eio_headers.store(true, Ordering::SeqCst);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = writer(l.clone(), 60, acked.clone());
    disk.wait_refused(5);
    assert!(l.unavailable_reason().is_none(), "retried, not poisoned");
    let _ = l.close();
    let err = w.join().unwrap().expect("the waiting writer was refused");
    assert_eq!(err.code(), ErrorCode::LedgerUnavailable, "{err}");
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty() && acked.len() < 30_000, "{}", acked.len());
    drop(l);
    reopen_and_check(dir.path(), &acked);
}

/// A roll that keeps failing is retried only for `Options::roll_retry_ms`: then the ledger
/// refuses writes (`ledger_unavailable`, readiness gone) instead of leaving `sync` callers
/// waiting for ever, and everything acknowledged before is there after a restart.
#[test]
fn an_eio_that_stays_gives_up_after_the_roll_retry_time() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FullDisk::default();
    let l = Arc::new(open_retrying(dir.path(), &disk, 300));
    l.set_stock("A", "w", 1_000_000, Source::Warehouse).unwrap();
    disk.0.eio_headers.store(true, Ordering::SeqCst);
    let acked = Arc::new(Mutex::new(Vec::new()));
    // No close(): the writer must give up by itself.
    let err = writer(l.clone(), 60, acked.clone())
        .join()
        .unwrap()
        .expect("the waiting writer was refused");
    assert_eq!(err.code(), ErrorCode::LedgerUnavailable, "{err}");
    assert!(
        l.unavailable_reason().is_some(),
        "poisoned after the retry time"
    );
    let refused = l.set_stock("A", "w", 5, Source::Warehouse).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::LedgerUnavailable);
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty() && acked.len() < 30_000, "{}", acked.len());
    let _ = l.close();
    drop(l);
    disk.0.eio_headers.store(false, Ordering::SeqCst);
    reopen_and_check(dir.path(), &acked);
}
