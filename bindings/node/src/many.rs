//! `reserveMany`: a whole array of orders copied once into one buffer on the JavaScript
//! thread, reserved on the pool with one core call and one wait for the log, and answered
//! with one array (`true`, `false` or the error, per order).

use std::ops::Range;

use napi::bindgen_prelude::{Object, Unknown};
use napi::{check_status, sys, Env, JsValue, ValueType};
use napi_derive::napi;
use stockledger::{limits, Error, LineRef, OrderRef, Status};

use crate::convert;
use crate::errors::{self, invalid};
use crate::flat::{self, Text};
use crate::names::{Names, Values};

type Res<T> = std::result::Result<T, Error>;

/// Most orders in one call: the core's batch limit.
pub const MAX_ORDERS: u32 = 10_000;
/// Most bytes of ids and names in one call (10,000 orders of 100 lines of 2 x 128 bytes
/// would be 256 MB: more than anyone should send at once).
pub const MAX_TEXT_BYTES: usize = 64 << 20;

/// One order of `reserveMany` (for the TypeScript declarations; input is read by hand).
#[allow(dead_code)]
#[napi(object)]
pub struct OrderInput {
    pub order_id: String,
    pub lines: Vec<convert::Line>,
}

/// The orders of one call, owning their text in one buffer.
pub struct Batch {
    text: Vec<u8>,
    ids: Vec<Range<u32>>,
    lines: Vec<(Range<u32>, Range<u32>, u64)>,
    line_counts: Vec<u8>,
    ttl_seconds: u64,
    /// Packed by `index.js` (`__many`): answered with `to_js_flat`.
    pub packed: bool,
}

impl Batch {
    /// Reads the orders `index.js` packed (see `reserveMany` there): `text` holds every id,
    /// sku and warehouse back to back; `nums` per order the UTF-16 length of its id and its
    /// line count, then per line the lengths of sku and warehouse and the qty. JavaScript
    /// checked shapes, types, counts and the ttl's type, so a malformed pack is a bug and
    /// throws. This spares five napi property reads and three string reads per order.
    pub fn unpack(
        env: &Env,
        text: &Unknown,
        nums: &Unknown,
        ttl_seconds: u64,
    ) -> napi::Result<Batch> {
        let mut t = Text::default();
        t.read(env, text)?;
        let nums = flat::float64s(env, nums)?;
        let mut batch = Batch {
            text: Vec::new(),
            ids: Vec::with_capacity(nums.len() / 5),
            lines: Vec::with_capacity(nums.len() / 5),
            line_counts: Vec::with_capacity(nums.len() / 5),
            ttl_seconds,
            packed: true,
        };
        let mut it = nums.iter().copied();
        while let Some(id_len) = it.next() {
            batch.ids.push(t.next(id_len)?);
            let count = it.next().ok_or_else(flat::malformed)?;
            if !(1.0..=limits::MAX_LINES as f64).contains(&count) {
                return Err(flat::malformed());
            }
            for _ in 0..count as usize {
                let mut num = || it.next().ok_or_else(flat::malformed);
                let sku = t.next(num()?)?;
                let warehouse = t.next(num()?)?;
                batch.lines.push((sku, warehouse, num()? as u64));
            }
            batch.line_counts.push(count as u8);
        }
        t.check_end()?;
        if batch.ids.len() > MAX_ORDERS as usize || t.bytes.len() > MAX_TEXT_BYTES {
            return Err(flat::malformed());
        }
        batch.text = std::mem::take(&mut t.bytes);
        Ok(batch)
    }

    /// Reads `orders` (an array of `{ orderId, lines }`); a wrong shape or type is
    /// INVALID_REQUEST naming the field, before anything is reserved.
    pub fn decode(orders: &Unknown, options: &Unknown, names: &Names) -> Res<Batch> {
        let (arr, len) = convert::array(orders, "orders")?;
        if len > MAX_ORDERS {
            return Err(invalid("orders", "must hold at most 10000 orders"));
        }
        let keys = names.values(orders.value().env)?;
        let ttl_seconds = match convert::opt_object(options, "options")? {
            None => None,
            Some(o) => {
                convert::opt_uint(&keys.get(&o, keys.ttl_seconds, "ttlSeconds")?, "ttlSeconds")?
            }
        }
        .unwrap_or(limits::DEFAULT_TTL_SECONDS);
        // One ttl for the batch: a bad one refuses the call, not each order.
        limits::check_ttl(ttl_seconds)?;
        let mut batch = Batch {
            text: Vec::with_capacity(len as usize * 32),
            ids: Vec::with_capacity(len as usize),
            lines: Vec::with_capacity(len as usize),
            line_counts: Vec::with_capacity(len as usize),
            ttl_seconds,
            packed: false,
        };
        if batch.read_fast(arr.raw(), len, &keys).is_some() {
            return Ok(batch);
        }
        // Something did not read as expected: read again, checking every value, to name
        // the field (or to take what the fast path leaves to it, such as long strings).
        // A failed read (of a property of null, say) leaves a JavaScript exception pending.
        keys.clear_exception();
        batch.clear();
        let mut field = String::new();
        for i in 0..len {
            batch.push_order(&arr, i, &keys, &mut field)?;
        }
        Ok(batch)
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ids.clear();
        self.lines.clear();
        self.line_counts.clear();
    }

