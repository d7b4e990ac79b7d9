//! Snapshots: the whole state at one lsn as an rkyv archive.
//!
//! ```text
//! file snapshot-<lsn:020>.rkyv: magic "SLEDGSNP" | version u8 | 7 zero | payload_len u64
//!                              | crc32c(payload) u32 | 4 zero | rkyv payload
//! ```
//! A checkpoint never touches the live ledger: it rebuilds the state up to the durable lsn
//! from the previous snapshot and the log (the recovery code), in its own thread, so
//! writers are not stalled. Written to a temp file, fsync'd, renamed, folder fsync'd.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use rkyv::{Archive, Deserialize, Serialize};

use crate::catalog::CellId;
use crate::orders::{HeldLine, Lines, Order};
use crate::state::{AdjustmentKey, PaymentKey, State};
use crate::types::Status;

use super::error::{StorageError, StorageResult};
use super::recovery::{self, Mode};
use super::segment::list_segments;
use super::Shared;
use crate::storage::Storage;

const MAGIC: &[u8; 8] = b"SLEDGSNP";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 32;

#[derive(Archive, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    ledger_id: u64,
    lsn: u64,
    seq: u64,
    cells: Vec<SnapCell>,
    owners: Vec<(String, String)>,
    orders: Vec<SnapOrder>,
    adjustments: Vec<SnapAdjustment>,
    payments: Vec<SnapPayment>,
}

#[derive(Archive, Serialize, Deserialize)]
struct SnapCell {
    sku: String,
    warehouse: String,
    on_hand: u64,
    reserved: u64,
}

#[derive(Archive, Serialize, Deserialize)]
struct SnapOrder {
    order_id: String,
    /// (index into `cells`, qty)
    lines: Vec<(u32, u32)>,
    status: u8,
    created_at: u64,
    expires_at: u64,
    finished_at: u64,
    /// Unused since 2026-12-04 (no decision ever read it: a second payment is told apart by
    /// the order's status and the payment key table); written as `None`, ignored on restore.
    paid_by: Option<String>,
}

#[derive(Archive, Serialize, Deserialize)]
struct SnapAdjustment {
    key: String,
    cell: u32,
    delta: i64,
    is_set: bool,
    at: u64,
}

#[derive(Archive, Serialize, Deserialize)]
struct SnapPayment {
    payment_id: String,
    order_id: String,
    succeeded: bool,
    answer: u8,
    at: u64,
}

fn snapshot_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.rkyv")
}

fn list_snapshots(storage: &dyn Storage, dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    super::segment::list_numbered(storage, dir, "snapshot-", ".rkyv")
}

fn capture(state: &State, lsn: u64, seq: u64) -> Snapshot {
    let mut cells = Vec::with_capacity(state.catalog.cell_count());
    for (_, c) in state.catalog.cells() {
        let (on_hand, reserved) = c.stock.load();
        cells.push(SnapCell {
            sku: state.catalog.sku(c.sku).name.to_string(),
            warehouse: c.warehouse().to_string(),
            on_hand,
            reserved,
        });
    }
    let mut owners = Vec::new();
    for (_, s) in state.catalog.skus() {
        if let Some(o) = s.owner.lock().as_deref() {
            owners.push((s.name.to_string(), o.to_string()));
        }
    }
    let mut orders = Vec::new();
    for shard in state.orders.shards() {
        for (id, o) in shard.map.iter() {
            orders.push(SnapOrder {
                order_id: id.to_string(),
                lines: o.lines.iter().map(|l| (l.cell, l.qty)).collect(),
                status: o.status.to_u8(),
                created_at: o.created_at,
                expires_at: o.expires_at(),
                finished_at: o.finished_at,
                paid_by: None,
            });
        }
    }
    let mut adjustments = Vec::new();
    state.adjustments.for_each(|k, v| {
        adjustments.push(SnapAdjustment {
            key: k.to_string(),
            cell: v.cell,
            delta: v.delta,
            is_set: v.is_set,
            at: v.at,
        })
    });
    let mut payments = Vec::new();
    state.payments.for_each(|k, v| {
        payments.push(SnapPayment {
            payment_id: k.to_string(),
            order_id: v.order_id.to_string(),
            succeeded: v.succeeded,
            answer: v.answer,
            at: v.at,
        })
    });
    Snapshot {
        ledger_id: state.ledger_id,
        lsn,
        seq,
        cells,
        owners,
        orders,
        adjustments,
        payments,
    }
}

