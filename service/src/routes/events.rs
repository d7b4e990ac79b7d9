//! The durable event stream, readable without Kafka.

use axum::extract::{RawQuery, State};
use axum::Json;

use crate::errors::{ApiError, ApiResult};
use crate::model::*;
use crate::state::{blocking, Shared};

/// Events with `seq > after`, at most `limit`.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("after" = Option<u64>, Query, description = "Return events with seq > after (default 0)"),
        ("limit" = Option<u64>, Query, description = "1..=1000, default 100"),
    ),
    responses(
        (status = 200, description = "A page of events", body = EventsBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 410, description = "events_pruned: the events after `after` are no longer retained; `oldest_seq` is the first still readable", body = ErrorBody),
    ))]
pub async fn events(State(s): State<Shared>, RawQuery(q): RawQuery) -> ApiResult<Json<EventsBody>> {
    let mut after: u64 = 0;
    let mut limit: u64 = 100;
    for pair in q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "after" => {
                after = int(v).filter(|a| *a < 1 << 53).ok_or_else(|| {
                    ApiError::invalid("after", "must be an integer between 0 and 2^53-1")
                })?
            }
            "limit" => {
                limit = int(v).filter(|l| (1..=1000).contains(l)).ok_or_else(|| {
                    ApiError::invalid("limit", "must be an integer between 1 and 1000")
                })?
            }
            _ => {}
        }
    }
    let ledger = s.ledger.clone();
    let list = blocking(move || ledger.events(after, limit as usize)).await?;
    let next = list.last().map(|e| e.seq).unwrap_or(after);
    Ok(Json(EventsBody {
        events: list.iter().map(|e| e.to_json()).collect(),
        next,
    }))
}

fn int(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}
