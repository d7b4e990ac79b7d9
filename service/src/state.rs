//! Shared state of the handlers and the bridges from async handlers to the ledger, whose
//! writes block until the log is durable.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use stockledger::{Command, Error, Ledger, Line, Outcome, Reservation};
use tokio::sync::oneshot;

use crate::auth::Auth;
use crate::errors::{ApiError, ApiResult};
use crate::metrics as m;

/// Reports how many durable events Kafka has not yet acknowledged.
pub type LagSource = Arc<dyn Fn() -> u64 + Send + Sync>;

pub struct AppState {
    pub ledger: Arc<Ledger>,
    pub auth: Auth,
    pub reserver: Reserver,
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

/// Ledger calls accepted and not yet answered (queued reservations, calls on the blocking
/// pool). Process-wide because `blocking` is called from every handler; the limit is set
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

// ---- reservations: batched into group commits ---------------------------------------------

struct Job {
    order_id: String,
    lines: Vec<Line>,
    ttl_seconds: u64,
    reply: oneshot::Sender<Result<(Reservation, bool), Error>>,
    /// Held until the job is answered: queued and running jobs count against the bound.
    _slot: PendingSlot,
}

/// Most reservations in one `execute` call.
const MAX_JOBS: usize = 512;

/// Hands reservations to a few threads that each drain whatever is queued into one
/// `Ledger::execute` call: one wait for the log per batch instead of one blocking-pool hop
/// and one wake-up per request. Several threads keep one batch staging while another
/// waits for its fsync.
pub struct Reserver {
    tx: crossbeam_channel::Sender<Job>,
}

impl Reserver {
    /// `capacity` bounds the queue; with every job holding a [`PendingSlot`] it is never
    /// reached when it is at least the pending limit.
    pub fn start(
        ledger: Arc<Ledger>,
        threads: usize,
        capacity: usize,
    ) -> std::io::Result<Reserver> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(capacity.max(1));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let ledger = ledger.clone();
            std::thread::Builder::new()
                .name(format!("reserve-{i}"))
                .spawn(move || reserve_loop(&ledger, &rx))?;
        }
        Ok(Reserver { tx })
    }

    pub async fn reserve(
        &self,
        order_id: String,
        lines: Vec<Line>,
        ttl_seconds: u64,
    ) -> ApiResult<(Reservation, bool)> {
        let slot = pending_slot()?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            order_id,
            lines,
            ttl_seconds,
            reply,
            _slot: slot,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => return Err(ApiError::overloaded()),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(ApiError::unavailable("the service is shutting down"))
            }
        }
        match rx.await {
            Ok(r) => r.map_err(ApiError::from),
            Err(_) => Err(ApiError::unavailable("the reservation worker stopped")),
        }
    }
}

fn reserve_loop(ledger: &Ledger, rx: &crossbeam_channel::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_JOBS);
    let mut cmds: Vec<Command> = Vec::with_capacity(MAX_JOBS);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        for j in jobs.iter_mut() {
            cmds.push(Command::Reserve {
                order_id: std::mem::take(&mut j.order_id),
                lines: std::mem::take(&mut j.lines),
                ttl_seconds: j.ttl_seconds,
            });
        }
        let started = Instant::now();
        let results = ledger.execute(&cmds);
        m::reserve_batch(cmds.len(), started.elapsed());
        match results {
            Ok(results) => {
                for ((job, cmd), r) in jobs.drain(..).zip(cmds.drain(..)).zip(results) {
                    let Command::Reserve { order_id, .. } = cmd else {
                        continue;
                    };
                    let answer = r.and_then(|o| finish(ledger, &order_id, o));
                    let _ = job.reply.send(answer);
                }
            }
            Err(e) => {
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
                cmds.clear();
            }
        }
    }
}

fn finish(ledger: &Ledger, order_id: &str, o: Outcome) -> Result<(Reservation, bool), Error> {
    let Outcome::Reserved { created, .. } = o else {
        return Err(Error::LedgerUnavailable {
            reason: "unexpected outcome of a reservation".into(),
        });
    };
    match ledger.reservation(order_id)? {
        Some(r) => Ok((r, created)),
        // Only a reservation finished and pruned within the same instant could vanish.
        None => Err(Error::OrderNotFound {
            order_id: order_id.into(),
        }),
    }
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
