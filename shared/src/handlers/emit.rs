//! Internal emit: a platform service pushes one event to rooms, users and connections.
//!
//! One implementation, reached two ways with the same semantics: the `emit` Lambda (invoked directly with IAM auth,
//! payload = [`EmitRequest`] as JSON, through [`handle_value`]) and `POST /internal/emit` on the HTTP API (API key,
//! through [`parse_request`] and [`handle`]). Event names are the caller's: Bellhop never renames
//! `appointment:created` or `calendar.sync`.
//!
//! Semantics:
//! - a connection reached through several targets receives the event once, framed for the first target that
//!   reached it (rooms in the order given, then users, then connections, then the broadcast); `room` and `seq` are
//!   set only when it was reached through a room;
//! - `persist` appends the event to the history of every room target, so its frame carries that room's `seq` and
//!   clients recover it with `message:history`; users and connections have no history, so `persist` needs rooms;
//! - an `idempotencyKey` seen again within `Config.idempotency_ttl_seconds` after a completed emit delivers nothing
//!   and answers the first report with `duplicate: true`;
//! - with an `idempotencyKey`, a retry after any failure completes the emit exactly once per room: each room's
//!   append is deduplicated by the key (the first attempt's `seq` is reused), a failed attempt releases its key, and
//!   a key whose release failed too frees itself when its [`IDEMPOTENCY_LEASE_SECONDS`] lease ends. Frames of rooms
//!   that an earlier attempt already reached go out again with the same `seq`, which clients de-duplicate;
//! - `broadcast` reaches every open connection and is refused unless `Config.broadcast_enabled`;
//! - `notification` stores a notification for each user in `users` and announces it with `notification:new`.
//!
//! This module does not authenticate: the Lambda is protected by IAM and the HTTP route checks the API key.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::Deps;
use super::notifications::{NotificationInput, notify, notify_once};
use crate::ids::{ConnectionId, UserId};
use crate::protocol::ServerFrame;
use crate::protocol::{ErrorCode, ErrorEnvelope, to_data};
use crate::push::MAX_PAYLOAD_BYTES;
use crate::rooms::RoomName;
use crate::store::{IdempotencyClaim, NewRoomEvent, StoreError};

/// Longest event name accepted.
pub const MAX_EVENT_LEN: usize = 128;
/// Most entries accepted in each of `rooms`, `users` and `connections`.
pub const MAX_TARGETS: usize = 1000;
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// How long a claimed idempotency key stays claimed without being completed. Longer than the `emit` function's
/// 60 s timeout (and the HTTP API's 29 s), so a live attempt never loses its key to a retry; short enough that a key
/// whose attempt crashed, or whose release failed along with the store, is free again by the time Lambda retries an
/// asynchronous invocation for the second time (about 3 minutes after the first attempt).
pub const IDEMPOTENCY_LEASE_SECONDS: u64 = 90;

/// What an internal service asks to emit.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "event": "appointment:created",
    "data": {"appointmentId": "507f1f77bcf86cd799439011"},
    "rooms": ["calendar", "provider:7"],
    "users": ["customer-9"],
    "persist": true,
    "idempotencyKey": "appointment-507f-created"
}))]
pub struct EmitRequest {
    /// The event name clients receive, exactly as given (`appointment:created`, `calendar.sync`…).
    #[serde(default)]
    #[schema(required = true)]
    pub event: Option<String>,
    /// The event body, any JSON value.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Value,
    /// Rooms whose connections receive the event.
    #[serde(default)]
    pub rooms: Option<Vec<String>>,
    /// Users whose every connection receives the event (the `user:{id}` rooms).
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// Individual connection ids.
    #[serde(default)]
    pub connections: Option<Vec<String>>,
    /// A connection that must not receive the event, typically the one whose action caused it.
    #[serde(default)]
    pub except_connection: Option<String>,
    /// Store the event in each room's history with a `seq`.
    #[serde(default)]
    pub persist: bool,
    /// Every open connection. Refused unless the deployment enables broadcasts.
    #[serde(default)]
    pub broadcast: bool,
    /// A notification stored for each user in `users` and announced to them with `notification:new`.
    #[serde(default)]
    pub notification: Option<NotificationInput>,
    /// Repeating a key within minutes delivers nothing again and answers the first report.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// What an emit did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmitReport {
    /// Distinct connections the event was addressed to.
    pub recipients: usize,
    /// Connections the Management API accepted the event for.
    pub delivered: usize,
    /// Connections that turned out to be gone; they were removed from the store.
    pub pruned: usize,
    /// Connections the event could not be delivered to (throttled, or the Management API failed).
    pub failed: usize,
    /// The `seq` the event got in each room's history, when persisted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seqs: BTreeMap<String, u64>,
    /// Notifications stored.
    #[serde(default)]
    pub notified: usize,
    /// True when this answer repeats the one given to an earlier request with the same idempotency key.
    #[serde(default)]
    pub duplicate: bool,
}

