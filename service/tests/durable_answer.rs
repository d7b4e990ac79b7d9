//! Issue 11: reservations are decided on the handler's task and answered only once their
//! record is durable. The router is driven in-process over a ledger whose log fsyncs pass
//! through a gate the test holds: while the fsync is held the answer must not exist; it
//! comes once the fsync has returned. The same held fsync shows the `--max-pending-writes`
//! bound around the wait: a second request gets 503 `overloaded` with Retry-After and changes
//! nothing. No sleeps: the test waits on the gate's condition variable and polls the request
//! futures itself with a waker that unparks this thread.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use stockledger::wal::{FsStorage, Storage, StorageFile};
use stockledger::{Durability, Ledger, Options, Source};
use stockledger_service::app;
use stockledger_service::auth::Auth;
use stockledger_service::state::{self, AppState};

/// Counts fsyncs of the log and holds them while closed.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    /// fsyncs that reached the gate while it was closed (waiting there).
    held: u64,
    /// fsyncs that returned.
    done: u64,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.closed = closed;
        self.changed.notify_all();
    }

    fn done(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .done
    }

    /// Waits until an fsync is held at the closed gate.
    fn wait_held(&self) {
        let g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let held = match self
            .changed
            .wait_timeout_while(g, Duration::from_secs(30), |g| g.held == 0)
        {
            Ok((g, _)) => g.held,
            Err(e) => e.into_inner().0.held,
        };
        assert!(held > 0, "no fsync reached the gate within 30 s");
    }

    fn pass(&self) {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if g.closed {
            g.held += 1;
            self.changed.notify_all();
            g = self
                .changed
                .wait_while(g, |g| g.closed)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(g);
    }

    fn finished(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .done += 1;
    }
}

/// Opens the gate when dropped: a failing assertion must not leave the log writer held
/// (closing the ledger would then wait for it forever instead of reporting the failure).
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.set_closed(false);
    }
}

#[derive(Debug)]
struct GatedStorage(Arc<Gate>);

struct GatedFile {
    inner: Box<dyn StorageFile>,
    gate: Arc<Gate>,
}

impl StorageFile for GatedFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.gate.pass();
        let r = self.inner.sync_data();
        self.gate.finished();
        r
    }
}

impl Storage for GatedStorage {
    fn create(&self, path: &Path, len: u64, zero_fill: bool) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(GatedFile {
            inner: FsStorage.create(path, len, zero_fill)?,
            gate: self.0.clone(),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(GatedFile {
            inner: FsStorage.open(path)?,
            gate: self.0.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }
}

/// Unparks the test thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

type Answer =
    Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

fn post(router: &Router, body: &str) -> Answer {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/reservations")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let mut r = router.clone();
    Box::pin(tower_service::Service::call(&mut r, req))
}

fn poll_once(f: &mut Answer, waker: &Waker) -> Option<Response<Body>> {
    match f.as_mut().poll(&mut Context::from_waker(waker)) {
        Poll::Ready(Ok(r)) => Some(r),
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => None,
    }
}

/// Polls until ready, parking between polls (woken by the log writer's wake-up).
fn finish(f: &mut Answer, waker: &Waker) -> Response<Body> {
    loop {
        if let Some(r) = poll_once(f, waker) {
            return r;
        }
        std::thread::park_timeout(Duration::from_secs(1));
    }
}

fn body_json(r: Response<Body>, waker: &Waker) -> serde_json::Value {
    let mut collect = Box::pin(axum::body::to_bytes(r.into_body(), 1 << 20));
    let bytes = loop {
        if let Poll::Ready(b) = collect.as_mut().poll(&mut Context::from_waker(waker)) {
            break b.expect("body");
        }
        std::thread::park_timeout(Duration::from_secs(1));
    };
    serde_json::from_slice(&bytes).expect("json body")
}

#[test]
fn a_sync_reservation_is_answered_only_after_its_fsync_and_waits_count_against_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = Arc::new(Gate::default());
    let ledger = Ledger::open(
        dir.path(),
        Options {
            durability: Durability::Sync,
            storage: Some(Arc::new(GatedStorage(gate.clone()))),
            ..Options::default()
        },
    )
    .expect("open");
    ledger
        .set_stock("A1", "kol", 10, Source::Warehouse)
        .expect("stock");
    let ledger = Arc::new(ledger);
    // Declared after the ledger: dropped (gate opened) before it, also on a panic.
    let _open = OpenOnDrop(gate.clone());
    state::set_pending_limit(1);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let shared = Arc::new(AppState {
        ledger: ledger.clone(),
        auth: Auth::new(&[], None, None),
        metrics: recorder.handle(),
        lag: RwLock::new(None),
        openapi: serde_json::Value::Null,
        request_timeout: Duration::from_secs(30),
    });
    let router = app::router(shared);
    let unpark = Arc::new(Unpark(std::thread::current()));
    let waker = Waker::from(unpark.clone());

    gate.set_closed(true);
    let synced_before = gate.done();
    let mut first = post(
        &router,
        r#"{"order_id":"o-1","lines":[{"sku":"A1","warehouse":"kol","qty":3}]}"#,
    );
    // Decided at once (the stock is taken), but not answered: its fsync is held.
    assert!(
        poll_once(&mut first, &waker).is_none(),
        "answered before any fsync"
    );
    assert_eq!(ledger.stock("A1", "kol").expect("stock").reserved, 3);
    gate.wait_held();
    assert!(
        poll_once(&mut first, &waker).is_none(),
        "answered while its fsync is held"
    );
    assert_eq!(
        gate.done(),
        synced_before,
        "an fsync returned through a closed gate"
    );

    // The waiting reservation holds the only pending slot: the next one is refused whole.
    let mut second = post(
        &router,
        r#"{"order_id":"o-2","lines":[{"sku":"A1","warehouse":"kol","qty":2}]}"#,
    );
    let refused = finish(&mut second, &waker);
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(body_json(refused, &waker)["error"], "overloaded");
    assert_eq!(ledger.stock("A1", "kol").expect("stock").reserved, 3);
    assert!(ledger.reservation("o-2").expect("read").is_none());

    // Let the fsync through: only now the 201 comes.
    gate.set_closed(false);
    let answer = finish(&mut first, &waker);
    assert!(
        gate.done() > synced_before,
        "answered before the fsync returned"
    );
    assert_eq!(answer.status(), StatusCode::CREATED);
    let body = body_json(answer, &waker);
    assert_eq!(body["order_id"], "o-1");
    assert_eq!(body["status"], "reserved");
    assert_eq!(body["lines"][0]["qty"], 3);

    // Its slot is back: the refused order goes through now, and a replay answers 200.
    let mut again = post(
        &router,
        r#"{"order_id":"o-2","lines":[{"sku":"A1","warehouse":"kol","qty":2}]}"#,
    );
    assert_eq!(finish(&mut again, &waker).status(), StatusCode::CREATED);
    let mut replay = post(
        &router,
        r#"{"order_id":"o-1","lines":[{"sku":"A1","warehouse":"kol","qty":3}]}"#,
    );
    let replayed = finish(&mut replay, &waker);
    assert_eq!(replayed.status(), StatusCode::OK);
    assert_eq!(body_json(replayed, &waker)["order_id"], "o-1");
    assert_eq!(state::pending_now(), 0);
    assert_eq!(ledger.stock("A1", "kol").expect("stock").reserved, 5);
}
