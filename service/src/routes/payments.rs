//! The bank's payment callback: signature first (401), then the body (400), then the ledger
//! decides every payment case and the bank gets a definite answer.

use axum::extract::State;
use axum::http::{HeaderMap, Request};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper::body::Incoming;
use stockledger::Payment;

use crate::errors::{ApiError, ApiResult};
use crate::json::{parse, read_body, RawBody};
use crate::model::*;
use crate::state::{deferred, Shared};

/// The callback body as `callback` reads it (after the signature check); the ledger checks
/// the fields' contents. Public for the fuzz target (`fuzz::fuzz_parse_payment`).
#[doc(hidden)]
pub fn payment_body(body: &[u8]) -> Result<PaymentCallback, ApiError> {
    parse(body)
}

/// Payment result after 3-D Secure, signed with HMAC-SHA256 over `<X-Timestamp>.<body>`.
#[utoipa::path(post, path = "/v1/payments/callback", tag = "payments",
    request_body = PaymentCallback,
    params(
        ("X-Timestamp" = String, Header, description = "Unix seconds when the bank signed"),
        ("X-Signature" = String, Header, description = "sha256=<lowercase hex HMAC-SHA256(secret, timestamp.body)>"),
    ),
    responses(
        (status = 200, description = "The payment's outcome: paid, released, expired or refund_required", body = PaymentAnswerBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized: missing headers, wrong signature or stale timestamp", body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
        (status = 409, description = "payment_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "ledger_unavailable", body = ErrorBody),
    ))]
pub async fn callback(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<PaymentAnswerBody>> {
    callback_answer(&s, &headers, &body).await
}

/// `POST /v1/payments/callback` served straight from hyper's request (see
/// `server::ConnService`): the same answer as the axum route [`callback`] (the body read
/// first, 1 MiB limit), without the router. The caller applies the request timeout and
/// records the route's HTTP metrics, as for every direct route.
pub async fn callback_direct(s: Shared, req: Request<Incoming>) -> Response {
    let (parts, body) = req.into_parts();
    match read_body(body).await {
        Ok(body) => callback_answer(&s, &parts.headers, &body)
            .await
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Checks the signature, then the body, then lets the ledger decide; answers once durable.
async fn callback_answer(
    s: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Json<PaymentAnswerBody>> {
    let now = i64::try_from(s.ledger.now_ms() / 1000).unwrap_or(i64::MAX);
    s.auth.payment(headers, body, now)?;
    let req = payment_body(body)?;
    let payment = Payment {
        payment_id: &req.payment_id,
        order_id: &req.order_id,
        succeeded: req.status == PaymentStatus::Succeeded,
        amount_minor: req.amount_minor,
        currency: &req.currency,
    };
    let outcome = deferred(&s.ledger, |l| l.pay_deferred(payment)).await?;
    let answer = PaymentAnswerBody {
        order_id: req.order_id,
        payment_id: req.payment_id,
        status: outcome.as_str().into(),
    };
    Ok(Json(answer))
}
