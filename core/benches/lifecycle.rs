//! The outside benchmark of issue "Core v2": whole reservation lifecycles (reserve, then
//! commit or release) through the public Rust API, beside two naive baselines measured in the
//! same run: a lean one (one mutex, foldhash maps, no per-lookup allocation, finished orders
//! removed) and one that keeps finished orders for the retention, as the ledger must.
//!
//! Run: `cargo bench -p stockledger --bench lifecycle` (env `SECONDS=3` per configuration,
//! `SKUS=10000`, `THREADS=1,2`; a filter `=zipf/ledger` names one configuration exactly). Each configuration gets a fresh store; workloads are built before the
//! timed region; every reserve is counted and must succeed (stock is ample), except in the
//! flash sale, where the hot sku's refusals are checked against its stock (no oversell).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use smallvec::SmallVec;
use stockledger::{Command, Ledger, Line, Options, Source};

const WAREHOUSE: &str = "kol";
const STOCK: u64 = 1_000_000_000_000;
/// Reservations a client keeps open before it commits or releases the oldest.
const WINDOW: usize = 256;
/// Distinct line sets per client, built before timing.
const TEMPLATES: usize = 1 << 16;
/// Units of the hot sku in the flash sale.
const FLASH_STOCK: u64 = 50_000;
const BATCH: usize = 512;

type FoldMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
/// A sku's cells: (warehouse, cell index).
type SkuCells = SmallVec<[(Box<str>, u32); 1]>;
/// An order: (still reserved, held (cell, qty) lines).
type NaiveOrder = (bool, SmallVec<[(u32, u32); 4]>);
type MakeStore<'a> = Box<dyn Fn() -> Arc<dyn Store> + 'a>;

trait Store: Send + Sync {
    fn reserve(&self, id: &str, lines: &[Line]) -> bool;
    fn finish(&self, id: &str, commit: bool);
    /// Units shipped (committed) and still reserved of one sku.
    fn figures(&self, sku: &str) -> (u64, u64);
}

impl Store for Ledger {
    fn reserve(&self, id: &str, lines: &[Line]) -> bool {
        self.reserve_ack(id, lines, 900).is_ok()
    }
    fn finish(&self, id: &str, commit: bool) {
        let r = if commit {
            self.commit_ack(id)
        } else {
            self.release_ack(id)
        };
        assert!(r.is_ok(), "finish {id}: {r:?}");
    }
    fn figures(&self, sku: &str) -> (u64, u64) {
        let l = self.stock(sku, WAREHOUSE).expect("stock");
        (l.on_hand, l.reserved)
    }
}

/// One mutex around foldhash maps; lookups borrow, finished orders are removed (or, with
/// `retain`, kept with their status as the ledger keeps them for 24 h).
struct Naive {
    retain: bool,
    inner: Mutex<NaiveInner>,
}

#[derive(Default)]
struct NaiveInner {
    skus: FoldMap<Box<str>, SkuCells>,
    cells: Vec<(u64, u64)>,
    orders: FoldMap<Box<str>, NaiveOrder>,
    finished: VecDeque<Box<str>>,
}

impl NaiveInner {
    fn cell(&self, sku: &str, wh: &str) -> Option<u32> {
        let cells = self.skus.get(sku)?;
        cells.iter().find(|(w, _)| &**w == wh).map(|(_, c)| *c)
    }
}

impl Naive {
    fn new(retain: bool, initial: &[(String, u64)]) -> Naive {
        let mut inner = NaiveInner::default();
        for (sku, stock) in initial {
            let id = inner.cells.len() as u32;
            inner.cells.push((*stock, 0));
            let mut v = SmallVec::new();
            v.push((Box::from(WAREHOUSE), id));
            inner.skus.insert(sku.as_str().into(), v);
        }
        Naive {
            retain,
            inner: Mutex::new(inner),
        }
    }
}

