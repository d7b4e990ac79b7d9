//! The outbox publisher: the ledger's durable event stream, produced in seq order to the
//! events topic by an idempotent producer. The cursor (last seq whose delivery the broker
//! acknowledged, with every seq before it) is recorded durably and pins the log segments
//! still to deliver, so delivery is at least once and never has a gap across restarts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use stockledger::{Event, Ledger};

use super::client::LogContext;
use super::cursor::Cursor;

/// Events produced but not yet acknowledged, at most (bounds memory while the broker is away:
/// the rest of the backlog waits in the log).
const MAX_IN_FLIGHT: usize = 50_000;
/// Events read from the log per call.
const READ_BATCH: usize = 5_000;
/// How long the loop waits for delivery reports when there is nothing new to send.
const IDLE_POLL: Duration = Duration::from_millis(5);
/// The cursor is written at most this often (each write is an fsync).
const SAVE_EVERY: Duration = Duration::from_millis(100);
/// Shutdown: how long to go on delivering before giving up (the rest waits in the log).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Producer settings the delivery guarantees rely on. The operator's passthrough
/// properties are applied after these and win.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // Never give up on a message: while the cluster is away the producer holds what it has
    // and the rest waits in the log; a timeout would only turn into a resend.
    ("message.timeout.ms", "0"),
    // The Java client's partitioner, so other producers keyed by order id agree.
    ("partitioner", "murmur2_random"),
    ("linger.ms", "5"),
];

/// State the handle reads while the publisher thread runs.
#[derive(Default)]
pub struct Shared {
    /// Every seq up to this one is acknowledged by the broker.
    pub delivered: AtomicU64,
    /// What the cursor file holds (and the log pin).
    pub saved: AtomicU64,
    pub stop: AtomicBool,
}

type Ack = (u64, Result<(), String>);

pub struct PubContext {
    log: LogContext,
    acks: Mutex<Vec<Ack>>,
}

impl ClientContext for PubContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason)
    }
}

impl ProducerContext for PubContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((seq as u64, outcome));
    }
}

pub fn new_producer(config: &ClientConfig) -> Result<BaseProducer<PubContext>, String> {
    let ctx = PubContext {
        log: LogContext::new("producer"),
        acks: Mutex::new(Vec::new()),
    };
    BaseProducer::from_config_and_context(config, ctx)
        .map_err(|e| format!("kafka producer configuration: {e}"))
}

pub struct Publisher {
    ledger: Arc<Ledger>,
    topic: String,
    config: ClientConfig,
    producer: BaseProducer<PubContext>,
    cursor: Cursor,
    shared: Arc<Shared>,
    /// Highest seq handed to the producer.
    sent: u64,
    /// Acknowledged flags of seqs `delivered + 1 ..= sent`.
    window: VecDeque<bool>,
    /// Read from the log, not yet accepted by the producer (its queue was full).
    backlog: VecDeque<Event>,
    failure: Option<String>,
    resume_at: Option<Instant>,
    backoff: Duration,
    last_save: Instant,
    last_read_error: Option<Instant>,
}

impl Publisher {
    pub fn new(
        ledger: Arc<Ledger>,
        topic: String,
        config: ClientConfig,
        producer: BaseProducer<PubContext>,
        cursor: Cursor,
        shared: Arc<Shared>,
    ) -> Publisher {
        let delivered = shared.delivered.load(Ordering::SeqCst);
        Publisher {
            ledger,
            topic,
            config,
            producer,
            cursor,
            shared,
            sent: delivered,
            window: VecDeque::new(),
            backlog: VecDeque::new(),
            failure: None,
            resume_at: None,
            backoff: Duration::from_millis(500),
            last_save: Instant::now(),
            last_read_error: None,
        }
    }

    fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::SeqCst)
    }

    pub fn run(mut self) {
        tracing::info!(
            topic = %self.topic,
            from_seq = self.delivered() + 1,
            last_seq = self.ledger.last_seq(),
            "kafka publisher started"
        );
        while !self.shared.stop.load(Ordering::SeqCst) {
            let paused = self.resume_at.is_some_and(|t| Instant::now() < t);
            let sent = if paused { 0 } else { self.fill() };
            self.producer
                .poll(if sent > 0 { Duration::ZERO } else { IDLE_POLL });
            self.take_acks();
            if self.failure.is_some() || self.producer.context().log.fatal() {
                self.restart_producer();
            }
            self.save(false);
        }
        self.finish();
    }

    /// Reads what is new in the log and hands it to the producer; returns how many.
    fn fill(&mut self) -> usize {
        if self.backlog.is_empty()
            && self.window.len() < MAX_IN_FLIGHT
            && self.ledger.last_seq() > self.sent
        {
            let room = (MAX_IN_FLIGHT - self.window.len()).min(READ_BATCH);
            match self.ledger.events(self.sent, room) {
                Ok(events) => self.backlog.extend(events),
                // Truly gone (removed before this publisher pinned them): the only case
                // in which events are skipped. Any other read error is retried.
                Err(stockledger::Error::EventsPruned { oldest_seq }) => {
                    self.skip_gap(oldest_seq);
                    return 0;
                }
                Err(e) => {
                    if self
                        .last_read_error
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
                    {
                        tracing::error!(error = %e, after = self.sent, "kafka publisher cannot read the log");
                        self.last_read_error = Some(Instant::now());
                    }
                    return 0;
                }
            }
        }
        let mut n = 0;
        while let Some(seq) = self.backlog.front().map(|e| e.seq) {
            if seq <= self.sent {
                self.backlog.pop_front();
                continue;
            }
            if seq != self.sent + 1 && !self.skip_gap(seq) {
                break;
            }
            let Some(event) = self.backlog.front() else {
                break;
            };
            let payload = event.to_json().to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: "event_id",
                value: Some(event.event_id.as_str()),
            });
            let record = BaseRecord::with_opaque_to(&self.topic, event.seq as usize)
                .key(event.key())
                .payload(&payload)
                .headers(headers);
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent = event.seq;
                    self.window.push_back(false);
                    self.backlog.pop_front();
                    n += 1;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                Err((e, _)) => {
                    self.failure = Some(format!("seq {}: {e}", event.seq));
                    break;
                }
            }
        }
        n
    }

    /// The log no longer has the events before `seq` (removed before this publisher ever
    /// pinned them: Kafka enabled on an older ledger folder). Skips them once all that was
    /// sent is acknowledged; returns whether it did.
    fn skip_gap(&mut self, seq: u64) -> bool {
        if !self.window.is_empty() || seq <= self.sent + 1 {
            return false;
        }
        tracing::error!(
            missing_from = self.sent + 1,
            missing_to = seq - 1,
            "events are no longer in the log and cannot be published; continuing after them"
        );
        metrics::counter!("stockledger_kafka_events_skipped_total").increment(seq - 1 - self.sent);
        self.sent = seq - 1;
        self.shared.delivered.store(seq - 1, Ordering::SeqCst);
        true
    }

    fn take_acks(&mut self) {
        let acks = std::mem::take(
            &mut *self
                .producer
                .context()
                .acks
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if acks.is_empty() {
            return;
        }
        let mut delivered = self.delivered();
        let mut ok = 0u64;
        for (seq, outcome) in acks {
            if seq <= delivered || seq > self.sent {
                continue;
            }
            match outcome {
                Ok(()) => {
                    self.window[(seq - delivered - 1) as usize] = true;
                    ok += 1;
                }
                Err(e) => {
                    metrics::counter!("stockledger_kafka_delivery_errors_total").increment(1);
                    self.failure.get_or_insert(format!("seq {seq}: {e}"));
                }
            }
        }
        while self.window.front() == Some(&true) {
            self.window.pop_front();
            delivered += 1;
        }
        self.shared.delivered.store(delivered, Ordering::SeqCst);
        if ok > 0 {
            metrics::counter!("stockledger_kafka_events_published_total").increment(ok);
            self.backoff = Duration::from_millis(500);
        }
    }

    /// A message failed for good (not a transient outage: those the producer rides out) or
    /// the producer hit a fatal error: start a new producer and send again everything not
    /// acknowledged, in seq order. Consumers see duplicates with the same event_id.
    fn restart_producer(&mut self) {
        let reason = self
            .failure
            .take()
            .unwrap_or_else(|| "fatal producer error".into());
        tracing::error!(
            error = %reason,
            resend_from = self.delivered() + 1,
            retry_in_ms = self.backoff.as_millis() as u64,
            "kafka delivery failed; restarting the producer and sending again"
        );
        match new_producer(&self.config) {
            // Dropping the old producer discards its queue and its late reports.
            Ok(p) => self.producer = p,
            Err(e) => tracing::error!(error = %e, "cannot recreate the kafka producer"),
        }
        self.window.clear();
        self.backlog.clear();
        self.sent = self.delivered();
        self.resume_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
    }

    /// Records the cursor durably (then lets checkpoints drop what it covers).
    fn save(&mut self, now: bool) {
        let delivered = self.delivered();
        if delivered == self.shared.saved.load(Ordering::SeqCst)
            || (!now && self.last_save.elapsed() < SAVE_EVERY)
        {
            return;
        }
        self.last_save = Instant::now();
        match self.cursor.store(delivered) {
            Ok(()) => {
                self.shared.saved.store(delivered, Ordering::SeqCst);
                self.ledger.keep_events_after(Some(delivered));
                metrics::gauge!("stockledger_kafka_delivered_seq").set(delivered as f64);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the kafka outbox cursor; will retry")
            }
        }
    }

    /// Shutdown: deliver what is already in the log within `FLUSH_TIMEOUT`, then record
    /// the cursor. Whatever is left waits in the log for the next start.
    fn finish(mut self) {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        let target = self.ledger.last_seq();
        while Instant::now() < deadline && self.failure.is_none() {
            self.fill();
            self.producer.poll(Duration::from_millis(5));
            self.take_acks();
            if self.delivered() >= target && self.backlog.is_empty() {
                break;
            }
        }
        self.take_acks();
        self.save(true);
        let left = self.ledger.last_seq().saturating_sub(self.delivered());
        if left > 0 {
            tracing::warn!(
                undelivered = left,
                "kafka publisher stopped with events still to deliver; they wait in the log"
            );
        } else {
            tracing::info!(
                delivered = self.delivered(),
                "kafka publisher stopped, all delivered"
            );
        }
        // Unacknowledged messages are purged with the producer; they are resent next time.
        let _ = self.producer.flush(Duration::ZERO);
    }
}
