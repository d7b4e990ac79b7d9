//! Configuration of `stockledgerd` (cli.md): flags, then environment, then a TOML file, then
//! defaults. clap resolves flag-over-environment; every argument is optional there so that
//! the TOML file can fill what neither gave.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use stockledger::Durability;

pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_EVENTS_TOPIC: &str = "inventory.events";
pub const DEFAULT_STOCK_TOPIC: &str = "warehouse.stock";
pub const DEFAULT_EVENTS_RETENTION: &str = "24h";

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
    #[arg(long, env = "STOCKLEDGER_MAX_ORDERS", value_name = "N")]
    pub max_orders: Option<usize>,
    /// TOML file with the same keys (flags and environment win)
    #[arg(long, env = "STOCKLEDGER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
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

        Ok(Config {
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
