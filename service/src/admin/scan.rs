//! A read-only checker of a ledger folder's files, written from `docs/log-format.md` (the
//! core keeps its own reader private). It never takes the folder's LOCK and never writes, so
//! it is safe beside a running service; it reports every defect with its file and offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SEGMENT_HEADER: usize = 64;
pub const FRAME_HEADER: usize = 48;
pub const RECORD_HEADER: usize = 8;
const MAX_PAYLOAD: usize = 1 << 20;
const MAX_RECORDS_BYTES: usize = 4 << 20;
const SNAPSHOT_HEADER: usize = 32;

/// A defect: the file, the offset in it, and what is wrong.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: usize,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.file.display(),
            self.offset,
            self.what
        )
    }
}

#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub epoch: u32,
    pub first_lsn: u64,
    pub first_seq: u64,
    /// One past the last valid frame's lsn / event seq.
    pub next_lsn: u64,
    pub next_seq: u64,
    pub frames: u64,
    /// Offset of the first byte that is not a valid frame.
    pub end: usize,
}

#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    /// The last lsn it covers (from its name).
    pub lsn: u64,
    pub bytes: u64,
    /// `None` when its header and checksum hold.
    pub damage: Option<String>,
    /// The last event seq it covers, when the log still shows where it stands.
    pub seq: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub ledger_id: Option<u64>,
    pub segments: Vec<SegmentInfo>,
    pub snapshots: Vec<SnapshotInfo>,
    pub problems: Vec<Problem>,
    /// Harmless findings (a torn tail recovery zeroes, a live writer's tail).
    pub notes: Vec<String>,
}

impl Report {
    pub fn last_lsn(&self) -> u64 {
        let from_log = self.segments.last().map(|s| s.next_lsn - 1).unwrap_or(0);
        let from_snap = self.newest_valid_snapshot().map(|s| s.lsn).unwrap_or(0);
        from_log.max(from_snap)
    }

    pub fn last_seq(&self) -> Option<u64> {
        match self.segments.last() {
            Some(s) => Some(s.next_seq - 1),
            None => self.newest_valid_snapshot().and_then(|s| s.seq),
        }
    }

    pub fn newest_valid_snapshot(&self) -> Option<&SnapshotInfo> {
        self.snapshots.iter().rev().find(|s| s.damage.is_none())
    }
}

/// A decoded frame header (format v2: a frame is one group-commit batch of records).
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub offset: usize,
    pub crc: u32,
    /// Bytes of its records.
    pub len: usize,
    pub first_lsn: u64,
    pub first_seq: u64,
    pub records: u32,
    pub events: u32,
    pub time_ms: u64,
}

impl Batch {
    pub fn size(&self) -> usize {
        FRAME_HEADER + self.len
    }
}

/// One record of a frame; `offset` and `crc` are its frame's.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub offset: usize,
    pub crc: u32,
    /// Its payload's bytes, which start at `payload_at`.
    pub len: usize,
    pub payload_at: usize,
    pub lsn: u64,
    pub first_seq: u64,
    pub events: u16,
    pub entries: u16,
}

