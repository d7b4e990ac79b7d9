//! Node.js binding of the stockledger library (node-api.md). Calls that may wait on the log
//! run as napi `AsyncTask`s on the libuv pool and return Promises; pure reads are
//! synchronous. Inputs are checked in `convert`, errors are built in `errors`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod convert;
pub mod errors;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Unknown};
use napi::{Env, ScopedTask};
use napi_derive::napi;
use stockledger::{Durability, Error, Options, Source};

use crate::convert::{Reservation, SkuStock, StockLevel};

type Res<T> = std::result::Result<T, Error>;

struct Inner {
    ledger: stockledger::Ledger,
    /// Core keeps answering reads after close; the binding refuses every call instead.
    closed: AtomicBool,
}

impl Inner {
    fn check_open(&self) -> Res<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(errors::closed())
        } else {
            Ok(())
        }
    }
}

/// An inventory ledger: stock cells and reservations over a write-ahead log. Obtain one with
/// `Ledger.open`.
#[napi]
pub struct Ledger {
    inner: Arc<Inner>,
}

/// A call that may wait on the log, decided on the libuv pool.
pub enum Op {
    Reserve {
        order_id: String,
        lines: Vec<stockledger::Line>,
        ttl_seconds: u64,
    },
    Commit(String),
    Release(String),
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
    ExpireDue,
    Checkpoint,
    Close,
}

/// What a finished `Op` hands back to JavaScript.
pub enum Done {
    Reservation(stockledger::Reservation, Option<bool>),
    Stock(stockledger::StockLevel),
    Ids(Vec<String>),
    Seq(u64),
    Unit,
}

impl Op {
    fn run(self, inner: &Inner) -> Res<Done> {
        let l = &inner.ledger;
        if !matches!(self, Op::Close) {
            inner.check_open()?;
        }
        Ok(match self {
            Op::Reserve {
                order_id,
                lines,
                ttl_seconds,
            } => {
                let r = l.reserve(&order_id, &lines, ttl_seconds)?;
                Done::Reservation(r.reservation, Some(r.created))
            }
            Op::Commit(id) => Done::Reservation(l.commit(&id)?, None),
            Op::Release(id) => Done::Reservation(l.release(&id)?, None),
            Op::SetStock {
                sku,
                warehouse,
                on_hand,
            } => Done::Stock(l.set_stock(&sku, &warehouse, on_hand, Source::Warehouse)?),
            Op::AdjustStock {
                sku,
                warehouse,
                delta,
                adjustment_id,
                reason,
            } => Done::Stock(l.adjust_stock(
                &sku,
                &warehouse,
                delta,
                &adjustment_id,
                reason.as_deref(),
                Source::Warehouse,
            )?),
            Op::ExpireDue => Done::Ids(l.expire_due()?),
            Op::Checkpoint => Done::Seq(l.checkpoint()?),
            Op::Close => {
                l.close()?;
                Done::Unit
            }
        })
    }
}

impl Done {
    fn to_js<'e>(self, env: &'e Env) -> napi::Result<Unknown<'e>> {
        match self {
            Done::Reservation(r, created) => convert::to_js(env, Reservation::new(r, created)),
            Done::Stock(s) => convert::to_js(env, StockLevel::from(s)),
            Done::Ids(ids) => convert::to_js(env, ids),
            Done::Seq(n) => convert::to_js(env, n as f64),
            Done::Unit => convert::to_js(env, ()),
        }
    }
}

/// One call on the libuv pool. Bad input travels as the `Err` of `op` so that it rejects
/// the Promise instead of throwing synchronously.
pub struct OpTask {
    inner: Arc<Inner>,
    op: Option<Res<Op>>,
}

impl<'t> ScopedTask<'t> for OpTask {
    type Output = Res<Done>;
    type JsValue = Unknown<'t>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(match self.op.take() {
            Some(op) => op.and_then(|op| op.run(&self.inner)),
            None => Err(errors::invalid("call", "already run")),
        })
    }

    fn resolve(&mut self, env: &'t Env, out: Self::Output) -> napi::Result<Unknown<'t>> {
        match out {
            Ok(done) => done.to_js(env),
            Err(e) => Err(errors::to_napi(env, &e)),
        }
    }
}

/// `Ledger.open` on the libuv pool: recovery reads the snapshot and the log.
pub struct OpenTask {
    args: Option<Res<(String, Durability)>>,
}

