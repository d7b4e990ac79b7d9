//! The warehouse stock feed: stock messages applied to the ledger once each by event_id
//! (idempotent in the ledger), offsets committed only after the ledger made the change
//! durable. A malformed or refused message is logged, counted and skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use stockledger::{ErrorCode, Ledger, Source, StockLevel};

use super::client::LogContext;
use super::message::StockMessage;

/// Consumer settings; the operator's passthrough properties win.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("group.id", "stockledgerd"),
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    // A new group reads the feed from its start: applying is idempotent by event_id.
    ("auto.offset.reset", "earliest"),
    // Notice a stock topic created after start-up within seconds, not minutes.
    ("topic.metadata.refresh.interval.ms", "5000"),
];

const COMMIT_EVERY: Duration = Duration::from_millis(200);
const POLL: Duration = Duration::from_millis(100);

pub struct ConsContext {
    log: LogContext,
    topic: String,
    /// Next offset to commit per partition: messages before it are applied in the ledger
    /// (durable only once `ledger.wait_durable()` says so, in `async` mode).
    done: Mutex<HashMap<i32, i64>>,
    ledger: Arc<Ledger>,
}

impl ConsContext {
    fn take_done(&self) -> Option<TopicPartitionList> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.is_empty() {
            return None;
        }
        // events.md: offsets are committed only after the change is durable. Every change
        // in `done` was applied before this call, so waiting for all staged ones covers them.
        if let Err(e) = self.ledger.wait_durable() {
            tracing::warn!(error = %e, "stock feed offsets not committed: the changes are not durable");
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in done.drain() {
            if let Err(e) = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next)) {
                tracing::warn!(error = %e, partition, "cannot build the offset commit");
            }
        }
        Some(tpl)
    }

    fn commit(&self, consumer: &BaseConsumer<ConsContext>, mode: CommitMode) {
        if let Some(tpl) = self.take_done() {
            if let Err(e) = consumer.commit(&tpl, mode) {
                // Not fatal: the messages come again and the ledger ignores known event_ids.
                tracing::warn!(error = %e, "stock feed offset commit failed");
            }
        }
    }
}

impl ClientContext for ConsContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason)
    }
}

impl ConsumerContext for ConsContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Hand over what is applied before the partitions go to another member.
        if matches!(rebalance, Rebalance::Revoke(_)) {
            self.commit(consumer, CommitMode::Sync);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "stock feed offset commit failed");
        }
    }
}

pub fn new_consumer(
    config: &ClientConfig,
    topic: &str,
    ledger: Arc<Ledger>,
) -> Result<BaseConsumer<ConsContext>, String> {
    let ctx = ConsContext {
        ledger,
        log: LogContext::new("consumer"),
        topic: topic.to_string(),
        done: Mutex::new(HashMap::new()),
    };
    let consumer: BaseConsumer<ConsContext> = BaseConsumer::from_config_and_context(config, ctx)
        .map_err(|e| format!("kafka consumer configuration: {e}"))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| format!("kafka stock topic {topic:?}: {e}"))?;
    Ok(consumer)
}

/// What became of one message.
enum Handled {
    Done,
    /// The ledger cannot write now: the message must come again.
    Retry,
}

pub struct StockConsumer {
    ledger: Arc<Ledger>,
    consumer: BaseConsumer<ConsContext>,
    stop: Arc<AtomicBool>,
    last_commit: Instant,
    last_poll_error: Option<(String, Instant)>,
}

impl StockConsumer {
    pub fn new(
        ledger: Arc<Ledger>,
        consumer: BaseConsumer<ConsContext>,
        stop: Arc<AtomicBool>,
    ) -> StockConsumer {
        StockConsumer {
            ledger,
            consumer,
            stop,
            last_commit: Instant::now(),
            last_poll_error: None,
        }
    }

    pub fn run(mut self) {
        tracing::info!(topic = %self.consumer.context().topic, "stock feed consumer started");
        while !self.stop.load(Ordering::SeqCst) {
            match self.consumer.poll(POLL) {
                None => {}
                Some(Ok(msg)) => {
                    if let Handled::Retry = self.handle(&msg) {
                        self.retry_later(&msg);
                    }
                }
                Some(Err(e)) => self.poll_error(e),
            }
            if self.last_commit.elapsed() >= COMMIT_EVERY {
                self.consumer
                    .context()
                    .commit(&self.consumer, CommitMode::Async);
                self.last_commit = Instant::now();
            }
        }
        self.consumer
            .context()
            .commit(&self.consumer, CommitMode::Sync);
        tracing::info!("stock feed consumer stopped");
    }

    fn handle(&self, msg: &BorrowedMessage<'_>) -> Handled {
        let (partition, offset) = (msg.partition(), msg.offset());
        let outcome = match StockMessage::parse(msg.payload()) {
            Err(reason) => Err(("malformed", reason)),
            Ok(m) => match apply(&self.ledger, &m) {
                Ok(level) => {
                    metrics::counter!("stockledger_stock_feed_applied_total").increment(1);
                    tracing::debug!(
                        event_id = m.event_id(),
                        on_hand = level.on_hand,
                        partition,
                        offset,
                        "stock message applied"
                    );
                    Ok(())
                }
                Err(e) if e.code() == ErrorCode::LedgerUnavailable => {
                    metrics::counter!("stockledger_stock_feed_retries_total").increment(1);
                    tracing::warn!(error = %e, partition, offset, "stock message not applied: the ledger is unavailable; will retry");
                    return Handled::Retry;
                }
                Err(e) => Err((e.code().as_str(), format!("{}: {e}", m.event_id()))),
            },
        };
        if let Err((code, reason)) = outcome {
            metrics::counter!("stockledger_stock_feed_rejected_total", "reason" => code)
                .increment(1);
            tracing::warn!(partition, offset, code, "stock message skipped: {reason}");
        }
        self.consumer
            .context()
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition, offset + 1);
        Handled::Done
    }

    /// Rewinds the partition to the message and waits a little before it comes again.
    fn retry_later(&self, msg: &BorrowedMessage<'_>) {
        if let Err(e) = self.consumer.seek(
            msg.topic(),
            msg.partition(),
            Offset::Offset(msg.offset()),
            Duration::from_secs(5),
        ) {
            tracing::warn!(error = %e, "cannot rewind the stock feed; the uncommitted message comes again after a restart");
        }
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn poll_error(&mut self, e: KafkaError) {
        let line = e.to_string();
        let fresh = match &self.last_poll_error {
            Some((l, at)) => *l != line || at.elapsed() > Duration::from_secs(30),
            None => true,
        };
        if fresh {
            tracing::warn!(error = %line, "stock feed consumer");
            self.last_poll_error = Some((line, Instant::now()));
        }
    }
}

/// Applies one message; a redelivered event_id changes nothing (the ledger remembers it).
pub fn apply(ledger: &Ledger, m: &StockMessage) -> stockledger::Result<StockLevel> {
    match m {
        StockMessage::Adjust {
            event_id,
            sku,
            warehouse,
            delta,
            reason,
        } => ledger.adjust_stock(
            sku,
            warehouse,
            *delta,
            event_id,
            reason.as_deref(),
            Source::Warehouse,
        ),
        StockMessage::Set {
            event_id,
            sku,
            warehouse,
            on_hand,
        } => ledger.set_stock_once(sku, warehouse, *on_hand, event_id, Source::Warehouse),
    }
}
