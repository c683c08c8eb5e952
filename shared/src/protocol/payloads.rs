//! The `data` of every request, ack and event Bellhop itself sends or accepts, as Rust types.
//!
//! Handlers build these values and never a `json!` literal, so the wire format is written down once, here. The
//! TypeScript client's types are generated from the same definitions (see [`super::typescript`]), and store records
//! are converted into them at the edge: a stored record is not the wire format.
//!
//! Field names and optionality are exactly what clients receive: `Option` fields without `skip_serializing_if` are
//! sent as `null`, those with it are left out. Requests deny unknown fields, so a typo is an `INVALID_DATA` error
//! instead of a silently ignored option.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

/// ISO 8601 UTC with milliseconds (`2026-11-30T12:00:00.000Z`): the one timestamp format on the wire.
pub type Timestamp = String;

/// Formats an instant the way every timestamp on the wire is written.
pub fn timestamp(at: &chrono::DateTime<chrono::Utc>) -> Timestamp {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The current time in the wire format.
pub fn now() -> Timestamp {
    timestamp(&chrono::Utc::now())
}

// ---- shared pieces ---------------------------------------------------------------------------------------------

/// The public profile of a user, as the token describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Profile {
    pub id: UserId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Option<String>,
}

/// A presence status. `offline` is never chosen: it is what a user without connections shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Away,
    Busy,
    InCall,
    Offline,
}

impl PresenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Online => "online",
            PresenceStatus::Away => "away",
            PresenceStatus::Busy => "busy",
            PresenceStatus::InCall => "in_call",
            PresenceStatus::Offline => "offline",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Online, Self::Away, Self::Busy, Self::InCall, Self::Offline].into_iter().find(|s| s.as_str() == raw)
    }
}

/// Where a call is in its life: `initiating` → `ringing` → `accepted` → `in_progress` → `ended`, or `rejected`,
/// `missed`, `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Initiating,
    Ringing,
    Accepted,
    InProgress,
    Ended,
    Rejected,
    Missed,
    Failed,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Initiating => "initiating",
            CallState::Ringing => "ringing",
            CallState::Accepted => "accepted",
            CallState::InProgress => "in_progress",
            CallState::Ended => "ended",
            CallState::Rejected => "rejected",
            CallState::Missed => "missed",
            CallState::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Initiating,
            Self::Ringing,
            Self::Accepted,
            Self::InProgress,
            Self::Ended,
            Self::Rejected,
            Self::Missed,
            Self::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    pub fn is_final(self) -> bool {
        matches!(self, CallState::Ended | CallState::Rejected | CallState::Missed | CallState::Failed)
    }
}

impl std::fmt::Display for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    Audio,
    Video,
}

// ---- hello, rooms ----------------------------------------------------------------------------------------------

/// The answer to `hello`, also pushed as the `connected` event when `hello` has no id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Connected {
    pub connection_id: ConnectionId,
    pub user: Profile,
    /// The rooms this connection is in (at most the per-connection room limit).
    pub rooms: Vec<RoomName>,
    pub server_time: Timestamp,
}

/// `room:join`, `room:leave`, `typing:start`, `typing:stop`: the room the action is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct RoomRequest {
    pub room: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub user_id: UserId,
}

/// The answer to `room:join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub room: RoomName,
    /// False when this connection was already a member.
    pub joined: bool,
    /// Users in the room now, the joiner included; at most the participant limit, see `participantCount`.
    pub participants: Vec<Participant>,
    /// How many distinct users are in the room, even when `participants` was cut at the limit.
    pub participant_count: u64,
    /// The room's latest durable `seq` (0 when nothing was stored yet), for recovery with `message:history`.
    pub last_seq: u64,
}

/// The answer to `room:leave`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Left {
    pub room: RoomName,
    /// False when this connection was not a member.
    pub left: bool,
}

/// `room:userJoined`: a user's first connection joined the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct UserJoined {
    pub room: RoomName,
    pub user_id: UserId,
    pub user: Profile,
}

/// `room:userLeft`: a user's last connection left the room, or their grant was revoked (`reason: "revoked"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct UserLeft {
    pub room: RoomName,
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// ---- messages --------------------------------------------------------------------------------------------------

/// `message:send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessage {
    pub room: String,
    pub content: String,
    /// Makes the send idempotent: a retry with the same id is stored and delivered once.
    #[serde(default)]
    #[ts(optional)]
    pub client_msg_id: Option<String>,
    /// Any JSON object of at most 4 KiB, stored and delivered with the message.
    #[serde(default)]
    #[ts(optional)]
    pub metadata: Option<Value>,
}

