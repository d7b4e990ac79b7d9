//! The log writer thread: merges staged records into lsn order, frames them, writes a
//! batch, calls fdatasync once, then wakes every caller of that batch (group commit).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::sequencer::{staged_records, Sequencer, MAX_STAGED_RECORDS, STAGED_HEADER};

use super::error::{StorageError, StorageResult};
use super::segment::{
    self, encode_record, seal_frame, FrameHead, SegmentHeader, FRAME_HEADER_LEN, HEADER_LEN,
    MAX_RECORDS_BYTES, SPARE_NAME,
};
use super::{SegmentMeta, Shared, MEM_CHUNK_BYTES, MEM_LOG_BYTES};
use crate::storage::{Storage, StorageFile};

/// Index a frame's seq about every this many bytes.
const INDEX_EVERY: u64 = 32 << 10;
/// The longest a writer sleeps with nothing to do; bounds the `async` fsync delay too.
const IDLE_PARK: Duration = Duration::from_millis(5);
/// Pause between batches when callers do not wait for them (`async`, `none`).
const BATCH_PAUSE: Duration = Duration::from_millis(2);
/// The longest wait between two attempts at starting the next segment.
const MAX_ROLL_BACKOFF: Duration = Duration::from_secs(1);

/// Where the next frame goes when resuming a segment after recovery.
pub(crate) struct Tail {
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) capacity: u64,
}

