//! Segment files and the frames in them (see `docs/log-format.md`).
//!
//! ```text
//! segment header (64 bytes): magic "SLEDGLOG" | version u8 | 7 zero | ledger_id u64
//!                            | first_lsn u64 | first_seq u64 | crc32c(bytes 0..40) u32
//!                            | epoch u32 | crc32c(bytes 44..48) u32 (both 0: epoch 0) | zeros
//! frame (one group-commit batch, or the part of it that fits the segment):
//!        crc32c u32 | len u32 | first_lsn u64 | first_seq u64 | records u32 | events u32
//!        | time_ms u64 | zero u64 | records (len bytes)
//!        crc covers every byte after itself, from len to the end of the last record.
//! record: len u32 | events u16 | entries u16 | payload (its lsn and first seq follow from
//!        its place in the frame)
//! ```
//! Segments are preallocated with zeros; a zero `len` marks the end of the written part.

use std::path::{Path, PathBuf};

use crate::storage::Storage;

pub(crate) const MAGIC: &[u8; 8] = b"SLEDGLOG";
pub(crate) const VERSION: u8 = 2;
pub(crate) const HEADER_LEN: usize = 64;
pub(crate) const FRAME_HEADER_LEN: usize = 48;
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// No record is larger (100 lines of 64-byte names, with room to spare).
pub(crate) use crate::limits::MAX_FRAME_PAYLOAD as MAX_PAYLOAD;
pub(crate) use crate::limits::MAX_FRAME_RECORDS_BYTES as MAX_RECORDS_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) ledger_id: u64,
    pub(crate) first_lsn: u64,
    pub(crate) first_seq: u64,
    /// Changes whenever seqs can repeat (a log truncated by `truncate_corrupt_tail`): part
    /// of every event_id, so consumers never take a new event for an old one.
    pub(crate) epoch: u32,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8] = VERSION;
        h[16..24].copy_from_slice(&self.ledger_id.to_le_bytes());
        h[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        h[32..40].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..40]);
        h[40..44].copy_from_slice(&crc.to_le_bytes());
        if self.epoch != 0 {
            // Kept out of the first checksum so segments of epoch 0 read as before.
            h[44..48].copy_from_slice(&self.epoch.to_le_bytes());
            let crc = crc32c::crc32c(&h[44..48]);
            h[48..52].copy_from_slice(&crc.to_le_bytes());
        }
        h
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentHeader, String> {
        if bytes.len() < HEADER_LEN {
            return Err("shorter than a segment header".into());
        }
        if &bytes[0..8] != MAGIC {
            return Err("bad magic (not a stockledger log segment)".into());
        }
        if bytes[8] != VERSION {
            return Err(format!("unsupported log format version {}", bytes[8]));
        }
        let crc = u32::from_le_bytes(le4(&bytes[40..44]));
        if crc != crc32c::crc32c(&bytes[0..40]) {
            return Err("segment header checksum mismatch".into());
        }
        let epoch = u32::from_le_bytes(le4(&bytes[44..48]));
        let epoch_crc = u32::from_le_bytes(le4(&bytes[48..52]));
        if (epoch, epoch_crc) != (0, 0) && epoch_crc != crc32c::crc32c(&bytes[44..48]) {
            return Err("segment header epoch checksum mismatch".into());
        }
        Ok(SegmentHeader {
            epoch,
            ledger_id: u64::from_le_bytes(le8(&bytes[16..24])),
            first_lsn: u64::from_le_bytes(le8(&bytes[24..32])),
            first_seq: u64::from_le_bytes(le8(&bytes[32..40])),
        })
    }
}

fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// Appends one record (its header, then its payload) to the records of a frame being built.
pub(crate) fn encode_record(out: &mut Vec<u8>, (events, entries): (u16, u16), payload: &[u8]) {
    assert!(payload.len() <= MAX_PAYLOAD);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&events.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What a frame's header says besides its length and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub(crate) first_lsn: u64,
    pub(crate) first_seq: u64,
    pub(crate) records: u32,
    pub(crate) events: u32,
    /// The ledger's clock when the batch was framed (never less than the previous frame's).
    pub(crate) time_ms: u64,
}

/// Writes the header of `frame` (its first `FRAME_HEADER_LEN` bytes, reserved; its records
/// follow) and, unless it is a frame of the memory log that never meets a disk, its checksum.
pub(crate) fn seal_frame(frame: &mut [u8], head: &FrameHead, checksum: bool) {
    let len = frame.len() - FRAME_HEADER_LEN;
    assert!((RECORD_HEADER_LEN..=MAX_RECORDS_BYTES).contains(&len));
    assert!(head.records >= 1 && head.records as usize * RECORD_HEADER_LEN <= len);
    let h = &mut frame[..FRAME_HEADER_LEN];
    h[0..4].fill(0);
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&head.first_lsn.to_le_bytes());
    h[16..24].copy_from_slice(&head.first_seq.to_le_bytes());
    h[24..28].copy_from_slice(&head.records.to_le_bytes());
    h[28..32].copy_from_slice(&head.events.to_le_bytes());
    h[32..40].copy_from_slice(&head.time_ms.to_le_bytes());
    h[40..48].fill(0);
    if checksum {
        let crc = crc32c::crc32c(&frame[4..]);
        frame[0..4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A frame read back from a segment: a group-commit batch of records, all valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub(crate) head: FrameHead,
    records: &'a [u8],
    /// Bytes the frame takes, header included.
    pub(crate) size: usize,
}

impl<'a> Frame<'a> {
    pub(crate) fn last_lsn(&self) -> u64 {
        self.head.first_lsn + u64::from(self.head.records) - 1
    }

    /// The seq after the frame's last event.
    pub(crate) fn end_seq(&self) -> u64 {
        self.head.first_seq + u64::from(self.head.events)
    }

    pub(crate) fn records(&self) -> Records<'a> {
        Records {
            bytes: self.records,
            at: 0,
            lsn: self.head.first_lsn,
            seq: self.head.first_seq,
        }
    }
}

/// One record of a frame: one decided change and everything it caused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub(crate) lsn: u64,
    pub(crate) first_seq: u64,
    pub(crate) events: u16,
    pub(crate) entries: u16,
    pub(crate) payload: &'a [u8],
}

/// The records of a frame, in lsn order (their layout was checked when the frame was read).
pub(crate) struct Records<'a> {
    bytes: &'a [u8],
    at: usize,
    lsn: u64,
    seq: u64,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let h = self.bytes.get(self.at..self.at + RECORD_HEADER_LEN)?;
        let len = u32::from_le_bytes(le4(&h[0..4])) as usize;
        let start = self.at + RECORD_HEADER_LEN;
        let record = Record {
            lsn: self.lsn,
            first_seq: self.seq,
            events: u16::from_le_bytes([h[4], h[5]]),
            entries: u16::from_le_bytes([h[6], h[7]]),
            payload: self.bytes.get(start..start + len)?,
        };
        self.at = start + len;
        self.lsn += 1;
        self.seq += u64::from(record.events);
        Some(record)
    }
}

/// What is at an offset of a segment.
#[derive(Debug)]
pub(crate) enum Slot<'a> {
    Frame(Frame<'a>),
    /// Zeros: the end of what was written.
    End,
    /// Bytes that are not a valid frame (torn or damaged).
    Bad,
}

pub(crate) fn read_frame(bytes: &[u8], at: usize) -> Slot<'_> {
    read_frame_checked(bytes, at, true)
}

/// A frame of the memory log, written by this process without a checksum.
pub(crate) fn read_frame_in_memory(bytes: &[u8], at: usize) -> Slot<'_> {
    read_frame_checked(bytes, at, false)
}