    /// Reads a well-formed batch with about half the napi calls of the checked path (no
    /// type query before each read: a read of the wrong type fails by itself). `None` at
    /// the first value that does not read as expected.
    fn read_fast(&mut self, arr: sys::napi_value, len: u32, k: &Values) -> Option<()> {
        for i in 0..len {
            let order = k.element(arr, i)?;
            let id = self.text_fast(k, k.prop(order, k.order_id)?)?;
            let lines = k.prop(order, k.lines)?;
            let n = k.array_len(lines)?;
            if n == 0 || n as usize > limits::MAX_LINES {
                return None;
            }
            self.ids.push(id);
            for j in 0..n {
                let line = k.element(lines, j)?;
                let sku = self.text_fast(k, k.prop(line, k.sku)?)?;
                let warehouse = self.text_fast(k, k.prop(line, k.warehouse)?)?;
                let qty = k.safe_uint(k.prop(line, k.qty)?)?;
                self.lines.push((sku, warehouse, qty));
            }
            self.line_counts.push(n as u8);
        }
        Some(())
    }

    /// One napi call for a string of up to `FAST_TEXT_BYTES - 1` bytes; `None` for a
    /// longer one or a value that is not a string.
    fn text_fast(&mut self, k: &Values, v: sys::napi_value) -> Option<Range<u32>> {
        let start = self.text.len();
        if start + FAST_TEXT_BYTES > MAX_TEXT_BYTES {
            return None;
        }
        self.text.reserve(FAST_TEXT_BYTES);
        let mut written = 0usize;
        // SAFETY: `reserve` left FAST_TEXT_BYTES writable bytes after `start`; napi writes at
        // most that many (the text and a NUL) and says how many text bytes it wrote.
        let status = unsafe {
            let buf = self.text.as_mut_ptr().add(start);
            let status = sys::napi_get_value_string_utf8(
                k.env,
                v,
                buf.cast(),
                FAST_TEXT_BYTES,
                &mut written,
            );
            if status == sys::Status::napi_ok && written < FAST_TEXT_BYTES {
                self.text.set_len(start + written);
            }
            status
        };
        if status != sys::Status::napi_ok || written + 1 >= FAST_TEXT_BYTES {
            return None;
        }
        std::str::from_utf8(&self.text[start..]).ok()?;
        Some(start as u32..(start + written) as u32)
    }

    fn push_order(&mut self, arr: &Object, i: u32, keys: &Values, field: &mut String) -> Res<()> {
        use std::fmt::Write;
        field.clear();
        let _ = write!(field, "orders[{i}]");
        let base = field.len();
        let order = convert::object(&convert::element(arr, i, field)?, field)?;
        field.push_str(".orderId");
        let id = self.push_text(&keys.get(&order, keys.order_id, field)?, field)?;
        self.ids.push(id);
        field.truncate(base);
        field.push_str(".lines");
        let (lines, n) = convert::array(&keys.get(&order, keys.lines, field)?, field)?;
        if n == 0 || n as usize > limits::MAX_LINES {
            return Err(invalid(field.as_str(), "must hold 1 to 100 lines"));
        }
        let lines_base = field.len();
        for j in 0..n {
            field.truncate(lines_base);
            let _ = write!(field, "[{j}]");
            let line = convert::object(&convert::element(&lines, j, field)?, field)?;
            let line_base = field.len();
            field.push_str(".sku");
            let sku = self.push_text(&keys.get(&line, keys.sku, field)?, field)?;
            field.truncate(line_base);
            field.push_str(".warehouse");
            let warehouse = self.push_text(&keys.get(&line, keys.warehouse, field)?, field)?;
            field.truncate(line_base);
            field.push_str(".qty");
            let qty = convert::uint(&keys.get(&line, keys.qty, field)?, field)?;
            self.lines.push((sku, warehouse, qty));
        }
        self.line_counts.push(n as u8);
        Ok(())
    }

