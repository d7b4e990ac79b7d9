//! Durability: the write-ahead log (segments, group-commit writer), snapshots and recovery.
//!
//! The log is also the outbox: events are read back from it (`reader.rs`).

mod error;
mod reader;
mod recovery;
mod segment;
mod snapshot;

mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use parking_lot::Mutex;

pub use crate::storage::{
    map_file, Fault, FaultyStorage, FsStorage, ReadMap, Storage, StorageFile,
};
pub use reader::{read_events, read_events_with_storage, EventReader};

use crate::error::{Error, Result};
use crate::options::{Durability, Options};
use crate::sequencer::{Lsn, Sequencer};
use crate::state::State;
use crate::time::Clock;
use error::{StorageError, StorageResult};

/// How many waiting threads the writer, and then each thread woken, unparks. With 64
/// `sync` callers 4 and 2 did about the same and 1 (a chain) less; the writer unparking
/// every waiter itself synced half as often (`docs/architecture.md`, "Waiting for the disk").
const WAKE_FANOUT: usize = 4;

/// A sample of where a seq starts in a segment, so readers need not scan from its start.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    pub(crate) first_lsn: u64,
    pub(crate) first_seq: u64,
    pub(crate) epoch: u32,
    pub(crate) path: PathBuf,
    /// (first seq of a frame, its offset), increasing.
    pub(crate) index: Vec<(u64, u32)>,
}

/// Frames kept in memory by a `Durability::None` ledger, for its events feed.
#[derive(Default)]
pub(crate) struct MemLog {
    /// (first seq, frames)
    pub(crate) chunks: std::collections::VecDeque<(u64, Vec<u8>)>,
    pub(crate) bytes: usize,
}

pub(crate) use crate::limits::{MEM_CHUNK_BYTES, MEM_LOG_BYTES};

/// Who waits for an lsn: a blocked thread, or an async task (token, waker).
enum Waiter {
    /// The id is kept beside the handle so that finding an entry reads no other thread's
    /// memory under the lock.
    Thread(std::thread::ThreadId, std::thread::Thread),
    Task(u64, std::task::Waker),
}

impl Waiter {
    fn is_thread(&self, id: std::thread::ThreadId) -> bool {
        matches!(self, Waiter::Thread(t, _) if *t == id)
    }
}

/// State shared by the ledger's threads and its log writer.
pub(crate) struct Shared {
    pub(crate) dir: Option<PathBuf>,
    /// The files' seam (checkpoints write and remove through it too).
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) durability: Durability,
    pub(crate) ledger_id: u64,
    pub(crate) durable_lsn: AtomicU64,
    pub(crate) durable_seq: AtomicU64,
    poisoned: AtomicBool,
    reason: Mutex<Option<String>>,
    pub(crate) closing: AtomicBool,
    closed: AtomicBool,
    /// Callers waiting for their lsn to become durable, each woken only once it is (a
    /// condvar's notify_all would wake every waiter for every batch). At most one entry per
    /// waiting thread or task; bounded by the callers in flight.
    waiters: Mutex<Vec<(Lsn, Waiter)>>,
    /// Threads told their lsn is durable but not unparked yet. The writer unparks
    /// `WAKE_FANOUT` of them and each thread woken unparks as many more, so the writer is
    /// back at the log after a few system calls instead of one per waiter. Bounded like
    /// `waiters`.
    to_unpark: Mutex<Vec<std::thread::Thread>>,
    /// Names the next task that registers in `waiters`.
    next_task: AtomicU64,
    pub(crate) writer_sleeping: AtomicBool,
    writer_thread: OnceLock<std::thread::Thread>,
    pub(crate) segments: Mutex<Vec<SegmentMeta>>,
    pub(crate) mem: Mutex<MemLog>,
    pub(crate) bytes_since_checkpoint: AtomicU64,
    pub(crate) checkpoint_lock: Mutex<()>,
    /// Segments holding events above this seq are kept (the Kafka outbox); MAX: no pin.
    pub(crate) keep_after_seq: AtomicU64,
    /// The epoch new segments are written with (see `SegmentHeader::epoch`).
    pub(crate) epoch: std::sync::atomic::AtomicU32,
    /// An epoch asked for by `new_epoch`, which the writer starts before its next batch.
    pub(crate) epoch_wanted: std::sync::atomic::AtomicU32,
    /// Segments last written less than this long ago are kept for the events feed.
    pub(crate) events_retention_ms: AtomicU64,
    pub(crate) checkpoint_kick: Mutex<Option<std::sync::mpsc::SyncSender<()>>>,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) records_written: AtomicU64,
    /// The ledger's clock: each frame carries its time, so replay takes the time for
    /// retention from the log, not from the clock of the process replaying it.
    pub(crate) clock: Arc<dyn Clock>,
}

