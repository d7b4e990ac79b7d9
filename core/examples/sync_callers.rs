//! Profiling aid for many single `sync` callers: N threads each call `reserve_ack` in a loop
//! on a `sync` ledger; prints throughput, records per fsync, and the process's CPU time and
//! context switches per call (`getrusage`), which tell a
//! wait for the disk from work on the CPU.
//! `cargo run -p stockledger --release --example sync_callers -- [callers] [seconds] [dir]`
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stockledger::{Command, Durability, Ledger, Line, Options};

const SKUS: usize = 10_000;

/// (user + system seconds, voluntary + involuntary context switches) of the whole process,
/// threads that have exited included.
fn usage() -> (f64, u64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return (0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let switches = (u.ru_nvcsw + u.ru_nivcsw) as u64;
    (secs(u.ru_utime) + secs(u.ru_stime), switches)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let callers: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(64);
    let seconds: f64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(3.0);
    let dir = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "target/bench-data/sync-callers".into());
    let _ = std::fs::remove_dir_all(&dir);
    let options = Options {
        durability: Durability::Sync,
        checkpoint_every_bytes: 0,
        ..Options::default()
    };
    let l = Ledger::open(&dir, options).expect("open");
    let stock: Vec<Command> = (0..SKUS)
        .map(|i| Command::SetStock {
            sku: format!("s{i}"),
            warehouse: "w".into(),
            on_hand: 1_000_000_000,
        })
        .collect();
    for chunk in stock.chunks(1000) {
        let all_ok = l.execute(chunk).expect("stock").iter().all(|r| r.is_ok());
        assert!(all_ok);
    }
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let before = (l.stats(), usage(), Instant::now());
    std::thread::scope(|s| {
        for c in 0..callers {
            let (l, stop, done) = (&l, &stop, &done);
            s.spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let lines = [Line::new(format!("s{}", (i * 7 + c * 13) % SKUS), "w", 1)];
                    l.reserve_ack(&format!("c{c}-{i}"), &lines, 900)
                        .expect("reserve");
                    i += 1;
                }
                done.fetch_add(i as u64, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let (stats, (cpu, switches), start) = before;
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu_after, switches_after) = usage();
    let after = l.stats();
    let n = done.load(Ordering::Relaxed) as f64;
    let fsyncs = (after.fsyncs - stats.fsyncs) as f64;
    let records = (after.records_written - stats.records_written) as f64;
    println!(
        "{callers} callers: {:.0} calls/s, {:.1} records/fsync, {:.0} fsyncs/s, \
         CPU {:.2} us/call ({:.2} cores), {:.2} context switches/call, load {}",
        n / elapsed,
        records / fsyncs.max(1.0),
        fsyncs / elapsed,
        (cpu_after - cpu) * 1e6 / n,
        (cpu_after - cpu) / elapsed,
        (switches_after - switches) as f64 / n,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
