//! Recovery: the newest valid snapshot, then the log after it, record by record.
//!
//! Rules (see `docs/log-format.md`):
//! - A bad frame with nothing valid after it in the last segment is a torn tail: it is
//!   zeroed, logged, and recovery goes on. Such a record was never acknowledged.
//! - A bad frame followed by any valid frame, or in a segment that is not the last, is
//!   corruption: opening fails naming the file and offset, unless the caller asked to
//!   truncate there (which drops everything after it).
//! - A missing piece of log (an lsn gap) always fails.

use std::path::{Path, PathBuf};

use crate::options::Options;
use crate::record::{decode_entry_refs_into, first_order_id};
use crate::state::State;

use super::error::{StorageError, StorageResult};
use super::segment::{
    list_segments, read_frame, valid_frame_after, Frame, SegmentHeader, Slot, HEADER_LEN,
};
use super::snapshot;
use super::writer::Tail;
use super::SegmentMeta;
use crate::storage::{ReadMap, Storage};

pub(crate) struct Recovered {
    pub(crate) state: State,
    pub(crate) next_lsn: u64,
    pub(crate) next_seq: u64,
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) tail: Option<Tail>,
    /// The epoch new segments get: the newest one's, plus one if records were cut.
    pub(crate) epoch: u32,
}

/// What replay may do to damaged files.
pub(crate) enum Mode {
    /// Opening: zero a torn tail; with `truncate`, also cut at corruption.
    Repair { truncate: bool },
    /// A checkpoint rebuilding state up to an lsn it knows is durable.
    ReadOnly { upto: u64 },
}

pub(crate) fn recover(
    dir: &Path,
    options: &Options,
    storage: &dyn Storage,
    new_id: fn() -> u64,
) -> StorageResult<Recovered> {
    let mut segments = list_segments(storage, dir).map_err(|e| io_err(dir, e))?;
    drop_headerless_tail(storage, &mut segments)?;
    let (loaded, damaged) = snapshot::load_newest_noting(storage, dir)?;
    if let Some(d) = damaged.first() {
        // A damaged snapshot is passed over for an older one (or none); that works only if
        // the log from there on is still there. If it is not, the damage is the cause:
        // name the snapshot, not the gap the log replay would meet.
        let need = loaded.as_ref().map_or(1, |s| s.1);
        let oldest = segments.first().map(|(lsn, _)| *lsn);
        if oldest.is_none_or(|lsn| lsn > need) {
            return Err(StorageError::SnapshotLost {
                path: d.path.clone(),
                offset: d.offset as u64,
                what: d.reason.clone(),
                need_lsn: need,
                oldest_lsn: oldest,
            });
        }
    }
    let (state, next_lsn, next_seq) = match loaded {
        Some(s) => s,
        None => {
            let id = match segments.first() {
                Some((_, path)) => read_header(storage, path)?.ledger_id,
                None => new_id(),
            };
            (State::new(id), 1, 1)
        }
    };
    let mode = Mode::Repair {
        truncate: options.truncate_corrupt_tail,
    };
    let out = replay(storage, dir, segments, &state, next_lsn, next_seq, mode)?;
    state
        .check_invariants()
        .map_err(|e| StorageError::Inconsistent {
            dir: dir.to_path_buf(),
            why: e.to_string(),
        })?;
    tracing::info!(
        dir = %dir.display(),
        next_lsn = out.next_lsn,
        last_seq = out.next_seq - 1,
        "ledger recovered"
    );
    Ok(Recovered {
        state,
        next_lsn: out.next_lsn,
        next_seq: out.next_seq,
        segments: out.segments,
        tail: out.tail,
        epoch: out.epoch,
    })
}

pub(crate) struct ReplayEnd {
    pub(crate) next_lsn: u64,
    pub(crate) next_seq: u64,
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) tail: Option<Tail>,
    pub(crate) epoch: u32,
}