impl Shared {
    /// Stops the log for good: the reason is kept, the flag set and every waiter woken
    /// first, and only then is the cause logged, outside the reason lock: a logger that
    /// blocks (a full disk under a redirected stderr) or panics must never keep a waiter
    /// hanging or the reason locked (`core/tests/poison_logger.rs`).
    pub(crate) fn poison(&self, why: String) {
        let mut r = self.reason.lock();
        let logged = if r.is_none() {
            *r = Some(why.clone());
            Some(why)
        } else {
            None
        };
        self.poisoned.store(true, Ordering::SeqCst);
        drop(r);
        self.notify();
        if let Some(why) = logged {
            tracing::error!(cause = %why, "log write failed: the ledger refuses writes until restarted");
        }
    }

    /// Wakes the waiters whose lsn is durable now (every waiter once the log has stopped).
    pub(crate) fn notify(&self) {
        let stopped = self.poisoned.load(Ordering::Acquire) || self.closed.load(Ordering::Acquire);
        let durable = self.durable_lsn.load(Ordering::Acquire);
        let mut wake: smallvec::SmallVec<[Waiter; 32]> = smallvec::SmallVec::new();
        let mut waiters = self.waiters.lock();
        let mut i = 0;
        while i < waiters.len() {
            if stopped || waiters[i].0 <= durable {
                wake.push(waiters.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        drop(waiters);
        // Outside the lock: each unpark may be a system call.
        let mut threads: smallvec::SmallVec<[std::thread::Thread; 32]> = smallvec::SmallVec::new();
        for waiter in wake {
            match waiter {
                Waiter::Thread(_, thread) => threads.push(thread),
                Waiter::Task(_, waker) => waker.wake(),
            }
        }
        if threads.len() > WAKE_FANOUT {
            self.to_unpark.lock().extend(threads.drain(WAKE_FANOUT..));
        }
        for thread in threads {
            thread.unpark();
        }
    }

    /// Unparks up to `WAKE_FANOUT` of the threads `notify` left to the ones it woke.
    fn pass_on_wake_ups(&self) {
        let mut next: smallvec::SmallVec<[std::thread::Thread; WAKE_FANOUT]> =
            smallvec::SmallVec::new();
        {
            let mut to_unpark = self.to_unpark.lock();
            let keep = to_unpark.len().saturating_sub(WAKE_FANOUT);
            next.extend(to_unpark.drain(keep..));
        }
        for thread in next {
            thread.unpark();
        }
    }

    fn unavailable(&self) -> Error {
        self.stopped().into()
    }

    /// Why the log takes no more writes: closed, or stopped by a failure.
    fn stopped(&self) -> StorageError {
        if self.closing.load(Ordering::SeqCst) && !self.poisoned.load(Ordering::SeqCst) {
            return StorageError::Closed;
        }
        let r = self.reason.lock();
        StorageError::Poisoned {
            reason: r.as_deref().unwrap_or("closed").to_string(),
        }
    }

    fn wake_writer(&self) {
        if self.writer_sleeping.load(Ordering::SeqCst) {
            if let Some(t) = self.writer_thread.get() {
                t.unpark();
            }
        }
    }
}

/// The ledger's handle on its log.
pub(crate) struct Log {
    pub(crate) shared: Arc<Shared>,
    pub(crate) seq: Arc<Sequencer>,
    pub(crate) state: Arc<State>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    lock_file: Mutex<Option<File>>,
}

impl Log {
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.shared.poisoned.load(Ordering::Acquire)
            || self.shared.closing.load(Ordering::Acquire)
        {
            return Err(self.shared.unavailable());
        }
        Ok(())
    }

    pub(crate) fn wait(&self, lsn: Lsn) -> Result<()> {
        self.wait_for(lsn, self.shared.durability == Durability::Sync)
    }

    /// Waits until the writer has taken `lsn` (written, and synced unless memory-only),
    /// whatever the durability mode: readers of the event stream see their own writes.
    pub(crate) fn flush(&self, lsn: Lsn) -> Result<()> {
        self.wait_for(lsn, true)
    }

    fn wait_for(&self, lsn: Lsn, block: bool) -> Result<()> {
        let s = &self.shared;
        if s.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        if !block {
            return if s.poisoned.load(Ordering::Acquire) {
                Err(s.unavailable())
            } else {
                Ok(())
            };
        }
        s.wake_writer();
        // Without fsync the writer takes a record within microseconds: spin briefly. With
        // it, a wait lasts an fsync (100+ us here), and a spin only takes the CPU from the
        // writer and from the callers just woken (27% of all CPU with 64 `sync` callers).
        if s.durability != Durability::Sync {
            for _ in 0..200 {
                if s.durable_lsn.load(Ordering::Acquire) >= lsn {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
        }
        // Registered under the lock after a last check: `notify` stores nothing it reads
        // under the lock, so either it sees this entry or this check sees its durable lsn.
        let mut registered = false;
        loop {
            {
                let mut waiters = s.waiters.lock();
                if s.durable_lsn.load(Ordering::Acquire) >= lsn {
                    if registered {
                        let me = std::thread::current().id();
                        waiters.retain(|(_, w)| !w.is_thread(me));
                    }
                    return Ok(());
                }
                if s.poisoned.load(Ordering::Acquire) || s.closed.load(Ordering::Acquire) {
                    return Err(s.unavailable());
                }
                // Once registered, the entry stays until `notify` takes it, which it does
                // only for a durable lsn or a stopped log: both are checked above.
                if !registered {
                    let me = std::thread::current();
                    waiters.push((lsn, Waiter::Thread(me.id(), me)));
                    registered = true;
                }
            }
            // Returns at once if `notify` already unparked this thread; spurious wake-ups
            // loop back to the check above.
            std::thread::park();
            s.pass_on_wake_ups();
        }
    }

    /// The async form of [`Log::wait`]: Ready once `lsn` may be acknowledged, otherwise
    /// registers the task's waker under `token` (0: not registered yet) and is Pending.
    pub(crate) fn poll_ack(
        &self,
        lsn: Lsn,
        token: &mut u64,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        use std::task::Poll;
        let s = &self.shared;
        if s.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Poll::Ready(Ok(()));
        }
        if s.durability != Durability::Sync {
            return Poll::Ready(self.wait_for(lsn, false));
        }
        if *token == 0 {
            s.wake_writer();
        }
        // The same handshake as `wait_for`: registered under the lock after a last check.
        let mut waiters = s.waiters.lock();
        if s.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Poll::Ready(Ok(()));
        }
        if s.poisoned.load(Ordering::Acquire) || s.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(s.unavailable()));
        }
        let mine = (*token != 0)
            .then(|| {
                waiters
                    .iter_mut()
                    .find(|(_, w)| matches!(w, Waiter::Task(t, _) if *t == *token))
            })
            .flatten();
        match mine {
            Some((_, Waiter::Task(_, waker))) => waker.clone_from(cx.waker()),
            _ => {
                // Not registered, or woken (and removed) by a `notify` whose lsn was not
                // ours yet: (re-)register.
                if *token == 0 {
                    *token = s.next_task.fetch_add(1, Ordering::Relaxed);
                }
                waiters.push((lsn, Waiter::Task(*token, cx.waker().clone())));
            }
        }
        debug_assert!(*token != 0);
        std::task::Poll::Pending
    }

