//! Machine diagnostic: what a thread wake-up costs here. Two threads hand a turn back and
//! forth with `park`/`unpark` (the wait of a blocked `sync` caller); prints the time per
//! round trip (two wake-ups and two context switches). Pin both threads to one CPU
//! (`taskset -c 0`) to tell the cost of waking another (possibly halted) vCPU from the rest.
//! `cargo run -p stockledger --release --example wake_pingpong -- [round trips]`
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let turn = Arc::new(AtomicU64::new(0));
    let main_thread = std::thread::current();
    let other_turn = turn.clone();
    let other = std::thread::spawn(move || {
        for i in 0..rounds {
            while other_turn.load(Ordering::Acquire) != 2 * i + 1 {
                std::thread::park();
            }
            other_turn.store(2 * i + 2, Ordering::Release);
            main_thread.unpark();
        }
    });
    let start = Instant::now();
    for i in 0..rounds {
        turn.store(2 * i + 1, Ordering::Release);
        other.thread().unpark();
        while turn.load(Ordering::Acquire) != 2 * i + 2 {
            std::thread::park();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if other.join().is_err() {
        eprintln!("the other thread panicked");
        std::process::exit(1);
    }
    println!(
        "park/unpark ping-pong: {:.2} us per round trip ({rounds} round trips), load {}",
        elapsed * 1e6 / rounds as f64,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
