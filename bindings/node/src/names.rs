//! Property names kept as napi references, one set per ledger: reading a property by a
//! Rust `&str` name copies the name into a C string and looks it up in V8's string table
//! on every read, which was a good part of a `reserve` call's cost. `Values` are the names
//! as values for one call, with the raw reads that use them.

use napi::bindgen_prelude::{Object, Unknown};
use napi::{sys, Env, JsValue};
use stockledger::Error;

use crate::convert;
use crate::errors::{self, invalid};

type Res<T> = std::result::Result<T, Error>;

const NAMES: [&str; 6] = ["orderId", "lines", "sku", "warehouse", "qty", "ttlSeconds"];

/// A napi reference, created and read on the JavaScript thread only.
struct Ref(sys::napi_ref);

// SAFETY: `Inner` is shared with the pool thread, which never touches it.
unsafe impl Send for Ref {}
unsafe impl Sync for Ref {}

/// The property names of the ledger's calls, as a JavaScript array of string literals
/// (Node 20 references objects only; literals are V8's internalized strings, which a
/// property read takes without a string-table lookup). One small array per opened ledger.
pub struct Names {
    array: Ref,
}

impl Names {
    pub fn new(env: &Env) -> napi::Result<Names> {
        let e = env.raw();
        let source = format!("{:?}", NAMES);
        let source = env.create_string(&source)?;
        let mut arr = std::ptr::null_mut();
        let mut r = std::ptr::null_mut();
        // SAFETY: a valid env on its own thread; the script is the constant array above.
        napi::check_status!(unsafe { sys::napi_run_script(e, source.raw(), &mut arr) })?;
        napi::check_status!(unsafe { sys::napi_create_reference(e, arr, 1, &mut r) })?;
        Ok(Names { array: Ref(r) })
    }

    /// The names as values of the current call.
    pub fn values(&self, env: sys::napi_env) -> Res<Values> {
        let mut arr = std::ptr::null_mut();
        let mut v = [std::ptr::null_mut(); NAMES.len()];
        // SAFETY: a reference of this env, read on its thread, to an array of NAMES.len()
        // strings that nothing else can reach.
        let ok = unsafe {
            sys::napi_get_reference_value(env, self.array.0, &mut arr) == sys::Status::napi_ok
                && !arr.is_null()
                && v.iter_mut().enumerate().all(|(i, out)| {
                    sys::napi_get_element(env, arr, i as u32, out) == sys::Status::napi_ok
                })
        };
        if !ok {
            return Err(errors::unavailable("could not read a property name"));
        }
        Ok(Values {
            env,
            order_id: v[0],
            lines: v[1],
            sku: v[2],
            warehouse: v[3],
            qty: v[4],
            ttl_seconds: v[5],
        })
    }
}

/// The property names as values of one call.
pub struct Values {
    pub env: sys::napi_env,
    pub order_id: sys::napi_value,
    pub lines: sys::napi_value,
    pub sku: sys::napi_value,
    pub warehouse: sys::napi_value,
    pub qty: sys::napi_value,
    pub ttl_seconds: sys::napi_value,
}

impl Values {
    pub fn clear_exception(&self) {
        let mut pending = false;
        let mut e = std::ptr::null_mut();
        // SAFETY: a valid env on its own thread.
        unsafe {
            if sys::napi_is_exception_pending(self.env, &mut pending) == sys::Status::napi_ok
                && pending
            {
                sys::napi_get_and_clear_last_exception(self.env, &mut e);
            }
        }
    }

    pub fn prop(&self, obj: sys::napi_value, key: sys::napi_value) -> Option<sys::napi_value> {
        let mut v = std::ptr::null_mut();
        // SAFETY: live values of this env; a non-object fails (or coerces) inside napi.
        let status = unsafe { sys::napi_get_property(self.env, obj, key, &mut v) };
        (status == sys::Status::napi_ok).then_some(v)
    }

    pub fn element(&self, arr: sys::napi_value, i: u32) -> Option<sys::napi_value> {
        let mut v = std::ptr::null_mut();
        // SAFETY: as `prop`.
        let status = unsafe { sys::napi_get_element(self.env, arr, i, &mut v) };
        (status == sys::Status::napi_ok).then_some(v)
    }

    /// The length of an array; `None` for anything else.
    pub fn array_len(&self, v: sys::napi_value) -> Option<u32> {
        let mut n = 0u32;
        // SAFETY: as `prop`; napi answers napi_array_expected for a non-array.
        let status = unsafe { sys::napi_get_array_length(self.env, v, &mut n) };
        (status == sys::Status::napi_ok).then_some(n)
    }

    /// A number that is a non-negative safe integer.
    pub fn safe_uint(&self, v: sys::napi_value) -> Option<u64> {
        let mut n = 0f64;
        // SAFETY: as `prop`; napi answers napi_number_expected for a non-number.
        let status = unsafe { sys::napi_get_value_double(self.env, v, &mut n) };
        let ok = status == sys::Status::napi_ok
            && n.is_finite()
            && n.fract() == 0.0
            && (0.0..=convert::MAX_SAFE).contains(&n);
        ok.then_some(n as u64)
    }

    pub fn get<'e>(&self, obj: &Object<'e>, key: sys::napi_value, field: &str) -> Res<Unknown<'e>> {
        let mut v = std::ptr::null_mut();
        // SAFETY: `obj` and `key` are live values of this env.
        let status = unsafe { sys::napi_get_property(self.env, obj.raw(), key, &mut v) };
        if status != sys::Status::napi_ok {
            // A throwing getter, say: its exception must not surface later.
            self.clear_exception();
            return Err(invalid(field, "could not be read"));
        }
        // SAFETY: a value just returned by napi in this env.
        Ok(unsafe { Unknown::from_raw_unchecked(self.env, v) })
    }
}
