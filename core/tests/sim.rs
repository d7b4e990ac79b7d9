//! Deterministic simulator (in the spirit of TigerBeetle's VOPR): one u64 seed drives a whole
//! run of random operations, storage faults, crashes and restarts against one ledger folder,
//! and after every step the ledger is checked against a plain sequential model.
//!
//! - Operations: set/adjust stock (valid, invalid, conflicting, replayed), multi-line reserves
//!   (valid, short, duplicate lines, invalid fields, conflicting, replayed), commit, release,
//!   expiry with an injected clock (small steps, jumps of days, jumps backwards), checkpoints,
//!   `wait_durable`.
//! - Storage (`SimStorage`, through the `Storage` seam): remembers every write not yet
//!   covered by an fsync; a crash drops the ledger, then each such write is kept, lost or torn
//!   (a prefix kept) at random, as a power cut would leave it. Faults: EIO and ENOSPC on a
//!   write, a short write, a failed fsync, a crash in the middle of an operation (every
//!   write and sync from that moment is lost); before one restart in four, an extra open
//!   whose k-th read (a map, a whole-file read, a listing, a size, an mtime) fails: it must
//!   fail naming the file (or folder) and change nothing in the folder, or open and close.
//! - Checks: the figures of every cell and every reservation equal the model's; refused
//!   operations change nothing; `check_invariants`; after a restart, every operation
//!   acknowledged in `sync` mode is there (in `async` mode: the state is the model's after some
//!   prefix of the operations, never before the last `wait_durable`); events are gap-free and
//!   no acknowledged event is lost.
//!
//! - A ledger stuck retrying a roll on a broken device (it retries until closed, see
//!   docs/reliability.md) is closed by a watchdog, as an operator would, then restarted.
//!
//! `STOCKLEDGER_SIM_SEED=<n>` reruns one seed (`STOCKLEDGER_SIM_TRACE=<lines>` of trace on
//! failure); `STOCKLEDGER_SIM_SEEDS=<count>` sets how many seeds the run covers (default 300,
//! about 40 s in release on an idle 2-core machine; the long run is 10000), from
//! `STOCKLEDGER_SIM_BASE` (default 0); `STOCKLEDGER_SIM_STEPS` the steps per seed (default
//! 400). A failing seed is printed.
//!
//! Determinism: the operations, the fault schedule and the crash damage come from the seed
//! alone. The ledger's own threads (log writer, spare segment) are not scheduled by the
//! simulator, so in `async` mode the point at which a crash lands may differ between reruns.

mod common;
#[path = "support/model.rs"]
mod model;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use model::{diff, err, real, MOrder, Model, Res, DAY, MAX_ON_HAND};
use parking_lot::Mutex;
use stockledger::wal::{FsStorage, Storage, StorageFile};
use stockledger::{
    Clock, Command, Durability, Error, ErrorCode, Ledger, ManualClock, Options, Status,
};

const SKUS: [&str; 3] = ["A", "B", "C"];
const WHS: [&str; 2] = ["w1", "w2"];
const ORDERS: usize = 10;

// ---------------------------------------------------------------------------------------
// Randomness: SplitMix64, so a seed means the same run whatever crate versions are locked.

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

// ---------------------------------------------------------------------------------------
// Storage that can lose what was not fsync'd.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    WriteEio,
    NoSpace,
    ShortWrite,
    SyncEio,
    /// The process dies here: this and every later write or sync is lost.
    Crash,
}

#[derive(Debug, Default)]
struct Disk {
    /// Writes since the last fsync of their file: (offset, bytes before the write).
    pending: HashMap<PathBuf, Vec<(u64, Vec<u8>)>>,
    /// (kind, write/sync operations left before it fires).
    armed: Option<(FaultKind, u64)>,
    /// A fault fired: the device stays broken (EIO) until the restart.
    broken: bool,
    /// The process is dead: nothing reaches the disk any more.
    dead: bool,
    fired: Vec<FaultKind>,
    /// The ledger tries to start a segment (a header write at offset 0, a create) on a
    /// broken or dead device: it retries that until it is closed, so the caller waits for
    /// good. The watchdog then closes it, as an operator (or a request timeout and a
    /// restart) would.
    stuck: bool,
    /// The watchdog of this ledger is no longer wanted.
    stop: bool,
    /// Reads (maps, whole-file reads, listings, sizes, mtimes) left before one fails.
    read_fault: Option<u64>,
    /// The path whose read failed.
    read_fault_fired: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
struct SimStorage(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    disk: Mutex<Disk>,
    /// Notified when the ledger gets stuck (see `Disk::stuck`).
    stuck: parking_lot::Condvar,
}

struct SimFile {
    path: PathBuf,
    inner: Box<dyn StorageFile>,
    disk: Arc<Shared>,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("sim: {what}"))
}

impl Disk {
    /// The fault this operation trips, if any (`is_sync`: an fsync, else a write).
    fn trip(&mut self, is_sync: bool) -> Option<FaultKind> {
        let (kind, left) = self.armed?;
        let applies = match kind {
            FaultKind::SyncEio => is_sync,
            FaultKind::Crash => true,
            _ => !is_sync,
        };
        if !applies {
            return None;
        }
        if left > 0 {
            self.armed = Some((kind, left - 1));
            return None;
        }
        self.armed = None;
        self.fired.push(kind);
        if kind == FaultKind::Crash {
            self.dead = true;
        } else {
            self.broken = true;
        }
        Some(kind)
    }
}

