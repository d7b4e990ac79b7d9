#![allow(dead_code)]
//! Operation sequences against a model, from arbitrary bytes: the `ops` fuzz target
//! (`fuzz/fuzz_targets/ops.rs`) and its stable replay (`core/tests/fuzz_ops.rs`) both call
//! [`run`]. The bytes decode into at most [`MAX_OPS`] ledger operations (multi-line reserves
//! incl. invalid ones, commit, release, clock jumps and expiry passes, set/adjust stock with
//! replayed and conflicting adjustment ids, payment callbacks incl. replays, conflicts and
//! late payments, checkpoints, close and reopen); after each one the ledger's answer must
//! equal the model's, every cell and order must agree, and `check_invariants` must pass.
//! Any disagreement panics with the op number and the op.
//!
//! The model is `../support/model.rs` (shared with `model.rs` and `sim.rs`). Only the public
//! `stockledger` API is used. This file is included by path from the fuzz crate, so it (and
//! the model) depends on nothing but `stockledger` and `std`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stockledger::{Durability, Ledger, ManualClock, Options};

#[path = "../support/model.rs"]
mod model;
use model::{diff, real, Lines, Model, Res, DAY};

pub const MAX_OPS: usize = 256;
pub const MAX_REOPENS: usize = 4;
const T0: u64 = 1_800_000_000_000;
/// Index 3 is the empty sku: invalid.
const SKUS: [&str; 4] = ["A", "B", "C", ""];
const WHS: [&str; 2] = ["w1", "w2"];
const ORDERS: usize = 8;

#[derive(Debug, Clone)]
pub enum Op {
    Set(usize, usize, u64),
    Adjust(usize, usize, i64, usize),
    /// order, lines (sku index, warehouse index, qty), ttl seconds
    Reserve(usize, Vec<(usize, usize, u64)>, u64),
    Commit(usize),
    Release(usize),
    /// clock jump in ms, then an expiry pass
    Expire(u64),
    /// clock jump only
    Advance(u64),
    /// payment index, order, succeeded, currency valid
    Pay(usize, usize, bool, bool),
    Checkpoint,
    Reopen,
}

/// A little reader over the fuzz bytes; reads past the end give zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decodes the ops; the first byte's low bit chooses a ledger on disk (with checkpoints and
/// reopens) or in memory.
pub fn decode(data: &[u8]) -> (bool, Vec<Op>) {
    let mut b = Bytes(data);
    let on_disk = b.u8() & 1 == 1;
    let mut ops = Vec::new();
    let mut reopens = 0;
    while !b.done() && ops.len() < MAX_OPS {
        let tag = b.u8();
        let op = match tag % 16 {
            0 | 1 => Op::Set(b.u8() as usize % 4, b.u8() as usize % 2, b.u8() as u64 % 16),
            2 => Op::Adjust(
                b.u8() as usize % 4,
                b.u8() as usize % 2,
                (b.u8() % 13) as i64 - 6,
                b.u8() as usize % 4,
            ),
            3..=6 => {
                let o = b.u8() as usize % ORDERS;
                let n = 1 + (tag as usize / 16) % 4; // 1-4 lines
                let mut lines = Vec::with_capacity(n);
                for _ in 0..n {
                    let x = b.u8();
                    // mostly valid lines: 0xF8.. the empty sku, 0xF0..0xF7 quantity 0
                    let sku = if x >= 0xF8 { 3 } else { (x as usize) % 3 };
                    let qty = if (0xF0..0xF8).contains(&x) {
                        0
                    } else {
                        ((x as u64 >> 3) & 3) + 1
                    };
                    lines.push((sku, (x as usize >> 2) % 2, qty));
                }
                let ttl = (b.u8() % 5) as u64; // 0 is invalid
                                               // A few "no lines at all"
                if tag >= 0xF0 {
                    lines.clear();
                }
                Op::Reserve(o, lines, ttl)
            }
            7 | 8 => Op::Commit(b.u8() as usize % ORDERS),
            9 => Op::Release(b.u8() as usize % ORDERS),
            10 => {
                let x = b.u8();
                Op::Expire(if x == 0xFF { DAY + 1000 } else { x as u64 * 40 })
            }
            11 => Op::Advance(b.u8() as u64 * 25),
            12 | 13 => {
                let x = b.u8();
                Op::Pay(
                    (x as usize & 7) % 6,
                    b.u8() as usize % ORDERS,
                    x & 0x40 == 0,
                    x & 0x80 == 0 || x & 0x38 != 0,
                )
            }
            14 => Op::Checkpoint,
            // Each reopen scans the zero tail of every segment byte by byte (recovery's
            // `valid_frame_after`), ~0.5 s per reopen under the fuzzer's instrumentation:
            // at most MAX_REOPENS per input, the rest are checkpoints.
            _ if reopens < MAX_REOPENS => {
                reopens += 1;
                Op::Reopen
            }
            _ => Op::Checkpoint,
        };
        ops.push(op);
    }
    (on_disk, ops)
}

