//! Wire shapes of the HTTP API (http-api.md), with their OpenAPI schemas.

use serde::{Deserialize, Serialize};
use stockledger::{format_rfc3339, Line, Reservation, SkuStock, Status, StockLevel};
use utoipa::ToSchema;

// ---- requests --------------------------------------------------------------------------

#[derive(Debug, ToSchema)]
pub struct LineIn {
    /// 1..=64 bytes of `[A-Za-z0-9._:-]`
    pub sku: String,
    /// 1..=64 bytes of `[A-Za-z0-9._:-]`
    pub warehouse: String,
    /// 1..=1000000
    pub qty: u64,
}

/// The fields of a line, as serde derives them.
#[derive(Deserialize)]
struct LineFields {
    sku: String,
    warehouse: String,
    qty: u64,
}

/// A line is a JSON object only: serde's derive also takes a struct from an array
/// (`["A","w1",2]`), which the contract calls a wrong type (400). Found by the
/// `http_bodies` fuzz target.
impl<'de> Deserialize<'de> for LineIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LineIn, D::Error> {
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = LineIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a line object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<LineIn, A::Error> {
                let l = LineFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(LineIn {
                    sku: l.sku,
                    warehouse: l.warehouse,
                    qty: l.qty,
                })
            }
        }
        d.deserialize_map(Object)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReserveRequest {
    /// 1..=128 bytes of printable ASCII; the idempotency key
    pub order_id: String,
    /// 1..=100 lines, no (sku, warehouse) twice
    pub lines: Vec<LineIn>,
    /// 1..=604800, default 900
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StockQueryRequest {
    /// 1..=1000 skus, duplicates allowed
    pub skus: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetStockRequest {
    /// 0..=9007199254740991
    pub on_hand: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AdjustStockRequest {
    /// Non-zero, |delta| <= 9007199254740991
    pub delta: i64,
    /// 1..=128 bytes of printable ASCII; idempotency key per seller
    pub adjustment_id: String,
    /// At most 256 bytes
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    Succeeded,
    Failed,
}

/// A string only: serde's derive also takes an enum from a map (`{"failed": null}` was a
/// failed payment), a wrong type by the contract (400). Found by the `http_bodies` fuzz
/// target.
impl<'de> Deserialize<'de> for PaymentStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PaymentStatus, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        match &*s {
            "succeeded" => Ok(PaymentStatus::Succeeded),
            "failed" => Ok(PaymentStatus::Failed),
            other => Err(serde::de::Error::unknown_variant(
                other,
                &["succeeded", "failed"],
            )),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentCallback {
    /// 1..=128 bytes of printable ASCII
    pub payment_id: String,
    pub order_id: String,
    pub status: PaymentStatus,
    /// 0..=9007199254740991
    pub amount_minor: u64,
    /// Three upper-case letters
    pub currency: String,
}

// ---- responses -------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct LineOut {
    pub sku: String,
    pub warehouse: String,
    pub qty: u64,
}

impl From<&Line> for LineOut {
    fn from(l: &Line) -> LineOut {
        LineOut {
            sku: l.sku.clone(),
            warehouse: l.warehouse.clone(),
            qty: l.qty,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationBody {
    pub order_id: String,
    /// reserved, paid, released or expired
    pub status: String,
    pub lines: Vec<LineOut>,
    /// RFC 3339 UTC with milliseconds
    pub created_at: String,
    pub expires_at: String,
}

impl From<&Reservation> for ReservationBody {
    fn from(r: &Reservation) -> ReservationBody {
        ReservationBody {
            order_id: r.order_id.clone(),
            status: r.status.as_str().into(),
            lines: r.lines.iter().map(LineOut::from).collect(),
            created_at: format_rfc3339(r.created_at),
            expires_at: format_rfc3339(r.expires_at),
        }
    }
}

/// A reservation's answer body serialised straight from the ledger's [`Reservation`]: the
/// same JSON as [`ReservationBody`] (which stays as the schema of the OpenAPI document)
/// without copying a string; the timestamps are formatted into the output as it is written.
pub struct ReservationJson<'a>(pub &'a Reservation);

struct LinesJson<'a>(&'a [Line]);
struct LineJson<'a>(&'a Line);
struct TimeJson(stockledger::Millis);

impl Serialize for ReservationJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = self.0;
        let mut st = s.serialize_struct("ReservationBody", 5)?;
        st.serialize_field("order_id", &r.order_id)?;
        st.serialize_field("status", r.status.as_str())?;
        st.serialize_field("lines", &LinesJson(&r.lines))?;
        st.serialize_field("created_at", &TimeJson(r.created_at))?;
        st.serialize_field("expires_at", &TimeJson(r.expires_at))?;
        st.end()
    }
}

impl Serialize for LinesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(LineJson))
    }
}

