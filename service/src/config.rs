//! Configuration of `stockledgerd` (cli.md): flags, then environment, then a TOML file, then
//! defaults. clap resolves flag-over-environment; every argument is optional there so that
//! the TOML file can fill what neither gave.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use stockledger::Durability;

pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_EVENTS_TOPIC: &str = "inventory.events";
pub const DEFAULT_STOCK_TOPIC: &str = "warehouse.stock";
pub const DEFAULT_EVENTS_RETENTION: &str = "24h";
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Highest `max-connections` accepted (each connection needs a file descriptor).
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest timeout accepted (a day): longer is a typo, not a setting.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Ledger calls (reservations and others) accepted and not yet answered; more get 503
/// `overloaded`.
pub const DEFAULT_MAX_PENDING_WRITES: usize = 4096;
pub const MAX_MAX_PENDING_WRITES: usize = 1_000_000;
/// Most request threads accepted (`workers`).
pub const MAX_WORKERS: usize = 1024;

/// Request threads by default: one per core. One fewer (leaving the log writer a core) cost
/// less CPU per request on 2 cores, but with a single thread a burst of 400 connections
/// was reset in CI (`docs/benchmarks.md`, "Twelfth session"), so it is an operator's choice.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, Parser, Default)]
#[command(
    name = "stockledgerd",
    version,
    about = "Inventory reservation service over the stockledger ledger"
)]
pub struct Args {
    /// Ledger folder (log segments, snapshots, lock file) [default: ./data]
    #[arg(long, env = "STOCKLEDGER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP address [default: 127.0.0.1:8080]
    #[arg(long, env = "STOCKLEDGER_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// sync (default), async or none
    #[arg(long, env = "STOCKLEDGER_DURABILITY", value_name = "MODE")]
    pub durability: Option<String>,
    /// Comma-separated Kafka bootstrap servers; Kafka is off when unset
    #[arg(long, env = "STOCKLEDGER_KAFKA_BROKERS", value_name = "LIST")]
    pub kafka_brokers: Option<String>,
    /// Produced events topic [default: inventory.events]
    #[arg(long, env = "STOCKLEDGER_EVENTS_TOPIC", value_name = "NAME")]
    pub events_topic: Option<String>,
    /// Consumed stock feed topic [default: warehouse.stock]
    #[arg(long, env = "STOCKLEDGER_STOCK_TOPIC", value_name = "NAME")]
    pub stock_topic: Option<String>,
    /// HMAC key for payment callbacks
    #[arg(
        long,
        env = "STOCKLEDGER_PAYMENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub payment_secret: Option<String>,
    /// Partner API token SELLER:TOKEN (repeatable)
    #[arg(
        long = "partner-token",
        env = "STOCKLEDGER_PARTNER_TOKENS",
        value_name = "SELLER:TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub partner_tokens: Option<Vec<String>>,
    /// Token for admin endpoints
    #[arg(
        long,
        env = "STOCKLEDGER_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Events kept readable at least this long, e.g. 24h, 90m [default: 24h]
    #[arg(long, env = "STOCKLEDGER_EVENTS_RETENTION", value_name = "DURATION")]
    pub events_retention: Option<String>,
    /// Reservations kept, live and retained [default: 50000000]
    #[arg(
        long,
        env = "STOCKLEDGER_MAX_ORDERS",
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub max_orders: Option<usize>,
    /// Connections served at once [default: 10000]
    #[arg(
        long,
        env = "STOCKLEDGER_MAX_CONNECTIONS",
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub max_connections: Option<String>,
    /// Whole request head within this many seconds of opening or of the previous answer [default: 10]
    #[arg(
        long,
        env = "STOCKLEDGER_HEADER_TIMEOUT",
        allow_negative_numbers = true,
        value_name = "SECS"
    )]
    pub header_timeout: Option<String>,
    /// Idle keep-alive connections closed after this many seconds [default: 60]
    #[arg(
        long,
        env = "STOCKLEDGER_IDLE_TIMEOUT",
        allow_negative_numbers = true,
        value_name = "SECS"
    )]
    pub idle_timeout: Option<String>,
    /// Body and answer within this many seconds, else 408 [default: 30]
    #[arg(
        long,
        env = "STOCKLEDGER_REQUEST_TIMEOUT",
        allow_negative_numbers = true,
        value_name = "SECS"
    )]
    pub request_timeout: Option<String>,
    /// Ledger calls waiting at once; beyond it 503 overloaded [default: 4096]
    #[arg(
        long,
        env = "STOCKLEDGER_MAX_PENDING_WRITES",
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub max_pending_writes: Option<String>,
    /// Threads serving requests [default: one per core]
    #[arg(
        long,
        env = "STOCKLEDGER_WORKERS",
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub workers: Option<String>,
    /// TOML file with the same keys (flags and environment win)
    #[arg(long, env = "STOCKLEDGER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// A number written as a TOML integer, float or string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Num {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Num {
    fn text(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => f.to_string(),
            Num::Text(s) => s,
        }
    }
}

