//! Criterion benchmarks of the in-memory ledger (durability off), each beside a naive
//! baseline (one `Mutex<HashMap>` for everything) on the same workload where it applies.
//! Run: `cargo bench -p stockledger --bench ledger`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use stockledger::{Command, Ledger, Line, Options, Source};

const SKUS: usize = 100_000;
const STOCK: u64 = 1_000_000_000_000;
/// Orders kept open before each is released or committed.
const WINDOW: usize = 64;

/// The two things a workload needs from a store.
trait Store: Send + Sync {
    fn reserve(&self, id: &str, lines: &[Line]) -> bool;
    fn finish(&self, id: &str, commit: bool);
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
        assert!(r.is_ok());
    }
}

/// The naive baseline: one mutex around every cell and every reservation.
#[derive(Default)]
struct Naive {
    inner: Mutex<NaiveInner>,
}

#[derive(Default)]
struct NaiveInner {
    cells: HashMap<(String, String), (u64, u64)>,
    orders: HashMap<String, Vec<Line>>,
}

impl Store for Naive {
    fn reserve(&self, id: &str, lines: &[Line]) -> bool {
        let mut g = self.inner.lock();
        let fits = lines.iter().all(|l| {
            g.cells
                .get(&(l.sku.clone(), l.warehouse.clone()))
                .is_some_and(|(on_hand, reserved)| on_hand - reserved >= l.qty)
        });
        if !fits || g.orders.contains_key(id) {
            return false;
        }
        for l in lines {
            if let Some(c) = g.cells.get_mut(&(l.sku.clone(), l.warehouse.clone())) {
                c.1 += l.qty;
            }
        }
        g.orders.insert(id.to_string(), lines.to_vec());
        true
    }
    fn finish(&self, id: &str, commit: bool) {
        let mut g = self.inner.lock();
        if let Some(lines) = g.orders.remove(id) {
            for l in lines {
                if let Some(c) = g.cells.get_mut(&(l.sku, l.warehouse)) {
                    c.1 -= l.qty;
                    if commit {
                        c.0 -= l.qty;
                    }
                }
            }
        }
    }
}

fn sku(i: usize) -> String {
    format!("sku-{i:06}")
}

fn ledger() -> Ledger {
    let l = Ledger::in_memory(Options::default());
    for i in 0..SKUS {
        l.set_stock(&sku(i), "w", STOCK, Source::Warehouse).unwrap();
    }
    l
}

fn naive() -> Naive {
    let n = Naive::default();
    for i in 0..SKUS {
        n.inner
            .lock()
            .cells
            .insert((sku(i), "w".into()), (STOCK, 0));
    }
    n
}

/// Orders of 1-4 distinct lines over a Zipf(1.01) sku mix, generated once.
fn zipf_orders(count: usize, seed: u64) -> Vec<Vec<Line>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let zipf = Zipf::new(SKUS as f64, 1.01).unwrap();
    (0..count)
        .map(|_| {
            let mut lines: Vec<Line> = Vec::new();
            let n = rng.random_range(1..=4);
            while lines.len() < n {
                let s = sku(zipf.sample(&mut rng) as usize - 1);
                if !lines.iter().any(|l| l.sku == s) {
                    lines.push(Line::new(s, "w", rng.random_range(1..=3)));
                }
            }
            lines
        })
        .collect()
}

/// Each thread reserves `per_thread` orders, releasing or committing each `WINDOW` orders
/// later; returns the wall time of the whole run.
fn run<S: Store + ?Sized>(
    store: &S,
    orders: &[Vec<Line>],
    threads: usize,
    per_thread: u64,
    run_id: u64,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let mut ids: Vec<String> = (0..WINDOW).map(|_| String::with_capacity(32)).collect();
                let mut open = [false; WINDOW];
                for i in 0..per_thread {
                    let slot = (i as usize) % WINDOW;
                    if open[slot] {
                        store.finish(&ids[slot], i % 4 == 0);
                    }
                    let id = &mut ids[slot];
                    id.clear();
                    let _ = write!(id, "r{run_id}-t{t}-{i}");
                    let lines = &orders[(i as usize * threads + t) % orders.len()];
                    open[slot] = store.reserve(id, lines);
                }
                for slot in 0..WINDOW {
                    if open[slot] {
                        store.finish(&ids[slot], false);
                    }
                }
            });
        }
    });
    start.elapsed()
}

