//! Partner (seller) gateway. Checks run in the contract's order: token (401), path and body
//! (400), ownership (403, decided by the ledger with `Source::Seller`), then the operation (409).

use axum::extract::State;
use axum::Json;
use stockledger::{limits, Source};

use crate::auth::SellerBody;
use crate::errors::{ApiError, ApiResult};
use crate::json::{parse, Segments};
use crate::model::*;
use crate::state::{blocking, Shared};

/// Set a cell's on_hand.
#[utoipa::path(put, path = "/v1/partner/stock/{sku}/{warehouse}", tag = "partner",
    params(
        ("sku" = String, Path, description = "1..=64 bytes of [A-Za-z0-9._:-]"),
        ("warehouse" = String, Path, description = "1..=64 bytes of [A-Za-z0-9._:-]"),
    ),
    request_body = SetStockRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cell", body = CellBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: another seller owns the sku", body = ErrorBody),
        (status = 409, description = "below_reserved", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "ledger_unavailable", body = ErrorBody),
    ))]
pub async fn set_stock(
    State(s): State<Shared>,
    path: Segments,
    SellerBody { seller, body }: SellerBody,
) -> ApiResult<Json<CellBody>> {
    let (sku, warehouse) = path.two()?;
    limits::check_name("sku", &sku)?;
    limits::check_name("warehouse", &warehouse)?;
    let on_hand = set_stock_body(&body)?;
    let ledger = s.ledger.clone();
    let level = blocking(move || {
        ledger
            .set_stock(&sku, &warehouse, on_hand, Source::Seller(&seller))
            .map(|l| CellBody::of(&sku, &warehouse, l))
    })
    .await?;
    Ok(Json(level))
}

/// The set-stock body as `set_stock` reads and checks it: the new on_hand. Public for the
/// fuzz target (`fuzz::fuzz_parse_set_stock`).
#[doc(hidden)]
pub fn set_stock_body(body: &[u8]) -> Result<u64, ApiError> {
    let req: SetStockRequest = parse(body)?;
    limits::check_on_hand("on_hand", req.on_hand)?;
    Ok(req.on_hand)
}

/// The adjust body as `adjust_stock` reads and checks it.
#[doc(hidden)]
pub fn adjust_body(body: &[u8]) -> Result<AdjustStockRequest, ApiError> {
    let req: AdjustStockRequest = parse(body)?;
    limits::check_delta(req.delta)?;
    limits::check_key("adjustment_id", &req.adjustment_id)?;
    limits::check_reason(req.reason.as_deref())?;
    Ok(req)
}

/// Adjust a cell's on_hand by a delta, idempotent by adjustment_id per seller.
#[utoipa::path(post, path = "/v1/partner/stock/{sku}/{warehouse}/adjust", tag = "partner",
    params(
        ("sku" = String, Path, description = "1..=64 bytes of [A-Za-z0-9._:-]"),
        ("warehouse" = String, Path, description = "1..=64 bytes of [A-Za-z0-9._:-]"),
    ),
    request_body = AdjustStockRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cell (also for a replay, which applies nothing)", body = CellBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: another seller owns the sku", body = ErrorBody),
        (status = 409, description = "below_reserved or adjustment_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "ledger_unavailable", body = ErrorBody),
    ))]
pub async fn adjust_stock(
    State(s): State<Shared>,
    path: Segments,
    SellerBody { seller, body }: SellerBody,
) -> ApiResult<Json<CellBody>> {
    let (sku, warehouse) = path.two()?;
    limits::check_name("sku", &sku)?;
    limits::check_name("warehouse", &warehouse)?;
    let req = adjust_body(&body)?;
    let ledger = s.ledger.clone();
    let level = blocking(move || {
        ledger
            .adjust_stock(
                &sku,
                &warehouse,
                req.delta,
                &req.adjustment_id,
                req.reason.as_deref(),
                Source::Seller(&seller),
            )
            .map(|l| CellBody::of(&sku, &warehouse, l))
    })
    .await?;
    Ok(Json(level))
}
