//! Routes for end users, authenticated by the same platform JWT as the socket (`Authorization: Bearer`): room
//! history, my conversations with unread counts, mark-read, my notifications, and who-am-I.
//!
//! Access to a room over HTTP follows the join rules of the socket exactly, so nothing readable here is out of
//! reach there, and the reverse. The notification routes call the very functions behind the socket's
//! `notification:list` and `notification:read`, so pages, limits and unread counts are the same on both.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::Bearer;
use super::errors::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorEnvelope};
use crate::auth::Identity;
use crate::handlers::chat::iso;
use crate::handlers::message::ActionError;
use crate::handlers::notifications;
use crate::handlers::{Deps, now_iso};
use crate::protocol::{ErrorCode, ServerFrame, events};
use crate::rooms::{Access, JoinFacts, RoomName};
use crate::store::{HistoryQuery, RoomEvent};

const DEFAULT_PAGE: u32 = 50;

/// Paging through a room's history. Give `before` or `after`, not both; neither means the newest events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Events with a smaller `seq` (paging backwards).
    pub before: Option<u64>,
    /// Events with a larger `seq` (recovering what was missed).
    pub after: Option<u64>,
    /// Page size, 1 to the configured maximum (default 50).
    pub limit: Option<u32>,
}

/// One stored room event.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub seq: u64,
    pub id: String,
    pub event: String,
    #[schema(value_type = Object)]
    pub data: Value,
    /// ISO 8601 UTC.
    pub created_at: String,
}

impl From<&RoomEvent> for HistoryEntry {
    fn from(event: &RoomEvent) -> Self {
        Self {
            seq: event.seq,
            id: event.id.clone(),
            event: event.event.clone(),
            data: event.data.clone(),
            created_at: iso(&event.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub room: String,
    /// Ascending `seq`.
    pub events: Vec<HistoryEntry>,
    /// More events exist beyond this page in the direction asked for.
    pub has_more: bool,
}

/// A room's history, for users allowed to join it.
#[utoipa::path(get, path = "/rooms/{room}/messages", tag = "client", security(("bearer" = [])),
    params(("room" = String, Path, description = "room name, e.g. booking:42"), HistoryParams),
    responses(
        (status = 200, body = HistoryPage),
        (status = 400, description = "INVALID_ROOM, INVALID_QUERY", body = ErrorEnvelope),
        (status = 401, description = "MISSING_TOKEN, INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorEnvelope),
        (status = 403, description = "not allowed to join this room", body = ErrorEnvelope),
    ))]
pub async fn history(
    State(deps): State<Arc<Deps>>,
    Bearer(identity): Bearer,
    ApiPath(room): ApiPath<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<HistoryPage>, ApiError> {
    let room = RoomName::parse(room)?;
    let max = deps.config.limits.max_page;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE.min(max));
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request("INVALID_QUERY", format!("limit must be between 1 and {max}")));
    }
    // One extra row says whether there is more.
    let query = match (params.before, params.after) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("INVALID_QUERY", "give before or after, not both")),
        (Some(before), None) => HistoryQuery::Before { before, limit: limit + 1 },
        (None, Some(after)) => HistoryQuery::After { after, limit: limit + 1 },
        (None, None) => HistoryQuery::Latest { limit: limit + 1 },
    };
    require_access(&deps, &identity, &room).await?;
    let mut events = deps.store.history(&room, query).await?;
    let has_more = events.len() > limit as usize;
    if has_more {
        match query {
            // Paging backwards keeps the newest `limit`; the extra row is the oldest.
            HistoryQuery::Latest { .. } | HistoryQuery::Before { .. } => {
                events.remove(0);
            }
            HistoryQuery::After { .. } => events.truncate(limit as usize),
        }
    }
    Ok(Json(HistoryPage { room: room.to_string(), events: events.iter().map(HistoryEntry::from).collect(), has_more }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub room: String,
    pub last_event: HistoryEntry,
    /// Events after the user's read watermark that others sent.
    pub unread_count: u64,
    pub last_read_seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Conversations {
    /// Most recent activity first.
    pub conversations: Vec<Conversation>,
}

/// The rooms the user takes part in that have events, with the last event and the unread count.
#[utoipa::path(get, path = "/me/conversations", tag = "client", security(("bearer" = [])),
    responses((status = 200, body = Conversations), (status = 401, body = ErrorEnvelope)))]