/// A list written either as one comma-separated string or as a TOML array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrOrList {
    One(String),
    Many(Vec<String>),
}

impl StrOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrOrList::One(s) => split_list(&s),
            StrOrList::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    durability: Option<String>,
    kafka_brokers: Option<StrOrList>,
    events_topic: Option<String>,
    stock_topic: Option<String>,
    payment_secret: Option<String>,
    #[serde(alias = "partner-token")]
    partner_tokens: Option<StrOrList>,
    admin_token: Option<String>,
    events_retention: Option<String>,
    max_orders: Option<usize>,
    max_connections: Option<Num>,
    header_timeout: Option<Num>,
    idle_timeout: Option<Num>,
    request_timeout: Option<Num>,
    max_pending_writes: Option<Num>,
    workers: Option<Num>,
}

/// One partner token.
#[derive(Clone)]
pub struct PartnerToken {
    pub seller: String,
    pub token: String,
}

impl std::fmt::Debug for PartnerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:<redacted>", self.seller)
    }
}

/// The resolved, validated configuration.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub durability: Durability,
    /// Empty: Kafka off.
    pub kafka_brokers: Vec<String>,
    pub events_topic: String,
    pub stock_topic: String,
    pub payment_secret: Option<String>,
    pub partner_tokens: Vec<PartnerToken>,
    pub admin_token: Option<String>,
    /// Log segments are kept this long after their last event, for `GET /v1/events`.
    pub events_retention: std::time::Duration,
    /// Reservations the ledger keeps at once (`Options::max_orders`).
    pub max_orders: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// A whole request head within this of opening or of the previous answer.
    pub header_timeout: Duration,
    /// Keep-alive connections idle this long are closed.
    pub idle_timeout: Duration,
    /// Body and answer within this, else 408 `request_timeout`.
    pub request_timeout: Duration,
    /// Ledger calls accepted and not yet answered; beyond it 503 `overloaded`.
    pub max_pending_writes: usize,
    /// Threads of the runtime that serves requests.
    pub workers: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("durability", &self.durability)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("events_topic", &self.events_topic)
            .field("stock_topic", &self.stock_topic)
            .field(
                "payment_secret",
                &self.payment_secret.as_ref().map(|_| "<set>"),
            )
            .field("partner_tokens", &self.partner_tokens)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("events_retention", &self.events_retention)
            .field("max_orders", &self.max_orders)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_pending_writes", &self.max_pending_writes)
            .field("workers", &self.workers)
            .finish()
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// An empty secret means "not configured" (a variable exported empty), never an empty key.
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

