//! The limits of `domain.md`, enforced here so that every interface inherits them.

use crate::error::{Error, Result};
use crate::types::OrderLine;

pub const MAX_NAME_BYTES: usize = 64;
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_QTY: u64 = 1_000_000;
pub const MAX_LINES: usize = 100;
pub const MAX_ON_HAND: u64 = 9_007_199_254_740_991;
pub const MAX_TTL_SECONDS: u64 = 604_800;
pub const DEFAULT_TTL_SECONDS: u64 = 900;
pub const MAX_REASON_BYTES: usize = 256;
/// Commands in one call of the batch entry point.
pub const MAX_BATCH: usize = 10_000;

// ---- capacity: every table and buffer of the engine is bounded by one of these ----------

/// Live plus retained reservations, at most, by default (`Options::max_orders`).
pub const MAX_ORDERS: usize = 50_000_000;
/// Shards of the reservation table (a power of two: the low bits of the id's hash pick one).
pub const ORDER_SHARDS: usize = 64;
/// Skus and stock cells the catalog holds at most (cell ids are u32).
pub const MAX_SKUS: usize = 50_000_000;
pub const MAX_CELLS: usize = 100_000_000;
/// Shards of the idempotency key tables (adjustments, payments).
pub const KEY_SHARDS: usize = 64;
/// Sorted runs a retention queue keeps apart (one more per step back of the wall clock
/// within the retention); beyond them a late entry is kept longer (`aging.rs`).
pub const MAX_RETENTION_RUNS: usize = 16;
/// Staging lanes of the sequencer (threads take them in turn; 64 so that up to 64 calling
/// threads never share one, since a lane is a spin lock), and the records and bytes staged
/// but not yet taken by the log writer, at most (callers wait for room beyond that).
pub const STAGING_LANES: usize = 64;
pub const MAX_STAGED_RECORDS: u64 = 1 << 20;
pub const MAX_STAGED_BYTES: u64 = 64 << 20;
/// The largest record payload a log frame carries.
pub const MAX_FRAME_PAYLOAD: usize = 1 << 20;
/// The records of one log frame (a group-commit batch, or the part of one that fits the
/// segment), at most: a larger batch is written as several frames.
pub const MAX_FRAME_RECORDS_BYTES: usize = 4 << 20;
/// Framed events a memory-only ledger keeps for its events feed, at most.
pub const MEM_LOG_BYTES: usize = 64 << 20;
/// Frames of the memory log are kept in chunks of this size (a batch larger than it gets a
/// chunk of its own), so that evicting the oldest chunk frees a bounded share of the log.
pub const MEM_CHUNK_BYTES: usize = 256 << 10;
const _: () = assert!(MEM_LOG_BYTES / MEM_CHUNK_BYTES >= 16);
/// Events one read of the feed returns at most.
pub const MAX_EVENTS_PER_READ: usize = 10_000;
/// Attempts of a multi-line reserve refused only because another order, itself being
/// refused, briefly held one of its lines.
pub const RESERVE_ATTEMPTS: u32 = 4;

const _: () = assert!(ORDER_SHARDS.is_power_of_two() && KEY_SHARDS.is_power_of_two());

/// The hash bits that pick a shard: 26..32. A shard's table hashes its keys with the same
/// hash: hashbrown (idempotency keys, the sku index) takes a key's bucket from the low bits
/// and its control tag from the top 7; the orders' index (`slot_index.rs`) buckets by bits
/// 32..64, which it keeps as the tag. Shard bits taken from the low
/// bits would be equal for every key of a shard, so all its keys would start probing in 1/64
/// of the buckets (long probes, a cache miss each, on every lookup of a new id).
pub(crate) const SHARD_HASH_SHIFT: u32 = 26;

/// The shard of `hash` among `shards` (a power of two of at most 64).
#[inline]
pub(crate) fn shard_of(hash: u64, shards: usize) -> usize {
    debug_assert!(shards.is_power_of_two() && shards <= 64);
    (hash >> SHARD_HASH_SHIFT) as usize & (shards - 1)
}
const _: () = assert!(MAX_ORDERS / ORDER_SHARDS < u32::MAX as usize);
const _: () = assert!(MAX_CELLS < u32::MAX as usize && MAX_SKUS <= MAX_CELLS);
// A lane must hold the largest record, and a batch call's records must fit the staging.
const _: () = assert!(MAX_STAGED_BYTES as usize / STAGING_LANES >= MAX_FRAME_PAYLOAD);
const _: () = assert!(MAX_BATCH as u64 * 2 <= MAX_STAGED_RECORDS);
// A frame holds at least one record of the largest size (its 8-byte record header too).
const _: () = assert!(MAX_FRAME_RECORDS_BYTES >= MAX_FRAME_PAYLOAD + 8);
const _: () = assert!(MAX_FRAME_RECORDS_BYTES < u32::MAX as usize);
// The events a memory-only ledger keeps outnumber one read of the feed.
const _: () = assert!(MEM_LOG_BYTES / MAX_FRAME_PAYLOAD >= 16);

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// A sku or warehouse id: 1..=64 bytes of `[A-Za-z0-9._:-]`.
pub fn check_name(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(field, "must be 1 to 64 bytes"));
    }
    if !value.bytes().all(is_name_byte) {
        return Err(Error::invalid(
            field,
            "may contain only letters, digits and . _ : -",
        ));
    }
    Ok(())
}

