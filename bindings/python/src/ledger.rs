//! The `Ledger` class: a thin shell over `stockledger::Ledger`. Arguments are checked here
//! for type only; every call that touches the ledger runs with the interpreter released
//! (`py.detach`), so Python threads share one ledger and group commit batches their fsyncs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};
use stockledger::{limits, Durability, Line, Options, Source};

use crate::batch::Batch;
use crate::convert::{self, Arg};
use crate::errors::{self, to_py};
use crate::events::event_to_dict;
use crate::types::{Reservation, StockLevel};

/// An inventory ledger stored in a folder (created if needed).
///
/// ``durability``: ``"sync"`` (default: a change is acknowledged once its log record is on
/// disk), ``"async"`` (log flushed at least every 10 ms) or ``"none"`` (memory only).
/// Only one ``Ledger`` may have a folder open at a time. Safe to share between threads.
/// Use it as a context manager, or call ``close()``; every call after ``close()`` raises
/// ``LedgerUnavailable``.
#[pyclass(frozen, module = "stockledger")]
pub struct Ledger {
    inner: Arc<stockledger::Ledger>,
    closed: AtomicBool,
    path: PathBuf,
    durability: Durability,
}

impl Ledger {
    /// The core ledger, unless this object was closed (reads are refused too).
    fn live(&self, py: Python<'_>) -> PyResult<&stockledger::Ledger> {
        if self.closed.load(Ordering::Acquire) {
            return Err(errors::unavailable(py, "ledger is closed"));
        }
        Ok(&self.inner)
    }
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Sync => "sync",
        Durability::Async => "async",
        Durability::None => "none",
    }
}

#[pymethods]
impl Ledger {
    #[new]
    #[pyo3(signature = (path, durability = Arg::Default), text_signature = "(path, durability='sync')")]
    fn new(py: Python<'_>, path: &Bound<'_, PyAny>, durability: Arg<'_>) -> PyResult<Ledger> {
        let path = convert::path(path, "path")?;
        let durability = match durability {
            Arg::Default => Durability::Sync,
            Arg::Given(d) => convert::string(&d, "durability")?
                .parse::<Durability>()
                .map_err(|e| to_py(py, e))?,
        };
        let options = Options {
            durability,
            ..Options::default()
        };
        // Recovery reads the whole log: no reason to hold other threads up meanwhile.
        let inner = py
            .detach(|| stockledger::Ledger::open(&path, options))
            .map_err(|e| to_py(py, e))?;
        Ok(Ledger {
            inner: Arc::new(inner),
            closed: AtomicBool::new(false),
            path,
            durability,
        })
    }

    /// Sets a cell's ``on_hand``; raises ``BelowReserved`` below what is reserved.
    fn set_stock(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        warehouse: &Bound<'_, PyAny>,
        on_hand: &Bound<'_, PyAny>,
    ) -> PyResult<StockLevel> {
        let ledger = self.live(py)?;
        let sku = convert::string(sku, "sku")?;
        let warehouse = convert::string(warehouse, "warehouse")?;
        let on_hand = convert::uint(on_hand, "on_hand", limits::MAX_ON_HAND)?;
        py.detach(|| ledger.set_stock(&sku, &warehouse, on_hand, Source::Warehouse))
            .map(StockLevel::from)
            .map_err(|e| to_py(py, e))
    }

