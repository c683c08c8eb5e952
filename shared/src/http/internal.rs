//! Routes for platform services, behind `x-api-key`: emit, room grants, room inspection, forced disconnects.
//!
//! Grants are what let a booking's client and business owner (and nobody else) join `booking:{id}`; revoking one
//! also removes that user's live connections from the room, so access ends at once rather than at reconnect.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::errors::{ApiError, ApiJson, ApiPath, ErrorEnvelope};
use crate::handlers::Deps;
use crate::handlers::delivery::{announce_user_left, prune};
use crate::handlers::emit::{self, EmitReport, EmitRequest};
use crate::ids::{ConnectionId, UserId};
use crate::protocol::ErrorCode;
use crate::push::PushError;
use crate::rooms::{RoomName, RoomRule};

/// Most users one grant or revoke may name.
pub const MAX_GRANT_USERS: usize = 1000;

/// Emits an event to rooms, users and connections. Same semantics as invoking the `emit` Lambda.
#[utoipa::path(post, path = "/internal/emit", tag = "internal", security(("api_key" = [])),
    request_body = EmitRequest,
    responses(
        (status = 200, description = "what was delivered", body = EmitReport),
        (status = 400, description = "invalid payload (MISSING_EVENT, INVALID_ROOM, INVALID_JSON…)", body = ErrorEnvelope),
        (status = 403, description = "missing or wrong x-api-key, or broadcast disabled", body = ErrorEnvelope),
        (status = 409, description = "the same idempotencyKey is still being processed", body = ErrorEnvelope),
        (status = 413, description = "payload larger than the limit", body = ErrorEnvelope),
    ))]
pub async fn emit(State(deps): State<Arc<Deps>>, ApiJson(body): ApiJson<Value>) -> Result<Json<EmitReport>, ApiError> {
    let request = emit::parse_request(body)?;
    Ok(Json(emit::handle(&deps, request).await?))
}

/// Users to grant a room to, or revoke it from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersRequest {
    #[schema(example = json!(["client-17", "business-3"]))]
    pub users: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembersResponse {
    pub room: String,
    /// Users granted (PUT) or revoked (DELETE).
    pub users: Vec<String>,
    /// Live connections removed from the room (DELETE only).
    pub removed_connections: usize,
}

/// Grants users a room such as `booking:{id}`, so they may join it.
#[utoipa::path(put, path = "/internal/rooms/{room}/members", tag = "internal", security(("api_key" = [])),
    params(("room" = String, Path, description = "a granted room, e.g. booking:42")),
    request_body = MembersRequest,
    responses(
        (status = 200, body = MembersResponse),
        (status = 400, description = "INVALID_ROOM, INVALID_USER, MISSING_USERS", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
pub async fn grant(
    State(deps): State<Arc<Deps>>,
    ApiPath(room): ApiPath<String>,
    ApiJson(body): ApiJson<MembersRequest>,
) -> Result<Json<MembersResponse>, ApiError> {
    let (room, users) = grant_target(&deps, room, body)?;
    deps.store.grant(&room, &users).await?;
    tracing::info!(room = %room, n_users = users.len(), "granted");
    Ok(Json(MembersResponse { room: room.to_string(), users: names(&users), removed_connections: 0 }))
}

/// Revokes users' grants and removes their live connections from the room; the room hears `room:userLeft`.
#[utoipa::path(delete, path = "/internal/rooms/{room}/members", tag = "internal", security(("api_key" = [])),
    params(("room" = String, Path, description = "a granted room, e.g. booking:42")),
    request_body = MembersRequest,
    responses(
        (status = 200, body = MembersResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
pub async fn revoke(
    State(deps): State<Arc<Deps>>,
    ApiPath(room): ApiPath<String>,
    ApiJson(body): ApiJson<MembersRequest>,
) -> Result<Json<MembersResponse>, ApiError> {
    let (room, users) = grant_target(&deps, room, body)?;
    deps.store.revoke(&room, &users).await?;
    let mut removed = 0;
    for user in &users {
        let mut removed_here = Vec::new();
        for connection in deps.store.user_connections(user).await? {
            if deps.store.leave_room(&connection.connection_id, &room).await? {
                removed_here.push(connection.connection_id);
            }
        }
        if removed_here.is_empty() {
            continue;
        }
        removed += removed_here.len();
        // The remaining members learn the user left; the user's own connections learn they were removed.
        announce_user_left(&deps, &room, user, Some("revoked"), removed_here).await?;
    }
    tracing::info!(room = %room, n_users = users.len(), removed, "revoked");
    Ok(Json(MembersResponse { room: room.to_string(), users: names(&users), removed_connections: removed }))
}

fn grant_target(deps: &Deps, room: String, body: MembersRequest) -> Result<(RoomName, Vec<UserId>), ApiError> {
    let room = RoomName::parse(room)?;
    let rule = deps.config.room_policy.rule_for(&room);
    if rule != RoomRule::Granted {
        // A grant on any other kind of room would be stored and never consulted: refuse it instead of pretending.
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRoom,
            format!("{room} is not a granted room; its access comes from its kind ({rule:?})"),
        ));
    }
    if body.users.is_empty() || body.users.len() > MAX_GRANT_USERS {
        return Err(ApiError::bad_request(
            ErrorCode::MissingUsers,
            format!("users must list 1 to {MAX_GRANT_USERS} user ids"),
        ));
    }
    let mut users = Vec::with_capacity(body.users.len());
    for raw in body.users {
        let user = UserId::parse(raw.clone())
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidUser, format!("invalid user id `{raw}`: {e}")))?;
        if !users.contains(&user) {
            users.push(user);
        }
    }
    Ok((room, users))
}

