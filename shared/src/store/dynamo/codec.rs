//! Records to DynamoDB items and back: attribute constructors, typed readers that turn a malformed item into a
//! [`DynamoItemError`], and one pair of functions per record type. Nothing here does I/O.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::DynamoItemError;
use super::keys::{SK, TTL};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;
use crate::store::{
    CallRecord, CallState, CallType, ConnectionRecord, Notification, PresenceRecord, PresenceStatus, RoomEvent,
    StoreError, StoreResult,
};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Timestamps are stored as RFC 3339 strings with as many fractional digits as they carry, so they round-trip
/// exactly (to the nanosecond) and stay readable in the console.
pub(super) fn ts(at: &DateTime<Utc>) -> AttributeValue {
    s(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

// ---- reading items -----------------------------------------------------------------------------------------------

pub(super) fn attr_s<'a>(item: &'a Item, name: &'static str) -> StoreResult<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

pub(super) fn attr_opt_s<'a>(item: &'a Item, name: &'static str) -> StoreResult<Option<&'a str>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

pub(super) fn attr_i64(item: &Item, name: &'static str) -> StoreResult<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| StoreError::backend(DynamoItemError::Invalid(name))),
        _ => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

/// A counter that may be absent (0) and, after drift, negative (read as 0).
pub(super) fn attr_count(item: Option<&Item>, name: &'static str) -> StoreResult<u64> {
    match item {
        Some(item) if item.contains_key(name) => attr_i64(item, name).map(|v| u64::try_from(v).unwrap_or(0)),
        _ => Ok(0),
    }
}

pub(super) fn attr_u64(item: &Item, name: &'static str) -> StoreResult<u64> {
    u64::try_from(attr_i64(item, name)?).map_err(|_| StoreError::backend(DynamoItemError::Invalid(name)))
}

pub(super) fn attr_bool(item: &Item, name: &'static str) -> StoreResult<bool> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Ok(*v),
        _ => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

pub(super) fn attr_time(item: &Item, name: &'static str) -> StoreResult<DateTime<Utc>> {
    parse_time(attr_s(item, name)?, name)
}

pub(super) fn attr_opt_time(item: &Item, name: &'static str) -> StoreResult<Option<DateTime<Utc>>> {
    attr_opt_s(item, name)?.map(|raw| parse_time(raw, name)).transpose()
}

pub(super) fn parse_time(raw: &str, name: &'static str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|source| StoreError::backend(DynamoItemError::Timestamp { name, source }))
}

pub(super) fn attr_json(item: &Item, name: &'static str) -> StoreResult<Value> {
    serde_json::from_str(attr_s(item, name)?)
        .map_err(|source| StoreError::backend(DynamoItemError::Json { name, source }))
}

pub(super) fn attr_user(item: &Item, name: &'static str) -> StoreResult<UserId> {
    UserId::parse(attr_s(item, name)?).map_err(|_| StoreError::backend(DynamoItemError::Invalid(name)))
}

pub(super) fn attr_opt_user(item: &Item, name: &'static str) -> StoreResult<Option<UserId>> {
    attr_opt_s(item, name)?
        .map(|raw| UserId::parse(raw).map_err(|_| StoreError::backend(DynamoItemError::Invalid(name))))
        .transpose()
}

pub(super) fn attr_room(item: &Item, name: &'static str) -> StoreResult<RoomName> {
    RoomName::parse(attr_s(item, name)?).map_err(|_| StoreError::backend(DynamoItemError::Invalid(name)))
}

pub(super) fn attr_string_set(item: &Item, name: &'static str) -> StoreResult<Vec<String>> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(AttributeValue::Ss(values)) => Ok(values.clone()),
        Some(_) => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

/// The part of a sort key after `prefix`.
pub(super) fn sk_suffix<'a>(item: &'a Item, prefix: &str) -> StoreResult<&'a str> {
    attr_s(item, SK)?.strip_prefix(prefix).ok_or_else(|| StoreError::backend(DynamoItemError::Invalid(SK)))
}

pub(super) fn json_string(value: &Value) -> AttributeValue {
    // Serialising a `Value` cannot fail: its map keys are strings and it holds no foreign types.
    s(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
}

pub(super) fn put_opt(item: &mut Item, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), s(value));
    }
}

// ---- records ⇄ items ---------------------------------------------------------------------------------------------

pub(super) fn connection_attrs(item: &mut Item, c: &ConnectionRecord) {
    item.insert("connection_id".into(), s(c.connection_id.as_str()));
    item.insert("user_id".into(), s(c.user_id.as_str()));
    put_opt(item, "role", c.role.as_deref());
    put_opt(item, "name", c.name.as_deref());
    put_opt(item, "email", c.email.as_deref());
    item.insert("connected_at".into(), ts(&c.connected_at));
    item.insert("expires_at".into(), ts(&c.expires_at));
    if let Some(at) = &c.token_expires_at {
        item.insert("token_expires_at".into(), ts(at));
    }
    item.insert(TTL.into(), n(c.expires_at.timestamp()));
}

pub(super) fn connection_from_item(item: &Item) -> StoreResult<ConnectionRecord> {
    Ok(ConnectionRecord {
        connection_id: ConnectionId::parse(attr_s(item, "connection_id")?)
            .map_err(|_| StoreError::backend(DynamoItemError::Invalid("connection_id")))?,
        user_id: attr_user(item, "user_id")?,
        role: attr_opt_s(item, "role")?.map(str::to_owned),
        name: attr_opt_s(item, "name")?.map(str::to_owned),
        email: attr_opt_s(item, "email")?.map(str::to_owned),
        connected_at: attr_time(item, "connected_at")?,
        expires_at: attr_time(item, "expires_at")?,
        token_expires_at: attr_opt_time(item, "token_expires_at")?,
    })
}

pub(super) fn event_attrs(item: &mut Item, e: &RoomEvent) {
    item.insert("room".into(), s(e.room.as_str()));
    item.insert("seq".into(), n(e.seq));
    item.insert("id".into(), s(&e.id));
    item.insert("event".into(), s(&e.event));
    item.insert("data".into(), json_string(&e.data));
    put_opt(item, "sender", e.sender.as_ref().map(UserId::as_str));
    put_opt(item, "client_msg_id", e.client_msg_id.as_deref());
    item.insert("created_at".into(), ts(&e.created_at));
}

pub(super) fn event_from_item(item: &Item) -> StoreResult<RoomEvent> {
    Ok(RoomEvent {
        room: attr_room(item, "room")?,
        seq: attr_u64(item, "seq")?,
        id: attr_s(item, "id")?.to_owned(),
        event: attr_s(item, "event")?.to_owned(),
        data: attr_json(item, "data")?,
        sender: attr_opt_user(item, "sender")?,
        client_msg_id: attr_opt_s(item, "client_msg_id")?.map(str::to_owned),
        created_at: attr_time(item, "created_at")?,
    })
}

pub(super) fn notification_from_item(item: &Item) -> StoreResult<Notification> {
    Ok(Notification {
        id: attr_s(item, "id")?.to_owned(),
        user_id: attr_user(item, "user_id")?,
        title: attr_s(item, "title")?.to_owned(),
        message: attr_s(item, "message")?.to_owned(),
        kind: attr_opt_s(item, "kind")?.map(str::to_owned),
        data: attr_json(item, "data")?,
        read: attr_bool(item, "read")?,
        created_at: attr_time(item, "created_at")?,
    })
}

pub(super) fn call_type_str(t: CallType) -> &'static str {
    match t {
        CallType::Audio => "audio",
        CallType::Video => "video",
    }
}

