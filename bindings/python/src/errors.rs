//! The one place where ledger errors become Python exceptions.
//!
//! The exception classes are plain Python classes (defined from the source below at import
//! time) because two of them need a second built-in base (`ValueError`, `KeyError`), which
//! PyO3's `create_exception!` cannot express.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyType};
use pyo3::IntoPyObjectExt;
use stockledger::Error;

use crate::types::Shortfall;

const SOURCE: &std::ffi::CStr = cr#"
class StockLedgerError(Exception):
    """Base class of every stockledger error.

    ``code`` is the domain error code of the contract (``"insufficient_stock"``...);
    ``message`` is the human-readable text, which names the offending field for bad input.
    """

    __module__ = "stockledger"
    code = "stockledger_error"

    def __init__(self, message="", **details):
        super().__init__(message)
        self.message = message
        for name, value in details.items():
            setattr(self, name, value)

    def __str__(self):
        return self.message


class InvalidInput(StockLedgerError, ValueError):
    """Input outside the domain's limits or of the wrong type; ``field`` names it (``lines[1].qty``)."""

    __module__ = "stockledger"
    code = "invalid_request"
    field = ""


class InsufficientStock(StockLedgerError):
    """A reservation did not fit; ``shortfalls`` lists every short line. Nothing changed."""

    __module__ = "stockledger"
    code = "insufficient_stock"
    shortfalls = ()


class OrderConflict(StockLedgerError):
    """The order id already holds a reservation with different lines."""

    __module__ = "stockledger"
    code = "order_conflict"


class OrderNotFound(StockLedgerError, KeyError):
    """No reservation has this order id."""

    __module__ = "stockledger"
    code = "order_not_found"


class OrderNotActive(StockLedgerError):
    """The reservation is released or expired (or its ttl passed), so it cannot be committed."""

    __module__ = "stockledger"
    code = "order_not_active"


class OrderPaid(StockLedgerError):
    """The reservation is paid, so it cannot be released."""

    __module__ = "stockledger"
    code = "order_paid"


class BelowReserved(StockLedgerError):
    """on_hand would fall below what is reserved (or below zero)."""

    __module__ = "stockledger"
    code = "below_reserved"


class AdjustmentConflict(StockLedgerError):
    """The adjustment id was already used for another cell or delta."""

    __module__ = "stockledger"
    code = "adjustment_conflict"


class LedgerUnavailable(StockLedgerError):
    """The ledger is closed, locked by another Ledger, or its log failed (writes refused)."""

    __module__ = "stockledger"
    code = "ledger_unavailable"
"#;

/// Every exception class, in the order of `NAMES`.
pub const NAMES: [&str; 10] = [
    "StockLedgerError",
    "InvalidInput",
    "InsufficientStock",
    "OrderConflict",
    "OrderNotFound",
    "OrderNotActive",
    "OrderPaid",
    "BelowReserved",
    "AdjustmentConflict",
    "LedgerUnavailable",
];

static CLASSES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&Vec<Py<PyType>>> {
    CLASSES.get_or_try_init(py, || {
        let m = PyModule::from_code(
            py,
            SOURCE,
            c"stockledger/_errors.py",
            c"stockledger._errors",
        )?;
        NAMES
            .iter()
            .map(|n| Ok(m.getattr(*n)?.cast_into::<PyType>()?.unbind()))
            .collect()
    })
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, cls) in NAMES.iter().zip(classes(py)?) {
        m.add(*name, cls.bind(py))?;
    }
    Ok(())
}

/// Builds an instance of the class `name` with `message` and extra attributes.
fn build(
    py: Python<'_>,
    name: &str,
    message: String,
    details: &[(&str, Bound<'_, PyAny>)],
) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let idx = NAMES.iter().position(|n| *n == name).unwrap_or(0);
        let cls = classes(py)?[idx].bind(py);
        let kwargs = PyDict::new(py);
        for (k, v) in details {
            kwargs.set_item(*k, v)?;
        }
        let exc = cls.call((message,), Some(&kwargs))?;
        Ok(PyErr::from_value(exc))
    };
    // Building the exception itself failing (out of memory...) is reported as that failure.
    make().unwrap_or_else(|e| e)
}

fn s<'py>(py: Python<'py>, v: &str) -> Bound<'py, PyAny> {
    pyo3::types::PyString::new(py, v).into_any()
}

fn int(py: Python<'_>, v: i128) -> Bound<'_, PyAny> {
    v.into_bound_py_any(py)
        .unwrap_or_else(|_| py.None().into_bound(py))
}

/// Translates a ledger error into the contract's exception.
pub fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::InvalidRequest { field, .. } => {
            build(py, "InvalidInput", message, &[("field", s(py, &field))])
        }
        Error::InsufficientStock { shortfalls } => {
            // The core's message names the short lines; `shortfalls` holds them all.
            let list = PyList::empty(py);
            for sf in shortfalls {
                let obj = match Bound::new(py, Shortfall::from(sf)) {
                    Ok(o) => o,
                    Err(e) => return e,
                };
                if let Err(e) = list.append(obj) {
                    return e;
                }
            }
            build(
                py,
                "InsufficientStock",
                message,
                &[("shortfalls", list.into_any())],
            )
        }
        Error::OrderConflict { order_id } => build(
            py,
            "OrderConflict",
            message,
            &[("order_id", s(py, &order_id))],
        ),
        Error::OrderNotFound { order_id } => build(
            py,
            "OrderNotFound",
            message,
            &[("order_id", s(py, &order_id))],
        ),
        Error::OrderNotActive { order_id, status } => build(
            py,
            "OrderNotActive",
            message,
            &[("order_id", s(py, &order_id)), ("status", s(py, status))],
        ),
        Error::OrderPaid { order_id } => {
            build(py, "OrderPaid", message, &[("order_id", s(py, &order_id))])
        }
        Error::BelowReserved {
            on_hand,
            reserved,
            requested_on_hand,
        } => build(
            py,
            "BelowReserved",
            message,
            &[
                ("on_hand", int(py, on_hand.into())),
                ("reserved", int(py, reserved.into())),
                ("requested_on_hand", int(py, requested_on_hand)),
            ],
        ),
        Error::AdjustmentConflict { adjustment_id } => build(
            py,
            "AdjustmentConflict",
            message,
            &[("adjustment_id", s(py, &adjustment_id))],
        ),
        Error::LedgerUnavailable { .. } => build(py, "LedgerUnavailable", message, &[]),
        // Codes the Python API cannot produce (seller and payment paths) keep their code on
        // the base class.
        other => {
            let code = other.code().as_str();
            build(py, "StockLedgerError", message, &[("code", s(py, code))])
        }
    }
}

/// `InvalidInput` for a field, raised by the binding's own type checks.
pub fn invalid(py: Python<'_>, field: &str, reason: impl std::fmt::Display) -> PyErr {
    to_py(
        py,
        Error::InvalidRequest {
            field: field.to_string(),
            reason: reason.to_string(),
        },
    )
}

/// `LedgerUnavailable` with a message of the binding's own.
pub fn unavailable(py: Python<'_>, reason: &str) -> PyErr {
    to_py(
        py,
        Error::LedgerUnavailable {
            reason: reason.to_string(),
        },
    )
}

/// Whether a failed integer conversion failed for size rather than type.
pub fn is_overflow(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyOverflowError>(py)
}
