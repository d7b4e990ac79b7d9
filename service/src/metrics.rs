//! Prometheus metrics named in http-api.md.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "stockledger_http_requests_total";
pub const HTTP_DURATION: &str = "stockledger_http_request_duration_seconds";
pub const RESERVATIONS: &str = "stockledger_reservations_total";
pub const WAL_FSYNC: &str = "stockledger_wal_fsync_seconds";
pub const WAL_BATCH: &str = "stockledger_wal_batch_records";
pub const OUTBOX_LAG: &str = "stockledger_outbox_lag_events";
/// Service-side view of group commit: reservations per `execute` call and how long the call
/// took (staging plus the wait for the log). The WAL's own fsync and batch figures are
/// recorded by the core under the two `stockledger_wal_*` names.
pub const RESERVE_BATCH: &str = "stockledger_reserve_batch_requests";
pub const RESERVE_BATCH_WAIT: &str = "stockledger_reserve_batch_seconds";

const SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
const RECORDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// How often histogram samples are folded into their buckets when nobody scrapes.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds recorded histogram samples into buckets on a timer: without it they pile up
/// in memory, without bound, for as long as nobody scrapes `/metrics`.
pub fn spawn_upkeep(handle: PrometheusHandle, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

/// Installs the global recorder; the handle renders the text format.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WAL_FSYNC.into()), SECONDS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WAL_BATCH.into()), RECORDS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RESERVE_BATCH.into()), RECORDS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RESERVE_BATCH_WAIT.into()), SECONDS))
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status");
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request duration by route"
    );
    describe_counter!(RESERVATIONS, "Reservation requests by result");
    describe_histogram!(
        WAL_FSYNC,
        metrics::Unit::Seconds,
        "Time a batch of reservations waited for the log to be durable (group commit)"
    );
    describe_histogram!(
        WAL_BATCH,
        "Records per group-committed batch of reservations"
    );
    describe_gauge!(OUTBOX_LAG, "Durable events not yet delivered to Kafka");
    // Register every series so a scrape shows it before the first event of its kind.
    let _ = histogram!(WAL_FSYNC);
    let _ = histogram!(WAL_BATCH);
    gauge!(OUTBOX_LAG).set(0.0);
    counter!(RESERVATIONS, "result" => "created").absolute(0);
    Ok(handle)
}

/// Counts and times every routed request by its route template.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    record(route, resp.status().as_u16(), started.elapsed());
    resp
}

pub fn record(route: String, status: u16, took: Duration) {
    histogram!(HTTP_DURATION, "route" => route.clone()).record(took.as_secs_f64());
    counter!(HTTP_REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

pub fn reservation(result: &'static str) {
    // The two answers of nearly every request keep their handles: no registry lookup
    // (key hashing, label allocation) per reservation.
    static CREATED: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    static REPLAY: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    let cached = match result {
        "created" => &CREATED,
        "replay" => &REPLAY,
        _ => {
            counter!(RESERVATIONS, "result" => result).increment(1);
            return;
        }
    };
    cached
        .get_or_init(|| counter!(RESERVATIONS, "result" => result))
        .increment(1);
}

pub fn reserve_batch(requests: usize, took: Duration) {
    histogram!(RESERVE_BATCH).record(requests as f64);
    histogram!(RESERVE_BATCH_WAIT).record(took.as_secs_f64());
}

pub fn outbox_lag(lag: u64) {
    gauge!(OUTBOX_LAG).set(lag as f64);
}
