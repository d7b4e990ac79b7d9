//! The typed error of the storage layer (log, recovery, snapshots, readers, folder lock).
//!
//! Internal: the public `Error` enum stays as it is (a new variant would break users'
//! exhaustive matches). Every variant becomes `Error::LedgerUnavailable` at the boundary,
//! through the one `From` impl below, with the message its `Display` gives.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    /// Bytes of a log segment that are not what they must be.
    #[error("log corruption in {} at offset {offset}: {what}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// A damaged snapshot whose log is gone, so no older snapshot can stand in for it.
    #[error(
        "snapshot corruption in {} at offset {offset}: {what}; the log it covers is gone \
         (log gap: lsn {need_lsn} is missing{}), so nothing older can stand in for it",
        path.display(),
        match oldest_lsn {
            Some(lsn) => format!(", the oldest segment starts at lsn {lsn}"),
            None => ", there is no log segment".into(),
        }
    )]
    SnapshotLost {
        path: PathBuf,
        offset: u64,
        what: String,
        need_lsn: u64,
        oldest_lsn: Option<u64>,
    },
    /// A piece of log is missing: `lsn` was needed, the next segment starts later.
    #[error("log gap: lsn {lsn} is missing (segment {} starts at {first_lsn})", path.display())]
    Gap {
        lsn: u64,
        path: PathBuf,
        first_lsn: u64,
    },
    /// A file operation failed; `op` reads as a verb phrase ("read", "create", "sync
    /// folder of").
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A write of log frames failed (the bytes may be partly on disk).
    #[error("write of {len_bytes} bytes at offset {offset} of {}: {source}", path.display())]
    Write {
        path: PathBuf,
        offset: u64,
        len_bytes: usize,
        source: io::Error,
    },
    /// Another ledger holds the folder; `path` is its LOCK file.
    #[error(
        "ledger folder {} is locked by another ledger (lock file {})",
        path.parent().unwrap_or(Path::new("")).display(),
        path.display()
    )]
    Locked { path: PathBuf },
    /// The state rebuilt from the snapshot and log breaks an invariant.
    #[error("recovered state of {} is inconsistent: {why}", dir.display())]
    Inconsistent { dir: PathBuf, why: String },
    #[error("snapshot encode: {what}")]
    Encode { what: String },
    /// The log stopped for good; `reason` is the first failure.
    #[error("the log could not be written ({reason}); writes are refused until restart")]
    Poisoned { reason: String },
    #[error("the ledger is closed")]
    Closed,
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> StorageError {
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, offset: usize, what: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            what: what.into(),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        Error::unavailable(e.to_string())
    }
}

pub(crate) type StorageResult<T> = std::result::Result<T, StorageError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn every_variant_becomes_ledger_unavailable_with_its_message() {
        let e = StorageError::corrupt(Path::new("/d/wal-1.log"), 64, "bad frame");
        let public = Error::from(e);
        assert_eq!(public.code(), ErrorCode::LedgerUnavailable);
        assert_eq!(
            public.to_string(),
            "ledger unavailable: log corruption in /d/wal-1.log at offset 64: bad frame"
        );
        let locked = StorageError::Locked {
            path: PathBuf::from("/d/LOCK"),
        };
        assert_eq!(
            locked.to_string(),
            "ledger folder /d is locked by another ledger (lock file /d/LOCK)"
        );
        let io = StorageError::io("read", Path::new("/d/x"), io::Error::other("boom"));
        assert_eq!(io.to_string(), "cannot read /d/x: boom");
        assert_eq!(
            Error::from(StorageError::Closed).code(),
            ErrorCode::LedgerUnavailable
        );
    }
}
