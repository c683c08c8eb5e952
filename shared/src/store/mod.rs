//! The store port: everything Bellhop persists, as one narrow async trait with two real adapters.
//!
//! - [`sqlite::SqliteStore`]: the embedded default of the harness (a file under the data dir, or in-memory for tests).
//! - [`dynamo::DynamoStore`]: the cloud adapter, one DynamoDB table.
//!
//! Both pass the same backend-agnostic [`contract`] suite. Records here are the logical model; each adapter owns its
//! physical layout. Operations that touch several items and must stay consistent (allocating a room sequence number,
//! marking notifications read together with the unread counter, call transitions) are atomic in every adapter.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{ConnectionId, RoomName, UserId};
// The call and presence vocabularies are the wire's; records hold them as clients see them.
pub use crate::protocol::{CallState, CallType, PresenceStatus};

#[cfg(any(test, feature = "test-util"))]
pub mod contract;
pub mod dynamo;
#[cfg(any(test, feature = "test-util"))]
pub mod faulty;
pub mod sqlite;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the item is not in the state the caller expected.
    #[error("condition failed")]
    ConditionFailed,
    /// The item the operation needs does not exist.
    #[error("item not found")]
    NotFound,
    /// A paging cursor that this store did not hand out (or that belongs to another listing). The caller's
    /// mistake: answer it as invalid input.
    #[error("invalid paging cursor")]
    InvalidCursor,
    /// The backend failed or is unreachable. The operation had no effect, or is safe to retry.
    #[error("store backend failed")]
    Backend(#[source] BoxError),
}

impl StoreError {
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(error))
    }
}

/// One open WebSocket connection and who owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub connection_id: ConnectionId,
    pub user_id: UserId,
    pub role: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub connected_at: DateTime<Utc>,
    /// After this instant the record is stale even if `$disconnect` never arrived (API Gateway's 2 h cap + margin).
    pub expires_at: DateTime<Utc>,
    /// The `exp` of the token the connection authenticated with (or last refreshed to); `None` for tokens without
    /// `exp`.
    pub token_expires_at: Option<DateTime<Utc>>,
}

#[cfg(any(test, feature = "test-util"))]
impl ConnectionRecord {
    /// A connection of `user` opened now with AWS's two-hour lifetime and no profile, for tests that put
    /// connections in a store directly. Panics on an invalid id, which is a bug in the test.
    pub fn for_tests(connection_id: &str, user: &str) -> Self {
        let now = Utc::now();
        Self {
            connection_id: ConnectionId::parse(connection_id).expect("valid test connection id"),
            user_id: UserId::parse(user).expect("valid test user id"),
            role: None,
            name: None,
            email: None,
            connected_at: now,
            expires_at: now + chrono::Duration::hours(2),
            token_expires_at: None,
        }
    }
}

/// GCRA rate limiting: one event every `interval`, with `burst` allowed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub interval: std::time::Duration,
    pub burst: u32,
}

/// The answer of [`Store::admit`] and [`Store::admit_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Refused; the same request would be allowed after `retry_after`.
    Limited {
        retry_after: std::time::Duration,
    },
}

/// One page of a listing, with an opaque cursor for the next page (None on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A room with at least one live connection, as the operator's rooms list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRoom {
    pub room: RoomName,
    /// Live connections in the room now (the maintained member count).
    pub members: u64,
    /// The room's last durable event `seq`; 0 when nothing was stored in it yet.
    pub last_seq: u64,
}

/// What was removed when a connection was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedConnection {
    pub record: ConnectionRecord,
    /// Every room the connection was a member of, now left.
    pub rooms: Vec<RoomName>,
    /// True when this was the user's last connection: the user is now offline.
    pub last_of_user: bool,
    /// When this was the user's last connection: their stored presence as [`PresenceRecord::gone_offline`] left it,
    /// and who subscribes to it, for the offline announcement. `None` otherwise.
    pub offline: Option<WentOffline>,
}

/// The presence side of a user's last connection closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WentOffline {
    /// The stored presence after the disconnect: `last_seen` is the disconnect.
    pub presence: PresenceRecord,
    /// The connections subscribed to the user's presence (the members of `presence:{user}`).
    pub subscribers: Vec<Member>,
}

/// What `$connect` needs to know about a user before recording a connection: their open connections (the
/// per-user limit, and whether this is the first), their stored presence and their presence subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPresence {
    pub connections: Vec<ConnectionRecord>,
    pub stored: Option<PresenceRecord>,
    pub subscribers: Vec<Member>,
}

