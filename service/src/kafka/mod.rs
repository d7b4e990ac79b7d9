//! Kafka for `stockledgerd` (`events.md`, Kafka part): the outbox publisher (the ledger's
//! durable event stream to the events topic) and the warehouse stock feed consumer. Both
//! run on their own threads: librdkafka's calls block, and ledger writes wait for fsync.
//! Off unless brokers are configured.

mod client;
mod consumer;
mod cursor;
mod message;
mod publisher;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stockledger::Ledger;
use tokio::sync::oneshot;

pub use client::{parse_property, properties_from_env, ENV_PREFIX};
pub use consumer::{apply as apply_stock_message, CONSUMER_DEFAULTS};
pub use cursor::FILE_NAME as CURSOR_FILE;
pub use message::StockMessage;
pub use publisher::{FLUSH_TIMEOUT, PRODUCER_DEFAULTS};

/// Where and how to talk to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// Topic every event is produced to (`inventory.events`).
    pub events_topic: String,
    /// Topic of the warehouse stock feed (`warehouse.stock`).
    pub stock_topic: String,
    /// librdkafka properties passed through as they are (`security.protocol`, `sasl.*`,
    /// `ssl.*`, `group.id`, ...); they win over ours and over `STOCKLEDGER_RDKAFKA_*`
    /// environment variables (read by `start`). A key prefixed `producer.` or `consumer.`
    /// goes to that client only, without the prefix.
    pub extra: Vec<(String, String)>,
}

/// The running publisher and consumer.
pub struct KafkaHandle {
    ledger: Arc<Ledger>,
    shared: Arc<publisher::Shared>,
    consumer_stop: Arc<AtomicBool>,
    publisher_done: Option<oneshot::Receiver<()>>,
    consumer_done: Option<oneshot::Receiver<()>>,
}

/// Starts the publisher and the consumer. Fails at once on a configuration librdkafka
/// refuses (the message names the property) or an unreadable cursor file; an unreachable
/// cluster is no error: events wait in the log until it answers.
pub async fn start(
    ledger: Arc<Ledger>,
    cfg: KafkaConfig,
    data_dir: PathBuf,
) -> Result<KafkaHandle, String> {
    if cfg.brokers.trim().is_empty() {
        return Err("kafka-brokers: empty".into());
    }
    if cfg.events_topic.trim().is_empty() {
        return Err("events-topic: empty".into());
    }
    if cfg.stock_topic.trim().is_empty() {
        return Err("stock-topic: empty".into());
    }
    let cursor = cursor::Cursor::new(&data_dir);
    let mut delivered = cursor.load()?;
    let last = ledger.last_seq();
    if delivered > last {
        tracing::warn!(
            recorded = delivered,
            last_seq = last,
            file = %cursor.path().display(),
            "the kafka cursor is past the log's last event; resuming after the last event"
        );
        delivered = last;
        // The seqs after `last` were published before: the events that get them now must
        // not carry the event_ids consumers already de-duplicate by (events.md).
        let l = ledger.clone();
        tokio::task::spawn_blocking(move || l.new_epoch())
            .await
            .map_err(|e| format!("kafka: starting a new event epoch failed: {e}"))?
            .map_err(|e| format!("kafka: cannot start a new event epoch: {e}"))?;
    }
    // Pin before anything else so no checkpoint drops what is still to deliver.
    ledger.keep_events_after(Some(delivered));

    let env = properties_from_env(std::env::vars());
    let producer_config =
        client::client_config(&cfg, &env, client::Role::Producer, PRODUCER_DEFAULTS);
    let producer = publisher::new_producer(&producer_config)?;
    let consumer_config =
        client::client_config(&cfg, &env, client::Role::Consumer, CONSUMER_DEFAULTS);
    let consumer =
        consumer::new_consumer(&consumer_config, cfg.stock_topic.trim(), ledger.clone())?;

    let shared = Arc::new(publisher::Shared::default());
    shared.delivered.store(delivered, Ordering::SeqCst);
    shared.saved.store(delivered, Ordering::SeqCst);
    let consumer_stop = Arc::new(AtomicBool::new(false));

    let publisher = publisher::Publisher::new(
        ledger.clone(),
        cfg.events_topic.trim().to_string(),
        producer_config,
        producer,
        cursor,
        shared.clone(),
    );
    let publisher_done = spawn("stockledger-kafka-publisher", move || publisher.run())?;
    let stock = consumer::StockConsumer::new(ledger.clone(), consumer, consumer_stop.clone());
    let consumer_done = match spawn("stockledger-kafka-consumer", move || stock.run()) {
        Ok(rx) => rx,
        Err(e) => {
            shared.stop.store(true, Ordering::SeqCst);
            return Err(e);
        }
    };
    tracing::info!(
        brokers = %cfg.brokers,
        events_topic = %cfg.events_topic,
        stock_topic = %cfg.stock_topic,
        delivered,
        "kafka started"
    );
    Ok(KafkaHandle {
        ledger,
        shared,
        consumer_stop,
        publisher_done: Some(publisher_done),
        consumer_done: Some(consumer_done),
    })
}

/// Runs `f` on a named thread; the receiver completes when it returns (or panics).
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<oneshot::Receiver<()>, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .map_err(|e| format!("cannot start thread {name}: {e}"))?;
    Ok(rx)
}

impl KafkaHandle {
    /// Durable events not yet acknowledged by the broker (the outbox lag).
    pub fn lag(&self) -> u64 {
        self.ledger.last_seq().saturating_sub(self.delivered())
    }

    /// The last seq such that it and every seq before it are acknowledged by the broker.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::SeqCst)
    }

    /// Stops consuming (committing what is applied), then delivers what the log holds for
    /// at most `FLUSH_TIMEOUT` and records the cursor. Bounded: a thread that does not end
    /// in time is left behind with a warning (anything it had not delivered is resent on the
    /// next start).
    pub async fn shutdown(mut self) {
        self.consumer_stop.store(true, Ordering::SeqCst);
        if let Some(done) = self.consumer_done.take() {
            if tokio::time::timeout(Duration::from_secs(5), done)
                .await
                .is_err()
            {
                tracing::warn!("the stock feed consumer did not stop within 5 s");
            }
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(done) = self.publisher_done.take() {
            let limit = FLUSH_TIMEOUT + Duration::from_secs(2);
            if tokio::time::timeout(limit, done).await.is_err() {
                tracing::warn!("the kafka publisher did not stop in time");
            }
        }
    }
}

impl Drop for KafkaHandle {
    /// Dropped without `shutdown`: the threads stop on their own (without waiting here).
    fn drop(&mut self) {
        self.consumer_stop.store(true, Ordering::SeqCst);
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}