fn io_err(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::io("read", path, e)
}

fn corrupt(path: &Path, offset: usize, what: &str) -> StorageError {
    StorageError::corrupt(path, offset, what)
}

fn read_header(storage: &dyn Storage, path: &Path) -> StorageResult<SegmentHeader> {
    let bytes = storage.read(path).map_err(|e| io_err(path, e))?;
    SegmentHeader::decode(&bytes).map_err(|e| corrupt(path, 0, &e))
}

/// Maps a segment or snapshot through the storage seam (see `storage::map_file` for why
/// a map of a file the writer may be writing is sound).
pub(crate) fn map(storage: &dyn Storage, path: &Path) -> StorageResult<ReadMap> {
    storage.map_read(path).map_err(|e| io_err(path, e))
}

/// Where replay stands: the next record it wants, and what it learnt of the segments.
struct Progress {
    next_lsn: u64,
    next_seq: u64,
    metas: Vec<SegmentMeta>,
    tail: Option<Tail>,
    epoch: u32,
    /// Records were cut (`truncate_corrupt_tail`): the next segment starts a new epoch.
    cut: bool,
}

/// How the frames of one segment ended.
struct SegmentScan {
    meta: SegmentMeta,
    /// The offset after the last frame read.
    end: usize,
    /// The first offset that is not a valid frame, when damage was met (or, when opening,
    /// a zeroed range with valid frames after it).
    bad_at: Option<usize>,
    /// The lsn after the last good frame of the segment, covered by the snapshot or not: a
    /// valid frame from there on after a bad one means the bad one is bit rot, not a torn
    /// tail (asking only for lsns after the snapshot zeroed covered frames as a torn tail).
    scan_lsn: u64,
}

/// Applies every frame with an lsn from `next_lsn` on to `state`.
pub(crate) fn replay(
    storage: &dyn Storage,
    dir: &Path,
    mut segments: Vec<(u64, PathBuf)>,
    state: &State,
    next_lsn: u64,
    next_seq: u64,
    mode: Mode,
) -> StorageResult<ReplayEnd> {
    let upto = match mode {
        Mode::ReadOnly { upto } => upto,
        Mode::Repair { .. } => u64::MAX,
    };
    let repair = matches!(mode, Mode::Repair { .. });
    if repair {
        drop_headerless_tail(storage, &mut segments)?;
    }
    let mut p = Progress {
        next_lsn,
        next_seq,
        metas: Vec::new(),
        tail: None,
        epoch: 0,
        cut: false,
    };
    for (i, (name_lsn, path)) in segments.iter().enumerate() {
        if p.next_lsn > upto {
            // A checkpoint has all it asked for; later segments (the writer may have rolled
            // since `upto` was read) start past it and are not a gap.
            break;
        }
        let later = &segments[i + 1..];
        if later.first().is_some_and(|(lsn, _)| *lsn <= p.next_lsn) {
            if repair {
                note_covered(storage, path, *name_lsn, state.ledger_id, &mut p);
            }
            continue;
        }
        let bytes = map(storage, path)?;
        let header = check_header(&bytes, path, *name_lsn, state.ledger_id, p.next_lsn)?;
        p.epoch = p.epoch.max(header.epoch);
        let scan = replay_segment(&bytes, path, &header, state, upto, repair, &mut p)?;
        let Some(bad) = scan.bad_at else {
            p.metas.push(scan.meta);
            if later.is_empty() {
                p.tail = Some(Tail {
                    path: path.clone(),
                    offset: scan.end as u64,
                    capacity: bytes.len() as u64,
                });
            }
            continue;
        };
        let later_valid = valid_frame_after(&bytes, bad, scan.scan_lsn).is_some();
        let len = bytes.len() as u64;
        // The map must be gone before the file changes under it: a `&[u8]` whose bytes
        // change is undefined behaviour, however coherent the page cache is.
        drop(bytes);
        let damage = Damage {
            path,
            bad,
            later_valid,
            len,
        };
        on_damage(storage, &mode, damage, later, scan.meta, &mut p)?;
        break;
    }
    let _ = dir;
    Ok(ReplayEnd {
        next_lsn: p.next_lsn,
        next_seq: p.next_seq,
        segments: p.metas,
        tail: p.tail,
        epoch: if p.cut {
            p.epoch.saturating_add(1)
        } else {
            p.epoch
        },
    })
}