struct Active {
    path: PathBuf,
    file: Box<dyn StorageFile>,
    offset: u64,
    capacity: u64,
    dirty: bool,
    since_index: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    seq: Arc<Sequencer>,
    disk: Option<Disk>,
    next_lsn: u64,
    next_seq: u64,
    lanes: Vec<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    carry: Vec<u8>,
    /// Staged records by `lsn - next_lsn`: (source, offset), `EMPTY` where none arrived yet.
    placed: Vec<(u32, u32)>,
    /// A frame header's room, then the records of this batch.
    out: Vec<u8>,
    /// Where each record of `out` ends, and its lsn, first seq and events.
    records: Vec<RecordAt>,
    /// A frame that does not start `out` (a batch split by a roll or the frame limit) is
    /// copied here behind its header.
    scratch: Vec<u8>,
    /// The time of the last frame: frames never go back in time, whatever the clock does.
    time_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct RecordAt {
    end: usize,
    lsn: u64,
    first_seq: u64,
    events: u16,
}

struct Disk {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    segment_bytes: u64,
    active: Option<Active>,
    /// The next segment, zero-filled and already open (so a roll opens nothing).
    spare: Arc<Mutex<Option<Box<dyn StorageFile>>>>,
    /// One spare is prepared at a time: two writers of the same file could zero a segment
    /// that was renamed from it meanwhile.
    spare_busy: Arc<AtomicBool>,
    checkpoint_every: u64,
    /// How long a failing roll is retried before the writer gives up (`Options::roll_retry_ms`).
    roll_retry: Duration,
}

impl Writer {
    pub(crate) fn in_memory(
        shared: Arc<Shared>,
        seq: Arc<Sequencer>,
        next_lsn: u64,
        next_seq: u64,
    ) -> Writer {
        Writer {
            shared,
            seq,
            disk: None,
            next_lsn,
            next_seq,
            lanes: Vec::new(),
            spare: Vec::new(),
            carry: Vec::new(),
            placed: Vec::new(),
            out: Vec::with_capacity(1 << 20),
            records: Vec::new(),
            scratch: Vec::new(),
            time_ms: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_disk(
        shared: Arc<Shared>,
        seq: Arc<Sequencer>,
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        segment_bytes: u64,
        next_lsn: u64,
        next_seq: u64,
        tail: Option<Tail>,
        checkpoint_every: u64,
    ) -> StorageResult<Writer> {
        let active = match tail {
            Some(t) => Some(Active {
                file: storage
                    .open(&t.path)
                    .map_err(|e| StorageError::io("open log segment", &t.path, e))?,
                path: t.path,
                offset: t.offset,
                capacity: t.capacity,
                dirty: false,
                since_index: 0,
            }),
            None => None,
        };
        let mut w = Writer::in_memory(shared, seq, next_lsn, next_seq);
        w.disk = Some(Disk {
            storage,
            dir,
            segment_bytes,
            active,
            spare: Arc::new(Mutex::new(None)),
            spare_busy: Arc::new(AtomicBool::new(false)),
            checkpoint_every,
            roll_retry: Duration::from_secs(30),
        });
        if w.disk.as_ref().is_some_and(|d| d.active.is_none()) {
            // Opening: fail at once rather than retry.
            let (lsn, s) = (w.next_lsn, w.next_seq);
            w.try_roll(lsn, s)?;
        }
        Ok(w)
    }

    pub(crate) fn run(mut self) {
        loop {
            if self.shared.epoch_wanted.load(Ordering::Acquire)
                > self.shared.epoch.load(Ordering::Acquire)
                && !self.shared.poisoned.load(Ordering::Acquire)
            {
                // Before any record staged from now: nothing of the new epoch may share a
                // segment with the old one.
                if let Err(e) = self.start_epoch() {
                    self.seq.halt();
                    self.shared.poison(e.to_string());
                }
                self.shared.notify();
            }
            self.seq.take_lanes(&mut self.spare, &mut self.lanes);
            self.collect();
            self.seq.drained.store(self.next_lsn, Ordering::Release);
            if self.records.is_empty() {
                // Poisoned, the records still missing may never come (an lsn whose thread
                // panicked): nothing more will be written anyway.
                if self.shared.closing.load(Ordering::SeqCst)
                    && (self.seq.next_lsn() == self.next_lsn
                        || self.shared.poisoned.load(Ordering::Acquire))
                {
                    break;
                }
                self.idle();
                continue;
            }
            if self.shared.poisoned.load(Ordering::Acquire) {
                // Nothing more reaches the disk; callers waiting on these lsns are told.
                self.shared.notify();
                continue;
            }
            let records = self.records.len() as u64;
            match self.write_out() {
                Ok(()) => {
                    metrics::histogram!("stockledger_wal_batch_records").record(records as f64);
                    self.shared
                        .records_written
                        .fetch_add(records, Ordering::Relaxed);
                    let lsn = self.records.last().map_or(0, |r| r.lsn);
                    self.shared
                        .durable_seq
                        .store(self.next_seq - 1, Ordering::Release);
                    self.shared.durable_lsn.store(lsn, Ordering::Release);
                    self.shared.notify();
                }
                Err(e) => {
                    self.seq.halt();
                    self.shared.poison(e.to_string())
                }
            }
            if self.shared.durability != crate::options::Durability::Sync {
                // Nobody waits on each batch: let records pile up into bigger batches
                // (well within the 10 ms bound of `async`) instead of contending on lanes.
                self.shared.writer_sleeping.store(true, Ordering::SeqCst);
                std::thread::park_timeout(BATCH_PAUSE);
                self.shared.writer_sleeping.store(false, Ordering::SeqCst);
            }
        }
        if let Some(Active {
            file, dirty: true, ..
        }) = self.disk.as_mut().and_then(|d| d.active.as_mut())
        {
            if let Err(e) = file.sync_data() {
                self.shared.poison(format!("fdatasync at close: {e}"));
            }
        }
    }

    fn idle(&mut self) {
        self.shared.writer_sleeping.store(true, Ordering::SeqCst);
        // Poisoned with a gap that will never fill, park rather than spin on it.
        let nothing_to_take =
            self.seq.next_lsn() == self.next_lsn || self.shared.poisoned.load(Ordering::Acquire);
        if nothing_to_take && !self.shared.closing.load(Ordering::SeqCst) {
            std::thread::park_timeout(IDLE_PARK);
        }
        self.shared.writer_sleeping.store(false, Ordering::SeqCst);
    }

    /// Puts what was staged in lsn order and frames the gap-free run that starts at
    /// `next_lsn`; records beyond a gap wait in `carry` for the next round. Lsns are dense,
    /// so each record is placed at `lsn - next_lsn` (no sort); the span is bounded by the
    /// records the sequencer lets stage ahead of the writer.
    fn collect(&mut self) {
        const EMPTY: (u32, u32) = (u32::MAX, 0);
        self.out.clear();
        self.out.resize(FRAME_HEADER_LEN, 0);
        self.records.clear();
        self.placed.clear();
        let base = self.next_lsn;
        let carry = std::mem::take(&mut self.carry);
        let sources: Vec<&[u8]> = self
            .lanes
            .iter()
            .map(|b| b.as_slice())
            .chain(std::iter::once(carry.as_slice()))
            .collect();
        for (i, buf) in sources.iter().enumerate() {
            let mut at = 0u32;
            for r in staged_records(buf) {
                assert!(r.lsn >= base, "lsn {} staged after it was written", r.lsn);
                let k = (r.lsn - base) as usize;
                assert!(
                    k <= 4 * MAX_STAGED_RECORDS as usize,
                    "lsn {} far ahead",
                    r.lsn
                );
                if k >= self.placed.len() {
                    self.placed.resize(k + 1, EMPTY);
                }
                assert_eq!(self.placed[k], EMPTY, "lsn {} staged twice", r.lsn);
                self.placed[k] = (i as u32, at);
                at += (STAGED_HEADER + r.payload.len()) as u32;
            }
        }
        let mut next_carry = Vec::new();
        let mut gap = false;
        for &(src, at) in self.placed.iter() {
            if (src, at) == EMPTY {
                gap = true;
                continue;
            }
            let buf = &sources[src as usize][at as usize..];
            let Some(r) = staged_records(buf).next() else {
                continue;
            };
            if gap {
                next_carry.extend_from_slice(&buf[..STAGED_HEADER + r.payload.len()]);
                continue;
            }
            debug_assert_eq!(r.lsn, self.next_lsn);
            encode_record(&mut self.out, (r.events, r.entries), r.payload);
            self.records.push(RecordAt {
                end: self.out.len(),
                lsn: r.lsn,
                first_seq: self.next_seq,
                events: r.events,
            });
            self.next_lsn += 1;
            self.next_seq += r.events as u64;
        }
        drop(sources);
        self.carry = next_carry;
        let mut carry = carry;
        carry.clear();
        self.spare.push(carry);
        self.spare.append(&mut self.lanes);
    }

    fn write_out(&mut self) -> StorageResult<()> {
        let time_ms = self.frame_time();
        if self.disk.is_none() {
            self.keep_in_memory(time_ms);
            return Ok(());
        }
        let mut first = 0usize;
        while first < self.records.len() {
            let (room, offset) = {
                let a = self.active();
                (a.capacity - a.offset, a.offset)
            };
            let limit = (room as usize).saturating_sub(FRAME_HEADER_LEN);
            let (last, head) = self.next_frame(first, limit, time_ms);
            if last == first {
                let r = self.records[first];
                self.roll(r.lsn, r.first_seq)?;
                continue;
            }
            let span = (self.record_start(first), self.records[last - 1].end);
            let frame = sealed_frame((&mut self.out, &mut self.scratch), span, &head, true);
            let Some(a) = self.disk.as_mut().and_then(|d| d.active.as_mut()) else {
                unreachable!("a disk writer always has an active segment");
            };
            a.file
                .write_at(frame, offset)
                .map_err(|source| StorageError::Write {
                    path: a.path.clone(),
                    offset,
                    len_bytes: frame.len(),
                    source,
                })?;
            a.dirty = true;
            // An index sample for readers about every `INDEX_EVERY` bytes.
            let sample = (a.since_index == 0).then_some((head.first_seq, offset as u32));
            a.since_index += frame.len() as u64;
            if a.since_index >= INDEX_EVERY {
                a.since_index = 0;
            }
            a.offset += frame.len() as u64;
            if let Some(sample) = sample {
                if let Some(meta) = self.shared.segments.lock().last_mut() {
                    meta.index.push(sample);
                }
            }
            first = last;
        }
        if let Some(disk) = self.disk.as_ref() {
            // Half way through a segment, get the next one zero-filled in the background.
            if disk
                .active
                .as_ref()
                .is_some_and(|a| a.offset > a.capacity / 2)
            {
                disk.prepare_spare();
            }
        }
        self.sync()?;
        let written = self.out.len() as u64;
        let total = self
            .shared
            .bytes_since_checkpoint
            .fetch_add(written, Ordering::Relaxed)
            + written;
        let every = self.disk.as_ref().map(|d| d.checkpoint_every).unwrap_or(0);
        if every != 0 && total >= every {
            self.shared
                .bytes_since_checkpoint
                .store(0, Ordering::Relaxed);
            if let Some(kick) = self.shared.checkpoint_kick.lock().as_ref() {
                let _ = kick.try_send(());
            }
        }
        Ok(())
    }

    /// The time of the next frame: the clock's, never before the previous frame's.
    fn frame_time(&mut self) -> u64 {
        self.time_ms = self.time_ms.max(self.shared.clock.now_ms());
        self.time_ms
    }

    /// The records `first..last` that make the next frame: as many as fit `limit` bytes
    /// (and the frame limit); `last == first` when not even one fits.
    fn next_frame(&self, first: usize, limit: usize, time_ms: u64) -> (usize, FrameHead) {
        let start = self.record_start(first);
        let limit = limit.min(MAX_RECORDS_BYTES);
        let mut last = first;
        let mut events = 0u32;
        while last < self.records.len() && self.records[last].end - start <= limit {
            events += u32::from(self.records[last].events);
            last += 1;
        }
        let r = self.records[first];
        let head = FrameHead {
            first_lsn: r.lsn,
            first_seq: r.first_seq,
            records: (last - first) as u32,
            events,
            time_ms,
        };
        (last, head)
    }

    fn record_start(&self, k: usize) -> usize {
        record_start(&self.records, k)
    }

    fn sync(&mut self) -> StorageResult<()> {
        if let Some(a) = self.disk.as_mut().and_then(|d| d.active.as_mut()) {
            if a.dirty {
                let started = std::time::Instant::now();
                a.file
                    .sync_data()
                    .map_err(|e| StorageError::io("fdatasync", &a.path, e))?;
                metrics::histogram!("stockledger_wal_fsync_seconds")
                    .record(started.elapsed().as_secs_f64());
                self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                a.dirty = false;
            }
        }
        Ok(())
    }

    fn active(&self) -> &Active {
        match self.disk.as_ref().and_then(|d| d.active.as_ref()) {
            Some(a) => a,
            None => unreachable!("a disk writer always has an active segment"),
        }
    }

    /// Closes the active segment (synced) and starts a new one whose first frame is `lsn`.
    /// Only the sync of the records written so far can lose data; starting the next segment
    /// (create, rename, header, folder fsync) writes no record, so its failures (EMFILE, a
    /// passing EIO, a full disk) are retried with a backoff while callers wait, rather than
    /// poisoning the ledger. A ledger closing meanwhile gives up.
    fn roll(&mut self, lsn: u64, seq: u64) -> StorageResult<()> {
        self.sync()?;
        let mut delay = Duration::from_millis(1);
        let mut failures = 0u64;
        let started = std::time::Instant::now();
        let give_up = self.disk.as_ref().map_or(Duration::ZERO, |d| d.roll_retry);
        loop {
            match self.try_roll(lsn, seq) {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "next log segment started after retries");
                    }
                    return Ok(());
                }
                Err(e) => {
                    if self.shared.closing.load(Ordering::SeqCst) {
                        return Err(e);
                    }
                    if started.elapsed() >= give_up {
                        tracing::error!(error = %e, failures, "cannot start the next log segment; giving up");
                        return Err(e);
                    }
                    failures += 1;
                    metrics::counter!("stockledger_wal_roll_failures_total").increment(1);
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot start the next log segment; writes wait");
                    // Woken early by close().
                    self.shared.writer_sleeping.store(true, Ordering::SeqCst);
                    std::thread::park_timeout(delay);
                    self.shared.writer_sleeping.store(false, Ordering::SeqCst);
                    delay = (delay * 2).min(MAX_ROLL_BACKOFF);
                }
            }
        }
    }

