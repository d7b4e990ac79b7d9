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
//! Only the public `stockledger` API is used. This file is included by path from the fuzz
//! crate, so it depends on nothing but `stockledger` and `std`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stockledger::{
    Durability, Error, Ledger, Line, ManualClock, Options, Payment, PaymentAnswer, Shortfall,
    Source, Status,
};

pub const MAX_OPS: usize = 256;
pub const MAX_REOPENS: usize = 4;
const T0: u64 = 1_800_000_000_000;
const DAY: u64 = 24 * 3600 * 1000;
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

#[derive(Debug, Clone, PartialEq)]
struct MOrder {
    lines: Vec<(String, String, u64)>,
    status: Status,
    created_at: u64,
    expires_at: u64,
    finished_at: u64,
}

#[derive(Debug, Clone)]
struct MPay {
    order: String,
    succeeded: bool,
    answer: PaymentAnswer,
    at: u64,
}

#[derive(Debug, Clone, Default)]
struct Model {
    now: u64,
    cells: BTreeMap<(String, String), (u64, u64)>,
    orders: BTreeMap<String, MOrder>,
    adjustments: HashMap<String, ((String, String), i64, u64)>,
    payments: HashMap<String, MPay>,
}

/// A result reduced to what must agree.
#[derive(Debug, Clone, PartialEq)]
pub enum Res {
    Ok(String),
    Err(String),
}

fn err(e: Error) -> Res {
    match e {
        Error::InsufficientStock { shortfalls } => Res::Err(format!(
            "insufficient_stock {}",
            shortfalls_str(&shortfalls)
        )),
        Error::BelowReserved {
            on_hand,
            reserved,
            requested_on_hand,
        } => Res::Err(format!(
            "below_reserved {on_hand} {reserved} {requested_on_hand}"
        )),
        e => Res::Err(e.code().as_str().to_string()),
    }
}

fn shortfalls_str(s: &[Shortfall]) -> String {
    let mut v: Vec<String> = s
        .iter()
        .map(|s| format!("{}/{}:{}<{}", s.sku, s.warehouse, s.available, s.requested))
        .collect();
    v.sort();
    v.join(",")
}

fn sorted(lines: &[(String, String, u64)]) -> Vec<(String, String, u64)> {
    let mut v = lines.to_vec();
    v.sort();
    v
}

fn key(s: usize, w: usize) -> (String, String) {
    (SKUS[s].to_string(), WHS[w].to_string())
}

fn pay_id(p: usize) -> &'static str {
    // index 5 is invalid (empty)
    ["p0", "p1", "p2", "p3", "p4", ""][p]
}

impl Model {
    fn level(&self, k: &(String, String)) -> (u64, u64) {
        self.cells.get(k).copied().unwrap_or((0, 0))
    }

    fn release_lines(&mut self, lines: &[(String, String, u64)], ship: bool) {
        for (s, w, q) in lines {
            if let Some(c) = self.cells.get_mut(&(s.clone(), w.clone())) {
                c.1 -= q;
                if ship {
                    c.0 -= q;
                }
            }
        }
    }

    fn finish(&mut self, id: &str, status: Status, ship: bool) {
        let now = self.now;
        let o = self.orders.get_mut(id).expect("model order");
        o.status = status;
        o.finished_at = now;
        let lines = o.lines.clone();
        self.release_lines(&lines, ship);
    }