/// The answer of [`Store::join_room_within`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    AlreadyMember,
    /// Nothing was written: the connection is in `max_rooms` rooms already.
    RoomLimit,
}

/// A room as a joiner sees it right after joining: its connections and its latest durable `seq` (0 before any).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomState {
    pub members: Vec<Member>,
    pub latest_seq: u64,
}

/// A connection in a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub connection_id: ConnectionId,
    pub user_id: UserId,
}

/// A durable room event to append: a chat message or a persisted emit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRoomEvent {
    pub room: RoomName,
    /// Unique id (UUID v7, so ids sort by time).
    pub id: String,
    pub event: String,
    /// The event body. The store adds nothing to it; `seq` is returned beside it.
    pub data: Value,
    pub sender: Option<UserId>,
    /// Makes the append idempotent: a second append with the same (room, sender, client_msg_id) returns the first
    /// event and `duplicate: true`, and allocates no sequence number. Without a sender (a platform emit) the key is
    /// (room, client_msg_id): emit derives it from its `idempotencyKey`, so a retried emit stores once per room.
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A stored room event with its per-room sequence number (1, 2, 3… without gaps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub room: RoomName,
    pub seq: u64,
    pub id: String,
    pub event: String,
    pub data: Value,
    pub sender: Option<UserId>,
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub event: RoomEvent,
    pub duplicate: bool,
    /// Whether the store already added this message to `total_messages` (the `/health` stats) in the write that
    /// stored it, which [`Store::append_message`] may do. When it did not, the caller counts a new message itself.
    pub counted: bool,
}

/// A page of history. Results are always in ascending `seq` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest `limit` events.
    Latest { limit: u32 },
    /// The newest `limit` events with `seq < before` (paging backwards).
    Before { before: u64, limit: u32 },
    /// The oldest `limit` events with `seq > after` (recovering what was missed).
    After { after: u64, limit: u32 },
}

/// Counters behind `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub active_connections: u64,
    pub active_rooms: u64,
    pub total_connections: u64,
    pub total_messages: u64,
}

/// The status a user chose, stored independently of whether they are connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    pub user_id: UserId,
    pub status: PresenceStatus,
    pub custom_status: Option<String>,
    /// When the user was last connected (set when the last connection closes) or last changed status.
    pub last_seen: DateTime<Utc>,
}

impl PresenceRecord {
    /// The stored presence of `user` once their last connection closed at `at`: `last_seen` is then, a chosen status
    /// (away, busy, a custom text) is kept for their next connection, and a lingering `in_call` reverts to online,
    /// since a user without connections is in no call.
    pub fn gone_offline(user: &UserId, stored: Option<PresenceRecord>, at: DateTime<Utc>) -> Self {
        let status = match stored.as_ref().map(|p| p.status) {
            Some(PresenceStatus::InCall | PresenceStatus::Offline) | None => PresenceStatus::Online,
            Some(status) => status,
        };
        PresenceRecord {
            user_id: user.clone(),
            status,
            custom_status: stored.and_then(|p| p.custom_status),
            last_seen: at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// UUID v7: notifications sort by id as they sort by time.
    pub id: String,
    pub user_id: UserId,
    pub title: String,
    pub message: String,
    pub kind: Option<String>,
    pub data: Value,
    pub read: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationQuery {
    pub unread_only: bool,
    /// Return notifications with an id lower than this (the previous page's last id).
    pub before_id: Option<String>,
    pub limit: u32,
}

/// Which notifications to mark read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationSelector {
    All,
    Ids(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub caller: UserId,
    pub recipient: UserId,
    pub call_type: CallType,
    pub visit_id: Option<String>,
    pub state: CallState,
    pub created_at: DateTime<Utc>,
    /// Set when the call is accepted.
    pub answered_at: Option<DateTime<Utc>>,
    /// Set when the call reaches a final state.
    pub ended_at: Option<DateTime<Utc>>,
}

/// A conditional change of a call's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTransition {
    /// The transition applies only if the call is currently in one of these states.
    pub from: Vec<CallState>,
    pub to: CallState,
    pub at: DateTime<Utc>,
}

/// The result of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyClaim {
    /// The key was free and now belongs to this caller, who must [`Store::complete_idempotency`] it.
    Claimed,
    /// Another caller holds the key and has not finished yet.
    InFlight,
    /// The key was used before; this is the answer that was given then.
    Completed(Value),
}

/// The GCRA step shared by the adapters, in milliseconds since the epoch: from the stored theoretical arrival time
/// `tat` (None when the bucket is full), either the new `tat` to store (`Ok`) or how long until the event would be
/// allowed (`Err`). Allowing `burst` events at once means tolerating a `tat` up to `(burst - 1) × interval` ahead.
pub(crate) fn gcra_step(tat: Option<i64>, now: i64, limit: RateLimit) -> Result<i64, std::time::Duration> {
    let (interval, tolerance) = gcra_bounds(limit);
    let base = tat.map_or(now, |tat| tat.max(now));
    let ahead = base - now;
    if ahead > tolerance {
        Err(std::time::Duration::from_millis(u64::try_from(ahead - tolerance).unwrap_or(0)))
    } else {
        Ok(base.saturating_add(interval))
    }
}

/// A limit's emission interval and how far ahead of now its theoretical arrival time may run (burst − 1 intervals),
/// in milliseconds: the two numbers [`gcra_step`] and a store that runs the same test in its own query work with.
pub(crate) fn gcra_bounds(limit: RateLimit) -> (i64, i64) {
    let interval = i64::try_from(limit.interval.as_millis()).unwrap_or(i64::MAX).max(1);
    (interval, interval.saturating_mul(i64::from(limit.burst.max(1) - 1)))
}

/// Now, truncated to the millisecond precision every adapter keeps, so a record handed back equals the one stored.
pub(crate) fn now_millis() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now)
}