impl Store for Naive {
    fn reserve(&self, id: &str, lines: &[Line]) -> bool {
        let mut g = self.inner.lock();
        if g.orders.contains_key(id) {
            return false;
        }
        let mut held: SmallVec<[(u32, u32); 4]> = SmallVec::new();
        for l in lines {
            let Some(c) = g.cell(&l.sku, &l.warehouse) else {
                return false;
            };
            let (on_hand, reserved) = g.cells[c as usize];
            if on_hand - reserved < l.qty {
                return false;
            }
            held.push((c, l.qty as u32));
        }
        for &(c, q) in &held {
            g.cells[c as usize].1 += q as u64;
        }
        g.orders.insert(id.into(), (true, held));
        true
    }
    fn finish(&self, id: &str, commit: bool) {
        let mut g = self.inner.lock();
        let g = &mut *g;
        let held = if self.retain {
            let Some(o) = g.orders.get_mut(id) else {
                panic!("unknown order {id}")
            };
            assert!(o.0);
            o.0 = false;
            g.finished.push_back(id.into());
            o.1.clone()
        } else {
            g.orders.remove(id).expect("known order").1
        };
        for (c, q) in held {
            let cell = &mut g.cells[c as usize];
            cell.1 -= q as u64;
            if commit {
                cell.0 -= q as u64;
            }
        }
    }
    fn figures(&self, sku: &str) -> (u64, u64) {
        let g = self.inner.lock();
        let c = g.cell(sku, WAREHOUSE).expect("known sku");
        g.cells[c as usize]
    }
}

struct Workload {
    skus: Vec<String>,
    stock: Vec<u64>,
    /// Per client: line sets as indexes into `skus`.
    templates: Vec<Vec<Vec<Line>>>,
    flash: bool,
}

fn sku_name(i: usize) -> String {
    format!("sku-{i:07}")
}

