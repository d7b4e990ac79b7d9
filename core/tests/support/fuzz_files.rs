#![allow(dead_code)]
//! The committed inputs of the fuzz targets, replayed on stable `cargo test`: shared (by
//! path) by `core/tests/fuzz_ops.rs`, `core/tests/fuzz_inputs.rs` and
//! `service/tests/http_bodies.rs`. Depends on `std` only.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// `fuzz/` at the repository's root (the core and the service both sit one level below).
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of a folder, sorted; none if it is missing.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs `f` on every committed input of a fuzz target: the files of `fuzz/seeds/<target>/`,
/// then of `fuzz/regressions/<target>/`. An input that fails fails the test, its file named.
/// The seeds folder must hold a file (a missing or empty one would assert nothing); the
/// regressions folder may be missing (a target has one once a finding is fixed). Returns
/// how many inputs ran.
pub fn replay(target: &str, mut f: impl FnMut(&[u8])) -> usize {
    let seeds = files(&fuzz_dir().join("seeds").join(target));
    assert!(
        !seeds.is_empty(),
        "fuzz/seeds/{target}/ is missing or empty"
    );
    let all = seeds
        .into_iter()
        .chain(files(&fuzz_dir().join("regressions").join(target)));
    let mut n = 0;
    for path in all {
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(&data))) {
            let msg = (e.downcast_ref::<String>().map(String::as_str))
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("the committed input {} failed: {msg}", path.display());
        }
        n += 1;
    }
    n
}
