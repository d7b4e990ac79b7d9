//! The publisher's durable cursor: the last seq known delivered to the broker, kept in the
//! ledger folder so a restart resumes where delivery stopped.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The cursor file's name inside the data dir.
pub const FILE_NAME: &str = "kafka-outbox.delivered";

pub struct Cursor {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl Cursor {
    pub fn new(data_dir: &Path) -> Cursor {
        Cursor {
            path: data_dir.join(FILE_NAME),
            tmp: data_dir.join(format!("{FILE_NAME}.tmp")),
            dir: data_dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded seq; 0 when nothing was ever delivered.
    pub fn load(&self) -> Result<u64, String> {
        match fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|_| {
                format!(
                    "{}: not a seq number ({:?}); delete it to deliver every event still in the log again",
                    self.path.display(),
                    text.trim()
                )
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Records `seq` atomically and durably: temp file, fsync, rename, folder fsync.
    pub fn store(&self, seq: u64) -> Result<(), String> {
        let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", self.path.display());
        {
            let mut f = File::create(&self.tmp).map_err(|e| fail("create", e))?;
            f.write_all(format!("{seq}\n").as_bytes())
                .map_err(|e| fail("write", e))?;
            f.sync_all().map_err(|e| fail("fsync", e))?;
        }
        fs::rename(&self.tmp, &self.path).map_err(|e| fail("rename", e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("folder fsync for", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cursor::new(dir.path());
        assert_eq!(c.load().unwrap(), 0);
        c.store(42).unwrap();
        assert_eq!(c.load().unwrap(), 42);
        c.store(7).unwrap();
        assert_eq!(c.load().unwrap(), 7);
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
        fs::write(c.path(), "x1").unwrap();
        let err = c.load().unwrap_err();
        assert!(err.contains(FILE_NAME), "{err}");
    }
}
