//! Builds the answers that every call returns (reservations and stock levels) with a small
//! JavaScript factory instead of property-by-property through napi: V8 makes an object
//! literal in a fraction of the time `napi_define_properties` takes (no key internalising,
//! no map transitions), and those objects were most of the binding's cost per call. The
//! factory is compiled once per ledger from the constant source below.

use napi::bindgen_prelude::{Function, FunctionRef, JsObjectValue, Object, Unknown};
use napi::{check_status, sys, Env, JsValue};

const SOURCE: &str = r#"(function () {
  function reservation(orderId, status, createdAt, expiresAt, finishedAt, created, ...flat) {
    const lines = [];
    for (let i = 0; i < flat.length; i += 3) {
      lines.push({ sku: flat[i], warehouse: flat[i + 1], qty: flat[i + 2] });
    }
    const r = { orderId, status, lines, createdAt: new Date(createdAt), expiresAt: new Date(expiresAt) };
    if (finishedAt >= 0) r.finishedAt = new Date(finishedAt);
    if (created !== undefined) r.created = created;
    return r;
  }
  function level(onHand, reserved, available) {
    return { onHand, reserved, available };
  }
  return [reservation, level];
})()"#;

type JsFn = FunctionRef<Unknown<'static>, Unknown<'static>>;

pub struct Shapes {
    reservation: JsFn,
    level: JsFn,
}

impl Shapes {
    pub fn new(env: &Env) -> napi::Result<Shapes> {
        let source = env.create_string(SOURCE)?;
        let mut out = std::ptr::null_mut();
        check_status!(unsafe { sys::napi_run_script(env.raw(), source.raw(), &mut out) })?;
        let pair = Object::from_raw(env.raw(), out);
        let get = |i: u32| -> napi::Result<JsFn> {
            pair.get_element::<Function<Unknown<'static>, Unknown<'static>>>(i)?
                .create_ref()
        };
        Ok(Shapes {
            reservation: get(0)?,
            level: get(1)?,
        })
    }

    pub fn reservation<'e>(
        &self,
        env: &'e Env,
        r: &stockledger::Reservation,
        created: Option<bool>,
    ) -> napi::Result<Unknown<'e>> {
        let e = env.raw();
        let created = match created {
            Some(c) => {
                let mut v = std::ptr::null_mut();
                check_status!(unsafe { sys::napi_get_boolean(e, c, &mut v) })?;
                v
            }
            None => undefined(e)?,
        };
        // The lines go as trailing arguments (sku, warehouse, qty, ...): V8 gathers them into
        // an array itself, far cheaper than an array filled element by element through napi.
        let head = [
            string(e, &r.order_id)?,
            string(e, r.status.as_str())?,
            number(e, r.created_at as f64)?,
            number(e, r.expires_at as f64)?,
            number(e, r.finished_at.map_or(-1.0, |t| t as f64))?,
            created,
        ];
        const INLINE: usize = 6 + 3 * 4;
        let mut inline = [std::ptr::null_mut(); INLINE];
        let mut spilled = Vec::new();
        let n = head.len() + 3 * r.lines.len();
        let args: &mut [sys::napi_value] = if n <= INLINE {
            &mut inline[..n]
        } else {
            spilled.resize(n, std::ptr::null_mut());
            &mut spilled
        };
        args[..head.len()].copy_from_slice(&head);
        for (i, l) in r.lines.iter().enumerate() {
            let at = head.len() + 3 * i;
            args[at] = string(e, &l.sku)?;
            args[at + 1] = string(e, &l.warehouse)?;
            args[at + 2] = number(e, l.qty as f64)?;
        }
        call(env, &self.reservation, args)
    }

    pub fn level<'e>(&self, env: &'e Env, l: stockledger::StockLevel) -> napi::Result<Unknown<'e>> {
        let e = env.raw();
        let args = [
            number(e, l.on_hand as f64)?,
            number(e, l.reserved as f64)?,
            number(e, l.available as f64)?,
        ];
        call(env, &self.level, &args)
    }
}

fn call<'e>(env: &'e Env, f: &JsFn, args: &[sys::napi_value]) -> napi::Result<Unknown<'e>> {
    let f = f.borrow_back(env)?;
    let e = env.raw();
    let mut out = std::ptr::null_mut();
    check_status!(unsafe {
        sys::napi_call_function(
            e,
            undefined(e)?,
            f.raw(),
            args.len(),
            args.as_ptr(),
            &mut out,
        )
    })?;
    Ok(unsafe { Unknown::from_raw_unchecked(e, out) })
}

fn string(e: sys::napi_env, s: &str) -> napi::Result<sys::napi_value> {
    let mut v = std::ptr::null_mut();
    check_status!(unsafe {
        sys::napi_create_string_utf8(e, s.as_ptr().cast(), s.len() as isize, &mut v)
    })?;
    Ok(v)
}

fn number(e: sys::napi_env, n: f64) -> napi::Result<sys::napi_value> {
    let mut v = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_double(e, n, &mut v) })?;
    Ok(v)
}

fn undefined(e: sys::napi_env) -> napi::Result<sys::napi_value> {
    let mut v = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_get_undefined(e, &mut v) })?;
    Ok(v)
}