fn read_frame_checked(bytes: &[u8], at: usize, verify: bool) -> Slot<'_> {
    if at + FRAME_HEADER_LEN > bytes.len() {
        return if bytes[at.min(bytes.len())..].iter().all(|b| *b == 0) {
            Slot::End
        } else {
            Slot::Bad
        };
    }
    let h = &bytes[at..at + FRAME_HEADER_LEN];
    let len = u32::from_le_bytes(le4(&h[4..8])) as usize;
    if len == 0 {
        // A zero length is the end only if the whole header is zero.
        return if h.iter().all(|b| *b == 0) {
            Slot::End
        } else {
            Slot::Bad
        };
    }
    if len > MAX_RECORDS_BYTES || at + FRAME_HEADER_LEN + len > bytes.len() {
        return Slot::Bad;
    }
    let crc = u32::from_le_bytes(le4(&h[0..4]));
    if verify && crc != crc32c::crc32c(&bytes[at + 4..at + FRAME_HEADER_LEN + len]) {
        return Slot::Bad;
    }
    let head = FrameHead {
        first_lsn: u64::from_le_bytes(le8(&h[8..16])),
        first_seq: u64::from_le_bytes(le8(&h[16..24])),
        records: u32::from_le_bytes(le4(&h[24..28])),
        events: u32::from_le_bytes(le4(&h[28..32])),
        time_ms: u64::from_le_bytes(le8(&h[32..40])),
    };
    let records = &bytes[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len];
    if !records_fit(records, &head) {
        return Slot::Bad;
    }
    Slot::Frame(Frame {
        head,
        records,
        size: FRAME_HEADER_LEN + len,
    })
}

/// Whether `records` is exactly `head.records` records holding `head.events` events, and
/// their lsns and seqs stay in range: a checksum proves the bytes are the writer's, this
/// proves the writer's bytes are a frame (and lets `Records` trust the layout).
fn records_fit(records: &[u8], head: &FrameHead) -> bool {
    let (mut at, mut count, mut events) = (0usize, 0u64, 0u64);
    while at < records.len() {
        let Some(h) = records.get(at..at + RECORD_HEADER_LEN) else {
            return false;
        };
        let len = u32::from_le_bytes(le4(&h[0..4])) as usize;
        if len > MAX_PAYLOAD {
            return false;
        }
        at += RECORD_HEADER_LEN + len;
        count += 1;
        events += u64::from(u16::from_le_bytes([h[4], h[5]]));
    }
    at == records.len()
        && count >= 1
        && count == u64::from(head.records)
        && events == u64::from(head.events)
        && head.first_lsn >= 1
        && head.first_lsn.checked_add(count).is_some()
        && head.first_seq.checked_add(events).is_some()
}

/// Whether any valid frame with an lsn of at least `min_lsn` starts after `from`: the test
/// that tells a torn tail (nothing valid after the damage) from corruption in the middle.
pub(crate) fn valid_frame_after(bytes: &[u8], from: usize, min_lsn: u64) -> Option<usize> {
    let mut at = from + 1;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        // A frame's length field (bytes at+4..at+8) is never zero: jump over runs of zeros
        // (a segment's unwritten tail is megabytes of them) a word at a time.
        let q = at + 4 + first_nonzero(&bytes[at + 4..])?;
        if q > at + 7 {
            at = q - 7;
            continue;
        }
        let len = u32::from_le_bytes(le4(&bytes[at + 4..at + 8])) as usize;
        if len != 0 && len <= MAX_RECORDS_BYTES {
            let lsn = u64::from_le_bytes(le8(&bytes[at + 8..at + 16]));
            if lsn >= min_lsn && lsn < min_lsn.saturating_add(1 << 40) {
                if let Slot::Frame(_) = read_frame(bytes, at) {
                    return Some(at);
                }
            }
        }
        at += 1;
    }
    None
}