/// An order, adjustment or payment id: 1..=128 bytes of printable ASCII.
pub fn check_key(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(field, "must be 1 to 128 bytes"));
    }
    if !printable_ascii(value.as_bytes()) {
        return Err(Error::invalid(
            field,
            "may contain only printable ASCII (0x21 to 0x7E)",
        ));
    }
    Ok(())
}

/// Whether every byte is in 0x21..=0x7E, eight bytes at a time (every key of every
/// operation passes here).
#[inline]
fn printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // A byte below 0x21 sets a high bit in `below`; one above 0x7E (0x80 up too) in `above`.
        let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        // Adding 0x7F - 0x7E = 1 carries a byte above 0x7E into the high bit.
        let above = (x.wrapping_add(ONES) | x) & HIGH;
        if below | above != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|b| (0x21..=0x7e).contains(b))
}

pub fn check_ttl(ttl_seconds: u64) -> Result<()> {
    if !(1..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
        return Err(Error::invalid(
            "ttl_seconds",
            "must be between 1 and 604800",
        ));
    }
    Ok(())
}

pub fn check_on_hand(field: &str, on_hand: u64) -> Result<()> {
    if on_hand > MAX_ON_HAND {
        return Err(Error::invalid(
            field,
            "must be between 0 and 9007199254740991",
        ));
    }
    Ok(())
}

pub fn check_delta(delta: i64) -> Result<()> {
    if delta == 0 || delta.unsigned_abs() > MAX_ON_HAND {
        return Err(Error::invalid(
            "delta",
            "must be a non-zero integer with |delta| <= 9007199254740991",
        ));
    }
    Ok(())
}

pub fn check_reason(reason: Option<&str>) -> Result<()> {
    match reason {
        Some(r) if r.len() > MAX_REASON_BYTES => {
            Err(Error::invalid("reason", "must be at most 256 bytes"))
        }
        _ => Ok(()),
    }
}

/// Field paths are built only on the error path, so a valid order allocates nothing here.
pub fn check_lines<L: OrderLine>(lines: &[L]) -> Result<()> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(Error::invalid("lines", "must hold 1 to 100 lines"));
    }
    for (i, line) in lines.iter().enumerate() {
        check_name("sku", line.sku()).map_err(|e| reroot(e, i))?;
        check_name("warehouse", line.warehouse()).map_err(|e| reroot(e, i))?;
        if !(1..=MAX_QTY).contains(&line.qty()) {
            return Err(Error::invalid(
                format!("lines[{i}].qty"),
                "must be between 1 and 1000000",
            ));
        }
    }
    // Duplicate cells: quadratic for tiny orders beats hashing.
    for i in 1..lines.len() {
        for j in 0..i {
            if lines[i].sku() == lines[j].sku() && lines[i].warehouse() == lines[j].warehouse() {
                return Err(Error::invalid(
                    format!("lines[{i}]"),
                    format!(
                        "duplicates lines[{j}] (the same sku and warehouse twice in one order)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn reroot(e: Error, i: usize) -> Error {
    match e {
        Error::InvalidRequest { field, reason } => Error::InvalidRequest {
            field: format!("lines[{i}].{field}"),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::printable_ascii;

    #[test]
    fn printable_ascii_agrees_with_the_byte_by_byte_rule_everywhere() {
        let simple = |b: &[u8]| b.iter().all(|c| (0x21..=0x7e).contains(c));
        for len in 0..=19usize {
            for pos in 0..len {
                for byte in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[pos] = byte;
                    assert_eq!(
                        printable_ascii(&v),
                        simple(&v),
                        "len {len} pos {pos} byte {byte:#x}"
                    );
                }
            }
        }
        assert!(printable_ascii(b"!~order-0001~!"));
    }
}
