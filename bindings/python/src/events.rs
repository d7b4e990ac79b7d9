//! `read_events(folder, after=0)`: the durable event stream of a ledger folder as an
//! iterator of dicts (the JSON shape of events.md), read-only and lazy.

use std::collections::VecDeque;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;
use stockledger::{Error, Event, EventReader};

use crate::convert::{self, Arg};
use crate::errors::to_py;

/// Events decoded per trip into the log (with the interpreter released).
const BATCH: usize = 512;

const KEY_ORDER: [&str; 17] = [
    "seq",
    "event_id",
    "type",
    "at",
    "order_id",
    "sku",
    "warehouse",
    "qty",
    "lines",
    "expires_at",
    "payment_id",
    "amount_minor",
    "currency",
    "on_hand",
    "delta",
    "reason",
    "adjustment_id",
];

/// Python value of a JSON value (events hold only strings, integers, lists and objects).
fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(json_to_py(py, x)?)?;
            }
            list.into_any()
        }
        Value::Object(m) => {
            // serde_json sorts keys; the contract's order reads better (and makes tidier
            // pandas columns): known keys first in that order, any others after.
            let mut keys: Vec<(&String, &Value)> = m.iter().collect();
            keys.sort_by_key(|(k, _)| {
                KEY_ORDER
                    .iter()
                    .position(|o| *o == k.as_str())
                    .unwrap_or(KEY_ORDER.len())
            });
            let d = PyDict::new(py);
            for (k, x) in keys {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// One event as a dict of the events.md shape.
pub fn event_to_dict<'py>(py: Python<'py>, ev: &Event) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &ev.to_json())
}

struct State {
    reader: EventReader,
    buffer: VecDeque<Event>,
    /// An error met after some events were buffered: raised once those are handed out.
    error: Option<Error>,
    done: bool,
}

impl State {
    fn next_event(&mut self) -> Result<Option<Event>, Error> {
        if self.buffer.is_empty() && !self.done {
            while self.buffer.len() < BATCH {
                match self.reader.next() {
                    Some(Ok(ev)) => self.buffer.push_back(ev),
                    Some(Err(e)) => {
                        self.done = true;
                        self.error = Some(e);
                        break;
                    }
                    None => {
                        self.done = true;
                        break;
                    }
                }
            }
        }
        match self.buffer.pop_front() {
            Some(ev) => Ok(Some(ev)),
            None => match self.error.take() {
                Some(e) => Err(e),
                None => Ok(None),
            },
        }
    }
}

/// Iterator over the durable events of a ledger folder, oldest first; returned by
/// ``read_events``. It ends at the last event durable when it got there; call
/// ``read_events(folder, after=last_seq)`` again to pick up newer ones.
#[pyclass(frozen, module = "stockledger")]
pub struct EventIterator {
    state: Mutex<State>,
}

#[pymethods]
impl EventIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        // The lock is never held while waiting for the interpreter, so no deadlock.
        let buffered = self.state.lock().buffer.pop_front();
        let ev = match buffered {
            Some(ev) => Some(ev),
            None => py
                .detach(|| self.state.lock().next_event())
                .map_err(|e| to_py(py, e))?,
        };
        ev.map(|ev| event_to_dict(py, &ev)).transpose()
    }
}

/// Iterates the durable events of the ledger in ``folder`` with ``seq > after`` as dicts
/// (``seq``, ``event_id``, ``type``, ``at``, ...; see the events contract). Read-only and
/// lazy: safe on a folder that a live ``Ledger`` is writing, without disturbing it.
/// ``pandas.DataFrame(read_events(folder))`` gives one row per event.
#[pyfunction]
#[pyo3(signature = (folder, after = Arg::Default), text_signature = "(folder, after=0)")]
pub fn read_events(
    py: Python<'_>,
    folder: &Bound<'_, PyAny>,
    after: Arg<'_>,
) -> PyResult<EventIterator> {
    let folder = convert::path(folder, "folder")?;
    let after = match after {
        Arg::Default => 0,
        Arg::Given(a) => convert::uint(&a, "after", i64::MAX as u64)?,
    };
    let reader = stockledger::read_events(&folder, after).map_err(|e| to_py(py, e))?;
    Ok(EventIterator {
        state: Mutex::new(State {
            reader,
            buffer: VecDeque::new(),
            error: None,
            done: false,
        }),
    })
}
