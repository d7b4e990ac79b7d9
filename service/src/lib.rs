//! `stockledgerd`: the HTTP service over the stockledger ledger (http-api.md, cli.md).
//! Thin by design: it parses, authenticates, calls the library, and maps the results.

pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod errors;
pub mod json;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod routes;
pub mod server;
pub mod state;
pub mod ui;

/// The body parsers of every route that reads a JSON body, exactly as the handlers call
/// them (the fuzz target `fuzz/fuzz_targets/http_bodies.rs` and
/// `service/tests/http_bodies.rs`). Not API.
#[doc(hidden)]
pub mod fuzz {
    pub use crate::routes::partner::{
        adjust_body as fuzz_parse_adjust_stock, set_stock_body as fuzz_parse_set_stock,
    };
    pub use crate::routes::payments::payment_body as fuzz_parse_payment;
    pub use crate::routes::storefront::{
        query_body as fuzz_parse_query, reserve_body as fuzz_parse_reserve,
    };
}

use std::sync::{Arc, RwLock};
use std::time::Duration;

use stockledger::{Ledger, Options};

use crate::config::Config;
use crate::state::{AppState, Expirer};

/// How often due reservations are expired (the contract allows one second).
pub const EXPIRY_PERIOD: Duration = Duration::from_millis(200);
/// Longest wait for requests in flight after SIGTERM/SIGINT.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the service until SIGTERM/SIGINT. The error is the message for stderr.
pub async fn run(cfg: Config) -> Result<(), String> {
    // Caught from here on: a signal during recovery ends the service cleanly once it is up.
    let shutdown = Shutdown::catch();
    let handle = metrics::install()?;
    // Each connection is a file descriptor: take what the hard limit allows, and keep room
    // for the ledger's files and Kafka's sockets below the connection cap.
    let fd_limit = server::raise_fd_limit();
    let max_connections = server::fit_connections(cfg.max_connections, fd_limit);
    if max_connections < cfg.max_connections {
        tracing::warn!(
            wanted = cfg.max_connections,
            serving = max_connections,
            fd_limit = fd_limit.unwrap_or(0),
            "max-connections lowered to fit the open-files limit"
        );
    }
    let limits = server::Limits {
        max_connections,
        header_timeout: cfg.header_timeout,
        idle_timeout: cfg.idle_timeout,
        request_timeout: cfg.request_timeout,
    };
    let upkeep = metrics::spawn_upkeep(handle.clone(), metrics::UPKEEP_EVERY);

    // Recovery first: the port opens only once the ledger holds its whole state.
    tracing::info!(data_dir = %cfg.data_dir.display(), "recovering the ledger");
    let dir = cfg.data_dir.clone();
    let options = Options {
        durability: cfg.durability,
        max_orders: cfg.max_orders,
        ..Options::default()
    };
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(&dir, options))
        .await
        .map_err(|e| format!("data-dir: opening the ledger failed: {e}"))?
        .map_err(|e| {
            format!(
                "data-dir: cannot open the ledger in {}: {e}",
                cfg.data_dir.display()
            )
        })?;
    // Without Kafka nothing else pins the log: readers of the feed get this long.
    ledger.retain_events_for(cfg.events_retention);
    let ledger = Arc::new(ledger);
    tracing::info!(
        data_dir = %cfg.data_dir.display(),
        durability = ?cfg.durability,
        last_seq = ledger.last_seq(),
        "ledger recovered"
    );

    state::set_pending_limit(cfg.max_pending_writes);
    let expirer = Expirer::start(ledger.clone(), EXPIRY_PERIOD)
        .map_err(|e| format!("cannot start the expiry task: {e}"))?;

    let state = Arc::new(AppState {
        ledger: ledger.clone(),
        auth: auth::Auth::new(
            &cfg.partner_tokens,
            cfg.admin_token.as_deref(),
            cfg.payment_secret.as_deref(),
        ),
        metrics: handle,
        lag: RwLock::new(None),
        openapi: app::openapi(),
        request_timeout: cfg.request_timeout,
    });

    // The single Kafka call site: off unless brokers are configured.
    let kafka = if cfg.kafka_brokers.is_empty() {
        None
    } else {
        let kcfg = kafka::KafkaConfig {
            brokers: cfg.kafka_brokers.join(","),
            events_topic: cfg.events_topic.clone(),
            stock_topic: cfg.stock_topic.clone(),
            extra: Vec::new(),
        };
        let h = Arc::new(
            kafka::start(ledger.clone(), kcfg, cfg.data_dir.clone())
                .await
                .map_err(|e| format!("kafka-brokers: {e}"))?,
        );
        let src = h.clone();
        if let Ok(mut g) = state.lag.write() {
            *g = Some(Arc::new(move || src.lag()));
        }
        Some(h)
    };

    let listener = match server::bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            expirer.stop();
            let _ = ledger.close();
            return Err(format!("listen: cannot bind {}: {e}", cfg.listen));
        }
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(listen = %bound, workers = cfg.workers, "stockledgerd serving");

    server::serve(
        listener,
        app::router(state.clone()),
        Some(state.clone()),
        limits,
        shutdown.wait(),
        DRAIN_TIMEOUT,
    )
    .await;

    expirer.stop();
    upkeep.abort();
    if let Some(h) = kafka {
        if let Ok(mut g) = state.lag.write() {
            *g = None;
        }
        match Arc::try_unwrap(h) {
            Ok(h) => h.shutdown().await,
            Err(_) => tracing::warn!("kafka handle still shared; not flushed"),
        }
    }
    let closing = ledger.clone();
    match tokio::task::spawn_blocking(move || closing.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "closing the ledger"),
        Err(e) => tracing::warn!(error = %e, "closing the ledger"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, caught from the start of `run`. Their handlers are installed when
/// this is made, not when `wait` is first polled (after recovery, which can take seconds):
/// before that, the default action would kill the process mid-start and it would not exit 0
/// as cli.md says. A signal that came early is remembered and ends `wait` at once.
struct Shutdown {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    fn catch() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let catch = |kind: SignalKind| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot catch a shutdown signal");
                    None
                }
            };
            Shutdown {
                term: catch(SignalKind::terminate()),
                int: catch(SignalKind::interrupt()),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = recv(self.term) => {},
                _ = recv(self.int) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
