//! `Ledger.reserve_many`: a whole batch of orders decoded in one pass and handed to the core
//! in one call, with one wait for the log.
//!
//! The names are borrowed from the Python strings (their cached UTF-8), never copied: the
//! batch keeps a strong reference to every string it borrows, so the borrow outlives any
//! change another thread makes to the caller's lists while the interpreter is released.

use std::os::raw::c_char;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use stockledger::{limits, LineRef, OrderRef};

use crate::errors::invalid;

/// Most orders in one call: the core's batch limit.
pub const MAX_ORDERS: usize = 10_000;

extern "C" {
    // In CPython's API since 3.3 and in the limited API since 3.10; the abi3 wheel targets
    // 3.9, whose headers leave it out of the limited API although every interpreter has it.
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut ffi::PyObject,
        size: *mut ffi::Py_ssize_t,
    ) -> *const c_char;
}

/// A decoded batch: the strings it borrows and, per order, its line count.
pub struct Batch<'py> {
    /// Per order: the id, then sku and warehouse of each line.
    strings: Vec<Bound<'py, PyString>>,
    qtys: Vec<u64>,
    line_counts: Vec<u8>,
}

/// The orders and lines of a batch, borrowing its strings.
pub struct Borrowed<'a> {
    lines: Vec<LineRef<'a>>,
    ids: Vec<&'a str>,
    line_counts: &'a [u8],
}

impl<'py> Batch<'py> {
    /// Decodes `orders` (a list or tuple of `(order_id, lines)`); a wrong shape or type
    /// raises `InvalidInput` naming the field, before anything is reserved.
    pub fn decode(orders: &Bound<'py, PyAny>) -> PyResult<Batch<'py>> {
        let py = orders.py();
        let items = Seq::of(orders, || "orders".into(), MAX_ORDERS)?;
        let mut batch = Batch {
            strings: Vec::with_capacity(items.len() * 3),
            qtys: Vec::with_capacity(items.len()),
            line_counts: Vec::with_capacity(items.len()),
        };
        for i in 0..items.len() {
            let order = items.get(i)?;
            let pair = Seq::of(&order, || format!("orders[{i}]"), 2)?;
            if pair.len() != 2 {
                let reason = "must be an (order_id, lines) tuple";
                return Err(invalid(py, &format!("orders[{i}]"), reason));
            }
            batch.push_string(&pair.get(0)?, || format!("orders[{i}].order_id"))?;
            let field = || format!("orders[{i}].lines");
            let lines_obj = pair.get(1)?;
            let lines = Seq::of(&lines_obj, field, limits::MAX_LINES)?;
            if lines.len() == 0 {
                return Err(invalid(py, &field(), "must hold 1 to 100 lines"));
            }
            for j in 0..lines.len() {
                batch.push_line(&lines.get(j)?, i, j)?;
            }
            batch.line_counts.push(lines.len() as u8);
        }
        Ok(batch)
    }

    fn push_line(&mut self, line: &Bound<'py, PyAny>, i: usize, j: usize) -> PyResult<()> {
        let field = || format!("orders[{i}].lines[{j}]");
        let parts = Seq::of(line, field, 3)?;
        if parts.len() != 3 {
            let reason = "must be a (sku, warehouse, qty) tuple";
            return Err(invalid(line.py(), &field(), reason));
        }
        self.push_string(&parts.get(0)?, || format!("{}.sku", field()))?;
        self.push_string(&parts.get(1)?, || format!("{}.warehouse", field()))?;
        let qty_field = Lazy(|| format!("{}.qty", field()));
        let qty = crate::convert::int(&parts.get(2)?, qty_field, 1, limits::MAX_QTY as i64)?;
        self.qtys.push(qty as u64);
        Ok(())
    }

    fn push_string(&mut self, obj: &Bound<'py, PyAny>, field: impl Fn() -> String) -> PyResult<()> {
        let py = obj.py();
        let s = obj
            .cast::<PyString>()
            .map_err(|_| invalid(py, &field(), "must be a string"))?;
        // Computes and caches the UTF-8 form now, with the interpreter held.
        borrow_str(s)
            .ok_or_else(|| invalid(py, &field(), "must be valid Unicode (no lone surrogates)"))?;
        self.strings.push(s.clone());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.line_counts.len()
    }

    /// The batch as the core takes it.
    pub fn borrow(&self) -> Borrowed<'_> {
        let mut strings = self.strings.iter().map(|s| borrow_str(s).unwrap_or(""));
        let mut lines = Vec::with_capacity(self.qtys.len());
        let mut ids = Vec::with_capacity(self.line_counts.len());
        let mut qtys = self.qtys.iter();
        for &n in &self.line_counts {
            ids.push(strings.next().unwrap_or(""));
            for _ in 0..n {
                let sku = strings.next().unwrap_or("");
                let warehouse = strings.next().unwrap_or("");
                let qty = qtys.next().copied().unwrap_or(0);
                lines.push(LineRef {
                    sku,
                    warehouse,
                    qty,
                });
            }
        }
        debug_assert_eq!(lines.len(), self.qtys.len());
        Borrowed {
            lines,
            ids,
            line_counts: &self.line_counts,
        }
    }
}

/// A field path built only when an error names it.
struct Lazy<F>(F);

impl<F: Fn() -> String> crate::convert::Field for Lazy<F> {
    fn path(&self) -> String {
        (self.0)()
    }
}

/// A list or tuple, read item by item without copying it.
enum Seq<'a, 'py> {
    List(&'a Bound<'py, PyList>),
    Tuple(&'a Bound<'py, PyTuple>),
}

impl<'a, 'py> Seq<'a, 'py> {
    /// `obj` as a list or tuple of at most `max` items.
    fn of(obj: &'a Bound<'py, PyAny>, field: impl Fn() -> String, max: usize) -> PyResult<Self> {
        let py = obj.py();
        let seq = if let Ok(l) = obj.cast::<PyList>() {
            Seq::List(l)
        } else if let Ok(t) = obj.cast::<PyTuple>() {
            Seq::Tuple(t)
        } else {
            return Err(invalid(py, &field(), "must be a list or tuple"));
        };
        if seq.len() > max {
            return Err(invalid(
                py,
                &field(),
                format!("must hold at most {max} items"),
            ));
        }
        Ok(seq)
    }

    fn len(&self) -> usize {
        match self {
            Seq::List(l) => l.len(),
            Seq::Tuple(t) => t.len(),
        }
    }

    /// An item; a list shortened meanwhile (by an `__index__` of the caller's) is an error.
    fn get(&self, k: usize) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Seq::List(l) => l.get_item(k),
            Seq::Tuple(t) => t.get_item(k),
        }
    }
}

impl<'a> Borrowed<'a> {
    pub fn orders(&self, ttl_seconds: u64) -> Vec<OrderRef<'_>> {
        let mut start = 0;
        let mut out = Vec::with_capacity(self.ids.len());
        for (id, &n) in self.ids.iter().zip(self.line_counts) {
            let end = start + n as usize;
            out.push(OrderRef {
                order_id: id,
                lines: &self.lines[start..end],
                ttl_seconds,
            });
            start = end;
        }
        out
    }
}

/// The UTF-8 form of a Python string, cached in the string object (so the borrow lives as
/// long as the object); `None` for a string with lone surrogates (the error is cleared).
fn borrow_str<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a str> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str object and the interpreter is held (a `Bound` proves both);
    // the buffer belongs to the object and stays valid and unchanged while it lives.
    unsafe {
        let data = PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size);
        if data.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), size as usize);
        Some(std::str::from_utf8_unchecked(bytes))
    }
}
