//! Durability benchmarks (not criterion: they report throughput, latency percentiles and
//! fsync counts together). Run: `cargo bench -p stockledger --bench durability`.
//! `STOCKLEDGER_BENCH_QUICK=1` shrinks every size for a smoke run; `ROWS=callers` (or `batch`,
//! `callers64`, `callers64,batch2`) runs only the rows so named and skips replay and open.
//!
//! Prints a markdown table: the disk's raw fdatasync rate, `sync` throughput with 1, 8 and
//! 64 concurrent callers and with the batch entry point, p50/p99 of an acknowledged
//! reservation, fsyncs/s and records per fsync, the process's CPU (user + system, all
//! threads) per reservation, which says whether a row is bound by the CPU or by the disk,
//! replay speed, and the time to open a ledger
//! of 1M cells and 1M live reservations from a snapshot plus 100k log records.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stockledger::{Command, Durability, Ledger, Line, Options};

fn quick() -> bool {
    std::env::var("STOCKLEDGER_BENCH_QUICK").is_ok()
}

fn scale(n: u64) -> u64 {
    if quick() {
        (n / 100).max(10)
    } else {
        n
    }
}

fn bench_dir(name: &str) -> std::path::PathBuf {
    let base =
        std::env::var("STOCKLEDGER_BENCH_DIR").unwrap_or_else(|_| "target/bench-data".into());
    let dir = std::path::Path::new(&base).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open(dir: &std::path::Path, durability: Durability) -> Ledger {
    Ledger::open(
        dir,
        Options {
            durability,
            checkpoint_every_bytes: 0,
            ..Options::default()
        },
    )
    .unwrap()
}

/// User + system CPU of the whole process so far, in microseconds.
fn process_cpu_us() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a zeroed rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(rc, 0, "getrusage");
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(u.ru_utime) + us(u.ru_stime)
}

