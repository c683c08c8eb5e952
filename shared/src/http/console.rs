//! The browser pages Bellhop serves itself, and the routes only they need.
//!
//! - `GET /` (the developer console), `GET /admin` (the operator's view), `GET /docs` (this API's OpenAPI document in
//!   Swagger UI, and the WebSocket protocol) and `GET /assets/{file}`: static files built from `clients/console` and
//!   embedded here with `include_bytes!`, so the harness and the `api` Lambda serve the same bytes and a fresh
//!   `cargo build` needs no Node. Every page is sent with a Content-Security-Policy that lets it load nothing from
//!   another origin, which is also what keeps it usable in a private network.
//! - `GET /docs/protocol.json`: the WebSocket protocol (actions, events, error codes and every type) rendered from the
//!   same Rust types the TypeScript SDK's types are generated from ([`crate::protocol::typescript`]).
//! - `POST /dev/token`: mints a development token, only while the public development JWT secret is in use.
//! - `GET /internal/users/{user}/connections`, `GET /internal/connections/{id}`, `GET /internal/rooms` (the active
//!   rooms), `GET /internal/rooms/{room}/…`: the operator's read routes, behind `x-api-key`. Each list pages, and each reads the store by key (a DynamoDB
//!   `Query` or `GetItem`), never by `Scan`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::errors::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorEnvelope};
use crate::auth::{Claims, mint_token};
use crate::config::{Config, DEV_INTERNAL_API_KEY, DEV_JWT_SECRET};
use crate::handlers::Deps;
use crate::handlers::chat::history_entry;
use crate::ids::{ConnectionId, UserId};
use crate::protocol::payloads::HistoryPage;
use crate::protocol::{ErrorCode, typescript};
use crate::rooms::RoomName;
use crate::store::{ConnectionRecord, HistoryQuery, StoreError};

/// One embedded file: its URL path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/console/dist/", $file)),
        }
    };
}

/// Every file the pages need. `clients/console/scripts/build.mjs` writes them; `npm run check` there fails when
/// they differ from a fresh build of their sources.
static ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/admin", "admin.html", "text/html; charset=utf-8"),
    asset!("/docs", "docs.html", "text/html; charset=utf-8"),
    asset!("/assets/console.js", "console.js", "text/javascript; charset=utf-8"),
    asset!("/assets/admin.js", "admin.js", "text/javascript; charset=utf-8"),
    asset!("/assets/docs.js", "docs.js", "text/javascript; charset=utf-8"),
    asset!("/assets/app.css", "app.css", "text/css; charset=utf-8"),
    asset!("/assets/swagger-ui-bundle.js", "vendor/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    asset!("/assets/swagger-ui.css", "vendor/swagger-ui.css", "text/css; charset=utf-8"),
    asset!("/assets/swagger-ui.LICENSE.txt", "vendor/swagger-ui.LICENSE.txt", "text/plain; charset=utf-8"),
];

/// Nothing may be loaded from, or sent to, another origin except the WebSocket API, which is on another host in
/// the cloud. Swagger UI sets inline styles, hence `'unsafe-inline'` for styles only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

/// The pages' routes, public: the pages hold no data until a token or the API key is given to them.
pub fn pages() -> Router<Arc<Deps>> {
    let mut router = Router::new();
    for asset in ASSETS {
        router = router.route(asset.path, get(move |headers: HeaderMap| async move { serve_asset(asset, &headers) }));
    }
    router.route("/docs/protocol.json", get(protocol)).route("/dev/token", post(dev_token))
}

/// The operator's read routes; [`super::router`] puts them behind `x-api-key` with the other internal routes.
pub fn admin_routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/internal/users/{user}/connections", get(user_connections))
        .route("/internal/connections/{id}", get(connection))
        .route("/internal/rooms", get(active_rooms))
        .route("/internal/rooms/{room}/connections", get(room_connections))
        .route("/internal/rooms/{room}/grants", get(room_grants))
        .route("/internal/rooms/{room}/events", get(room_events))
}

fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                (a.path, format!("\"{hex}\""))
            })
            .collect()
    });
    tags.get(asset.path).map_or("", String::as_str)
}

/// Answers an embedded file. Browsers revalidate every time (`no-cache`) and get a 304 while the bytes are the
/// same, so a new deployment is picked up at once and an unchanged 1.7 MB viewer is not sent again.
fn serve_asset(asset: &Asset, headers: &HeaderMap) -> Response {
    let tag = etag(asset);
    let mut response = if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let response_headers = response.headers_mut();
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response_headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(tag) {
        response_headers.insert(header::ETAG, value);
    }
    if asset.content_type.starts_with("text/html") {
        response_headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        response_headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}

// ---- the WebSocket protocol reference --------------------------------------------------------------------------

/// The WebSocket protocol, from the Rust types: what `/docs` shows beside the HTTP API.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolReference {
    pub actions: Vec<ActionReference>,
    pub events: Vec<EventReference>,
    /// Every stable error code a `type: "ack"` frame with `ok: false`, or an `error` event, may carry.
    pub error_codes: Vec<String>,
    /// Every type the actions and events refer to, as the TypeScript declaration the SDK is typed with (the Rust
    /// doc comments included).
    pub types: Vec<TypeReference>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionReference {
    #[schema(example = "message:send")]
    pub name: String,
    /// The type of the frame's `data`; `undefined` when the action takes none.
    pub request: String,
    /// The type of the ack's `data`.
    pub ack: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventReference {
    #[schema(example = "message:new")]
    pub name: String,
    /// The type of the event's `data`.
    pub data: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TypeReference {
    pub name: String,
    pub declaration: String,
}

/// Builds the reference. Type names are read back from the generated declarations (`export type Name = …`), the
/// form ts-rs gives every type, so nothing is listed twice by hand.
pub fn protocol_reference() -> ProtocolReference {
    let actions = crate::protocol::Action::ALL
        .into_iter()
        .map(|action| {
            let (request, ack) = typescript::action_types(action);
            ActionReference { name: action.as_str().to_owned(), request, ack }
        })
        .collect();
    let events = typescript::event_types()
        .into_iter()
        .map(|(name, data)| EventReference { name: name.to_owned(), data })
        .collect();
    let types = typescript::declarations()
        .into_iter()
        .filter_map(|declaration| {
            let rest = declaration.strip_prefix("export type ")?;
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            (!name.is_empty()).then_some(TypeReference { name, declaration })
        })
        .collect();
    ProtocolReference { actions, events, error_codes: error_codes(), types }
}

/// The codes, in the order they are declared, from the enum's own serialization.
fn error_codes() -> Vec<String> {
    typescript::declarations()
        .into_iter()
        .find_map(|d| d.strip_prefix("export type ErrorCode = ").map(str::to_owned))
        .map(|union| {
            union
                .split('|')
                .map(|code| code.trim().trim_end_matches(';').trim_matches('"').to_owned())
                .filter(|code| !code.is_empty())
                .collect()
        })
        .unwrap_or_else(|| vec![ErrorCode::Internal.as_str().to_owned()])
}

/// The WebSocket protocol: actions, events, error codes and every type, from the Rust types.
#[utoipa::path(get, path = "/docs/protocol.json", tag = "public",
    responses((status = 200, description = "the protocol reference", body = ProtocolReference)))]
pub async fn protocol() -> Json<&'static ProtocolReference> {
    static REFERENCE: OnceLock<ProtocolReference> = OnceLock::new();
    Json(REFERENCE.get_or_init(protocol_reference))
}

// ---- development tokens ----------------------------------------------------------------------------------------

/// Whether this process signs with the public development JWT secret, the one condition under which anyone may be
/// handed a token: with that secret anyone can already mint one, so the route gives nothing away. Narrower than
/// `HarnessSettings::dev_secrets`, which also holds when only the API key is the public one: a real JWT secret must
/// never sign a token for whoever asks.
pub fn dev_tokens_enabled(config: &Config) -> bool {
    config.jwt.secret.expose_secret() == DEV_JWT_SECRET
}