impl StorageFile for SimFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut disk = self.disk.disk.lock();
        // A segment header that cannot be written is a roll that will retry for good; a
        // checkpoint's snapshot (written through the seam too) just fails.
        if (disk.dead || disk.broken) && offset == 0 && !is_snapshot(&self.path) {
            disk.stuck = true;
            self.disk.stuck.notify_all();
        }
        if disk.dead {
            return Err(eio("process is dead"));
        }
        if disk.broken {
            return Err(eio("device broken"));
        }
        let fault = disk.trip(false);
        let n = match fault {
            None => buf.len(),
            Some(FaultKind::ShortWrite) => buf.len() / 2,
            Some(FaultKind::NoSpace) => return Err(io::Error::from_raw_os_error(28)),
            Some(_) => return Err(eio("injected write error")),
        };
        // What the bytes were, so a crash can undo the write.
        let mut before = vec![0u8; n];
        let file = std::fs::File::open(&self.path)?;
        let mut read = 0;
        while read < n {
            match file.read_at(&mut before[read..], offset + read as u64)? {
                0 => break, // past the end: a crash leaves zeros (the file was sized)
                k => read += k,
            }
        }
        self.inner.write_at(&buf[..n], offset)?;
        disk.pending
            .entry(self.path.clone())
            .or_default()
            .push((offset, before));
        if fault.is_some() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "sim: short write"));
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut disk = self.disk.disk.lock();
        if disk.dead || disk.broken {
            return Err(eio("device broken"));
        }
        if disk.trip(true).is_some() {
            // A failed fsync: the data may or may not be on disk; the crash decides.
            return Err(eio("injected fsync error"));
        }
        self.inner.sync_data()?;
        disk.pending.remove(&self.path);
        Ok(())
    }
}

fn is_snapshot(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("snapshot"))
}