impl<'t> ScopedTask<'t> for OpenTask {
    type Output = Res<stockledger::Ledger>;
    type JsValue = Ledger;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(match self.args.take() {
            Some(args) => args.and_then(|(path, durability)| {
                stockledger::Ledger::open(
                    path,
                    Options {
                        durability,
                        ..Options::default()
                    },
                )
            }),
            None => Err(errors::invalid("call", "already run")),
        })
    }

    fn resolve(&mut self, env: &'t Env, out: Self::Output) -> napi::Result<Ledger> {
        match out {
            Ok(ledger) => Ok(Ledger {
                inner: Arc::new(Inner {
                    ledger,
                    closed: AtomicBool::new(false),
                }),
            }),
            Err(e) => Err(errors::to_napi(env, &e)),
        }
    }
}

fn open_args(path: &Unknown, options: &Unknown) -> Res<(String, Durability)> {
    let path = convert::string(path, "path")?;
    if path.is_empty() {
        return Err(errors::invalid("path", "must not be empty"));
    }
    let durability = match convert::opt_object(options, "options")? {
        None => Durability::Sync,
        Some(o) => match convert::opt_string(&convert::get(&o, "durability", "durability")?, "durability")? {
            None => Durability::Sync,
            Some(d) => d.parse::<Durability>()?,
        },
    };
    Ok((path, durability))
}