/// Longest lifetime of a development token, in seconds.
pub const MAX_DEV_TOKEN_TTL: i64 = 24 * 3600;

/// Who the development token is for; the claims a platform backend would put in its JWT.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevTokenRequest {
    #[schema(example = "client-17")]
    pub sub: String,
    #[schema(example = "customer")]
    pub role: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// Rooms the token grants, e.g. `booking:42`.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Lifetime in seconds, 1 to 86 400 (default 3 600).
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevToken {
    pub token: String,
    pub expires_at: String,
    /// The internal API key, when it is the public development one too (so the console's emit panel needs nothing
    /// typed); absent otherwise.
    pub internal_api_key: Option<String>,
    pub warning: String,
}

/// Mints a development token. Exists only while the public development JWT secret is in use (the harness without
/// `JWT_SECRET`); answers 404 `DEV_TOKENS_DISABLED` otherwise.
#[utoipa::path(post, path = "/dev/token", tag = "development",
    request_body = DevTokenRequest,
    responses(
        (status = 200, body = DevToken),
        (status = 400, description = "INVALID_USER, INVALID_ROOM, INVALID_DATA", body = ErrorEnvelope),
        (status = 404, description = "DEV_TOKENS_DISABLED: a real JWT_SECRET is configured", body = ErrorEnvelope),
    ))]
pub async fn dev_token(
    State(deps): State<Arc<Deps>>,
    ApiJson(body): ApiJson<DevTokenRequest>,
) -> Result<Json<DevToken>, ApiError> {
    if !dev_tokens_enabled(&deps.config) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::DevTokensDisabled,
            "development tokens are minted only while the public development JWT secret is in use; this hub has \
             JWT_SECRET set, so tokens come from the platform backend",
        ));
    }
    let user = UserId::parse(body.sub.clone())
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidUser, format!("invalid user id `{}`: {e}", body.sub)))?;
    let mut rooms = Vec::with_capacity(body.rooms.len());
    for room in body.rooms {
        rooms.push(RoomName::parse(room)?.to_string());
    }
    let ttl = body.ttl_seconds.unwrap_or(3600);
    if !(1..=MAX_DEV_TOKEN_TTL).contains(&ttl) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidData,
            format!("ttlSeconds must be 1 to {MAX_DEV_TOKEN_TTL}"),
        ));
    }
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let claims = Claims {
        role: nonempty(body.role),
        name: nonempty(body.name),
        email: nonempty(body.email),
        rooms: (!rooms.is_empty()).then_some(rooms),
        ..Claims::for_subject(user.to_string(), ttl, &deps.config.jwt)
    };
    let token = mint_token(&deps.config.jwt.secret, &claims).map_err(|e| ApiError::internal(&e))?;
    let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default().to_rfc3339();
    let dev_key = deps.config.internal_api_key.expose_secret() == DEV_INTERNAL_API_KEY;
    Ok(Json(DevToken {
        token,
        expires_at,
        internal_api_key: dev_key.then(|| DEV_INTERNAL_API_KEY.to_owned()),
        warning: "This hub uses the PUBLIC development JWT secret: anyone can mint tokens for it. Set JWT_SECRET \
                  (and INTERNAL_API_KEY) for real use; this route then disappears."
            .to_owned(),
    }))
}

// ---- the operator's read routes --------------------------------------------------------------------------------

/// One page of a list ordered by key: give the previous page's `next` as `after`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Start after this key (the previous page's `next`).
    pub after: Option<String>,
    /// Page size, 1 to the configured maximum (default 50).
    pub limit: Option<u32>,
}

