//! Reading the durable event stream back from the log: for the live ledger (events feed,
//! Kafka publisher) and for a folder from outside (`read_events`), without disturbing the
//! writer: read-only maps of the segments, never past what is durable or valid.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::record::decode_entries;

use super::error::StorageError;
use super::segment::{
    list_segments, read_frame, read_frame_in_memory, SegmentHeader, Slot, HEADER_LEN,
};
use super::Shared;
use crate::storage::{FsStorage, ReadMap, Storage};

/// A segment that could not be read. The reader reports it rather than skip it: skipping
/// would lose the segment's events for good, and the cause (EMFILE, EIO) may pass.
fn unreadable(path: &Path, e: std::io::Error) -> Error {
    StorageError::io("read log segment", path, e).into()
}

pub use crate::limits::MAX_EVENTS_PER_READ;

enum Stop {
    /// Reached zeros or the durable bound: nothing more here now.
    End,
    /// Bytes that are not a frame at this offset.
    Bad(usize),
    /// `limit` events collected; resume at this offset.
    Full(usize),
}

/// Collects events with `seq > after` from frames starting at `at`.
/// Where frames come from: a file (checksums verified) or the memory log (none written).
#[derive(Clone, Copy)]
enum Source {
    File,
    Memory,
}

#[allow(clippy::too_many_arguments)]
fn scan(
    bytes: &[u8],
    mut at: usize,
    after: u64,
    (mut expected_lsn, max_lsn): (Option<u64>, u64),
    limit: usize,
    (ledger_id, epoch): (u64, u32),
    source: Source,
    out: &mut Vec<Event>,
) -> Stop {
    let read = match source {
        Source::File => read_frame,
        Source::Memory => read_frame_in_memory,
    };
    loop {
        if out.len() >= limit {
            return Stop::Full(at);
        }
        match read(bytes, at) {
            Slot::End => return Stop::End,
            // A frame past the durable lsn may be one the writer is still copying in: it
            // reads as damaged until the copy ends. Only a durable frame that is bad is.
            Slot::Bad if expected_lsn.is_some_and(|lsn| lsn > max_lsn) => return Stop::End,
            Slot::Bad => return Stop::Bad(at),
            Slot::Frame(f) => {
                if f.head.first_lsn > max_lsn {
                    return Stop::End;
                }
                expected_lsn = Some(f.last_lsn() + 1);
                if f.end_seq() > after + 1 {
                    for r in f.records() {
                        if r.lsn > max_lsn {
                            return Stop::End;
                        }
                        if r.first_seq + u64::from(r.events) <= after + 1 {
                            continue;
                        }
                        let Some(entries) = decode_entries(r.payload, r.entries) else {
                            return Stop::Bad(at);
                        };
                        let events = entries.into_iter().filter(|e| e.is_event());
                        for (seq, e) in (r.first_seq..).zip(events) {
                            if seq > after {
                                out.push(Event::in_epoch(ledger_id, epoch, seq, e));
                            }
                        }
                    }
                }
                at += f.size;
                // A frame's events are all taken together, so `limit` may be passed by
                // at most one frame's worth.
            }
        }
    }
}