    /// Copies a JavaScript string as UTF-8 onto the end of the buffer.
    fn push_text(&mut self, v: &Unknown, field: &str) -> Res<Range<u32>> {
        match v.get_type().map_err(|e| errors::from_napi(field, e))? {
            ValueType::String => {}
            ValueType::Undefined | ValueType::Null => return Err(invalid(field, "is required")),
            _ => return Err(invalid(field, "must be a string")),
        }
        let value = v.value();
        let mut len = 0usize;
        // SAFETY: a live string value of this env (checked above); a null buffer asks for
        // the UTF-8 length only.
        let status = unsafe {
            sys::napi_get_value_string_utf8(
                value.env,
                value.value,
                std::ptr::null_mut(),
                0,
                &mut len,
            )
        };
        if status != sys::Status::napi_ok {
            return Err(invalid(field, "could not be read as a string"));
        }
        let start = self.text.len();
        if start + len > MAX_TEXT_BYTES {
            return Err(invalid(
                field,
                "the batch holds too much text (at most 64 MiB)",
            ));
        }
        // napi writes a NUL after the text: room for len + 1 bytes.
        self.text.resize(start + len + 1, 0);
        let mut written = 0usize;
        // SAFETY: the buffer has len + 1 writable bytes at `start`.
        let status = unsafe {
            sys::napi_get_value_string_utf8(
                value.env,
                value.value,
                self.text.as_mut_ptr().add(start).cast(),
                len + 1,
                &mut written,
            )
        };
        self.text.truncate(start + written.min(len));
        if status != sys::Status::napi_ok
            || written != len
            || std::str::from_utf8(&self.text[start..]).is_err()
        {
            return Err(invalid(field, "could not be read as a string"));
        }
        Ok(start as u32..(start + len) as u32)
    }

    /// Reserves every order (on the pool thread).
    pub fn run(&self, ledger: &stockledger::Ledger) -> Res<Vec<Res<(bool, Status)>>> {
        // Every string was checked as UTF-8 when it was copied in, so their concatenation is
        // UTF-8: one check of it all, then each string is a slice.
        let all = std::str::from_utf8(&self.text).unwrap_or("");
        let text = |r: &Range<u32>| flat::slice(all, r);
        let lines: Vec<LineRef> = self
            .lines
            .iter()
            .map(|(sku, warehouse, qty)| LineRef {
                sku: text(sku),
                warehouse: text(warehouse),
                qty: *qty,
            })
            .collect();
        let mut orders = Vec::with_capacity(self.ids.len());
        let mut start = 0usize;
        for (id, &n) in self.ids.iter().zip(&self.line_counts) {
            let end = start + n as usize;
            orders.push(OrderRef {
                order_id: text(id),
                lines: &lines[start..end],
                ttl_seconds: self.ttl_seconds,
            });
            start = end;
        }
        debug_assert_eq!(start, lines.len());
        ledger.reserve_many(&orders)
    }
}

/// Strings up to this many bytes (less one, for napi's NUL) are read with one call.
const FAST_TEXT_BYTES: usize = 512;

/// The answer array: `true` (reserved now), `false` (already reserved) or the error.
pub fn to_js<'e>(env: &'e Env, results: &[Res<(bool, Status)>]) -> napi::Result<Unknown<'e>> {
    let mut arr = env.create_array(results.len() as u32)?;
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok((created, _)) => arr.set(i as u32, *created)?,
            Err(e) => {
                let v = errors::to_js_value(env, e);
                // SAFETY: a value just created in this env.
                arr.set(i as u32, unsafe {
                    Unknown::from_raw_unchecked(env.raw(), v)
                })?
            }
        }
    }
    let raw = arr.raw();
    // SAFETY: the array lives in this env's current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
}

/// The answers of a packed batch as `[codes, errors]`: a `Uint8Array` of 1 (reserved now),
/// 0 (already reserved) or 2 (the error is `errors[i]`); `index.js` builds the array of
/// `true`, `false` and errors from it (one napi call per error instead of per order).
pub fn to_js_flat<'e>(env: &'e Env, results: &[Res<(bool, Status)>]) -> napi::Result<Unknown<'e>> {
    let e = env.raw();
    let mut data = std::ptr::null_mut();
    let mut ab = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_arraybuffer(e, results.len(), &mut data, &mut ab) })?;
    let mut errs = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_array(e, &mut errs) })?;
    for (i, r) in results.iter().enumerate() {
        let code = match r {
            Ok((created, _)) => u8::from(*created),
            Err(err) => {
                let v = errors::to_js_value(env, err);
                check_status!(unsafe { sys::napi_set_element(e, errs, i as u32, v) })?;
                2
            }
        };
        // SAFETY: a fresh buffer of `results.len()` bytes.
        unsafe { data.cast::<u8>().add(i).write(code) };
    }
    let mut codes = std::ptr::null_mut();
    check_status!(unsafe {
        sys::napi_create_typedarray(
            e,
            sys::TypedarrayType::uint8_array,
            results.len(),
            ab,
            0,
            &mut codes,
        )
    })?;
    let mut out = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_array_with_length(e, 2, &mut out) })?;
    for (i, v) in [codes, errs].into_iter().enumerate() {
        check_status!(unsafe { sys::napi_set_element(e, out, i as u32, v) })?;
    }
    // SAFETY: an array just created in this env.
    Ok(unsafe { Unknown::from_raw_unchecked(e, out) })
}