    /// Threads and tasks registered as waiting.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.shared.waiters.lock().len()
    }

    /// Forgets a task that stopped waiting before its lsn became durable.
    pub(crate) fn cancel_ack(&self, token: u64) {
        if token == 0 {
            return;
        }
        self.shared
            .waiters
            .lock()
            .retain(|(_, w)| !matches!(w, Waiter::Task(t, _) if *t == token));
    }

    pub(crate) fn counters(&self) -> (u64, u64) {
        (
            self.shared.fsyncs.load(Ordering::Relaxed),
            self.shared.records_written.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn durable_seq(&self) -> u64 {
        self.shared.durable_seq.load(Ordering::Acquire)
    }

    pub(crate) fn events(&self, after: u64, limit: usize) -> Result<Vec<crate::Event>> {
        reader::live_events(&self.shared, after, limit)
    }

    pub(crate) fn checkpoint(&self) -> Result<u64> {
        self.check_writable()?;
        Ok(snapshot::checkpoint(&self.shared)?)
    }

    pub(crate) fn close(&self) -> Result<()> {
        let s = &self.shared;
        if s.closing.swap(true, Ordering::SeqCst) {
            // Already closing or closed: wait for the writer if another caller is closing,
            // and answer as the first close did: a poisoned log is reported every time (a
            // second close answering Ok told its caller that records the first one could
            // not write were durable: simulator seed 10313).
            if let Some(h) = self.writer.lock().take() {
                let _ = h.join();
            }
            if s.poisoned.load(Ordering::SeqCst) {
                return Err(s.unavailable());
            }
            return Ok(());
        }
        if let Some(t) = s.writer_thread.get() {
            t.unpark();
        }
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
        s.checkpoint_kick.lock().take();
        if let Some(h) = self.checkpointer.lock().take() {
            let _ = h.join();
        }
        s.closed.store(true, Ordering::SeqCst);
        s.notify();
        self.lock_file.lock().take();
        let _ = (&self.seq, &self.state);
        if s.poisoned.load(Ordering::SeqCst) {
            return Err(s.unavailable());
        }
        Ok(())
    }
}

fn new_ledger_id() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    foldhash::fast::RandomState::default().hash_one((nanos, std::process::id()))
}

