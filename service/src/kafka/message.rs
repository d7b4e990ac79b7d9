//! The warehouse stock feed's messages (`events.md`, consumed topic) and why one is refused.

use serde_json::{Map, Value};

/// One decoded stock message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockMessage {
    Adjust {
        event_id: String,
        sku: String,
        warehouse: String,
        delta: i64,
        reason: Option<String>,
    },
    Set {
        event_id: String,
        sku: String,
        warehouse: String,
        on_hand: u64,
    },
}

impl StockMessage {
    pub fn event_id(&self) -> &str {
        match self {
            StockMessage::Adjust { event_id, .. } | StockMessage::Set { event_id, .. } => event_id,
        }
    }

    /// Decodes a message; the error names the field. Unknown fields are ignored so
    /// producers can add some; limits (lengths, ranges) are the ledger's to check.
    pub fn parse(payload: Option<&[u8]>) -> Result<StockMessage, String> {
        let bytes = payload.ok_or("empty message (no value)")?;
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(obj) = value else {
            return Err("not a JSON object".into());
        };
        let event_id = string(&obj, "event_id")?;
        let sku = string(&obj, "sku")?;
        let warehouse = string(&obj, "warehouse")?;
        let delta = present(&obj, "delta");
        let on_hand = present(&obj, "on_hand");
        match (delta, on_hand) {
            (Some(d), None) => {
                let delta = d
                    .as_i64()
                    .filter(|_| !d.is_f64())
                    .ok_or("delta: must be a whole number (i64)")?;
                let reason = match present(&obj, "reason") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err("reason: must be a string".into()),
                };
                Ok(StockMessage::Adjust {
                    event_id,
                    sku,
                    warehouse,
                    delta,
                    reason,
                })
            }
            (None, Some(n)) => {
                let on_hand = n.as_u64().ok_or("on_hand: must be a whole number >= 0")?;
                Ok(StockMessage::Set {
                    event_id,
                    sku,
                    warehouse,
                    on_hand,
                })
            }
            (Some(_), Some(_)) => Err("delta, on_hand: give one of them, not both".into()),
            (None, None) => Err("delta, on_hand: one of them is required".into()),
        }
    }
}

/// A field that is there and not null.
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn string(obj: &Map<String, Value>, field: &str) -> Result<String, String> {
    match present(obj, field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{field}: must be a string")),
        None => Err(format!("{field}: required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StockMessage, String> {
        StockMessage::parse(Some(s.as_bytes()))
    }

    #[test]
    fn both_shapes() {
        assert_eq!(
            parse(
                r#"{"event_id":"e1","sku":"A1","warehouse":"kol","delta":-5,"reason":"inbound"}"#
            ),
            Ok(StockMessage::Adjust {
                event_id: "e1".into(),
                sku: "A1".into(),
                warehouse: "kol".into(),
                delta: -5,
                reason: Some("inbound".into()),
            })
        );
        assert_eq!(
            parse(r#"{"event_id":"e2","sku":"A1","warehouse":"kol","on_hand":120,"extra":1}"#),
            Ok(StockMessage::Set {
                event_id: "e2".into(),
                sku: "A1".into(),
                warehouse: "kol".into(),
                on_hand: 120,
            })
        );
        let no_reason =
            parse(r#"{"event_id":"e","sku":"A","warehouse":"w","delta":1,"reason":null}"#);
        assert!(matches!(
            no_reason,
            Ok(StockMessage::Adjust { reason: None, .. })
        ));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            ("", "JSON"),
            ("{", "JSON"),
            ("[1]", "object"),
            (r#"{"sku":"A","warehouse":"w","delta":1}"#, "event_id"),
            (
                r#"{"event_id":5,"sku":"A","warehouse":"w","delta":1}"#,
                "event_id",
            ),
            (r#"{"event_id":"e","warehouse":"w","delta":1}"#, "sku"),
            (r#"{"event_id":"e","sku":"A","delta":1}"#, "warehouse"),
            (r#"{"event_id":"e","sku":"A","warehouse":"w"}"#, "delta"),
            (
                r#"{"event_id":"e","sku":"A","warehouse":"w","delta":1.5}"#,
                "delta",
            ),
            (
                r#"{"event_id":"e","sku":"A","warehouse":"w","delta":1.0}"#,
                "delta",
            ),
            (
                r#"{"event_id":"e","sku":"A","warehouse":"w","delta":"1"}"#,
                "delta",
            ),
            (
                r#"{"event_id":"e","sku":"A","warehouse":"w","delta":9223372036854775808}"#,
                "delta",
            ),
            (
                r#"{"event_id":"e","sku":"A","warehouse":"w","on_hand":-1}"#,
                "on_hand",
            ),
            (
                r#"{"event_id":"e","sku":"A","warehouse":"w","on_hand":1e3}"#,
                "on_hand",
            ),
            (
                r#"{"event_id":"e","sku":"A","warehouse":"w","on_hand":1,"delta":1}"#,
                "one of them",
            ),
            (
                r#"{"event_id":"e","sku":"A","warehouse":"w","delta":1,"reason":3}"#,
                "reason",
            ),
        ];
        for (input, needle) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
        assert!(StockMessage::parse(None).unwrap_err().contains("empty"));
    }
}