impl Config {
    /// Parses the process arguments and environment; the error names the setting.
    pub fn load() -> Result<Config, String> {
        let args = match Args::try_parse() {
            Ok(a) => a,
            Err(e)
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) =>
            {
                e.exit()
            }
            Err(e) => return Err(e.to_string()),
        };
        Config::resolve(args)
    }

    /// Merges parsed arguments (flags and environment) with the TOML file and defaults.
    pub fn resolve(args: Args) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("config: cannot read {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config: {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };

        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err("data-dir: must not be empty".into());
        }

        let listen_s = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            format!("listen: {listen_s:?} is not an address like 127.0.0.1:8080 or [::1]:8080")
        })?;

        let durability_s = args
            .durability
            .or(file.durability)
            .unwrap_or_else(|| "sync".into());
        let durability: Durability = durability_s.parse().map_err(|_| {
            format!("durability: {durability_s:?} must be one of sync, async, none")
        })?;

        let kafka_brokers = match args.kafka_brokers {
            Some(s) => split_list(&s),
            None => file
                .kafka_brokers
                .map(StrOrList::into_vec)
                .unwrap_or_default(),
        };

        let events_topic = args
            .events_topic
            .or(file.events_topic)
            .unwrap_or_else(|| DEFAULT_EVENTS_TOPIC.into());
        check_topic("events-topic", &events_topic)?;
        let stock_topic = args
            .stock_topic
            .or(file.stock_topic)
            .unwrap_or_else(|| DEFAULT_STOCK_TOPIC.into());
        check_topic("stock-topic", &stock_topic)?;

        let payment_secret = non_empty(args.payment_secret.or(file.payment_secret));
        let admin_token = non_empty(args.admin_token.or(file.admin_token));

        let raw_tokens = match args.partner_tokens {
            Some(v) => v,
            None => file
                .partner_tokens
                .map(StrOrList::into_vec)
                .unwrap_or_default(),
        };
        let mut partner_tokens: Vec<PartnerToken> = Vec::new();
        for raw in raw_tokens {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let Some((seller, token)) = raw.split_once(':') else {
                return Err("partner-token: must be SELLER:TOKEN (no ':' found)".into());
            };
            if seller.is_empty() || token.is_empty() {
                return Err("partner-token: seller and token must both be non-empty".into());
            }
            if seller == "warehouse" {
                return Err(
                    "partner-token: seller id 'warehouse' is reserved for the warehouse feed"
                        .into(),
                );
            }
            if seller.len() > 128 || !seller.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                return Err(format!(
                    "partner-token: seller id {seller:?} must be 1 to 128 bytes of printable ASCII"
                ));
            }
            if partner_tokens
                .iter()
                .any(|t| t.token == token && t.seller != seller)
            {
                return Err(format!(
                    "partner-token: the token of seller {seller:?} is already given to another seller"
                ));
            }
            partner_tokens.push(PartnerToken {
                seller: seller.to_string(),
                token: token.to_string(),
            });
        }

        let retention_s = args
            .events_retention
            .or(file.events_retention)
            .unwrap_or_else(|| DEFAULT_EVENTS_RETENTION.into());
        let events_retention = humantime::parse_duration(retention_s.trim()).map_err(|e| {
            format!("events-retention: {retention_s:?} is not a duration like 24h or 90m: {e}")
        })?;

        let max_orders = args
            .max_orders
            .or(file.max_orders)
            .unwrap_or(stockledger::Options::default().max_orders);
        if max_orders == 0 {
            return Err("max-orders: must be at least 1".into());
        }

        let max_connections = count(
            "max-connections",
            args.max_connections.or(file.max_connections.map(Num::text)),
            DEFAULT_MAX_CONNECTIONS,
            MAX_MAX_CONNECTIONS,
        )?;
        let max_pending_writes = count(
            "max-pending-writes",
            args.max_pending_writes
                .or(file.max_pending_writes.map(Num::text)),
            DEFAULT_MAX_PENDING_WRITES,
            MAX_MAX_PENDING_WRITES,
        )?;
        let workers = count(
            "workers",
            args.workers.or(file.workers.map(Num::text)),
            default_workers(),
            MAX_WORKERS,
        )?;
        let header_timeout = seconds(
            "header-timeout",
            args.header_timeout.or(file.header_timeout.map(Num::text)),
            DEFAULT_HEADER_TIMEOUT,
        )?;
        let idle_timeout = seconds(
            "idle-timeout",
            args.idle_timeout.or(file.idle_timeout.map(Num::text)),
            DEFAULT_IDLE_TIMEOUT,
        )?;
        let request_timeout = seconds(
            "request-timeout",
            args.request_timeout.or(file.request_timeout.map(Num::text)),
            DEFAULT_REQUEST_TIMEOUT,
        )?;

        Ok(Config {
            max_connections,
            max_pending_writes,
            workers,
            header_timeout,
            idle_timeout,
            request_timeout,
            max_orders,
            events_retention,
            data_dir,
            listen,
            durability,
            kafka_brokers,
            events_topic,
            stock_topic,
            payment_secret,
            partner_tokens,
            admin_token,
        })
    }
}