impl Serialize for LineJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("LineOut", 3)?;
        st.serialize_field("sku", &self.0.sku)?;
        st.serialize_field("warehouse", &self.0.warehouse)?;
        st.serialize_field("qty", &self.0.qty)?;
        st.end()
    }
}

impl Serialize for TimeJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The same text as `format_rfc3339`, written without an intermediate String.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0);
        s.collect_str(&humantime::format_rfc3339_millis(t))
    }
}

impl ReservationJson<'_> {
    /// Appends exactly the bytes `serde_json::to_writer` writes for this value, without
    /// serde's per-byte escaping of names the ledger already checked (order ids, skus and
    /// warehouses are ASCII; only a `"` or `\\` in an order id needs escaping, then serde_json
    /// writes that one string) and without formatting timestamps through `fmt`.
    pub fn write_to(&self, buf: &mut Vec<u8>) {
        let r = self.0;
        let lines = r.lines.iter().map(|l| (&*l.sku, &*l.warehouse, l.qty));
        write_reservation(
            buf,
            &r.order_id,
            r.status,
            lines,
            r.created_at,
            r.expires_at,
        );
    }

    /// Bytes this answer needs, near enough to write it without growing the buffer.
    pub fn size_hint(&self) -> usize {
        let r = self.0;
        let names: usize = r
            .lines
            .iter()
            .map(|l| l.sku.len() + l.warehouse.len())
            .sum();
        reservation_size_hint(r.order_id.len(), r.lines.len(), names)
    }
}

/// A reservation's answer body written from the ledger's [`stockledger::Answered`] (the
/// order as the call left it, names borrowed from the ledger) and the order id the caller
/// sent: the same bytes as [`ReservationJson`] of the reservation read back, without
/// building that reservation (an id and two names copied per line).
pub struct AnsweredJson<'a> {
    pub order_id: &'a str,
    pub answered: &'a stockledger::Answered<'a>,
}

impl AnsweredJson<'_> {
    pub fn write_to(&self, buf: &mut Vec<u8>) {
        let a = self.answered;
        let lines = a.lines().map(|l| (l.sku, l.warehouse, l.qty));
        write_reservation(
            buf,
            self.order_id,
            a.status,
            lines,
            a.created_at,
            a.expires_at,
        );
    }

    /// Enough for any names (reading them twice would cost a lookup per line).
    pub fn size_hint(&self) -> usize {
        let lines = self.answered.lines().len();
        let names = lines * 2 * stockledger::limits::MAX_NAME_BYTES;
        reservation_size_hint(self.order_id.len(), lines, names)
    }
}

fn reservation_size_hint(order_id_bytes: usize, lines: usize, name_bytes: usize) -> usize {
    128 + order_id_bytes + 48 * lines + name_bytes
}

/// Appends exactly the bytes `serde_json::to_writer` writes for a [`ReservationBody`] of
/// these fields (see [`ReservationJson::write_to`]).
fn write_reservation<'n>(
    buf: &mut Vec<u8>,
    order_id: &str,
    status: Status,
    lines: impl Iterator<Item = (&'n str, &'n str, u64)>,
    created_at: stockledger::Millis,
    expires_at: stockledger::Millis,
) {
    buf.extend_from_slice(b"{\"order_id\":");
    json_str(buf, order_id);
    buf.extend_from_slice(b",\"status\":\"");
    buf.extend_from_slice(status.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"lines\":[");
    for (i, (sku, warehouse, qty)) in lines.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"sku\":");
        json_str(buf, sku);
        buf.extend_from_slice(b",\"warehouse\":");
        json_str(buf, warehouse);
        buf.extend_from_slice(b",\"qty\":");
        buf.extend_from_slice(itoa::Buffer::new().format(qty).as_bytes());
        buf.push(b'}');
    }
    buf.extend_from_slice(b"],\"created_at\":");
    json_time(buf, created_at, 0);
    buf.extend_from_slice(b",\"expires_at\":");
    json_time(buf, expires_at, 1);
    buf.push(b'}');
}

/// A JSON string as serde_json writes it: as is when nothing needs escaping (the usual
/// case), else through serde_json itself.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

