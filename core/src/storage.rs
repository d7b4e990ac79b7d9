//! The storage seam of the log: the real file system, and a faulty one for tests.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

/// A read-only view of a whole file. A snapshot is read in place only if its bytes are
/// aligned to 16 (a map is page-aligned); otherwise it is copied once.
pub type ReadMap = Box<dyn Deref<Target = [u8]> + Send + Sync>;

/// Where the log puts its files: segments, and the snapshots a checkpoint writes and
/// removes. Every write, sync, rename and removal goes through it, and every read, listing
/// and size or time look-up of the log's files, so tests can inject the faults the real
/// world has. (The folder's LOCK file is taken with `flock` outside the seam: a lock is
/// not a file the log reads or writes.)
///
/// The read methods have default implementations on the real file system, so an
/// implementor that only cares about writes need not write them.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` of `len` bytes, synced. With `zero_fill` every byte is written (so
    /// later syncs need no size or extent metadata: the background spare segment); without,
    /// the file is only sized (cheap: the first segment of a ledger).
    fn create(&self, path: &Path, len: u64, zero_fill: bool) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing segment for writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes a file nothing needs any more (a covered segment, an old snapshot).
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    /// Maps a whole file read-only (segments, snapshots). A missing file must answer
    /// `ErrorKind::NotFound`: readers tell a segment a checkpoint removed from a failure.
    fn map_read(&self, path: &Path) -> io::Result<ReadMap> {
        map_file(path)
    }
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    /// The paths of the entries of a folder, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }
    /// The size of a file.
    fn len_bytes(&self, path: &Path) -> io::Result<u64> {
        std::fs::metadata(path).map(|m| m.len())
    }
    /// When a file was last written.
    fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        std::fs::metadata(path)?.modified()
    }
}

/// Maps `path` read-only: the real file system's [`Storage::map_read`].
pub fn map_file(path: &Path) -> io::Result<ReadMap> {
    let file = File::open(path)?;
    // SAFETY (why a read-only shared map of a file that is being written is sound here):
    // - Size: a segment is sized once, when created (`set_len`, before its header is
    //   written and before any reader can know it), and never truncated or shortened
    //   afterwards (recovery zero-fills, it does not truncate), so no access through the
    //   map is beyond EOF (no SIGBUS). Truncation in `truncate_corrupt_tail` removes whole
    //   later segments, which unlinks the name but keeps mapped pages valid. Snapshots are
    //   written to a temp file and renamed into place, never changed afterwards.
    // - Content: the live readers (events feed, publisher, checkpoints) interpret only frames
    //   with lsn <= durable_lsn, whose bytes were written and fdatasync'd before durable_lsn
    //   was published (Release/Acquire) and are never written again. The one rewrite of
    //   durable-looking bytes, recovery zeroing a torn tail, runs before the ledger exists
    //   (folder lock held, no live reader) and after replay dropped its own map.
    // - The rest: past durable_lsn the writer may be writing the bytes a reader maps (the
    //   frame after the last durable one, or an outside `read_events` racing the writer).
    //   Those bytes are only copied out and checked (length bounds, CRC-32C) before any is
    //   trusted; a torn or changing frame fails the check and ends the scan. This is the
    //   one place that relies on byte reads of a concurrently written shared mapping being
    //   merely stale-or-new, as every mmap-based log reader on Linux does.
    let map = unsafe { memmap2::Mmap::map(&file) }?;
    Ok(Box::new(map))
}

