//! Arbitrary bytes as a snapshot file and as a snapshot archive: validation and restore must
//! never panic, only refuse.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stockledger::wal::fuzz_snapshot(data);
});
