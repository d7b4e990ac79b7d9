//! The HTTP front: our own accept loop over hyper's HTTP/1 connection, so that slow and idle
//! clients cannot hold the service (http-api.md "Connections and overload"):
//! - at most `max_connections` connections are served at once; beyond it new connections wait
//!   in the listen backlog (the loop only accepts while it holds a slot), which holds
//!   [`LISTEN_BACKLOG`] handshakes;
//! - a request head must arrive within `header_timeout` of opening or of the previous
//!   response (hyper's header-read timer), an idle keep-alive connection is closed after
//!   `idle_timeout`, and a request gets 408 `request_timeout` unless its body and answer are
//!   done within `request_timeout`;
//! - accept errors (EMFILE above all) back off instead of spinning and flooding the log.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::errors::ApiError;
use crate::metrics as m;
use crate::routes::{payments, storefront};
use crate::state::Shared;

/// The connection settings of cli.md.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
}

/// Handshakes the kernel completes before the accept loop takes them. A flash sale opens with
/// hundreds of buyers connecting at once; with the usual 128 the later ones got no answer to
/// their SYN (a retry after 1 s, then 3 s) or were reset. The kernel caps it at
/// `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (address reuse as `TcpListener::bind` does) with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// File descriptors kept free for the ledger (log segments, snapshots) and Kafka's sockets.
pub const FD_HEADROOM_MIN: u64 = 256;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force
/// (None where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls writing into a local struct.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        // rlim_t is u64 on Linux but not everywhere.
        #[allow(clippy::unnecessary_cast)]
        Some(lim.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap that fits in `fd_limit` while leaving room for the ledger and Kafka.
pub fn fit_connections(wanted: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return wanted;
    };
    let headroom = FD_HEADROOM_MIN.max(limit / 10);
    let room = limit.saturating_sub(headroom).max(16);
    wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in flight finish (at most `drain`), and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    direct: Option<Shared>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the cap, connections wait in the kernel's backlog.
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff.reset();
                stream
            }
            Err(e) => {
                // Errors of the one connection being accepted: just take the next.
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                // EMFILE/ENFILE/ENOBUFS: retrying at once cannot succeed; wait for
                // connections to close (the slot is kept meanwhile).
                let pause = backoff.next(&e);
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        };
        let router = router.clone();
        let direct = direct.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(stream, router, direct, limits, stop).await;
            drop(permit);
        });
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!("shutdown requested: draining requests in flight");
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {} s; closing anyway",
            drain.as_secs()
        );
    }
}

/// Exponential pause after failed accepts, and a warning at most every 10 s.
#[derive(Default)]
struct Backoff {
    pause: Option<Duration>,
    last_warn: Option<Instant>,
    suppressed: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(500);
    const WARN_EVERY: Duration = Duration::from_secs(10);

    fn next(&mut self, e: &io::Error) -> Duration {
        let pause = self.pause.map_or(Self::FIRST, |p| (p * 2).min(Self::MAX));
        self.pause = Some(pause);
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= Self::WARN_EVERY)
        {
            tracing::warn!(
                error = %e,
                repeated = self.suppressed,
                "accept failed; pausing before the next accept"
            );
            self.last_warn = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        pause
    }

    fn reset(&mut self) {
        self.pause = None;
    }
}

/// One connection until it closes, times out, or the service stops.
async fn connection(
    stream: TcpStream,
    router: Router,
    direct: Option<Shared>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let svc = ConnService {
        router,
        direct,
        activity: activity.clone(),
        request_timeout: limits.request_timeout,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let idle = idle_watch(&activity, limits.idle_timeout);
    tokio::pin!(idle);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                // Timeouts and clients going away are routine: not worth a warning each.
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended");
                }
                return;
            }
            // Dropping the connection closes the socket; nothing is in flight then.
            _ = &mut idle => return,
            r = stop.changed(), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Resolves once the connection has had no request in flight and no bytes either way for
/// `idle` (hyper's own timer covers the head; this covers keep-alive between requests).
async fn idle_watch(a: &Activity, idle: Duration) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
    loop {
        let now = a.now_ms();
        let wait = if a.in_flight.load(Ordering::Acquire) > 0 {
            idle_ms
        } else {
            let due = a.last.load(Ordering::Acquire).saturating_add(idle_ms);
            if now >= due {
                return;
            }
            due - now
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// When a connection last moved bytes, and how many of its requests are being answered.
struct Activity {
    base: Instant,
    /// Milliseconds since `base`.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Release);
    }
}

/// Marks a request in flight until its response body is finished or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// The socket, noting every transfer in the connection's [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router as a hyper service of one connection, with the request timeout.
struct ConnService {
    router: Router,
    /// When set, the calls of an order's life made at full rate (`POST /v1/reservations`,
    /// `DELETE /v1/reservations/{id}`, `POST /v1/payments/callback`) are answered without
    /// the router (the same answers; the hot path of the service): see [`direct`].
    direct: Option<Shared>,
    activity: Arc<Activity>,
    request_timeout: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Guarded>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Guarded>, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::new(&self.activity);
        let limit = self.request_timeout;
        if let Some(s) = &self.direct {
            if let Some(route) = Direct::of(&req) {
                return route.answer(s.clone(), req, limit, guard);
            }
        }
        let mut router = self.router.clone();
        let fut = tower_service::Service::call(&mut router, req.map(Body::new));
        Box::pin(async move {
            let resp = match tokio::time::timeout(limit, fut).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => request_timeout(limit),
            };
            Ok(resp.map(|body| Guarded {
                body,
                _guard: guard,
            }))
        })
    }
}

