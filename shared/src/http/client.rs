//! Routes for end users, authenticated by the same platform JWT as the socket (`Authorization: Bearer`): room
//! history, my conversations with unread counts, mark-read, my notifications, and who-am-I.
//!
//! Every route calls the very function behind the socket action it mirrors (the access check, history paging,
//! mark-read, notification listing and marking), so answers, limits and error codes are the same on both edges.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Bearer;
use super::errors::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorEnvelope};
use crate::handlers::chat::{self, HistoryWindow, history_entry};
use crate::handlers::membership::{check_access, cursor_error};
use crate::handlers::notifications;
use crate::handlers::{ActionError, Deps};
use crate::ids::RoomName;
use crate::protocol::ErrorCode;
use crate::protocol::payloads::{
    HistoryEntry, HistoryPage, ListNotifications, NotificationPage, NotificationsRead, ReadNotifications,
};
use crate::store::HistoryQuery;

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

/// A room's history, for users allowed to join it.
#[utoipa::path(get, path = "/rooms/{room}/messages", tag = "client", security(("bearer" = [])),
    params(("room" = String, Path, description = "room name, e.g. booking:42"), HistoryParams),
    responses(
        (status = 200, body = HistoryPage),
        (status = 400, description = "INVALID_ROOM, INVALID_QUERY, INVALID_DATA", body = ErrorEnvelope),
        (status = 401, description = "MISSING_TOKEN, INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorEnvelope),
        (status = 403, description = "not allowed to join this room", body = ErrorEnvelope),
        (status = 404, description = "a granted room nobody was granted yet", body = ErrorEnvelope),
    ))]
pub async fn history(
    State(deps): State<Arc<Deps>>,
    Bearer(identity): Bearer,
    ApiPath(room): ApiPath<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<HistoryPage>, ApiError> {
    let room = RoomName::parse(room)?;
    let window = HistoryWindow { before: params.before, after: params.after, limit: params.limit };
    Ok(Json(chat::history_page(&deps, &identity, room, window).await.map_err(action_error)?))
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
#[serde(rename_all = "camelCase")]
pub struct Conversations {
    /// This page's conversations, most recent activity first.
    pub conversations: Vec<Conversation>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Paging through the caller's conversations.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationParams {
    /// The previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Rooms to look at, 1 to the configured maximum (default 50).
    pub limit: Option<u32>,
}

/// The rooms the user takes part in that have events, with the last event and the unread count. Pages follow the
/// rooms in name order, so one request's work is bounded by its page however many rooms the user has taken part
/// in; within a page, the most recent activity comes first.
#[utoipa::path(get, path = "/me/conversations", tag = "client", security(("bearer" = [])),
    params(ConversationParams),
    responses(
        (status = 200, body = Conversations),
        (status = 400, description = "INVALID_QUERY, INVALID_DATA (limit, cursor)", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
    ))]
pub async fn conversations(
    State(deps): State<Arc<Deps>>,
    Bearer(identity): Bearer,
    ApiQuery(params): ApiQuery<ConversationParams>,
) -> Result<Json<Conversations>, ApiError> {
    let max = deps.config.limits.max_page;
    let limit = params.limit.unwrap_or(50.min(max));
    if limit == 0 || limit > max {
        return Err(action_error(ActionError::invalid(format!("limit must be between 1 and {max}"))));
    }
    let user = &identity.user_id;
    let page = deps
        .store
        .user_rooms_page(user, params.cursor.as_deref(), limit)
        .await
        .map_err(|error| action_error(cursor_error(error)))?;
    let mut conversations = Vec::new();
    for room in page.items {
        // A revoked grant leaves the participation record behind; the room is no longer the user's to read.
        match check_access(&deps, &identity, &room).await {
            Ok(()) => {}
            Err(ActionError::Client(_)) => continue,
            Err(error) => return Err(action_error(error)),
        }
        let Some(last) = deps.store.history(&room, HistoryQuery::Latest { limit: 1 }).await?.pop() else {
            continue;
        };
        let watermark = deps.store.read_watermark(user, &room).await?;
        let unread = deps.store.count_unread(&room, watermark, user).await?;
        // Events of one millisecond are ordered by their ids, time-ordered UUIDs (v7) that the process generating
        // them keeps increasing within a millisecond: a fast store writes several rooms' messages in one.
        conversations.push((
            (last.created_at, last.id.clone()),
            Conversation {
                room: room.to_string(),
                last_event: history_entry(&last),
                unread_count: unread,
                last_read_seq: watermark,
            },
        ));
    }
    // Newest activity first.
    conversations.sort_by(|(a, _), (b, _)| b.cmp(a));
    let conversations = conversations.into_iter().map(|(_, c)| c).collect();
    Ok(Json(Conversations { conversations, next_cursor: page.next }))
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
    let watermark = chat::mark_read(&deps, &identity, &room, body.seq, None).await.map_err(action_error)?;
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
) -> Result<Json<NotificationPage>, ApiError> {
    let request = ListNotifications { unread_only: Some(params.unread), before: params.before, limit: params.limit };
    let page = notifications::list_for(&deps, &identity.user_id, request).await.map_err(action_error)?;
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

/// Marks notifications read and answers the new unread count, exactly as the socket's `notification:read` does.
/// Reading an id twice changes nothing the second time, so retries never make the count drift; an id the caller does
/// not have (someone else's, or none at all) changes nothing either and answers `updated: 0`, so this route tells
/// nobody which ids exist.
#[utoipa::path(post, path = "/me/notifications/read", tag = "client", security(("bearer" = [])),
    request_body = NotificationReadRequest,
    responses(
        (status = 200, body = NotificationsRead),
        (status = 400, description = "INVALID_DATA, INVALID_JSON", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
    ))]
pub async fn read_notifications(
    State(deps): State<Arc<Deps>>,
    Bearer(identity): Bearer,
    ApiJson(body): ApiJson<NotificationReadRequest>,
) -> Result<Json<NotificationsRead>, ApiError> {
    let id = match (body.notification_id, body.all) {
        (Some(id), false) if !id.trim().is_empty() => Some(id),
        (None, true) => None,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidData,
                "give either a non-empty notificationId or all: true",
            ));
        }
    };
    let request = ReadNotifications { all: Some(id.is_none()), notification_id: id, notification_ids: None };
    let answer = notifications::read_for(&deps, &identity.user_id, request).await.map_err(action_error)?;
    Ok(Json(answer))
}

/// A socket action's failure as an HTTP answer: its stable code, with the status HTTP clients expect for it.
pub(crate) fn action_error(error: ActionError) -> ApiError {
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
            ApiError::new(status, body.code, body.message)
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