/// Creates `dir` if need be and takes its LOCK file. Outside the storage seam on purpose:
/// the lock is an `flock` on an open descriptor, not a file the log reads or writes, and a
/// storage that faked it could let two ledgers write one folder.
fn lock_folder(dir: &Path) -> StorageResult<File> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create ledger folder", dir, e))?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => Err(StorageError::Locked { path }),
    }
}

fn new_shared(
    dir: Option<PathBuf>,
    durability: Durability,
    ledger_id: u64,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
) -> Shared {
    Shared {
        dir,
        storage,
        durability,
        ledger_id,
        durable_lsn: AtomicU64::new(0),
        durable_seq: AtomicU64::new(0),
        poisoned: AtomicBool::new(false),
        reason: Mutex::new(None),
        closing: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        waiters: Mutex::new(Vec::new()),
        to_unpark: Mutex::new(Vec::new()),
        next_task: AtomicU64::new(1),
        writer_sleeping: AtomicBool::new(false),
        writer_thread: OnceLock::new(),
        segments: Mutex::new(Vec::new()),
        mem: Mutex::new(MemLog::default()),
        bytes_since_checkpoint: AtomicU64::new(0),
        checkpoint_lock: Mutex::new(()),
        keep_after_seq: AtomicU64::new(u64::MAX),
        epoch: std::sync::atomic::AtomicU32::new(0),
        epoch_wanted: std::sync::atomic::AtomicU32::new(0),
        events_retention_ms: AtomicU64::new(0),
        checkpoint_kick: Mutex::new(None),
        fsyncs: AtomicU64::new(0),
        records_written: AtomicU64::new(0),
        clock,
    }
}

/// A memory-only log (`Durability::None`) and its empty state.
pub(crate) fn open_in_memory(clock: Arc<dyn Clock>) -> Log {
    let ledger_id = new_ledger_id();
    let shared = Arc::new(new_shared(
        None,
        Durability::None,
        ledger_id,
        Arc::new(FsStorage),
        clock,
    ));
    let state = Arc::new(State::new(ledger_id));
    let seq = Arc::new(Sequencer::new(1));
    let writer = writer::Writer::in_memory(shared.clone(), seq.clone(), 1, 1);
    start(shared, seq, state, writer, None)
}

/// Locks `dir`, recovers the state from its snapshot and log, and starts the writer.
pub(crate) fn open(dir: &Path, options: &Options) -> Result<Log> {
    Ok(open_typed(dir, options)?)
}

