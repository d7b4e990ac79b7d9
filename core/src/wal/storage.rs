//! The storage seam of the log writer: the real file system, and a faulty one for tests.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where the log writer puts segment files. Every write and sync of the log goes through
/// it, so tests can inject the faults the real world has.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` of `len` bytes, synced. With `zero_fill` every byte is written (so
    /// later syncs need no size or extent metadata: the background spare segment); without,
    /// the file is only sized (cheap: the first segment of a ledger).
    fn create(&self, path: &Path, len: u64, zero_fill: bool) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing segment for writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
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
}

/// Wraps the real file system and injects one fault after a number of successful
/// operations of the fault's kind (writes, or syncs).
#[derive(Debug)]
pub struct FaultyStorage {
    fault: Fault,
    countdown: Arc<AtomicU64>,
}

impl FaultyStorage {
    pub fn new(fault: Fault, after_ops: u64) -> FaultyStorage {
        FaultyStorage {
            fault,
            countdown: Arc::new(AtomicU64::new(after_ops)),
        }
    }
    /// Whether the fault has fired.
    pub fn fired(&self) -> bool {
        self.countdown.load(Ordering::SeqCst) == u64::MAX
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
        Ok(Box::new(FaultyFile {
            inner: FsStorage.create(path, len, zero_fill)?,
            fault: self.fault,
            countdown: self.countdown.clone(),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FaultyFile {
            inner: FsStorage.open(path)?,
            fault: self.fault,
            countdown: self.countdown.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }
}
