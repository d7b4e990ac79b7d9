//! Events of `events.md`, decoded from log records.

use serde_json::{json, Map, Value};

use crate::record::{
    Entry, TAG_EXPIRED, TAG_PAID, TAG_PAYMENT_FAILED, TAG_RELEASED, TAG_STOCK_ADJUSTED,
};
use crate::time::{format_rfc3339, Millis};

/// One event of the durable stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Starts at 1, strictly increasing, no gaps.
    pub seq: u64,
    /// Stable across redeliveries: the ledger's id, its epoch when not 0, and the seq.
    pub event_id: String,
    pub entry: Entry,
}

impl Event {
    pub(crate) fn new(ledger_id: u64, seq: u64, entry: Entry) -> Event {
        Event::in_epoch(ledger_id, 0, seq, entry)
    }

    /// An event of a segment of `epoch` (`docs/log-format.md`): epoch 0 keeps the ids
    /// events always had; a later epoch (seqs that may repeat) gives new ones.
    pub(crate) fn in_epoch(ledger_id: u64, epoch: u32, seq: u64, entry: Entry) -> Event {
        debug_assert!(entry.is_event());
        let event_id = if epoch == 0 {
            format!("{ledger_id:016x}-{seq}")
        } else {
            format!("{ledger_id:016x}.{epoch}-{seq}")
        };
        Event {
            seq,
            event_id,
            entry,
        }
    }

    /// The contract's `type`.
    pub fn kind(&self) -> &'static str {
        match &self.entry {
            Entry::Created { .. } => "reservation.created",
            Entry::Finished { tag, .. } => match *tag {
                TAG_RELEASED => "reservation.released",
                TAG_EXPIRED => "reservation.expired",
                TAG_PAID => "order.paid",
                TAG_PAYMENT_FAILED => "order.payment_failed",
                _ => "unknown",
            },
            Entry::RefundRequired { .. } => "payment.refund_required",
            Entry::Stock { tag, .. } if *tag != TAG_STOCK_ADJUSTED => "stock.set",
            Entry::Stock { .. } => "stock.adjusted",
            Entry::PaymentNote { .. } | Entry::RetentionNote { .. } => "note",
        }
    }

    /// The Kafka key: the order id, or the sku for stock events.
    pub fn key(&self) -> &str {
        match &self.entry {
            Entry::Created { order_id, .. }
            | Entry::Finished { order_id, .. }
            | Entry::RefundRequired { order_id, .. }
            | Entry::PaymentNote { order_id, .. } => order_id,
            Entry::Stock { sku, .. } => sku,
            Entry::RetentionNote { .. } => "",
        }
    }

    pub fn at(&self) -> Millis {
        match &self.entry {
            Entry::Created { at, .. }
            | Entry::Finished { at, .. }
            | Entry::RefundRequired { at, .. }
            | Entry::Stock { at, .. } => *at,
            Entry::PaymentNote { .. } => 0,
            Entry::RetentionNote { cutoff } => *cutoff,
        }
    }

    /// The JSON object of `events.md`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("seq".into(), json!(self.seq));
        m.insert("event_id".into(), json!(self.event_id));
        m.insert("type".into(), json!(self.kind()));
        m.insert("at".into(), json!(format_rfc3339(self.at())));
        match &self.entry {
            Entry::Created {
                order_id,
                expires_at,
                lines,
                ..
            } => {
                m.insert("order_id".into(), json!(order_id));
                m.insert("lines".into(), lines_json(lines));
                m.insert("expires_at".into(), json!(format_rfc3339(*expires_at)));
            }
            Entry::Finished {
                order_id,
                payment_id,
                lines,
                ..
            } => {
                m.insert("order_id".into(), json!(order_id));
                m.insert("lines".into(), lines_json(lines));
                if let Some(p) = payment_id {
                    m.insert("payment_id".into(), json!(p));
                }
            }
            Entry::RefundRequired {
                order_id,
                payment_id,
                amount_minor,
                currency,
                reason,
                ..
            } => {
                m.insert("order_id".into(), json!(order_id));
                m.insert("payment_id".into(), json!(payment_id));
                m.insert("amount_minor".into(), json!(amount_minor));
                m.insert("currency".into(), json!(currency));
                m.insert("reason".into(), json!(reason.as_str()));
            }
            Entry::Stock {
                tag,
                sku,
                warehouse,
                on_hand,
                delta,
                source,
                adjustment_id,
                reason,
                ..
            } => {
                m.insert("sku".into(), json!(sku));
                m.insert("warehouse".into(), json!(warehouse));
                m.insert("on_hand".into(), json!(on_hand));
                m.insert("delta".into(), json!(delta));
                m.insert("source".into(), json!(source));
                if let Some(id) = adjustment_id {
                    m.insert("adjustment_id".into(), json!(id));
                }
                if *tag == TAG_STOCK_ADJUSTED {
                    m.insert("reason".into(), json!(reason));
                }
            }
            Entry::PaymentNote { .. } | Entry::RetentionNote { .. } => {}
        }
        Value::Object(m)
    }
}

fn lines_json(lines: &[(String, String, u64)]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|(s, w, q)| json!({"sku": s, "warehouse": w, "qty": q}))
            .collect(),
    )
}
