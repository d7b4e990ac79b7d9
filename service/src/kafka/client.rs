//! librdkafka client configuration and logging shared by the producer and the consumer.

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::KafkaConfig;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Producer => "producer.",
            Role::Consumer => "consumer.",
        }
    }
}

/// Environment variables passed through to librdkafka: `STOCKLEDGER_RDKAFKA_SASL_USERNAME`
/// sets `sasl.username` (prefix removed, lower case, `_` becomes `.`).
pub const ENV_PREFIX: &str = "STOCKLEDGER_RDKAFKA_";

/// The librdkafka properties among environment variables (see `ENV_PREFIX`), sorted.
pub fn properties_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(ENV_PREFIX)?;
            (!name.is_empty()).then(|| (name.to_ascii_lowercase().replace('_', "."), v))
        })
        .collect();
    out.sort();
    out
}

/// Parses `KEY=VALUE` (a passthrough property given on a command line).
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected a librdkafka PROPERTY=VALUE")),
    }
}

/// Our defaults, then `STOCKLEDGER_RDKAFKA_*` from the environment, then the configured
/// passthrough properties (the last word wins). A key prefixed `producer.` or `consumer.`
/// applies to that client only, with the prefix removed.
pub fn client_config(
    cfg: &KafkaConfig,
    env: &[(String, String)],
    role: Role,
    defaults: &[(&str, &str)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.trim());
    c.set("client.id", "stockledgerd");
    c.set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in env.iter().chain(&cfg.extra) {
        let other = match role {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        };
        if k.starts_with(other.prefix()) {
            continue;
        }
        let key = k.strip_prefix(role.prefix()).unwrap_or(k);
        c.set(key, v);
    }
    c
}

/// Logs librdkafka's own lines and global errors through `tracing`, repeating one line at
/// most every 30 s so an unreachable cluster does not flood the log.
pub struct LogContext {
    name: &'static str,
    last: Mutex<Option<(String, Instant)>>,
    fatal: std::sync::atomic::AtomicBool,
}

impl LogContext {
    pub fn new(name: &'static str) -> LogContext {
        LogContext {
            name,
            last: Mutex::new(None),
            fatal: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// True once librdkafka reported a fatal error (the client must be recreated).
    pub fn fatal(&self) -> bool {
        self.fatal.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn fresh(&self, line: &str) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((l, at)) if l == line && at.elapsed() < Duration::from_secs(30) => false,
            _ => {
                *last = Some((line.to_string(), Instant::now()));
                true
            }
        }
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let client = self.name;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", client, fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                if self.fresh(message) {
                    tracing::warn!(target: "librdkafka", client, fac, "{message}")
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", client, fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", client, fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.fatal.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(client = self.name, %error, "kafka fatal error: {reason}");
            return;
        }
        let line = format!("{error}: {reason}");
        if self.fresh(&line) {
            tracing::warn!(client = self.name, "kafka: {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig {
            brokers: " b1:9092,b2:9092 ".into(),
            events_topic: "e".into(),
            stock_topic: "s".into(),
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn env_names_map_to_properties() {
        let vars = [
            ("STOCKLEDGER_RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("STOCKLEDGER_RDKAFKA_SASL_MECHANISMS", "SCRAM-SHA-512"),
            ("STOCKLEDGER_RDKAFKA_PRODUCER_LINGER_MS", "20"),
            ("STOCKLEDGER_RDKAFKA_", "ignored"),
            ("STOCKLEDGER_KAFKA_BROKERS", "not a property"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(
            properties_from_env(vars),
            vec![
                ("producer.linger.ms".to_string(), "20".to_string()),
                ("sasl.mechanisms".to_string(), "SCRAM-SHA-512".to_string()),
                ("security.protocol".to_string(), "SASL_SSL".to_string()),
            ]
        );
    }

    #[test]
    fn tls_and_sasl_are_built_in() {
        let native = ClientConfig::new().create_native_config().unwrap();
        let features = native.get("builtin.features").unwrap();
        for f in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "gzip",
            "lz4",
            "snappy",
        ] {
            assert!(
                features.split(',').any(|x| x == f),
                "{f} missing: {features}"
            );
        }
    }

    #[test]
    fn property_flags_parse() {
        assert_eq!(
            parse_property("sasl.password=a=b").unwrap(),
            ("sasl.password".to_string(), "a=b".to_string())
        );
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
    }

    #[test]
    fn passthrough_wins_and_prefixes_pick_the_client() {
        let env = vec![("acks".to_string(), "1".to_string())];
        let c = cfg(&[
            ("acks", "all"),
            ("producer.linger.ms", "50"),
            ("consumer.group.id", "g2"),
            ("security.protocol", "SSL"),
        ]);
        let p = client_config(
            &c,
            &env,
            Role::Producer,
            &[("acks", "0"), ("linger.ms", "5")],
        );
        assert_eq!(p.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("group.id"), None);
        assert_eq!(p.get("security.protocol"), Some("SSL"));
        let q = client_config(&c, &env, Role::Consumer, &[("group.id", "stockledgerd")]);
        assert_eq!(q.get("group.id"), Some("g2"));
        assert_eq!(q.get("linger.ms"), None);
        assert_eq!(q.get("acks"), Some("all"));
    }
}