/// A segment wholly covered by the snapshot but still there (kept for the events feed or
/// the outbox): readers and the next checkpoint must know of it.
fn note_covered(
    storage: &dyn Storage,
    path: &Path,
    name_lsn: u64,
    ledger_id: u64,
    p: &mut Progress,
) {
    match map(storage, path).map(|b| SegmentHeader::decode(&b)) {
        Ok(Ok(h)) if h.first_lsn == name_lsn && h.ledger_id == ledger_id => {
            p.epoch = p.epoch.max(h.epoch);
            p.metas.push(SegmentMeta {
                first_lsn: h.first_lsn,
                first_seq: h.first_seq,
                epoch: h.epoch,
                path: path.to_path_buf(),
                index: Vec::new(),
            })
        }
        _ => {
            // Its events cannot be read; the ones after it still can.
            tracing::warn!(file = %path.display(), "ignoring an unreadable segment the snapshot covers");
            p.metas.clear();
        }
    }
}

/// The header of a segment replay reads, checked against its name, the ledger and the lsn
/// replay needs next.
fn check_header(
    bytes: &[u8],
    path: &Path,
    name_lsn: u64,
    ledger_id: u64,
    next_lsn: u64,
) -> StorageResult<SegmentHeader> {
    let header = SegmentHeader::decode(bytes).map_err(|e| corrupt(path, 0, &e))?;
    if header.first_lsn != name_lsn {
        return Err(corrupt(path, 0, "header lsn differs from the file name"));
    }
    if header.ledger_id != ledger_id {
        return Err(corrupt(path, 0, "segment belongs to another ledger"));
    }
    if header.first_lsn > next_lsn {
        return Err(StorageError::Gap {
            lsn: next_lsn,
            path: path.to_path_buf(),
            first_lsn: header.first_lsn,
        });
    }
    Ok(header)
}

/// Replays the frames of one segment up to lsn `upto`, sampling its seq index; stops at
/// the end of what was written, at damage, or at `upto`.
fn replay_segment(
    bytes: &[u8],
    path: &Path,
    header: &SegmentHeader,
    state: &State,
    upto: u64,
    repair: bool,
    p: &mut Progress,
) -> StorageResult<SegmentScan> {
    let mut scan = SegmentScan {
        meta: SegmentMeta {
            first_lsn: header.first_lsn,
            first_seq: header.first_seq,
            epoch: header.epoch,
            path: path.to_path_buf(),
            index: Vec::new(),
        },
        end: HEADER_LEN,
        bad_at: None,
        scan_lsn: header.first_lsn,
    };
    let mut since_index = 0usize;
    loop {
        let at = scan.end;
        let f = match read_frame(bytes, at) {
            Slot::Frame(f) => f,
            Slot::Bad => {
                scan.bad_at = Some(at);
                break;
            }
            Slot::End => {
                // Zeros followed by valid frames: a zeroed range, not the end.
                if repair && valid_frame_after(bytes, at, scan.scan_lsn).is_some() {
                    scan.bad_at = Some(at);
                }
                break;
            }
        };
        if f.head.first_lsn > upto {
            break;
        }
        scan.scan_lsn = f.last_lsn() + 1;
        let mut next = (p.next_lsn, p.next_seq);
        replay_frame(state, &f, upto, &mut next).map_err(|e| corrupt(path, at, &e))?;
        (p.next_lsn, p.next_seq) = next;
        if f.last_lsn() > upto {
            break; // a checkpoint stops inside this frame
        }
        if since_index == 0 {
            scan.meta.index.push((f.head.first_seq, at as u32));
        }
        since_index += f.size;
        if since_index >= 32 << 10 {
            since_index = 0;
        }
        scan.end += f.size;
    }
    Ok(scan)
}