/// Why an emit was refused or failed. Every variant but [`EmitError::Store`] is the caller's doing.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("the payload must be a JSON object")]
    InvalidJson,
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("event is required")]
    MissingEvent,
    #[error("event must be 1 to {MAX_EVENT_LEN} characters without control characters")]
    InvalidEvent,
    #[error("invalid room `{room}`: {reason}")]
    InvalidRoom { room: String, reason: String },
    #[error("invalid user id `{0}`")]
    InvalidUser(String),
    #[error("invalid connection id `{0}`")]
    InvalidConnection(String),
    #[error("give at least one of rooms, users, connections, or broadcast: true")]
    NoTargets,
    #[error("{0} lists more than {MAX_TARGETS} entries")]
    TooManyTargets(&'static str),
    #[error("persist needs at least one room: users and connections have no history")]
    PersistWithoutRooms,
    #[error("{0}")]
    InvalidNotification(String),
    #[error("idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters")]
    InvalidIdempotencyKey,
    #[error("a request with this idempotencyKey is still being processed")]
    IdempotencyInFlight,
    #[error("broadcast is disabled on this deployment")]
    BroadcastDisabled,
    #[error("the event is larger than the {0} bytes allowed")]
    PayloadTooLarge(usize),
    #[error("store operation failed")]
    Store(#[from] StoreError),
}

impl EmitError {
    /// The stable code callers switch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            EmitError::InvalidJson => ErrorCode::InvalidJson,
            EmitError::InvalidPayload(_) => ErrorCode::InvalidPayload,
            EmitError::MissingEvent => ErrorCode::MissingEvent,
            EmitError::InvalidEvent => ErrorCode::InvalidEvent,
            EmitError::InvalidRoom { .. } => ErrorCode::InvalidRoom,
            EmitError::InvalidUser(_) => ErrorCode::InvalidUser,
            EmitError::InvalidConnection(_) => ErrorCode::InvalidConnection,
            EmitError::NoTargets => ErrorCode::MissingTargets,
            EmitError::TooManyTargets(_) => ErrorCode::TooManyTargets,
            EmitError::PersistWithoutRooms => ErrorCode::InvalidPersist,
            EmitError::InvalidNotification(_) => ErrorCode::InvalidNotification,
            EmitError::InvalidIdempotencyKey => ErrorCode::InvalidIdempotencyKey,
            EmitError::IdempotencyInFlight => ErrorCode::Conflict,
            EmitError::BroadcastDisabled => ErrorCode::BroadcastDisabled,
            EmitError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            EmitError::Store(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status of the error envelope.
    pub fn status(&self) -> u16 {
        match self {
            EmitError::IdempotencyInFlight => 409,
            EmitError::BroadcastDisabled => 403,
            EmitError::PayloadTooLarge(_) => 413,
            EmitError::Store(_) => 500,
            _ => 400,
        }
    }

    /// The message callers see. Internal failures say nothing about their cause; the cause is logged where the
    /// error is answered.
    pub fn public_message(&self) -> String {
        match self {
            EmitError::Store(_) => "internal error; the emit may be retried".to_owned(),
            other => other.to_string(),
        }
    }

    /// `{"error": {"code", "message"}}`, the envelope both entry points answer with.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope::new(self.code(), self.public_message())
    }
}

/// Parses an untyped payload (a Lambda invoke payload or an HTTP body already parsed as JSON) into a request,
/// turning serde's complaints into precise errors.
pub fn parse_request(value: Value) -> Result<EmitRequest, EmitError> {
    if !value.is_object() {
        return Err(EmitError::InvalidJson);
    }
    serde_json::from_value(value).map_err(|error| {
        let text = error.to_string();
        let text = text.find(" at line ").map_or(text.as_str(), |cut| &text[..cut]).to_owned();
        EmitError::InvalidPayload(text)
    })
}

/// The `emit` Lambda's handler. Caller mistakes are answered as `Ok({"error": {"code", "message"}, "status"})`
/// so an invoking service reads them like the HTTP API's envelope and Lambda does not retry them. Failures that a
/// later attempt can fix, a store fault or the key still held by another attempt, become `Err`, which Lambda
/// retries for asynchronous invocations (safely, when an `idempotencyKey` is given) and reports as a function error
/// to synchronous ones.
pub async fn handle_value(deps: &Deps, payload: Value) -> Result<Value, EmitError> {
    let size = serde_json::to_vec(&payload).map(|v| v.len()).unwrap_or(usize::MAX);
    let outcome = if size > deps.config.limits.max_emit_bytes {
        Err(EmitError::PayloadTooLarge(deps.config.limits.max_emit_bytes))
    } else {
        match parse_request(payload) {
            Ok(request) => handle(deps, request).await,
            Err(error) => Err(error),
        }
    };
    match outcome {
        Ok(report) => Ok(serde_json::to_value(&report).unwrap_or(Value::Null)),
        Err(error @ EmitError::Store(_)) => {
            tracing::error!(error = %error, source = ?std::error::Error::source(&error), "emit failed");
            Err(error)
        }
        Err(error @ EmitError::IdempotencyInFlight) => {
            tracing::warn!("emit key still held by another attempt; failing so that Lambda retries");
            Err(error)
        }
        Err(error) => {
            tracing::info!(code = error.code().as_str(), "emit refused");
            let envelope = ErrorEnvelope { status: Some(error.status()), ..error.envelope() };
            Ok(to_data(&envelope))
        }
    }
}

/// Validates, persists and delivers one emit.
#[tracing::instrument(name = "emit", skip_all, fields(event = request.event.as_deref().unwrap_or("")))]
pub async fn handle(deps: &Deps, request: EmitRequest) -> Result<EmitReport, EmitError> {
    let plan = validate(deps, request)?;
    let key = plan.idempotency_key.as_ref().map(|k| format!("emit:{k}"));
    let Some(key) = key else { return execute(deps, &plan, None).await };
    let ttl = deps.config.idempotency_ttl_seconds;
    match deps.store.claim_idempotency(&key, IDEMPOTENCY_LEASE_SECONDS.min(ttl)).await? {
        IdempotencyClaim::Claimed => {}
        IdempotencyClaim::InFlight => return Err(EmitError::IdempotencyInFlight),
        IdempotencyClaim::Completed(previous) => {
            let mut report: EmitReport =
                serde_json::from_value(previous).map_err(|e| EmitError::Store(StoreError::backend(e)))?;
            report.duplicate = true;
            tracing::info!("duplicate emit answered from the idempotency record");
            return Ok(report);
        }
    }
    let outcome = match execute(deps, &plan, Some(&key)).await {
        Ok(report) => {
            let stored = serde_json::to_value(&report).unwrap_or(Value::Null);
            match deps.store.complete_idempotency(&key, &stored, ttl).await {
                Ok(()) => return Ok(report),
                // Everything was done but the answer is not recorded: the retry redoes it, deduplicated per room.
                Err(error) => Err(EmitError::Store(error)),
            }
        }
        Err(error) => Err(error),
    };
    // Free the key so the caller's retry does the work now rather than after the lease.
    if let Err(release) = deps.store.release_idempotency(&key).await {
        tracing::warn!(error = %release, lease_seconds = IDEMPOTENCY_LEASE_SECONDS, "could not release idempotency key; it frees itself when its lease ends");
    }
    outcome
}

/// A validated emit.
struct Plan {
    event: String,
    data: Value,
    rooms: Vec<RoomName>,
    users: Vec<UserId>,
    connections: Vec<ConnectionId>,
    except: Option<ConnectionId>,
    persist: bool,
    broadcast: bool,
    notification: Option<NotificationInput>,
    idempotency_key: Option<String>,
}

fn validate(deps: &Deps, request: EmitRequest) -> Result<Plan, EmitError> {
    let event = request.event.ok_or(EmitError::MissingEvent)?;
    if event.is_empty() || event.chars().count() > MAX_EVENT_LEN || event.chars().any(char::is_control) {
        return Err(EmitError::InvalidEvent);
    }
    let rooms = parse_list(request.rooms, "rooms", |raw| {
        RoomName::parse(raw.clone()).map_err(|e| EmitError::InvalidRoom { room: raw, reason: e.to_string() })
    })?;
    let users =
        parse_list(request.users, "users", |raw| UserId::parse(raw.clone()).map_err(|_| EmitError::InvalidUser(raw)))?;
    let connections = parse_list(request.connections, "connections", |raw| {
        ConnectionId::parse(raw.clone()).map_err(|_| EmitError::InvalidConnection(raw))
    })?;
    let except = request
        .except_connection
        .map(|raw| ConnectionId::parse(raw.clone()).map_err(|_| EmitError::InvalidConnection(raw)))
        .transpose()?;
    if request.broadcast && !deps.config.broadcast_enabled {
        return Err(EmitError::BroadcastDisabled);
    }
    if rooms.is_empty() && users.is_empty() && connections.is_empty() && !request.broadcast {
        return Err(EmitError::NoTargets);
    }
    if request.persist && rooms.is_empty() {
        return Err(EmitError::PersistWithoutRooms);
    }
    if let Some(notification) = &request.notification {
        if users.is_empty() {
            return Err(EmitError::InvalidNotification("notification needs users to notify".to_owned()));
        }
        notification.validate().map_err(EmitError::InvalidNotification)?;
    }
    if let Some(key) = &request.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN)
    {
        return Err(EmitError::InvalidIdempotencyKey);
    }
    // Checked before anything is stored: the largest frame this emit can produce is the one with the longest room
    // name and a `seq` of maximal width.
    let longest_room = rooms.iter().map(RoomName::as_str).max_by_key(|r| r.len()).unwrap_or("");
    let worst = ServerFrame::room_event(event.as_str(), longest_room, Some(u64::MAX), request.data.clone());
    if worst.to_json().len() > MAX_PAYLOAD_BYTES {
        return Err(EmitError::PayloadTooLarge(MAX_PAYLOAD_BYTES));
    }
    Ok(Plan {
        event,
        data: request.data,
        rooms,
        users,
        connections,
        except,
        persist: request.persist,
        broadcast: request.broadcast,
        notification: request.notification,
        idempotency_key: request.idempotency_key,
    })
}

