//! Node.js binding of the stockledger library (node-api.md). Calls that may wait on the log
//! return Promises and run on the libuv pool (`batch`: napi `AsyncTask`s, one per batch of
//! queued calls); pure reads are synchronous. Inputs are checked in `convert`, errors are
//! built in `errors`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod batch;
pub mod convert;
pub mod errors;
mod flat;
mod many;
mod names;
pub mod shapes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use napi::bindgen_prelude::{AsyncTask, Function, JsObjectValue, Null, Unknown};
use napi::JsValue;
use napi::{Env, ScopedTask};
use napi_derive::napi;
use stockledger::{Command, Durability, Error, Options};

use crate::batch::{Op, PromiseValue};

use crate::convert::SkuStock;

type Res<T> = std::result::Result<T, Error>;

pub struct Inner {
    ledger: stockledger::Ledger,
    /// Core keeps answering reads after close; the binding refuses every call instead.
    closed: AtomicBool,
    /// Calls waiting for the pool, and the batch running there.
    queue: Mutex<batch::Queue>,
    scheduler: batch::Scheduler,
    shapes: shapes::Shapes,
    names: names::Names,
    /// Buffers of `__flat` calls answered inline, reused from one crossing to the next.
    flat: Mutex<flat::Scratch>,
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
        let ledger = out.map_err(|e| errors::to_napi(env, &e))?;
        let queue_microtask = env
            .get_global()?
            .get_named_property::<Function<Unknown<'static>, Unknown<'static>>>("queueMicrotask")?
            .create_ref()?;
        let target = Arc::new(OnceLock::new());
        let flush = batch::flush_function(env, target.clone())?.create_ref()?;
        let inner = Arc::new(Inner {
            ledger,
            closed: AtomicBool::new(false),
            queue: Mutex::default(),
            scheduler: batch::Scheduler {
                queue_microtask,
                flush,
            },
            shapes: shapes::Shapes::new(env)?,
            names: names::Names::new(env)?,
            flat: Mutex::default(),
        });
        let _ = target.set(Arc::downgrade(&inner));
        Ok(Ledger { inner })
    }
}

