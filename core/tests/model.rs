//! Model-based property test: random sequences of every operation, valid and invalid, run
//! against the ledger and against a plain sequential model. Every result and the whole final
//! state must agree. A second property runs on disk with checkpoints and crash points
//! (copies of the folder taken between operations) and checks that every copy reopens to
//! exactly the model's state at that point.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use proptest::prelude::*;
use stockledger::{Durability, Error, Ledger, Line, Source, Status};

const SKUS: [&str; 3] = ["A", "B", "C"];
const WHS: [&str; 2] = ["w1", "w2"];
const DAY: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone)]
enum Op {
    Set(usize, usize, u64),
    Adjust(usize, usize, i64, usize),
    Reserve(usize, Vec<(usize, usize, u64)>, u64),
    Commit(usize),
    Release(usize),
    Advance(u64),
    ExpireDue,
    Checkpoint,
    CrashPoint,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 0..2usize, 0..12u64).prop_map(|(s, w, n)| Op::Set(s, w, n)),
        2 => (0..3usize, 0..2usize, -6..6i64, 0..4usize).prop_map(|(s, w, d, a)| Op::Adjust(s, w, d, a)),
        6 => (0..8usize, prop::collection::vec((0..3usize, 0..2usize, 0..5u64), 0..4), 0..4u64)
            .prop_map(|(o, l, t)| Op::Reserve(o, l, t)),
        2 => (0..8usize).prop_map(Op::Commit),
        2 => (0..8usize).prop_map(Op::Release),
        2 => prop_oneof![9 => 0..3000u64, 1 => Just(DAY + 1000)].prop_map(Op::Advance),
        1 => Just(Op::ExpireDue),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::CrashPoint),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct MOrder {
    lines: Vec<(String, String, u64)>,
    status: Status,
    expires_at: u64,
    finished_at: u64,
}

#[derive(Debug, Clone, Default)]
struct Model {
    now: u64,
    cells: BTreeMap<(String, String), (u64, u64)>,
    orders: BTreeMap<String, MOrder>,
    adjustments: HashMap<String, ((String, String), i64, u64)>,
}

/// A result reduced to what must agree.
#[derive(Debug, Clone, PartialEq)]
enum Res {
    Ok(String),
    Err(String),
}

