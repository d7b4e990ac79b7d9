//! Calls that may wait on the log, queued per ledger and run in batches on the libuv pool.
//!
//! One napi `AsyncTask` per call costs more than the ledger operation itself (a pool hop, a
//! completion callback, and only 4 pool threads to wait on fsync). So every such call gets
//! its own Promise at once and joins a FIFO queue; while one batch runs on the pool, new
//! calls gather, and when it finishes the next batch starts with everything that gathered.
//! Consecutive stock and reservation calls of a batch go through core's `execute`: one wait
//! for the log (one group commit) per batch. Calls run in the order JavaScript made them.
//!
//! A batch starts from a microtask (`queueMicrotask`), not from the call itself: the calls
//! that one JavaScript turn makes (say 64 awaiting workers resumed by the last batch) then
//! share one batch instead of the first of them going alone.

use std::collections::HashSet;
use std::sync::{Arc, MutexGuard, OnceLock, Weak};

use napi::bindgen_prelude::{Function, FunctionRef, ToNapiValue, TypeName, Unknown};
use napi::{sys, Env, JsValue, ScopedTask, ValueType};
use stockledger::{Command, Error, Outcome};

use crate::convert;
use crate::errors;
use crate::Inner;

type Res<T> = std::result::Result<T, Error>;

/// Calls that start a batch at once when the pool is idle, without waiting for the turn's
/// other calls (which then form the next batch).
const EAGER_BATCH: usize = 16;

/// Most calls in one batch (core's `execute` takes at most 10,000).
const MAX_BATCH: usize = 4096;

/// Most commands in one `execute` call (a batch of `Flat` calls may hold more).
const MAX_EXECUTE: usize = 4096;

/// A call that may wait on the log.
pub enum Op {
    /// Reserve, commit, release, set or adjust stock: batched through `execute`.
    Cmd(Command),
    /// `reserveMany`: one core call for the whole array.
    ReserveMany(Box<crate::many::Batch>),
    /// The reserve/commit/release calls of one JavaScript turn (`flat`): one Promise, one
    /// answer array; consecutive ones share one core call (one wait for the log).
    Flat(Box<crate::flat::Calls>),
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
    Many(Vec<Res<(bool, stockledger::Status)>>),
    /// The answers of a `reserveMany` packed by `index.js`.
    ManyPacked(Vec<Res<(bool, stockledger::Status)>>),
    Flat(crate::flat::Answers),
    Unit,
}

impl Done {
    fn into_js<'e>(self, env: &'e Env, inner: &Inner) -> napi::Result<Unknown<'e>> {
        match self {
            Done::Reservation(r, created) => inner.shapes.reservation(env, &r, created),
            Done::Stock(s) => inner.shapes.level(env, s),
            Done::Ids(ids) => convert::to_js(env, ids),
            Done::Seq(n) => convert::to_js(env, n as f64),
            Done::Many(results) => crate::many::to_js(env, &results),
            Done::ManyPacked(results) => crate::many::to_js_flat(env, &results),
            Done::Flat(mut answers) => crate::flat::encode(env, &mut answers),
            Done::Unit => convert::to_js(env, ()),
        }
    }
}

/// A Promise's resolver. Created, settled and dropped on the JavaScript thread only; it
/// sits in the ledger's queue, which the pool thread never touches.
struct Deferred(sys::napi_deferred);

// SAFETY: see above; the pointer is only moved between owners, never dereferenced off the
// JavaScript thread.
unsafe impl Send for Deferred {}

#[derive(Default)]
pub struct Queue {
    waiting: Vec<(Op, Deferred)>,
    /// The resolvers of the batch on the pool, in order; `Some` while one runs.
    running: Option<Vec<Deferred>>,
    /// A flush is queued as a microtask.
    scheduled: bool,
}

/// The Promise a queued call returns.
pub struct PromiseValue(sys::napi_value);