pub trait StorageFile: Send {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

struct FsFile(File);

impl StorageFile for FsFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FsStorage {
    fn create(&self, path: &Path, len: u64, zero_fill: bool) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len)?;
        let zeros = vec![0u8; if zero_fill { 1 << 20 } else { 0 }];
        let mut at = 0;
        while zero_fill && at < len {
            let n = (len - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
        Ok(Box::new(FsFile(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(FsFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// What a [`FaultyStorage`] does once its countdown reaches zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The write fails with EIO and writes nothing.
    WriteError,
    /// The write stores only the first half of its bytes, then fails.
    ShortWrite,
    /// The write fails with ENOSPC.
    NoSpace,
    /// fdatasync fails with EIO (the data may or may not be on disk).
    SyncError,
    /// The write panics: stands in for a bug that kills the log writer thread.
    Panic,
    /// Creating or opening a segment file fails with EMFILE (too many open files).
    OpenError,
    /// Renaming a file fails with EIO.
    RenameError,
    /// fsync of the folder fails with EIO.
    SyncDirError,
    /// Removing a file fails with EIO.
    RemoveError,
    /// Reading or mapping a file (segment, snapshot) fails with EIO.
    ReadError,
    /// Listing a folder fails with EIO.
    ListError,
}

impl Fault {
    /// Faults of the storage itself (creating, opening, renaming, folder sync) rather than
    /// of a file's writes and syncs.
    fn is_storage_level(self) -> bool {
        matches!(
            self,
            Fault::OpenError
                | Fault::RenameError
                | Fault::SyncDirError
                | Fault::RemoveError
                | Fault::ReadError
                | Fault::ListError
        )
    }
}

/// Wraps the real file system and injects one fault after a number of successful
/// operations of the fault's kind (writes, syncs, or for the storage-level faults, creates
/// and opens, renames, folder syncs, removals, reads and maps, listings).
#[derive(Debug)]
pub struct FaultyStorage {
    fault: Fault,
    countdown: Arc<AtomicU64>,
    /// Storage-level faults: (operations left before the fault, failures left once fired,
    /// fired).
    storage_ops: Mutex<(u64, u64, bool)>,
}

impl FaultyStorage {
    /// Once fired, the fault stays (a broken device).
    pub fn new(fault: Fault, after_ops: u64) -> FaultyStorage {
        FaultyStorage::transient(fault, after_ops, u64::MAX)
    }
    /// A storage-level fault that fails `failures` operations in a row, then clears (EMFILE,
    /// a passing EIO). File faults given here stay once fired, as with [`FaultyStorage::new`].
    pub fn transient(fault: Fault, after_ops: u64, failures: u64) -> FaultyStorage {
        FaultyStorage {
            fault,
            countdown: Arc::new(AtomicU64::new(after_ops)),
            storage_ops: Mutex::new((after_ops, failures, false)),
        }
    }
    /// Restarts the countdown: the fault fires after `after_ops` more operations of its
    /// kind (a test arms it once the ledger is open, so opening cannot trip it).
    pub fn arm(&self, after_ops: u64) {
        self.storage_ops.lock().0 = after_ops;
        self.countdown.store(after_ops, Ordering::SeqCst);
    }
    /// Whether the fault has fired.
    pub fn fired(&self) -> bool {
        if self.fault.is_storage_level() {
            return self.storage_ops.lock().2;
        }
        self.countdown.load(Ordering::SeqCst) == u64::MAX
    }
    /// True when this storage operation, of kind `kind`, is one that fails.
    fn storage_trips(&self, kind: Fault) -> bool {
        if self.fault != kind {
            return false;
        }
        let mut ops = self.storage_ops.lock();
        if ops.0 > 0 {
            ops.0 -= 1;
            return false;
        }
        if ops.1 == 0 {
            return false; // cleared
        }
        if ops.1 != u64::MAX {
            ops.1 -= 1;
        }
        ops.2 = true;
        true
    }
}

struct FaultyFile {
    inner: Box<dyn StorageFile>,
    fault: Fault,
    countdown: Arc<AtomicU64>,
}

impl FaultyFile {
    /// True when this operation is the one that fails.
    fn trips(&self) -> bool {
        let mut current = self.countdown.load(Ordering::SeqCst);
        loop {
            if current == u64::MAX {
                // Fired already: the device stays broken.
                return true;
            }
            let next = if current == 0 { u64::MAX } else { current - 1 };
            match self
                .countdown
                .compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return current == 0,
                Err(seen) => current = seen,
            }
        }
    }
}

impl StorageFile for FaultyFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let write_fault = matches!(
            self.fault,
            Fault::WriteError | Fault::ShortWrite | Fault::NoSpace | Fault::Panic
        );
        if write_fault && self.trips() {
            return Err(match self.fault {
                Fault::ShortWrite => {
                    self.inner.write_at(&buf[..buf.len() / 2], offset)?;
                    io::Error::new(io::ErrorKind::WriteZero, "injected short write")
                }
                Fault::NoSpace => io::Error::from_raw_os_error(28),
                Fault::Panic => panic!("injected panic in a log write"),
                _ => io::Error::other("injected write error"),
            });
        }
        self.inner.write_at(buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if self.fault == Fault::SyncError && self.trips() {
            return Err(io::Error::other("injected fsync error"));
        }
        self.inner.sync_data()
    }
}

impl Storage for FaultyStorage {
    fn create(&self, path: &Path, len: u64, zero_fill: bool) -> io::Result<Box<dyn StorageFile>> {
        if self.storage_trips(Fault::OpenError) {
            return Err(io::Error::from_raw_os_error(24));
        }
        Ok(Box::new(FaultyFile {
            inner: FsStorage.create(path, len, zero_fill)?,
            fault: self.fault,
            countdown: self.countdown.clone(),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        if self.storage_trips(Fault::OpenError) {
            return Err(io::Error::from_raw_os_error(24));
        }
        Ok(Box::new(FaultyFile {
            inner: FsStorage.open(path)?,
            fault: self.fault,
            countdown: self.countdown.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.storage_trips(Fault::RenameError) {
            return Err(io::Error::other("injected rename error"));
        }
        FsStorage.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.storage_trips(Fault::SyncDirError) {
            return Err(io::Error::other("injected folder fsync error"));
        }
        FsStorage.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        if self.storage_trips(Fault::RemoveError) {
            return Err(io::Error::other("injected remove error"));
        }
        FsStorage.remove(path)
    }
    fn map_read(&self, path: &Path) -> io::Result<ReadMap> {
        if self.storage_trips(Fault::ReadError) {
            return Err(io::Error::other("injected read error"));
        }
        FsStorage.map_read(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if self.storage_trips(Fault::ReadError) {
            return Err(io::Error::other("injected read error"));
        }
        FsStorage.read(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        if self.storage_trips(Fault::ListError) {
            return Err(io::Error::other("injected list error"));
        }
        FsStorage.list(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_through_and_a_read_fault_fires_after_its_countdown_then_clears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let storage = FaultyStorage::transient(Fault::ReadError, 1, 1);
        assert_eq!(storage.read(&path).unwrap(), b"hello");
        let e = match storage.map_read(&path) {
            Err(e) => e,
            Ok(_) => panic!("the second read must fail"),
        };
        assert_eq!(e.to_string(), "injected read error");
        assert!(storage.fired());
        assert_eq!(&**storage.map_read(&path).unwrap(), b"hello", "cleared");
        // Listing, sizes and times are not read faults.
        assert_eq!(storage.list(dir.path()).unwrap(), vec![path.clone()]);
        assert_eq!(storage.len_bytes(&path).unwrap(), 5);
        assert!(storage.modified(&path).is_ok());
    }

    #[test]
    fn a_list_fault_fails_the_listing_only() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new(Fault::ListError, 0);
        assert!(storage.list(dir.path()).is_err());
        assert!(
            storage.list(dir.path()).is_err(),
            "a broken device stays broken"
        );
        let missing = dir.path().join("missing");
        let e = storage.read(&missing).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        match storage.map_read(&missing) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            Ok(_) => panic!("mapped a missing file"),
        }
    }
}
