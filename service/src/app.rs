//! The router: every route of http-api.md, contract-shaped fallbacks, limits, metrics, and
//! the OpenAPI document generated from the handlers.

use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::{middleware, Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::json::BODY_LIMIT;
use crate::metrics as m;
use crate::routes::{events, ops, partner, payments, storefront};
use crate::state::Shared;

#[derive(OpenApi)]
#[openapi(
    info(title = "stockledgerd", description = "Inventory reservation service (http-api.md v1)"),
    modifiers(&Security),
    tags(
        (name = "storefront", description = "Reservations and stock reads"),
        (name = "partner", description = "Seller stock updates (bearer token per seller)"),
        (name = "payments", description = "Payment provider callback (HMAC-signed)"),
        (name = "events", description = "Durable event stream"),
        (name = "ops", description = "Health, readiness, metrics, admin"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The API routes and their OpenAPI document.
pub fn api() -> (Router<Shared>, OpenApiDoc) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(storefront::reserve))
        .routes(routes!(storefront::get_reservation, storefront::release))
        .routes(routes!(storefront::stock))
        .routes(routes!(storefront::query))
        .routes(routes!(partner::set_stock))
        .routes(routes!(partner::adjust_stock))
        .routes(routes!(payments::callback))
        .routes(routes!(events::events))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::checkpoint))
        .routes(routes!(openapi_json))
        .split_for_parts()
}

/// The OpenAPI 3 document of this service.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
async fn openapi_json(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(s.openapi.clone())
}

/// The served document, as JSON.
pub fn openapi() -> serde_json::Value {
    serde_json::to_value(api().1).unwrap_or_default()
}

pub fn router(state: Shared) -> Router {
    api()
        .0
        .merge(crate::ui::routes())
        .route_layer(middleware::from_fn(m::track))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