pub enum Slot {
    Frame(Batch),
    /// Zeros: the end of what was written.
    End,
    /// Not a frame; the reason.
    Bad(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn read_frame(bytes: &[u8], at: usize) -> Slot {
    if at + FRAME_HEADER > bytes.len() {
        return if bytes[at.min(bytes.len())..].iter().all(|b| *b == 0) {
            Slot::End
        } else {
            Slot::Bad("a partial frame header at the end of the file")
        };
    }
    let h = &bytes[at..at + FRAME_HEADER];
    let len = u32_at(h, 4) as usize;
    if len == 0 {
        return if h.iter().all(|b| *b == 0) {
            Slot::End
        } else {
            Slot::Bad("zero length in a non-zero frame header")
        };
    }
    if len > MAX_RECORDS_BYTES {
        return Slot::Bad("frame length above 4 MiB");
    }
    if at + FRAME_HEADER + len > bytes.len() {
        return Slot::Bad("frame runs past the end of the file (truncated)");
    }
    let crc = u32_at(h, 0);
    if crc != crc32c::crc32c(&bytes[at + 4..at + FRAME_HEADER + len]) {
        return Slot::Bad("frame checksum mismatch");
    }
    let batch = Batch {
        offset: at,
        crc,
        len,
        first_lsn: u64_at(h, 8),
        first_seq: u64_at(h, 16),
        records: u32_at(h, 24),
        events: u32_at(h, 28),
        time_ms: u64_at(h, 32),
    };
    match records_of(bytes, &batch) {
        Ok(_) => Slot::Frame(batch),
        Err(why) => Slot::Bad(why),
    }
}

/// The records of a frame whose checksum holds, or why they do not make the frame its
/// header describes.
pub fn records_of(bytes: &[u8], b: &Batch) -> Result<Vec<Frame>, &'static str> {
    let end = b.offset + b.size();
    let mut at = b.offset + FRAME_HEADER;
    let (mut lsn, mut seq) = (b.first_lsn, b.first_seq);
    let mut out = Vec::new();
    while at < end {
        if at + RECORD_HEADER > end {
            return Err("a record header runs past its frame");
        }
        let len = u32_at(bytes, at) as usize;
        if len > MAX_PAYLOAD || at + RECORD_HEADER + len > end {
            return Err("a record runs past its frame");
        }
        let events = u16_at(bytes, at + 4);
        out.push(Frame {
            offset: b.offset,
            crc: b.crc,
            len,
            payload_at: at + RECORD_HEADER,
            lsn,
            first_seq: seq,
            events,
            entries: u16_at(bytes, at + 6),
        });
        lsn += 1;
        seq += u64::from(events);
        at += RECORD_HEADER + len;
    }
    if out.len() as u64 != u64::from(b.records) || seq - b.first_seq != u64::from(b.events) {
        return Err("the frame's record or event count disagrees with its records");
    }
    Ok(out)
}

/// The first valid frame with an lsn of at least `min_lsn` starting after `from` (the core's
/// test telling a torn tail, with nothing valid after it, from corruption in the middle).
pub fn valid_frame_after(bytes: &[u8], from: usize, min_lsn: u64) -> Option<Batch> {
    let mut at = from + 1;
    while at + FRAME_HEADER <= bytes.len() {
        let len = u32_at(bytes, at + 4) as usize;
        if len != 0 && len <= MAX_RECORDS_BYTES {
            let lsn = u64_at(bytes, at + 8);
            if lsn >= min_lsn && lsn < min_lsn.saturating_add(1 << 40) {
                if let Slot::Frame(f) = read_frame(bytes, at) {
                    return Some(f);
                }
            }
        }
        at += 1;
    }
    None
}

pub struct Header {
    pub ledger_id: u64,
    pub first_lsn: u64,
    pub first_seq: u64,
    pub epoch: u32,
}

pub fn decode_header(b: &[u8]) -> Result<Header, String> {
    if b.len() < SEGMENT_HEADER {
        return Err(format!(
            "file is {} bytes, shorter than the {SEGMENT_HEADER}-byte segment header",
            b.len()
        ));
    }
    if &b[0..8] != b"SLEDGLOG" {
        return Err("bad magic (not \"SLEDGLOG\")".into());
    }
    if b[8] != 2 {
        return Err(format!(
            "unknown log format version {} (this build reads 2)",
            b[8]
        ));
    }
    if u32_at(b, 40) != crc32c::crc32c(&b[0..40]) {
        return Err("header checksum mismatch".into());
    }
    let epoch = u32_at(b, 44);
    let epoch_crc = u32_at(b, 48);
    if epoch != 0 && epoch_crc != crc32c::crc32c(&b[44..48]) {
        return Err("epoch checksum mismatch".into());
    }
    Ok(Header {
        ledger_id: u64_at(b, 16),
        first_lsn: u64_at(b, 24),
        first_seq: u64_at(b, 32),
        epoch,
    })
}

/// Files named `<prefix><number><suffix>`, sorted by number.
pub fn list_numbered(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, entry.path()));
    }
    out.sort();
    Ok(out)
}

pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    list_numbered(dir, "wal-", ".log")
}

