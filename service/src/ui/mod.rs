//! The live status page (`GET /`, `/ui/`), the figures it shows (`GET /v1/stats`) and a
//! server-sent-events tail of the events feed (`GET /v1/events/stream`). See operations.md.
//!
//! Everything here only reads. A tracker samples the ledger's counters once a second and
//! tails the events feed to learn which skus are reserved most; every collection it keeps is
//! bounded (a window of seconds, a capped map of skus).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::state::{AppState, Shared};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// How often the tracker samples (the page's update period).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Samples kept: the window of the fsync p99 and of the hottest skus.
const WINDOW: usize = 10;
/// Distinct skus counted per second; beyond it a second's further skus are not counted.
const MAX_SKUS_PER_SECOND: usize = 10_000;
/// Hottest skus shown.
const HOT_SKUS: usize = 10;
/// Events the tracker reads per sample at most (it catches up over the next samples).
const EVENTS_PER_SAMPLE: usize = 20_000;
/// Streams served at once; more are answered 503 `overloaded`.
pub const MAX_STREAMS: usize = 32;
/// A stream this many events behind the log's end is closed: the client is too slow.
pub const MAX_BEHIND: u64 = 100_000;
/// Events per read of a stream.
const STREAM_PAGE: usize = 200;
/// How often an idle stream looks for new events.
const STREAM_POLL: Duration = Duration::from_millis(200);

struct Ui {
    tracker: Mutex<Tracker>,
    /// One sample at a time: two would read the same events and count them twice.
    sampling: Mutex<()>,
    started: AtomicBool,
    streams: Arc<tokio::sync::Semaphore>,
}

#[derive(Clone, Copy, Default)]
struct Counters {
    live: u64,
    reserved: u64,
    refused: u64,
    paid: u64,
    released: u64,
    expired: u64,
}

struct Sample {
    at: Instant,
    counters: Counters,
    /// Cumulative (upper bound, count) buckets of the fsync histogram.
    fsync: Vec<(f64, u64)>,
    /// Reservations per sku seen in the events of this sample.
    skus: HashMap<String, u64>,
}

#[derive(Default)]
struct Tracker {
    samples: VecDeque<Sample>,
    /// Events read so far (None until the first sample: history is not replayed).
    cursor: Option<u64>,
    /// The answer of `/v1/stats`, rebuilt at every sample.
    latest: Option<Arc<Value>>,
}

