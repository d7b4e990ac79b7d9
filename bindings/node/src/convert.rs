//! JavaScript values in and out. Inputs arrive as `Unknown` and are checked here by type,
//! so a wrong type, NaN, a fraction or an unsafe integer becomes INVALID_REQUEST naming the
//! field instead of napi's generic conversion error. Domain limits stay in core.

use napi::bindgen_prelude::{FromNapiValue, JsObjectValue, Object, ToNapiValue, TypeName, Unknown};
use napi::{sys, Env, JsValue, ValueType};
use napi_derive::napi;
use stockledger::{Error, Millis};

use crate::errors::{from_napi, invalid};

/// Largest integer a JavaScript number holds exactly (2^53 - 1).
pub const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

type Res<T> = std::result::Result<T, Error>;

fn is_missing(v: &Unknown) -> Res<bool> {
    match v.get_type() {
        Ok(ValueType::Undefined) | Ok(ValueType::Null) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) => Err(from_napi("value", e)),
    }
}

fn type_of(v: &Unknown, field: &str) -> Res<ValueType> {
    v.get_type().map_err(|e| from_napi(field, e))
}

pub fn string(v: &Unknown, field: &str) -> Res<String> {
    match type_of(v, field)? {
        ValueType::String => unsafe { v.cast::<String>() }.map_err(|e| from_napi(field, e)),
        ValueType::Undefined | ValueType::Null => Err(invalid(field, "is required")),
        _ => Err(invalid(field, "must be a string")),
    }
}

pub fn opt_string(v: &Unknown, field: &str) -> Res<Option<String>> {
    if is_missing(v)? {
        return Ok(None);
    }
    string(v, field).map(Some)
}

fn number(v: &Unknown, field: &str) -> Res<f64> {
    let n = match type_of(v, field)? {
        ValueType::Number => unsafe { v.cast::<f64>() }.map_err(|e| from_napi(field, e))?,
        ValueType::Undefined | ValueType::Null => return Err(invalid(field, "is required")),
        _ => return Err(invalid(field, "must be a number")),
    };
    if !n.is_finite() {
        return Err(invalid(field, "must be a finite number"));
    }
    if n.fract() != 0.0 {
        return Err(invalid(field, "must be an integer"));
    }
    if n.abs() > MAX_SAFE {
        return Err(invalid(
            field,
            "must be a safe integer (at most 9007199254740991 in magnitude)",
        ));
    }
    Ok(n)
}

/// A non-negative safe integer.
pub fn uint(v: &Unknown, field: &str) -> Res<u64> {
    let n = number(v, field)?;
    if n < 0.0 {
        return Err(invalid(field, "must not be negative"));
    }
    Ok(n as u64)
}

/// A safe integer of either sign.
pub fn int(v: &Unknown, field: &str) -> Res<i64> {
    number(v, field).map(|n| n as i64)
}

pub fn opt_uint(v: &Unknown, field: &str) -> Res<Option<u64>> {
    if is_missing(v)? {
        return Ok(None);
    }
    uint(v, field).map(Some)
}

/// An options object that may be left out.
pub fn opt_object<'e>(v: &Unknown<'e>, field: &str) -> Res<Option<Object<'e>>> {
    match type_of(v, field)? {
        ValueType::Undefined | ValueType::Null => Ok(None),
        ValueType::Object if !is_array(v, field)? => unsafe { v.cast::<Object>() }
            .map(Some)
            .map_err(|e| from_napi(field, e)),
        _ => Err(invalid(field, "must be an object")),
    }
}

pub fn object<'e>(v: &Unknown<'e>, field: &str) -> Res<Object<'e>> {
    match opt_object(v, field)? {
        Some(o) => Ok(o),
        None => Err(invalid(field, "is required")),
    }
}

fn is_array(v: &Unknown, field: &str) -> Res<bool> {
    v.is_array().map_err(|e| from_napi(field, e))
}

pub fn get<'e>(obj: &Object<'e>, key: &str, field: &str) -> Res<Unknown<'e>> {
    obj.get_named_property_unchecked::<Unknown>(key)
        .map_err(|e| from_napi(field, e))
}

/// The elements of a JavaScript array.
pub fn array<'e>(v: &Unknown<'e>, field: &str) -> Res<(Object<'e>, u32)> {
    match type_of(v, field)? {
        ValueType::Undefined | ValueType::Null => return Err(invalid(field, "is required")),
        ValueType::Object if is_array(v, field)? => {}
        _ => return Err(invalid(field, "must be an array")),
    }
    let obj = unsafe { v.cast::<Object>() }.map_err(|e| from_napi(field, e))?;
    let len = obj.get_array_length().map_err(|e| from_napi(field, e))?;
    Ok((obj, len))
}

pub fn element<'e>(arr: &Object<'e>, i: u32, field: &str) -> Res<Unknown<'e>> {
    arr.get_element::<Unknown>(i)
        .map_err(|e| from_napi(field, e))
}