/// Orders `items` by `key` and cuts the page after `params.after`. The lists paged this way are read whole by one
/// keyed store request and are bounded or small by nature (a user's connections, a room's grants), so the page
/// bounds the answer, not the read; a room's live connections, which are not, page in the store instead.
fn page_of<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    params: &PageParams,
    max: u32,
) -> (Vec<T>, Option<String>) {
    let limit = params.limit.unwrap_or(50).clamp(1, max.max(1)) as usize;
    items.sort_by_key(|item| key(item));
    let start = match &params.after {
        Some(after) => items.iter().position(|item| key(item) > *after).unwrap_or(items.len()),
        None => 0,
    };
    let mut page: Vec<T> = items.into_iter().skip(start).collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let next = if more { page.last().map(&key) } else { None };
    (page, next)
}

/// A live connection as the operator sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    pub connection_id: String,
    pub user_id: String,
    pub role: Option<String>,
    pub name: Option<String>,
    pub connected_at: String,
    /// When the record lapses even without a `$disconnect` (API Gateway's two-hour cap and a margin).
    pub expires_at: String,
    /// Every room it is in; at most the per-connection room limit.
    pub rooms: Vec<String>,
    /// When its last frame was admitted; null when it sent none yet (or the inbound rate limit is off, since that
    /// write is what records it).
    pub last_activity: Option<String>,
}