pub async fn conversations(
    State(deps): State<Arc<Deps>>,
    Bearer(identity): Bearer,
) -> Result<Json<Conversations>, ApiError> {
    let user = &identity.user_id;
    let mut conversations = Vec::new();
    for room in deps.store.user_rooms(user).await? {
        // A revoked grant leaves the participation record behind; the room is no longer the user's to read.
        if !may_join(&deps, &identity, &room).await? {
            continue;
        }
        let Some(last) = deps.store.history(&room, HistoryQuery::Latest { limit: 1 }).await?.pop() else {
            continue;
        };
        let watermark = deps.store.read_watermark(user, &room).await?;
        let unread = deps.store.count_unread(&room, watermark, user).await?;
        conversations.push((
            last.created_at,
            Conversation {
                room: room.to_string(),
                last_event: HistoryEntry::from(&last),
                unread_count: unread,
                last_read_seq: watermark,
            },
        ));
    }
    conversations.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    Ok(Json(Conversations { conversations: conversations.into_iter().map(|(_, c)| c).collect() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    #[schema(example = "booking:42")]
    pub room: String,
    /// The highest `seq` the user has read.
    pub seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadResponse {
    pub room: String,
    /// The read watermark now; it never moves backwards.
    pub seq: u64,
}

/// Marks a room read up to `seq`; the room's connections receive `message:read {room, userId, seq}`.
#[utoipa::path(post, path = "/messages/read", tag = "client", security(("bearer" = [])),
    request_body = ReadRequest,
    responses(
        (status = 200, body = ReadResponse),
        (status = 400, description = "INVALID_ROOM, INVALID_DATA, INVALID_JSON", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
pub async fn mark_read(
    State(deps): State<Arc<Deps>>,
    Bearer(identity): Bearer,
    ApiJson(body): ApiJson<ReadRequest>,
) -> Result<Json<ReadResponse>, ApiError> {
    let room = RoomName::parse(body.room)?;
    require_access(&deps, &identity, &room).await?;
    let latest = deps.store.history(&room, HistoryQuery::Latest { limit: 1 }).await?.last().map(|e| e.seq).unwrap_or(0);
    if body.seq > latest {
        return Err(ApiError::bad_request(
            "INVALID_DATA",
            format!("seq {} is beyond the last event ({latest})", body.seq),
        ));
    }
    let user = &identity.user_id;
    let watermark = deps.store.mark_read(user, &room, body.seq).await?;
    let frame = ServerFrame::room_event(
        events::MESSAGE_READ,
        room.as_str(),
        None,
        json!({"room": room, "userId": user, "seq": watermark, "readAt": now_iso()}),
    );
    let members = deps.store.room_members(&room).await?;
    deps.deliver(members.into_iter().map(|m| m.connection_id).collect(), &frame).await;
    Ok(Json(ReadResponse { room: room.to_string(), seq: watermark }))
}

/// Paging through the caller's notifications, newest first.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationParams {
    /// Only unread notifications (`unreadOnly` is accepted too, as on the socket).
    #[serde(default, alias = "unreadOnly")]
    pub unread: bool,
    /// Notifications older than this id: the previous page's `nextBefore`.
    pub before: Option<String>,
    /// Page size, 1 to the configured maximum (default 20).
    pub limit: Option<u32>,
}

/// One stored notification, as `notification:list` and `notification:new` show it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    /// UUID v7, so ids sort as creation times do.
    pub id: String,
    pub title: String,
    pub message: String,
    pub kind: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
    pub read: bool,
    /// ISO 8601 UTC.
    pub created_at: String,
}

/// A page of notifications; the socket's `notification:list` answers the same object.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    /// Newest first.
    pub notifications: Vec<NotificationView>,
    /// Unread notifications in total, not only on this page.
    pub unread_count: u64,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next_before: Option<String>,
}

/// The caller's notifications, newest first, with the unread count.
#[utoipa::path(get, path = "/me/notifications", tag = "client", security(("bearer" = [])),
    params(NotificationParams),
    responses(
        (status = 200, body = NotificationPage),
        (status = 400, description = "INVALID_QUERY, INVALID_DATA (limit out of range)", body = ErrorEnvelope),
        (status = 401, description = "MISSING_TOKEN, INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorEnvelope),
    ))]
pub async fn notifications(
    State(deps): State<Arc<Deps>>,
    Bearer(identity): Bearer,
    ApiQuery(params): ApiQuery<NotificationParams>,
) -> Result<Json<Value>, ApiError> {
    let page = notifications::list_for(&deps, &identity.user_id, params.unread, params.before, params.limit)
        .await
        .map_err(action_error)?;
    Ok(Json(page))
}

/// Marks one notification, or all of them, read. Give exactly one of the two fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationReadRequest {
    /// The notification to mark read.
    #[serde(default)]
    pub notification_id: Option<String>,
    /// `true` marks every notification of the caller read.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationReadResponse {
    /// How many notifications changed from unread to read: 0 when this is a retry.
    pub updated: u64,
    /// The caller's unread notifications now.
    pub unread_count: u64,
}

/// Marks notifications read and answers the new unread count, exactly as the socket's `notification:read` does.
/// Reading an id twice changes nothing the second time, so retries never make the count drift; an id the caller does
/// not have (someone else's, or none at all) changes nothing either and answers `updated: 0`, so this route tells
/// nobody which ids exist.
#[utoipa::path(post, path = "/me/notifications/read", tag = "client", security(("bearer" = [])),
    request_body = NotificationReadRequest,
    responses(
        (status = 200, body = NotificationReadResponse),
        (status = 400, description = "INVALID_DATA, INVALID_JSON", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
    ))]