fn err(e: Error) -> Res {
    match e {
        Error::InsufficientStock { shortfalls } => {
            Res::Err(format!("insufficient_stock {shortfalls:?}"))
        }
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

fn sorted(lines: &[(String, String, u64)]) -> Vec<(String, String, u64)> {
    let mut v = lines.to_vec();
    v.sort();
    v
}

impl Model {
    fn level(&self, k: &(String, String)) -> (u64, u64) {
        self.cells.get(k).copied().unwrap_or((0, 0))
    }

    fn apply(&mut self, op: &Op) -> Res {
        match op {
            Op::Set(s, w, n) => {
                let k = (SKUS[*s].to_string(), WHS[*w].to_string());
                let (on_hand, reserved) = self.level(&k);
                if *n < reserved {
                    return Res::Err(format!("below_reserved {on_hand} {reserved} {n}"));
                }
                self.cells.insert(k, (*n, reserved));
                Res::Ok(format!("{n} {reserved}"))
            }
            Op::Adjust(s, w, d, a) => {
                if *d == 0 {
                    return Res::Err("invalid_request".into());
                }
                let k = (SKUS[*s].to_string(), WHS[*w].to_string());
                let key = format!("a{a}");
                if let Some((cell, delta, _)) = self.adjustments.get(&key) {
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
                self.adjustments.insert(key, (k, *d, self.now));
                Res::Ok(format!("{next} {reserved}"))
            }
            Op::Reserve(o, lines, ttl) => {
                let id = format!("o{o}");
                if lines.is_empty() {
                    return Res::Err("invalid_request".into());
                }
                for (i, l) in lines.iter().enumerate() {
                    if l.2 == 0 || lines[..i].iter().any(|p| (p.0, p.1) == (l.0, l.1)) {
                        return Res::Err("invalid_request".into());
                    }
                }
                if *ttl == 0 {
                    return Res::Err("invalid_request".into());
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
                let shortfalls: Vec<stockledger::Shortfall> = named
                    .iter()
                    .filter_map(|(s, w, q)| {
                        let (on_hand, reserved) = self.level(&(s.clone(), w.clone()));
                        let available = on_hand - reserved;
                        (available < *q).then(|| stockledger::Shortfall {
                            sku: s.clone(),
                            warehouse: w.clone(),
                            requested: *q,
                            available,
                        })
                    })
                    .collect();
                if !shortfalls.is_empty() {
                    return Res::Err(format!("insufficient_stock {shortfalls:?}"));
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
                        expires_at: self.now + ttl * 1000,
                        finished_at: 0,
                    },
                );
                Res::Ok("created reserved".into())
            }
            Op::Commit(o) => {
                let now = self.now;
                let Some(order) = self.orders.get_mut(&format!("o{o}")) else {
                    return Res::Err("order_not_found".into());
                };
                match order.status {
                    Status::Paid => return Res::Ok("paid".into()),
                    Status::Reserved if now < order.expires_at => {}
                    _ => return Res::Err("order_not_active".into()),
                }
                order.status = Status::Paid;
                order.finished_at = now;
                for (s, w, q) in order.lines.clone() {
                    if let Some(c) = self.cells.get_mut(&(s, w)) {
                        c.0 -= q;
                        c.1 -= q;
                    }
                }
                Res::Ok("paid".into())
            }
            Op::Release(o) => {
                let now = self.now;
                let Some(order) = self.orders.get_mut(&format!("o{o}")) else {
                    return Res::Err("order_not_found".into());
                };
                match order.status {
                    Status::Paid => return Res::Err("order_paid".into()),
                    Status::Released | Status::Expired => {
                        return Res::Ok(order.status.as_str().into())
                    }
                    Status::Reserved => {}
                }
                order.status = Status::Released;
                order.finished_at = now;
                for (s, w, q) in order.lines.clone() {
                    if let Some(c) = self.cells.get_mut(&(s, w)) {
                        c.1 -= q;
                    }
                }
                Res::Ok("released".into())
            }
            Op::Advance(ms) => {
                self.now += ms;
                Res::Ok(String::new())
            }
            Op::ExpireDue => {
                let now = self.now;
                let mut expired = Vec::new();
                for (id, order) in self.orders.iter_mut() {
                    if order.status == Status::Reserved && order.expires_at <= now {
                        order.status = Status::Expired;
                        order.finished_at = now;
                        expired.push(id.clone());
                        for (s, w, q) in order.lines.clone() {
                            if let Some(c) = self.cells.get_mut(&(s, w)) {
                                c.1 -= q;
                            }
                        }
                    }
                }
                let cutoff = now.saturating_sub(DAY);
                self.orders
                    .retain(|_, o| !(o.status.is_finished() && o.finished_at < cutoff));
                self.adjustments.retain(|_, a| a.2 >= cutoff);
                expired.sort();
                Res::Ok(format!("{expired:?}"))
            }
            Op::Checkpoint | Op::CrashPoint => Res::Ok(String::new()),
        }
    }
}

fn run(ledger: &Ledger, clock: &stockledger::ManualClock, op: &Op) -> Res {
    let cell = |s: &usize, w: &usize| (SKUS[*s], WHS[*w]);
    match op {
        Op::Set(s, w, n) => {
            let (s, w) = cell(s, w);
            match ledger.set_stock(s, w, *n, Source::Warehouse) {
                Ok(l) => Res::Ok(format!("{} {}", l.on_hand, l.reserved)),
                Err(e) => err(e),
            }
        }
        Op::Adjust(s, w, d, a) => {
            let (s, w) = cell(s, w);
            match ledger.adjust_stock(s, w, *d, &format!("a{a}"), None, Source::Warehouse) {
                Ok(l) => Res::Ok(format!("{} {}", l.on_hand, l.reserved)),
                Err(e) => err(e),
            }
        }
        Op::Reserve(o, lines, ttl) => {
            let lines: Vec<Line> = lines
                .iter()
                .map(|(s, w, q)| Line::new(SKUS[*s], WHS[*w], *q))
                .collect();
            match ledger.reserve(&format!("o{o}"), &lines, *ttl) {
                Ok(r) if r.created => Res::Ok(format!("created {}", r.reservation.status.as_str())),
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
            clock.advance(*ms);
            Res::Ok(String::new())
        }
        Op::ExpireDue => match ledger.expire_due() {
            Ok(mut v) => {
                v.sort();
                Res::Ok(format!("{v:?}"))
            }
            Err(e) => err(e),
        },
        Op::Checkpoint => match ledger.checkpoint() {
            Ok(_) => Res::Ok(String::new()),
            Err(e) => err(e),
        },
        Op::CrashPoint => Res::Ok(String::new()),
    }
}

/// `after_restart`: the ledger was reopened. Pruning after retention writes no record, so
/// a reopened ledger may hold again a finished order the live one had pruned; the domain
/// keeps finished orders *at least* 24 h, so that is allowed (found by proptest: reserve,
/// commit, advance a day, expire_due, reopen).
fn assert_same_state(
    ledger: &Ledger,
    model: &Model,
    after_restart: bool,
) -> Result<(), TestCaseError> {
    for s in SKUS {
        for w in WHS {
            let (on_hand, reserved) = model.level(&(s.to_string(), w.to_string()));
            let got = ledger.stock(s, w).unwrap();
            prop_assert_eq!(
                (got.on_hand, got.reserved, got.available),
                (on_hand, reserved, on_hand - reserved),
                "cell {} {}",
                s,
                w
            );
        }
    }
    for o in 0..8 {
        let id = format!("o{o}");
        let got = ledger.reservation(&id).unwrap();
        match (got, model.orders.get(&id)) {
            (None, None) => {}
            (Some(r), Some(m)) => {
                prop_assert_eq!(r.status, m.status, "status of {}", id);
                prop_assert_eq!(r.expires_at, m.expires_at);
                let lines: Vec<_> = r
                    .lines
                    .iter()
                    .map(|l| (l.sku.clone(), l.warehouse.clone(), l.qty))
                    .collect();
                prop_assert_eq!(sorted(&lines), sorted(&m.lines));
            }
            (Some(r), None)
                if after_restart
                    && r.status.is_finished()
                    && r.finished_at.unwrap_or(0) < model.now.saturating_sub(DAY) => {}
            (g, m) => prop_assert!(false, "order {}: ledger {:?} model {:?}", id, g, m),
        }
    }
    ledger.check_invariants().map_err(TestCaseError::fail)?;
    Ok(())
}

fn cases(default: u32) -> u32 {
    std::env::var("STOCKLEDGER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), ..ProptestConfig::default() })]

    #[test]
    fn ledger_agrees_with_the_model(ops in prop::collection::vec(op(), 1..80)) {
        let (ledger, clock) = memory();
        let mut model = Model { now: T0, ..Model::default() };
        for (i, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got = run(&ledger, &clock, op);
            prop_assert_eq!(&got, &want, "op #{} {:?}", i, op);
        }
        assert_same_state(&ledger, &model, false)?;
        // The event stream is gap-free from 1.
        let evs = ledger.events(0, 10_000).unwrap();
        for (i, e) in evs.iter().enumerate() {
            prop_assert_eq!(e.seq, i as u64 + 1);
        }
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "LOCK" || name.to_string_lossy().ends_with(".tmp") {
            continue;
        }
        std::fs::copy(entry.path(), to.join(name)).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000) / 40, ..ProptestConfig::default() })]

    /// Crash points: a copy of the folder between operations is what a crash right there
    /// would leave (sync mode: everything acknowledged is on disk). Each copy must reopen to
    /// the model's state at that point, with garbage appended to its log as a torn write.
    #[test]
    fn durable_state_survives_checkpoints_and_crash_points(
        ops in prop::collection::vec(op(), 1..40),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let mut crash_points = Vec::new();
        {
            let (ledger, clock) = on_disk(&live, Durability::Sync);
            let mut model = Model { now: T0, ..Model::default() };
            for (i, op) in ops.iter().enumerate() {
                let want = model.apply(op);
                let got = run(&ledger, &clock, op);
                prop_assert_eq!(&got, &want, "op #{} {:?}", i, op);
                if matches!(op, Op::CrashPoint) {
                    let copy = dir.path().join(format!("crash-{i}"));
                    copy_dir(&live, &copy);
                    crash_points.push((copy, model.clone()));
                }
            }
            crash_points.push((live.clone(), model.clone()));
        }
        for (k, (path, model)) in crash_points.iter().enumerate() {
            if k + 1 < crash_points.len() && !garbage.is_empty() {
                // A torn write after the last acknowledged record.
                let segs: Vec<_> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
                if let Some(last) = segs.iter().max() {
                    let bytes = std::fs::read(last).unwrap();
                    // The end of the last frame: walk the frames by their length fields.
                    let mut end = 64;
                    while end + 8 <= bytes.len() {
                        let len = u32::from_le_bytes(bytes[end + 4..end + 8].try_into().unwrap()) as usize;
                        if len == 0 { break; }
                        end += 28 + len;
                    }
                    let mut torn = bytes.clone();
                    for (j, g) in garbage.iter().enumerate() {
                        if end + j < torn.len() { torn[end + j] = *g | 1; }
                    }
                    std::fs::write(last, torn).unwrap();
                }
            }
            let (ledger, _) = on_disk(path, Durability::Sync);
            assert_same_state(&ledger, model, true)?;
        }
    }
}

/// The input proptest found (2026-12-02): an order pruned by the live ledger after its
/// retention comes back, finished, when the folder is reopened (pruning writes no record).
/// Allowed ("at least 24 h"), but the reopened state must be consistent and the order must
/// be finished, never live again.
#[test]
fn an_order_pruned_before_a_restart_may_come_back_only_as_finished() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (ledger, clock) = on_disk(dir.path(), Durability::Sync);
        ledger.set_stock("B", "w1", 1, Source::Warehouse).unwrap();
        ledger.reserve("o0", &[line("B", "w1", 1)], 1).unwrap();
        ledger.commit("o0").unwrap();
        clock.advance(DAY + 1000);
        assert!(ledger.expire_due().unwrap().is_empty());
        assert_eq!(
            ledger.reservation("o0").unwrap(),
            None,
            "pruned after retention"
        );
    }
    let (ledger, _) = on_disk(dir.path(), Durability::Sync);
    if let Some(r) = ledger.reservation("o0").unwrap() {
        assert_eq!(r.status, Status::Paid);
    }
    let level = ledger.stock("B", "w1").unwrap();
    assert_eq!((level.on_hand, level.reserved), (0, 0));
    ledger.check_invariants().unwrap();
}
