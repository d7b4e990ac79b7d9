//! Arbitrary bytes as log frames: recovery's frame reader, decoder and replay must never
//! panic, only refuse.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stockledger::wal::fuzz_replay(data);
});
