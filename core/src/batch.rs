//! The batch entry point: many commands in one call, one result each, and one wait for the
//! log for all of them (TigerBeetle-style batching: one group commit per call).

use crate::error::Result;
use crate::ledger::Ledger;
use crate::limits::MAX_BATCH;
use crate::orders::{Lines, Order};
use crate::time::Millis;
use crate::types::{Line, LineRef, OrderRef, Source, Status, StockLevel};
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

/// One reservation call of [`Ledger::execute_answered`], borrowing the caller's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRef<'a> {
    Reserve(OrderRef<'a>),
    Commit(&'a str),
    Release(&'a str),
}

/// A reservation as one call of [`Ledger::execute_answered`] left it: the fields of
/// [`crate::Reservation`] (but the order id, which the caller has), copied from the order
/// under its lock when the call decided, without a second lookup or a copy of any name.
#[derive(Debug)]
pub struct Answered<'a> {
    /// `Some(false)` for an idempotent replay; `None` for commit and release.
    pub created: Option<bool>,
    pub status: Status,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub finished_at: Option<Millis>,
    held: Lines,
    ledger: &'a Ledger,
}

impl<'a> Answered<'a> {
    pub(crate) fn of(ledger: &'a Ledger, created: Option<bool>, o: &Order) -> Answered<'a> {
        Answered {
            created,
            status: o.status,
            created_at: o.created_at,
            expires_at: o.expires_at(),
            finished_at: (o.finished_at != 0).then_some(o.finished_at),
            // Cell ids only (inline up to four lines): names are looked up when read.
            held: o.lines.clone(),
            ledger,
        }
    }

    /// The lines, in the order [`Ledger::reservation`] lists them (by cell), borrowing the
    /// ledger's names (cells are never removed).
    pub fn lines(&self) -> impl ExactSizeIterator<Item = LineRef<'a>> + '_ {
        let catalog = &self.ledger.state.catalog;
        self.held.iter().map(move |l| {
            let cell = catalog.cell(l.cell);
            LineRef {
                sku: &catalog.sku(cell.sku).name,
                warehouse: cell.warehouse(),
                qty: l.qty as u64,
            }
        })
    }
}

impl Ledger {
    /// Like [`Ledger::execute`] for reserve, commit and release calls that borrow their
    /// strings, answering each success with `answer(index, &reservation as the call left
    /// it)` instead of a compact [`Outcome`]: a binding builds its full answer without
    /// reading the reservation back ([`Ledger::reservation`] looks it up again and copies
    /// every name). Same errors, same order, one wait for the log, at most 10,000 calls;
    /// if the log fails, every success becomes `ledger_unavailable` (after `answer` ran).
    pub fn execute_answered<R>(
        &self,
        calls: &[CallRef<'_>],
        mut answer: impl FnMut(usize, &Answered<'_>) -> R,
    ) -> Result<Vec<Result<R>>> {
        self.run_batch(calls, "commands", |i, c| {
            self.answer_one(c).map(|(a, lsn)| (answer(i, &a), lsn))
        })
    }

    fn answer_one(&self, c: &CallRef<'_>) -> Result<(Answered<'_>, u64)> {
        match *c {
            CallRef::Reserve(o) => {
                let (created, _, lsn, a) =
                    self.reserve_decide(o.order_id, o.lines, o.ttl_seconds, |order| {
                        Answered::of(self, None, order)
                    })?;
                Ok((
                    Answered {
                        created: Some(created),
                        ..a
                    },
                    lsn,
                ))
            }
            CallRef::Commit(id) => {
                let lsn = self.commit_nowait(id, None)?;
                Ok((self.answered_now(id)?, lsn))
            }
            CallRef::Release(id) => {
                let lsn = self.release_nowait(id)?;
                Ok((self.answered_now(id)?, lsn))
            }
        }
    }

    /// The order as it is now (just after a commit or release of it decided).
    pub(crate) fn answered_now(&self, order_id: &str) -> Result<Answered<'_>> {
        let (hash, shard) = self.state.orders.shard_hashed(order_id);
        match shard.map.find(hash, order_id) {
            Some(s) => Ok(Answered::of(self, None, &shard.map.order(s))),
            None => Err(Error::OrderNotFound {
                order_id: order_id.into(),
            }),
        }
    }

    /// Applies the commands in order and returns one result per command. Commands are
    /// independent: a failed one does not undo the others. Every successful result is
    /// durable (per the durability mode) when this returns; if the log fails, every result
    /// of the call becomes `ledger_unavailable`. At most 10,000 commands per call.
    pub fn execute(&self, commands: &[Command]) -> Result<Vec<Result<Outcome>>> {
        self.run_batch(commands, "commands", |_, c| self.execute_one(c))
    }

    /// Reserves many orders, each all-or-nothing and independent of the others, with one
    /// wait for the log. The lines borrow the caller's strings, so a binding decodes a whole
    /// batch without copying names. Returns `(created, status)` per order, in order; like
    /// [`Ledger::execute`], a log failure turns every success into `ledger_unavailable`.
    pub fn reserve_many(&self, orders: &[OrderRef<'_>]) -> Result<Vec<Result<(bool, Status)>>> {
        self.run_batch(orders, "orders", |_, o| {
            self.reserve_nowait(o.order_id, o.lines, o.ttl_seconds)
                .map(|(created, status, lsn)| ((created, status), lsn))
        })
    }

    /// Runs `one` over a batch of at most `MAX_BATCH` items (`what` names them in the
    /// error), in order, then waits for the log once up to the last lsn it staged.
    fn run_batch<T, R>(
        &self,
        items: &[T],
        what: &'static str,
        mut one: impl FnMut(usize, &T) -> Result<(R, u64)>,
    ) -> Result<Vec<Result<R>>> {
        if items.len() > MAX_BATCH {
            return Err(Error::invalid(
                what,
                format!("at most {MAX_BATCH} {what} per batch"),
            ));
        }
        let mut results = Vec::with_capacity(items.len());
        let mut last = 0;
        for (i, item) in items.iter().enumerate() {
            results.push(one(i, item).map(|(r, lsn)| {
                last = last.max(lsn);
                r
            }));
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

    /// The answer as `Ledger::reservation` would give it, from an `Answered`.
    fn owned(id: &str, a: &Answered<'_>) -> (crate::Reservation, Option<bool>) {
        let r = crate::Reservation {
            order_id: id.to_string(),
            status: a.status,
            lines: a
                .lines()
                .map(|l| Line::new(l.sku, l.warehouse, l.qty))
                .collect(),
            created_at: a.created_at,
            expires_at: a.expires_at,
            finished_at: a.finished_at,
        };
        (r, a.created)
    }

    #[test]
    fn execute_answered_answers_as_the_reservation_reads_back() {
        let l = ledger();
        let ba = [
            LineRef {
                sku: "B2",
                warehouse: "kol",
                qty: 1,
            },
            LineRef {
                sku: "A1",
                warehouse: "kol",
                qty: 1,
            },
        ];
        let a = [LineRef {
            sku: "A1",
            warehouse: "kol",
            qty: 5,
        }];
        let order = |order_id, lines| {
            CallRef::Reserve(OrderRef {
                order_id,
                lines,
                ttl_seconds: 60,
            })
        };
        let calls = [
            order("o-1", &ba[..]),   // created
            order("o-1", &ba[..]),   // replay
            order("o-1", &a[..]),    // conflict
            order("o-2", &a[..]),    // refused: A1 short
            CallRef::Commit("o-1"),  // paid
            CallRef::Release("o-1"), // paid: refused
            CallRef::Release("o-9"), // unknown
            order("o-3", &ba[..1]),  // created
            CallRef::Release("o-3"), // released
            CallRef::Release("o-3"), // no-op
            order("", &ba[..1]),     // bad id
        ];
        let mut seen = Vec::new();
        let got = l
            .execute_answered(&calls, |i, a| {
                let id = match calls[i] {
                    CallRef::Reserve(o) => o.order_id,
                    CallRef::Commit(id) | CallRef::Release(id) => id,
                };
                let (r, created) = owned(id, a);
                seen.push(i);
                (r, created)
            })
            .expect("batch");
        assert_eq!(seen, [0, 1, 4, 7, 8, 9]);
        let code = |i: usize| got[i].as_ref().err().map(|e| e.code());
        assert_eq!(code(2), Some(ErrorCode::OrderConflict));
        assert_eq!(code(3), Some(ErrorCode::InsufficientStock));
        assert_eq!(code(5), Some(ErrorCode::OrderPaid));
        assert_eq!(code(6), Some(ErrorCode::OrderNotFound));
        assert_eq!(code(10), Some(ErrorCode::InvalidRequest));
        let created = |i: usize| got[i].as_ref().ok().and_then(|(_, c)| *c);
        assert_eq!(
            (created(0), created(1), created(4), created(7), created(8)),
            (Some(true), Some(false), None, Some(true), None)
        );
        // Lines by cell (A1 was stocked first), as the read-back lists them.
        let first = &got[0].as_ref().expect("created").0;
        assert_eq!(first.lines[0].sku, "A1");
        // Each answer equals the reservation read back as that call left it; the last call
        // on an order equals what the ledger holds now.
        let now = |id: &str| l.reservation(id).expect("read").expect("present");
        assert_eq!(
            got[1].as_ref().map(|(r, _)| r.status).ok(),
            Some(Status::Reserved)
        );
        assert_eq!(
            got[0]
                .as_ref()
                .map(|(r, _)| (&r.lines, r.created_at, r.expires_at))
                .ok(),
            Some((
                &now("o-1").lines,
                now("o-1").created_at,
                now("o-1").expires_at
            ))
        );
        assert_eq!(
            got[4].as_ref().map(|(r, _)| r.clone()).ok(),
            Some(now("o-1"))
        );
        assert_eq!(
            got[9].as_ref().map(|(r, _)| r.clone()).ok(),
            Some(now("o-3"))
        );
        assert_eq!(
            got[8].as_ref().map(|(r, _)| r.clone()).ok(),
            Some(now("o-3"))
        );
        // Refused and conflicting calls held nothing: o-1 is paid, o-3 released.
        assert_eq!(l.stock("A1", "kol").map(|s| s.reserved).ok(), Some(0));
        assert_eq!(l.stock("B2", "kol").map(|s| s.reserved).ok(), Some(0));
    }

    #[test]
    fn execute_answered_refuses_an_oversized_batch_whole() {
        let l = ledger();
        let calls = vec![CallRef::Commit("o-1"); MAX_BATCH + 1];
        let err = l.execute_answered(&calls, |_, _| ()).expect_err("too many");
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
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