pub(super) fn call_from_item(item: &Item) -> StoreResult<CallRecord> {
    let call_type = match attr_s(item, "call_type")? {
        "audio" => CallType::Audio,
        "video" => CallType::Video,
        _ => return Err(StoreError::backend(DynamoItemError::Invalid("call_type"))),
    };
    Ok(CallRecord {
        call_id: attr_s(item, "call_id")?.to_owned(),
        caller: attr_user(item, "caller")?,
        recipient: attr_user(item, "recipient")?,
        call_type,
        visit_id: attr_opt_s(item, "visit_id")?.map(str::to_owned),
        state: CallState::parse(attr_s(item, "state")?)
            .ok_or_else(|| StoreError::backend(DynamoItemError::Invalid("state")))?,
        created_at: attr_time(item, "created_at")?,
        answered_at: attr_opt_time(item, "answered_at")?,
        ended_at: attr_opt_time(item, "ended_at")?,
    })
}

pub(super) fn presence_from_item(item: &Item) -> StoreResult<PresenceRecord> {
    Ok(PresenceRecord {
        user_id: attr_user(item, "user_id")?,
        status: PresenceStatus::parse(attr_s(item, "status")?)
            .ok_or_else(|| StoreError::backend(DynamoItemError::Invalid("status")))?,
        custom_status: attr_opt_s(item, "custom_status")?.map(str::to_owned),
        last_seen: attr_time(item, "last_seen")?,
    })
}