/// Rebuilds the state of a validated snapshot. The catalog and the reservation table are
/// independent tables, and opening a large ledger is bound by their inserts, so they are
/// filled on two threads. Cells go into an empty catalog in the snapshot's order, so each
/// cell's id is its index in the snapshot, which is what orders and keys refer to; a
/// snapshot where that does not hold (a cell listed twice) is refused as damaged.
fn restore(a: &ArchivedSnapshot) -> Option<State> {
    let state = State::new(a.ledger_id.to_native());
    state.catalog.reserve_cells(a.cells.len());
    state.orders.reserve(a.orders.len());
    let (cells, orders) = std::thread::scope(|scope| {
        let orders = scope.spawn(|| restore_orders(&state, a));
        let cells = restore_cells(&state, a);
        let orders = orders
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (cells, orders)
    });
    cells?;
    orders?;
    restore_keys(&state, a)?;
    state.settle_retention();
    Some(state)
}

/// Cells (ids `0..n` in the snapshot's order) and sku owners.
fn restore_cells(state: &State, a: &ArchivedSnapshot) -> Option<()> {
    for (index, c) in a.cells.iter().enumerate() {
        if let Some(ahead) = a.cells.get(index + 2) {
            let (sku, warehouse) = (ahead.sku.as_bytes(), ahead.warehouse.as_bytes());
            state.catalog.prefetch_cell(sku, warehouse);
        }
        let id = state
            .catalog
            .insert_cell(c.sku.as_str(), c.warehouse.as_str())?;
        let (on_hand, reserved) = (c.on_hand.to_native(), c.reserved.to_native());
        if id as usize != index || reserved > on_hand {
            return None;
        }
        state
            .catalog
            .cell(id)
            .stock
            .apply_delta(on_hand as i128, reserved as i128);
    }
    for pair in a.owners.iter() {
        let (sku, owner) = (&pair.0, &pair.1);
        let id = state.catalog.find_sku(sku.as_str())?;
        *state.catalog.sku(id).owner.lock() = Some(owner.as_str().into());
    }
    Some(())
}

/// The snapshot's cell index as a cell id (see [`restore`]).
fn cell_id(a: &ArchivedSnapshot, index: u32) -> Option<CellId> {
    ((index as usize) < a.cells.len()).then_some(index as CellId)
}

fn restore_orders(state: &State, a: &ArchivedSnapshot) -> Option<()> {
    for (i, o) in a.orders.iter().enumerate() {
        // Each id misses in its shard's index: start the load two orders ahead.
        if let Some(ahead) = a.orders.get(i + 2) {
            let orders = &state.orders;
            orders.prefetch(orders.hash(ahead.order_id.as_str()));
        }
        let mut lines = Lines::with_capacity(o.lines.len());
        for pair in o.lines.iter() {
            let (cell, qty) = (&pair.0, &pair.1);
            lines.push(HeldLine {
                cell: cell_id(a, cell.to_native())?,
                qty: qty.to_native(),
            });
        }
        lines.sort_unstable();
        let order = Order::new(
            lines,
            Status::from_u8(o.status)?,
            o.created_at.to_native(),
            o.expires_at.to_native(),
            o.finished_at.to_native(),
        )?;
        state
            .orders
            .shard(o.order_id.as_str())
            .insert_restored(o.order_id.as_str(), order);
    }
    Some(())
}

/// Adjustment and payment keys.
fn restore_keys(state: &State, a: &ArchivedSnapshot) -> Option<()> {
    for adj in a.adjustments.iter() {
        let at = adj.at.to_native();
        let cell = cell_id(a, adj.cell.to_native())?;
        state.adjustments.shard(adj.key.as_str()).insert_restored(
            adj.key.as_str(),
            at,
            AdjustmentKey {
                cell,
                delta: adj.delta.to_native(),
                is_set: adj.is_set,
                at,
            },
        );
    }
    for p in a.payments.iter() {
        let at = p.at.to_native();
        state.payments.shard(p.payment_id.as_str()).insert_restored(
            p.payment_id.as_str(),
            at,
            PaymentKey {
                order_id: p.order_id.as_str().into(),
                succeeded: p.succeeded,
                answer: p.answer,
                at,
            },
        );
    }
    Some(())
}