impl TypeName for PromiseValue {
    fn type_name() -> &'static str {
        "Promise<unknown>"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl PromiseValue {
    pub fn raw(&self) -> sys::napi_value {
        self.0
    }
}

impl ToNapiValue for PromiseValue {
    unsafe fn to_napi_value(_env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        Ok(val.0)
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, Queue> {
    // The queue holds no invariant a panic could break half way; keep going.
    inner.queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// Queues `op` (or rejects at once with its input error) and returns its Promise.
pub fn submit(env: &Env, inner: &Arc<Inner>, op: Res<Op>) -> napi::Result<PromiseValue> {
    let mut deferred = std::ptr::null_mut();
    let mut promise = std::ptr::null_mut();
    napi::check_status!(unsafe {
        sys::napi_create_promise(env.raw(), &mut deferred, &mut promise)
    })?;
    let deferred = Deferred(deferred);
    match op {
        Err(e) => settle(env, inner, deferred, Err(e)),
        Ok(op) => {
            let (start, eager) = {
                let mut q = lock(inner);
                q.waiting.push((op, deferred));
                let idle = q.running.is_none();
                let eager = idle && q.waiting.len() >= EAGER_BATCH;
                (idle && !std::mem::replace(&mut q.scheduled, true), eager)
            };
            if eager {
                // Enough calls for a batch while the pool is idle: start it now, so the pool
                // works on it while this turn makes the rest (which go next).
                dispatch(env, inner);
            } else if start {
                schedule(env, inner);
            }
        }
    }
    Ok(PromiseValue(promise))
}

/// Runs `dispatch` once the current JavaScript turn's microtasks are through.
fn schedule(env: &Env, inner: &Arc<Inner>) {
    let queued = inner
        .scheduler
        .queue_microtask
        .borrow_back(env)
        .and_then(|qm| {
            let flush = inner.scheduler.flush.borrow_back(env)?;
            qm.call(unsafe { Unknown::from_raw_unchecked(env.raw(), flush.raw()) })
        });
    if queued.is_err() {
        // No microtask queue (the VM is going away): start at once instead.
        lock(inner).scheduled = false;
        dispatch(env, inner);
    }
}

/// The JavaScript function that `schedule` queues; it holds the ledger weakly so that a
/// ledger nobody references can still be collected.
pub fn flush_function<'e>(
    env: &'e Env,
    inner: Arc<OnceLock<Weak<Inner>>>,
) -> napi::Result<Function<'e, (), ()>> {
    env.create_function_from_closure("stockledgerFlush", move |ctx| {
        if let Some(inner) = inner.get().and_then(Weak::upgrade) {
            lock(&inner).scheduled = false;
            dispatch(ctx.env, &inner);
        }
        Ok(())
    })
}

/// `queueMicrotask` and the flush function, kept as references.
pub struct Scheduler {
    pub queue_microtask: FunctionRef<Unknown<'static>, Unknown<'static>>,
    pub flush: FunctionRef<(), ()>,
}

/// Starts the next batch unless one is running.
fn dispatch(env: &Env, inner: &Arc<Inner>) {
    let ops = {
        let mut q = lock(inner);
        if q.running.is_some() || q.waiting.is_empty() {
            return;
        }
        // A `reserveMany` is a batch already: it runs alone, so that the next one can run
        // on the pool while JavaScript handles the answer of this one.
        let n = match q
            .waiting
            .iter()
            .position(|(op, _)| matches!(op, Op::ReserveMany(_)))
        {
            Some(0) => 1,
            Some(i) => i,
            None => q.waiting.len(),
        }
        .min(MAX_BATCH);
        let (ops, deferreds): (Vec<Op>, Vec<Deferred>) = q.waiting.drain(..n).unzip();
        q.running = Some(deferreds);
        ops
    };
    let task = BatchTask {
        inner: inner.clone(),
        ops,
    };
    if let Err(e) = env.spawn(task) {
        // The VM refuses new work (it is shutting down): fail the batch rather than hang it.
        let deferreds = lock(inner).running.take().unwrap_or_default();
        let err = errors::unavailable(format!("could not start work: {}", e.reason));
        for d in deferreds {
            settle(env, inner, d, Err(err.clone()));
        }
    }
}

fn settle(env: &Env, inner: &Inner, d: Deferred, result: Res<Done>) {
    let value = match result {
        Ok(done) => done
            .into_js(env, inner)
            .map(|v| v.raw())
            .map_err(|e| errors::unavailable(format!("could not build the answer: {}", e.reason))),
        Err(e) => Err(e),
    };
    match value {
        Ok(v) => unsafe { sys::napi_resolve_deferred(env.raw(), d.0, v) },
        Err(e) => {
            let v = errors::to_js_value(env, &e);
            unsafe { sys::napi_reject_deferred(env.raw(), d.0, v) }
        }
    };
}

pub struct BatchTask {
    inner: Arc<Inner>,
    ops: Vec<Op>,
}

impl<'t> ScopedTask<'t> for BatchTask {
    type Output = Vec<Res<Done>>;
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(run(&self.inner.ledger, std::mem::take(&mut self.ops)))
    }