/// Where replay met a frame that is not valid.
struct Damage<'a> {
    path: &'a PathBuf,
    bad: usize,
    /// A valid frame follows it in the segment.
    later_valid: bool,
    /// The segment's length.
    len: u64,
}

/// What damage means: past a checkpoint's lsn, a frame being written; below it, corruption.
/// When opening: a torn tail in the last segment with nothing valid after it is zeroed (it
/// was never acknowledged); anything else is corruption, cut only when the operator asked
/// (`truncate_corrupt_tail`).
fn on_damage(
    storage: &dyn Storage,
    mode: &Mode,
    d: Damage<'_>,
    later: &[(u64, PathBuf)],
    meta: SegmentMeta,
    p: &mut Progress,
) -> StorageResult<()> {
    let truncate = match mode {
        Mode::ReadOnly { upto } if p.next_lsn > *upto => {
            p.metas.push(meta);
            return Ok(()); // a frame being written past what the checkpoint reads
        }
        Mode::ReadOnly { .. } => {
            return Err(corrupt(d.path, d.bad, "bad frame below the durable lsn"));
        }
        Mode::Repair { truncate } => *truncate,
    };
    let torn_tail = later.is_empty() && !d.later_valid;
    if torn_tail {
        tracing::warn!(file = %d.path.display(), offset = d.bad, "torn tail: zeroing an unacknowledged partial record");
    } else if truncate {
        tracing::warn!(
            file = %d.path.display(),
            offset = d.bad,
            dropped_segments = later.len(),
            "log corruption: truncating here as asked; every record after it is dropped"
        );
        for (_, path) in later {
            storage
                .remove(path)
                .map_err(|e| StorageError::io("remove", path, e))?;
        }
        p.cut = true;
    } else {
        return Err(corrupt(
            d.path,
            d.bad,
            "bad checksum with valid records after it (open with truncate_corrupt_tail to cut the log here)",
        ));
    }
    zero_from(storage, d.path, d.bad as u64, d.len)?;
    if !p.cut {
        p.metas.push(meta);
        p.tail = Some(Tail {
            path: d.path.clone(),
            offset: d.bad as u64,
            capacity: d.len,
        });
        return Ok(());
    }
    // Seqs after the cut will be given again: they go to a new segment of a new epoch, so
    // their event_ids differ from the dropped ones'.
    if d.bad == HEADER_LEN {
        // Nothing left in it, and the new segment takes its name.
        storage
            .remove(d.path)
            .map_err(|e| StorageError::io("remove", d.path, e))?;
    } else {
        p.metas.push(meta);
    }
    p.tail = None;
    Ok(())
}

/// Applies the records of `f` from `next` (lsn, seq) on, up to lsn `upto` (records before
/// `next` are covered by the snapshot); says why when a record does not continue the log or
/// does not apply to the state before it.
fn replay_frame(
    state: &State,
    f: &Frame<'_>,
    upto: u64,
    next: &mut (u64, u64),
) -> Result<(), String> {
    let mut entries = Vec::with_capacity(4);
    let mut records = f.records().peekable();
    while let Some(r) = records.next() {
        if r.lsn > upto {
            break;
        }
        // The next record's order is most likely new: start loading its index bucket
        // while this one applies.
        if let Some(id) = records.peek().and_then(|n| first_order_id(n.payload)) {
            state.orders.prefetch(state.orders.hash(id));
        }
        if r.lsn < next.0 {
            continue;
        }
        if (r.lsn, r.first_seq) != *next {
            return Err(format!(
                "expected lsn {} seq {}, found lsn {} seq {}",
                next.0, next.1, r.lsn, r.first_seq
            ));
        }
        if !decode_entry_refs_into(r.payload, r.entries, &mut entries) {
            return Err(format!("undecodable record (lsn {})", r.lsn));
        }
        for e in &entries {
            if !state.apply(e) {
                return Err(format!(
                    "record does not apply to the state before it (lsn {})",
                    r.lsn
                ));
            }
        }
        *next = (r.lsn + 1, r.first_seq + u64::from(r.events));
    }
    Ok(())
}