/// Parses each entry of an optional list, de-duplicating while keeping the caller's order.
fn parse_list<T: Clone + Eq + std::hash::Hash>(
    raw: Option<Vec<String>>,
    field: &'static str,
    parse: impl Fn(String) -> Result<T, EmitError>,
) -> Result<Vec<T>, EmitError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_TARGETS {
        return Err(EmitError::TooManyTargets(field));
    }
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(raw.len());
    for entry in raw {
        let value = parse(entry)?;
        if seen.insert(value.clone()) {
            parsed.push(value);
        }
    }
    Ok(parsed)
}

/// Persists and delivers. With `key` (a claimed idempotency key), every step may run again after a failure: each
/// room's append is deduplicated by the key, and notifications get ids derived from it.
async fn execute(deps: &Deps, plan: &Plan, key: Option<&str>) -> Result<EmitReport, EmitError> {
    let mut report = EmitReport::default();

    // Persist first, so every frame can carry its room's seq.
    let mut room_seqs = Vec::with_capacity(plan.rooms.len());
    let mut anchor = None;
    for room in &plan.rooms {
        let seq = if plan.persist {
            let appended = deps
                .store
                .append_event(NewRoomEvent {
                    room: room.clone(),
                    id: uuid::Uuid::now_v7().to_string(),
                    event: plan.event.clone(),
                    data: plan.data.clone(),
                    sender: None,
                    client_msg_id: key.map(str::to_owned),
                    created_at: chrono::Utc::now(),
                })
                .await?;
            if appended.duplicate {
                tracing::info!(room = %room, seq = appended.event.seq, "room already had this emit; reusing its seq");
            }
            anchor.get_or_insert(appended.event.created_at);
            report.seqs.insert(room.to_string(), appended.event.seq);
            Some(appended.event.seq)
        } else {
            None
        };
        room_seqs.push(seq);
    }

    // Assign each connection to the first target that reaches it. `groups[i]` are the connections that receive
    // frame `i`: one per room, then one room-less frame for users, connections and the broadcast.
    let mut seen: HashSet<ConnectionId> = plan.except.iter().cloned().collect();
    let mut groups: Vec<(ServerFrame, Vec<ConnectionId>)> = Vec::with_capacity(plan.rooms.len() + 1);
    for (room, seq) in plan.rooms.iter().zip(room_seqs) {
        let members = deps.store.room_members(room).await?;
        let targets = members.into_iter().map(|m| m.connection_id).filter(|c| seen.insert(c.clone())).collect();
        groups.push((ServerFrame::room_event(plan.event.as_str(), room.as_str(), seq, plan.data.clone()), targets));
    }
    let mut direct = Vec::new();
    for user in &plan.users {
        let members = deps.store.room_members(&RoomName::for_user(user)).await?;
        direct.extend(members.into_iter().map(|m| m.connection_id).filter(|c| seen.insert(c.clone())));
    }
    // Named connections are posted to even when the store does not know them: the Management API is the judge, and
    // a Gone answer is reported as pruned.
    direct.extend(plan.connections.iter().filter(|c| seen.insert((*c).clone())).cloned());
    if plan.broadcast {
        let everyone = deps.store.all_connections().await?;
        direct.extend(everyone.into_iter().filter(|c| seen.insert(c.clone())));
    }
    groups.push((ServerFrame::event(plan.event.as_str(), plan.data.clone()), direct));

    // Each distinct frame is serialised once. Groups go out one after another so the number of posts in flight
    // never exceeds the configured fan-out concurrency, however many rooms an emit names. The `/health` counter is
    // written meanwhile: neither waits for the other, and a Lambda is billed for every millisecond it waits.
    let deliveries = async {
        for (frame, targets) in groups.into_iter().filter(|(_, targets)| !targets.is_empty()) {
            report.recipients += targets.len();
            let outcome = deps.deliver_bytes(targets, Bytes::from(frame.to_json())).await;
            report.delivered += outcome.delivered.len();
            report.pruned += outcome.gone.len();
            report.failed += outcome.failed.len();
        }
    };
    tokio::join!(deliveries, deps.count_message());
    if let Some(notification) = &plan.notification {
        // Keyed ids need a time that every attempt agrees on; only a persisted emit has one (its first event's).
        // Without it, a retry after a failure among the notifications may notify a user twice.
        let stored = match (key, anchor) {
            (Some(key), Some(at)) => notify_keyed(deps, &plan.users, notification, key, at).await,
            _ => notify(deps, &plan.users, notification).await.map(|stored| stored.len()),
        };
        report.notified = stored.map_err(|error| match error {
            super::HandlerError::Store(store) => EmitError::Store(store),
            other => EmitError::Store(StoreError::backend(other)),
        })?;
    }
    tracing::info!(
        recipients = report.recipients,
        delivered = report.delivered,
        pruned = report.pruned,
        failed = report.failed,
        persisted = report.seqs.len(),
        "emitted"
    );
    Ok(report)
}

