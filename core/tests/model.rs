//! Model-based property test: random sequences of every operation, valid and invalid, run
//! against the ledger and against a plain sequential model. Every result and the whole final
//! state must agree. A second property runs on disk with checkpoints and crash points
//! (copies of the folder taken between operations) and checks that every copy reopens to
//! exactly the model's state at that point.

mod common;
#[path = "support/model.rs"]
mod model;

use common::*;
use model::{diff, real, Lines, Model, Res, DAY};
use proptest::prelude::*;
use stockledger::{Durability, Ledger, Source, Status};

const SKUS: [&str; 3] = ["A", "B", "C"];
const WHS: [&str; 2] = ["w1", "w2"];

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
        Op::Reserve(o, lines, ttl) => model.reserve(&format!("o{o}"), &named(lines), *ttl),
        Op::Commit(o) => model.commit(&format!("o{o}")),
        Op::Release(o) => model.release(&format!("o{o}")),
        Op::Advance(ms) => {
            model.now += ms;
            Res::Ok(String::new())
        }
        Op::ExpireDue => model.expire_due(),
        Op::Checkpoint | Op::CrashPoint => Res::Ok(String::new()),
    }
}

fn run(ledger: &Ledger, clock: &stockledger::ManualClock, op: &Op) -> Res {
    match op {
        Op::Set(s, w, n) => real::set(ledger, SKUS[*s], WHS[*w], *n),
        Op::Adjust(s, w, d, a) => {
            real::adjust(ledger, SKUS[*s], WHS[*w], *d, &format!("a{a}"), None)
        }
        Op::Reserve(o, lines, ttl) => real::reserve(ledger, &format!("o{o}"), &named(lines), *ttl),
        Op::Commit(o) => real::commit(ledger, &format!("o{o}")),
        Op::Release(o) => real::release(ledger, &format!("o{o}")),
        Op::Advance(ms) => {
            clock.advance(*ms);
            Res::Ok(String::new())
        }
        Op::ExpireDue => real::expire_due(ledger),
        Op::Checkpoint => real::checkpoint(ledger),
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
    let ids: Vec<String> = (0..8).map(|o| format!("o{o}")).collect();
    let d = diff(ledger, model, &SKUS, &WHS, &ids, after_restart);
    prop_assert!(d.is_empty(), "{}", d.join("\n  "));
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
        let mut model = Model::at(T0);
        for (i, op) in ops.iter().enumerate() {
            let want = apply(&mut model, op);
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
            let mut model = Model::at(T0);
            for (i, op) in ops.iter().enumerate() {
                let want = apply(&mut model, op);
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
                        end += 48 + len; // a v2 frame header is 48 bytes
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
