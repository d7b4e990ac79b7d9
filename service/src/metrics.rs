//! Prometheus metrics named in http-api.md.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "stockledger_http_requests_total";
pub const HTTP_DURATION: &str = "stockledger_http_request_duration_seconds";
pub const RESERVATIONS: &str = "stockledger_reservations_total";
pub const WAL_FSYNC: &str = "stockledger_wal_fsync_seconds";
pub const WAL_BATCH: &str = "stockledger_wal_batch_records";
pub const OUTBOX_LAG: &str = "stockledger_outbox_lag_events";
/// Service-side view of group commit, kept by name for the dashboards (deploy/grafana). Since
/// reservations are decided on the handler's task and each awaits its own ticket (no batch
/// thread, no `execute` call), there are no service-side batches: `..._requests` is exported
/// but no longer fed (the group commit's batch is `stockledger_wal_batch_records`), and
/// `..._seconds` is each reservation's decision plus its wait for the log.
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
    describe_histogram!(
        RESERVE_BATCH,
        "Not fed since reservations have no service-side batches (see stockledger_wal_batch_records)"
    );
    describe_histogram!(
        RESERVE_BATCH_WAIT,
        metrics::Unit::Seconds,
        "Time from a reservation's decision until its record is durable (staging plus group commit)"
    );
    // Register every series so a scrape shows it before the first event of its kind.
    let _ = histogram!(WAL_FSYNC);
    let _ = histogram!(WAL_BATCH);
    let _ = histogram!(RESERVE_BATCH);
    let _ = histogram!(RESERVE_BATCH_WAIT);
    gauge!(OUTBOX_LAG).set(0.0);
    counter!(RESERVATIONS, "result" => "created").absolute(0);
    Ok(handle)
}

/// Counts and times every routed request by its route template.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    record(route, resp.status().as_u16(), started.elapsed());
    resp
}

/// The handles of one route: its duration histogram and a counter per status seen. The
/// answers of nearly every request (200, 201) keep theirs apart: no lock, no search.
struct RouteHandles {
    duration: Histogram,
    ok: OnceLock<Counter>,
    created: OnceLock<Counter>,
    statuses: RwLock<Vec<(u16, Counter)>>,
}

impl RouteHandles {
    fn new(route: &str) -> RouteHandles {
        RouteHandles {
            duration: histogram!(HTTP_DURATION, "route" => route.to_string()),
            ok: OnceLock::new(),
            created: OnceLock::new(),
            statuses: RwLock::new(Vec::new()),
        }
    }

    fn count(&self, route: &str, status: u16) {
        let hot = match status {
            200 => Some(&self.ok),
            201 => Some(&self.created),
            _ => None,
        };
        if let Some(cell) = hot {
            cell.get_or_init(|| {
                counter!(HTTP_REQUESTS, "route" => route.to_string(), "status" => status.to_string())
            })
            .increment(1);
            return;
        }
        if let Ok(g) = self.statuses.read() {
            if let Some((_, c)) = g.iter().find(|(s, _)| *s == status) {
                c.increment(1);
                return;
            }
        }
        let c =
            counter!(HTTP_REQUESTS, "route" => route.to_string(), "status" => status.to_string());
        c.increment(1);
        if let Ok(mut g) = self.statuses.write() {
            if !g.iter().any(|(s, _)| *s == status) {
                g.push((status, c));
            }
        }
    }
}

/// Handles by route template. Bounded: keys are the router's templates and "unmatched",
/// statuses the few a route answers; after the first request of a kind, recording is a
/// read lock, a string-keyed lookup and two atomic updates (no label allocation, no
/// registry lookup).
fn route_handles() -> &'static RwLock<HashMap<Box<str>, RouteHandles>> {
    static ROUTES: OnceLock<RwLock<HashMap<Box<str>, RouteHandles>>> = OnceLock::new();
    ROUTES.get_or_init(Default::default)
}

pub fn record(route: &str, status: u16, took: Duration) {
    let routes = route_handles();
    if let Ok(g) = routes.read() {
        if let Some(h) = g.get(route) {
            h.duration.record(took.as_secs_f64());
            h.count(route, status);
            return;
        }
    }
    let Ok(mut g) = routes.write() else {
        // Poisoned only by a panic while recording: keep counting through the registry.
        histogram!(HTTP_DURATION, "route" => route.to_string()).record(took.as_secs_f64());
        counter!(HTTP_REQUESTS, "route" => route.to_string(), "status" => status.to_string())
            .increment(1);
        return;
    };
    let h = g
        .entry(route.into())
        .or_insert_with(|| RouteHandles::new(route));
    h.duration.record(took.as_secs_f64());
    h.count(route, status);
}

/// A route served without the router (see `server::ConnService`): its template, as the
/// router's `MatchedPath` gives it to [`track`], and its handles, resolved on first use.
pub struct FixedRoute {
    template: &'static str,
    handles: OnceLock<RouteHandles>,
}

impl FixedRoute {
    pub const fn new(template: &'static str) -> FixedRoute {
        FixedRoute {
            template,
            handles: OnceLock::new(),
        }
    }

    /// [`record`] for this route: the same series, without the lock and the string-keyed
    /// lookup of the route map.
    pub fn record(&self, status: u16, took: Duration) {
        let h = self
            .handles
            .get_or_init(|| RouteHandles::new(self.template));
        h.duration.record(took.as_secs_f64());
        h.count(self.template, status);
    }
}

pub static RESERVATION_ROUTE: FixedRoute = FixedRoute::new("/v1/reservations");
pub static RELEASE_ROUTE: FixedRoute = FixedRoute::new("/v1/reservations/{order_id}");
pub static PAYMENT_ROUTE: FixedRoute = FixedRoute::new("/v1/payments/callback");

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

/// Awaits a reservation's decision and durability, recording how long both took.
pub async fn timed_durable<T>(f: impl std::future::Future<Output = T>) -> T {
    static WAIT: OnceLock<Histogram> = OnceLock::new();
    let started = Instant::now();
    let r = f.await;
    WAIT.get_or_init(|| histogram!(RESERVE_BATCH_WAIT))
        .record(started.elapsed().as_secs_f64());
    r
}

pub fn outbox_lag(lag: u64) {
    gauge!(OUTBOX_LAG).set(lag as f64);
}
