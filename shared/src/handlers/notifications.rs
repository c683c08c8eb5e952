//! Notifications: stored per user, announced as `notification:new` on the user's room, listed and marked read from
//! any of the user's connections. Unread counts come from the store, which keeps them exact under retries.

use serde::Deserialize;
use serde_json::Value;

use super::Deps;
use super::caller::Caller;
use super::errors::{ActionError, ActionResult, HandlerError};
use crate::ids::{RoomName, UserId};
use crate::protocol::payloads::{
    ListNotifications, NewNotification, NotificationPage, NotificationView, NotificationsRead, ReadNotifications,
    UnreadCount,
};
use crate::protocol::{ServerFrame, events, timestamp};
use crate::store::{Notification, NotificationQuery, NotificationSelector};

const MAX_TITLE_CHARS: usize = 200;
const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_READ_IDS: usize = 100;
/// Largest `data` of one notification. A notification travels alone in `notification:new`, and a page of them in an
/// ack, both under API Gateway's 128 KB message limit.
const MAX_DATA_BYTES: usize = 8 * 1024;
/// Most bytes of notifications one page carries; the page stops early and says `nextBefore`.
const PAGE_BYTES: usize = 96 * 1024;

/// A notification to create, as internal services describe it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationInput {
    pub title: String,
    pub message: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Option<Value>,
}

impl NotificationInput {
    /// Checks sizes; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.title.trim().is_empty() || self.title.chars().count() > MAX_TITLE_CHARS {
            return Err(format!("notification.title must be 1 to {MAX_TITLE_CHARS} characters"));
        }
        if self.message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(format!("notification.message must be at most {MAX_MESSAGE_CHARS} characters"));
        }
        if self.data.as_ref().is_some_and(|data| data.to_string().len() > MAX_DATA_BYTES) {
            return Err(format!("notification.data must be at most {MAX_DATA_BYTES} bytes of JSON"));
        }
        Ok(())
    }
}

/// The wire form of a stored notification.
pub fn notification_view(n: &Notification) -> NotificationView {
    NotificationView {
        id: n.id.clone(),
        title: n.title.clone(),
        message: n.message.clone(),
        kind: n.kind.clone(),
        data: n.data.clone(),
        read: n.read,
        created_at: timestamp(&n.created_at),
    }
}

/// Stores one notification per user and pushes `notification:new` (with the new unread count) to each user's room.
/// Returns the stored notifications.
pub async fn notify(
    deps: &Deps,
    users: &[UserId],
    input: &NotificationInput,
) -> Result<Vec<Notification>, HandlerError> {
    let mut stored = Vec::with_capacity(users.len());
    for user in users {
        let id = uuid::Uuid::now_v7().to_string();
        if let Some(notification) = notify_once(deps, user, input, id).await? {
            stored.push(notification);
        }
    }
    Ok(stored)
}

/// Stores the notification `id` for `user` and pushes `notification:new`, unless the user already has it: then
/// nothing is stored, counted or pushed, and the answer is `None`. A caller that derives `id` from what the
/// notification is about can therefore repeat the whole step after a failure without notifying twice.
/// Ids are UUIDv7 (or built like one), because notifications page in id order.
pub async fn notify_once(
    deps: &Deps,
    user: &UserId,
    input: &NotificationInput,
    id: String,
) -> Result<Option<Notification>, HandlerError> {
    let notification = Notification {
        id,
        user_id: user.clone(),
        title: input.title.clone(),
        message: input.message.clone(),
        kind: input.kind.clone(),
        data: input.data.clone().unwrap_or(Value::Null),
        read: false,
        created_at: chrono::Utc::now(),
    };
    if !deps.store.add_notification(&notification).await? {
        return Ok(None);
    }
    let unread_count = deps.store.unread_notifications(user).await?;
    let payload = NewNotification { notification: notification_view(&notification), unread_count };
    let frame = ServerFrame::typed_event(events::NOTIFICATION_NEW, &payload);
    let targets = deps.store.room_members(&RoomName::for_user(user)).await?;
    deps.deliver(targets.into_iter().map(|m| m.connection_id).collect(), &frame).await;
    Ok(Some(notification))
}

/// `notification:list {unreadOnly?, before?, limit?}` → ack [`NotificationPage`], newest first.
pub async fn list(deps: &Deps, caller: &Caller, request: ListNotifications) -> ActionResult<NotificationPage> {
    list_for(deps, &caller.identity.user_id, request).await
}

/// Shared by the socket action and `GET /me/notifications`.
pub async fn list_for(deps: &Deps, user: &UserId, request: ListNotifications) -> ActionResult<NotificationPage> {
    let max = deps.config.limits.max_page;
    let limit = request.limit.unwrap_or(20);
    if limit == 0 || limit > max {
        return Err(ActionError::invalid(format!("limit must be between 1 and {max}")));
    }
    let query = NotificationQuery {
        unread_only: request.unread_only.unwrap_or(false),
        before_id: request.before,
        limit: limit + 1,
    };
    let items = deps.store.list_notifications(user, &query).await?;
    let mut has_more = items.len() > limit as usize;
    let mut notifications = Vec::new();
    let mut bytes = 0;
    for view in items.iter().take(limit as usize).map(notification_view) {
        bytes += serde_json::to_vec(&view).map(|v| v.len()).unwrap_or(0) + 1;
        if !notifications.is_empty() && bytes > PAGE_BYTES {
            has_more = true;
            break;
        }
        notifications.push(view);
    }
    let next_before = if has_more { notifications.last().map(|n| n.id.clone()) } else { None };
    Ok(NotificationPage { notifications, unread_count: deps.store.unread_notifications(user).await?, next_before })
}

/// `notification:read {notificationId | notificationIds | all: true}` → ack [`NotificationsRead`].
pub async fn read(deps: &Deps, caller: &Caller, request: ReadNotifications) -> ActionResult<NotificationsRead> {
    read_for(deps, &caller.identity.user_id, request).await
}

/// Shared by the socket action and `POST /me/notifications/read`.
pub async fn read_for(deps: &Deps, user: &UserId, request: ReadNotifications) -> ActionResult<NotificationsRead> {
    let selector = match (request.notification_id, request.notification_ids, request.all.unwrap_or(false)) {
        (None, None, true) => NotificationSelector::All,
        (Some(id), None, false) if !id.trim().is_empty() => NotificationSelector::Ids(vec![id]),
        (None, Some(ids), false) if !ids.is_empty() && ids.len() <= MAX_READ_IDS => NotificationSelector::Ids(ids),
        _ => {
            return Err(ActionError::invalid(format!(
                "give exactly one of notificationId, notificationIds (1 to {MAX_READ_IDS}) or all: true"
            )));
        }
    };
    let updated = deps.store.mark_notifications_read(user, &selector).await?;
    Ok(NotificationsRead { updated, unread_count: deps.store.unread_notifications(user).await? })
}

/// `notification:unreadCount` → ack [`UnreadCount`].
pub async fn unread_count(deps: &Deps, caller: &Caller) -> ActionResult<UnreadCount> {
    Ok(UnreadCount { unread_count: deps.store.unread_notifications(&caller.identity.user_id).await? })
}