/// The archived snapshot, or where and why it is damaged: (offset, reason).
fn validate(bytes: &[u8]) -> std::result::Result<&ArchivedSnapshot, (usize, String)> {
    if bytes.len() < HEADER_LEN || &bytes[0..8] != MAGIC {
        return Err((0, "not a stockledger snapshot".into()));
    }
    if bytes[8] != VERSION {
        return Err((8, format!("unsupported snapshot version {}", bytes[8])));
    }
    let short = |_| (16, "short header".to_string());
    let len = u64::from_le_bytes(bytes[16..24].try_into().map_err(short)?) as usize;
    let crc = u32::from_le_bytes(bytes[24..28].try_into().map_err(short)?);
    let payload = bytes
        .get(HEADER_LEN..HEADER_LEN.saturating_add(len))
        .ok_or((16, "snapshot is shorter than its header says".to_string()))?;
    if crc32c::crc32c(payload) != crc {
        // The checksum covers the whole payload: the damage is somewhere in it.
        return Err((HEADER_LEN, "snapshot checksum mismatch".into()));
    }
    rkyv::access::<ArchivedSnapshot, rkyv::rancor::Error>(payload)
        .map_err(|e| (HEADER_LEN, e.to_string()))
}

/// A snapshot that did not validate or restore: its file, the offset of the damage, why.
#[derive(Debug, Clone)]
pub(crate) struct Damaged {
    pub(crate) path: PathBuf,
    pub(crate) offset: usize,
    pub(crate) reason: String,
}

/// The newest snapshot that validates: (state, next lsn, next seq). Older ones are tried
/// when a newer one is damaged; the log replay then tells whether what it needs is there.
pub(crate) fn load_newest(storage: &dyn Storage, dir: &Path) -> StorageResult<Option<Loaded>> {
    Ok(load_newest_noting(storage, dir)?.0)
}

/// A restored snapshot: (state, next lsn, next seq).
pub(crate) type Loaded = (State, u64, u64);

/// `load_newest`, also returning the newer snapshots passed over as damaged (newest first),
/// so that recovery can name them when the log they covered is gone.
pub(crate) fn load_newest_noting(
    storage: &dyn Storage,
    dir: &Path,
) -> StorageResult<(Option<Loaded>, Vec<Damaged>)> {
    let snaps = list_snapshots(storage, dir).map_err(|e| StorageError::io("list", dir, e))?;
    let mut damaged = Vec::new();
    for (_, path) in snaps.iter().rev() {
        let map = recovery::map(storage, path)?;
        // rkyv reads the archive in place only when it is aligned (a map is page-aligned;
        // a storage may hand back any buffer).
        let copy: rkyv::util::AlignedVec<16>;
        let bytes: &[u8] = if map.as_ptr().align_offset(16) == 0 {
            &map
        } else {
            copy = aligned(&map);
            &copy
        };
        match validate(bytes) {
            Ok(a) => match restore(a) {
                Some(state) => {
                    let next = (a.lsn.to_native() + 1, a.seq.to_native() + 1);
                    return Ok((Some((state, next.0, next.1)), damaged));
                }
                None => {
                    tracing::error!(file = %path.display(), "snapshot does not restore; trying an older one");
                    damaged.push(Damaged {
                        path: path.clone(),
                        offset: HEADER_LEN,
                        reason: "snapshot does not restore".into(),
                    });
                }
            },
            Err((offset, e)) => {
                tracing::error!(file = %path.display(), offset, error = %e, "invalid snapshot; trying an older one");
                damaged.push(Damaged {
                    path: path.clone(),
                    offset,
                    reason: e,
                });
            }
        }
    }
    Ok((None, damaged))
}

/// Writes a snapshot of the durable state and drops what it makes unnecessary.
pub(crate) fn checkpoint(shared: &Shared) -> StorageResult<u64> {
    let Some(dir) = shared.dir.as_deref() else {
        return Ok(shared.durable_seq.load(Ordering::Acquire));
    };
    let _one_at_a_time = shared.checkpoint_lock.lock();
    let upto = shared.durable_lsn.load(Ordering::Acquire);
    let storage = &*shared.storage;
    let (state, next_lsn, next_seq) = match load_newest(storage, dir)? {
        Some(s) => s,
        None => (State::new(shared.ledger_id), 1, 1),
    };
    // What this checkpoint starts from becomes the previous snapshot: it and the log after
    // it are kept, so a damaged new snapshot can fall back to it.
    let (base_lsn, base_seq) = (next_lsn - 1, next_seq - 1);
    let segments = list_segments(storage, dir).map_err(|e| StorageError::io("list", dir, e))?;
    let end = recovery::replay(
        storage,
        dir,
        segments,
        &state,
        next_lsn,
        next_seq,
        Mode::ReadOnly { upto },
    )?;
    let lsn = end.next_lsn - 1;
    let seq = end.next_seq - 1;
    write(storage, dir, &capture(&state, lsn, seq))?;
    prune_files(shared, dir, base_lsn, base_seq);
    Ok(seq)
}