/// `"YYYY-MM-DDTHH:MM:SS.mmmZ"`, the text of `humantime::format_rfc3339_millis` (and of
/// [`TimeJson`]), written directly for years 1970..=9999; other instants through humantime.
/// The text of the whole second comes from a per-thread cache of one second per `slot`
/// (answers written within a second share it: a creation time in slot 0, an expiry in slot
/// 1); formatting a second costs ~250 instructions, a hit ~20.
fn json_time(buf: &mut Vec<u8>, ms: stockledger::Millis, slot: usize) {
    const MAX: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if ms > MAX {
        let _ = serde_json::to_writer(&mut *buf, &TimeJson(ms));
        return;
    }
    thread_local! {
        static SECONDS: std::cell::Cell<[(u64, [u8; 26]); 2]> =
            const { std::cell::Cell::new([(u64::MAX, [0; 26]); 2]) };
    }
    let secs = ms / 1000;
    let mut t = SECONDS.with(|cache| {
        let mut seconds = cache.get();
        let slot = slot & 1;
        if seconds[slot].0 != secs {
            seconds[slot] = (secs, second_text(secs));
            cache.set(seconds);
        }
        seconds[slot].1
    });
    let millis = ms % 1000;
    t[21] = b'0' + (millis / 100) as u8;
    t[22] = b'0' + (millis / 10 % 10) as u8;
    t[23] = b'0' + (millis % 10) as u8;
    buf.extend_from_slice(&t);
}