    /// Adds ``delta`` (non-zero, may be negative) to a cell's ``on_hand``, at most once per
    /// ``adjustment_id``: a replay returns the cell as it is now and applies nothing.
    #[pyo3(signature = (sku, warehouse, delta, adjustment_id, reason = None))]
    fn adjust_stock(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        warehouse: &Bound<'_, PyAny>,
        delta: &Bound<'_, PyAny>,
        adjustment_id: &Bound<'_, PyAny>,
        reason: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<StockLevel> {
        let ledger = self.live(py)?;
        let sku = convert::string(sku, "sku")?;
        let warehouse = convert::string(warehouse, "warehouse")?;
        let max = limits::MAX_ON_HAND as i64;
        let delta = convert::int(delta, "delta", -max, max)?;
        let adjustment_id = convert::string(adjustment_id, "adjustment_id")?;
        let reason = match reason {
            Some(r) => convert::opt_string(r, "reason")?,
            None => None,
        };
        py.detach(|| {
            ledger.adjust_stock(
                &sku,
                &warehouse,
                delta,
                &adjustment_id,
                reason.as_deref(),
                Source::Warehouse,
            )
        })
        .map(StockLevel::from)
        .map_err(|e| to_py(py, e))
    }

    /// The figures of one cell (zeros for an unknown cell).
    fn stock(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        warehouse: &Bound<'_, PyAny>,
    ) -> PyResult<StockLevel> {
        let ledger = self.live(py)?;
        let sku = convert::string(sku, "sku")?;
        let warehouse = convert::string(warehouse, "warehouse")?;
        py.detach(|| ledger.stock(&sku, &warehouse))
            .map(StockLevel::from)
            .map_err(|e| to_py(py, e))
    }

    /// Every cell of a sku as ``{warehouse: StockLevel}``, or ``None`` for an unknown sku.
    fn sku_stock<'py>(
        &self,
        py: Python<'py>,
        sku: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let ledger = self.live(py)?;
        let sku = convert::string(sku, "sku")?;
        let Some(all) = py
            .detach(|| ledger.sku_stock(&sku))
            .map_err(|e| to_py(py, e))?
        else {
            return Ok(None);
        };
        let out = PyDict::new(py);
        for (wh, level) in all.warehouses {
            out.set_item(wh, StockLevel::from(level))?;
        }
        Ok(Some(out))
    }

    /// Holds stock for an order, all lines or none (``InsufficientStock`` lists every short
    /// line). ``lines``: ``(sku, warehouse, qty)`` tuples. Idempotent by ``order_id``: the
    /// same lines again return the existing reservation; other lines raise ``OrderConflict``.
    #[pyo3(signature = (order_id, lines, ttl_seconds = Arg::Default), text_signature = "(order_id, lines, ttl_seconds=900)")]
    fn reserve(
        &self,
        py: Python<'_>,
        order_id: &Bound<'_, PyAny>,
        lines: &Bound<'_, PyAny>,
        ttl_seconds: Arg<'_>,
    ) -> PyResult<Reservation> {
        let ledger = self.live(py)?;
        let order_id = convert::string(order_id, "order_id")?;
        let lines = convert::lines(lines)?;
        let ttl = match ttl_seconds {
            Arg::Default => limits::DEFAULT_TTL_SECONDS,
            Arg::Given(t) => {
                convert::int(&t, "ttl_seconds", 1, limits::MAX_TTL_SECONDS as i64)? as u64
            }
        };
        py.detach(|| ledger.reserve(&order_id, &lines, ttl))
            .map(|r| Reservation::from(r.reservation))
            .map_err(|e| to_py(py, e))
    }