async fn view(deps: &Deps, record: ConnectionRecord) -> Result<ConnectionView, ApiError> {
    let (rooms, last_activity) = futures::try_join!(
        deps.store.connection_rooms(&record.connection_id),
        deps.store.connection_activity(&record.connection_id),
    )?;
    let mut rooms: Vec<String> = rooms.iter().map(ToString::to_string).collect();
    rooms.sort();
    Ok(ConnectionView {
        connection_id: record.connection_id.to_string(),
        user_id: record.user_id.to_string(),
        role: record.role,
        name: record.name,
        connected_at: record.connected_at.to_rfc3339(),
        expires_at: record.expires_at.to_rfc3339(),
        rooms,
        last_activity: last_activity.map(|at| at.to_rfc3339()),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionPage {
    pub items: Vec<ConnectionView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// A user's live connections, with their rooms.
#[utoipa::path(get, path = "/internal/users/{user}/connections", tag = "internal", security(("api_key" = [])),
    params(("user" = String, Path, description = "a user id (the token's `sub`)"), PageParams),
    responses(
        (status = 200, body = ConnectionPage),
        (status = 400, description = "INVALID_USER, INVALID_QUERY", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
pub async fn user_connections(
    State(deps): State<Arc<Deps>>,
    ApiPath(user): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ConnectionPage>, ApiError> {
    let user = UserId::parse(user.clone())
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidUser, format!("invalid user id `{user}`: {e}")))?;
    let records = deps.store.user_connections(&user).await?;
    let (records, next) = page_of(records, |r| r.connection_id.to_string(), &params, deps.config.limits.max_page);
    let mut items = Vec::with_capacity(records.len());
    for record in records {
        items.push(view(&deps, record).await?);
    }
    Ok(Json(ConnectionPage { items, next }))
}

/// One live connection, with its rooms.
#[utoipa::path(get, path = "/internal/connections/{id}", tag = "internal", security(("api_key" = [])),
    params(("id" = String, Path, description = "an API Gateway connection id")),
    responses(
        (status = 200, body = ConnectionView),
        (status = 400, description = "INVALID_CONNECTION", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, description = "unknown connection", body = ErrorEnvelope),
    ))]
pub async fn connection(
    State(deps): State<Arc<Deps>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    let id = ConnectionId::parse(id)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidConnection, format!("invalid connection id: {e}")))?;
    let record = deps
        .store
        .get_connection(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("connection {id} not found")))?;
    Ok(Json(view(&deps, record).await?))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomConnection {
    pub connection_id: String,
    pub user_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomConnectionPage {
    pub items: Vec<RoomConnection>,
    pub next: Option<String>,
}

/// The live connections in a room, in connection id order; `after` is the previous page's opaque `next`.
#[utoipa::path(get, path = "/internal/rooms/{room}/connections", tag = "internal", security(("api_key" = [])),
    params(("room" = String, Path, description = "any room name"), PageParams),
    responses(
        (status = 200, body = RoomConnectionPage),
        (status = 400, description = "INVALID_ROOM, INVALID_QUERY, INVALID_CURSOR", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
pub async fn room_connections(
    State(deps): State<Arc<Deps>>,
    ApiPath(room): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<RoomConnectionPage>, ApiError> {
    let room = RoomName::parse(room)?;
    let limit = params.limit.unwrap_or(50).clamp(1, deps.config.limits.max_page);
    // A room can hold any number of connections: this listing pages in the store, one keyed read per page.
    let page = deps.store.room_members_page(&room, params.after.as_deref(), limit).await.map_err(cursor_error)?;
    let next = page.next;
    let items = page
        .items
        .into_iter()
        .map(|m| RoomConnection { connection_id: m.connection_id.to_string(), user_id: m.user_id.to_string() })
        .collect();
    Ok(Json(RoomConnectionPage { items, next }))
}

/// A room with at least one live connection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveRoomView {
    pub room: String,
    /// Live connections in the room.
    pub members: u64,
    /// The `seq` of its last durable event; 0 when nothing was stored in it yet.
    pub last_seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveRoomPage {
    pub items: Vec<ActiveRoomView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// The rooms with at least one live connection, with their member counts and last `seq`. The order is stable but
/// the store's: by room name on SQLite, by index shard and then room name on DynamoDB. `after` is the previous
/// page's opaque `next`. A page is keyed reads only (on DynamoDB one Query per index shard it visits and a
/// BatchGetItem of the listed rooms' counters), never a scan of every room.
#[utoipa::path(get, path = "/internal/rooms", tag = "internal", security(("api_key" = [])),
    params(PageParams),
    responses(
        (status = 200, body = ActiveRoomPage),
        (status = 400, description = "INVALID_QUERY, INVALID_CURSOR", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
pub async fn active_rooms(
    State(deps): State<Arc<Deps>>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ActiveRoomPage>, ApiError> {
    let limit = params.limit.unwrap_or(50).clamp(1, deps.config.limits.max_page);
    let page = deps.store.active_rooms_page(params.after.as_deref(), limit).await.map_err(cursor_error)?;
    let items = page
        .items
        .into_iter()
        .map(|r| ActiveRoomView { room: r.room.to_string(), members: r.members, last_seq: r.last_seq })
        .collect();
    Ok(Json(ActiveRoomPage { items, next: page.next }))
}

/// An unknown cursor is the caller's mistake; anything else the store says is not.
fn cursor_error(error: StoreError) -> ApiError {
    match error {
        StoreError::InvalidCursor => {
            ApiError::bad_request(ErrorCode::InvalidCursor, "`after` is not a cursor this listing gave out")
        }
        other => other.into(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<String>,
    pub next: Option<String>,
}

/// The users granted a room.
#[utoipa::path(get, path = "/internal/rooms/{room}/grants", tag = "internal", security(("api_key" = [])),
    params(("room" = String, Path, description = "a granted room, e.g. booking:42"), PageParams),
    responses((status = 200, body = UserPage), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn room_grants(
    State(deps): State<Arc<Deps>>,
    ApiPath(room): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<UserPage>, ApiError> {
    let room = RoomName::parse(room)?;
    let users: Vec<String> = deps.store.room_grants(&room).await?.iter().map(ToString::to_string).collect();
    let (items, next) = page_of(users, Clone::clone, &params, deps.config.limits.max_page);
    Ok(Json(UserPage { items, next }))
}

/// Paging backwards through a room's events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Events with a smaller `seq` (the previous page's first `seq`); absent for the newest.
    pub before: Option<u64>,
    /// Page size, 1 to the configured maximum (default 20).
    pub limit: Option<u32>,
}

/// A room's latest durable events (messages and persisted emits), newest page first, whoever may join the room.
#[utoipa::path(get, path = "/internal/rooms/{room}/events", tag = "internal", security(("api_key" = [])),
    params(("room" = String, Path, description = "any room name"), EventParams),
    responses((status = 200, body = HistoryPage), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn room_events(
    State(deps): State<Arc<Deps>>,
    ApiPath(room): ApiPath<String>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<HistoryPage>, ApiError> {
    let room = RoomName::parse(room)?;
    let limit = params.limit.unwrap_or(20).clamp(1, deps.config.limits.max_page);
    // One more than asked tells whether an older page exists.
    let query = match params.before {
        Some(before) => HistoryQuery::Before { before, limit: limit + 1 },
        None => HistoryQuery::Latest { limit: limit + 1 },
    };
    let mut events = deps.store.history(&room, query).await?;
    let has_more = events.len() > limit as usize;
    if has_more {
        // Ascending order: the surplus one is the oldest.
        events.remove(0);
    }
    Ok(Json(HistoryPage { room, events: events.iter().map(history_entry).collect(), has_more }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(after: Option<&str>, limit: u32) -> PageParams {
        PageParams { after: after.map(str::to_owned), limit: Some(limit) }
    }

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let items: Vec<String> = ["d", "a", "c", "b", "e"].iter().map(|s| (*s).to_owned()).collect();
        let (first, next) = page_of(items.clone(), Clone::clone, &params(None, 2), 100);
        assert_eq!((first, next.clone()), (vec!["a".to_owned(), "b".to_owned()], Some("b".to_owned())));
        let (second, next) = page_of(items.clone(), Clone::clone, &params(next.as_deref(), 2), 100);
        assert_eq!((second, next.clone()), (vec!["c".to_owned(), "d".to_owned()], Some("d".to_owned())));
        let (last, next) = page_of(items, Clone::clone, &params(next.as_deref(), 2), 100);
        assert_eq!((last, next), (vec!["e".to_owned()], None));
    }

    #[test]
    fn the_page_size_is_bounded_by_the_configured_maximum() {
        let items: Vec<String> = (0..10).map(|i| format!("{i:02}")).collect();
        let (page, next) = page_of(items, Clone::clone, &params(None, 500), 4);
        assert_eq!(page.len(), 4);
        assert_eq!(next.as_deref(), Some("03"));
    }

    #[test]
    fn the_protocol_reference_covers_every_action_event_and_error_code() {
        let reference = protocol_reference();
        assert_eq!(reference.actions.len(), crate::protocol::Action::ALL.len());
        assert!(reference.events.iter().any(|e| e.name == "message:new" && e.data == "ChatMessage"));
        assert!(reference.error_codes.contains(&"RATE_LIMITED".to_owned()), "{:?}", reference.error_codes);
        assert!(!reference.error_codes.iter().any(|c| c.contains('"') || c.contains(' ')));
        let declared: Vec<&str> = reference.types.iter().map(|t| t.name.as_str()).collect();
        for action in &reference.actions {
            for ty in [&action.request, &action.ack] {
                assert!(
                    ty == "undefined" || declared.contains(&ty.as_str()),
                    "{} refers to undeclared {ty}",
                    action.name
                );
            }
        }
        for event in &reference.events {
            assert!(declared.contains(&event.data.as_str()), "{} refers to undeclared {}", event.name, event.data);
        }
    }

    #[test]
    fn every_embedded_page_and_asset_is_present() {
        for asset in ASSETS {
            assert!(!asset.bytes.is_empty(), "{} is empty", asset.path);
            assert!(etag(asset).starts_with('"'), "{} has no etag", asset.path);
        }
    }

    #[test]
    fn dev_tokens_follow_the_jwt_secret() {
        assert!(dev_tokens_enabled(&Config::for_tests()));
        let real = Config::from_lookup(
            |name| match name {
                "JWT_SECRET" => Some("a-real-secret-that-is-long-enough-to-sign".to_owned()),
                "INTERNAL_API_KEY" => Some("a-real-key".to_owned()),
                _ => None,
            },
            false,
        )
        .expect("valid config");
        assert!(!dev_tokens_enabled(&real));
    }
}