/// A last segment whose header never fully made it to disk (a crash or a write error while
/// rolling) holds nothing: remove it.
fn drop_headerless_tail(
    storage: &dyn Storage,
    segments: &mut Vec<(u64, PathBuf)>,
) -> StorageResult<()> {
    if let Some((_, last)) = segments.last() {
        let bytes = storage.read(last).map_err(|e| io_err(last, e))?;
        let head = &bytes[..bytes.len().min(HEADER_LEN)];
        // A torn header (never synced, so never acknowledged) with nothing after it.
        let torn_header =
            SegmentHeader::decode(head).is_err() && bytes[head.len()..].iter().all(|b| *b == 0);
        if torn_header {
            tracing::warn!(file = %last.display(), "removing a log segment without a header (crash while rolling)");
            storage
                .remove(last)
                .map_err(|e| StorageError::io("remove", last, e))?;
            segments.pop();
        }
    }
    Ok(())
}

fn zero_from(storage: &dyn Storage, path: &Path, from: u64, len: u64) -> StorageResult<()> {
    assert!(from <= len);
    let mut file = storage
        .open(path)
        .map_err(|e| StorageError::io("open for repair", path, e))?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_at(&zeros[..n], at)
            .map_err(|e| StorageError::io("repair", path, e))?;
        at += n as u64;
    }
    file.sync_data()
        .map_err(|e| StorageError::io("sync", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStorage;
    use crate::{Command, Ledger, Line, Options, Source};

    /// A closed ledger whose log spans at least two segments.
    fn two_segments(dir: &Path) -> Vec<(u64, PathBuf)> {
        let l = Ledger::open(
            dir,
            Options {
                segment_bytes: 1 << 20,
                ..Options::default()
            },
        )
        .unwrap();
        l.set_stock("A", "w", 1 << 40, Source::Warehouse).unwrap();
        let mut b = 0;
        while list_segments(&FsStorage, dir).unwrap().len() < 2 {
            let batch: Vec<Command> = (0..1000)
                .map(|i| Command::Reserve {
                    order_id: format!("order-{b:04}-{i:05}"),
                    lines: vec![Line::new("A", "w", 1)],
                    ttl_seconds: 900,
                })
                .collect();
            l.execute(&batch).unwrap();
            b += 1;
        }
        l.close().unwrap();
        list_segments(&FsStorage, dir).unwrap()
    }

    /// Defect 1: a checkpoint's durable lsn falls in a segment the writer has since rolled
    /// away from; the replay must stop there, not read on into the next segment.
    #[test]
    fn checkpoint_replay_stops_at_its_lsn_when_a_later_segment_exists() {
        let dir = tempfile::tempdir().unwrap();
        let segments = two_segments(dir.path());
        let id = read_header(&FsStorage, &segments[0].1).unwrap().ledger_id;
        let upto = segments[1].0 - 10;
        let state = State::new(id);
        let mode = Mode::ReadOnly { upto };
        let end = replay(&FsStorage, dir.path(), segments, &state, 1, 1, mode).unwrap();
        assert_eq!(end.next_lsn, upto + 1);
    }

    /// A closed ledger of `n` reservations in one 1 MiB segment; returns its path.
    fn one_segment(dir: &Path, n: usize) -> PathBuf {
        let options = Options {
            segment_bytes: 1 << 20,
            ..Options::default()
        };
        let l = Ledger::open(dir, options).unwrap();
        l.set_stock("A", "w", 1_000, Source::Warehouse).unwrap();
        for i in 0..n {
            l.reserve(&format!("o{i}"), &[Line::new("A", "w", 1)], 900)
                .unwrap();
        }
        l.close().unwrap();
        let mut segments = list_segments(&FsStorage, dir).unwrap();
        assert_eq!(segments.len(), 1);
        segments.remove(0).1
    }

    /// The offset of frame `k` (0: the first) of a segment.
    fn frame_offset(bytes: &[u8], k: usize) -> usize {
        let mut at = HEADER_LEN;
        for _ in 0..k {
            match read_frame(bytes, at) {
                Slot::Frame(f) => at += f.size,
                other => panic!("frame expected at {at}: {other:?}"),
            }
        }
        at
    }

    #[test]
    fn a_damaged_frame_before_valid_ones_is_corrupt_naming_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = one_segment(dir.path(), 10);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = frame_offset(&bytes, 5);
        bytes[at + 30] ^= 0x10; // in the payload: the checksum no longer matches
        std::fs::write(&path, &bytes).unwrap();
        let options = Options::default();
        match recover(dir.path(), &options, &FsStorage, || 7) {
            Err(StorageError::Corrupt {
                path: named,
                offset,
                what,
            }) => {
                assert_eq!(named, path);
                assert_eq!(offset, at as u64);
                assert!(what.contains("valid records after it"), "{what}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("recovered over corruption"),
        }
        // Nothing was repaired: the damaged bytes are still there.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_segment_of_another_ledger_is_corrupt_at_offset_zero() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ours = std::fs::read(one_segment(a.path(), 1)).unwrap();
        let theirs = one_segment(b.path(), 1);
        // b's segment, renamed and re-headed to follow a's last frame.
        let mut next_lsn = 1;
        let mut at = HEADER_LEN;
        while let Slot::Frame(f) = read_frame(&ours, at) {
            next_lsn = f.last_lsn() + 1;
            at += f.size;
        }
        let moved = a.path().join(super::super::segment::segment_name(next_lsn));
        std::fs::copy(&theirs, &moved).unwrap();
        let mut bytes = std::fs::read(&moved).unwrap();
        let mut header = SegmentHeader::decode(&bytes).unwrap();
        header.first_lsn = next_lsn;
        bytes[..HEADER_LEN].copy_from_slice(&header.encode());
        std::fs::write(&moved, bytes).unwrap();
        match recover(a.path(), &Options::default(), &FsStorage, || 7) {
            Err(StorageError::Corrupt { path, offset, what }) => {
                assert_eq!((path, offset), (moved, 0));
                assert!(what.contains("another ledger"), "{what}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("recovered a foreign segment"),
        }
    }

    #[test]
    fn a_missing_segment_is_a_gap_naming_the_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let segments = two_segments(dir.path());
        std::fs::remove_file(&segments[0].1).unwrap();
        match recover(dir.path(), &Options::default(), &FsStorage, || 7) {
            Err(StorageError::Gap {
                lsn,
                path,
                first_lsn,
            }) => {
                assert_eq!((lsn, first_lsn), (1, segments[1].0));
                assert_eq!(path, segments[1].1);
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("recovered over a gap"),
        }
    }

    #[test]
    fn an_unreadable_segment_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = one_segment(dir.path(), 2);
        let storage = crate::storage::FaultyStorage::new(crate::storage::Fault::ReadError, 0);
        match recover(dir.path(), &Options::default(), &storage, || 7) {
            Err(StorageError::Io {
                op,
                path: named,
                source,
            }) => {
                assert_eq!((op, named), ("read", path));
                assert_eq!(source.to_string(), "injected read error");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("recovered without reading"),
        }
        assert!(storage.fired());
    }
}