pub fn list_snapshots(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    list_numbered(dir, "snapshot-", ".rkyv")
}

/// Checks a snapshot's header and payload checksum (the rkyv archive itself is validated by
/// recovery).
pub fn check_snapshot(bytes: &[u8]) -> Option<String> {
    if bytes.len() < SNAPSHOT_HEADER {
        return Some(format!("{} bytes, shorter than its header", bytes.len()));
    }
    if &bytes[0..8] != b"SLEDGSNP" {
        return Some("bad magic (not \"SLEDGSNP\")".into());
    }
    if bytes[8] != 1 {
        return Some(format!("unknown format version {}", bytes[8]));
    }
    let len = u64_at(bytes, 16);
    if len != (bytes.len() - SNAPSHOT_HEADER) as u64 {
        return Some(format!(
            "payload length {len} but {} bytes follow the header",
            bytes.len() - SNAPSHOT_HEADER
        ));
    }
    if u32_at(bytes, 24) != crc32c::crc32c(&bytes[SNAPSHOT_HEADER..]) {
        return Some("payload checksum mismatch".into());
    }
    None
}

/// Reads a file, telling "removed meanwhile" (a checkpoint pruned it) apart.
fn read(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Scans every segment and snapshot of `dir`. `live`: a service holds the folder, so the last
/// segment's tail may be a write in progress and is not judged past the last valid frame.
/// `on_frame` sees every valid frame (for `log --records`). Err: the folder cannot be read.
pub fn scan(
    dir: &Path,
    live: bool,
    mut on_frame: impl FnMut(&Path, &Frame, &[u8]) -> bool,
) -> Result<Report, String> {
    let mut report = Report::default();
    let io = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
    let snapshots = list_snapshots(dir).map_err(io)?;
    let segments = list_segments(dir).map_err(io)?;
    // lsn+1 of every snapshot -> where its covered seq is learnt.
    let mut wanted: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    for (lsn, path) in &snapshots {
        let Some(bytes) = read(path)? else { continue };
        let damage = check_snapshot(&bytes);
        if let Some(d) = &damage {
            report.problems.push(Problem {
                file: path.clone(),
                offset: 0,
                what: format!("damaged snapshot: {d}"),
            });
        }
        wanted.insert(lsn + 1, None);
        report.snapshots.push(SnapshotInfo {
            path: path.clone(),
            lsn: *lsn,
            bytes: bytes.len() as u64,
            damage,
            seq: None,
        });
    }

    let count = segments.len();
    let mut stopped = false;
    for (i, (name_lsn, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        let Some(bytes) = read(path)? else {
            report.notes.push(format!(
                "{} was removed while being read (a checkpoint)",
                path.display()
            ));
            continue;
        };
        let problem = |offset: usize, what: String| Problem {
            file: path.clone(),
            offset,
            what,
        };
        let header = match decode_header(&bytes) {
            Ok(h) => h,
            Err(why) => {
                let rest_zero = bytes.iter().skip(SEGMENT_HEADER).all(|b| *b == 0);
                if is_last && rest_zero {
                    // Recovery rule 2: a roll that never completed; recovery removes it.
                    report.notes.push(format!(
                        "{}: header never completed and nothing follows ({why}); recovery removes it",
                        path.display()
                    ));
                } else {
                    report
                        .problems
                        .push(problem(0, format!("bad segment header: {why}")));
                }
                continue;
            }
        };
        if header.first_lsn != *name_lsn {
            report.problems.push(problem(
                24,
                format!(
                    "header says first lsn {} but the name says {name_lsn}",
                    header.first_lsn
                ),
            ));
        }
        match report.ledger_id {
            None => report.ledger_id = Some(header.ledger_id),
            Some(id) if id != header.ledger_id => report.problems.push(problem(
                16,
                format!(
                    "ledger id {:016x} differs from the other segments' {id:016x}",
                    header.ledger_id
                ),
            )),
            Some(_) => {}
        }
        if let Some(prev) = report.segments.last() {
            if !stopped && header.first_lsn != prev.next_lsn {
                report.problems.push(problem(
                    24,
                    format!(
                        "log gap: the previous segment ends before lsn {}, this one starts at lsn {}",
                        prev.next_lsn, header.first_lsn
                    ),
                ));
            }
            if !stopped && header.first_lsn == prev.next_lsn && header.first_seq != prev.next_seq {
                report.problems.push(problem(
                    32,
                    format!(
                        "seq gap: the previous segment ends before seq {}, this one starts at seq {}",
                        prev.next_seq, header.first_seq
                    ),
                ));
            }
        }
        let mut info = SegmentInfo {
            path: path.clone(),
            epoch: header.epoch,
            first_lsn: header.first_lsn,
            first_seq: header.first_seq,
            next_lsn: header.first_lsn,
            next_seq: header.first_seq,
            frames: 0,
            end: SEGMENT_HEADER,
        };
        let mut at = SEGMENT_HEADER;
        loop {
            match read_frame(&bytes, at) {
                Slot::Frame(f) => {
                    if f.first_lsn != info.next_lsn {
                        report.problems.push(problem(
                            at,
                            format!("frame has lsn {}, expected {}", f.first_lsn, info.next_lsn),
                        ));
                        break;
                    }
                    if f.first_seq != info.next_seq {
                        report.problems.push(problem(
                            at,
                            format!(
                                "frame (lsn {}) has first seq {}, expected {}",
                                f.first_lsn, f.first_seq, info.next_seq
                            ),
                        ));
                        break;
                    }
                    for r in records_of(&bytes, &f).unwrap_or_default() {
                        if let Some(slot) = wanted.get_mut(&r.lsn) {
                            *slot = Some(r.first_seq);
                        }
                        if !stopped
                            && !on_frame(path, &r, &bytes[r.payload_at..r.payload_at + r.len])
                        {
                            stopped = true;
                        }
                    }
                    info.next_lsn += u64::from(f.records);
                    info.next_seq += u64::from(f.events);
                    info.frames += 1;
                    at += f.size();
                    info.end = at;
                }
                Slot::End => {
                    if is_last && live {
                        break;
                    }
                    if let Some(f) = valid_frame_after(&bytes, at, info.next_lsn) {
                        report.problems.push(problem(
                            at,
                            format!(
                                "zeroed range followed by a valid frame (lsn {}) at offset {}",
                                f.first_lsn, f.offset
                            ),
                        ));
                    }
                    break;
                }
                Slot::Bad(why) => {
                    if is_last && live {
                        report.notes.push(format!(
                            "{}: the live writer's tail is not judged past offset {at}",
                            path.display()
                        ));
                        break;
                    }
                    let after = valid_frame_after(&bytes, at, info.next_lsn);
                    match after {
                        None if is_last => report.notes.push(format!(
                            "{} at offset {at}: torn tail ({why}): a write never acknowledged; recovery zeroes it",
                            path.display()
                        )),
                        Some(f) => report.problems.push(problem(
                            at,
                            format!("{why} (lsn {}), followed by a valid frame (lsn {}) at offset {}", info.next_lsn, f.first_lsn, f.offset),
                        )),
                        None => report.problems.push(problem(
                            at,
                            format!("{why} (lsn {}) in a segment that is not the last", info.next_lsn),
                        )),
                    }
                    break;
                }
            }
        }
        report.segments.push(info);
    }

    // Where each snapshot stands in the log, and whether the log continues it.
    for snap in &mut report.snapshots {
        if let Some(Some(first_seq)) = wanted.get(&(snap.lsn + 1)) {
            snap.seq = Some(first_seq - 1);
        } else if let Some(s) = report
            .segments
            .last()
            .filter(|s| s.next_lsn == snap.lsn + 1)
        {
            snap.seq = Some(s.next_seq - 1);
        }
    }
    let base = report.newest_valid_snapshot().map(|s| s.lsn).unwrap_or(0);
    if let Some(first) = report.segments.first() {
        if first.first_lsn > base + 1 {
            report.problems.push(Problem {
                file: first.path.clone(),
                offset: 24,
                what: format!(
                    "log gap: recovery needs lsn {} onwards but the log starts at lsn {}",
                    base + 1,
                    first.first_lsn
                ),
            });
        }
    }
    Ok(report)
}
