//! Arguments from Python, checked by hand so that every wrong type (None, float, bool,
//! bytes, a huge or negative int...) becomes `InvalidInput` naming the field, never a
//! `TypeError`, an `OverflowError` or a crash. Integer ranges are checked here (a Python
//! int has no fixed width); the rules for names, ids and lines stay in the core.

use std::borrow::Cow;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyList, PyString, PyTuple};
use stockledger::{limits, Line};

use crate::errors::{invalid, is_overflow};

/// An argument with a default: `Default` when the caller left it out, so that an explicit
/// `None` can still be refused.
pub enum Arg<'py> {
    Default,
    Given(Bound<'py, PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Arg<'py> {
    type Error = std::convert::Infallible;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> Result<Self, Self::Error> {
        Ok(Arg::Given(obj.to_owned()))
    }
}

/// A field's path, built only when an error names it.
pub trait Field {
    fn path(&self) -> String;
}

impl Field for &str {
    fn path(&self) -> String {
        self.to_string()
    }
}

/// `lines[i].name`.
pub struct LineField(pub usize, pub &'static str);

impl Field for LineField {
    fn path(&self) -> String {
        format!("lines[{}].{}", self.0, self.1)
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// A `str` argument.
pub fn string<'a>(obj: &'a Bound<'_, PyAny>, field: impl Field) -> PyResult<Cow<'a, str>> {
    let py = obj.py();
    match obj.cast::<PyString>() {
        Ok(s) => s.to_cow().map_err(|_| {
            invalid(
                py,
                &field.path(),
                "must be valid Unicode (no lone surrogates)",
            )
        }),
        Err(_) => Err(invalid(
            py,
            &field.path(),
            format!("must be a string, not {}", type_name(obj)),
        )),
    }
}

/// An optional `str` argument (`None` allowed).
pub fn opt_string<'a>(
    obj: &'a Bound<'_, PyAny>,
    field: impl Field,
) -> PyResult<Option<Cow<'a, str>>> {
    if obj.is_none() {
        Ok(None)
    } else {
        string(obj, field).map(Some)
    }
}

/// An integer argument within `min..=max`. Anything with `__index__` (numpy integers) is an
/// integer; bool and float are not, even `2.0`.
pub fn int(obj: &Bound<'_, PyAny>, field: impl Field, min: i64, max: i64) -> PyResult<i64> {
    let py = obj.py();
    let range = || {
        invalid(
            py,
            &field.path(),
            format!("must be between {min} and {max}"),
        )
    };
    let wrong = || {
        invalid(
            py,
            &field.path(),
            format!("must be an integer, not {}", type_name(obj)),
        )
    };
    if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyFloat>() || obj.is_none() {
        return Err(wrong());
    }
    match obj.extract::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(_) => Err(range()),
        Err(e) if is_overflow(py, &e) => Err(range()),
        Err(_) => Err(wrong()),
    }
}

/// A non-negative integer argument up to `max`.
pub fn uint(obj: &Bound<'_, PyAny>, field: impl Field, max: u64) -> PyResult<u64> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    int(obj, field, 0, max).map(|v| v as u64)
}

/// A folder path: `str` or `os.PathLike`.
pub fn path(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<PathBuf> {
    let py = obj.py();
    if obj.is_none() || obj.is_instance_of::<PyBool>() {
        return Err(invalid(
            py,
            field,
            format!("must be a str or os.PathLike, not {}", type_name(obj)),
        ));
    }
    let p: PathBuf = obj.extract().map_err(|_| {
        invalid(
            py,
            field,
            format!("must be a str or os.PathLike, not {}", type_name(obj)),
        )
    })?;
    if p.as_os_str().is_empty() {
        return Err(invalid(py, field, "must not be empty"));
    }
    if p.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(invalid(py, field, "must not contain a NUL character"));
    }
    Ok(p)
}

/// Order lines: a list or tuple of `(sku, warehouse, qty)` tuples or lists.
pub fn lines(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Line>> {
    let py = obj.py();
    let items: Vec<Bound<'_, PyAny>> = if let Ok(l) = obj.cast::<PyList>() {
        // Checked before copying so that a huge list costs nothing.
        if l.len() > limits::MAX_LINES {
            return Err(invalid(py, "lines", "must hold 1 to 100 lines"));
        }
        l.iter().collect()
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        if t.len() > limits::MAX_LINES {
            return Err(invalid(py, "lines", "must hold 1 to 100 lines"));
        }
        t.iter().collect()
    } else {
        return Err(invalid(
            py,
            "lines",
            format!(
                "must be a list of (sku, warehouse, qty) tuples, not {}",
                type_name(obj)
            ),
        ));
    };
    if items.is_empty() {
        return Err(invalid(py, "lines", "must hold 1 to 100 lines"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let parts: Vec<Bound<'_, PyAny>> = if let Ok(t) = item.cast::<PyTuple>() {
            t.iter().collect()
        } else if let Ok(l) = item.cast::<PyList>() {
            l.iter().collect()
        } else {
            Vec::new()
        };
        if parts.len() != 3 {
            return Err(invalid(
                py,
                &format!("lines[{i}]"),
                "must be a (sku, warehouse, qty) tuple",
            ));
        }
        let sku = string(&parts[0], LineField(i, "sku"))?.into_owned();
        let warehouse = string(&parts[1], LineField(i, "warehouse"))?.into_owned();
        let qty = int(&parts[2], LineField(i, "qty"), 1, limits::MAX_QTY as i64)? as u64;
        out.push(Line {
            sku,
            warehouse,
            qty,
        });
    }
    Ok(out)
}