/// Notifies each user once per idempotency key, however often the emit is retried: the notification id is the
/// same on every attempt (see [`keyed_notification_id`]), and the store keeps one notification per id.
async fn notify_keyed(
    deps: &Deps,
    users: &[UserId],
    input: &NotificationInput,
    key: &str,
    at: DateTime<Utc>,
) -> Result<usize, super::HandlerError> {
    for user in users {
        notify_once(deps, user, input, keyed_notification_id(key, user, at)).await?;
    }
    // Counted whether this attempt or an earlier one stored them: the report describes the emit, not the attempt.
    Ok(users.len())
}

/// A UUIDv7 (notifications page in id order) whose time is `at` and whose other bits come from the key and the
/// user. `at` is the creation time of the emit's first stored room event, which a retry reads back from the
/// deduplicated append, so every attempt derives the same id.
fn keyed_notification_id(key: &str, user: &UserId, at: DateTime<Utc>) -> String {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let digest = Sha256::digest(format!("{key}\n{user}").as_bytes());
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::Config;
    use crate::push::recording::RecordingPusher;
    use crate::store::dynamo::DynamoStore;
    use crate::store::faulty::{Fault, FaultyStore};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{ConnectionRecord, HistoryQuery, NotificationQuery, Store};
    use crate::timer::OnTouchTimer;

    struct Fixture {
        deps: Deps,
        pusher: Arc<RecordingPusher>,
    }

    async fn fixture(configure: impl FnOnce(&mut Config)) -> Fixture {
        let mut config = Config::for_tests();
        configure(&mut config);
        let store = SqliteStore::in_memory().await.expect("in-memory store");
        let pusher = Arc::new(RecordingPusher::default());
        let deps = Deps::new(config, Arc::new(store), pusher.clone(), Arc::new(OnTouchTimer));
        Fixture { deps, pusher }
    }

    /// Puts a connection of `user` in the store, a member of its user room and of `rooms`.
    async fn connect(deps: &Deps, id: &str, user: &str, rooms: &[&str]) -> ConnectionId {
        let record = ConnectionRecord::for_tests(id, user);
        let mut joined = vec![RoomName::for_user(&record.user_id)];
        joined.extend(rooms.iter().map(|r| RoomName::parse(*r).expect("room")));
        deps.store.put_connection(&record, &joined).await.expect("put connection");
        record.connection_id
    }

    fn request(value: Value) -> EmitRequest {
        parse_request(value).expect("valid request")
    }

    #[tokio::test]
    async fn a_connection_reached_through_several_targets_gets_one_frame_from_the_first_room() {
        let f = fixture(|_| {}).await;
        let a = connect(&f.deps, "conn-a", "alice", &["calendar"]).await;
        let b = connect(&f.deps, "conn-b", "bob", &["calendar", "topic:x"]).await;
        let c = connect(&f.deps, "conn-c", "carol", &[]).await;
        let _bystander = connect(&f.deps, "conn-d", "dave", &[]).await;

        let report = handle(
            &f.deps,
            request(json!({
                "event": "appointment:created",
                "data": {"id": 1},
                "rooms": ["calendar", "topic:x"],
                "users": ["alice", "carol"],
                "connections": ["conn-b"],
            })),
        )
        .await
        .expect("emit");

        assert_eq!((report.recipients, report.delivered, report.pruned, report.failed), (3, 3, 0, 0));
        assert_eq!(f.pusher.sent().len(), 3);
        assert_eq!(
            f.pusher.sent_to(&a),
            [json!({"type": "event", "event": "appointment:created", "room": "calendar", "data": {"id": 1}})]
        );
        assert_eq!(f.pusher.sent_to(&b)[0]["room"], "calendar");
        assert_eq!(f.pusher.sent_to(&c), [json!({"type": "event", "event": "appointment:created", "data": {"id": 1}})]);
    }

    #[tokio::test]
    async fn the_excepted_connection_is_left_out() {
        let f = fixture(|_| {}).await;
        let a = connect(&f.deps, "conn-a", "alice", &["calendar"]).await;
        let b = connect(&f.deps, "conn-b", "bob", &["calendar"]).await;

        let report = handle(
            &f.deps,
            request(json!({"event": "calendar.sync", "rooms": ["calendar"], "exceptConnection": "conn-a"})),
        )
        .await
        .expect("emit");

        assert_eq!(report.recipients, 1);
        assert!(f.pusher.sent_to(&a).is_empty());
        assert_eq!(f.pusher.sent_to(&b)[0]["event"], "calendar.sync");
    }

    #[tokio::test]
    async fn persisted_emits_are_in_the_room_history_and_frames_carry_the_seq() {
        let f = fixture(|_| {}).await;
        let a = connect(&f.deps, "conn-a", "alice", &["booking:42"]).await;
        let body = json!({"event": "booking:status_changed", "data": {"status": "confirmed"}, "rooms": ["booking:42"], "persist": true});

        let first = handle(&f.deps, request(body.clone())).await.expect("first");
        let second = handle(&f.deps, request(body)).await.expect("second");

        assert_eq!(first.seqs.get("booking:42"), Some(&1));
        assert_eq!(second.seqs.get("booking:42"), Some(&2));
        let frames = f.pusher.sent_to(&a);
        assert_eq!((frames[0]["seq"].clone(), frames[1]["seq"].clone()), (json!(1), json!(2)));
        let room = RoomName::parse("booking:42").expect("room");
        let history = f.deps.store.history(&room, HistoryQuery::Latest { limit: 10 }).await.expect("history");
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].event, "booking:status_changed");
        assert_eq!(history[0].data, json!({"status": "confirmed"}));
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_delivers_once_and_answers_the_first_report() {
        let f = fixture(|_| {}).await;
        let a = connect(&f.deps, "conn-a", "alice", &[]).await;
        let body = json!({"event": "payment:failed", "users": ["alice"], "idempotencyKey": "pay-1"});

        let first = handle(&f.deps, request(body.clone())).await.expect("first");
        let second = handle(&f.deps, request(body)).await.expect("second");

        assert!(!first.duplicate && second.duplicate);
        assert_eq!(second.delivered, first.delivered);
        assert_eq!(f.pusher.sent_to(&a).len(), 1);
    }

    #[tokio::test]
    async fn gone_connections_are_pruned_and_counted() {
        let f = fixture(|_| {}).await;
        let a = connect(&f.deps, "conn-a", "alice", &["calendar"]).await;
        f.pusher.mark_gone(&a);

        let report = handle(&f.deps, request(json!({"event": "e", "rooms": ["calendar"]}))).await.expect("emit");

        assert_eq!((report.delivered, report.pruned), (0, 1));
        assert_eq!(f.deps.store.get_connection(&a).await.expect("lookup"), None);
    }

    #[tokio::test]
    async fn broadcast_is_refused_unless_configured() {
        let off = fixture(|_| {}).await;
        let refused = handle(&off.deps, request(json!({"event": "system:maintenance", "broadcast": true}))).await;
        assert!(matches!(refused, Err(EmitError::BroadcastDisabled)), "{refused:?}");

        let on = fixture(|config| config.broadcast_enabled = true).await;
        connect(&on.deps, "conn-a", "alice", &[]).await;
        connect(&on.deps, "conn-b", "bob", &[]).await;
        let report = handle(&on.deps, request(json!({"event": "system:maintenance", "broadcast": true})))
            .await
            .expect("broadcast");
        assert_eq!(report.delivered, 2);
    }

    #[tokio::test]
    async fn emit_counts_one_message() {
        let f = fixture(|_| {}).await;
        connect(&f.deps, "conn-a", "alice", &[]).await;

        handle(&f.deps, request(json!({"event": "e", "users": ["alice"]}))).await.expect("emit");

        assert_eq!(f.deps.store.stats().await.expect("stats").total_messages, 1);
    }

    #[tokio::test]
    async fn bad_payloads_get_precise_codes_and_statuses() {
        let f = fixture(|_| {}).await;
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        let cases = [
            (json!([1, 2]), "INVALID_JSON", 400),
            (json!({"rooms": ["calendar"]}), "MISSING_EVENT", 400),
            (json!({"event": "", "rooms": ["calendar"]}), "INVALID_EVENT", 400),
            (json!({"event": "e", "rooms": ["bad room"]}), "INVALID_ROOM", 400),
            (json!({"event": "e", "users": ["a:b"]}), "INVALID_USER", 400),
            (json!({"event": "e", "connections": ["a/b"]}), "INVALID_CONNECTION", 400),
            (json!({"event": "e"}), "MISSING_TARGETS", 400),
            (json!({"event": "e", "rooms": "calendar"}), "INVALID_PAYLOAD", 400),
            (json!({"event": "e", "rooms": ["calendar"], "colour": "red"}), "INVALID_PAYLOAD", 400),
            (json!({"event": "e", "users": ["u1"], "persist": true}), "INVALID_PERSIST", 400),
            (json!({"event": "e", "rooms": ["calendar"], "idempotencyKey": ""}), "INVALID_IDEMPOTENCY_KEY", 400),
            (
                json!({"event": "e", "rooms": ["calendar"], "notification": {"title": "t", "message": "m"}}),
                "INVALID_NOTIFICATION",
                400,
            ),
            (json!({"event": "e", "rooms": ["calendar"], "data": big}), "PAYLOAD_TOO_LARGE", 413),
            (json!({"event": "e", "broadcast": true}), "BROADCAST_DISABLED", 403),
        ];
        for (body, code, status) in cases {
            let answer = handle_value(&f.deps, body.clone()).await.expect("caller errors are answers, not faults");
            assert_eq!(answer["error"]["code"], code, "{body}");
            assert_eq!(answer["status"], status, "{body}");
        }
        assert!(f.pusher.sent().is_empty());
    }

    #[tokio::test]
    async fn the_lambda_entry_point_answers_the_report_as_json() {
        let f = fixture(|_| {}).await;
        connect(&f.deps, "conn-a", "alice", &[]).await;

        let answer = handle_value(&f.deps, json!({"event": "appointment.created", "data": {}, "users": ["alice"]}))
            .await
            .expect("emit");

        assert_eq!(answer["recipients"], 1);
        assert_eq!(answer["delivered"], 1);
        assert_eq!(answer["duplicate"], false);
    }

    #[tokio::test]
    async fn a_notification_is_stored_for_each_user_and_announced() {
        let f = fixture(|_| {}).await;
        let a = connect(&f.deps, "conn-a", "alice", &[]).await;

        let report = handle(
            &f.deps,
            request(json!({
                "event": "appointment:reminder",
                "users": ["alice"],
                "notification": {"title": "Reminder", "message": "Grooming at 2pm"},
            })),
        )
        .await
        .expect("emit");

        assert_eq!(report.notified, 1);
        let events: Vec<Value> = f.pusher.sent_to(&a).into_iter().map(|f| f["event"].clone()).collect();
        assert_eq!(events, [json!("appointment:reminder"), json!("notification:new")]);
    }

    // ---- exactly once under store faults ------------------------------------------------------------------------

    /// Fails the k-th store call of one keyed, persisted emit to three rooms with a notification, for every k, then
    /// retries with a healthy store: every room holds the event once with the seq of its first append, the user
    /// holds one notification, the key answers repeats, and every member got the event with one seq per room.
    async fn every_failing_call_of_a_keyed_emit_is_completed_once_by_the_retry(store: Arc<dyn Store>) {
        let healthy_calls = {
            let case = FaultCase::arrange(store.clone()).await;
            let report = handle(&case.deps(None), request(case.body())).await.expect("healthy emit");
            assert!(!report.duplicate);
            case.faulty.calls()
        };
        assert!(healthy_calls >= 10, "one emit makes {healthy_calls} store calls");

        for k in 1..=healthy_calls {
            let case = FaultCase::arrange(store.clone()).await;
            case.faulty.set_faults(vec![Fault::Call(k)]);
            let failed = handle(&case.deps(None), request(case.body())).await;
            case.faulty.set_faults(Vec::new());

            let retried = handle(&case.deps(None), request(case.body())).await;
            let repeat = handle(&case.deps(None), request(case.body())).await.expect("repeat");

            let report = match (&failed, retried) {
                // A failure of a best-effort step (the message counter) leaves a complete emit.
                (Ok(first), Ok(retry)) => {
                    assert!(retry.duplicate, "k={k}: {retry:?}");
                    first.clone()
                }
                (Err(EmitError::Store(_)), Ok(retry)) => {
                    assert!(!retry.duplicate, "k={k}: the failed attempt recorded no answer");
                    retry
                }
                (first, retry) => panic!("k={k}: first {first:?}, retry {retry:?}"),
            };
            assert!(repeat.duplicate, "k={k}: the key answers repeats");
            case.assert_complete_once(k, &report).await;
        }
    }

    /// A store outage from the k-th call on: the failed attempt cannot even release its key, so the key must free
    /// itself when its lease ends. A ttl of 0 makes the lease end at once, which is what a later retry sees.
    async fn an_outage_at_any_call_of_a_keyed_emit_never_leaves_the_key_claimed(store: Arc<dyn Store>) {
        let healthy_calls = {
            let case = FaultCase::arrange(store.clone()).await;
            handle(&case.deps(Some(0)), request(case.body())).await.expect("healthy emit");
            case.faulty.calls()
        };
        for k in 1..=healthy_calls {
            let case = FaultCase::arrange(store.clone()).await;
            case.faulty.set_faults(vec![Fault::From(k)]);
            let failed = handle(&case.deps(Some(0)), request(case.body())).await;
            case.faulty.set_faults(Vec::new());

            let retried = handle(&case.deps(Some(0)), request(case.body())).await;

            let report = match (failed, retried) {
                (Ok(_), Ok(retry)) | (Err(EmitError::Store(_)), Ok(retry)) => retry,
                (first, retry) => panic!("k={k}: first {first:?}, retry {retry:?}"),
            };
            case.assert_complete_once(k, &report).await;
        }
    }

    /// Fresh rooms, user and key on a shared store, so every k runs on its own data.
    struct FaultCase {
        faulty: Arc<FaultyStore>,
        pusher: Arc<RecordingPusher>,
        rooms: Vec<RoomName>,
        user: UserId,
        member: ConnectionId,
        key: String,
    }

    impl FaultCase {
        async fn arrange(store: Arc<dyn Store>) -> Self {
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let rooms: Vec<RoomName> =
                (0..3).map(|i| RoomName::parse(format!("booking:{i}-{suffix}")).expect("room")).collect();
            let user = UserId::parse(format!("user-{suffix}")).expect("user");
            let record = ConnectionRecord::for_tests(&format!("c-{suffix}"), user.as_str());
            let mut joined = vec![RoomName::for_user(&user)];
            joined.extend(rooms.iter().cloned());
            store.put_connection(&record, &joined).await.expect("put connection");
            Self {
                faulty: Arc::new(FaultyStore::new(store)),
                pusher: Arc::new(RecordingPusher::default()),
                rooms,
                user,
                member: record.connection_id,
                key: format!("key-{suffix}"),
            }
        }

        fn deps(&self, ttl_seconds: Option<u64>) -> Deps {
            let mut config = Config::for_tests();
            if let Some(ttl) = ttl_seconds {
                config.idempotency_ttl_seconds = ttl;
            }
            Deps::new(config, self.faulty.clone(), self.pusher.clone(), Arc::new(OnTouchTimer))
        }

        fn body(&self) -> Value {
            json!({
                "event": "booking:confirmed",
                "data": {"ok": true},
                "rooms": self.rooms.iter().map(RoomName::as_str).collect::<Vec<_>>(),
                "users": [self.user.as_str()],
                "persist": true,
                "notification": {"title": "Confirmed", "message": "See you soon"},
                "idempotencyKey": self.key,
            })
        }

        async fn assert_complete_once(&self, k: u64, report: &EmitReport) {
            let store = self.faulty.inner();
            for room in &self.rooms {
                let history = store.history(room, HistoryQuery::Latest { limit: 10 }).await.expect("history");
                let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
                assert_eq!(seqs, [1], "k={k}: {room} holds the event once");
                assert_eq!(report.seqs.get(room.as_str()), Some(&1), "k={k}: the report names the stored seq");
            }
            let query = NotificationQuery { unread_only: false, before_id: None, limit: 10 };
            let notes = store.list_notifications(&self.user, &query).await.expect("notifications");
            assert_eq!(notes.len(), 1, "k={k}: one notification");
            assert_eq!(store.unread_notifications(&self.user).await.expect("unread"), 1, "k={k}: counted once");
            assert_eq!(report.notified, 1, "k={k}");

            // The member is in every room, so it gets the frame of the first room. Delivery is at least once:
            // a frame seen twice carries the same (room, seq), which is how the client recognises it.
            let seen: HashSet<(String, u64)> = self
                .pusher
                .sent_to(&self.member)
                .iter()
                .filter(|f| f["event"] == "booking:confirmed")
                .map(|f| (f["room"].as_str().unwrap_or("").to_owned(), f["seq"].as_u64().unwrap_or(0)))
                .collect();
            assert_eq!(seen, HashSet::from([(self.rooms[0].to_string(), 1)]), "k={k}");
        }
    }

    #[tokio::test]
    async fn every_failing_call_of_a_keyed_emit_is_completed_once_on_sqlite() {
        let store = Arc::new(SqliteStore::in_memory().await.expect("in-memory store"));
        every_failing_call_of_a_keyed_emit_is_completed_once_by_the_retry(store).await;
    }

    #[tokio::test]
    async fn an_outage_of_a_keyed_emit_never_leaves_the_key_claimed_on_sqlite() {
        let store = Arc::new(SqliteStore::in_memory().await.expect("in-memory store"));
        an_outage_at_any_call_of_a_keyed_emit_never_leaves_the_key_claimed(store).await;
    }

    /// A store on a fresh DynamoDB Local table, or `None` (the test skips) without `DYNAMODB_ENDPOINT`.
    async fn dynamo_store() -> Option<Arc<dyn Store>> {
        let endpoint = crate::testing::integration_var("DYNAMODB_ENDPOINT", "DynamoDB Local")?;
        let table = format!("bellhop-test-{}", uuid::Uuid::new_v4().simple());
        let store = DynamoStore::from_config(&table, Some(&endpoint)).await;
        store.create_table_if_missing().await.expect("create test table");
        Some(Arc::new(store))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_failing_call_of_a_keyed_emit_is_completed_once_on_dynamodb() {
        let Some(store) = dynamo_store().await else { return };
        every_failing_call_of_a_keyed_emit_is_completed_once_by_the_retry(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_of_a_keyed_emit_never_leaves_the_key_claimed_on_dynamodb() {
        let Some(store) = dynamo_store().await else { return };
        an_outage_at_any_call_of_a_keyed_emit_never_leaves_the_key_claimed(store).await;
    }

    #[tokio::test]
    async fn the_lambda_entry_point_fails_on_a_held_key_so_lambda_retries() {
        let f = fixture(|_| {}).await;
        let key = "emit:held";
        f.deps.store.claim_idempotency(key, 60).await.expect("another attempt holds the key");

        let answer =
            handle_value(&f.deps, json!({"event": "e", "rooms": ["calendar"], "idempotencyKey": "held"})).await;

        assert!(matches!(answer, Err(EmitError::IdempotencyInFlight)), "{answer:?}");
    }
}