/// A chat message as stored in the room's history (the `data` of its `message:new` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct MessageBody {
    pub id: String,
    pub room: RoomName,
    pub sender: Profile,
    pub content: String,
    pub client_msg_id: Option<String>,
    /// `null` when the sender gave none.
    pub metadata: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A chat message with its place in the room: the `message:new` event's data and the `message:send` ack's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ChatMessage {
    #[serde(flatten)]
    pub body: MessageBody,
    pub seq: u64,
}

/// The answer to `message:send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Sent {
    pub message: ChatMessage,
    /// True when this was a retry of a send already stored: nothing was stored or delivered again.
    pub duplicate: bool,
}

/// `message:history`: give `beforeSeq` or `afterSeq`, not both; neither means the newest events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryRequest {
    pub room: String,
    #[serde(default)]
    #[ts(optional)]
    pub before_seq: Option<u64>,
    #[serde(default)]
    #[ts(optional)]
    pub after_seq: Option<u64>,
    #[serde(default)]
    #[ts(optional)]
    pub limit: Option<u32>,
}

/// One durable room event: a chat message (`event: "message:new"`) or a persisted emit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub seq: u64,
    pub id: String,
    pub event: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub created_at: Timestamp,
}

/// A page of a room's history, in ascending `seq`. Pages stop at a byte budget as well as at `limit`, so every
/// page fits a single WebSocket frame; `hasMore` says whether the caller should ask again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    #[schema(value_type = String)]
    pub room: RoomName,
    pub events: Vec<HistoryEntry>,
    /// More events exist beyond this page in the direction asked for.
    pub has_more: bool,
}

/// `message:read`: give `seq` or `messageIds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadMessages {
    pub room: String,
    #[serde(default)]
    #[ts(optional)]
    pub seq: Option<u64>,
    #[serde(default)]
    #[ts(optional)]
    pub message_ids: Option<Vec<String>>,
}

/// The answer to `message:read`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct MessagesRead {
    pub room: RoomName,
    /// The reader's watermark now; it never moves backwards.
    pub seq: u64,
    pub message_ids: Vec<String>,
}

/// `message:read` event: a member of the room read up to `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    pub room: RoomName,
    pub user_id: UserId,
    pub seq: u64,
    pub read_at: Timestamp,
}

/// The answer to `typing:start` and `typing:stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct TypingAck {
    pub room: RoomName,
    /// True when no event was sent because this connection already announced typing in the room moments ago.
    #[serde(default)]
    pub coalesced: bool,
}

/// `typing:start` and `typing:stop` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub room: RoomName,
    pub user_id: UserId,
    pub name: Option<String>,
    pub role: Option<String>,
}

// ---- presence --------------------------------------------------------------------------------------------------

/// `presence:set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPresence {
    /// `online`, `away`, `busy` or `in_call`.
    pub status: String,
    #[serde(default)]
    #[ts(optional)]
    pub custom_status: Option<String>,
}

/// A user's presence: the answer to `presence:set`, the entries of `presence:get`, and `presence:changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub user_id: UserId,
    pub status: PresenceStatus,
    pub custom_status: Option<String>,
    pub last_seen: Option<Timestamp>,
    pub online: bool,
}

/// `presence:get`, `presence:subscribe`, `presence:unsubscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsersRequest {
    pub user_ids: Vec<String>,
}

/// The answer to `presence:get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Presences {
    pub presences: Vec<Presence>,
    /// Users whose presence the caller may not see.
    pub forbidden: Vec<UserId>,
}

/// The answer to `presence:subscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Subscribed {
    pub subscribed: Vec<UserId>,
    pub forbidden: Vec<UserId>,
    pub presences: Vec<Presence>,
}

/// The answer to `presence:unsubscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Unsubscribed {
    pub unsubscribed: Vec<UserId>,
}

// ---- notifications ---------------------------------------------------------------------------------------------

/// `notification:list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListNotifications {
    #[serde(default)]
    #[ts(optional)]
    pub unread_only: Option<bool>,
    /// The previous page's `nextBefore`.
    #[serde(default)]
    #[ts(optional)]
    pub before: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub limit: Option<u32>,
}

/// One stored notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, utoipa::ToSchema)]
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
    pub created_at: Timestamp,
}