    /// See `Options::roll_retry_ms`.
    pub(crate) fn set_roll_retry(&mut self, retry: Duration) {
        if let Some(d) = self.disk.as_mut() {
            d.roll_retry = retry;
        }
    }

    /// Starts a segment of the wanted epoch at the next lsn (the active one, if it holds
    /// no frame yet, is started again: a segment is named after its first lsn).
    fn start_epoch(&mut self) -> StorageResult<()> {
        let wanted = self.shared.epoch_wanted.load(Ordering::Acquire);
        let empty = self
            .disk
            .as_ref()
            .and_then(|d| d.active.as_ref())
            .is_some_and(|a| a.offset == HEADER_LEN as u64);
        if empty {
            if let Some(d) = self.disk.as_mut() {
                d.active = None;
            }
            let mut segments = self.shared.segments.lock();
            if segments
                .last()
                .is_some_and(|m| m.first_lsn == self.next_lsn)
            {
                segments.pop();
            }
        }
        self.shared.epoch.store(wanted, Ordering::Release);
        let (lsn, seq) = (self.next_lsn, self.next_seq);
        if self.disk.is_some() {
            self.roll(lsn, seq)?;
        }
        Ok(())
    }

    /// One attempt at starting the segment whose first frame is `lsn`.
    fn try_roll(&mut self, lsn: u64, seq: u64) -> StorageResult<()> {
        let Some(disk) = self.disk.as_mut() else {
            return Ok(());
        };
        let path = disk.dir.join(segment::segment_name(lsn));
        let io = |op: &'static str, e: std::io::Error| StorageError::io(op, &path, e);
        let spare_path = disk.dir.join(SPARE_NAME);
        let spare = disk.spare.lock().take();
        let mut file = match spare {
            Some(f) => match disk.storage.rename(&spare_path, &path) {
                Ok(()) => f,
                Err(e) => {
                    // Still the spare, under its name: keep it for the next attempt.
                    *disk.spare.lock() = Some(f);
                    return Err(io("rename spare to", e));
                }
            },
            None => disk
                .storage
                .create(&path, disk.segment_bytes, false)
                .map_err(|e| io("create", e))?,
        };
        let epoch = self.shared.epoch.load(Ordering::SeqCst);
        let header = SegmentHeader {
            ledger_id: self.shared.ledger_id,
            first_lsn: lsn,
            first_seq: seq,
            epoch,
        };
        let started = file
            .write_at(&header.encode(), 0)
            .map_err(|e| io("write header of", e))
            .and_then(|()| file.sync_data().map_err(|e| io("sync", e)))
            .and_then(|()| {
                disk.storage
                    .sync_dir(&disk.dir)
                    .map_err(|e| io("sync folder of", e))
            });
        if let Err(e) = started {
            // The file holds no record. Unlink it rather than truncate it on the next
            // attempt: an outside reader may have it mapped, and unlinking (unlike
            // truncating) keeps its pages valid. Recovery drops a leftover one.
            let _ = disk.storage.remove(&path);
            return Err(e);
        }
        let capacity = disk.storage.len_bytes(&path).unwrap_or(disk.segment_bytes);
        disk.active = Some(Active {
            path: path.clone(),
            file,
            offset: HEADER_LEN as u64,
            capacity,
            dirty: false,
            since_index: 0,
        });
        self.shared.segments.lock().push(SegmentMeta {
            first_lsn: lsn,
            first_seq: seq,
            epoch,
            path,
            index: Vec::new(),
        });
        Ok(())
    }