impl Workload {
    fn new(sku_count: usize, clients: usize, flash: bool) -> Workload {
        let skus: Vec<String> = (0..sku_count).map(sku_name).collect();
        let mut stock = vec![STOCK; sku_count];
        if flash {
            stock[0] = FLASH_STOCK;
        }
        let zipf = Zipf::new(sku_count as f64, 1.01).expect("zipf");
        let templates = (0..clients)
            .map(|c| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(7 + c as u64);
                (0..TEMPLATES)
                    .map(|_| {
                        let n = rng.random_range(1..=4usize);
                        let mut picked: SmallVec<[usize; 4]> = SmallVec::new();
                        if flash && rng.random_bool(0.5) {
                            picked.push(0);
                        }
                        while picked.len() < n {
                            // Zipf over 1..=n; the flash sku 0 is only drawn on purpose.
                            let s = zipf.sample(&mut rng) as usize % sku_count;
                            let s = if flash && s == 0 { 1 } else { s };
                            if !picked.contains(&s) {
                                picked.push(s);
                            }
                        }
                        picked
                            .iter()
                            .map(|&s| Line::new(skus[s].clone(), WAREHOUSE, 1))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Workload {
            skus,
            stock,
            templates,
            flash,
        }
    }

    fn initial(&self) -> Vec<(String, u64)> {
        self.skus
            .iter()
            .cloned()
            .zip(self.stock.iter().copied())
            .collect()
    }
}

/// "o-{client}-{i}" without `fmt` (which would cost more than a naive store's operation).
fn order_id(buf: &mut String, client: usize, i: u64) {
    buf.clear();
    buf.push_str("o-");
    push_decimal(buf, client as u64);
    buf.push('-');
    push_decimal(buf, i);
}

fn push_decimal(buf: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        buf.push(d as char);
    }
}

#[derive(Default)]
struct Tally {
    lifecycles: u64,
    refused: u64,
    /// Units committed per sku index 0 (the hot sku) and in all.
    shipped_hot: u64,
    shipped: u64,
    /// Process CPU (all threads) per lifecycle, in ns.
    cpu_ns: f64,
}

/// One client: reserves, keeps a window open, commits even orders and releases odd ones.
fn client(store: &dyn Store, w: &Workload, c: usize, stop: &AtomicBool) -> Tally {
    let templates = &w.templates[c];
    let mut open: VecDeque<(u64, usize)> = VecDeque::with_capacity(WINDOW + 1);
    let mut id = String::with_capacity(32);
    let mut t = Tally::default();
    let mut i = 0u64;
    let finish = |t: &mut Tally, (n, tpl): (u64, usize), id: &mut String| {
        order_id(id, c, n);
        let commit = n % 2 == 0;
        store.finish(id, commit);
        t.lifecycles += 1;
        if commit {
            let lines = &templates[tpl];
            t.shipped += lines.len() as u64;
            t.shipped_hot += lines.iter().filter(|l| l.sku == w.skus[0]).count() as u64;
        }
    };
    while i & 63 != 0 || !stop.load(Ordering::Relaxed) {
        let tpl = (i as usize) & (TEMPLATES - 1);
        order_id(&mut id, c, i);
        if store.reserve(&id, &templates[tpl]) {
            open.push_back((i, tpl));
            if open.len() > WINDOW {
                let o = open.pop_front().expect("non-empty");
                finish(&mut t, o, &mut id);
            }
        } else {
            assert!(w.flash, "a reserve failed with ample stock");
            t.refused += 1;
        }
        i += 1;
    }
    while let Some(o) = open.pop_front() {
        finish(&mut t, o, &mut id);
    }
    t
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds this process has used (every thread), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn run(store: Arc<dyn Store>, w: &Arc<Workload>, clients: usize, secs: f64) -> (f64, Tally) {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (store, w, stop) = (store.clone(), w.clone(), stop.clone());
            std::thread::spawn(move || client(&*store, &w, c, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for h in handles {
        let t = h.join().expect("client thread");
        total.lifecycles += t.lifecycles;
        total.refused += t.refused;
        total.shipped += t.shipped;
        total.shipped_hot += t.shipped_hot;
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.cpu_ns = (cpu_seconds() - cpu_before) * 1e9 / total.lifecycles.max(1) as f64;
    check(&*store, w, &total);
    (total.lifecycles as f64 / elapsed, total)
}

/// Nothing reserved is left, nothing oversold, and the shipped units equal the commits.
fn check(store: &dyn Store, w: &Workload, t: &Tally) {
    let mut shipped = 0;
    for (i, sku) in w.skus.iter().enumerate() {
        let (on_hand, reserved) = store.figures(sku);
        assert_eq!(reserved, 0, "{sku} still reserved");
        assert!(on_hand <= w.stock[i], "{sku} grew");
        shipped += w.stock[i] - on_hand;
    }
    assert_eq!(shipped, t.shipped, "shipped units differ from the commits");
    let (hot_on_hand, _) = store.figures(&w.skus[0]);
    assert_eq!(w.stock[0] - hot_on_hand, t.shipped_hot);
}

/// The ledger with retention 0 and a prune pass every 4,096 finishes: the engine's own
/// cost beside the lean baseline, which keeps no finished orders either.
struct NoRetention {
    ledger: Ledger,
    finishes: AtomicU64,
}

impl Store for NoRetention {
    fn reserve(&self, id: &str, lines: &[Line]) -> bool {
        Store::reserve(&self.ledger, id, lines)
    }
    fn finish(&self, id: &str, commit: bool) {
        Store::finish(&self.ledger, id, commit);
        if self.finishes.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.ledger.expire_due().expect("prune");
        }
    }
    fn figures(&self, sku: &str) -> (u64, u64) {
        Store::figures(&self.ledger, sku)
    }
}

fn ledger_without_retention(w: &Workload) -> Arc<dyn Store> {
    let ledger = Ledger::in_memory(Options {
        retention_ms: 0,
        ..Options::default()
    });
    for (sku, stock) in w.initial() {
        ledger
            .set_stock(&sku, WAREHOUSE, stock, Source::Warehouse)
            .expect("set_stock");
    }
    Arc::new(NoRetention {
        ledger,
        finishes: AtomicU64::new(0),
    })
}

fn ledger(w: &Workload) -> Arc<dyn Store> {
    let l = Ledger::in_memory(Options::default());
    for (sku, stock) in w.initial() {
        l.set_stock(&sku, WAREHOUSE, stock, Source::Warehouse)
            .expect("set_stock");
    }
    Arc::new(l)
}

/// Batches of reserves then of commits or releases through `execute`. Each batch is built
/// outside the timed region; only the time inside `execute` counts, per client, and the
/// clients' rates are summed.
fn run_batches(w: &Workload, clients: usize, secs: f64) -> f64 {
    let l = Arc::new(Ledger::in_memory(Options::default()));
    for (sku, stock) in w.initial() {
        l.set_stock(&sku, WAREHOUSE, stock, Source::Warehouse)
            .expect("set_stock");
    }
    let wall = Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let l = l.clone();
            let templates = w.templates[c].clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut busy = Duration::ZERO;
                let mut done = 0u64;
                let mut n = 0u64;
                let mut id = String::new();
                while started.elapsed() < wall {
                    let mut reserves = Vec::with_capacity(BATCH);
                    let mut finishes = Vec::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        id.clear();
                        id.push_str("b-");
                        push_decimal(&mut id, c as u64);
                        id.push('-');
                        push_decimal(&mut id, n);
                        let lines = &templates[n as usize & (TEMPLATES - 1)];
                        reserves.push(Command::reserve(&id, lines, 900));
                        finishes.push(if n.is_multiple_of(2) {
                            Command::commit(&id)
                        } else {
                            Command::release(&id)
                        });
                        n += 1;
                    }
                    let t = Instant::now();
                    let r = l.execute(&reserves).expect("batch");
                    let f = l.execute(&finishes).expect("batch");
                    busy += t.elapsed();
                    assert!(r.iter().all(|r| r.is_ok()), "a batched reserve failed");
                    assert!(f.iter().all(|r| r.is_ok()), "a batched finish failed");
                    done += BATCH as u64;
                }
                done as f64 / busy.as_secs_f64()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("batch thread"))
        .sum()
}

fn main() {
    let secs: f64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let sku_count: usize = std::env::var("SKUS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    // `=zipf/ledger` names one configuration exactly; anything else matches by substring.
    let want = |name: &str| {
        filter.as_deref().is_none_or(|f| match f.strip_prefix('=') {
            Some(exact) => name == exact,
            None => name.contains(f),
        })
    };
    let thread_counts: Vec<usize> = match std::env::var("THREADS") {
        Ok(t) => t.split(',').filter_map(|n| n.parse().ok()).collect(),
        Err(_) => vec![1, 2],
    };
    println!(
        "lifecycles/s (reserve, then commit or release), Zipf(1.01) over {sku_count} skus, 1-4 lines, {secs} s each; nproc {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "| workload | store | threads | lifecycles/s | CPU ns/lifecycle | refused | load avg |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- |");
    let uniform = Arc::new(Workload::new(sku_count, 2, false));
    let flash = Arc::new(Workload::new(sku_count, 2, true));
    for (wname, w) in [("zipf", &uniform), ("flash", &flash)] {
        for &threads in &thread_counts {
            let stores: [(&str, MakeStore); 4] = [
                ("ledger", Box::new(|| ledger(w))),
                (
                    "ledger-retention-0",
                    Box::new(|| ledger_without_retention(w)),
                ),
                (
                    "naive-lean",
                    Box::new(|| Arc::new(Naive::new(false, &w.initial()))),
                ),
                (
                    "naive-retain",
                    Box::new(|| Arc::new(Naive::new(true, &w.initial()))),
                ),
            ];
            for (sname, make) in stores.iter() {
                if !want(&format!("{wname}/{sname}")) {
                    continue;
                }
                let (rate, t) = run(make(), w, threads, secs);
                println!(
                    "| {wname} | {sname} | {threads} | {:.0} | {:.0} | {} | {} |",
                    rate,
                    t.cpu_ns,
                    t.refused,
                    loadavg()
                );
            }
        }
    }
    if want("batch") {
        for &threads in &thread_counts {
            let rate = run_batches(&uniform, threads, secs);
            println!(
                "| zipf | ledger execute x{BATCH} | {threads} | {rate:.0} | - | 0 | {} |",
                loadavg()
            );
        }
    }
}
