//! Arbitrary bytes as a record payload: the entry decoder must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&n, rest)) = data.split_first() {
        let _ = stockledger::wal::fuzz_decode(rest, n as u16 % 8);
    }
});
