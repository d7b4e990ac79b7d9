//! The batch entry point: many commands in one call, one result each, and one wait for the
//! log for all of them (TigerBeetle-style batching: one group commit per call).

use crate::error::Result;
use crate::ledger::Ledger;
use crate::limits::MAX_BATCH;
use crate::types::{Line, Source, Status, StockLevel};
use crate::Error;

/// One command of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Reserve {
        order_id: String,
        lines: Vec<Line>,
        ttl_seconds: u64,
    },
    Commit {
        order_id: String,
    },
    Release {
        order_id: String,
    },
    SetStock {
        sku: String,
        warehouse: String,
        on_hand: u64,
    },
    AdjustStock {
        sku: String,
        warehouse: String,
        delta: i64,
        adjustment_id: String,
        reason: Option<String>,
    },
}

impl Command {
    /// A reserve command (see [`Ledger::reserve`]).
    pub fn reserve(order_id: &str, lines: &[Line], ttl_seconds: u64) -> Command {
        Command::Reserve {
            order_id: order_id.into(),
            lines: lines.to_vec(),
            ttl_seconds,
        }
    }

    /// A commit command (see [`Ledger::commit`]).
    pub fn commit(order_id: &str) -> Command {
        Command::Commit {
            order_id: order_id.into(),
        }
    }

    /// A release command (see [`Ledger::release`]).
    pub fn release(order_id: &str) -> Command {
        Command::Release {
            order_id: order_id.into(),
        }
    }
}

/// The result of one successful command (compact: no copies of the lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `created` is false for an idempotent replay; `status` is the reservation's status.
    Reserved {
        created: bool,
        status: Status,
    },
    Committed,
    Released,
    Stock(StockLevel),
}

impl Ledger {
    /// Applies the commands in order and returns one result per command. Commands are
    /// independent: a failed one does not undo the others. Every successful result is
    /// durable (per the durability mode) when this returns; if the log fails, every result
    /// of the call becomes `ledger_unavailable`. At most 10,000 commands per call.
    pub fn execute(&self, commands: &[Command]) -> Result<Vec<Result<Outcome>>> {
        if commands.len() > MAX_BATCH {
            return Err(Error::invalid(
                "commands",
                "at most 10000 commands per batch",
            ));
        }
        let mut results = Vec::with_capacity(commands.len());
        let mut last = 0;
        for c in commands {
            let r = self.execute_one(c).map(|(o, lsn)| {
                last = last.max(lsn);
                o
            });
            results.push(r);
        }
        if last != 0 {
            if let Err(e) = self.ack(last) {
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(e.clone());
                }
            }
        }
        Ok(results)
    }

    fn execute_one(&self, c: &Command) -> Result<(Outcome, u64)> {
        Ok(match c {
            Command::Reserve {
                order_id,
                lines,
                ttl_seconds,
            } => {
                let (created, status, lsn) = self.reserve_nowait(order_id, lines, *ttl_seconds)?;
                (Outcome::Reserved { created, status }, lsn)
            }
            Command::Commit { order_id } => {
                (Outcome::Committed, self.commit_nowait(order_id, None)?)
            }
            Command::Release { order_id } => (Outcome::Released, self.release_nowait(order_id)?),
            Command::SetStock {
                sku,
                warehouse,
                on_hand,
            } => {
                let (level, lsn) =
                    self.set_stock_nowait(sku, warehouse, *on_hand, None, Source::Warehouse)?;
                (Outcome::Stock(level), lsn)
            }
            Command::AdjustStock {
                sku,
                warehouse,
                delta,
                adjustment_id,
                reason,
            } => {
                let (level, lsn) = self.adjust_stock_nowait(
                    sku,
                    warehouse,
                    *delta,
                    adjustment_id,
                    reason.as_deref(),
                    Source::Warehouse,
                )?;
                (Outcome::Stock(level), lsn)
            }
        })
    }
}