fn open_typed(dir: &Path, options: &Options) -> StorageResult<Log> {
    let lock = lock_folder(dir)?;
    if options.durability == Durability::None {
        let log = open_in_memory(options.clock.clone());
        *log.lock_file.lock() = Some(lock);
        return Ok(log);
    }
    let storage: Arc<dyn Storage> = options
        .storage
        .clone()
        .unwrap_or_else(|| Arc::new(FsStorage));
    let rec = recovery::recover(dir, options, &*storage, new_ledger_id)?;
    let shared = Arc::new(new_shared(
        Some(dir.to_path_buf()),
        options.durability,
        rec.state.ledger_id,
        storage.clone(),
        options.clock.clone(),
    ));
    shared.durable_lsn.store(rec.next_lsn - 1, Ordering::SeqCst);
    shared.durable_seq.store(rec.next_seq - 1, Ordering::SeqCst);
    *shared.segments.lock() = rec.segments.clone();
    shared.epoch.store(rec.epoch, Ordering::SeqCst);
    shared.epoch_wanted.store(rec.epoch, Ordering::SeqCst);
    let state = Arc::new(rec.state);
    let seq = Arc::new(Sequencer::new(rec.next_lsn));
    let mut writer = writer::Writer::on_disk(
        shared.clone(),
        seq.clone(),
        storage,
        dir.to_path_buf(),
        options.segment_bytes.max(1 << 20),
        rec.next_lsn,
        rec.next_seq,
        rec.tail,
        options.checkpoint_every_bytes,
    )?;
    writer.set_roll_retry(std::time::Duration::from_millis(options.roll_retry_ms));
    let checkpointer = snapshot::start_checkpointer(shared.clone());
    Ok(start(
        shared,
        seq,
        state,
        writer,
        Some((lock, checkpointer)),
    ))
}

fn start(
    shared: Arc<Shared>,
    seq: Arc<Sequencer>,
    state: Arc<State>,
    writer: writer::Writer,
    disk: Option<(File, JoinHandle<()>)>,
) -> Log {
    {
        let shared = shared.clone();
        seq.on_failure(move |why| shared.poison(why));
    }
    let handle = {
        let (shared, seq) = (shared.clone(), seq.clone());
        std::thread::Builder::new()
            .name("stockledger-wal".into())
            .spawn(move || {
                // A writer that dies would leave `sync` callers waiting for ever and `async`
                // ones acknowledged for nothing: stop the ledger instead.
                let run = std::panic::AssertUnwindSafe(move || writer.run());
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    seq.halt();
                    shared.poison(format!("the log writer thread panicked: {what}"));
                }
            })
            .map_err(|e| e.to_string())
    };
    let handle = match handle {
        Ok(h) => {
            let _ = shared.writer_thread.set(h.thread().clone());
            Some(h)
        }
        Err(e) => {
            shared.poison(format!("cannot start the log writer thread: {e}"));
            None
        }
    };
    let (lock, checkpointer) = match disk {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    Log {
        shared,
        seq,
        state,
        writer: Mutex::new(handle),
        checkpointer: Mutex::new(checkpointer),
        lock_file: Mutex::new(lock),
    }
}