    fn apply(&mut self, op: &Op) -> Res {
        match op {
            Op::Set(s, w, n) => {
                if *s == 3 {
                    return Res::Err("invalid_request".into());
                }
                let k = key(*s, *w);
                let (on_hand, reserved) = self.level(&k);
                if *n < reserved {
                    return Res::Err(format!("below_reserved {on_hand} {reserved} {n}"));
                }
                self.cells.insert(k, (*n, reserved));
                Res::Ok(format!("{n} {reserved}"))
            }
            Op::Adjust(s, w, d, a) => {
                if *d == 0 || *s == 3 {
                    return Res::Err("invalid_request".into());
                }
                let k = key(*s, *w);
                let id = format!("a{a}");
                if let Some((cell, delta, _)) = self.adjustments.get(&id) {
                    if *cell != k || delta != d {
                        return Res::Err("adjustment_conflict".into());
                    }
                    let (o, r) = self.level(&k);
                    return Res::Ok(format!("{o} {r}"));
                }
                let (on_hand, reserved) = self.level(&k);
                let next = on_hand as i64 + d;
                if next < reserved as i64 {
                    return Res::Err(format!("below_reserved {on_hand} {reserved} {next}"));
                }
                self.cells.insert(k.clone(), (next as u64, reserved));
                self.adjustments.insert(id, (k, *d, self.now));
                Res::Ok(format!("{next} {reserved}"))
            }
            Op::Reserve(o, lines, ttl) => {
                let id = format!("o{o}");
                if lines.is_empty() || *ttl == 0 {
                    return Res::Err("invalid_request".into());
                }
                for (i, l) in lines.iter().enumerate() {
                    if l.2 == 0 || l.0 == 3 || lines[..i].iter().any(|p| (p.0, p.1) == (l.0, l.1)) {
                        return Res::Err("invalid_request".into());
                    }
                }
                let named: Vec<(String, String, u64)> = lines
                    .iter()
                    .map(|(s, w, q)| (SKUS[*s].to_string(), WHS[*w].to_string(), *q))
                    .collect();
                if let Some(existing) = self.orders.get(&id) {
                    if sorted(&existing.lines) != sorted(&named) {
                        return Res::Err("order_conflict".into());
                    }
                    return Res::Ok(format!("replay {}", existing.status.as_str()));
                }
                let shortfalls: Vec<Shortfall> = named
                    .iter()
                    .filter_map(|(s, w, q)| {
                        let (on_hand, reserved) = self.level(&(s.clone(), w.clone()));
                        let available = on_hand - reserved;
                        (available < *q).then(|| Shortfall {
                            sku: s.clone(),
                            warehouse: w.clone(),
                            requested: *q,
                            available,
                        })
                    })
                    .collect();
                if !shortfalls.is_empty() {
                    return Res::Err(format!(
                        "insufficient_stock {}",
                        shortfalls_str(&shortfalls)
                    ));
                }
                for (s, w, q) in &named {
                    if let Some(c) = self.cells.get_mut(&(s.clone(), w.clone())) {
                        c.1 += q;
                    }
                }
                self.orders.insert(
                    id,
                    MOrder {
                        lines: named,
                        status: Status::Reserved,
                        created_at: self.now,
                        expires_at: self.now + ttl * 1000,
                        finished_at: 0,
                    },
                );
                Res::Ok("created reserved".into())
            }
            Op::Commit(o) => {
                let id = format!("o{o}");
                let Some(order) = self.orders.get(&id) else {
                    return Res::Err("order_not_found".into());
                };
                match order.status {
                    Status::Paid => return Res::Ok("paid".into()),
                    Status::Reserved if self.now < order.expires_at => {}
                    _ => return Res::Err("order_not_active".into()),
                }
                self.finish(&id, Status::Paid, true);
                Res::Ok("paid".into())
            }
            Op::Release(o) => {
                let id = format!("o{o}");
                let Some(order) = self.orders.get(&id) else {
                    return Res::Err("order_not_found".into());
                };
                match order.status {
                    Status::Paid => return Res::Err("order_paid".into()),
                    Status::Released | Status::Expired => {
                        return Res::Ok(order.status.as_str().into())
                    }
                    Status::Reserved => {}
                }
                self.finish(&id, Status::Released, false);
                Res::Ok("released".into())
            }
            Op::Advance(ms) => {
                self.now += ms;
                Res::Ok(String::new())
            }
            Op::Expire(ms) => {
                self.now += ms;
                Res::Ok(self.expire_pass())
            }
            Op::Pay(p, o, succeeded, currency_ok) => self.pay(*p, *o, *succeeded, *currency_ok),
            Op::Checkpoint | Op::Reopen => Res::Ok(String::new()),
        }
    }

