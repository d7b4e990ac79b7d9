//! The one place where errors become JavaScript `Error` objects: `.code` is the upper-case
//! domain code (node-api.md), insufficient stock adds `.shortfalls`, invalid input adds
//! `.field`. Field paths are renamed to the camelCase names JavaScript callers use.

use napi::bindgen_prelude::{JsObjectValue, Object};
use napi::{Env, JsValue, Status};
use stockledger::{Error, ErrorCode};

/// Invalid input found by the binding itself (wrong JavaScript types).
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidRequest {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The answer to every call on a closed ledger.
pub fn closed() -> Error {
    Error::LedgerUnavailable {
        reason: "the ledger is closed".into(),
    }
}

pub fn unavailable(reason: impl Into<String>) -> Error {
    Error::LedgerUnavailable {
        reason: reason.into(),
    }
}

/// `lines[0].ttl_seconds` -> `lines[0].ttlSeconds`.
pub fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn upper_code(code: ErrorCode) -> String {
    code.as_str().to_ascii_uppercase()
}

fn message(e: &Error) -> String {
    match e {
        Error::InvalidRequest { field, reason } => format!("{}: {reason}", camel_case(field)),
        other => other.to_string(),
    }
}

/// Builds the JavaScript error for `e` and wraps it so that napi throws or rejects with
/// exactly that object.
pub fn to_napi(env: &Env, e: &Error) -> napi::Error {
    match build(env, e) {
        Ok(obj) => napi::Error::from(obj.to_unknown()),
        // Building the object failed (the VM is shutting down): fall back to a plain error
        // that still carries the code.
        Err(_) => napi::Error::new(Status::GenericFailure, message(e)),
    }
}

/// The JavaScript error for `e`, for rejecting a Promise by hand.
pub fn to_js_value(env: &Env, e: &Error) -> napi::sys::napi_value {
    match build(env, e) {
        Ok(obj) => obj.raw(),
        Err(_) => {
            let err = napi::Error::new(Status::GenericFailure, message(e));
            match env.create_error(err) {
                Ok(obj) => obj.raw(),
                Err(_) => std::ptr::null_mut(),
            }
        }
    }
}

fn build<'e>(env: &'e Env, e: &Error) -> napi::Result<Object<'e>> {
    let code = upper_code(e.code());
    let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, message(e)))?;
    obj.set_named_property("code", code.as_str())?;
    match e {
        Error::InvalidRequest { field, .. } => {
            obj.set_named_property("field", camel_case(field))?;
        }
        Error::InsufficientStock { shortfalls } => {
            let mut list = env.create_array(shortfalls.len() as u32)?;
            for (i, s) in shortfalls.iter().enumerate() {
                let mut item = Object::new(env)?;
                item.set_named_property("sku", s.sku.as_str())?;
                item.set_named_property("warehouse", s.warehouse.as_str())?;
                item.set_named_property("requested", s.requested as f64)?;
                item.set_named_property("available", s.available as f64)?;
                list.set(i as u32, item)?;
            }
            obj.set_named_property("shortfalls", list)?;
        }
        Error::BelowReserved {
            on_hand, reserved, ..
        } => {
            obj.set_named_property("onHand", *on_hand as f64)?;
            obj.set_named_property("reserved", *reserved as f64)?;
        }
        _ => {}
    }
    Ok(obj)
}

/// A napi conversion failure (it should not happen: inputs are checked by type first) is
/// still bad input, never a crash.
pub fn from_napi(field: &str, e: napi::Error) -> Error {
    invalid(field, e.reason)
}

#[cfg(test)]
mod tests {
    use super::camel_case;

    #[test]
    fn camel_cases_field_paths() {
        assert_eq!(camel_case("ttl_seconds"), "ttlSeconds");
        assert_eq!(camel_case("lines[3].qty"), "lines[3].qty");
        assert_eq!(camel_case("adjustment_id"), "adjustmentId");
        assert_eq!(camel_case("on_hand"), "onHand");
    }
}