fn open_args(path: &Unknown, options: &Unknown) -> Res<(String, Durability)> {
    let path = convert::string(path, "path")?;
    if path.is_empty() {
        return Err(errors::invalid("path", "must not be empty"));
    }
    let durability = match convert::opt_object(options, "options")? {
        None => Durability::Sync,
        Some(o) => {
            match convert::opt_string(&convert::get(&o, "durability", "durability")?, "durability")?
            {
                None => Durability::Sync,
                Some(d) => d.parse::<Durability>()?,
            }
        }
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

    /// Queues a call that may wait on the log; bad input or a closed ledger rejects.
    fn submit(&self, env: &Env, op: impl FnOnce() -> Res<Op>) -> napi::Result<PromiseValue> {
        let op = self.inner.check_open().and_then(|()| op());
        batch::submit(env, &self.inner, op)
    }

    /// Sets a cell's on-hand stock; BELOW_RESERVED if that is less than what is reserved.
    #[napi(
        ts_args_type = "sku: string, warehouse: string, onHand: number",
        ts_return_type = "Promise<StockLevel>"
    )]
    pub fn set_stock(
        &self,
        env: Env,
        sku: Unknown,
        warehouse: Unknown,
        on_hand: Unknown,
    ) -> napi::Result<PromiseValue> {
        self.submit(&env, || {
            Ok(Op::Cmd(Command::SetStock {
                sku: convert::string(&sku, "sku")?,
                warehouse: convert::string(&warehouse, "warehouse")?,
                on_hand: convert::uint(&on_hand, "onHand")?,
            }))
        })
    }

    /// Adds `delta` (non-zero, may be negative) to on-hand, idempotent by `adjustmentId`.
    #[napi(
        ts_args_type = "sku: string, warehouse: string, delta: number, options: AdjustOptions",
        ts_return_type = "Promise<StockLevel>"
    )]
    pub fn adjust_stock(
        &self,
        env: Env,
        sku: Unknown,
        warehouse: Unknown,
        delta: Unknown,
        options: Unknown,
    ) -> napi::Result<PromiseValue> {
        self.submit(&env, || {
            let sku = convert::string(&sku, "sku")?;
            let warehouse = convert::string(&warehouse, "warehouse")?;
            let delta = convert::int(&delta, "delta")?;
            let o = convert::object(&options, "options")?;
            Ok(Op::Cmd(Command::AdjustStock {
                sku,
                warehouse,
                delta,
                adjustment_id: convert::string(
                    &convert::get(&o, "adjustmentId", "adjustmentId")?,
                    "adjustmentId",
                )?,
                reason: convert::opt_string(&convert::get(&o, "reason", "reason")?, "reason")?,
            }))
        })
    }

    /// A cell's figures from one moment (zeros for an unknown cell). Synchronous.
    #[napi(
        ts_args_type = "sku: string, warehouse: string",
        ts_return_type = "StockLevel"
    )]
    pub fn stock(&self, env: Env, sku: Unknown, warehouse: Unknown) -> napi::Result<Unknown<'_>> {
        let read = || -> Res<stockledger::StockLevel> {
            self.inner.check_open()?;
            let sku = convert::string(&sku, "sku")?;
            let warehouse = convert::string(&warehouse, "warehouse")?;
            self.inner.ledger.stock(&sku, &warehouse)
        };
        match read() {
            Ok(level) => self
                .inner
                .shapes
                .level(&env, level)
                .map(|v| unsafe { Unknown::from_raw_unchecked(env.raw(), v.raw()) }),
            Err(e) => Err(errors::to_napi(&env, &e)),
        }
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
    pub fn reserve(
        &self,
        env: Env,
        order_id: Unknown,
        lines: Unknown,
        options: Unknown,
    ) -> napi::Result<PromiseValue> {
        self.submit(&env, || {
            let keys = self.inner.names.values(env.raw())?;
            let order_id = convert::string(&order_id, "orderId")?;
            let lines = convert::lines(&lines, &keys)?;
            let ttl_seconds = match convert::opt_object(&options, "options")? {
                None => None,
                Some(o) => {
                    convert::opt_uint(&keys.get(&o, keys.ttl_seconds, "ttlSeconds")?, "ttlSeconds")?
                }
            }
            .unwrap_or(stockledger::limits::DEFAULT_TTL_SECONDS);
            Ok(Op::Cmd(Command::Reserve {
                order_id,
                lines,
                ttl_seconds,
            }))
        })
    }

    /// Reserves many orders in one call, each all-or-nothing and independent of the others,
    /// with one wait for the log. Resolves to one result per order, in order: `true`
    /// (reserved now), `false` (already reserved with the same lines) or the error `reserve`
    /// would reject with (returned, not thrown). A malformed array rejects with
    /// INVALID_REQUEST naming the field and reserves nothing. At most 10,000 orders.
    #[napi(
        ts_args_type = "orders: Array<OrderInput>, options?: ReserveOptions",
        ts_return_type = "Promise<Array<boolean | LedgerError>>"
    )]
    pub fn reserve_many(
        &self,
        env: Env,
        orders: Unknown,
        options: Unknown,
    ) -> napi::Result<PromiseValue> {
        self.submit(&env, || {
            Ok(Op::ReserveMany(Box::new(many::Batch::decode(
                &orders,
                &options,
                &self.inner.names,
            )?)))
        })
    }

    /// `reserveMany` with the orders packed by `index.js` (see `many::Batch::unpack`; not for
    /// direct use). `ttl` is -1 for the default. Resolves to `[codes, errors]`.
    #[napi(js_name = "__many", skip_typescript)]
    pub fn many_packed(
        &self,
        env: Env,
        text: Unknown,
        nums: Unknown,
        ttl: f64,
    ) -> napi::Result<PromiseValue> {
        let ttl_seconds = if ttl < 0.0 {
            stockledger::limits::DEFAULT_TTL_SECONDS
        } else {
            ttl as u64
        };
        let batch = many::Batch::unpack(&env, &text, &nums, ttl_seconds)?;
        self.submit(&env, || {
            // As the unpacked path: one ttl for the batch, a bad one refuses the call.
            stockledger::limits::check_ttl(ttl_seconds)?;
            Ok(Op::ReserveMany(Box::new(batch)))
        })
    }

    /// `reserved` -> `paid` (payment succeeded); a no-op for a paid one.
    #[napi(
        ts_args_type = "orderId: string",
        ts_return_type = "Promise<Reservation>"
    )]
    pub fn commit(&self, env: Env, order_id: Unknown) -> napi::Result<PromiseValue> {
        self.submit(&env, || {
            Ok(Op::Cmd(Command::Commit {
                order_id: convert::string(&order_id, "orderId")?,
            }))
        })
    }

    /// `reserved` -> `released`; a no-op for a released or expired one.
    #[napi(
        ts_args_type = "orderId: string",
        ts_return_type = "Promise<Reservation>"
    )]
    pub fn release(&self, env: Env, order_id: Unknown) -> napi::Result<PromiseValue> {
        self.submit(&env, || {
            Ok(Op::Cmd(Command::Release {
                order_id: convert::string(&order_id, "orderId")?,
            }))
        })
    }

    /// The reservation of an order, or null. Synchronous.
    #[napi(
        ts_args_type = "orderId: string",
        ts_return_type = "Reservation | null"
    )]
    pub fn reservation(&self, env: Env, order_id: Unknown) -> napi::Result<Unknown<'_>> {
        let read = || -> Res<Option<stockledger::Reservation>> {
            self.inner.check_open()?;
            let id = convert::string(&order_id, "orderId")?;
            self.inner.ledger.reservation(&id)
        };
        match read() {
            Ok(Some(r)) => self
                .inner
                .shapes
                .reservation(&env, &r, None)
                .map(|v| unsafe { Unknown::from_raw_unchecked(env.raw(), v.raw()) }),
            Ok(None) => convert::to_js(&env, Null)
                .map(|v| unsafe { Unknown::from_raw_unchecked(env.raw(), v.raw()) }),
            Err(e) => Err(errors::to_napi(&env, &e)),
        }
    }

    /// Expires every reservation past its `expiresAt`; resolves to their order ids.
    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn expire_due(&self, env: Env) -> napi::Result<PromiseValue> {
        self.submit(&env, || Ok(Op::ExpireDue))
    }

    /// Writes a snapshot now; resolves to the last event seq it holds.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn checkpoint(&self, env: Env) -> napi::Result<PromiseValue> {
        self.submit(&env, || Ok(Op::Checkpoint))
    }

    /// Flushes the log and releases the folder. Every later call fails with
    /// LEDGER_UNAVAILABLE; closing again is a no-op.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<PromiseValue> {
        // Calls made before close() still run (the queue is FIFO); calls after it are refused.
        self.inner.closed.store(true, Ordering::Release);
        batch::submit(&env, &self.inner, Ok(Op::Close))
    }

    /// The `reserve`/`commit`/`release` calls of one JavaScript turn in one crossing (see
    /// `flat` and `index.js`; not for direct use). Answers `[text, nums, errors]`, or a
    /// Promise of it when the calls must wait: always in 'sync' and 'async' mode, and in
    /// 'none' mode while earlier calls are still queued (so that calls stay in order) or when
    /// `inline` is false (index.js sends batches through the pool now and then so that the
    /// event loop gets its turn).
    #[napi(js_name = "__flat", skip_typescript)]
    pub fn flat<'e>(
        &self,
        env: &'e Env,
        text: Unknown<'e>,
        nums: Unknown<'e>,
        inline: bool,
    ) -> napi::Result<Unknown<'e>> {
        // A crossing made while another one holds the buffers (none do today) gets new ones.
        let mut spare = flat::Scratch::default();
        let mut guard = self.inner.flat.try_lock().ok();
        let s = guard.as_deref_mut().unwrap_or(&mut spare);
        s.calls.decode(env, &text, &nums)?;
        if let Err(e) = self.inner.check_open() {
            let n = s.calls.len();
            let answers = s.answers(1);
            answers[0].refuse_all(n, &e);
            return flat::encode(env, &mut answers[0]);
        }
        if inline && self.inner.ledger.durability() == Durability::None && batch::idle(&self.inner)
        {
            // Nothing ahead of these calls and nothing to wait for: run them now, on this
            // thread, with no Promise and no pool hop.
            flat::run(&self.inner.ledger, &[&s.calls], &mut s.answers);
            return flat::encode(env, &mut s.answers[0]);
        }
        let calls = Box::new(std::mem::take(&mut s.calls));
        drop(guard);
        let p = batch::submit(env, &self.inner, Ok(Op::Flat(calls)))?;
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), p.raw()) })
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