    /// Appends the batch's frames to the memory log's newest chunk, or to a fresh one
    /// (an evicted chunk's buffer when there is one). Chunks are filled, not one per batch:
    /// a batch of one record would otherwise pin a buffer of `out`'s capacity and every
    /// batch would fault in fresh pages.
    fn keep_in_memory(&mut self, time_ms: u64) {
        let mut first = 0usize;
        while first < self.records.len() {
            let (last, head) = self.next_frame(first, MAX_RECORDS_BYTES, time_ms);
            assert!(last > first, "a record larger than a frame");
            let span = (self.record_start(first), self.records[last - 1].end);
            let frame = sealed_frame((&mut self.out, &mut self.scratch), span, &head, false);
            let frame_bytes = frame.len();
            let mut mem = self.shared.mem.lock();
            mem.bytes += frame_bytes;
            let mut recycled = None;
            while mem.bytes > MEM_LOG_BYTES {
                match mem.chunks.pop_front() {
                    Some((_, c)) => {
                        mem.bytes -= c.len();
                        recycled = Some(c);
                    }
                    None => break,
                }
            }
            let fits = mem
                .chunks
                .back()
                .is_some_and(|(_, c)| c.len() + frame_bytes <= c.capacity());
            if !fits {
                let mut chunk = recycled.unwrap_or_default();
                chunk.clear();
                chunk.reserve_exact(MEM_CHUNK_BYTES.max(frame_bytes));
                mem.chunks.push_back((head.first_seq, chunk));
            }
            if let Some((_, chunk)) = mem.chunks.back_mut() {
                debug_assert!(chunk.len() + frame_bytes <= chunk.capacity());
                chunk.extend_from_slice(frame);
            }
            first = last;
        }
        self.out.clear();
    }
}