/// The order lines of `reserve`. More than the domain's 100 lines are refused before reading
/// them, so a huge array costs nothing.
pub fn lines(v: &Unknown, keys: &crate::names::Values) -> Res<Vec<stockledger::Line>> {
    let (arr, len) = array(v, "lines")?;
    if len == 0 || len as usize > stockledger::limits::MAX_LINES {
        return Err(invalid("lines", "must hold 1 to 100 lines"));
    }
    let mut out = Vec::with_capacity(len as usize);
    let mut field = String::new();
    for i in 0..len {
        field.clear();
        use std::fmt::Write;
        let _ = write!(field, "lines[{i}]");
        let item = element(&arr, i, &field)?;
        let obj = object(&item, &field)?;
        let base = field.len();
        field.push_str(".sku");
        let sku = string(&keys.get(&obj, keys.sku, &field)?, &field)?;
        field.truncate(base);
        field.push_str(".warehouse");
        let warehouse = string(&keys.get(&obj, keys.warehouse, &field)?, &field)?;
        field.truncate(base);
        field.push_str(".qty");
        let qty = uint(&keys.get(&obj, keys.qty, &field)?, &field)?;
        out.push(stockledger::Line {
            sku,
            warehouse,
            qty,
        });
    }
    Ok(out)
}

// ---- outputs ------------------------------------------------------------------------------

/// Unix milliseconds that become a JavaScript `Date`.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub Millis);

impl TypeName for Timestamp {
    fn type_name() -> &'static str {
        "Date"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for Timestamp {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let mut out = std::ptr::null_mut();
        napi::check_status!(unsafe { sys::napi_create_date(env, val.0 as f64, &mut out) })?;
        Ok(out)
    }
}

impl FromNapiValue for Timestamp {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        let mut ms = 0.0;
        napi::check_status!(unsafe { sys::napi_get_date_value(env, v, &mut ms) })?;
        Ok(Timestamp(ms.max(0.0) as Millis))
    }
}

/// A cell's figures from one moment: `available = onHand - reserved`.
#[napi(object)]
pub struct StockLevel {
    pub on_hand: f64,
    pub reserved: f64,
    pub available: f64,
}

impl From<stockledger::StockLevel> for StockLevel {
    fn from(l: stockledger::StockLevel) -> Self {
        StockLevel {
            on_hand: l.on_hand as f64,
            reserved: l.reserved as f64,
            available: l.available as f64,
        }
    }
}

/// One order line.
#[napi(object)]
pub struct Line {
    pub sku: String,
    pub warehouse: String,
    pub qty: f64,
}

/// A reservation. `created` is set by `reserve` only: false for an idempotent replay.
#[napi(object)]
pub struct Reservation {
    pub order_id: String,
    #[napi(ts_type = "'reserved' | 'paid' | 'released' | 'expired'")]
    pub status: String,
    pub lines: Vec<Line>,
    #[napi(ts_type = "Date")]
    pub created_at: Timestamp,
    #[napi(ts_type = "Date")]
    pub expires_at: Timestamp,
    /// When it became paid, released or expired.
    #[napi(ts_type = "Date")]
    pub finished_at: Option<Timestamp>,
    pub created: Option<bool>,
}

impl Reservation {
    pub fn new(r: stockledger::Reservation, created: Option<bool>) -> Self {
        Reservation {
            order_id: r.order_id,
            status: r.status.as_str().to_string(),
            lines: r
                .lines
                .into_iter()
                .map(|l| Line {
                    sku: l.sku,
                    warehouse: l.warehouse,
                    qty: l.qty as f64,
                })
                .collect(),
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
            finished_at: r.finished_at.map(Timestamp),
            created,
        }
    }
}

/// One short line of a refused reservation (the `.shortfalls` of an INSUFFICIENT_STOCK error).
#[napi(object)]
pub struct Shortfall {
    pub sku: String,
    pub warehouse: String,
    pub requested: f64,
    pub available: f64,
}

/// Options of `Ledger.open`.
#[napi(object)]
pub struct OpenOptions {
    /// 'sync' (default): acknowledged after fsync; 'async': fsync'd within 10 ms; 'none': memory only.
    #[napi(ts_type = "'sync' | 'async' | 'none'")]
    pub durability: Option<String>,
}

/// Options of `reserve`.
#[napi(object)]
pub struct ReserveOptions {
    /// 1..=604800, default 900.
    pub ttl_seconds: Option<f64>,
}

/// Options of `adjustStock`.
#[napi(object)]
pub struct AdjustOptions {
    /// Idempotency key of the adjustment (1..=128 printable ASCII).
    pub adjustment_id: String,
    /// At most 256 bytes.
    pub reason: Option<String>,
}

/// The stock of one warehouse of a sku.
#[napi(object)]
pub struct WarehouseStock {
    pub warehouse: String,
    pub on_hand: f64,
    pub reserved: f64,
    pub available: f64,
}

/// Every cell of a sku, sorted by warehouse, and their sums.
#[napi(object)]
pub struct SkuStock {
    pub sku: String,
    pub total: StockLevel,
    pub warehouses: Vec<WarehouseStock>,
}

impl From<stockledger::SkuStock> for SkuStock {
    fn from(s: stockledger::SkuStock) -> Self {
        SkuStock {
            sku: s.sku,
            total: s.total.into(),
            warehouses: s
                .warehouses
                .into_iter()
                .map(|(warehouse, l)| WarehouseStock {
                    warehouse,
                    on_hand: l.on_hand as f64,
                    reserved: l.reserved as f64,
                    available: l.available as f64,
                })
                .collect(),
        }
    }
}

/// Converts a finished value for handing back through napi.
pub fn to_js<'e, T: ToNapiValue>(env: &'e Env, v: T) -> napi::Result<Unknown<'e>> {
    let raw = unsafe { T::to_napi_value(env.raw(), v)? };
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
}
