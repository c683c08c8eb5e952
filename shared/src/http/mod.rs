//! The HTTP API as an axum [`Router`]: served by the `api` Lambda through `lambda_http`, and mounted at the root of
//! the local harness, so both run this exact code.
//!
//! - `GET /health`, `GET /openapi.json`: public.
//! - `/`, `/admin`, `/docs` and their assets, `POST /dev/token`, and the operator's read routes under `/internal`
//!   ([`console`]).
//! - `/internal/*` ([`internal`]): platform services, authenticated by `x-api-key`.
//! - `/rooms/*`, `/me*` (including `/me/notifications`), `/messages/read` ([`client`]): end users, authenticated by
//!   the same JWT as the socket.
//!
//! Every answer that is not a success is the envelope of [`errors`], including axum's own rejections, unknown
//! routes and wrong methods. The OpenAPI document ([`openapi`]) is generated from the handlers and types here.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;

use crate::auth::{AuthError, Identity};
use crate::handlers::Deps;
use crate::protocol::ErrorCode;

pub mod client;
pub mod console;
pub mod errors;
pub mod internal;
pub mod openapi;

pub use errors::{ApiError, ErrorEnvelope};

/// The header internal services authenticate with.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The whole HTTP API.
pub fn router(deps: Arc<Deps>) -> Router {
    let internal = Router::new()
        .route("/internal/emit", post(internal::emit).layer(DefaultBodyLimit::max(deps.config.limits.max_emit_bytes)))
        .route("/internal/rooms/{room}/members", put(internal::grant).delete(internal::revoke))
        .route("/internal/rooms/{room}", get(internal::room_info))
        .route("/internal/connections/{id}", delete(internal::force_disconnect))
        .merge(console::admin_routes())
        .route_layer(axum::middleware::from_fn_with_state(deps.clone(), require_api_key));
    let client = Router::new()
        .route("/rooms/{room}/messages", get(client::history))
        .route("/me/conversations", get(client::conversations))
        .route("/me/notifications", get(client::notifications))
        .route("/me/notifications/read", post(client::read_notifications))
        .route("/messages/read", post(client::mark_read))
        .route("/me", get(client::me));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::serve))
        .merge(internal)
        .merge(client)
        .merge(console::pages())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors(&deps.config.cors_origins))
        // The default span logs the raw URI, and browsers send `?token=`: log it redacted.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let uri = crate::telemetry::redacted_uri(request.uri());
            tracing::debug_span!("request", method = %request.method(), %uri, version = ?request.version())
        }))
        .with_state(deps)
}

/// `/health` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "healthy")]
    pub status: &'static str,
    pub stats: HealthStats,
}

/// Counters kept by the store; `uptime_seconds` is this process's.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStats {
    pub active_connections: u64,
    pub active_rooms: u64,
    pub total_connections: u64,
    pub total_messages: u64,
    pub uptime_seconds: u64,
}

/// Liveness and counters. Answers 503 when the store cannot be read.
#[utoipa::path(get, path = "/health", tag = "public", responses(
    (status = 200, description = "healthy", body = Health),
    (status = 503, description = "the store is unreachable", body = ErrorEnvelope),
))]
pub async fn health(State(deps): State<Arc<Deps>>) -> Result<axum::Json<Health>, ApiError> {
    let stats = deps.store.stats().await.map_err(|error| {
        tracing::error!(error = %error, source = ?std::error::Error::source(&error), "health check failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "the store is unreachable")
    })?;
    let uptime = (chrono::Utc::now() - deps.started_at).num_seconds().max(0) as u64;
    Ok(axum::Json(Health {
        status: "healthy",
        stats: HealthStats {
            active_connections: stats.active_connections,
            active_rooms: stats.active_rooms,
            total_connections: stats.total_connections,
            total_messages: stats.total_messages,
            uptime_seconds: uptime,
        },
    }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed, "method not allowed on this route")
}

/// Rejects internal requests without the right `x-api-key` before their body is read.
///
/// Both keys are hashed first and the digests compared in constant time: the comparison then takes the same time
/// whatever the presented key's length or common prefix, so timing reveals nothing about the configured key.
async fn require_api_key(State(deps): State<Arc<Deps>>, request: Request, next: Next) -> Response {
    let presented = request.headers().get(API_KEY_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    let expected = deps.config.internal_api_key.expose_secret().as_bytes();
    let matches = !presented.is_empty() && bool::from(Sha256::digest(presented).ct_eq(&Sha256::digest(expected)));
    if matches { next.run(request).await } else { ApiError::forbidden("invalid or missing x-api-key").into_response() }
}

/// The caller of a client route, authenticated by `Authorization: Bearer <jwt>` with the socket's rules.
pub struct Bearer(pub Identity);

impl FromRequestParts<Arc<Deps>> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, deps: &Arc<Deps>) -> Result<Self, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).unwrap_or("");
        if token.trim().is_empty() {
            return Err(AuthError::Missing.into());
        }
        Ok(Bearer(deps.verifier.verify(token)?))
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, HeaderName::from_static(API_KEY_HEADER)]);
    if origins.is_empty() {
        return layer.allow_origin(Any);
    }
    let parsed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| match HeaderValue::from_str(origin) {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(origin = %origin, "ignoring an unusable CORS origin");
                None
            }
        })
        .collect();
    layer.allow_origin(AllowOrigin::list(parsed))
}