    fn expire_pass(&mut self) -> String {
        let now = self.now;
        let due: Vec<String> = self
            .orders
            .iter()
            .filter(|(_, o)| o.status == Status::Reserved && o.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            self.finish(id, Status::Expired, false);
        }
        let cutoff = now.saturating_sub(DAY);
        self.orders
            .retain(|_, o| !(o.status.is_finished() && o.finished_at < cutoff));
        self.adjustments.retain(|_, a| a.2 >= cutoff);
        self.payments.retain(|_, p| p.at >= cutoff);
        format!("{due:?}")
    }

    fn pay(&mut self, p: usize, o: usize, succeeded: bool, currency_ok: bool) -> Res {
        let pid = pay_id(p);
        let oid = format!("o{o}");
        if pid.is_empty() || !currency_ok {
            return Res::Err("invalid_request".into());
        }
        if let Some(seen) = self.payments.get(pid) {
            if seen.order != oid || seen.succeeded != succeeded {
                return Res::Err("payment_conflict".into());
            }
            return Res::Ok(seen.answer.as_str().into());
        }
        let Some(order) = self.orders.get(&oid) else {
            return Res::Err("order_not_found".into());
        };
        let now = self.now;
        let due = order.expires_at <= now;
        let status = order.status;
        let answer = match (succeeded, status) {
            (true, Status::Reserved) if !due => {
                self.finish(&oid, Status::Paid, true);
                PaymentAnswer::Paid
            }
            (true, Status::Reserved) => {
                self.finish(&oid, Status::Expired, false);
                self.late_payment(&oid)
            }
            (true, Status::Expired) => self.late_payment(&oid),
            (true, _) => PaymentAnswer::RefundRequired,
            (false, Status::Reserved) if due => {
                self.finish(&oid, Status::Expired, false);
                PaymentAnswer::Expired
            }
            (false, Status::Reserved) => {
                self.finish(&oid, Status::Released, false);
                PaymentAnswer::Released
            }
            (false, Status::Paid) => PaymentAnswer::Paid,
            (false, Status::Expired) => PaymentAnswer::Expired,
            (false, Status::Released) => PaymentAnswer::Released,
        };
        self.payments.insert(
            pid.to_string(),
            MPay {
                order: oid,
                succeeded,
                answer,
                at: now,
            },
        );
        Res::Ok(answer.as_str().into())
    }

