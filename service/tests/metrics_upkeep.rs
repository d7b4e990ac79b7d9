//! Defect 13: histogram samples piled up in memory, without bound, for as long as nobody
//! scraped `/metrics` (the exporter folds them into buckets only on a scrape or an upkeep).
//! The service now runs `metrics::spawn_upkeep` from start-up; this test measures the heap
//! with a counting allocator, once without the upkeep (the defect: it grows with every
//! sample) and once with it (it stays small), driving the upkeep's timer with paused time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ROUNDS: usize = 20;
const SAMPLES_PER_ROUND: usize = 100_000;

fn record(recorder: &PrometheusRecorder, n: usize) {
    metrics::with_local_recorder(recorder, || {
        let h = metrics::histogram!("stockledger_http_request_duration_seconds");
        for i in 0..n {
            h.record((i % 1000) as f64 / 1e5);
        }
    });
}

/// Heap growth over `ROUNDS` rounds of samples, one upkeep period of paused time apart.
async fn growth(upkeep: bool) -> isize {
    let recorder = PrometheusBuilder::new().build_recorder();
    let every = Duration::from_secs(5);
    let task = upkeep.then(|| stockledger_service::metrics::spawn_upkeep(recorder.handle(), every));
    record(&recorder, 1000); // the first samples allocate the histogram itself
    tokio::time::advance(every).await;
    tokio::task::yield_now().await;
    let start = LIVE_BYTES.load(Ordering::Relaxed);
    for _ in 0..ROUNDS {
        record(&recorder, SAMPLES_PER_ROUND);
        // Let the upkeep's tick fire and its task run, as 5 s of a live service would.
        tokio::time::advance(every).await;
        tokio::task::yield_now().await;
    }
    let grown = LIVE_BYTES.load(Ordering::Relaxed) - start;
    if let Some(t) = task {
        t.abort();
    }
    grown
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn histogram_samples_do_not_pile_up_between_scrapes() {
    let samples = (ROUNDS * SAMPLES_PER_ROUND) as isize;
    let without = growth(false).await;
    let with = growth(true).await;
    eprintln!("heap growth over {samples} samples: {without} B without upkeep, {with} B with it");
    // Without upkeep every sample stays (8 bytes each and more): what the defect was.
    assert!(
        without >= samples * 4,
        "without upkeep grew only {without} B"
    );
    // With it, what stays is bounded by one period's samples, not by the run.
    assert!(
        with < (SAMPLES_PER_ROUND * 8 * 4) as isize,
        "with upkeep grew {with} B over {samples} samples"
    );
}