/// Events of a live ledger with `seq > after`.
pub(crate) fn live_events(shared: &Shared, after: u64, limit: usize) -> Result<Vec<Event>> {
    let limit = limit.clamp(1, MAX_EVENTS_PER_READ);
    let mut out = Vec::new();
    if shared.dir.is_none() {
        memory_events(shared, after, limit, &mut out)?;
    } else {
        let durable_lsn = shared.durable_lsn.load(Ordering::Acquire);
        for step in read_plan(shared, after)? {
            if segment_events(shared, step, after, (durable_lsn, limit), &mut out)? {
                break;
            }
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Events of a memory-only ledger from its chunks (read under the lock the writer appends
/// under, so no frame is ever half there).
fn memory_events(shared: &Shared, after: u64, limit: usize, out: &mut Vec<Event>) -> Result<()> {
    let mem = shared.mem.lock();
    if let Some(&(first, _)) = mem.chunks.front() {
        if first > after + 1 {
            return Err(Error::EventsPruned { oldest_seq: first });
        }
    }
    let start = mem
        .chunks
        .partition_point(|(first, _)| *first <= after + 1)
        .saturating_sub(1);
    let id = (shared.ledger_id, 0);
    for (_, chunk) in mem.chunks.iter().skip(start) {
        let stop = scan(
            chunk,
            0,
            after,
            (None, u64::MAX),
            limit,
            id,
            Source::Memory,
            out,
        );
        if let Stop::Full(_) = stop {
            break;
        }
    }
    Ok(())
}

/// Where to read: a segment, the offset to start at, its epoch, and the lsn of the frame
/// there when it is the segment's first (see `scan`).
struct PlanStep {
    path: PathBuf,
    offset: usize,
    epoch: u32,
    first_lsn: Option<u64>,
}

/// Which segments, and where in the first, hold `after + 1` and what follows.
fn read_plan(shared: &Shared, after: u64) -> Result<Vec<PlanStep>> {
    let segments = shared.segments.lock();
    if let Some(first) = segments.first() {
        if first.first_seq > after + 1 {
            return Err(Error::EventsPruned {
                oldest_seq: first.first_seq,
            });
        }
    }
    let first = segments
        .partition_point(|s| s.first_seq <= after + 1)
        .saturating_sub(1);
    let plan = segments[first.min(segments.len())..]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let k = s.index.partition_point(|(seq, _)| *seq <= after + 1);
            let offset = match (i, k) {
                (0, 1..) => s.index[k - 1].1 as usize,
                _ => HEADER_LEN,
            };
            PlanStep {
                path: s.path.clone(),
                offset,
                epoch: s.epoch,
                first_lsn: (offset == HEADER_LEN).then_some(s.first_lsn),
            }
        })
        .collect();
    Ok(plan)
}

/// Events of one step of the plan, up to the durable lsn; true once `limit` is reached.
fn segment_events(
    shared: &Shared,
    step: PlanStep,
    after: u64,
    (durable_lsn, limit): (u64, usize),
    out: &mut Vec<Event>,
) -> Result<bool> {
    let path = &step.path;
    let bytes = match shared.storage.map_read(path) {
        Ok(b) => b,
        Err(e) => {
            let pruned = e.kind() == std::io::ErrorKind::NotFound
                && !shared.segments.lock().iter().any(|s| &s.path == path);
            if pruned {
                // A checkpoint removed it since the plan was made: checkpoints remove the
                // oldest segments, so `after + 1` is gone too.
                let oldest_seq = shared.segments.lock().first().map_or(1, |s| s.first_seq);
                return Err(Error::EventsPruned { oldest_seq });
            }
            // Anything else (EMFILE, EIO) may pass: fail this read, the caller retries.
            return Err(unreadable(path, e));
        }
    };
    let lsns = (step.first_lsn, durable_lsn);
    let id = (shared.ledger_id, step.epoch);
    match scan(
        &bytes,
        step.offset,
        after,
        lsns,
        limit,
        id,
        Source::File,
        out,
    ) {
        Stop::Full(_) => Ok(true),
        Stop::End => Ok(false),
        Stop::Bad(at) => {
            Err(StorageError::corrupt(path, at, "bad frame below the durable lsn").into())
        }
    }
}

/// Iterates the durable events of a ledger folder with `seq > after`, lazily, read-only.
/// Safe on a folder a live ledger is writing: it stops at the first frame not yet complete.
pub fn read_events(dir: impl AsRef<Path>, after: u64) -> Result<EventReader> {
    read_events_with_storage(dir, after, Arc::new(FsStorage))
}

/// [`read_events`] through a given storage seam (tests inject read faults with it).
pub fn read_events_with_storage(
    dir: impl AsRef<Path>,
    after: u64,
    storage: Arc<dyn Storage>,
) -> Result<EventReader> {
    let dir = dir.as_ref().to_path_buf();
    // A check of the caller's argument, not a read of the log: the real file system is
    // asked directly (a missing folder is `invalid_request`, not an I/O failure).
    if !dir.is_dir() {
        return Err(Error::invalid(
            "folder",
            format!("{} is not a ledger folder", dir.display()),
        ));
    }
    Ok(EventReader {
        storage,
        dir,
        after,
        segments: None,
        next_segment: 0,
        current: None,
        buffer: VecDeque::new(),
        done: false,
    })
}

/// See [`read_events`].
pub struct EventReader {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    after: u64,
    /// (header, path) of every segment, read on first use.
    segments: Option<Vec<(SegmentHeader, PathBuf)>>,
    next_segment: usize,
    current: Option<(ReadMap, usize, bool, (u64, u32))>,
    buffer: VecDeque<Event>,
    done: bool,
}

impl EventReader {
    fn load_segments(&mut self) -> Result<()> {
        let listed = list_segments(&*self.storage, &self.dir)
            .map_err(|e| StorageError::io("list", &self.dir, e))?;
        let mut segs = Vec::new();
        for (_, path) in listed {
            let bytes = match self.storage.map_read(&path) {
                Ok(b) => b,
                // Removed by a checkpoint since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(unreadable(&path, e)),
            };
            match SegmentHeader::decode(&bytes) {
                Ok(h) => segs.push((h, path)),
                // A segment being created right now has no header yet.
                Err(_)
                    if bytes.len() >= HEADER_LEN && bytes[..HEADER_LEN].iter().all(|b| *b == 0) => {
                }
                Err(e) => return Err(StorageError::corrupt(&path, 0, e).into()),
            }
        }
        let start = segs
            .partition_point(|(h, _)| h.first_seq <= self.after + 1)
            .saturating_sub(1);
        self.next_segment = start;
        self.segments = Some(segs);
        Ok(())
    }

    fn fill(&mut self) -> Result<()> {
        if self.segments.is_none() {
            self.load_segments()?;
        }
        while self.buffer.is_empty() && !self.done {
            if self.current.is_none() {
                let segs = self.segments.as_ref().map(|s| s.len()).unwrap_or(0);
                if self.next_segment >= segs {
                    self.done = true;
                    break;
                }
                let Some((h, path)) = self
                    .segments
                    .as_ref()
                    .and_then(|s| s.get(self.next_segment))
                else {
                    self.done = true;
                    break;
                };
                let is_last = self.next_segment + 1 == segs;
                let bytes = match self.storage.map_read(path) {
                    Ok(b) => b,
                    // Removed by a checkpoint since it was listed: its events are older than
                    // what follows, and no longer retained.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.next_segment += 1;
                        continue;
                    }
                    // Anything else may pass (EMFILE, EIO): report it; the next call retries
                    // this segment rather than skip its events.
                    Err(e) => return Err(unreadable(path, e)),
                };
                self.current = Some((bytes, HEADER_LEN, is_last, (h.ledger_id, h.epoch)));
                self.next_segment += 1;
            }
            let Some((bytes, at, is_last, id)) = self.current.as_mut() else {
                break;
            };
            let mut out = Vec::new();
            let stop = scan(
                bytes,
                *at,
                self.after,
                (None, u64::MAX),
                1024,
                *id,
                Source::File,
                &mut out,
            );
            if let Some(last) = out.last() {
                self.after = last.seq;
            }
            self.buffer.extend(out);
            match stop {
                Stop::Full(next) => *at = next,
                Stop::End => self.current = None,
                Stop::Bad(offset) => {
                    if *is_last {
                        // The live writer's next frame, or a torn tail: nothing more yet.
                        self.current = None;
                        self.done = true;
                    } else {
                        let path = self
                            .segments
                            .as_ref()
                            .and_then(|s| s.get(self.next_segment - 1))
                            .map(|(_, p)| p.clone())
                            .unwrap_or_default();
                        self.done = true;
                        let what = "bad frame in a segment that is not the last";
                        return Err(StorageError::corrupt(&path, offset, what).into());
                    }
                }
            }
        }
        Ok(())
    }
}

impl Iterator for EventReader {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        if self.buffer.is_empty() {
            if let Err(e) = self.fill() {
                return Some(Err(e));
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Encoder;
    use crate::wal::segment::{encode_record, seal_frame, FrameHead, FRAME_HEADER_LEN};

    /// A frame of one record (a retention note, no event) at lsn `lsn`, seq `lsn`.
    fn frame(lsn: u64) -> Vec<u8> {
        let mut payload = Vec::new();
        let mut enc = Encoder::new(&mut payload);
        enc.retention_note(0);
        let mut out = vec![0u8; FRAME_HEADER_LEN];
        encode_record(&mut out, (0, 1), &payload);
        let head = FrameHead {
            first_lsn: lsn,
            first_seq: lsn,
            records: 1,
            events: 0,
            time_ms: 0,
        };
        seal_frame(&mut out, &head, true);
        out
    }

    /// The events feed reads a segment while the writer copies its next batch in: that
    /// frame reads as damaged until the copy ends. Past the durable lsn it is the end of
    /// what can be read, not corruption (with one-record frames the window was a few
    /// bytes wide; a batch of 500 records made `readers_follow_a_live_ledger_without_gaps`
    /// fail).
    #[test]
    fn a_frame_being_copied_in_past_the_durable_lsn_is_the_end_not_damage() {
        let mut bytes = frame(1);
        let durable = bytes.len();
        let mut next = frame(2);
        next[FRAME_HEADER_LEN + 4] ^= 0xff; // half copied: its checksum does not hold yet
        bytes.extend_from_slice(&next);
        bytes.extend_from_slice(&[0u8; 64]);
        let id = (1, 0);
        let mut out = Vec::new();
        let stop = scan(&bytes, 0, 0, (Some(1), 1), 10, id, Source::File, &mut out);
        assert!(matches!(stop, Stop::End));
        // Below the durable lsn the same bytes are damage, named by their offset.
        let stop = scan(&bytes, 0, 0, (Some(1), 2), 10, id, Source::File, &mut out);
        assert!(matches!(stop, Stop::Bad(at) if at == durable));
        // Started where no lsn is known (an index sample is always a whole frame): damage.
        let stop = scan(
            &bytes,
            durable,
            0,
            (None, 1),
            10,
            id,
            Source::File,
            &mut out,
        );
        assert!(matches!(stop, Stop::Bad(at) if at == durable));
    }
}