fn record_start(records: &[RecordAt], k: usize) -> usize {
    match k.checked_sub(1) {
        None => FRAME_HEADER_LEN,
        Some(before) => records[before].end,
    }
}

/// The frame of the records in `out[start..end]` (a run of the batch), sealed: in place
/// when the run starts the batch (the room for its header is there), else copied behind a
/// header in `scratch`.
fn sealed_frame<'b>(
    (out, scratch): (&'b mut Vec<u8>, &'b mut Vec<u8>),
    (start, end): (usize, usize),
    head: &FrameHead,
    crc: bool,
) -> &'b [u8] {
    assert!(FRAME_HEADER_LEN <= start && start < end && end <= out.len());
    if start == FRAME_HEADER_LEN {
        seal_frame(&mut out[..end], head, crc);
        return &out[..end];
    }
    scratch.clear();
    scratch.resize(FRAME_HEADER_LEN, 0);
    scratch.extend_from_slice(&out[start..end]);
    seal_frame(scratch, head, crc);
    scratch
}

impl Disk {
    /// Zero-fills the next segment in the background, so a roll only renames it.
    fn prepare_spare(&self) {
        if self.spare.lock().is_some() || self.spare_busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let storage = self.storage.clone();
        let path = self.dir.join(SPARE_NAME);
        let len = self.segment_bytes;
        let spare = self.spare.clone();
        let busy = self.spare_busy.clone();
        let spawned = std::thread::Builder::new()
            .name("stockledger-spare".into())
            .spawn(move || {
                match storage.create(&path, len, true) {
                    Ok(f) => *spare.lock() = Some(f),
                    // The roll creates the segment itself then (or retries).
                    Err(e) => tracing::warn!(error = %e, "cannot prepare the next log segment"),
                }
                busy.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.spare_busy.store(false, Ordering::SeqCst);
        }
    }
}
