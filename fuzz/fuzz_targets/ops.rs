//! Operation sequences against a model: the bytes decode into ledger operations (see
//! `core/tests/ops_model/mod.rs`, shared with the stable replay in `core/tests/fuzz_ops.rs`);
//! any disagreement with the model or broken invariant panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/ops_model/mod.rs"]
mod ops_model;

fuzz_target!(|data: &[u8]| {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm/stockledger-fuzz-ops")
    } else {
        std::env::temp_dir().join("stockledger-fuzz-ops")
    };
    let _ = std::fs::create_dir_all(&base);
    ops_model::run(data, Some(&base));
});