/// fdatasync after a 4 KiB write into a preallocated (zero-filled) file.
fn raw_fsync_rate() -> f64 {
    let dir = bench_dir("raw");
    let path = dir.join("f");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let n = scale(2000);
    f.write_all_at(&vec![0u8; (n as usize + 1) * 4096], 0)
        .unwrap();
    f.sync_all().unwrap();
    let buf = vec![7u8; 4096];
    let start = Instant::now();
    for i in 0..n {
        f.write_all_at(&buf, i * 4096).unwrap();
        f.sync_data().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

const SKUS: usize = 10_000;

fn stocked(dir: &std::path::Path, durability: Durability) -> Ledger {
    let l = open(dir, durability);
    let cmds: Vec<Command> = (0..SKUS)
        .map(|i| Command::SetStock {
            sku: format!("s{i}"),
            warehouse: "w".into(),
            on_hand: 1_000_000_000,
        })
        .collect();
    for chunk in cmds.chunks(1000) {
        assert!(l.execute(chunk).unwrap().iter().all(|r| r.is_ok()));
    }
    l
}

struct Row {
    name: String,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    fsyncs_per_sec: f64,
    records_per_fsync: f64,
    cpu_us_per_reservation: f64,
}

fn concurrent_callers(callers: usize) -> Row {
    let dir = bench_dir(&format!("callers-{callers}"));
    let l = Arc::new(stocked(&dir, Durability::Sync));
    let per_caller = (scale(400_000) / callers as u64).clamp(50, 20_000);
    let before = l.stats();
    let cpu_before = process_cpu_us();
    let start = Instant::now();
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|c| {
                let l = l.clone();
                s.spawn(move || {
                    let mut h = Histogram::<u64>::new(3).unwrap();
                    for i in 0..per_caller {
                        let lines = [Line::new(
                            format!("s{}", (i as usize * 7 + c * 13) % SKUS),
                            "w",
                            1,
                        )];
                        let t = Instant::now();
                        l.reserve_ack(&format!("c{c}-{i}"), &lines, 900).unwrap();
                        h.record(t.elapsed().as_micros() as u64).unwrap();
                    }
                    h
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = process_cpu_us() - cpu_before;
    let after = l.stats();
    let mut all = Histogram::<u64>::new(3).unwrap();
    for h in &hists {
        all.add(h).unwrap();
    }
    let n = per_caller * callers as u64;
    let fsyncs = (after.fsyncs - before.fsyncs) as f64;
    Row {
        name: format!("sync, {callers} concurrent caller(s), 1 reservation per call"),
        per_sec: n as f64 / elapsed,
        p50_us: all.value_at_quantile(0.5) as f64,
        p99_us: all.value_at_quantile(0.99) as f64,
        fsyncs_per_sec: fsyncs / elapsed,
        records_per_fsync: (after.records_written - before.records_written) as f64
            / fsyncs.max(1.0),
        cpu_us_per_reservation: cpu_us / n as f64,
    }
}

/// `callers` threads each calling `execute` with 1,000 reserves; every batch is built
/// before the clock starts, so only the entry point and the log are timed.
fn batch_entry_point(callers: usize) -> Row {
    let dir = bench_dir(&format!("batch-{callers}"));
    let l = Arc::new(stocked(&dir, Durability::Sync));
    let calls = scale(1_000) / callers as u64;
    let batches: Vec<Vec<Vec<Command>>> = (0..callers)
        .map(|c| {
            (0..calls)
                .map(|b| {
                    (0..1000u64)
                        .map(|i| {
                            Command::reserve(
                                &format!("b{c}-{b}-{i}"),
                                &[Line::new(
                                    format!("s{}", (b * 1000 + i + c as u64 * 7) as usize % SKUS),
                                    "w",
                                    1,
                                )],
                                900,
                            )
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let before = l.stats();
    let cpu_before = process_cpu_us();
    let start = Instant::now();
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = batches
            .iter()
            .map(|mine| {
                let l = l.clone();
                s.spawn(move || {
                    let mut h = Histogram::<u64>::new(3).unwrap();
                    for cmds in mine {
                        let t = Instant::now();
                        assert!(l.execute(cmds).unwrap().iter().all(|r| r.is_ok()));
                        h.record(t.elapsed().as_micros() as u64).unwrap();
                    }
                    h
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = process_cpu_us() - cpu_before;
    let after = l.stats();
    let mut h = Histogram::<u64>::new(3).unwrap();
    for one in &hists {
        h.add(one).unwrap();
    }
    let fsyncs = (after.fsyncs - before.fsyncs) as f64;
    Row {
        name: format!(
            "sync, batch entry point, {callers} caller(s), 1,000 reservations per call (latency is per call)"
        ),
        per_sec: (calls * callers as u64 * 1000) as f64 / elapsed,
        cpu_us_per_reservation: cpu_us / (calls * callers as u64 * 1000) as f64,
        p50_us: h.value_at_quantile(0.5) as f64,
        p99_us: h.value_at_quantile(0.99) as f64,
        fsyncs_per_sec: fsyncs / elapsed,
        records_per_fsync: (after.records_written - before.records_written) as f64
            / fsyncs.max(1.0),
    }
}

/// Replay speed: open a ledger whose whole state is in the log.
fn replay_speed() -> (u64, Duration) {
    let dir = bench_dir("replay");
    let records = scale(1_000_000);
    {
        let l = stocked(&dir, Durability::Async);
        let mut n = 0;
        while n < records {
            let cmds: Vec<Command> = (0..1000)
                .map(|i| Command::Reserve {
                    order_id: format!("r{n}-{i}"),
                    lines: vec![Line::new(format!("s{}", (n + i) as usize % SKUS), "w", 1)],
                    ttl_seconds: 3600,
                })
                .collect();
            assert!(l.execute(&cmds).unwrap().iter().all(|r| r.is_ok()));
            n += 1000;
        }
        l.close().unwrap();
    }
    let start = Instant::now();
    let l = open(&dir, Durability::Sync);
    let took = start.elapsed();
    assert_eq!(l.stats().reservations as u64, records);
    (records + SKUS as u64, took)
}

/// 1M cells, 1M live reservations, a snapshot, then 100k more log records; time to open.
fn big_open() -> (usize, usize, Duration, u64) {
    let dir = bench_dir("big");
    let cells = scale(1_000_000) as usize;
    let reservations = scale(1_000_000) as usize;
    let tail = scale(100_000) as usize;
    {
        let l = open(&dir, Durability::Async);
        for chunk in (0..cells).collect::<Vec<_>>().chunks(10_000) {
            let cmds: Vec<Command> = chunk
                .iter()
                .map(|i| Command::SetStock {
                    sku: format!("sku-{i:07}"),
                    warehouse: "w".into(),
                    on_hand: 100,
                })
                .collect();
            assert!(l.execute(&cmds).unwrap().iter().all(|r| r.is_ok()));
        }
        let reserve = |from: usize, to: usize| {
            for chunk in (from..to).collect::<Vec<_>>().chunks(10_000) {
                let cmds: Vec<Command> = chunk
                    .iter()
                    .map(|i| Command::Reserve {
                        order_id: format!("order-{i:08}"),
                        lines: vec![Line::new(format!("sku-{:07}", i % cells), "w", 1)],
                        ttl_seconds: 3600,
                    })
                    .collect();
                assert!(l.execute(&cmds).unwrap().iter().all(|r| r.is_ok()));
            }
        };
        reserve(0, reservations);
        l.checkpoint().unwrap();
        reserve(reservations, reservations + tail);
        l.close().unwrap();
    }
    let start = Instant::now();
    let l = open(&dir, Durability::Sync);
    let took = start.elapsed();
    let s = l.stats();
    assert_eq!(s.reservations, reservations + tail);
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    (s.cells, s.reservations, took, bytes)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before the run: {}", load.trim());
    let rows = std::env::var("ROWS").unwrap_or_default();
    let fsync = raw_fsync_rate();
    println!("\n| workload | reservations/s | p50 µs | p99 µs | fsyncs/s | records/fsync | CPU µs/reservation |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| raw disk: 4 KiB write + fdatasync, preallocated file | - | - | - | {fsync:.0} | - | - |"
    );
    let all_rows: [(&str, &dyn Fn() -> Row); 5] = [
        ("callers1", &|| concurrent_callers(1)),
        ("callers8", &|| concurrent_callers(8)),
        ("callers64", &|| concurrent_callers(64)),
        ("batch1", &|| batch_entry_point(1)),
        ("batch2", &|| batch_entry_point(2)),
    ];
    for (kind, run) in all_rows {
        if !rows.is_empty() && !rows.split(',').any(|r| kind.starts_with(r)) {
            continue;
        }
        let row = run();
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} |",
            row.name,
            row.per_sec,
            row.p50_us,
            row.p99_us,
            row.fsyncs_per_sec,
            row.records_per_fsync,
            row.cpu_us_per_reservation
        );
    }
    if !rows.is_empty() {
        return;
    }
    let (records, took) = replay_speed();
    println!(
        "\nreplay: {records} records in {:.2} s = {:.0} records/s",
        took.as_secs_f64(),
        records as f64 / took.as_secs_f64()
    );
    let (cells, reservations, took, bytes) = big_open();
    println!(
        "open: {cells} cells + {reservations} live reservations (snapshot + 100k log records, {:.0} MiB on disk) in {:.2} s",
        bytes as f64 / (1 << 20) as f64,
        took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(
        std::env::var("STOCKLEDGER_BENCH_DIR").unwrap_or_else(|_| "target/bench-data".into()),
    );
}
