//! The batch entry point: many commands in one call, one result each, and one wait for the
//! log for all of them (TigerBeetle-style batching: one group commit per call).

use crate::error::Result;
use crate::ledger::Ledger;
use crate::limits::MAX_BATCH;
use crate::types::{Line, OrderRef, Source, Status, StockLevel};
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
        self.ack_all(last, &mut results);
        Ok(results)
    }

    /// Reserves many orders, each all-or-nothing and independent of the others, with one
    /// wait for the log. The lines borrow the caller's strings, so a binding decodes a whole
    /// batch without copying names. Returns `(created, status)` per order, in order; like
    /// [`Ledger::execute`], a log failure turns every success into `ledger_unavailable`.
    pub fn reserve_many(&self, orders: &[OrderRef<'_>]) -> Result<Vec<Result<(bool, Status)>>> {
        if orders.len() > MAX_BATCH {
            return Err(Error::invalid("orders", "at most 10000 orders per batch"));
        }
        let mut results = Vec::with_capacity(orders.len());
        let mut last = 0;
        for o in orders {
            let r = self.reserve_nowait(o.order_id, o.lines, o.ttl_seconds).map(
                |(created, status, lsn)| {
                    last = last.max(lsn);
                    (created, status)
                },
            );
            results.push(r);
        }
        self.ack_all(last, &mut results);
        Ok(results)
    }

    /// One wait for the log up to `last`; on failure every success becomes that error.
    fn ack_all<T>(&self, last: u64, results: &mut [Result<T>]) {
        if last == 0 {
            return;
        }
        if let Err(e) = self.ack(last) {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LineRef;
    use crate::ErrorCode;
    use crate::Options;

    fn ledger() -> Ledger {
        let l = Ledger::in_memory(Options::default());
        l.set_stock("A1", "kol", 3, Source::Warehouse)
            .expect("stock");
        l.set_stock("B2", "kol", 10, Source::Warehouse)
            .expect("stock");
        l
    }

    #[test]
    fn reserve_many_answers_each_order_as_reserve_would() {
        let (batch, single) = (ledger(), ledger());
        let a = [LineRef {
            sku: "A1",
            warehouse: "kol",
            qty: 2,
        }];
        let ab = [
            LineRef {
                sku: "B2",
                warehouse: "kol",
                qty: 1,
            },
            LineRef {
                sku: "A1",
                warehouse: "kol",
                qty: 2,
            },
        ];
        let bad = [LineRef {
            sku: "A1",
            warehouse: "kol",
            qty: 0,
        }];
        let unknown = [LineRef {
            sku: "Z9",
            warehouse: "kol",
            qty: 1,
        }];
        let orders = [
            OrderRef {
                order_id: "o-1",
                lines: &a,
                ttl_seconds: 900,
            },
            OrderRef {
                order_id: "o-2",
                lines: &ab,
                ttl_seconds: 900,
            }, // A1 short: nothing held
            OrderRef {
                order_id: "o-1",
                lines: &a,
                ttl_seconds: 900,
            }, // replay
            OrderRef {
                order_id: "o-1",
                lines: &ab,
                ttl_seconds: 900,
            }, // conflict
            OrderRef {
                order_id: "o-3",
                lines: &bad,
                ttl_seconds: 900,
            },
            OrderRef {
                order_id: "o-4",
                lines: &unknown,
                ttl_seconds: 900,
            },
            OrderRef {
                order_id: "",
                lines: &a,
                ttl_seconds: 900,
            },
        ];
        let got = batch.reserve_many(&orders).expect("batch");
        assert_eq!(got.len(), orders.len());
        for (o, r) in orders.iter().zip(&got) {
            let lines: Vec<Line> = o
                .lines
                .iter()
                .map(|l| Line::new(l.sku, l.warehouse, l.qty))
                .collect();
            let want = single.reserve_ack(o.order_id, &lines, o.ttl_seconds);
            assert_eq!(r, &want, "order {}", o.order_id);
        }
        assert_eq!(got[0], Ok((true, Status::Reserved)));
        assert_eq!(got[2], Ok((false, Status::Reserved)));
        assert_eq!(
            got[1].as_ref().map_err(|e| e.code()),
            Err(ErrorCode::InsufficientStock)
        );
        assert_eq!(
            got[3].as_ref().map_err(|e| e.code()),
            Err(ErrorCode::OrderConflict)
        );
        assert_eq!(
            got[4].as_ref().map_err(|e| e.code()),
            Err(ErrorCode::InvalidRequest)
        );
        for sku in ["A1", "B2"] {
            assert_eq!(batch.stock(sku, "kol").ok(), single.stock(sku, "kol").ok());
        }
        assert_eq!(batch.stock("B2", "kol").map(|l| l.reserved).ok(), Some(0));
    }

    #[test]
    fn reserve_many_refuses_an_oversized_batch_whole() {
        let l = ledger();
        let a = [LineRef {
            sku: "B2",
            warehouse: "kol",
            qty: 1,
        }];
        let ids: Vec<String> = (0..=MAX_BATCH).map(|i| format!("o-{i}")).collect();
        let orders: Vec<OrderRef> = ids
            .iter()
            .map(|id| OrderRef {
                order_id: id,
                lines: &a,
                ttl_seconds: 900,
            })
            .collect();
        let err = l.reserve_many(&orders).expect_err("too many");
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert_eq!(l.stock("B2", "kol").map(|l| l.reserved).ok(), Some(0));
    }
}