/// The index of the first byte that is not zero, eight bytes at a time.
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    for (i, w) in (&mut words).enumerate() {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if x != 0 {
            return Some(i * 8 + (x.trailing_zeros() / 8) as usize);
        }
    }
    let done = bytes.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|b| *b != 0)
        .map(|k| done + k)
}

pub(crate) fn segment_name(first_lsn: u64) -> String {
    format!("wal-{first_lsn:020}.log")
}

pub(crate) const SPARE_NAME: &str = "wal-spare.tmp";

/// The segments of a folder, sorted by first lsn (from their names).
pub(crate) fn list_segments(
    storage: &dyn Storage,
    dir: &Path,
) -> std::io::Result<Vec<(u64, PathBuf)>> {
    list_numbered(storage, dir, "wal-", ".log")
}

/// Files named `<prefix><number><suffix>` in `dir`, sorted by their number.
pub(crate) fn list_numbered(
    storage: &dyn Storage,
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for path in storage.list(dir)? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let number = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_suffix(suffix));
        if let Some(Ok(n)) = number.map(str::parse::<u64>) {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `records` ((events, entries), payload) starting at `lsn` and `seq`.
    pub(crate) fn frame_of(lsn: u64, seq: u64, records: &[((u16, u16), &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; FRAME_HEADER_LEN];
        for (counts, payload) in records {
            encode_record(&mut out, *counts, payload);
        }
        let head = FrameHead {
            first_lsn: lsn,
            first_seq: seq,
            records: records.len() as u32,
            events: records.iter().map(|((e, _), _)| u32::from(*e)).sum(),
            time_ms: 1_700_000_000_000,
        };
        seal_frame(&mut out, &head, true);
        out
    }

    #[test]
    fn frame_round_trips_and_detects_any_flipped_bit() {
        let mut buf = vec![0u8; 8];
        let records: [((u16, u16), &[u8]); 3] =
            [((1, 1), b"payload"), ((0, 2), b""), ((2, 3), b"xyz")];
        buf.extend_from_slice(&frame_of(7, 3, &records));
        let size = buf.len() - 8;
        buf.extend_from_slice(&[0u8; 40]);
        match read_frame(&buf, 8) {
            Slot::Frame(f) => {
                assert_eq!((f.head.first_lsn, f.last_lsn(), f.end_seq()), (7, 9, 6));
                assert_eq!(f.head.time_ms, 1_700_000_000_000);
                assert_eq!(f.size, size);
                let got: Vec<_> = f
                    .records()
                    .map(|r| (r.lsn, r.first_seq, r.events, r.entries, r.payload))
                    .collect();
                assert_eq!(
                    got,
                    [
                        (7, 3, 1, 1, &b"payload"[..]),
                        (8, 4, 0, 2, &b""[..]),
                        (9, 4, 2, 3, &b"xyz"[..])
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        for bit in 0..size * 8 {
            let mut damaged = buf.clone();
            damaged[8 + bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(read_frame(&damaged, 8), Slot::Frame(_)),
                "bit {bit} went unnoticed"
            );
        }
    }

    /// The old byte-by-byte search, the reference for the zero-skipping one.
    fn valid_frame_after_naive(bytes: &[u8], from: usize, min_lsn: u64) -> Option<usize> {
        (from + 1..)
            .take_while(|at| at + FRAME_HEADER_LEN <= bytes.len())
            .find(|&at| {
                let len = u32::from_le_bytes(le4(&bytes[at + 4..at + 8])) as usize;
                let lsn = u64::from_le_bytes(le8(&bytes[at + 8..at + 16]));
                len != 0
                    && len <= MAX_RECORDS_BYTES
                    && lsn >= min_lsn
                    && lsn < min_lsn.saturating_add(1 << 40)
                    && matches!(read_frame(bytes, at), Slot::Frame(_))
            })
    }

    #[test]
    fn skipping_zeros_finds_the_same_frame_as_the_byte_by_byte_search() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut found = 0;
        for case in 0..400 {
            let mut buf = vec![0u8; 64 + (next() % 600) as usize];
            // A frame somewhere, maybe garbage and single non-zero bytes around it.
            let frame = frame_of(5 + next() % 3, 9, &[((1, 1), b"abc")]);
            let at = (next() as usize) % buf.len().saturating_sub(frame.len()).max(1);
            if at + frame.len() <= buf.len() && case % 5 != 0 {
                buf[at..at + frame.len()].copy_from_slice(&frame);
            }
            for _ in 0..(next() % 4) {
                let k = (next() as usize) % buf.len();
                buf[k] = next() as u8;
            }
            for from in [0usize, 1, 3, 7, 8, 13, 40] {
                if from < buf.len() {
                    let got = valid_frame_after(&buf, from, 5);
                    assert_eq!(
                        got,
                        valid_frame_after_naive(&buf, from, 5),
                        "case {case} from {from}"
                    );
                    found += usize::from(got.is_some());
                }
            }
        }
        assert!(found > 500, "the cases must find frames too ({found})");
        assert_eq!(first_nonzero(&[0; 20]), None);
        for k in 0..20 {
            let mut b = [0u8; 20];
            b[k] = 1;
            assert_eq!(first_nonzero(&b), Some(k));
        }
    }

    /// A checksum proves the bytes are the writer's; the layout is checked too, so a frame
    /// whose counts disagree with its records (a writer's bug) is never replayed as one.
    #[test]
    fn a_frame_whose_counts_disagree_with_its_records_is_bad() {
        let good = frame_of(5, 1, &[((1, 1), b"ab"), ((1, 1), b"cd")]);
        assert!(matches!(read_frame(&good, 0), Slot::Frame(_)));
        let head = FrameHead {
            first_lsn: 5,
            first_seq: 1,
            records: 2,
            events: 2,
            time_ms: 0,
        };
        let wrong = [
            FrameHead { records: 1, ..head },
            FrameHead { records: 3, ..head },
            FrameHead { events: 3, ..head },
            FrameHead {
                first_lsn: 0,
                ..head
            },
            FrameHead {
                first_seq: u64::MAX - 1,
                ..head
            },
        ];
        // Writes a header as a buggy writer would (`seal_frame` refuses some of these).
        let reseal = |frame: &mut Vec<u8>, h: &FrameHead| {
            frame[8..16].copy_from_slice(&h.first_lsn.to_le_bytes());
            frame[16..24].copy_from_slice(&h.first_seq.to_le_bytes());
            frame[24..28].copy_from_slice(&h.records.to_le_bytes());
            frame[28..32].copy_from_slice(&h.events.to_le_bytes());
            let crc = crc32c::crc32c(&frame[4..]);
            frame[0..4].copy_from_slice(&crc.to_le_bytes());
        };
        let mut same = good.clone();
        reseal(&mut same, &head);
        assert!(matches!(read_frame(&same, 0), Slot::Frame(_)));
        for h in wrong {
            let mut frame = good.clone();
            reseal(&mut frame, &h);
            assert!(matches!(read_frame(&frame, 0), Slot::Bad), "{h:?}");
        }
        // A record length running past the frame, the checksum made to match.
        let mut frame = good.clone();
        frame[FRAME_HEADER_LEN] = 9;
        reseal(&mut frame, &head);
        assert!(matches!(read_frame(&frame, 0), Slot::Bad));
    }

    #[test]
    fn header_round_trips() {
        let h = SegmentHeader {
            ledger_id: 42,
            first_lsn: 9,
            first_seq: 5,
            epoch: 0,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let e = SegmentHeader { epoch: 3, ..h };
        assert_eq!(SegmentHeader::decode(&e.encode()), Ok(e));
        let mut bad = h.encode();
        bad[30] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
    }
}