fn pay_id(p: usize) -> &'static str {
    // index 5 is invalid (empty)
    ["p0", "p1", "p2", "p3", "p4", ""][p]
}

fn order_id(o: usize) -> String {
    format!("o{o}")
}

fn named(lines: &[(usize, usize, u64)]) -> Lines {
    lines
        .iter()
        .map(|(s, w, q)| (SKUS[*s].to_string(), WHS[*w].to_string(), *q))
        .collect()
}

fn apply(model: &mut Model, op: &Op) -> Res {
    match op {
        Op::Set(s, w, n) => model.set(SKUS[*s], WHS[*w], *n),
        Op::Adjust(s, w, d, a) => model.adjust(SKUS[*s], WHS[*w], *d, &format!("a{a}")),
        Op::Reserve(o, lines, ttl) => model.reserve(&order_id(*o), &named(lines), *ttl),
        Op::Commit(o) => model.commit(&order_id(*o)),
        Op::Release(o) => model.release(&order_id(*o)),
        Op::Advance(ms) => {
            model.now += ms;
            Res::Ok(String::new())
        }
        Op::Expire(ms) => {
            model.now += ms;
            model.expire_due()
        }
        Op::Pay(p, o, succeeded, currency_ok) => {
            model.pay(pay_id(*p), &order_id(*o), *succeeded, *currency_ok)
        }
        Op::Checkpoint | Op::Reopen => Res::Ok(String::new()),
    }
}

struct Harness {
    ledger: Option<Ledger>,
    clock: Arc<ManualClock>,
    dir: Option<PathBuf>,
}

impl Harness {
    fn open(&self) -> Ledger {
        match &self.dir {
            None => Ledger::in_memory(Options {
                clock: self.clock.clone(),
                ..Options::default()
            }),
            Some(d) => Ledger::open(
                d,
                Options {
                    durability: Durability::Sync,
                    clock: self.clock.clone(),
                    segment_bytes: 1 << 16,
                    ..Options::default()
                },
            )
            .unwrap_or_else(|e| panic!("the ledger does not reopen: {e}")),
        }
    }

    fn ledger(&self) -> &Ledger {
        self.ledger.as_ref().expect("ledger open")
    }

    fn run(&mut self, op: &Op) -> Res {
        let ledger = self.ledger();
        match op {
            Op::Set(s, w, n) => real::set(ledger, SKUS[*s], WHS[*w], *n),
            Op::Adjust(s, w, d, a) => {
                real::adjust(ledger, SKUS[*s], WHS[*w], *d, &format!("a{a}"), None)
            }
            Op::Reserve(o, lines, ttl) => real::reserve(ledger, &order_id(*o), &named(lines), *ttl),
            Op::Commit(o) => real::commit(ledger, &order_id(*o)),
            Op::Release(o) => real::release(ledger, &order_id(*o)),
            Op::Advance(ms) => {
                self.clock.advance(*ms);
                Res::Ok(String::new())
            }
            Op::Expire(ms) => {
                self.clock.advance(*ms);
                real::expire_due(ledger)
            }
            Op::Pay(p, o, succeeded, currency_ok) => {
                real::pay(ledger, pay_id(*p), &order_id(*o), *succeeded, *currency_ok)
            }
            Op::Checkpoint => {
                if self.dir.is_some() {
                    if let Err(e) = ledger.checkpoint() {
                        panic!("checkpoint failed: {e}");
                    }
                }
                Res::Ok(String::new())
            }
            Op::Reopen => {
                if self.dir.is_some() {
                    if let Some(l) = self.ledger.take() {
                        if let Err(e) = l.close() {
                            panic!("close failed: {e}");
                        }
                    }
                    self.ledger = Some(self.open());
                }
                Res::Ok(String::new())
            }
        }
    }
}