    /// Reserves many orders in one call. ``orders``: a list of ``(order_id, lines)``, each
    /// all-or-nothing and independent of the others, with one wait for the log for all.
    /// Returns one result per order, in order: ``True`` (reserved now), ``False`` (already
    /// reserved with the same lines), or the exception ``reserve`` would raise, returned
    /// rather than raised. A malformed batch raises ``InvalidInput`` and reserves nothing.
    /// At most 10,000 orders per call.
    #[pyo3(signature = (orders, ttl_seconds = Arg::Default), text_signature = "(orders, ttl_seconds=900)")]
    fn reserve_many<'py>(
        &self,
        py: Python<'py>,
        orders: &Bound<'py, PyAny>,
        ttl_seconds: Arg<'py>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ledger = self.live(py)?;
        let ttl = match ttl_seconds {
            Arg::Default => limits::DEFAULT_TTL_SECONDS,
            Arg::Given(t) => {
                convert::int(&t, "ttl_seconds", 1, limits::MAX_TTL_SECONDS as i64)? as u64
            }
        };
        let batch = Batch::decode(orders)?;
        let borrowed = batch.borrow();
        let refs = borrowed.orders(ttl);
        let results = py
            .detach(|| ledger.reserve_many(&refs))
            .map_err(|e| to_py(py, e))?;
        debug_assert_eq!(results.len(), batch.len());
        let items = results.into_iter().map(|r| match r {
            Ok((created, _)) => PyBool::new(py, created).to_owned().into_any(),
            Err(e) => to_py(py, e).into_value(py).into_bound(py).into_any(),
        });
        PyList::new(py, items)
    }

    /// Marks a reservation paid: its lines leave the warehouse. A paid one again is a no-op.
    fn commit(&self, py: Python<'_>, order_id: &Bound<'_, PyAny>) -> PyResult<Reservation> {
        let ledger = self.live(py)?;
        let order_id = convert::string(order_id, "order_id")?;
        py.detach(|| ledger.commit(&order_id))
            .map(Reservation::from)
            .map_err(|e| to_py(py, e))
    }

    /// Cancels a reservation and returns its stock; a released or expired one is returned
    /// as it is. Raises ``OrderPaid`` for a paid one.
    fn release(&self, py: Python<'_>, order_id: &Bound<'_, PyAny>) -> PyResult<Reservation> {
        let ledger = self.live(py)?;
        let order_id = convert::string(order_id, "order_id")?;
        py.detach(|| ledger.release(&order_id))
            .map(Reservation::from)
            .map_err(|e| to_py(py, e))
    }

    /// The reservation of an order, or ``None``.
    fn reservation(
        &self,
        py: Python<'_>,
        order_id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Reservation>> {
        let ledger = self.live(py)?;
        let order_id = convert::string(order_id, "order_id")?;
        py.detach(|| ledger.reservation(&order_id))
            .map(|r| r.map(Reservation::from))
            .map_err(|e| to_py(py, e))
    }

    /// Expires every reservation whose ttl has passed; returns their order ids.
    fn expire_due(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let ledger = self.live(py)?;
        py.detach(|| ledger.expire_due()).map_err(|e| to_py(py, e))
    }

    /// Writes a snapshot of the durable state now; returns the last event seq it holds.
    fn checkpoint(&self, py: Python<'_>) -> PyResult<u64> {
        let ledger = self.live(py)?;
        py.detach(|| ledger.checkpoint()).map_err(|e| to_py(py, e))
    }

    /// Durable events with ``seq > after`` (at most ``limit``), as dicts of the event shape.
    #[pyo3(signature = (after = Arg::Default, limit = Arg::Default), text_signature = "(after=0, limit=1000)")]
    fn events<'py>(
        &self,
        py: Python<'py>,
        after: Arg<'py>,
        limit: Arg<'py>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ledger = self.live(py)?;
        let after = match after {
            Arg::Default => 0,
            Arg::Given(a) => convert::uint(&a, "after", i64::MAX as u64)?,
        };
        let limit = match limit {
            Arg::Default => 1000,
            Arg::Given(l) => convert::int(&l, "limit", 1, 10_000)? as usize,
        };
        let events = py
            .detach(|| ledger.events(after, limit))
            .map_err(|e| to_py(py, e))?;
        let out = PyList::empty(py);
        for ev in &events {
            out.append(event_to_dict(py, ev)?)?;
        }
        Ok(out)
    }

    /// The seq of the last durable event (0 when none).
    #[getter]
    fn last_seq(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.live(py)?.last_seq())
    }

    /// Flushes the log, releases the folder's lock. Idempotent; every other call after it
    /// raises ``LedgerUnavailable``.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let inner = &self.inner;
        py.detach(|| inner.close()).map_err(|e| to_py(py, e))
    }

    /// Whether ``close()`` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The folder this ledger was opened on.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// ``"sync"``, ``"async"`` or ``"none"``.
    #[getter]
    fn durability(&self) -> &'static str {
        durability_name(self.durability)
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        slf.get().live(py)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Ledger({}, durability='{}'{})",
            crate::types::py_repr(&self.path.display().to_string()),
            durability_name(self.durability),
            if self.closed.load(Ordering::Acquire) {
                ", closed"
            } else {
                ""
            }
        )
    }
}

/// Benchmark aid: `n` reservations of one unit of `sku`/`warehouse` made from Rust, with the
/// same per-call work as `Ledger.reserve` minus Python (an order id and a line built per
/// call). Returns the seconds taken; `bench/bench.py` compares it with the Python loop.
#[pyfunction]
pub fn _rust_reserve_loop(
    py: Python<'_>,
    ledger: &Ledger,
    prefix: &str,
    sku: &str,
    warehouse: &str,
    n: u64,
) -> PyResult<f64> {
    let inner = ledger.live(py)?;
    py.detach(|| {
        let start = Instant::now();
        for i in 0..n {
            let order_id = format!("{prefix}{i}");
            let lines = vec![Line::new(sku, warehouse, 1)];
            let r = inner.reserve(&order_id, &lines, limits::DEFAULT_TTL_SECONDS)?;
            std::hint::black_box(r);
        }
        Ok(start.elapsed().as_secs_f64())
    })
    .map_err(|e| to_py(py, e))
}