/// Cursors name the last item of the previous page, tagged with the listing they belong to and base64url-encoded:
/// opaque to callers, and a cursor of one listing is refused by another. The adapters share these helpers.
pub(crate) fn encode_cursor(listing: &str, last: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{listing}:{last}"))
}

/// The last item named by a cursor of `listing`, or [`StoreError::InvalidCursor`].
pub(crate) fn decode_cursor(listing: &str, cursor: &str) -> StoreResult<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(raw).map_err(|_| StoreError::InvalidCursor)?;
    match text.split_once(':') {
        Some((tag, last)) if tag == listing && !last.is_empty() => Ok(last.to_owned()),
        _ => Err(StoreError::InvalidCursor),
    }
}

/// Builds a page from up to `limit + 1` items read in order: the extra item only says that another page exists.
pub(crate) fn page_from<T>(mut items: Vec<T>, limit: usize, listing: &str, key: impl Fn(&T) -> &str) -> Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(|last| encode_cursor(listing, key(last))) } else { None };
    Page { items, next }
}

/// Listing tags of the cursors.
pub(crate) const MEMBERS_CURSOR: &str = "members";
pub(crate) const USER_ROOMS_CURSOR: &str = "rooms";
pub(crate) const ACTIVE_ROOMS_CURSOR: &str = "active";

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- connections ------------------------------------------------------------------------------------------

    /// Records a new connection and makes it a member of `rooms`, counting it in the stats. Re-putting the same
    /// connection id replaces it.
    async fn put_connection(&self, connection: &ConnectionRecord, rooms: &[RoomName]) -> StoreResult<()>;

    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>>;

    /// Removes the connection and every membership it holds. `Ok(None)` when the connection is unknown, so calling
    /// it twice (a `$disconnect` after a prune) is harmless. When it was the user's last connection, the user's
    /// stored presence becomes [`PresenceRecord::gone_offline`] now, and the answer carries it with the presence
    /// subscribers ([`RemovedConnection::offline`]).
    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<Option<RemovedConnection>>;

    /// Extends a live connection's token expiry (after `auth:refresh`). `false` when the connection is unknown.
    async fn set_token_expiry(&self, id: &ConnectionId, at: DateTime<Utc>) -> StoreResult<bool>;

    /// Every open connection of a user.
    async fn user_connections(&self, user: &UserId) -> StoreResult<Vec<ConnectionRecord>>;

    /// The user's open connections, stored presence and presence subscribers, read together before `$connect`
    /// records a connection.
    async fn user_presence(&self, user: &UserId) -> StoreResult<UserPresence> {
        Ok(UserPresence {
            connections: self.user_connections(user).await?,
            stored: self.get_presence(std::slice::from_ref(user)).await?.into_iter().next(),
            subscribers: self.room_members(&RoomName::presence_of(user)).await?,
        })
    }

    /// Every open connection: only for an explicit, configured broadcast.
    async fn all_connections(&self) -> StoreResult<Vec<ConnectionId>>;

    // ---- membership -------------------------------------------------------------------------------------------

    /// Adds the connection to the room. Returns false when it was already a member.
    async fn join_room(&self, connection: &ConnectionRecord, room: &RoomName) -> StoreResult<bool>;

    /// [`Store::join_room`] for a connection allowed in at most `max_rooms` rooms: when it is in that many already
    /// and `room` is not one of them, nothing is written and the answer is [`JoinOutcome::RoomLimit`].
    async fn join_room_within(
        &self,
        connection: &ConnectionRecord,
        room: &RoomName,
        max_rooms: usize,
    ) -> StoreResult<JoinOutcome> {
        let current = self.connection_rooms(&connection.connection_id).await?;
        if !current.contains(room) && current.len() >= max_rooms {
            return Ok(JoinOutcome::RoomLimit);
        }
        Ok(if self.join_room(connection, room).await? { JoinOutcome::Joined } else { JoinOutcome::AlreadyMember })
    }

    /// The room's connections and latest durable `seq`, read together after a join.
    async fn room_state(&self, room: &RoomName) -> StoreResult<RoomState> {
        let members = self.room_members(room).await?;
        let latest = self.history(room, HistoryQuery::Latest { limit: 1 }).await?;
        Ok(RoomState { members, latest_seq: latest.last().map_or(0, |event| event.seq) })
    }

    /// Removes the connection from the room. Returns false when it was not a member.
    async fn leave_room(&self, connection: &ConnectionId, room: &RoomName) -> StoreResult<bool>;

    /// Every connection in the room (all pages), for fan-out.
    async fn room_members(&self, room: &RoomName) -> StoreResult<Vec<Member>>;

    /// One page of the room's connections, in connection id order: work proportional to the page.
    async fn room_members_page(&self, room: &RoomName, after: Option<&str>, limit: u32) -> StoreResult<Page<Member>>;

    /// How many connections are in the room now (a maintained counter, not a scan).
    async fn room_member_count(&self, room: &RoomName) -> StoreResult<u64>;

    /// One page of the rooms that have at least one live connection, with their member counts and last `seq`: work
    /// proportional to the page, never a scan of every room. The order is stable but the adapter's own (SQLite: by
    /// room name; DynamoDB: by index shard, then room name); `after` is the previous page's opaque `next`.
    async fn active_rooms_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Page<ActiveRoom>>;

    /// The rooms a connection is in.
    async fn connection_rooms(&self, connection: &ConnectionId) -> StoreResult<Vec<RoomName>>;

    // ---- grants and participation -----------------------------------------------------------------------------

    /// Allows users to join a granted room (`booking:{id}`…). Granting twice is harmless. A grant also makes the
    /// room one of the user's conversations.
    async fn grant(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()>;

    /// Withdraws grants. Existing memberships are left to the caller to remove.
    async fn revoke(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()>;

    async fn is_granted(&self, room: &RoomName, user: &UserId) -> StoreResult<bool>;

    async fn room_grants(&self, room: &RoomName) -> StoreResult<Vec<UserId>>;

    /// Records that a user takes part in a room (joined it or sent to it), so it appears in their conversations.
    async fn record_participation(&self, user: &UserId, room: &RoomName) -> StoreResult<()>;

    /// Rooms the user takes part in: recorded participation and grants.
    async fn user_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomName>>;

    /// One page of [`Store::user_rooms`], in room name order: work proportional to the page.
    async fn user_rooms_page(&self, user: &UserId, after: Option<&str>, limit: u32) -> StoreResult<Page<RoomName>>;

    // ---- room history -----------------------------------------------------------------------------------------

    /// Appends a durable event with the room's next sequence number, atomically; see [`NewRoomEvent::client_msg_id`]
    /// for idempotent appends.
    async fn append_event(&self, event: NewRoomEvent) -> StoreResult<Appended>;

    /// A member's chat message: records its sender's participation in the room (see
    /// [`Store::record_participation`]), then appends it as [`Store::append_event`] does. Participation comes first,
    /// so a failure leaves at most that idempotent marker, never a stored message the client was told had failed. A
    /// store that can also count the message in `total_messages` in the same round trip does, and says so in
    /// [`Appended::counted`].
    async fn append_message(&self, event: NewRoomEvent) -> StoreResult<Appended>;

    async fn history(&self, room: &RoomName, query: HistoryQuery) -> StoreResult<Vec<RoomEvent>>;

    /// Finds one event by id within a room.
    async fn get_event(&self, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>>;

    /// Number of events after `seq` not sent by `reader`: the unread count of a conversation.
    async fn count_unread(&self, room: &RoomName, after_seq: u64, reader: &UserId) -> StoreResult<u64>;

    /// Raises the user's read watermark in the room to `seq` (never lowers it) and returns the new watermark.
    async fn mark_read(&self, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64>;

    /// The user's read watermark in the room; 0 when nothing was read.
    async fn read_watermark(&self, user: &UserId, room: &RoomName) -> StoreResult<u64>;

    // ---- idempotency ------------------------------------------------------------------------------------------

    /// Claims `key` for `ttl_seconds`: a lease, after which the key is free again even if its holder never
    /// completed or released it (it crashed, or the store failed under it).
    async fn claim_idempotency(&self, key: &str, ttl_seconds: u64) -> StoreResult<IdempotencyClaim>;

    /// Stores the answer for a claimed key so repeats get it for `ttl_seconds` from now.
    async fn complete_idempotency(&self, key: &str, result: &Value, ttl_seconds: u64) -> StoreResult<()>;

    /// Frees a claimed key whose work failed, so a retry can do it.
    async fn release_idempotency(&self, key: &str) -> StoreResult<()>;

    // ---- rate limits ------------------------------------------------------------------------------------------

    /// Takes one event from the bucket `key` at `now`. State expires on its own (TTL) once the bucket is full again.
    async fn admit(&self, key: &str, limit: RateLimit, now: DateTime<Utc>) -> StoreResult<Admission>;

    /// Takes one inbound frame from the connection's own bucket, which lives on the connection's record, and when
    /// the frame is allowed records `now` as the connection's last activity in the same write. A connection that is
    /// no longer recorded has no bucket: its frame is allowed and nothing is written.
    async fn admit_frame(
        &self,
        connection: &ConnectionId,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission>;

    /// When the connection's last admitted frame arrived ([`Store::admit_frame`]); `None` when it sent none yet or
    /// is unknown.
    async fn connection_activity(&self, connection: &ConnectionId) -> StoreResult<Option<DateTime<Utc>>>;

    // ---- stats ------------------------------------------------------------------------------------------------

    /// Adds to the total count of messages handled (chat messages and emitted events).
    async fn count_messages(&self, n: u64) -> StoreResult<()>;

    async fn stats(&self) -> StoreResult<Stats>;

    // ---- presence ---------------------------------------------------------------------------------------------

    /// Stores a user's chosen status (and custom text), stamping `last_seen` with `at`.
    async fn set_presence(&self, record: &PresenceRecord) -> StoreResult<()>;

    /// Stored presence of each known user, in no particular order; unknown users are absent.
    async fn get_presence(&self, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>>;

    // ---- notifications ----------------------------------------------------------------------------------------

    /// Stores a notification and counts it unread. `false` when this user already has a notification with this id:
    /// nothing changes, so a retried add never counts twice.
    async fn add_notification(&self, notification: &Notification) -> StoreResult<bool>;

    /// Newest first.
    async fn list_notifications(&self, user: &UserId, query: &NotificationQuery) -> StoreResult<Vec<Notification>>;

    /// Marks notifications read and returns how many changed from unread to read. Unknown ids and ids of other
    /// users are ignored, so retries never double-count.
    async fn mark_notifications_read(&self, user: &UserId, selector: &NotificationSelector) -> StoreResult<u64>;

    async fn unread_notifications(&self, user: &UserId) -> StoreResult<u64>;

    // ---- calls ------------------------------------------------------------------------------------------------

    /// Creates a call; `ConditionFailed` if the id exists.
    async fn create_call(&self, call: &CallRecord) -> StoreResult<()>;

    async fn get_call(&self, call_id: &str) -> StoreResult<Option<CallRecord>>;

    /// Moves a call to `to` if it is in one of `from`: `NotFound` for an unknown call, `ConditionFailed` when the
    /// state did not match (another answer won the race). Sets `answered_at` on `Accepted` and `ended_at` on final
    /// states, and returns the updated call.
    async fn transition_call(&self, call_id: &str, transition: &CallTransition) -> StoreResult<CallRecord>;
}
