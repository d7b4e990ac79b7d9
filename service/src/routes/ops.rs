//! Operations: liveness, readiness, metrics, the OpenAPI document, admin checkpoint.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::AdminOnly;
use crate::errors::{ApiError, ApiResult};
use crate::metrics as m;
use crate::model::*;
use crate::state::{blocking, Shared};

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "The process serves", body = HealthBody)))]
pub async fn healthz() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
    })
}

/// Readiness: 503 once the log failed and the ledger refuses writes.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "The ledger accepts writes", body = ReadyBody),
        (status = 503, description = "ledger_unavailable", body = ErrorBody),
    ))]
pub async fn readyz(State(s): State<Shared>) -> Result<Json<ReadyBody>, ApiError> {
    let lag = s.outbox_lag();
    let last_seq = s.ledger.last_seq();
    match s.ledger.unavailable_reason() {
        None => Ok(Json(ReadyBody {
            status: "ready".into(),
            last_seq,
            outbox_lag: lag,
        })),
        Some(why) => Err(ApiError::unavailable(why)
            .with("last_seq", json!(last_seq))
            .with("outbox_lag", json!(lag))),
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String)))]
pub async fn metrics(State(s): State<Shared>) -> Response {
    m::outbox_lag(s.outbox_lag());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// Write a snapshot now.
#[utoipa::path(post, path = "/v1/admin/checkpoint", tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The last seq in the snapshot", body = CheckpointBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 503, description = "ledger_unavailable", body = ErrorBody),
    ))]
pub async fn checkpoint(
    State(s): State<Shared>,
    _admin: AdminOnly,
) -> ApiResult<Json<CheckpointBody>> {
    let ledger = s.ledger.clone();
    let seq = blocking(move || ledger.checkpoint()).await?;
    Ok(Json(CheckpointBody { seq }))
}

pub async fn not_found() -> Response {
    let started = std::time::Instant::now();
    let r = ApiError::not_found().into_response();
    m::record(
        "unmatched",
        StatusCode::NOT_FOUND.as_u16(),
        started.elapsed(),
    );
    r
}

pub async fn method_not_allowed() -> Response {
    let started = std::time::Instant::now();
    let r = ApiError::method_not_allowed().into_response();
    m::record(
        "unmatched",
        StatusCode::METHOD_NOT_ALLOWED.as_u16(),
        started.elapsed(),
    );
    r
}