/// `"YYYY-MM-DDTHH:MM:SS.000Z"` for unix seconds of years 1970..=9999.
fn second_text(secs: u64) -> [u8; 26] {
    let days = secs / 86_400;
    let sod = secs % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, unsigned form).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut t = *b"\"0000-00-00T00:00:00.000Z\"";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            t[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(1, 4, year);
    put(6, 2, month);
    put(9, 2, day);
    put(12, 2, sod / 3600);
    put(15, 2, sod / 60 % 60);
    put(18, 2, sod % 60);
    t
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WarehouseStock {
    pub warehouse: String,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkuStockBody {
    pub sku: String,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    /// Sorted by warehouse id
    pub warehouses: Vec<WarehouseStock>,
}

impl SkuStockBody {
    pub fn of(s: &SkuStock) -> SkuStockBody {
        SkuStockBody {
            sku: s.sku.clone(),
            on_hand: s.total.on_hand,
            reserved: s.total.reserved,
            available: s.total.available,
            warehouses: s
                .warehouses
                .iter()
                .map(|(w, l)| WarehouseStock {
                    warehouse: w.clone(),
                    on_hand: l.on_hand,
                    reserved: l.reserved,
                    available: l.available,
                })
                .collect(),
        }
    }

    pub fn empty(sku: &str) -> SkuStockBody {
        SkuStockBody {
            sku: sku.into(),
            on_hand: 0,
            reserved: 0,
            available: 0,
            warehouses: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockQueryBody {
    pub items: Vec<SkuStockBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CellBody {
    pub sku: String,
    pub warehouse: String,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
}

impl CellBody {
    pub fn of(sku: &str, warehouse: &str, l: StockLevel) -> CellBody {
        CellBody {
            sku: sku.into(),
            warehouse: warehouse.into(),
            on_hand: l.on_hand,
            reserved: l.reserved,
            available: l.available,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentAnswerBody {
    pub order_id: String,
    pub payment_id: String,
    /// paid, released, expired or refund_required
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsBody {
    /// Events of events.md in seq order
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// The seq of the last event returned, or `after` when none is
    pub next: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    pub status: String,
    /// Seq of the last durable event
    pub last_seq: u64,
    /// Durable events not yet delivered to Kafka (all of them when Kafka is off)
    pub outbox_lag: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointBody {
    /// The last seq held by the snapshot
    pub seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShortfallBody {
    pub sku: String,
    pub warehouse: String,
    pub requested: u64,
    pub available: u64,
}

/// Every error answer; extra fields depend on the code.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    /// insufficient_stock
    #[schema(nullable = false)]
    pub shortfalls: Option<Vec<ShortfallBody>>,
    /// below_reserved: the current on_hand
    #[schema(nullable = false)]
    pub on_hand: Option<u64>,
    /// below_reserved
    #[schema(nullable = false)]
    pub reserved: Option<u64>,
    /// below_reserved
    #[schema(nullable = false)]
    pub requested_on_hand: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct writers give serde_json's bytes: every escape class in strings, and
    /// timestamps across leap days, centuries, the range's ends and beyond it.
    #[test]
    fn direct_writers_match_serde_json() {
        let mut strs: Vec<String> = vec![
            String::new(),
            "plain-ASCII_1.2:3".into(),
            "q\"uote".into(),
            "back\\slash".into(),
            "\u{7f}del".into(),
            "caf\u{e9}".into(),
        ];
        for b in 0u8..0x20 {
            strs.push(format!("a{}b", b as char));
        }
        for s in &strs {
            let mut direct = Vec::new();
            json_str(&mut direct, s);
            assert_eq!(direct, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        let mut times: Vec<u64> = vec![
            0,
            999,
            86_399_999,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-03-01
            1_764_633_600_123,
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z (beyond it both go through humantime)
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            times.push(x % 253_402_300_800_000);
        }
        for day in 0..(366 * 5) {
            times.push(1_704_067_200_000 + day * 86_400_000 - 1);
        }
        // Each time and its neighbours in the same second, through both cache slots, so
        // that hits and misses of the per-thread cache of seconds are both checked.
        for (i, ms) in times.into_iter().enumerate() {
            for ms in [ms, ms / 1000 * 1000, ms / 1000 * 1000 + 999, ms] {
                let mut direct = Vec::new();
                json_time(&mut direct, ms, i % 3);
                assert_eq!(
                    String::from_utf8(direct).unwrap(),
                    serde_json::to_string(&TimeJson(ms)).unwrap(),
                    "{ms}"
                );
            }
        }
    }

    /// The borrowed serialiser writes exactly what the owned schema type writes.
    #[test]
    fn reservation_json_matches_the_body_type() {
        let r = Reservation {
            order_id: "o-\"1\"\u{7f}".into(),
            status: Status::Reserved,
            lines: vec![
                Line::new("A1", "kol", 2),
                Line::new("B.2:x-y_z", "w\\h", 1_000_000),
            ],
            created_at: 1_764_633_600_123,
            expires_at: 1_764_634_500_999,
            finished_at: None,
        };
        for r in [
            r.clone(),
            Reservation {
                status: Status::Expired,
                lines: Vec::new(),
                created_at: 0,
                expires_at: 253_402_300_799_999,
                ..r
            },
        ] {
            let owned = serde_json::to_vec(&ReservationBody::from(&r)).unwrap();
            let borrowed = serde_json::to_vec(&ReservationJson(&r)).unwrap();
            let mut direct = Vec::new();
            ReservationJson(&r).write_to(&mut direct);
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(borrowed.clone()).unwrap()
            );
            assert_eq!(
                String::from_utf8(borrowed.clone()).unwrap(),
                String::from_utf8(owned).unwrap()
            );
            assert!(
                borrowed.len() <= ReservationJson(&r).size_hint(),
                "{}",
                borrowed.len()
            );
        }
    }

    /// The answer written from the ledger's `Answered` is byte for byte the answer written
    /// from the reservation read back, for a new order, a replay and a release.
    #[test]
    fn answered_json_matches_the_reservation_read_back() {
        let ledger = stockledger::Ledger::in_memory(stockledger::Options::default());
        for (sku, wh) in [("A1", "kol"), ("B.2:x-y_z", "kol"), ("A1", "spb")] {
            ledger
                .set_stock(sku, wh, 10, stockledger::Source::Warehouse)
                .expect("stock");
        }
        let lines = [
            Line::new("B.2:x-y_z", "kol", 2),
            Line::new("A1", "spb", 1),
            Line::new("A1", "kol", 3),
        ];
        let check = |order_id: &str, a: &stockledger::Answered<'_>| {
            let r = ledger.reservation(order_id).expect("read").expect("known");
            let (mut direct, mut back) = (Vec::new(), Vec::new());
            let answered = AnsweredJson {
                order_id,
                answered: a,
            };
            answered.write_to(&mut direct);
            ReservationJson(&r).write_to(&mut back);
            assert_eq!(String::from_utf8(direct.clone()), String::from_utf8(back));
            assert!(direct.len() <= answered.size_hint());
        };
        for id in ["o-\"1\"", "o-2"] {
            let (a, _) = ledger
                .reserve_deferred_answered(id, &lines, 60)
                .expect("reserve");
            check(id, &a);
            let (a, _) = ledger
                .reserve_deferred_answered(id, &lines, 60)
                .expect("replay");
            check(id, &a);
        }
        let (a, _) = ledger.release_deferred_answered("o-2").expect("release");
        check("o-2", &a);
    }
}
