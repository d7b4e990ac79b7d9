//! Storefront gateway: reservations and stock reads (no auth).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use stockledger::{limits, Line, Reservation};

use crate::errors::{ApiError, ApiResult};
use crate::json::{parse, reply, RawBody, Segments};
use crate::metrics as m;
use crate::model::*;
use crate::state::{blocking, deferred, Shared};

/// The reservation body as `reserve` reads it: order id, lines, ttl (the default applied).
/// The ledger checks the fields' contents. Public for the fuzz target
/// (`fuzz::fuzz_parse_reserve`).
#[doc(hidden)]
pub fn reserve_body(body: &[u8]) -> Result<(String, Vec<Line>, u64), ApiError> {
    let req: ReserveRequest = parse(body)?;
    let lines: Vec<Line> = req
        .lines
        .into_iter()
        .map(|l| Line::new(l.sku, l.warehouse, l.qty))
        .collect();
    let ttl = req.ttl_seconds.unwrap_or(limits::DEFAULT_TTL_SECONDS);
    Ok((req.order_id, lines, ttl))
}

/// The stock query body as `query` reads and checks it: the skus, in request order.
#[doc(hidden)]
pub fn query_body(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let req: StockQueryRequest = parse(body)?;
    if req.skus.is_empty() || req.skus.len() > 1000 {
        return Err(ApiError::invalid("skus", "must hold 1 to 1000 entries"));
    }
    for (i, sku) in req.skus.iter().enumerate() {
        limits::check_name(&format!("skus[{i}]"), sku)?;
    }
    Ok(req.skus)
}

/// Reserve stock for an order (all lines or none).
#[utoipa::path(post, path = "/v1/reservations", tag = "storefront",
    request_body = ReserveRequest,
    responses(
        (status = 201, description = "Created", body = ReservationBody),
        (status = 200, description = "Idempotent replay: the reservation as it is now", body = ReservationBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 409, description = "insufficient_stock or order_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "ledger_unavailable, capacity_exhausted (names the limit), or overloaded (with Retry-After; nothing was done)", body = ErrorBody),
    ))]
pub async fn reserve(State(s): State<Shared>, RawBody(body): RawBody) -> ApiResult<Response> {
    let (order_id, lines, ttl) =
        reserve_body(&body).inspect_err(|_| m::reservation("invalid_request"))?;
    // Decided here, answered once durable: no thread hop, no read-back.
    let decided = deferred(&s.ledger, |l| l.reserve_deferred(&order_id, &lines, ttl));
    match m::timed_durable(decided).await {
        Ok(r) => {
            let (status, result) = if r.created {
                (StatusCode::CREATED, "created")
            } else {
                (StatusCode::OK, "replay")
            };
            m::reservation(result);
            reservation_reply(status, &r.reservation)
        }
        Err(e) => {
            m::reservation(e.code);
            Err(e)
        }
    }
}

/// Read a reservation.
#[utoipa::path(get, path = "/v1/reservations/{order_id}", tag = "storefront",
    params(("order_id" = String, Path, description = "1..=128 bytes of printable ASCII")),
    responses(
        (status = 200, description = "The reservation", body = ReservationBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
    ))]
pub async fn get_reservation(State(s): State<Shared>, path: Segments) -> ApiResult<Response> {
    let order_id = path.one()?;
    match s.ledger.reservation(&order_id)? {
        Some(r) => reservation_reply(StatusCode::OK, &r),
        None => Err(stockledger::Error::OrderNotFound { order_id }.into()),
    }
}

/// Release a reservation (the buyer cancels).
#[utoipa::path(delete, path = "/v1/reservations/{order_id}", tag = "storefront",
    params(("order_id" = String, Path, description = "1..=128 bytes of printable ASCII")),
    responses(
        (status = 200, description = "Released, or already released or expired (unchanged)", body = ReservationBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
        (status = 409, description = "order_paid", body = ErrorBody),
        (status = 503, description = "ledger_unavailable", body = ErrorBody),
    ))]
pub async fn release(State(s): State<Shared>, path: Segments) -> ApiResult<Response> {
    let order_id = path.one()?;
    let r = deferred(&s.ledger, |l| l.release_deferred(&order_id)).await?;
    reservation_reply(StatusCode::OK, &r)
}

/// A reservation as the answer body, written straight from the ledger's value.
fn reservation_reply(status: StatusCode, r: &Reservation) -> ApiResult<Response> {
    let body = ReservationJson(r);
    reply(status, &body, body.size_hint())
}

/// Stock of one sku over its warehouses.
#[utoipa::path(get, path = "/v1/stock/{sku}", tag = "storefront",
    params(("sku" = String, Path, description = "1..=64 bytes of [A-Za-z0-9._:-]")),
    responses(
        (status = 200, description = "The sku's stock", body = SkuStockBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 404, description = "sku_not_found", body = ErrorBody),
    ))]
pub async fn stock(State(s): State<Shared>, path: Segments) -> ApiResult<Json<SkuStockBody>> {
    let sku = path.one()?;
    match s.ledger.sku_stock(&sku)? {
        Some(st) => Ok(Json(SkuStockBody::of(&st))),
        None => Err(stockledger::Error::SkuNotFound { sku }.into()),
    }
}

/// Stock of many skus at once, in request order (unknown skus read as zeros).
#[utoipa::path(post, path = "/v1/stock/query", tag = "storefront",
    request_body = StockQueryRequest,
    responses(
        (status = 200, description = "One item per requested sku", body = StockQueryBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
    ))]
pub async fn query(
    State(s): State<Shared>,
    RawBody(body): RawBody,
) -> ApiResult<Json<StockQueryBody>> {
    let skus = query_body(&body)?;
    // Each distinct sku is looked up once (duplicates are allowed, and a sku may have
    // thousands of cells), off the async runtime.
    let ledger = s.ledger.clone();
    let items = blocking(move || {
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        let mut items: Vec<SkuStockBody> = Vec::with_capacity(skus.len());
        for sku in &skus {
            if let Some(&first) = seen.get(sku.as_str()) {
                let again = items[first].clone();
                items.push(again);
                continue;
            }
            seen.insert(sku, items.len());
            items.push(match ledger.sku_stock(sku)? {
                Some(st) => SkuStockBody::of(&st),
                None => SkuStockBody::empty(sku),
            });
        }
        Ok(items)
    })
    .await?;
    Ok(Json(StockQueryBody { items }))
}