    fn resolve(&mut self, env: &'t Env, out: Self::Output) -> napi::Result<()> {
        let deferreds = lock(&self.inner).running.take().unwrap_or_default();
        // Calls that gathered while this batch ran start now, before its Promises settle:
        // the pool works on them while the JavaScript thread runs the continuations. (Left
        // to a microtask, they would wait behind those continuations and the two threads
        // would take turns instead of working together.)
        dispatch(env, &self.inner);
        for (d, r) in deferreds.into_iter().zip(out) {
            settle(env, &self.inner, d, r);
        }
        self.next(env);
        Ok(())
    }

    fn reject(&mut self, env: &'t Env, err: napi::Error) -> napi::Result<()> {
        let deferreds = lock(&self.inner).running.take().unwrap_or_default();
        let e = errors::unavailable(err.reason);
        for d in deferreds {
            settle(env, &self.inner, d, Err(e.clone()));
        }
        self.next(env);
        Ok(())
    }
}

impl BatchTask {
    /// Calls that gathered while this batch ran go next, together with those the settled
    /// Promises' continuations are about to make.
    fn next(&self, env: &Env) {
        let start = {
            let mut q = lock(&self.inner);
            !q.waiting.is_empty() && !std::mem::replace(&mut q.scheduled, true)
        };
        if start {
            schedule(env, &self.inner);
        }
    }
}

/// True when no call waits or runs: a call made now would run next.
pub fn idle(inner: &Inner) -> bool {
    let q = lock(inner);
    q.running.is_none() && q.waiting.is_empty()
}

/// Runs a batch in order.
pub fn run(ledger: &stockledger::Ledger, ops: Vec<Op>) -> Vec<Res<Done>> {
    run_ops(ledger, ops)
}

/// Runs a batch in order: each run of consecutive commands is one `execute` call, each run
/// of consecutive `Flat` calls one `execute_answered` call.
fn run_ops(ledger: &stockledger::Ledger, ops: Vec<Op>) -> Vec<Res<Done>> {
    let mut out = Vec::with_capacity(ops.len());
    let mut cmds: Vec<Command> = Vec::with_capacity(ops.len());
    let mut flats: Vec<crate::flat::Calls> = Vec::new();
    // Hashes of the order ids in `cmds`: a second call on the same order starts a new
    // `execute`, so that each call's answer shows the reservation as that call left it. A
    // hash collision only splits a batch; hashing spares a copy of every id.
    let mut orders: HashSet<u64> = HashSet::with_capacity(ops.len());
    for op in ops {
        if !matches!(op, Op::Flat(_)) {
            run_flats(ledger, &mut flats, &mut out);
        }
        let single = match op {
            Op::Flat(calls) => {
                flush(ledger, &mut cmds, &mut out);
                orders.clear();
                flats.push(*calls);
                continue;
            }
            Op::Cmd(c) => {
                if cmds.len() >= MAX_EXECUTE {
                    flush(ledger, &mut cmds, &mut out);
                    orders.clear();
                }
                if let Some(id) = order_of(&c) {
                    let h = id_hash(id);
                    if !orders.insert(h) {
                        flush(ledger, &mut cmds, &mut out);
                        orders.clear();
                        orders.insert(h);
                    }
                }
                cmds.push(c);
                continue;
            }
            Op::ReserveMany(b) => Single::ReserveMany(b),
            Op::ExpireDue => Single::ExpireDue,
            Op::Checkpoint => Single::Checkpoint,
            Op::Close => Single::Close,
        };
        flush(ledger, &mut cmds, &mut out);
        orders.clear();
        out.push(match single {
            Single::ReserveMany(b) => b.run(ledger).map(|r| match b.packed {
                true => Done::ManyPacked(r),
                false => Done::Many(r),
            }),
            Single::ExpireDue => ledger.expire_due().map(Done::Ids),
            Single::Checkpoint => ledger.checkpoint().map(Done::Seq),
            Single::Close => ledger.close().map(|()| Done::Unit),
        });
    }
    flush(ledger, &mut cmds, &mut out);
    run_flats(ledger, &mut flats, &mut out);
    out
}

/// Runs the gathered `Flat` calls, one answer each.
fn run_flats(
    ledger: &stockledger::Ledger,
    flats: &mut Vec<crate::flat::Calls>,
    out: &mut Vec<Res<Done>>,
) {
    if flats.is_empty() {
        return;
    }
    let batches: Vec<&crate::flat::Calls> = flats.iter().collect();
    let mut answers = Vec::with_capacity(batches.len());
    crate::flat::run(ledger, &batches, &mut answers);
    out.extend(answers.into_iter().map(|a| Ok(Done::Flat(a))));
    flats.clear();
}

fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

fn order_of(c: &Command) -> Option<&str> {
    match c {
        Command::Reserve { order_id, .. }
        | Command::Commit { order_id }
        | Command::Release { order_id } => Some(order_id),
        _ => None,
    }
}

enum Single {
    ReserveMany(Box<crate::many::Batch>),
    ExpireDue,
    Checkpoint,
    Close,
}

fn flush(ledger: &stockledger::Ledger, cmds: &mut Vec<Command>, out: &mut Vec<Res<Done>>) {
    if cmds.is_empty() {
        return;
    }
    match ledger.execute(cmds) {
        Ok(results) => {
            for (c, r) in cmds.iter().zip(results) {
                out.push(r.and_then(|o| finish(ledger, c, o)));
            }
        }
        Err(e) => out.extend(cmds.iter().map(|_| Err(e.clone()))),
    }
    cmds.clear();
}

/// Turns `execute`'s compact outcome into the full answer of the single call.
fn finish(ledger: &stockledger::Ledger, c: &Command, o: Outcome) -> Res<Done> {
    let view = |order_id: &str, created: Option<bool>| -> Res<Done> {
        match ledger.reservation(order_id)? {
            Some(r) => Ok(Done::Reservation(r, created)),
            None => Err(Error::OrderNotFound {
                order_id: order_id.to_string(),
            }),
        }
    };
    match (c, o) {
        (Command::Reserve { order_id, .. }, Outcome::Reserved { created, .. }) => {
            view(order_id, Some(created))
        }
        (Command::Commit { order_id }, _) | (Command::Release { order_id }, _) => {
            view(order_id, None)
        }
        (_, Outcome::Stock(level)) => Ok(Done::Stock(level)),
        (Command::Reserve { order_id, .. }, _) => view(order_id, None),
        _ => Err(errors::invalid("call", "internal: unexpected outcome")),
    }
}