/// The page, its assets, `/v1/stats` and `/v1/events/stream`.
pub fn routes() -> Router<Shared> {
    let ui = Arc::new(Ui {
        tracker: Mutex::new(Tracker::default()),
        sampling: Mutex::new(()),
        started: AtomicBool::new(false),
        streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
    });
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route("/v1/stats", get(stats))
        .route("/v1/events/stream", get(stream))
        .layer(Extension(ui))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(s): State<Shared>, Extension(ui): Extension<Arc<Ui>>) -> Response {
    ui.start(&s);
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The page's figures; unauthenticated, holds no secret (operations.md lists the fields).
async fn stats(State(s): State<Shared>, Extension(ui): Extension<Arc<Ui>>) -> Response {
    ui.start(&s);
    let latest = ui.tracker.lock().ok().and_then(|t| t.latest.clone());
    let body = match latest {
        Some(v) => (*v).clone(),
        // Asked before the first sample: take one now.
        None => {
            let ui2 = ui.clone();
            let s2 = s.clone();
            match tokio::task::spawn_blocking(move || ui2.sample(&s2)).await {
                Ok(v) => (*v).clone(),
                Err(e) => {
                    return ApiError::unavailable(format!("stats: {e}")).into_response();
                }
            }
        }
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

impl Ui {
    /// Starts the sampling task once, holding the state weakly so it ends with the service.
    fn start(self: &Arc<Self>, s: &Shared) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak_state: Weak<AppState> = Arc::downgrade(s);
        let weak_ui = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(s), Some(ui)) = (weak_state.upgrade(), weak_ui.upgrade()) else {
                    return;
                };
                if s.ledger.unavailable_reason().is_some() && s.ledger.last_seq() == 0 {
                    continue;
                }
                // Reads the log's pages: off the async threads.
                if tokio::task::spawn_blocking(move || ui.sample(&s))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }

    /// Takes one sample and rebuilds the `/v1/stats` answer.
    fn sample(&self, s: &AppState) -> Arc<Value> {
        let Ok(_one) = self.sampling.lock() else {
            return Arc::new(json!({}));
        };
        let ledger = &s.ledger;
        let st = ledger.stats();
        let counters = Counters {
            live: st.live_reservations as u64,
            reserved: st.reserved,
            refused: st.refused,
            paid: st.committed,
            released: st.released,
            expired: st.expired,
        };
        let last_seq = ledger.last_seq();
        let cursor = self
            .tracker
            .lock()
            .ok()
            .and_then(|t| t.cursor)
            .unwrap_or(last_seq);
        let (skus, cursor) = count_reservations(ledger, cursor);
        let fsync = fsync_buckets(&s.metrics.render());
        let now = Instant::now();
        let Ok(mut t) = self.tracker.lock() else {
            return Arc::new(json!({}));
        };
        t.cursor = Some(cursor);
        t.samples.push_back(Sample {
            at: now,
            counters,
            fsync,
            skus,
        });
        while t.samples.len() > WINDOW + 1 {
            t.samples.pop_front();
        }
        let v = Arc::new(render(&t.samples, s, &st, last_seq));
        t.latest = Some(v.clone());
        v
    }
}

/// Reservations per sku in the events after `after`; returns them and the new cursor.
fn count_reservations(ledger: &stockledger::Ledger, mut after: u64) -> (HashMap<String, u64>, u64) {
    let mut skus: HashMap<String, u64> = HashMap::new();
    let mut read = 0;
    while read < EVENTS_PER_SAMPLE {
        let page = match ledger.events(after, 1000) {
            Ok(p) => p,
            // Pruned past our cursor (or the ledger stopped): start again from the end.
            Err(_) => return (skus, ledger.last_seq()),
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        read += page.len();
        for ev in &page {
            if ev.kind() != "reservation.created" {
                continue;
            }
            let v = ev.to_json();
            for line in v["lines"].as_array().into_iter().flatten() {
                if let Some(sku) = line["sku"].as_str() {
                    if let Some(n) = skus.get_mut(sku) {
                        *n += 1;
                    } else if skus.len() < MAX_SKUS_PER_SECOND {
                        skus.insert(sku.to_string(), 1);
                    }
                }
            }
        }
    }
    (skus, after)
}

/// The cumulative buckets of `stockledger_wal_fsync_seconds` from the Prometheus text.
fn fsync_buckets(text: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{}_bucket{{", crate::metrics::WAL_FSYNC);
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(b) => b,
                Err(_) => continue,
            }
        };
        let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else {
            continue;
        };
        out.push((bound, count as u64));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// p99 of the samples between two cumulative bucket lists: the upper bound of the bucket
/// holding the 99th percentile (None without samples).
fn p99(old: &[(f64, u64)], new: &[(f64, u64)]) -> Option<f64> {
    let delta: Vec<(f64, u64)> = new
        .iter()
        .map(|(b, c)| {
            let before = old
                .iter()
                .find(|(ob, _)| ob == b)
                .map(|(_, oc)| *oc)
                .unwrap_or(0);
            (*b, c.saturating_sub(before))
        })
        .collect();
    let total = delta.last().map(|(_, c)| *c)?;
    if total == 0 {
        return None;
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    let (bound, _) = delta.iter().find(|(_, c)| *c >= want)?;
    // Above the largest finite bucket: report that bound (the page shows it as "more than").
    let finite = if bound.is_finite() {
        *bound
    } else {
        delta
            .iter()
            .rev()
            .find(|(b, _)| b.is_finite())
            .map(|(b, _)| *b)?
    };
    Some(finite)
}

fn render(
    samples: &VecDeque<Sample>,
    s: &AppState,
    st: &stockledger::StatsSnapshot,
    last_seq: u64,
) -> Value {
    let newest = samples.back();
    let prev = samples.len().checked_sub(2).and_then(|i| samples.get(i));
    let oldest = samples.front();
    let rate = |f: fn(&Counters) -> u64| -> f64 {
        match (prev, newest) {
            (Some(a), Some(b)) => {
                let dt = b.at.duration_since(a.at).as_secs_f64();
                if dt > 0.0 {
                    (f(&b.counters).saturating_sub(f(&a.counters))) as f64 / dt
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    };
    let window_secs = match (oldest, newest) {
        (Some(a), Some(b)) if samples.len() > 1 => b.at.duration_since(a.at).as_secs_f64(),
        _ => SAMPLE_EVERY.as_secs_f64(),
    };
    // The skus of the window, excluding the oldest sample (its events precede the window).
    let mut per_sku: HashMap<&str, u64> = HashMap::new();
    for smp in samples.iter().skip(usize::from(samples.len() > 1)) {
        for (k, n) in &smp.skus {
            *per_sku.entry(k.as_str()).or_default() += n;
        }
    }
    let mut hot: Vec<(&str, u64)> = per_sku.into_iter().collect();
    hot.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    hot.truncate(HOT_SKUS);
    let hot: Vec<Value> = hot
        .into_iter()
        .map(|(sku, n)| {
            let available = s
                .ledger
                .sku_stock(sku)
                .ok()
                .flatten()
                .map(|x| x.total.available);
            json!({
                "sku": sku,
                "reservations": n,
                "reservations_per_s": n as f64 / window_secs.max(f64::EPSILON),
                "available": available,
            })
        })
        .collect();
    let c = newest.map(|x| x.counters).unwrap_or_default();
    let fsync_p99 = match (oldest, newest) {
        (Some(a), Some(b)) if samples.len() > 1 => p99(&a.fsync, &b.fsync),
        _ => None,
    };
    json!({
        "at": stockledger::format_rfc3339(now_ms()),
        "sample_period_s": SAMPLE_EVERY.as_secs_f64(),
        "window_s": window_secs,
        "ready": s.ledger.unavailable_reason().is_none(),
        "last_seq": last_seq,
        "outbox_lag": s.outbox_lag(),
        "live_holds": c.live,
        "rates": {
            "reservations": rate(|c| c.reserved),
            "refusals": rate(|c| c.refused),
            "paid": rate(|c| c.paid),
            "expiries": rate(|c| c.expired),
        },
        "totals": {
            "reservations": c.reserved,
            "refusals": c.refused,
            "paid": c.paid,
            "released": c.released,
            "expiries": c.expired,
        },
        "fsync_p99_seconds": fsync_p99,
        "hot_skus": hot,
        "cells": st.cells,
        "skus": st.skus,
        "reservations_kept": st.reservations,
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// State of one events stream.
struct Tail {
    s: Shared,
    after: u64,
    buffer: VecDeque<Value>,
    done: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// `GET /v1/events/stream?after=N`: every event with `seq > N` (default: from now on) as
/// server-sent events (`id` = seq, `event` = type, `data` = the event's JSON), then new ones
/// as they become durable. A client that falls `MAX_BEHIND` events behind is sent `dropped`
/// and closed; nothing is buffered for it beyond one page.
async fn stream(
    State(s): State<Shared>,
    Extension(ui): Extension<Arc<Ui>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let mut after = None;
    for pair in q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "after" {
            match v.parse::<u64>() {
                Ok(a) if a < 1 << 53 && v.bytes().all(|b| b.is_ascii_digit()) => after = Some(a),
                _ => {
                    return ApiError::invalid("after", "must be an integer between 0 and 2^53-1")
                        .into_response()
                }
            }
        }
    }
    // A browser's reconnect carries the last id it got: resume after it, not from `after`.
    if let Some(id) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|a| *a < 1 << 53)
    {
        after = Some(id);
    }
    let Ok(permit) = ui.streams.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("events stream: {MAX_STREAMS} streams are open already; retry later"),
        )
        .into_response();
    };
    let after = after.unwrap_or_else(|| s.ledger.last_seq());
    let tail = Tail {
        s,
        after,
        buffer: VecDeque::new(),
        done: false,
        _permit: permit,
    };
    let events = futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(v) = t.buffer.pop_front() {
                let ev = SseEvent::default()
                    .id(v["seq"].to_string())
                    .event(v["type"].as_str().unwrap_or("event"))
                    .data(v.to_string());
                return Some((Ok::<_, Infallible>(ev), t));
            }
            if t.done {
                return None;
            }
            let last = t.s.ledger.last_seq();
            if last.saturating_sub(t.after) > MAX_BEHIND {
                t.done = true;
                let ev = SseEvent::default().event("dropped").data(
                    json!({"reason": "too far behind", "after": t.after, "last_seq": last})
                        .to_string(),
                );
                return Some((Ok(ev), t));
            }
            let ledger = t.s.ledger.clone();
            let after = t.after;
            let page = tokio::task::spawn_blocking(move || ledger.events(after, STREAM_PAGE)).await;
            match page {
                Ok(Ok(list)) if !list.is_empty() => {
                    if let Some(e) = list.last() {
                        t.after = e.seq;
                    }
                    t.buffer.extend(list.iter().map(|e| e.to_json()));
                }
                Ok(Ok(_)) => tokio::time::sleep(STREAM_POLL).await,
                Ok(Err(e)) => {
                    t.done = true;
                    let err = ApiError::from(e);
                    let ev = SseEvent::default().event("error").data(
                        json!({"error": {"code": err.code, "message": err.message}}).to_string(),
                    );
                    return Some((Ok(ev), t));
                }
                Err(_) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_comes_from_the_bucket_deltas_of_the_window() {
        let old = vec![(0.001, 10), (0.01, 10), (f64::INFINITY, 10)];
        let new = vec![(0.001, 100), (0.01, 110), (f64::INFINITY, 110)];
        // 100 new samples: 90 under 1 ms, 10 under 10 ms: the 99th is in the 10 ms bucket.
        assert_eq!(p99(&old, &new), Some(0.01));
        assert_eq!(p99(&new, &new), None);
        let all_fast = vec![(0.001, 1000), (0.01, 1000), (f64::INFINITY, 1000)];
        assert_eq!(p99(&[], &all_fast), Some(0.001));
    }

    #[test]
    fn fsync_buckets_are_parsed_from_the_exposition_text() {
        let text = "# TYPE stockledger_wal_fsync_seconds histogram\n\
            stockledger_wal_fsync_seconds_bucket{le=\"0.001\"} 3\n\
            stockledger_wal_fsync_seconds_bucket{le=\"+Inf\"} 5\n\
            stockledger_wal_fsync_seconds_sum 0.2\n\
            other_bucket{le=\"1\"} 9\n";
        assert_eq!(fsync_buckets(text), vec![(0.001, 3), (f64::INFINITY, 5)]);
    }
}
