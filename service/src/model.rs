//! Wire shapes of the HTTP API (http-api.md), with their OpenAPI schemas.

use serde::{Deserialize, Serialize};
use stockledger::{format_rfc3339, Line, Reservation, SkuStock, StockLevel};
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
    /// Bytes this answer needs, near enough to write it without growing the buffer.
    pub fn size_hint(&self) -> usize {
        let r = self.0;
        128 + r.order_id.len()
            + r.lines
                .iter()
                .map(|l| 48 + l.sku.len() + l.warehouse.len())
                .sum::<usize>()
    }
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
    use stockledger::Status;

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
}