#[napi]
impl Ledger {
    /// Opens (creating if needed) the ledger in the folder `path`, recovering its state from
    /// the snapshot and the log. A second open of the same folder fails with
    /// LEDGER_UNAVAILABLE naming the lock.
    #[napi(
        ts_args_type = "path: string, options?: OpenOptions",
        ts_return_type = "Promise<Ledger>"
    )]
    pub fn open(path: Unknown, options: Unknown) -> AsyncTask<OpenTask> {
        AsyncTask::new(OpenTask {
            args: Some(open_args(&path, &options)),
        })
    }

    fn task(&self, op: impl FnOnce() -> Res<Op>) -> AsyncTask<OpTask> {
        let op = self.inner.check_open().and_then(|()| op());
        AsyncTask::new(OpTask {
            inner: self.inner.clone(),
            op: Some(op),
        })
    }

    /// Sets a cell's on-hand stock; BELOW_RESERVED if that is less than what is reserved.
    #[napi(
        ts_args_type = "sku: string, warehouse: string, onHand: number",
        ts_return_type = "Promise<StockLevel>"
    )]
    pub fn set_stock(&self, sku: Unknown, warehouse: Unknown, on_hand: Unknown) -> AsyncTask<OpTask> {
        self.task(|| {
            Ok(Op::SetStock {
                sku: convert::string(&sku, "sku")?,
                warehouse: convert::string(&warehouse, "warehouse")?,
                on_hand: convert::uint(&on_hand, "onHand")?,
            })
        })
    }

    /// Adds `delta` (non-zero, may be negative) to on-hand, idempotent by `adjustmentId`.
    #[napi(
        ts_args_type = "sku: string, warehouse: string, delta: number, options: AdjustOptions",
        ts_return_type = "Promise<StockLevel>"
    )]
    pub fn adjust_stock(
        &self,
        sku: Unknown,
        warehouse: Unknown,
        delta: Unknown,
        options: Unknown,
    ) -> AsyncTask<OpTask> {
        self.task(|| {
            let sku = convert::string(&sku, "sku")?;
            let warehouse = convert::string(&warehouse, "warehouse")?;
            let delta = convert::int(&delta, "delta")?;
            let o = convert::object(&options, "options")?;
            Ok(Op::AdjustStock {
                sku,
                warehouse,
                delta,
                adjustment_id: convert::string(
                    &convert::get(&o, "adjustmentId", "adjustmentId")?,
                    "adjustmentId",
                )?,
                reason: convert::opt_string(&convert::get(&o, "reason", "reason")?, "reason")?,
            })
        })
    }

    /// A cell's figures from one moment (zeros for an unknown cell). Synchronous.
    #[napi(ts_args_type = "sku: string, warehouse: string")]
    pub fn stock(&self, env: Env, sku: Unknown, warehouse: Unknown) -> napi::Result<StockLevel> {
        let read = || -> Res<StockLevel> {
            self.inner.check_open()?;
            let sku = convert::string(&sku, "sku")?;
            let warehouse = convert::string(&warehouse, "warehouse")?;
            Ok(self.inner.ledger.stock(&sku, &warehouse)?.into())
        };
        read().map_err(|e| errors::to_napi(&env, &e))
    }

    /// Every cell of a sku and their sums; null for a sku never stocked. Synchronous.
    #[napi(ts_args_type = "sku: string")]
    pub fn sku_stock(&self, env: Env, sku: Unknown) -> napi::Result<Option<SkuStock>> {
        let read = || -> Res<Option<SkuStock>> {
            self.inner.check_open()?;
            let sku = convert::string(&sku, "sku")?;
            Ok(self.inner.ledger.sku_stock(&sku)?.map(SkuStock::from))
        };
        read().map_err(|e| errors::to_napi(&env, &e))
    }

    /// Hard-reserves every line or none. Retrying with the same order id and lines returns
    /// the existing reservation (`created: false`); other lines give ORDER_CONFLICT.
    #[napi(
        ts_args_type = "orderId: string, lines: Array<Line>, options?: ReserveOptions",
        ts_return_type = "Promise<Reservation>"
    )]
    pub fn reserve(&self, order_id: Unknown, lines: Unknown, options: Unknown) -> AsyncTask<OpTask> {
        self.task(|| {
            let order_id = convert::string(&order_id, "orderId")?;
            let lines = convert::lines(&lines)?;
            let ttl_seconds = match convert::opt_object(&options, "options")? {
                None => None,
                Some(o) => convert::opt_uint(
                    &convert::get(&o, "ttlSeconds", "ttlSeconds")?,
                    "ttlSeconds",
                )?,
            }
            .unwrap_or(stockledger::limits::DEFAULT_TTL_SECONDS);
            Ok(Op::Reserve {
                order_id,
                lines,
                ttl_seconds,
            })
        })
    }

    /// `reserved` -> `paid` (payment succeeded); a no-op for a paid one.
    #[napi(ts_args_type = "orderId: string", ts_return_type = "Promise<Reservation>")]
    pub fn commit(&self, order_id: Unknown) -> AsyncTask<OpTask> {
        self.task(|| Ok(Op::Commit(convert::string(&order_id, "orderId")?)))
    }

    /// `reserved` -> `released`; a no-op for a released or expired one.
    #[napi(ts_args_type = "orderId: string", ts_return_type = "Promise<Reservation>")]
    pub fn release(&self, order_id: Unknown) -> AsyncTask<OpTask> {
        self.task(|| Ok(Op::Release(convert::string(&order_id, "orderId")?)))
    }

    /// The reservation of an order, or null. Synchronous.
    #[napi(ts_args_type = "orderId: string")]
    pub fn reservation(&self, env: Env, order_id: Unknown) -> napi::Result<Option<Reservation>> {
        let read = || -> Res<Option<Reservation>> {
            self.inner.check_open()?;
            let id = convert::string(&order_id, "orderId")?;
            Ok(self
                .inner
                .ledger
                .reservation(&id)?
                .map(|r| Reservation::new(r, None)))
        };
        read().map_err(|e| errors::to_napi(&env, &e))
    }

    /// Expires every reservation past its `expiresAt`; resolves to their order ids.
    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn expire_due(&self) -> AsyncTask<OpTask> {
        self.task(|| Ok(Op::ExpireDue))
    }

    /// Writes a snapshot now; resolves to the last event seq it holds.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn checkpoint(&self) -> AsyncTask<OpTask> {
        self.task(|| Ok(Op::Checkpoint))
    }

    /// Flushes the log and releases the folder. Every later call fails with
    /// LEDGER_UNAVAILABLE; closing again is a no-op.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<OpTask> {
        self.inner.closed.store(true, Ordering::Release);
        AsyncTask::new(OpTask {
            inner: self.inner.clone(),
            op: Some(Ok(Op::Close)),
        })
    }

    /// 'sync', 'async' or 'none'.
    #[napi(getter, ts_return_type = "'sync' | 'async' | 'none'")]
    pub fn durability(&self) -> String {
        match self.inner.ledger.durability() {
            Durability::Sync => "sync",
            Durability::Async => "async",
            Durability::None => "none",
        }
        .to_string()
    }

    /// True once `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}
