//! The one place where ledger errors and HTTP-level rejections become the contract's error
//! answers: `{"error": "<code>", "message": "...", ...extra}` with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use stockledger::{Error, ErrorCode};

/// `Retry-After` of a 503 `overloaded`: the queue drains in well under a second.
pub const RETRY_AFTER_SECS: &str = "1";

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// 400 `invalid_request` naming `field`.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field}: {reason}"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn payload_too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "body: larger than the limit of 1 MiB (1048576 bytes)",
        )
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "path: no such route")
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method: not allowed on this route",
        )
    }

    pub fn unavailable(reason: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            format!("ledger unavailable: {}", reason.into()),
        )
    }

    /// 503 `overloaded`: too much work already waits for the ledger; nothing was done.
    /// The answer carries `Retry-After`.
    pub fn overloaded() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "request: too many requests wait for the ledger (max-pending-writes); nothing was done, retry later",
        )
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.into(), value);
        self
    }
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::InsufficientStock
        | ErrorCode::OrderConflict
        | ErrorCode::OrderNotActive
        | ErrorCode::OrderPaid
        | ErrorCode::BelowReserved
        | ErrorCode::AdjustmentConflict
        | ErrorCode::PaymentConflict => StatusCode::CONFLICT,
        ErrorCode::OrderNotFound | ErrorCode::SkuNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::LedgerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::CapacityExhausted => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::EventsPruned => StatusCode::GONE,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let code = e.code();
        let mut err = ApiError {
            status: status_of(code),
            code: code.as_str(),
            message: String::new(),
            extra: Map::new(),
        };
        err.message = match &e {
            Error::InsufficientStock { shortfalls } => {
                let list: Vec<Value> = shortfalls
                    .iter()
                    .map(|s| {
                        json!({"sku": s.sku, "warehouse": s.warehouse,
                               "requested": s.requested, "available": s.available})
                    })
                    .collect();
                err.extra.insert("shortfalls".into(), Value::Array(list));
                let what: Vec<String> = shortfalls
                    .iter()
                    .map(|s| {
                        format!(
                            "{}@{} (requested {}, available {})",
                            s.sku, s.warehouse, s.requested, s.available
                        )
                    })
                    .collect();
                format!("lines: not enough stock for {}", what.join(", "))
            }
            Error::BelowReserved {
                on_hand,
                reserved,
                requested_on_hand,
            } => {
                err.extra.insert("on_hand".into(), json!(on_hand));
                err.extra.insert("reserved".into(), json!(reserved));
                // i128 in core: clamp into what JSON numbers carry.
                let req = i64::try_from(*requested_on_hand).unwrap_or(if *requested_on_hand < 0 {
                    i64::MIN
                } else {
                    i64::MAX
                });
                err.extra.insert("requested_on_hand".into(), json!(req));
                format!("on_hand: {e}")
            }
            Error::OrderConflict { .. } | Error::OrderNotFound { .. } => format!("order_id: {e}"),
            Error::OrderNotActive { .. } | Error::OrderPaid { .. } => format!("order_id: {e}"),
            Error::SkuNotFound { .. } | Error::Forbidden { .. } => format!("sku: {e}"),
            Error::AdjustmentConflict { .. } => format!("adjustment_id: {e}"),
            Error::PaymentConflict { .. } => format!("payment_id: {e}"),
            Error::CapacityExhausted { limit, max } => {
                err.extra.insert("limit".into(), json!(limit));
                err.extra.insert("max".into(), json!(max));
                format!("{limit}: {e}; nothing changed")
            }
            Error::EventsPruned { oldest_seq } => {
                err.extra.insert("oldest_seq".into(), json!(oldest_seq));
                format!("after: {e}")
            }
            _ => e.to_string(),
        };
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.code.into()));
        body.insert("message".into(), Value::String(self.message));
        body.extend(self.extra);
        let mut r = (self.status, Json(Value::Object(body))).into_response();
        if self.code == "overloaded" {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect 3: pruned events are a 410 `events_pruned` naming the oldest readable seq.
    #[test]
    fn pruned_events_are_a_410_with_the_oldest_seq() {
        let e = ApiError::from(Error::EventsPruned { oldest_seq: 42 });
        assert_eq!(e.status, StatusCode::GONE);
        assert_eq!(e.code, "events_pruned");
        assert_eq!(e.extra.get("oldest_seq"), Some(&json!(42)));
    }

    /// Issue 11: a full capacity is a 503 naming the limit, not `ledger_unavailable`.
    #[test]
    fn capacity_names_the_limit() {
        let e = ApiError::from(Error::CapacityExhausted {
            limit: "max_orders",
            max: 7,
        });
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "capacity_exhausted");
        assert!(e.message.starts_with("max_orders:"), "{}", e.message);
        assert_eq!(e.extra.get("limit"), Some(&json!("max_orders")));
        assert_eq!(e.extra.get("max"), Some(&json!(7)));
    }

    #[test]
    fn overloaded_says_when_to_retry() {
        let r = ApiError::overloaded().into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let plain = ApiError::unavailable("x").into_response();
        assert!(plain.headers().get("retry-after").is_none());
    }
}