/// A page of notifications, newest first: the answer to `notification:list` and `GET /me/notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    pub notifications: Vec<NotificationView>,
    /// Unread notifications in total, not only on this page.
    pub unread_count: u64,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next_before: Option<String>,
}

/// `notification:new`: a notification with the user's unread count after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct NewNotification {
    #[serde(flatten)]
    pub notification: NotificationView,
    pub unread_count: u64,
}

/// `notification:read`: exactly one of `notificationId`, `notificationIds` or `all: true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadNotifications {
    #[serde(default)]
    #[ts(optional)]
    pub notification_id: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub notification_ids: Option<Vec<String>>,
    #[serde(default)]
    #[ts(optional)]
    pub all: Option<bool>,
}

/// The answer to `notification:read` and `POST /me/notifications/read`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsRead {
    /// How many notifications changed from unread to read: 0 when this is a retry.
    pub updated: u64,
    pub unread_count: u64,
}

/// The answer to `notification:unreadCount`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct UnreadCount {
    pub unread_count: u64,
}

// ---- calls -----------------------------------------------------------------------------------------------------

/// `call:initiate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiateCall {
    pub recipient_id: String,
    pub call_type: CallType,
    #[serde(default)]
    #[ts(optional)]
    pub visit_id: Option<String>,
}

/// The answer to `call:initiate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallStarted {
    pub call_id: String,
    /// `ringing`, or `missed` when the recipient had no open connection.
    pub state: CallState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `call:accept`, `call:reject`, `call:end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallRef {
    pub call_id: String,
}

/// A call: the answer to `call:accept`, `call:reject` and `call:end` (which adds `duration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    pub call_id: String,
    pub caller_id: UserId,
    pub recipient_id: UserId,
    pub call_type: CallType,
    pub visit_id: Option<String>,
    pub state: CallState,
    pub created_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Seconds between acceptance and the end; only on `call:end`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
}

/// `call:signal`: an opaque WebRTC offer, answer or ICE candidate for the other party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignalRequest {
    pub call_id: String,
    pub payload: Value,
}

/// The answer to `call:signal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct SignalRelayed {
    pub call_id: String,
    /// How many of the other party's connections received it.
    pub relayed: u64,
}

/// `call:incoming`, to every connection of the recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallIncoming {
    pub call_id: String,
    pub caller_id: UserId,
    pub caller: Profile,
    pub call_type: CallType,
    pub visit_id: Option<String>,
    /// How long the call rings before it becomes `missed`.
    pub ring_seconds: u64,
}

/// `call:accepted`, to the caller and the recipient's other connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallAccepted {
    pub call_id: String,
    pub accepted_by: UserId,
    pub accepted_by_connection: ConnectionId,
}

/// `call:rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallRejected {
    pub call_id: String,
    pub rejected_by: UserId,
}

/// `call:ended`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallEnded {
    pub call_id: String,
    pub ended_by: UserId,
    /// Seconds between acceptance and the end; 0 for a call that never connected.
    pub duration: i64,
}

/// `call:missed`, to both parties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallMissed {
    pub call_id: String,
    pub caller_id: UserId,
    pub recipient_id: UserId,
    pub call_type: CallType,
}

/// `call:signal` event, to the other party's connections only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallSignal {
    pub call_id: String,
    pub from: UserId,
    pub payload: Value,
}

/// `room:members`: one page of the users in a room the caller may join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MembersRequest {
    pub room: String,
    /// The previous page's `nextCursor`.
    #[serde(default)]
    #[ts(optional)]
    pub cursor: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub limit: Option<u32>,
}

/// The answer to `room:members`. Members are listed per connection and folded by user within a page, so a user
/// with several connections can appear on more than one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct MembersPage {
    pub room: RoomName,
    pub participants: Vec<Participant>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

// ---- token lifetime --------------------------------------------------------------------------------------------

/// `auth:refresh`: a new token for the same user, verified exactly as the handshake verifies one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct AuthRefresh {
    pub token: String,
}

/// The answer to `auth:refresh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AuthRefreshed {
    /// When the new token expires; `null` for a token without `exp`.
    pub expires_at: Option<Timestamp>,
}

/// `auth:expiring`: the connection's token expires soon. Send `auth:refresh` with a new token before `closesAt`, or
/// the connection is closed with 1008 "token expired".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AuthExpiring {
    pub expires_at: Timestamp,
    pub closes_at: Timestamp,
}
