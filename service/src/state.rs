//! Shared state of the handlers and the bridges from async handlers to the ledger: deferred
//! decisions awaited on the handler's task, and the blocking pool for the other writes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use stockledger::{Error, Ledger, Ticket};

use crate::auth::Auth;
use crate::errors::{ApiError, ApiResult};

/// Reports how many durable events Kafka has not yet acknowledged.
pub type LagSource = Arc<dyn Fn() -> u64 + Send + Sync>;

pub struct AppState {
    pub ledger: Arc<Ledger>,
    pub auth: Auth,
    pub metrics: PrometheusHandle,
    /// None while Kafka is off: then nothing is delivered and the lag is the last seq.
    pub lag: RwLock<Option<LagSource>>,
    /// The served OpenAPI document.
    pub openapi: serde_json::Value,
    /// `--request-timeout`: also bounds reading and discarding unwanted bodies.
    pub request_timeout: Duration,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn outbox_lag(&self) -> u64 {
        let src = self.lag.read().ok().and_then(|g| g.clone());
        match src {
            Some(f) => f(),
            None => self.ledger.last_seq(),
        }
    }
}

// ---- bounded work for the ledger --------------------------------------------------------

/// Ledger calls accepted and not yet answered (decisions waiting for the log, calls on the
/// blocking pool). Process-wide because `blocking` is called from every handler; the limit is set
/// once at start-up (`--max-pending-writes`).
struct Pending {
    limit: AtomicUsize,
    count: AtomicUsize,
}

static PENDING: Pending = Pending {
    limit: AtomicUsize::new(crate::config::DEFAULT_MAX_PENDING_WRITES),
    count: AtomicUsize::new(0),
};

pub fn set_pending_limit(limit: usize) {
    PENDING.limit.store(limit.max(1), Ordering::Relaxed);
}

/// Ledger calls accepted and not yet answered now.
pub fn pending_now() -> usize {
    PENDING.count.load(Ordering::Relaxed)
}

/// One accepted ledger call; its slot is given back when this is dropped (after the answer,
/// or when the call is abandoned).
#[must_use]
pub struct PendingSlot(());

impl Drop for PendingSlot {
    fn drop(&mut self) {
        PENDING.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot for one more ledger call, or 503 `overloaded` (nothing was done) when the bound is
/// reached: the caller never waits in an unbounded queue.
pub fn pending_slot() -> ApiResult<PendingSlot> {
    let limit = PENDING.limit.load(Ordering::Relaxed);
    let prev = PENDING.count.fetch_add(1, Ordering::AcqRel);
    if prev >= limit {
        PENDING.count.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::overloaded());
    }
    Ok(PendingSlot(()))
}

/// Runs a ledger call on the blocking pool (it may wait for an fsync); 503 `overloaded`
/// when too many already wait.
pub async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    let slot = pending_slot()?;
    let run = move || {
        let _slot = slot;
        f()
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::unavailable(format!("ledger call failed: {e}"))),
    }
}

// ---- writes decided on the handler's task ------------------------------------------------

/// Runs a deferred ledger decision (`reserve_deferred`, `release_deferred`, `pay_deferred`)
/// on the calling task, then awaits its ticket: the answer leaves only once the decision is
/// durable under the ledger's durability mode (`sync`: fsync'd), and is 503
/// `ledger_unavailable` if the log fails first. No thread hop: the decision is in-memory
/// work, the wait is a future woken by the log writer's group commit (one fsync shared by
/// every decision staged meanwhile). The call holds a [`PendingSlot`] until it is answered
/// (503 `overloaded` beyond `--max-pending-writes`, nothing decided), so the tasks waiting
/// for the log are bounded.
pub async fn deferred<'l, T>(
    ledger: &'l Ledger,
    decide: impl FnOnce(&'l Ledger) -> Result<(T, Ticket), Error>,
) -> ApiResult<T> {
    let _slot = pending_slot()?;
    let (value, ticket) = decide(ledger)?;
    ledger.durable(ticket).await?;
    Ok(value)
}

// ---- expiry -------------------------------------------------------------------------------

/// Expires due reservations every `period` (well inside the contract's one second).
pub struct Expirer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Expirer {
    pub fn start(ledger: Arc<Ledger>, period: Duration) -> std::io::Result<Expirer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("expiry".into())
            .spawn(move || {
                let mut warned = false;
                while !flag.load(Ordering::Acquire) {
                    match ledger.expire_due() {
                        Ok(ids) => {
                            warned = false;
                            if !ids.is_empty() {
                                tracing::debug!(count = ids.len(), "reservations expired");
                            }
                        }
                        Err(e) if !warned => {
                            warned = true;
                            tracing::error!(error = %e, "expiry failed");
                        }
                        Err(_) => {}
                    }
                    std::thread::park_timeout(period);
                }
            })?;
        Ok(Expirer {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