impl Log {
    /// Keeps segments holding events above `seq` even once a snapshot covers them.
    pub(crate) fn keep_events_after(&self, seq: Option<u64>) {
        self.shared
            .keep_after_seq
            .store(seq.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Starts a new epoch and returns once a segment of it is durable (see
    /// `Ledger::new_epoch`). Memory-only logs: no-op.
    pub(crate) fn new_epoch(&self) -> Result<()> {
        let s = &self.shared;
        if s.dir.is_none() {
            return Ok(());
        }
        self.check_writable()?;
        let wanted = s.epoch.load(Ordering::SeqCst).saturating_add(1);
        s.epoch_wanted.fetch_max(wanted, Ordering::SeqCst);
        loop {
            // The segment's meta is listed only once its header and folder are synced.
            if s.segments.lock().last().is_some_and(|m| m.epoch >= wanted) {
                return Ok(());
            }
            if s.poisoned.load(Ordering::Acquire) || s.closed.load(Ordering::Acquire) {
                return Err(s.unavailable());
            }
            // Rare (a cursor clamp at start-up): a short poll, not a waiter list entry.
            s.wake_writer();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Keeps segments written less than `retention_ms` ago for the events feed.
    pub(crate) fn retain_events_for(&self, retention_ms: u64) {
        self.shared
            .events_retention_ms
            .store(retention_ms, Ordering::SeqCst);
    }
}

/// For fuzzing only: treats `bytes` as the frames of a segment (after its header) and
/// replays every frame that checks out onto a fresh state, the way recovery would. Must never
/// panic, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_replay(bytes: &[u8]) -> usize {
    use segment::{read_frame, Slot};
    let state = State::new(1);
    let mut at = 0;
    let mut applied = 0;
    while at < bytes.len() {
        match read_frame(bytes, at) {
            Slot::Frame(f) => {
                for r in f.records() {
                    let Some(entries) = crate::record::decode_entry_refs(r.payload, r.entries)
                    else {
                        continue;
                    };
                    for e in &entries {
                        if state.apply(e) {
                            applied += 1;
                        }
                        if let Some(e) = e.into_entry() {
                            let _ = crate::Event::new(1, 1, e).to_json();
                        }
                    }
                }
                at += f.size;
            }
            Slot::End | Slot::Bad => break,
        }
    }
    let _ = segment::valid_frame_after(bytes, 0, 1);
    applied
}

/// For fuzzing only: `bytes` as a snapshot file, then as a snapshot archive without its
/// header; true if either restores. Must never panic, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_snapshot(bytes: &[u8]) -> bool {
    snapshot::fuzz(bytes)
}

/// For fuzzing only: decodes `bytes` as a record payload of `entries` entries.
#[doc(hidden)]
pub fn fuzz_decode(bytes: &[u8], entries: u16) -> Option<usize> {
    crate::record::decode_entries(bytes, entries).map(|v| v.len())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::{lock_folder, StorageError};
    use crate::{Durability, ErrorCode, Ledger, Line, Options, Source};

    #[test]
    fn a_second_open_is_locked_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ledger::open(dir.path(), Options::default()).unwrap();
        match lock_folder(dir.path()) {
            Err(StorageError::Locked { path }) => assert_eq!(path, dir.path().join("LOCK")),
            other => panic!("{other:?}"),
        }
        let e = Ledger::open(dir.path(), Options::default()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LedgerUnavailable);
        assert!(e.to_string().contains("LOCK"), "{e}");
        first.close().unwrap();
        drop(first);
        assert!(
            lock_folder(dir.path()).is_ok(),
            "the lock goes with the ledger"
        );
    }

    #[test]
    fn a_closed_log_says_closed_and_a_poisoned_one_gives_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), Options::default()).unwrap();
        l.close().unwrap();
        assert!(matches!(l.log.shared.stopped(), StorageError::Closed));
        let e = l.set_stock("A", "w", 1, Source::Warehouse).unwrap_err();
        assert_eq!(e.to_string(), "ledger unavailable: the ledger is closed");
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), Options::default()).unwrap();
        l.log.shared.poison("injected".into());
        match l.log.shared.stopped() {
            StorageError::Poisoned { reason } => assert_eq!(reason, "injected"),
            other => panic!("{other:?}"),
        }
    }

    /// Defect 5: a thread that panics after taking an lsn leaves a gap no record fills.
    /// The ledger must stop: no caller hangs, none is acknowledged for nothing.
    #[test]
    fn a_panic_between_taking_an_lsn_and_staging_poisons_the_ledger() {
        for durability in [Durability::Sync, Durability::Async] {
            let dir = tempfile::tempdir().unwrap();
            let l = std::sync::Arc::new(
                Ledger::open(
                    dir.path(),
                    Options {
                        durability,
                        ..Options::default()
                    },
                )
                .unwrap(),
            );
            l.set_stock("A", "w", 10, Source::Warehouse).unwrap();
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                l.seq.stage(|| panic!("injected"), |_, _: &()| {})
            }));
            assert!(panicked.is_err());
            let (tx, rx) = mpsc::channel();
            let l2 = l.clone();
            std::thread::spawn(move || {
                let _ = tx.send(l2.reserve("o1", &[Line::new("A", "w", 1)], 900));
            });
            let r = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("{durability:?}: a write after the gap hangs"));
            let e = r.expect_err("a write after the gap was acknowledged");
            assert_eq!(e.code(), ErrorCode::LedgerUnavailable, "{durability:?}");
            assert!(l.unavailable_reason().is_some());
            let (tx, rx) = mpsc::channel();
            let l2 = l.clone();
            std::thread::spawn(move || {
                let _ = tx.send(l2.close().is_err());
            });
            assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false));
        }
    }
}