type Answer = BoxFuture<Result<Response<Guarded>, Infallible>>;

/// The routes answered without the router. Only exact methods and path shapes are taken;
/// anything near them (other methods, trailing slashes, percent-encoded ids) gets the
/// router's answer from the router.
enum Direct {
    Reserve,
    Payment,
    Release(String),
}

impl Direct {
    fn of(req: &Request<Incoming>) -> Option<Direct> {
        let path = req.uri().path();
        match *req.method() {
            Method::POST if path == "/v1/reservations" => Some(Direct::Reserve),
            Method::POST if path == "/v1/payments/callback" => Some(Direct::Payment),
            Method::DELETE => storefront::release_path(path).map(|id| Direct::Release(id.into())),
            _ => None,
        }
    }

    fn answer(self, s: Shared, req: Request<Incoming>, limit: Duration, g: InFlight) -> Answer {
        match self {
            Direct::Reserve => timed(
                storefront::reserve_direct(s, req.into_body()),
                |status, took| m::RESERVATION_ROUTE.record(status, took),
                limit,
                g,
            ),
            Direct::Payment => timed(
                payments::callback_direct(s, req),
                |status, took| m::PAYMENT_ROUTE.record(status, took),
                limit,
                g,
            ),
            // The router's handler never reads a DELETE's body either: dropped unread.
            Direct::Release(id) => timed(
                storefront::release_direct(s, id),
                |status, took| m::RELEASE_ROUTE.record(status, took),
                limit,
                g,
            ),
        }
    }
}

/// A direct answer under the request timeout, as the router's answers are, with its route's
/// HTTP metrics recorded as the router's middleware does (not for a timed-out request,
/// whose middleware future the timeout drops).
fn timed(
    fut: impl Future<Output = Response<Body>> + Send + 'static,
    record: fn(u16, Duration),
    limit: Duration,
    guard: InFlight,
) -> Answer {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let resp = match tokio::time::timeout(limit, fut).await {
            Ok(r) => {
                record(r.status().as_u16(), started.elapsed());
                with_length(r)
            }
            Err(_) => request_timeout(limit),
        };
        Ok(resp.map(|body| Guarded {
            body,
            _guard: guard,
        }))
    })
}

/// `content-length` set from an exact body size, as axum's router sets it on the answers
/// of its routes (hyper would add it too, but after the headers it adds itself, such as
/// `connection: close`: the bytes would differ).
fn with_length(mut r: Response<Body>) -> Response<Body> {
    if !r.headers().contains_key(header::CONTENT_LENGTH) {
        if let Some(n) = r.body().size_hint().exact() {
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    r
}

/// 408 `request_timeout`; the connection is closed after it (the body may be half read).
pub fn request_timeout(limit: Duration) -> Response<Body> {
    let mut r = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "request: the body and its answer were not done within {} s (request-timeout)",
            limit.as_secs_f64()
        ),
    )
    .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A response body that keeps its request counted in flight until it is sent (a long
/// streamed answer is not an idle connection).
struct Guarded {
    body: Body,
    _guard: InFlight,
}

impl HttpBody for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_fd_headroom() {
        assert_eq!(fit_connections(10_000, None), 10_000);
        assert_eq!(fit_connections(10_000, Some(1 << 20)), 10_000);
        // 1024 descriptors: 256 kept back.
        assert_eq!(fit_connections(10_000, Some(1024)), 768);
        // 100k: a tenth kept back.
        assert_eq!(fit_connections(95_000, Some(100_000)), 90_000);
        assert_eq!(fit_connections(50, Some(10)), 16);
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = Backoff::default();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(b.next(&e), Duration::from_millis(10));
        assert_eq!(b.next(&e), Duration::from_millis(20));
        for _ in 0..10 {
            b.next(&e);
        }
        assert_eq!(b.next(&e), Duration::from_millis(500));
        assert_eq!(b.suppressed, 12);
        b.reset();
        assert_eq!(b.next(&e), Duration::from_millis(10));
    }
}
