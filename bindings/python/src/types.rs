//! The value classes handed to Python: immutable, comparable, with a readable `repr`.
//! Python objects (datetimes, the lines list) are built only when an attribute is read, so
//! a call that ignores its answer pays for none of them.

use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyList, PyTuple, PyTzInfo};
use stockledger::{format_rfc3339, Millis};

/// The figures of one stock cell from one moment: ``available == on_hand - reserved``.
#[pyclass(frozen, eq, hash, module = "stockledger")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StockLevel {
    /// Units in the warehouse.
    #[pyo3(get)]
    pub on_hand: u64,
    /// Units held by reservations in state ``reserved``.
    #[pyo3(get)]
    pub reserved: u64,
    /// ``on_hand - reserved``: what a new reservation can take.
    #[pyo3(get)]
    pub available: u64,
}

#[pymethods]
impl StockLevel {
    #[new]
    fn new(on_hand: u64, reserved: u64, available: u64) -> StockLevel {
        StockLevel {
            on_hand,
            reserved,
            available,
        }
    }

    fn __getnewargs__(&self) -> (u64, u64, u64) {
        (self.on_hand, self.reserved, self.available)
    }

    fn __repr__(&self) -> String {
        format!(
            "StockLevel(on_hand={}, reserved={}, available={})",
            self.on_hand, self.reserved, self.available
        )
    }
}

impl From<stockledger::StockLevel> for StockLevel {
    fn from(l: stockledger::StockLevel) -> StockLevel {
        StockLevel {
            on_hand: l.on_hand,
            reserved: l.reserved,
            available: l.available,
        }
    }
}

/// One short line of a refused reservation (see ``InsufficientStock.shortfalls``).
#[pyclass(frozen, eq, hash, module = "stockledger")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Shortfall {
    #[pyo3(get)]
    pub sku: String,
    #[pyo3(get)]
    pub warehouse: String,
    /// The quantity the order asked for.
    #[pyo3(get)]
    pub requested: u64,
    /// What the cell had available at that moment.
    #[pyo3(get)]
    pub available: u64,
}

#[pymethods]
impl Shortfall {
    #[new]
    fn new(sku: String, warehouse: String, requested: u64, available: u64) -> Shortfall {
        Shortfall {
            sku,
            warehouse,
            requested,
            available,
        }
    }

    fn __getnewargs__(&self) -> (String, String, u64, u64) {
        (
            self.sku.clone(),
            self.warehouse.clone(),
            self.requested,
            self.available,
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "Shortfall(sku={}, warehouse={}, requested={}, available={})",
            py_repr(&self.sku),
            py_repr(&self.warehouse),
            self.requested,
            self.available
        )
    }
}

impl From<stockledger::Shortfall> for Shortfall {
    fn from(s: stockledger::Shortfall) -> Shortfall {
        Shortfall {
            sku: s.sku,
            warehouse: s.warehouse,
            requested: s.requested,
            available: s.available,
        }
    }
}

/// A reservation: ``status`` is ``"reserved"``, ``"paid"``, ``"released"`` or ``"expired"``;
/// ``lines`` is a list of ``(sku, warehouse, qty)`` tuples; times are aware UTC datetimes.
#[pyclass(frozen, eq, module = "stockledger")]
#[derive(Clone, PartialEq, Eq)]
pub struct Reservation {
    inner: stockledger::Reservation,
}

impl From<stockledger::Reservation> for Reservation {
    fn from(inner: stockledger::Reservation) -> Reservation {
        Reservation { inner }
    }
}

#[pymethods]
impl Reservation {
    /// The order id: the reservation's id and idempotency key.
    #[getter]
    fn order_id(&self) -> &str {
        &self.inner.order_id
    }

    /// ``"reserved"``, ``"paid"``, ``"released"`` or ``"expired"``.
    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status.as_str()
    }

    /// The order lines as ``(sku, warehouse, qty)`` tuples.
    #[getter]
    fn lines<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for l in &self.inner.lines {
            list.append(PyTuple::new(
                py,
                [
                    l.sku.as_str().into_pyobject(py)?.into_any(),
                    l.warehouse.as_str().into_pyobject(py)?.into_any(),
                    l.qty.into_pyobject(py)?.into_any(),
                ],
            )?)?;
        }
        Ok(list)
    }

    /// When the reservation was made (aware datetime, UTC).
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        utc_datetime(py, self.inner.created_at)
    }

    /// When an unpaid reservation expires (aware datetime, UTC).
    #[getter]
    fn expires_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        utc_datetime(py, self.inner.expires_at)
    }

    /// When it became paid, released or expired; ``None`` while reserved.
    #[getter]
    fn finished_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        self.inner
            .finished_at
            .map(|ms| utc_datetime(py, ms))
            .transpose()
    }

    fn __repr__(&self) -> String {
        let lines: Vec<String> = self
            .inner
            .lines
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {})",
                    py_repr(&l.sku),
                    py_repr(&l.warehouse),
                    l.qty
                )
            })
            .collect();
        format!(
            "Reservation(order_id={}, status='{}', lines=[{}], created_at={}, expires_at={})",
            py_repr(&self.inner.order_id),
            self.inner.status.as_str(),
            lines.join(", "),
            format_rfc3339(self.inner.created_at),
            format_rfc3339(self.inner.expires_at),
        )
    }
}

/// A string as Python's `repr` writes it (single quotes unless the text holds one).
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

/// Unix milliseconds as an aware UTC datetime.
pub fn utc_datetime(py: Python<'_>, ms: Millis) -> PyResult<Bound<'_, PyDateTime>> {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let utc = PyTzInfo::utc(py)?;
    PyDateTime::new(
        py,
        y,
        mo,
        d,
        (sod / 3600) as u8,
        (sod / 60 % 60) as u8,
        (sod % 60) as u8,
        (ms % 1000) as u32 * 1000,
        Some(&utc),
    )
}
