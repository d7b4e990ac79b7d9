//! Errors of the ledger. Every variant maps to one domain error code of the contract.

use std::fmt;

/// One short line of a refused reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub sku: String,
    pub warehouse: String,
    pub requested: u64,
    pub available: u64,
}

/// The short lines of a refused reservation as its message names them, the first
/// [`SHORT_LINES_NAMED`] (the error's `shortfalls` hold them all):
/// `A1/kol requested 3, available 1; B2/kol requested 1, available 0`.
struct ShortLines<'a>(&'a [Shortfall]);

/// Short lines named in a message at most, so that an order of 100 lines of 64-byte names
/// does not make a 17 KB message.
const SHORT_LINES_NAMED: usize = 8;

impl fmt::Display for ShortLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().take(SHORT_LINES_NAMED).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{}/{} requested {}, available {}",
                s.sku, s.warehouse, s.requested, s.available
            )?;
        }
        if self.0.len() > SHORT_LINES_NAMED {
            write!(f, "; and {} more", self.0.len() - SHORT_LINES_NAMED)?;
        }
        Ok(())
    }
}

/// The domain error codes shared by every interface (see `domain.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InsufficientStock,
    OrderConflict,
    OrderNotFound,
    SkuNotFound,
    OrderNotActive,
    OrderPaid,
    BelowReserved,
    AdjustmentConflict,
    PaymentConflict,
    Unauthorized,
    Forbidden,
    LedgerUnavailable,
    CapacityExhausted,
    /// The events asked for are no longer retained (the log was compacted past them).
    EventsPruned,
}

impl ErrorCode {
    /// The lower-case wire name (`insufficient_stock`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InsufficientStock => "insufficient_stock",
            ErrorCode::OrderConflict => "order_conflict",
            ErrorCode::OrderNotFound => "order_not_found",
            ErrorCode::SkuNotFound => "sku_not_found",
            ErrorCode::OrderNotActive => "order_not_active",
            ErrorCode::OrderPaid => "order_paid",
            ErrorCode::BelowReserved => "below_reserved",
            ErrorCode::AdjustmentConflict => "adjustment_conflict",
            ErrorCode::PaymentConflict => "payment_conflict",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::LedgerUnavailable => "ledger_unavailable",
            ErrorCode::CapacityExhausted => "capacity_exhausted",
            ErrorCode::EventsPruned => "events_pruned",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Input outside the limits of the domain; `field` is its path (`lines[1].qty`).
    #[error("{field}: {reason}")]
    InvalidRequest { field: String, reason: String },
    #[error("insufficient stock: {}", ShortLines(shortfalls))]
    InsufficientStock { shortfalls: Vec<Shortfall> },
    #[error("order {order_id} already exists with different lines")]
    OrderConflict { order_id: String },
    #[error("order {order_id} not found")]
    OrderNotFound { order_id: String },
    #[error("sku {sku} not found")]
    SkuNotFound { sku: String },
    #[error("order {order_id} is {status}, not reserved")]
    OrderNotActive {
        order_id: String,
        status: &'static str,
    },
    #[error("order {order_id} is already paid")]
    OrderPaid { order_id: String },
    #[error(
        "on_hand {requested_on_hand} would fall below reserved {reserved} (on_hand now {on_hand})"
    )]
    BelowReserved {
        on_hand: u64,
        reserved: u64,
        requested_on_hand: i128,
    },
    #[error("adjustment_id {adjustment_id} was already used for another cell or delta")]
    AdjustmentConflict { adjustment_id: String },
    #[error("payment_id {payment_id} was already used for another order or status")]
    PaymentConflict { payment_id: String },
    #[error("sku {sku} belongs to another seller")]
    Forbidden { sku: String },
    #[error("ledger unavailable: {reason}")]
    LedgerUnavailable { reason: String },
    /// A configured capacity is full; nothing changed and other writes still work.
    #[error("capacity exhausted: {limit} (at most {max})")]
    CapacityExhausted { limit: &'static str, max: u64 },
    /// Events after the seq asked for were removed from the log; `oldest_seq` is the first
    /// one still readable. Never skipped silently.
    #[error(
        "the events asked for are no longer retained; the oldest readable seq is {oldest_seq}"
    )]
    EventsPruned { oldest_seq: u64 },
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            Error::InsufficientStock { .. } => ErrorCode::InsufficientStock,
            Error::OrderConflict { .. } => ErrorCode::OrderConflict,
            Error::OrderNotFound { .. } => ErrorCode::OrderNotFound,
            Error::SkuNotFound { .. } => ErrorCode::SkuNotFound,
            Error::OrderNotActive { .. } => ErrorCode::OrderNotActive,
            Error::OrderPaid { .. } => ErrorCode::OrderPaid,
            Error::BelowReserved { .. } => ErrorCode::BelowReserved,
            Error::AdjustmentConflict { .. } => ErrorCode::AdjustmentConflict,
            Error::PaymentConflict { .. } => ErrorCode::PaymentConflict,
            Error::Forbidden { .. } => ErrorCode::Forbidden,
            Error::LedgerUnavailable { .. } => ErrorCode::LedgerUnavailable,
            Error::CapacityExhausted { .. } => ErrorCode::CapacityExhausted,
            Error::EventsPruned { .. } => ErrorCode::EventsPruned,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unavailable(reason: impl Into<String>) -> Error {
        Error::LedgerUnavailable {
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn short(sku: &str, requested: u64, available: u64) -> Shortfall {
        Shortfall {
            sku: sku.into(),
            warehouse: "kol".into(),
            requested,
            available,
        }
    }

    #[test]
    fn insufficient_stock_names_its_short_lines_up_to_a_limit() {
        let e = Error::InsufficientStock {
            shortfalls: vec![short("A1", 3, 1), short("B2", 1, 0)],
        };
        assert_eq!(
            e.to_string(),
            "insufficient stock: A1/kol requested 3, available 1; B2/kol requested 1, available 0"
        );
        let many: Vec<Shortfall> = (0..100).map(|i| short(&format!("S{i}"), 2, 1)).collect();
        let e = Error::InsufficientStock { shortfalls: many };
        let m = e.to_string();
        assert!(m.contains("S7/kol") && !m.contains("S8/kol"), "{m}");
        assert!(m.ends_with("; and 92 more"), "{m}");
    }
}