/// Compares every cell and order (no pruned order may come back: after a reopen both sides
/// run an expiry pass).
fn check_same(ledger: &Ledger, model: &Model, at: usize, op: &Op) {
    let ids: Vec<String> = (0..ORDERS).map(order_id).collect();
    let d = diff(ledger, model, &SKUS[..3], &WHS, &ids, false);
    assert!(d.is_empty(), "op #{at} {op:?}:\n  {}", d.join("\n  "));
}

static NEXT_DIR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh folder under `base` (removed by [`Dir`]'s drop).
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one input did (so a test can check the inputs are not vacuous).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub ops: usize,
    /// reservations created
    pub created: usize,
    /// commits and payments answered `paid`
    pub paid: usize,
    pub reopens: usize,
}

/// Runs one input; panics on any disagreement. `base`: where on-disk ledgers go (a fresh
/// sub-folder per call); `None` runs every input in memory.
pub fn run(data: &[u8], base: Option<&Path>) -> Stats {
    let mut stats = Stats::default();
    let (on_disk, ops) = decode(data);
    let dir = match (on_disk, base) {
        (true, Some(b)) => {
            let n = NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = b.join(format!("ops-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            Some(Dir(d))
        }
        _ => None,
    };
    let clock = Arc::new(ManualClock::new(T0));
    let mut h = Harness {
        ledger: None,
        clock,
        dir: dir.as_ref().map(|d| d.0.clone()),
    };
    h.ledger = Some(h.open());
    let mut model = Model::at(T0);
    for (i, op) in ops.iter().enumerate() {
        let want = apply(&mut model, op);
        let got = h.run(op);
        assert_eq!(got, want, "op #{i} {op:?}");
        stats.ops += 1;
        match (op, &got) {
            (Op::Reserve(..), Res::Ok(a)) if a.starts_with("created") => stats.created += 1,
            (Op::Commit(_) | Op::Pay(..), Res::Ok(a)) if a == "paid" => stats.paid += 1,
            (Op::Reopen, _) if h.dir.is_some() => stats.reopens += 1,
            _ => {}
        }
        if let Op::Reopen = op {
            if h.dir.is_some() {
                // Orders, adjustment and payment keys past their retention may come back
                // from the log; the next expiry pass prunes them again (the clock did not
                // move). Both sides run one.
                let want = model.expire_due();
                let got = real::expire_due(h.ledger());
                assert_eq!(got, want, "op #{i}: expiry pass after reopen");
            }
        }
        check_same(h.ledger(), &model, i, op);
    }
    // The events feed is gap-free from 1 (in memory and on disk alike, as long as no
    // checkpoint pruned it: retention keeps every segment written within 24 h).
    let ledger = h.ledger();
    let last = ledger.last_seq();
    let evs = ledger
        .events(0, 100_000)
        .unwrap_or_else(|e| panic!("events: {e}"));
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "events feed has a gap");
    }
    if h.dir.is_some() {
        // In memory nothing is durable: `last_seq` stays 0 there.
        assert_eq!(evs.len() as u64, last, "events end at last_seq");
    }
    if let Some(l) = h.ledger.take() {
        if h.dir.is_some() {
            if let Err(e) = l.close() {
                panic!("close failed: {e}");
            }
        }
    }
    stats
}