/// Writes the snapshot next to the log, through the storage seam: a sized temp file,
/// written, fsync'd, renamed into place, and the folder fsync'd.
fn write(storage: &dyn Storage, dir: &Path, snap: &Snapshot) -> StorageResult<()> {
    let payload =
        rkyv::to_bytes::<rkyv::rancor::Error>(snap).map_err(|e| StorageError::Encode {
            what: e.to_string(),
        })?;
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(MAGIC);
    header[8] = VERSION;
    header[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[24..28].copy_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    let tmp = dir.join("snapshot.tmp");
    let io = |op: &'static str, e: std::io::Error| StorageError::io(op, &tmp, e);
    {
        // Sized (and that size synced) at creation, so syncing the data is enough.
        let len = (HEADER_LEN + payload.len()) as u64;
        let mut f = storage
            .create(&tmp, len, false)
            .map_err(|e| io("create snapshot", e))?;
        f.write_at(&header, 0)
            .map_err(|e| io("write snapshot", e))?;
        f.write_at(&payload, HEADER_LEN as u64)
            .map_err(|e| io("write snapshot", e))?;
        f.sync_data().map_err(|e| io("fsync snapshot", e))?;
    }
    let path = dir.join(snapshot_name(snap.lsn));
    storage
        .rename(&tmp, &path)
        .map_err(|e| io("rename snapshot", e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| StorageError::io("fsync the folder of snapshot", &path, e))?;
    tracing::info!(file = %path.display(), lsn = snap.lsn, seq = snap.seq, "snapshot written");
    Ok(())
}

/// Removes the snapshots older than the previous one (at `lsn`, `seq`; 0 when there was
/// none) and the segments that one covers (unless pinned for the outbox or retained for the
/// feed). Failures here lose nothing, so they are only logged.
fn prune_files(shared: &Shared, dir: &Path, lsn: u64, seq: u64) {
    let storage = &*shared.storage;
    if let Ok(snaps) = list_snapshots(storage, dir) {
        for (l, p) in snaps {
            if l < lsn {
                if let Err(e) = shared.storage.remove(&p) {
                    tracing::warn!(file = %p.display(), error = %e, "cannot remove an old snapshot");
                }
            }
        }
    }
    let keep_after = shared.keep_after_seq.load(Ordering::SeqCst);
    let retention =
        std::time::Duration::from_millis(shared.events_retention_ms.load(Ordering::SeqCst));
    // A segment's mtime is when its last event was written (it survives restarts).
    let retained = |path: &Path| {
        retention > std::time::Duration::ZERO
            && storage
                .modified(path)
                .map_or(true, |t| t.elapsed().map_or(true, |age| age < retention))
    };
    let mut segments = shared.segments.lock();
    // Segment i is covered when the next one starts at or below the snapshot's next lsn
    // and every event in it is at or below the pin and older than the retention.
    let mut remove = 0;
    while remove + 1 < segments.len() {
        let next = &segments[remove + 1];
        if next.first_lsn <= lsn + 1
            && next.first_seq <= seq.min(keep_after).saturating_add(1)
            && !retained(&segments[remove].path)
        {
            remove += 1;
        } else {
            break;
        }
    }
    for meta in segments.drain(..remove) {
        if let Err(e) = shared.storage.remove(&meta.path) {
            tracing::warn!(file = %meta.path.display(), error = %e, "cannot remove a covered segment");
        }
    }
}

/// The background thread that checkpoints when the writer says the log grew enough.
pub(crate) fn start_checkpointer(shared: Arc<Shared>) -> JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    *shared.checkpoint_kick.lock() = Some(tx);
    std::thread::Builder::new()
        .name("stockledger-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                if shared.closing.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = checkpoint(&shared) {
                    tracing::warn!(error = %e, "automatic checkpoint failed; the log keeps everything");
                }
            }
        })
        .unwrap_or_else(|e| panic!("cannot start the checkpoint thread: {e}"))
}

