//! Rows to records: typed column readers that turn a value no valid write could produce into an error, and one
//! function per record type. Nothing here does I/O.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::FromSql;
use serde_json::Value;

use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;
use crate::store::{
    CallRecord, CallState, CallType, ConnectionRecord, Notification, RoomEvent, StoreError, StoreResult,
};

/// A value read back from the database that no valid write could have produced.
#[derive(Debug, thiserror::Error)]
#[error("stored {column} `{value}` is not valid")]
pub(super) struct InvalidValue {
    column: &'static str,
    value: String,
}

pub(super) fn invalid(column: &'static str, value: impl Into<String>) -> StoreError {
    StoreError::backend(InvalidValue { column, value: value.into() })
}

/// A sequence bound for a query: anything beyond SQLite's integer range behaves as "beyond every event".
pub(super) fn bound_from(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub(super) fn call_type_str(call_type: CallType) -> &'static str {
    match call_type {
        CallType::Audio => "audio",
        CallType::Video => "video",
    }
}

pub(super) fn column<T: FromSql>(row: &Row<'_>, name: &str) -> StoreResult<T> {
    row.get(name).map_err(StoreError::backend)
}

pub(super) fn user_from(row: &Row<'_>, name: &str) -> StoreResult<UserId> {
    UserId::parse(column::<String>(row, name)?).map_err(StoreError::backend)
}

pub(super) fn connection_id_from(row: &Row<'_>, name: &str) -> StoreResult<ConnectionId> {
    ConnectionId::parse(column::<String>(row, name)?).map_err(StoreError::backend)
}

pub(super) fn room_from(row: &Row<'_>, name: &str) -> StoreResult<RoomName> {
    RoomName::parse(column::<String>(row, name)?).map_err(StoreError::backend)
}

pub(super) fn from_millis(column: &'static str, ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| invalid(column, ms.to_string()))
}

pub(super) fn time_from(row: &Row<'_>, name: &'static str) -> StoreResult<DateTime<Utc>> {
    from_millis(name, column(row, name)?)
}

pub(super) fn optional_time_from(row: &Row<'_>, name: &'static str) -> StoreResult<Option<DateTime<Utc>>> {
    column::<Option<i64>>(row, name)?.map(|ms| from_millis(name, ms)).transpose()
}

pub(super) fn json_from(row: &Row<'_>, name: &str) -> StoreResult<Value> {
    serde_json::from_str(&column::<String>(row, name)?).map_err(StoreError::backend)
}

pub(super) fn connection_from_row(row: &Row<'_>) -> StoreResult<ConnectionRecord> {
    Ok(ConnectionRecord {
        connection_id: connection_id_from(row, "connection_id")?,
        user_id: user_from(row, "user_id")?,
        role: column(row, "role")?,
        name: column(row, "name")?,
        email: column(row, "email")?,
        connected_at: time_from(row, "connected_at")?,
        expires_at: time_from(row, "expires_at")?,
        token_expires_at: optional_time_from(row, "token_expires_at")?,
    })
}

pub(super) fn event_from_row(row: &Row<'_>) -> StoreResult<RoomEvent> {
    Ok(RoomEvent {
        room: room_from(row, "room")?,
        seq: u64::try_from(column::<i64>(row, "seq")?).map_err(StoreError::backend)?,
        id: column(row, "id")?,
        event: column(row, "event")?,
        data: json_from(row, "data")?,
        sender: column::<Option<String>>(row, "sender")?.map(UserId::parse).transpose().map_err(StoreError::backend)?,
        client_msg_id: column(row, "client_msg_id")?,
        created_at: time_from(row, "created_at")?,
    })
}

pub(super) fn notification_from_row(row: &Row<'_>) -> StoreResult<Notification> {
    Ok(Notification {
        id: column(row, "id")?,
        user_id: user_from(row, "user_id")?,
        title: column(row, "title")?,
        message: column(row, "message")?,
        kind: column(row, "kind")?,
        data: json_from(row, "data")?,
        read: column(row, "read")?,
        created_at: time_from(row, "created_at")?,
    })
}

pub(super) fn call_from_row(row: &Row<'_>) -> StoreResult<CallRecord> {
    let call_type: String = column(row, "call_type")?;
    let state: String = column(row, "state")?;
    Ok(CallRecord {
        call_id: column(row, "call_id")?,
        caller: user_from(row, "caller")?,
        recipient: user_from(row, "recipient")?,
        call_type: match call_type.as_str() {
            "audio" => CallType::Audio,
            "video" => CallType::Video,
            _ => return Err(invalid("calls.call_type", call_type)),
        },
        visit_id: column(row, "visit_id")?,
        state: CallState::parse(&state).ok_or_else(|| invalid("calls.state", state))?,
        created_at: time_from(row, "created_at")?,
        answered_at: optional_time_from(row, "answered_at")?,
        ended_at: optional_time_from(row, "ended_at")?,
    })
}