impl Storage for SimStorage {
    fn create(&self, path: &Path, len: u64, zero_fill: bool) -> io::Result<Box<dyn StorageFile>> {
        let mut disk = self.0.disk.lock();
        if disk.dead {
            if !is_snapshot(path) {
                disk.stuck = true;
                self.0.stuck.notify_all();
            }
            return Err(eio("process is dead"));
        }
        drop(disk);
        let inner = FsStorage.create(path, len, zero_fill)?;
        self.0.disk.lock().pending.remove(path);
        Ok(Box::new(SimFile {
            path: path.to_path_buf(),
            inner,
            disk: self.0.clone(),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        if self.0.disk.lock().dead {
            return Err(eio("process is dead"));
        }
        Ok(Box::new(SimFile {
            path: path.to_path_buf(),
            inner: FsStorage.open(path)?,
            disk: self.0.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.0.disk.lock();
        if disk.dead {
            return Err(eio("process is dead"));
        }
        FsStorage.rename(from, to)?;
        if let Some(p) = disk.pending.remove(from) {
            disk.pending.insert(to.to_path_buf(), p);
        }
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.0.disk.lock().dead {
            return Err(eio("process is dead"));
        }
        FsStorage.sync_dir(dir)
    }
    fn map_read(&self, path: &Path) -> io::Result<stockledger::wal::ReadMap> {
        self.read_trips(path)?;
        FsStorage.map_read(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read_trips(path)?;
        FsStorage.read(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.read_trips(dir)?;
        FsStorage.list(dir)
    }
    fn len_bytes(&self, path: &Path) -> io::Result<u64> {
        self.read_trips(path)?;
        FsStorage.len_bytes(path)
    }
    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
        self.read_trips(path)?;
        FsStorage.modified(path)
    }
}

impl SimStorage {
    /// Counts a read down to its armed fault, which fails it once.
    fn read_trips(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.0.disk.lock();
        match disk.read_fault {
            Some(0) => {
                disk.read_fault = None;
                disk.read_fault_fired = Some(path.to_path_buf());
                Err(eio("injected read error"))
            }
            Some(n) => {
                disk.read_fault = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The power cut: every write not covered by an fsync is kept, lost, or torn (a prefix
    /// of it kept). Undone newest first so overlapping writes restore the right bytes.
    fn crash(&self, rng: &mut Rng, log: &mut String) {
        let mut disk = self.0.disk.lock();
        disk.dead = true;
        let mut pending: Vec<_> = disk.pending.drain().collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, writes) in pending {
            for (offset, before) in writes.into_iter().rev() {
                let keep = match rng.below(3) {
                    0 => before.len(),
                    1 => 0,
                    _ => rng.below(before.len() as u64 + 1) as usize,
                };
                let _ = writeln!(
                    log,
                    "    crash: {} @{offset}+{}: keep {keep}",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    before.len()
                );
                if keep < before.len() {
                    // The file may be gone (a spare segment unlinked): nothing to undo.
                    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                        f.write_all_at(&before[keep..], offset + keep as u64)
                            .expect("undo a lost write");
                    }
                }
            }
        }
    }
}

/// Every file of the folder but the spare segment (which a ledger may start filling at once)
/// and the lock: (name, bytes).
fn folder_digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter_map(|p| {
                    let name = p.file_name()?.to_string_lossy().into_owned();
                    if name == "LOCK" || name == "wal-spare.tmp" {
                        return None;
                    }
                    Some((name, std::fs::read(&p).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------
// The model (`support/model.rs`, shared with `model.rs` and `ops_model/`): the operations
// of the simulator.

#[derive(Debug, Clone)]
enum Op {
    Set(String, String, u64),
    Adjust(String, String, i64, String),
    Reserve(String, Vec<(String, String, u64)>, u64),
    Commit(String),
    Release(String),
    ExpireDue,
    Checkpoint,
    WaitDurable,
    /// One `execute` batch of `count` set_stock commands on one cell, the last setting
    /// `final`: a lot of log in one call, so segments roll (1 MiB at the least).
    Bulk(String, String, u64, u64),
}

/// The on_hand the k-th (0-based) command of a bulk batch sets.
fn bulk_value(count: u64, last: u64, k: u64) -> u64 {
    last + (count - 1 - k)
}

impl Op {
    fn writes(&self) -> bool {
        !matches!(self, Op::WaitDurable)
    }
}

impl Model {
    /// An expiry pass writes one record per order: a crash or a failed write may keep any
    /// of them (each one whole). The states with a proper, non-empty subset of `expired`
    /// expired, and how many records each has.
    fn partial_expiries(&self, expired: &[String], now: u64) -> Vec<(Model, u64)> {
        let n = expired.len().min(10);
        (1u32..(1 << n) - 1)
            .map(|mask| {
                let ids: Vec<String> = (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| expired[i].clone())
                    .collect();
                let mut m = self.clone();
                m.now = now;
                m.expire(&ids);
                (m, ids.len() as u64)
            })
            .collect()
    }
}

/// The model's answer to `op` at `now`.
fn apply(model: &mut Model, op: &Op, now: u64) -> Res {
    model.now = now;
    match op {
        Op::Set(s, w, n) => model.set(s, w, *n),
        Op::Adjust(s, w, d, key) => model.adjust(s, w, *d, key),
        Op::Reserve(id, lines, ttl) => model.reserve(id, lines, *ttl),
        Op::Commit(id) => model.commit(id),
        Op::Release(id) => model.release(id),
        Op::ExpireDue => model.expire_due(),
        Op::Checkpoint | Op::WaitDurable => Res::Ok(String::new()),
        Op::Bulk(s, w, count, last) => {
            let k = (s.clone(), w.clone());
            let reserved = model.level(&k).1;
            assert!(*last >= reserved, "the generator keeps bulk values valid");
            model.cells.insert(k, (*last, reserved));
            Res::Ok(format!("{count} ok"))
        }
    }
}

/// How many events an operation that answered `res` writes (`before`: the model before it).
/// Checked against the ledger after every operation in `sync` mode.
fn events_of(op: &Op, before: &Model, res: &Res) -> u64 {
    let Res::Ok(text) = res else { return 0 };
    let active = |id: &String| {
        before
            .orders
            .get(id)
            .is_some_and(|o| o.status == Status::Reserved)
    };
    match op {
        Op::Set(..) => 1,
        Op::Adjust(_, _, _, key) => u64::from(!before.adjustments.contains_key(key)),
        Op::Reserve(..) => u64::from(text.starts_with("created")),
        Op::Commit(id) | Op::Release(id) => u64::from(active(id)),
        Op::ExpireDue => text.matches('"').count() as u64 / 2,
        Op::Checkpoint | Op::WaitDurable => 0,
        Op::Bulk(_, _, count, _) => *count,
    }
}

fn run(ledger: &Ledger, op: &Op) -> Res {
    match op {
        Op::Set(s, w, n) => real::set(ledger, s, w, *n),
        Op::Adjust(s, w, d, a) => real::adjust(ledger, s, w, *d, a, Some("sim")),
        Op::Reserve(id, lines, ttl) => real::reserve(ledger, id, lines, *ttl),
        Op::Commit(id) => real::commit(ledger, id),
        Op::Release(id) => real::release(ledger, id),
        Op::ExpireDue => real::expire_due(ledger),
        Op::Checkpoint => real::checkpoint(ledger),
        Op::WaitDurable => match ledger.wait_durable() {
            Ok(()) => Res::Ok(String::new()),
            Err(e) => err(e),
        },
        Op::Bulk(s, w, count, last) => {
            let cmds: Vec<Command> = (0..*count)
                .map(|k| Command::SetStock {
                    sku: s.clone(),
                    warehouse: w.clone(),
                    on_hand: bulk_value(*count, *last, k),
                })
                .collect();
            match ledger.execute(&cmds) {
                Ok(results) => {
                    let ok = results.iter().filter(|r| r.is_ok()).count();
                    match results.into_iter().find_map(|r| r.err()) {
                        Some(e) => err(e),
                        None => Res::Ok(format!("{ok} ok")),
                    }
                }
                Err(e) => err(e),
            }
        }
    }
}

/// Differences between the ledger and the model (empty: they agree). The clock may step
/// back, so an order the model pruned may still be there.
fn check(ledger: &Ledger, model: &Model, ids: &[String]) -> Vec<String> {
    diff(ledger, model, &SKUS, &WHS, ids, true)
}

// ---------------------------------------------------------------------------------------
// The run.

struct Sim {
    rng: Rng,
    dir: PathBuf,
    clock: Arc<ManualClock>,
    storage: SimStorage,
    ledger: Option<Arc<Ledger>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
    durability: Durability,
    model: Model,
    /// Async mode: the model after each operation since the last durable point (the
    /// first entry is the durable point itself), with the ledger's last seq then. A crash
    /// may leave any of them; the recovered last seq tells which.
    history: Vec<(Model, u64)>,
    /// An operation that failed with `ledger_unavailable`: the model with it applied (it
    /// may or may not have reached the log), and the last seq before it.
    uncertain: Vec<(Model, u64)>,
    /// The seq of the last event of an acknowledged operation in sync mode.
    acked_seq: u64,
    /// The seq of the last event written (durable or not), counted by the model.
    seq: u64,
    ids: Vec<String>,
    next_adjustment: u64,
    trace: String,
    stats: Stats,
    /// Its own stream, so the operations of a seed do not change with the bit flips.
    flip_rng: Rng,
    /// Likewise for the read faults of an extra open before a restart.
    read_fault_rng: Rng,
}

/// A bit flipped in cold data: the file, the offset, the byte before and after.
struct Flip {
    path: PathBuf,
    offset: u64,
    was: u8,
    now: u8,
}

/// The valid frames of a segment's bytes (header 64 bytes, frame = 48-byte header +
/// records, its CRC-32C over all but the CRC field); the first zero length or bad checksum
/// ends them (a torn write after the last good frame is not a frame).
fn frame_starts(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = 64;
    while at + 48 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        if len == 0 || at + 48 + len > bytes.len() {
            break;
        }
        let crc = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        if crc != crc32c::crc32c(&bytes[at + 4..at + 48 + len]) {
            break;
        }
        v.push((at, 48 + len));
        at += 48 + len;
    }
    v
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    ops: u64,
    refused: u64,
    crashes: u64,
    faults: u64,
    restarts: u64,
    uncertain_kept: u64,
    /// Bit flips in cold data (synced frames of a segment, a snapshot) before a restart:
    /// refused with the file and offset named, or opened to an allowed state.
    flips_refused: u64,
    flips_opened: u64,
    /// Ledgers stuck retrying a roll on a broken device, closed by the watchdog.
    stuck: u64,
    /// Checkpoints failed by a storage fault (their snapshot goes through the seam).
    failed_checkpoints: u64,
    /// The most log segments seen in the folder at a restart (rolls happened if > 1).
    max_segments: u64,
    /// Opens with a read fault armed: refused (naming the file, the folder unchanged), or
    /// opened (the fault not reached, or the read not needed).
    read_faults_refused: u64,
    read_faults_opened: u64,
}

impl Sim {
    fn new(seed: u64, dir: &Path) -> Sim {
        Sim {
            rng: Rng(seed),
            flip_rng: Rng(seed ^ 0xF11B_B175_0000_0000),
            read_fault_rng: Rng(seed ^ 0x5EAD_FA17_0000_0000),
            dir: dir.to_path_buf(),
            clock: Arc::new(ManualClock::new(common::T0)),
            storage: SimStorage::default(),
            ledger: None,
            watchdog: None,
            durability: Durability::Sync,
            model: Model::default(),
            history: Vec::new(),
            uncertain: Vec::new(),
            acked_seq: 0,
            seq: 0,
            ids: (0..ORDERS).map(|i| format!("o{i}")).collect(),
            next_adjustment: 0,
            trace: String::new(),
            stats: Stats::default(),
        }
    }

    fn ledger(&self) -> &Ledger {
        self.ledger.as_deref().expect("the ledger is open")
    }

    fn open(&mut self) -> Result<(), String> {
        self.storage = SimStorage::default();
        self.durability = if self.rng.chance(1, 4) {
            Durability::Async
        } else {
            Durability::Sync
        };
        let options = Options {
            durability: self.durability,
            clock: self.clock.clone(),
            // Small segments so the log rolls often; automatic checkpoints now and then.
            segment_bytes: 64 << 10,
            checkpoint_every_bytes: if self.rng.chance(1, 2) { 256 << 10 } else { 0 },
            storage: Some(Arc::new(self.storage.clone())),
            ..Options::default()
        };
        let _ = writeln!(self.trace, "  open {:?}", self.durability);
        let ledger = Ledger::open(&self.dir, options).map_err(|e| format!("open: {e}"))?;
        let ledger = Arc::new(ledger);
        let (l, shared) = (ledger.clone(), self.storage.0.clone());
        self.watchdog = Some(std::thread::spawn(move || {
            let mut disk = shared.disk.lock();
            while !disk.stuck && !disk.stop {
                shared.stuck.wait(&mut disk);
            }
            if !disk.stop {
                drop(disk);
                let _ = l.close();
            }
        }));
        self.ledger = Some(ledger);
        Ok(())
    }

    fn pick<'a>(&mut self, from: &'a [&'a str]) -> &'a str {
        from[self.rng.below(from.len() as u64) as usize]
    }

    fn cell(&mut self) -> (String, String) {
        let s = if self.rng.chance(1, 40) {
            "bad sku".to_string()
        } else {
            self.pick(&SKUS).to_string()
        };
        let w = if self.rng.chance(1, 60) {
            String::new()
        } else {
            self.pick(&WHS).to_string()
        };
        (s, w)
    }

    fn order_id(&mut self) -> String {
        self.ids[self.rng.below(self.ids.len() as u64) as usize].clone()
    }

    fn gen_op(&mut self) -> Op {
        match self.rng.below(100) {
            0..=11 => {
                let (s, w) = self.cell();
                let n = match self.rng.below(20) {
                    0 => MAX_ON_HAND + 1,
                    1 => 0,
                    _ => self.rng.below(15),
                };
                Op::Set(s, w, n)
            }
            12..=21 => {
                let (s, w) = self.cell();
                let d = self.rng.range(0, 13) as i64 - 6;
                // Mostly fresh ids; a replay or conflict reuses one still retained.
                let reuse: Vec<String> = self.model.adjustments.keys().cloned().collect();
                let key = if !reuse.is_empty() && self.rng.chance(1, 3) {
                    let mut reuse = reuse;
                    reuse.sort();
                    reuse[self.rng.below(reuse.len() as u64) as usize].clone()
                } else {
                    self.next_adjustment += 1;
                    format!("adj-{}", self.next_adjustment)
                };
                Op::Adjust(s, w, d, key)
            }
            22..=51 => {
                let id = self.order_id();
                // A replay of the existing lines now and then (idempotency).
                if let Some(o) = self.model.orders.get(&id) {
                    if self.rng.chance(1, 4) {
                        let mut lines = o.lines.clone();
                        lines.reverse();
                        return Op::Reserve(id, lines, 60);
                    }
                }
                let n = self.rng.below(4);
                let mut lines = Vec::new();
                for _ in 0..n {
                    let (s, w) = self.cell();
                    let q = match self.rng.below(30) {
                        0 => 0,
                        1 => 1_000_001,
                        _ => self.rng.range(1, 5),
                    };
                    lines.push((s, w, q));
                }
                let ttl = match self.rng.below(30) {
                    0 => 0,
                    1 => 604_801,
                    2 => 604_800,
                    _ => self.rng.range(1, 120),
                };
                Op::Reserve(id, lines, ttl)
            }
            52..=63 => Op::Commit(self.order_id()),
            64..=73 => Op::Release(self.order_id()),
            74..=83 => Op::ExpireDue,
            84..=86 => Op::Checkpoint,
            87..=89 => {
                let s = self.pick(&SKUS).to_string();
                let w = self.pick(&WHS).to_string();
                let reserved = self.model.level(&(s.clone(), w.clone())).1;
                let count = self.rng.range(1, 4000);
                Op::Bulk(s, w, count, reserved + self.rng.below(10))
            }
            _ => Op::WaitDurable,
        }
    }

    /// The clock: small steps mostly, now and then a jump of a day or more, or backwards.
    fn move_clock(&mut self) {
        let now = self.clock.now_ms();
        let to = match self.rng.below(100) {
            0..=59 => now,
            60..=92 => now + self.rng.below(30_000),
            93..=96 => now + DAY + self.rng.below(3 * DAY),
            _ => now.saturating_sub(self.rng.below(120_000)),
        };
        if to != now {
            let _ = writeln!(self.trace, "  clock {now} -> {to}");
            self.clock.set(to);
        }
    }

    fn check_live(&self, what: &str) -> Result<(), String> {
        let d = check(self.ledger(), &self.model, &self.ids);
        if d.is_empty() {
            return Ok(());
        }
        // After a failure the live ledger may show the uncertain operation either way.
        for (u, _) in &self.uncertain {
            if check(self.ledger(), u, &self.ids).is_empty() {
                return Ok(());
            }
        }
        Err(format!(
            "{what}: ledger and model differ:\n  {}",
            d.join("\n  ")
        ))
    }

    fn step(&mut self) -> Result<(), String> {
        self.move_clock();
        match self.rng.below(100) {
            // A crash between operations.
            0..=2 => return self.crash_and_restart("crash"),
            // A clean restart.
            3 => {
                let r = self.ledger().close();
                let _ = writeln!(self.trace, "  close -> {r:?}");
                if r.is_ok() {
                    self.history = vec![(self.model.clone(), self.seq)];
                }
                return self.crash_and_restart("restart after close");
            }
            // Arm a fault: it fires after a few writes/syncs, maybe in the middle of an
            // operation.
            4..=7 => {
                let kind = match self.rng.below(5) {
                    0 => FaultKind::WriteEio,
                    1 => FaultKind::NoSpace,
                    2 => FaultKind::ShortWrite,
                    3 => FaultKind::SyncEio,
                    _ => FaultKind::Crash,
                };
                let after = self.rng.below(6);
                let _ = writeln!(self.trace, "  arm {kind:?} after {after}");
                self.storage.0.disk.lock().armed = Some((kind, after));
            }
            _ => {}
        }
        let op = self.gen_op();
        let now = self.clock.now_ms();
        self.sync_retained();
        let before = self.model.clone();
        let seq_before = self.seq;
        let want = apply(&mut self.model, &op, now);
        let got = run(self.ledger(), &op);
        self.stats.ops += 1;
        let _ = writeln!(self.trace, "  {op:?} -> {got:?}");
        let fired = !self.storage.0.disk.lock().fired.is_empty();
        match &got {
            Res::Err(code)
                if matches!(op, Op::Checkpoint)
                    && code == ErrorCode::LedgerUnavailable.as_str() =>
            {
                // A checkpoint writes its snapshot through the seam: a fault there fails the
                // checkpoint alone. It changes no state and poisons nothing.
                if !fired {
                    return Err("Checkpoint: ledger_unavailable without a fault".into());
                }
                self.stats.failed_checkpoints += 1;
                self.model = before;
                self.check_live("after a failed checkpoint")?;
                return self.crash_and_restart("crash after a failed checkpoint");
            }
            Res::Err(code) if code == ErrorCode::LedgerUnavailable.as_str() => {
                // Refused because the log failed: not acknowledged. It may have reached the
                // log (the failure was the fsync, or the record was written before) or not.
                self.stats.refused += 1;
                if !fired && self.ledger().unavailable_reason().is_none() {
                    return Err(format!("{op:?}: ledger_unavailable without a fault"));
                }
                let n = events_of(&op, &before, &want);
                let applied = std::mem::replace(&mut self.model, before);
                if op.writes() && matches!(want, Res::Ok(_)) {
                    self.uncertain = self.partials(&op, &want, now, seq_before);
                    self.uncertain.push((applied, seq_before + n));
                }
                let _ = writeln!(
                    self.trace,
                    "    model wanted {want:?}; seq before {seq_before}, +{n} if it stays"
                );
                // Every later write is refused too: check it changes nothing, then restart.
                let probe = Op::Set("A".into(), "w1".into(), 7);
                if run(self.ledger(), &probe) != Res::Err("ledger_unavailable".into()) {
                    return Err("a poisoned ledger accepted a write".into());
                }
                self.check_live("after ledger_unavailable")?;
                return self.crash_and_restart("crash after a fault");
            }
            _ if got != want => {
                return Err(format!("{op:?}: ledger answered {got:?}, model {want:?}"));
            }
            _ => {}
        }
        if fired {
            // A fault fired yet the operation was acknowledged: fine only if it hit
            // something retried (a roll) — the next write shows it; restart to be safe.
            self.stats.faults += 1;
        }
        self.seq += events_of(&op, &before, &got);
        let seq = self.seq;
        match self.durability {
            Durability::Sync => {
                if self.ledger().last_seq() != seq {
                    return Err(format!(
                        "{op:?}: last seq {} after it, the model counts {seq}",
                        self.ledger().last_seq()
                    ));
                }
                self.acked_seq = seq;
                self.history = vec![(self.model.clone(), seq)];
            }
            _ => {
                if matches!(op, Op::WaitDurable) && matches!(got, Res::Ok(_)) {
                    self.acked_seq = seq;
                    self.history = vec![(self.model.clone(), seq)];
                } else {
                    // Not durable yet: a crash may cut an expiry pass anywhere.
                    let partials = self.partials(&op, &got, now, seq_before);
                    self.history.extend(partials);
                    self.history.push((self.model.clone(), seq));
                }
            }
        }
        self.check_live(&format!("after {op:?}"))?;
        if fired {
            return self.crash_and_restart("crash after a fault");
        }
        Ok(())
    }

    /// The states an expiry pass cut short may leave (empty for other operations), from
    /// the model before or after the pass (the orders it lists are put back first).
    fn partials(&self, op: &Op, res: &Res, now: u64, seq_before: u64) -> Vec<(Model, u64)> {
        if let (Op::Bulk(s, w, count, last), Res::Ok(_)) = (op, res) {
            // Cut after the k-th command (if the batch is not one record).
            let k = (s.clone(), w.clone());
            return (1..*count)
                .map(|done| {
                    let mut m = self.model.clone();
                    let reserved = m.level(&k).1;
                    m.cells
                        .insert(k.clone(), (bulk_value(*count, *last, done - 1), reserved));
                    (m, seq_before + done)
                })
                .collect();
        }
        let (Op::ExpireDue, Res::Ok(text)) = (op, res) else {
            return Vec::new();
        };
        let expired: Vec<String> = text
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        self.base_before_expiry(&expired)
            .partial_expiries(&expired, now)
            .into_iter()
            .map(|(m, k)| (m, seq_before + k))
            .collect()
    }

    /// The model with the given (now expired) orders put back to reserved, stock held.
    fn base_before_expiry(&self, expired: &[String]) -> Model {
        let mut m = self.model.clone();
        for id in expired {
            if let Some(o) = m.orders.get_mut(id) {
                if o.status == Status::Expired {
                    o.status = Status::Reserved;
                    o.finished_at = 0;
                    for (s, w, q) in o.lines.clone() {
                        if let Some(c) = m.cells.get_mut(&(s, w)) {
                            c.1 += q;
                        }
                    }
                }
            }
        }
        m
    }

    /// Ends the watchdog (it holds the ledger) and drops the ledger.
    fn shut_down(&mut self) {
        {
            let mut disk = self.storage.0.disk.lock();
            disk.stop = true;
            self.storage.0.stuck.notify_all();
        }
        if let Some(w) = self.watchdog.take() {
            w.join().expect("the watchdog");
        }
        self.ledger = None;
    }

    /// An open whose k-th read fails: it must fail naming the file (or the folder) whose
    /// read failed and change nothing in the folder, or open (the read was never made, or
    /// was not needed) and close again. The restart's own open follows either way.
    fn open_with_a_read_fault(&mut self) -> Result<(), String> {
        let after = self.read_fault_rng.below(24);
        let before = folder_digest(&self.dir);
        let storage = SimStorage::default();
        storage.0.disk.lock().read_fault = Some(after);
        let options = Options {
            durability: Durability::Sync,
            clock: self.clock.clone(),
            segment_bytes: 64 << 10,
            checkpoint_every_bytes: 0,
            storage: Some(Arc::new(storage.clone())),
            ..Options::default()
        };
        let _ = writeln!(self.trace, "  open with read fault after {after} reads");
        match Ledger::open(&self.dir, options) {
            Ok(l) => {
                storage.0.disk.lock().read_fault = None;
                l.close()
                    .map_err(|e| format!("close after a read-fault open: {e}"))?;
                self.stats.read_faults_opened += 1;
                let _ = writeln!(self.trace, "    opened");
            }
            Err(e) => {
                let e = e.to_string();
                let Some(path) = storage.0.disk.lock().read_fault_fired.take() else {
                    return Err(format!("an open failed with no read fault fired: {e}"));
                };
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if !e.contains(&*name) {
                    return Err(format!(
                        "a read fault on {name} was refused without naming it: {e}"
                    ));
                }
                if folder_digest(&self.dir) != before {
                    return Err(format!(
                        "an open refused by a read fault on {name} changed the folder: {e}"
                    ));
                }
                self.stats.read_faults_refused += 1;
                let _ = writeln!(self.trace, "    refused: {e}");
            }
        }
        Ok(())
    }

    fn crash_and_restart(&mut self, why: &str) -> Result<(), String> {
        let _ = writeln!(self.trace, "  {why}");
        self.stats.crashes += 1;
        // The process dies: the ledger's threads see a dead disk from now on.
        {
            let mut disk = self.storage.0.disk.lock();
            if disk.stuck {
                self.stats.stuck += 1;
                let _ = writeln!(
                    self.trace,
                    "  (the watchdog closed a ledger stuck in a roll)"
                );
            }
            disk.dead = true;
            disk.stop = true;
            self.storage.0.stuck.notify_all();
        }
        if let Some(w) = self.watchdog.take() {
            w.join().expect("the watchdog");
        }
        if let Some(l) = self.ledger.take() {
            drop(l);
        }
        let mut rng = self.rng.clone();
        self.storage.crash(&mut rng, &mut self.trace);
        self.rng = rng;
        // Bit rot in cold data now and then (a flip in the last frame of the last segment
        // is a torn tail by the log format's rule 5, indistinguishable from a write that
        // never completed: not flipped here).
        let flip = if self.flip_rng.chance(1, 5) {
            self.flip_cold_bit()
        } else {
            None
        };
        if flip.is_none() && self.read_fault_rng.chance(1, 4) {
            self.open_with_a_read_fault()?;
        }
        match (self.open(), flip) {
            (Ok(()), None) => {}
            (Ok(()), Some(f)) => {
                // It opened: the state must be an allowed one (checked below). Put the
                // byte back in a file the ledger no longer writes (an older segment, a
                // snapshot) so later reads see good data.
                self.stats.flips_opened += 1;
                let _ = writeln!(self.trace, "    the flip was not needed: opened");
                self.unflip(&f);
            }
            (Err(e), Some(f)) => {
                let name = f
                    .path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                if !e.contains(&name) {
                    return Err(format!(
                        "a bit flip in {name} @{} was refused without naming the file: {e}",
                        f.offset
                    ));
                }
                self.stats.flips_refused += 1;
                let _ = writeln!(self.trace, "    refused: {e}");
                self.unflip(&f);
                self.open()?;
            }
            (Err(e), None) => return Err(e),
        }
        self.stats.restarts += 1;
        let segments = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
                })
                .count() as u64
            })
            .unwrap_or(0);
        self.stats.max_segments = self.stats.max_segments.max(segments);
        // The recovered state must be one the model allows, and the one whose last seq
        // the ledger recovered (operations that write no event leave equal candidates).
        let last = self.ledger().last_seq();
        let mut candidates: Vec<Model> = Vec::new();
        let had_uncertain = !self.uncertain.is_empty();
        for (u, seq) in std::mem::take(&mut self.uncertain).into_iter().rev() {
            if seq == last {
                candidates.push(u);
            }
        }
        if self.history.is_empty() {
            self.history.push((self.model.clone(), last));
        }
        let offered = self.history.len();
        candidates.extend(
            self.history
                .drain(..)
                .rev()
                .filter(|(_, seq)| *seq == last)
                .map(|(m, _)| m),
        );
        if candidates.is_empty() {
            return Err(format!(
                "after restart ({why}) the last seq is {last}, which no allowed state has ({offered} offered, acknowledged {})",
                self.acked_seq
            ));
        }
        self.resurrect(&mut candidates);
        let mut found = None;
        let mut first_diff = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            let d = check(self.ledger(), c, &self.ids);
            if d.is_empty() {
                found = Some(i);
                break;
            }
            if i == 0 {
                first_diff = d;
            }
        }
        let Some(i) = found else {
            return Err(format!(
                "after restart the state is none of the {} allowed ({why}); against the newest:\n  {}",
                candidates.len(),
                first_diff.join("\n  ")
            ));
        };
        if i == 0 && had_uncertain {
            self.stats.uncertain_kept += 1;
        }
        self.model = candidates.swap_remove(i);
        self.history = vec![(self.model.clone(), last)];
        // Events: gap-free, and nothing acknowledged lost.
        if last < self.acked_seq {
            return Err(format!(
                "events: last seq {last} after restart, {} was acknowledged",
                self.acked_seq
            ));
        }
        // Read on from the last event an earlier check saw (it must still be there), page by
        // page: the feed is gap-free and ends at last_seq.
        let mut after = self.acked_seq.saturating_sub(1);
        let mut first = true;
        loop {
            let page = match self.ledger().events(after, 10_000) {
                Ok(p) => p,
                Err(Error::EventsPruned { oldest_seq }) if first => {
                    after = oldest_seq - 1;
                    first = false;
                    continue;
                }
                Err(e) => return Err(format!("events after {after}: {e}")),
            };
            let Some(end) = page.last().map(|e| e.seq) else {
                break;
            };
            for e in &page {
                if e.seq != after + 1 {
                    return Err(format!("events: {} follows {after}", e.seq));
                }
                after = e.seq;
            }
            first = false;
            if end >= last {
                break;
            }
        }
        if after != last {
            return Err(format!("events: feed ends at {after}, last_seq {last}"));
        }
        self.acked_seq = last;
        self.seq = last;
        Ok(())
    }

    /// Flips one bit of cold data: a synced frame of a segment (not the last frame of the
    /// last segment), the header of a segment that is not the last, or a snapshot byte.
    fn flip_cold_bit(&mut self) -> Option<Flip> {
        let mut segs: Vec<PathBuf> = Vec::new();
        let mut snaps: Vec<PathBuf> = Vec::new();
        for e in std::fs::read_dir(&self.dir).ok()?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".log") {
                segs.push(e.path());
            } else if name.ends_with(".rkyv") {
                snaps.push(e.path());
            }
        }
        segs.sort();
        snaps.sort();
        let rng = &mut self.flip_rng;
        let pick_snapshot = !snaps.is_empty() && (segs.is_empty() || rng.chance(1, 3));
        let (path, offset) = if pick_snapshot {
            let path = snaps[rng.below(snaps.len() as u64) as usize].clone();
            let len = std::fs::metadata(&path).ok()?.len();
            if len == 0 {
                return None;
            }
            (path, rng.below(len))
        } else {
            let i = rng.below(segs.len() as u64) as usize;
            let last = i + 1 == segs.len();
            let bytes = std::fs::read(&segs[i]).ok()?;
            let mut frames = frame_starts(&bytes);
            if last {
                frames.pop();
            }
            let offset = if !last && rng.chance(1, 8) {
                rng.below(64)
            } else if frames.is_empty() {
                return None;
            } else {
                let (at, len) = frames[rng.below(frames.len() as u64) as usize];
                (at + rng.below(len as u64) as usize) as u64
            };
            (segs[i].clone(), offset)
        };
        let bit = 1u8 << rng.below(8);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ok()?;
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, offset).ok()?;
        let flip = Flip {
            path,
            offset,
            was: b[0],
            now: b[0] ^ bit,
        };
        file.write_all_at(&[flip.now], offset).ok()?;
        let _ = writeln!(
            self.trace,
            "  bit flip: {} @{offset} {:#04x} -> {:#04x}",
            flip.path.display(),
            flip.was,
            flip.now
        );
        Some(flip)
    }

    /// Puts a flipped byte back if it is still there (recovery may have cut the file).
    fn unflip(&mut self, f: &Flip) {
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&f.path)
        else {
            return;
        };
        let mut b = [0u8; 1];
        if file.read_exact_at(&mut b, f.offset).is_ok() && b[0] == f.now {
            let _ = file.write_all_at(&[f.was], f.offset);
        }
    }

    /// An order the model pruned may still be held by the ledger (retention is "at least
    /// 24 h": a clock stepped backwards keeps it longer): before an operation on it, take
    /// the ledger's copy into the model if it is the same finished order.
    fn sync_retained(&mut self) {
        self.forget_gone_retained();
        if self.model.pruned.is_empty() {
            return;
        }
        let mut one = [std::mem::take(&mut self.model)];
        self.resurrect(&mut one);
        let [m] = one;
        self.model = m;
    }

    /// The reverse of [`Sim::resurrect`]: a finished order past the newest retention cutoff
    /// that the model still holds (it took the ledger's copy back) may be gone from the
    /// ledger, since retention is "at least 24 h". Seed 71 found it (timing-dependent,
    /// ~1 run in 150 under load): a restart pruned an order the live ledger had kept past
    /// its cutoff, because its retention queues stopped at the first entry not past the
    /// cutoff, and a clock stepped back left them unsorted in a per-process order. The
    /// ledger now prunes exactly (`aging.rs`), but beyond `MAX_RETENTION_RUNS` steps back a
    /// late entry is kept longer, in a per-process way again.
    fn forget_gone_retained(&mut self) {
        let cutoff = self.model.retention_cutoff;
        let past: Vec<String> = self
            .model
            .orders
            .iter()
            .filter(|(_, o)| o.status.is_finished() && o.finished_at < cutoff)
            .map(|(id, _)| id.clone())
            .collect();
        for id in past {
            if matches!(self.ledger().reservation(&id), Ok(None)) {
                if let Some(o) = self.model.orders.remove(&id) {
                    self.model.pruned.insert(id, o);
                }
            }
        }
    }

    /// Orders the model pruned may come back after a restart (finished, unchanged): take
    /// them into every candidate.
    fn resurrect(&mut self, candidates: &mut [Model]) {
        for c in candidates.iter_mut() {
            let pruned: Vec<(String, MOrder)> = c
                .pruned
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (id, o) in pruned {
                if c.orders.contains_key(&id) {
                    continue;
                }
                if let Ok(Some(r)) = self.ledger().reservation(&id) {
                    if r.status == o.status && r.expires_at == o.expires_at {
                        c.pruned.remove(&id);
                        c.orders.insert(id, o);
                    }
                }
            }
        }
    }
}

fn run_seed(seed: u64, steps: u64) -> Result<Stats, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut sim = Sim::new(seed, dir.path());
    let result = (|| -> Result<(), String> {
        sim.open()?;
        // The empty ledger is the first durable point.
        sim.history = vec![(Model::default(), 0)];
        for i in 0..steps {
            let _ = writeln!(sim.trace, "step {i}");
            sim.step()?;
        }
        // A last crash, then a clean close.
        sim.crash_and_restart("final crash")?;
        sim.ledger().close().map_err(|e| format!("close: {e}"))?;
        Ok(())
    })();
    sim.shut_down();
    match result {
        Ok(()) => Ok(sim.stats),
        Err(e) => {
            let tail: Vec<&str> = sim.trace.lines().collect();
            let from = tail
                .len()
                .saturating_sub(env_u64("STOCKLEDGER_SIM_TRACE").unwrap_or(60) as usize);
            Err(format!(
                "seed {seed} failed: {e}\nlast steps:\n{}",
                tail[from..].join("\n")
            ))
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn simulate() {
    let steps = env_u64("STOCKLEDGER_SIM_STEPS").unwrap_or(400);
    let seeds: Vec<u64> = match env_u64("STOCKLEDGER_SIM_SEED") {
        Some(s) => vec![s],
        None => {
            let count = env_u64("STOCKLEDGER_SIM_SEEDS").unwrap_or(300);
            // A fixed base so CI is reproducible; STOCKLEDGER_SIM_BASE moves the window.
            let base = env_u64("STOCKLEDGER_SIM_BASE").unwrap_or(0);
            (base..base + count).collect()
        }
    };
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    let mut failures = Vec::new();
    let mut rolled = 0u64;
    for &seed in &seeds {
        match run_seed(seed, steps) {
            Ok(s) => {
                total.ops += s.ops;
                total.refused += s.refused;
                total.crashes += s.crashes;
                total.faults += s.faults;
                total.restarts += s.restarts;
                total.uncertain_kept += s.uncertain_kept;
                total.flips_refused += s.flips_refused;
                total.flips_opened += s.flips_opened;
                total.max_segments = total.max_segments.max(s.max_segments);
                total.stuck += s.stuck;
                total.failed_checkpoints += s.failed_checkpoints;
                total.read_faults_refused += s.read_faults_refused;
                total.read_faults_opened += s.read_faults_opened;
                rolled += u64::from(s.max_segments > 1);
            }
            Err(e) => {
                eprintln!("{e}\nrerun: STOCKLEDGER_SIM_SEED={seed}");
                failures.push(seed);
                if failures.len() >= 5 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "sim: {} seeds x {steps} steps in {:.1?} ({rolled} rolled segments): {total:?}",
        seeds.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}