fn aligned(bytes: &[u8]) -> rkyv::util::AlignedVec<16> {
    let mut copy = rkyv::util::AlignedVec::<16>::new();
    copy.extend_from_slice(bytes);
    copy
}

/// For fuzzing only (`wal::fuzz_snapshot`): `bytes` as a whole snapshot file (header,
/// checksum, archive), then as an archive alone (past the checksum, so the archive
/// validation and `restore` see arbitrary bytes). Aligned as a mapped file would be.
pub(crate) fn fuzz(bytes: &[u8]) -> bool {
    let file = aligned(bytes);
    let whole = validate(&file).ok().and_then(restore).is_some();
    let archive = rkyv::access::<ArchivedSnapshot, rkyv::rancor::Error>(&file)
        .ok()
        .and_then(restore)
        .is_some();
    whole || archive
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::ops::Deref;

    use super::*;
    use crate::storage::{FsStorage, ReadMap, StorageFile};
    use crate::{Ledger, Line, Options, Source};

    /// Hands back every file one byte past an aligned buffer: a storage need not map.
    #[derive(Debug)]
    struct Unaligned;

    struct Shifted(Vec<u8>);

    impl Deref for Shifted {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            &self.0[1..]
        }
    }

    impl Storage for Unaligned {
        fn create(&self, path: &Path, len: u64, zero: bool) -> io::Result<Box<dyn StorageFile>> {
            FsStorage.create(path, len, zero)
        }
        fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
            FsStorage.open(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            FsStorage.rename(from, to)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            FsStorage.sync_dir(dir)
        }
        fn map_read(&self, path: &Path) -> io::Result<ReadMap> {
            let mut bytes = vec![0u8];
            bytes.extend_from_slice(&std::fs::read(path)?);
            Ok(Box::new(Shifted(bytes)))
        }
    }

    #[test]
    fn a_snapshot_read_into_an_unaligned_buffer_still_restores() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), Options::default()).unwrap();
        l.set_stock("A", "w", 10, Source::Warehouse).unwrap();
        l.reserve("o1", &[Line::new("A", "w", 3)], 900).unwrap();
        assert_eq!(l.checkpoint().unwrap(), 2);
        l.close().unwrap();
        let shifted = Unaligned.map_read(&list_snapshots(&FsStorage, dir.path()).unwrap()[0].1);
        assert_ne!(shifted.unwrap().as_ptr().align_offset(16), 0);
        let (loaded, damaged) = load_newest_noting(&Unaligned, dir.path()).unwrap();
        assert!(damaged.is_empty());
        let (state, next_lsn, next_seq) = loaded.expect("the snapshot restores");
        assert_eq!((next_lsn, next_seq), (3, 3));
        state.check_invariants().unwrap();
    }

    /// Restore fills the catalog and the reservation table on two threads and takes a
    /// cell's snapshot index for its id: a snapshot that lists a cell twice (so the ids
    /// would not line up) is refused, and one whose orders name a cell beyond the list too.
    #[test]
    fn restore_refuses_a_cell_listed_twice_or_a_line_beyond_the_cells() {
        let state = State::new(1);
        for (sku, on_hand) in [("A", 10), ("B", 5)] {
            let cell = state.catalog.insert_cell(sku, "w").expect("cell");
            state.catalog.cell(cell).stock.apply_delta(on_hand, 0);
        }
        let restored = |snap: &Snapshot| {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(snap).expect("archive");
            let a = rkyv::access::<ArchivedSnapshot, rkyv::rancor::Error>(&bytes).expect("valid");
            restore(a).map(|s| s.catalog.cell_count())
        };
        let mut snap = capture(&state, 1, 1);
        assert_eq!(restored(&snap), Some(2));
        snap.orders.push(SnapOrder {
            order_id: "o1".into(),
            lines: vec![(1, 2)],
            status: Status::Reserved.to_u8(),
            created_at: 1,
            expires_at: 2,
            finished_at: 0,
            paid_by: None,
        });
        snap.cells[1].reserved = 2;
        assert_eq!(restored(&snap), Some(2));
        snap.orders[0].lines = vec![(2, 2)];
        assert_eq!(restored(&snap), None, "a line beyond the cells");
        snap.orders.clear();
        snap.cells[1].reserved = 0;
        let again = SnapCell {
            sku: "A".into(),
            warehouse: "w".into(),
            on_hand: 10,
            reserved: 0,
        };
        snap.cells.push(again);
        assert_eq!(restored(&snap), None, "a cell listed twice");
    }
}