    /// Reserve the expired order's lines again and commit at once, or a refund.
    fn late_payment(&mut self, oid: &str) -> PaymentAnswer {
        let order = self.orders[oid].clone();
        let fits = order.lines.iter().all(|(s, w, q)| {
            let (on_hand, reserved) = self.level(&(s.clone(), w.clone()));
            on_hand - reserved >= *q
        });
        if !fits {
            return PaymentAnswer::RefundRequired;
        }
        for (s, w, q) in &order.lines {
            if let Some(c) = self.cells.get_mut(&(s.clone(), w.clone())) {
                c.0 -= q;
            }
        }
        let ttl = order.expires_at - order.created_at;
        let now = self.now;
        let o = self.orders.get_mut(oid).expect("model order");
        o.status = Status::Paid;
        o.created_at = now;
        o.expires_at = now + ttl;
        o.finished_at = now;
        PaymentAnswer::Paid
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
            Op::Set(s, w, n) => match ledger.set_stock(SKUS[*s], WHS[*w], *n, Source::Warehouse) {
                Ok(l) => Res::Ok(format!("{} {}", l.on_hand, l.reserved)),
                Err(e) => err(e),
            },
            Op::Adjust(s, w, d, a) => match ledger.adjust_stock(
                SKUS[*s],
                WHS[*w],
                *d,
                &format!("a{a}"),
                None,
                Source::Warehouse,
            ) {
                Ok(l) => Res::Ok(format!("{} {}", l.on_hand, l.reserved)),
                Err(e) => err(e),
            },
            Op::Reserve(o, lines, ttl) => {
                let lines: Vec<Line> = lines
                    .iter()
                    .map(|(s, w, q)| Line::new(SKUS[*s], WHS[*w], *q))
                    .collect();
                match ledger.reserve(&format!("o{o}"), &lines, *ttl) {
                    Ok(r) if r.created => {
                        Res::Ok(format!("created {}", r.reservation.status.as_str()))
                    }
                    Ok(r) => Res::Ok(format!("replay {}", r.reservation.status.as_str())),
                    Err(e) => err(e),
                }
            }
            Op::Commit(o) => match ledger.commit(&format!("o{o}")) {
                Ok(r) => Res::Ok(r.status.as_str().into()),
                Err(e) => err(e),
            },
            Op::Release(o) => match ledger.release(&format!("o{o}")) {
                Ok(r) => Res::Ok(r.status.as_str().into()),
                Err(e) => err(e),
            },
            Op::Advance(ms) => {
                self.clock.advance(*ms);
                Res::Ok(String::new())
            }
            Op::Expire(ms) => {
                self.clock.advance(*ms);
                match ledger.expire_due() {
                    Ok(mut v) => {
                        v.sort();
                        Res::Ok(format!("{v:?}"))
                    }
                    Err(e) => err(e),
                }
            }
            Op::Pay(p, o, succeeded, currency_ok) => {
                let order_id = format!("o{o}");
                match ledger.pay(Payment {
                    payment_id: pay_id(*p),
                    order_id: &order_id,
                    succeeded: *succeeded,
                    amount_minor: 1999,
                    currency: if *currency_ok { "EUR" } else { "eur" },
                }) {
                    Ok(a) => Res::Ok(a.as_str().into()),
                    Err(e) => err(e),
                }
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

/// Compares every cell and order; `reopened`: a finished order past its retention that the
/// model pruned may be back after a reopen (pruning writes no record; "kept at least 24 h").
fn check_same(ledger: &Ledger, model: &Model, at: usize, op: &Op) {
    for s in 0..3 {
        for w in 0..2 {
            let k = key(s, w);
            let (on_hand, reserved) = model.level(&k);
            let got = ledger
                .stock(&k.0, &k.1)
                .unwrap_or_else(|e| panic!("op #{at} {op:?}: stock {k:?}: {e}"));
            assert_eq!(
                (got.on_hand, got.reserved, got.available),
                (on_hand, reserved, on_hand - reserved),
                "op #{at} {op:?}: cell {k:?}"
            );
        }
    }
    for o in 0..ORDERS {
        let id = format!("o{o}");
        let got = ledger
            .reservation(&id)
            .unwrap_or_else(|e| panic!("op #{at} {op:?}: reservation {id}: {e}"));
        match (got, model.orders.get(&id)) {
            (None, None) => {}
            (Some(r), Some(m)) => {
                assert_eq!(r.status, m.status, "op #{at} {op:?}: status of {id}");
                assert_eq!(
                    r.expires_at, m.expires_at,
                    "op #{at} {op:?}: expiry of {id}"
                );
                let lines: Vec<_> = r
                    .lines
                    .iter()
                    .map(|l| (l.sku.to_string(), l.warehouse.to_string(), l.qty))
                    .collect();
                assert_eq!(
                    sorted(&lines),
                    sorted(&m.lines),
                    "op #{at} {op:?}: lines of {id}"
                );
                if m.status.is_finished() {
                    assert_eq!(
                        r.finished_at,
                        Some(m.finished_at),
                        "op #{at} {op:?}: finished_at of {id}"
                    );
                }
            }
            (g, m) => panic!("op #{at} {op:?}: order {id}: ledger {g:?} model {m:?}"),
        }
    }
    if let Err(e) = ledger.check_invariants() {
        panic!("op #{at} {op:?}: invariants: {e}");
    }
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
    let mut model = Model {
        now: T0,
        ..Model::default()
    };
    for (i, op) in ops.iter().enumerate() {
        let want = model.apply(op);
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
                let want = model.expire_pass();
                let got = match h.ledger().expire_due() {
                    Ok(mut v) => {
                        v.sort();
                        format!("{v:?}")
                    }
                    Err(e) => panic!("op #{i}: expiry after reopen: {e}"),
                };
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