/// A whole number in 1..=max, or the default when unset.
fn count(setting: &str, v: Option<String>, default: usize, max: usize) -> Result<usize, String> {
    let Some(v) = v else {
        return Ok(default);
    };
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{setting}: {v:?} must be a whole number from 1 to {max}"
        )),
    }
}

/// Seconds (`10`, `0.5`) or a duration (`10s`, `2m`), above zero and at most a day.
fn seconds(setting: &str, v: Option<String>, default: Duration) -> Result<Duration, String> {
    let Some(v) = v else {
        return Ok(default);
    };
    let t = v.trim();
    let parsed = match t.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= MAX_TIMEOUT.as_secs_f64() => {
            Some(Duration::from_secs_f64(f))
        }
        Ok(_) => None,
        Err(_) => humantime::parse_duration(t).ok(),
    };
    match parsed {
        Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Ok(d),
        _ => Err(format!(
            "{setting}: {v:?} must be a number of seconds above 0 and at most 86400 (or a duration like 10s)"
        )),
    }
}

fn check_topic(setting: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{setting}: {name:?} is not a valid Kafka topic name (1 to 249 of [A-Za-z0-9._-])"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        let mut all = vec!["stockledgerd"];
        all.extend_from_slice(v);
        Args::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::resolve(Args::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.durability, Durability::Sync);
        assert!(c.kafka_brokers.is_empty());
        assert_eq!(c.events_topic, "inventory.events");
        assert_eq!(c.stock_topic, "warehouse.stock");
        assert!(c.payment_secret.is_none() && c.admin_token.is_none());
        assert_eq!(
            c.events_retention,
            std::time::Duration::from_secs(24 * 3600)
        );
    }

    /// `--max-orders` (cli.md) reaches the ledger's `max_orders`; 0 is refused.
    #[test]
    fn max_orders() {
        let c = Config::resolve(args(&["--max-orders", "1000"])).unwrap();
        assert_eq!(c.max_orders, 1000);
        let d = Config::resolve(args(&[])).unwrap();
        assert_eq!(d.max_orders, 50_000_000);
        let e = Config::resolve(args(&["--max-orders", "0"])).unwrap_err();
        assert!(e.starts_with("max-orders:"), "{e}");
    }

    /// Defect 3: `--events-retention` (cli.md) is read and checked.
    #[test]
    fn events_retention() {
        let c = Config::resolve(args(&["--events-retention", "90m"])).unwrap();
        assert_eq!(c.events_retention, std::time::Duration::from_secs(90 * 60));
        let e = Config::resolve(args(&["--events-retention", "soon"])).unwrap_err();
        assert!(e.starts_with("events-retention:"), "{e}");
    }

    /// Issue 11: the connection settings of cli.md, from flags, environment-free defaults
    /// and the TOML file; invalid values name the setting.
    #[test]
    fn connection_settings() {
        let d = Config::resolve(args(&[])).unwrap();
        assert_eq!(d.max_connections, 10_000);
        assert_eq!(d.header_timeout, Duration::from_secs(10));
        assert_eq!(d.idle_timeout, Duration::from_secs(60));
        assert_eq!(d.request_timeout, Duration::from_secs(30));
        assert_eq!(d.max_pending_writes, DEFAULT_MAX_PENDING_WRITES);
        assert_eq!(d.workers, default_workers());
        assert!(d.workers >= 1);

        let c = Config::resolve(args(&[
            "--max-connections",
            "50",
            "--header-timeout",
            "1",
            "--idle-timeout",
            "0.5",
            "--request-timeout",
            "2m",
            "--max-pending-writes",
            "8",
            "--workers",
            "3",
        ]))
        .unwrap();
        assert_eq!(c.max_connections, 50);
        assert_eq!(c.header_timeout, Duration::from_secs(1));
        assert_eq!(c.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.request_timeout, Duration::from_secs(120));
        assert_eq!(c.max_pending_writes, 8);
        assert_eq!(c.workers, 3);

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "max-connections = 300\nheader-timeout = 3\nidle-timeout = 4.5\nrequest-timeout = \"7s\"\nmax-pending-writes = 9\nworkers = 2\n",
        )
        .unwrap();
        let path = f.to_str().unwrap();
        let c = Config::resolve(args(&["--config", path])).unwrap();
        assert_eq!(c.max_connections, 300);
        assert_eq!(c.header_timeout, Duration::from_secs(3));
        assert_eq!(c.idle_timeout, Duration::from_millis(4500));
        assert_eq!(c.request_timeout, Duration::from_secs(7));
        assert_eq!(c.max_pending_writes, 9);
        assert_eq!(c.workers, 2);
        // The flag wins over the file.
        let c = Config::resolve(args(&["--config", path, "--max-connections", "20"])).unwrap();
        assert_eq!(c.max_connections, 20);
        assert_eq!(c.header_timeout, Duration::from_secs(3));

        for (a, name) in [
            (vec!["--max-connections", "0"], "max-connections"),
            (vec!["--max-connections", "-3"], "max-connections"),
            (vec!["--max-connections", "lots"], "max-connections"),
            (vec!["--max-connections", "1000001"], "max-connections"),
            (vec!["--header-timeout", "0"], "header-timeout"),
            (vec!["--header-timeout", "-1"], "header-timeout"),
            (vec!["--header-timeout", "soon"], "header-timeout"),
            (vec!["--idle-timeout", "nan"], "idle-timeout"),
            (vec!["--idle-timeout", "86401"], "idle-timeout"),
            (vec!["--request-timeout", ""], "request-timeout"),
            (vec!["--request-timeout", "0s"], "request-timeout"),
            (vec!["--max-pending-writes", "0"], "max-pending-writes"),
            (vec!["--max-pending-writes", "-1"], "max-pending-writes"),
            (vec!["--workers", "0"], "workers"),
            (vec!["--workers", "1025"], "workers"),
            (vec!["--workers", "two"], "workers"),
            (vec!["--request-timeout", "-0.5"], "request-timeout"),
        ] {
            let e = Config::resolve(args(&a)).unwrap_err();
            assert!(e.starts_with(name), "{a:?}: {e}");
        }
        std::fs::write(&f, "header-timeout = -2\n").unwrap();
        let e = Config::resolve(args(&["--config", path])).unwrap_err();
        assert!(e.starts_with("header-timeout"), "{e}");
        std::fs::write(&f, "max-connections = true\n").unwrap();
        let e = Config::resolve(args(&["--config", path])).unwrap_err();
        assert!(e.contains("max-connections"), "{e}");
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"[::1]:9000\"\ndurability = \"async\"\npartner-tokens = [\"s1:a:b\"]\nkafka-brokers = \"k1:9092, k2:9092\"\n",
        )
        .unwrap();
        let c = Config::resolve(args(&[
            "--config",
            f.to_str().unwrap(),
            "--durability",
            "none",
        ]))
        .unwrap();
        assert_eq!(c.listen.to_string(), "[::1]:9000");
        assert_eq!(c.durability, Durability::None);
        assert_eq!(c.partner_tokens[0].seller, "s1");
        assert_eq!(c.partner_tokens[0].token, "a:b");
        assert_eq!(c.kafka_brokers, vec!["k1:9092", "k2:9092"]);
    }

    #[test]
    fn repeated_flag() {
        let c = Config::resolve(args(&[
            "--partner-token",
            "s1:t1",
            "--partner-token",
            "s2:t2",
        ]))
        .unwrap();
        assert_eq!(c.partner_tokens.len(), 2);
    }

    #[test]
    fn invalid_settings_are_named() {
        for (a, name) in [
            (vec!["--listen", "nope"], "listen"),
            (vec!["--durability", "fast"], "durability"),
            (vec!["--partner-token", "notoken"], "partner-token"),
            (vec!["--partner-token", "warehouse:x"], "partner-token"),
            (vec!["--events-topic", "bad topic"], "events-topic"),
        ] {
            let e = Config::resolve(args(&a)).unwrap_err();
            assert!(e.starts_with(name), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listn = \"x\"\n").unwrap();
        let e = Config::resolve(args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.contains("listn"), "{e}");
    }
}
