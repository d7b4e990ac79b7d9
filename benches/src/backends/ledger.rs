//! stockledger embedded, through its public Rust API (`reserve_ack`, `commit_ack`,
//! `release_ack`): every client is a thread calling the shared `Ledger`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use stockledger::{Durability, ErrorCode, Ledger, Line, Options, Source};

use super::{add_cell, Answer, Backend, Client, Totals};
use crate::workload::{Catalogue, AMPLE_STOCK, HOT_SKU, WAREHOUSE};

const TTL_SECONDS: u64 = 900;

pub struct Embedded {
    ledger: Arc<Ledger>,
    // Kept so the data dir outlives the ledger.
    _dir: Option<tempfile::TempDir>,
}

pub fn parse_durability(s: &str) -> Result<Durability> {
    match s {
        "sync" => Ok(Durability::Sync),
        "async" => Ok(Durability::Async),
        "none" => Ok(Durability::None),
        _ => Err(anyhow!("durability must be sync, async or none, not {s:?}")),
    }
}

/// Sets every catalogue sku to ample stock; `execute` has no stock command, so one call each.
pub fn seed(ledger: &Ledger, cat: &Catalogue) -> Result<()> {
    for sku in &cat.names {
        ledger
            .set_stock(sku, WAREHOUSE, AMPLE_STOCK, Source::Warehouse)
            .map_err(|e| anyhow!("set_stock {sku}: {e}"))?;
    }
    Ok(())
}

/// Seeds a data dir for `stockledgerd` through the library (the log format is shared), so a
/// million skus need no million HTTP requests. Async mode (one fsync per 10 ms, not per
/// sku); a reopen then proves the last write reached the log before the service starts.
pub fn seed_dir(dir: &Path, cat: &Catalogue) -> Result<()> {
    let open = |durability| {
        Ledger::open(
            dir,
            Options {
                durability,
                ..Options::default()
            },
        )
        .map_err(|e| anyhow!("open {}: {e}", dir.display()))
    };
    seed(&open(Durability::Async)?, cat)?;
    let ledger = open(Durability::Sync)?;
    if let Some(last) = cat.names.last() {
        let level = ledger
            .stock(last, WAREHOUSE)
            .map_err(|e| anyhow!("stock {last}: {e}"))?;
        anyhow::ensure!(
            level.on_hand == AMPLE_STOCK,
            "seeded data dir lost writes: {last} has {}",
            level.on_hand
        );
    }
    Ok(())
}

impl Embedded {
    pub fn new(durability: Durability, cat: &Catalogue) -> Result<Embedded> {
        let (ledger, dir) = match durability {
            Durability::None => {
                let ledger = Ledger::in_memory(Options {
                    durability,
                    ..Options::default()
                });
                seed(&ledger, cat)?;
                (ledger, None)
            }
            _ => {
                // Seeded like the service's data dir: one fsync per sku would take minutes.
                let dir = tempfile::Builder::new()
                    .prefix("peers-ledger")
                    .tempdir()
                    .context("temp dir")?;
                let path = dir.path().join("ledger");
                seed_dir(&path, cat)?;
                let ledger = Ledger::open(
                    &path,
                    Options {
                        durability,
                        ..Options::default()
                    },
                )
                .map_err(|e| anyhow!("open ledger: {e}"))?;
                (ledger, Some(dir))
            }
        };
        Ok(Embedded {
            ledger: Arc::new(ledger),
            _dir: dir,
        })
    }
}

struct EmbeddedClient {
    ledger: Arc<Ledger>,
    lines: Vec<Line>,
}

impl Client for EmbeddedClient {
    fn reserve(&mut self, order_id: &str, skus: &[&str]) -> Result<Answer> {
        self.lines.clear();
        self.lines
            .extend(skus.iter().map(|s| Line::new(*s, WAREHOUSE, 1)));
        match self.ledger.reserve_ack(order_id, &self.lines, TTL_SECONDS) {
            Ok(_) => Ok(Answer::Reserved),
            Err(e) if e.code() == ErrorCode::InsufficientStock => Ok(Answer::Refused),
            Err(e) => Err(anyhow!("reserve {order_id}: {e}")),
        }
    }
    fn commit(&mut self, order_id: &str) -> Result<()> {
        self.ledger
            .commit_ack(order_id)
            .map_err(|e| anyhow!("commit {order_id}: {e}"))
    }
    fn release(&mut self, order_id: &str) -> Result<()> {
        self.ledger
            .release_ack(order_id)
            .map_err(|e| anyhow!("release {order_id}: {e}"))
    }
}

impl Backend for Embedded {
    fn connect(&self) -> Result<Box<dyn Client>> {
        Ok(Box::new(EmbeddedClient {
            ledger: self.ledger.clone(),
            lines: Vec::with_capacity(4),
        }))
    }
    fn set_hot(&self, qty: u64) -> Result<()> {
        self.ledger
            .set_stock(HOT_SKU, WAREHOUSE, qty, Source::Warehouse)
            .map_err(|e| anyhow!("set_stock {HOT_SKU}: {e}"))?;
        Ok(())
    }
    fn totals(&self, cat: &Catalogue, hot_stock: u64) -> Result<Totals> {
        let mut t = Totals::default();
        for sku in &cat.names {
            let l = self
                .ledger
                .stock(sku, WAREHOUSE)
                .map_err(|e| anyhow!("stock {sku}: {e}"))?;
            add_cell(&mut t, AMPLE_STOCK, l.on_hand, l.reserved);
        }
        if hot_stock > 0 {
            let l = self
                .ledger
                .stock(HOT_SKU, WAREHOUSE)
                .map_err(|e| anyhow!("stock {HOT_SKU}: {e}"))?;
            add_cell(&mut t, hot_stock, l.on_hand, l.reserved);
            t.hot_available = Some(l.on_hand.saturating_sub(l.reserved));
        }
        Ok(t)
    }
    fn server_pid(&self) -> Option<u32> {
        None
    }
}