fn names(users: &[UserId]) -> Vec<String> {
    users.iter().map(ToString::to_string).collect()
}

/// Who may join a room and who is in it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    pub room: String,
    /// How the room decides access: self-only, pair, public, presence, auto-only or granted.
    #[schema(example = "granted")]
    pub rule: String,
    /// Users granted the room.
    pub members: Vec<String>,
    /// Live connections in the room.
    pub connections: usize,
    /// Distinct users with a live connection in the room.
    pub online_users: Vec<String>,
}

/// Inspects a room: its grants and its live connections.
#[utoipa::path(get, path = "/internal/rooms/{room}", tag = "internal", security(("api_key" = [])),
    params(("room" = String, Path, description = "any room name")),
    responses((status = 200, body = RoomInfo), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn room_info(
    State(deps): State<Arc<Deps>>,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<RoomInfo>, ApiError> {
    let room = RoomName::parse(room)?;
    let rule = serde_json::to_value(deps.config.room_policy.rule_for(&room))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let grants = deps.store.room_grants(&room).await?;
    let live = deps.store.room_members(&room).await?;
    let online: BTreeSet<String> = live.iter().map(|m| m.user_id.to_string()).collect();
    Ok(Json(RoomInfo {
        room: room.to_string(),
        rule,
        members: names(&grants),
        connections: live.len(),
        online_users: online.into_iter().collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisconnectResponse {
    pub connection_id: String,
    pub disconnected: bool,
    /// The Management API already considered it gone; its records were removed.
    pub was_stale: bool,
}

/// Closes a connection (close code 1000); API Gateway then fires `$disconnect`, which cleans up.
#[utoipa::path(delete, path = "/internal/connections/{id}", tag = "internal", security(("api_key" = [])),
    params(("id" = String, Path, description = "an API Gateway connection id")),
    responses(
        (status = 200, body = DisconnectResponse),
        (status = 400, description = "INVALID_CONNECTION", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, description = "unknown connection", body = ErrorEnvelope),
        (status = 502, description = "the Management API failed", body = ErrorEnvelope),
    ))]
pub async fn force_disconnect(
    State(deps): State<Arc<Deps>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DisconnectResponse>, ApiError> {
    let connection = ConnectionId::parse(id)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidConnection, format!("invalid connection id: {e}")))?;
    if deps.store.get_connection(&connection).await?.is_none() {
        return Err(ApiError::not_found(format!("connection {connection} not found")));
    }
    let was_stale = match deps.pusher.disconnect(&connection).await {
        Ok(()) => false,
        Err(PushError::Gone) => {
            prune(&deps, &connection).await;
            true
        }
        Err(error) => {
            tracing::error!(connection_id = %connection, error = %error, source = ?std::error::Error::source(&error), "force disconnect failed");
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::PushFailed,
                "the connection could not be closed; try again",
            ));
        }
    };
    tracing::info!(connection_id = %connection, was_stale, "forced disconnect");
    Ok(Json(DisconnectResponse { connection_id: connection.to_string(), disconnected: true, was_stale }))
}