fn zipf_mix(c: &mut Criterion) {
    let orders = Arc::new(zipf_orders(1 << 18, 42));
    let ledger = ledger();
    let naive = naive();
    let mut group = c.benchmark_group("zipf_mix_100k_skus_1to4_lines");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut run_id = 0u64;
    for threads in [1usize, 2, 4] {
        group.bench_with_input(
            BenchmarkId::new("ledger", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    run_id += 1;
                    run(
                        &ledger,
                        &orders,
                        threads,
                        iters.div_ceil(threads as u64),
                        run_id,
                    )
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("naive_mutex", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    run_id += 1;
                    run(
                        &naive,
                        &orders,
                        threads,
                        iters.div_ceil(threads as u64),
                        run_id,
                    )
                })
            },
        );
    }
    group.finish();
}

fn single(c: &mut Criterion) {
    let ledger = ledger();
    let naive = naive();
    let mut group = c.benchmark_group("reserve_then_release");
    group.throughput(Throughput::Elements(1));
    let one = vec![Line::new(sku(7), "w", 1)];
    let four: Vec<Line> = (0..4).map(|i| Line::new(sku(100 + i), "w", 2)).collect();
    let mut id = String::new();
    let mut n = 0u64;
    for (name, lines) in [("1_line", &one), ("4_lines", &four)] {
        group.bench_function(BenchmarkId::new("ledger", name), |b| {
            b.iter(|| {
                n += 1;
                id.clear();
                let _ = write!(id, "s{n}");
                assert!(Store::reserve(&ledger, &id, lines));
                ledger.finish(&id, false);
            })
        });
        group.bench_function(BenchmarkId::new("naive_mutex", name), |b| {
            b.iter(|| {
                n += 1;
                id.clear();
                let _ = write!(id, "s{n}");
                assert!(naive.reserve(&id, lines));
                naive.finish(&id, false);
            })
        });
    }
    group.finish();
}

fn hot_sku(c: &mut Criterion) {
    let ledger = ledger();
    let naive = naive();
    let hot = vec![vec![Line::new(sku(0), "w", 1)]];
    let mut group = c.benchmark_group("hot_sku_2_threads");
    group.throughput(Throughput::Elements(1));
    let mut run_id = 1_000_000u64;
    group.bench_function("ledger", |b| {
        b.iter_custom(|iters| {
            run_id += 1;
            run(&ledger, &hot, 2, iters.div_ceil(2), run_id)
        })
    });
    group.bench_function("naive_mutex", |b| {
        b.iter_custom(|iters| {
            run_id += 1;
            run(&naive, &hot, 2, iters.div_ceil(2), run_id)
        })
    });
    group.finish();
}

fn batch(c: &mut Criterion) {
    let ledger = ledger();
    let orders = zipf_orders(1000, 9);
    let mut group = c.benchmark_group("batch_1000_reserves_then_1000_releases");
    group.throughput(Throughput::Elements(1000));
    let mut n = 0u64;
    group.bench_function("ledger", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let reserves: Vec<Command> = orders
                    .iter()
                    .enumerate()
                    .map(|(i, lines)| Command::Reserve {
                        order_id: format!("b{n}-{i}"),
                        lines: lines.clone(),
                        ttl_seconds: 900,
                    })
                    .collect();
                let releases: Vec<Command> = (0..orders.len())
                    .map(|i| Command::Release {
                        order_id: format!("b{n}-{i}"),
                    })
                    .collect();
                let start = Instant::now();
                let r = ledger.execute(&reserves).unwrap();
                let f = ledger.execute(&releases).unwrap();
                total += start.elapsed();
                assert!(r.iter().chain(f.iter()).all(|x| x.is_ok()));
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, single, hot_sku, zipf_mix, batch);
criterion_main!(benches);