pub async fn read_notifications(
    State(deps): State<Arc<Deps>>,
    Bearer(identity): Bearer,
    ApiJson(body): ApiJson<NotificationReadRequest>,
) -> Result<Json<NotificationReadResponse>, ApiError> {
    let user = &identity.user_id;
    let id = match (body.notification_id, body.all) {
        (Some(id), false) if !id.trim().is_empty() => Some(id),
        (None, true) => None,
        _ => return Err(ApiError::bad_request("INVALID_DATA", "give either a non-empty notificationId or all: true")),
    };
    let request = notifications::ReadRequest { notification_id: id.clone(), notification_ids: None, all: id.is_none() };
    let answer = notifications::read_for(&deps, user, request).await.map_err(action_error)?;
    Ok(Json(NotificationReadResponse {
        updated: answer["updated"].as_u64().unwrap_or(0),
        unread_count: answer["unreadCount"].as_u64().unwrap_or(0),
    }))
}

/// A socket action's failure as an HTTP answer: its stable code, with the status HTTP clients expect for it.
fn action_error(error: ActionError) -> ApiError {
    match error {
        ActionError::Client(body) => {
            let status = match body.code {
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
                ErrorCode::Conflict => StatusCode::CONFLICT,
                ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiError::new(status, body.code.as_str(), body.message)
        }
        ActionError::Internal(cause) => ApiError::internal(&cause),
    }
}

/// Who the token says the caller is, and the rooms a socket with it joins at connect.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub user_id: String,
    pub role: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// Rooms signed into the token's `rooms` claim.
    pub token_rooms: Vec<String>,
    /// Every room a connection with this token auto-joins.
    pub auto_rooms: Vec<String>,
}

/// Verifies the token as `$connect` would and describes the identity: the way to learn why a handshake failed.
#[utoipa::path(get, path = "/me", tag = "client", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, description = "MISSING_TOKEN, INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorEnvelope)))]
pub async fn me(State(deps): State<Arc<Deps>>, Bearer(identity): Bearer) -> Json<Me> {
    let auto = deps.config.role_rooms.auto_rooms(&identity);
    Json(Me {
        user_id: identity.user_id.to_string(),
        role: identity.role.clone(),
        name: identity.name.clone(),
        email: identity.email.clone(),
        token_rooms: identity.rooms.iter().map(ToString::to_string).collect(),
        auto_rooms: auto.iter().map(ToString::to_string).collect(),
    })
}

/// The socket's join rule, with the grant looked up only when the policy needs it.
async fn may_join(deps: &Deps, identity: &Identity, room: &RoomName) -> Result<bool, ApiError> {
    let auto = deps.config.role_rooms.auto_rooms(identity);
    let policy = &deps.config.room_policy;
    Ok(match policy.check_join(identity, &auto, room, JoinFacts::default()) {
        Access::Allowed => true,
        Access::Denied => false,
        Access::NeedsGrant => {
            let granted = deps.store.is_granted(room, &identity.user_id).await?;
            policy.check_join(identity, &auto, room, JoinFacts { granted }) == Access::Allowed
        }
    })
}

async fn require_access(deps: &Deps, identity: &Identity, room: &RoomName) -> Result<(), ApiError> {
    if may_join(deps, identity, room).await? {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("you may not read {room}")))
    }
}
