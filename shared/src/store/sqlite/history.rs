//! Room history: sequence numbers allocated inside the append statement, idempotent appends, paging, unread counts
//! and read watermarks.

use rusqlite::{Connection, params};

use super::codec::{bound_from, event_from_row, from_millis};
use super::{SqliteStore, all, execute, one, optional, optional_scalar, scalar};
use crate::ids::UserId;
use crate::rooms::RoomName;
use crate::store::{Appended, HistoryQuery, NewRoomEvent, RoomEvent, StoreError, StoreResult};

/// The append, one statement: the next `seq` is computed inside the INSERT (a lookup at the end of the `(room, seq)`
/// primary key), and a duplicate (room, sender, client_msg_id) hits the unique index and inserts nothing. A single
/// statement is atomic on its own and the writer connection runs one at a time, so there is no race between
/// allocating the number and storing the event. Events are never deleted, so the largest stored `seq` is the room's
/// counter. Parameters: room, id, event, data, sender, client_msg_id, created_at.
const APPEND: &str = "INSERT INTO room_events (room, seq, id, event, data, sender, client_msg_id, created_at)
     VALUES (?1, COALESCE((SELECT MAX(seq) FROM room_events WHERE room = ?1), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT DO NOTHING
     RETURNING seq";

/// One statement in the common case; only a duplicate costs a second one, to read the first event back.
pub(super) async fn append_event(store: &SqliteStore, event: NewRoomEvent) -> StoreResult<Appended> {
    store.write(|connection| {
        let inserted = insert_event(connection, &event)?;
        finish_append(connection, event, inserted, false)
    })
}

/// Participation, the append and the message count in one transaction, so a message is counted exactly when it is
/// stored, and the three writes cost one commit.
pub(super) async fn append_message(store: &SqliteStore, event: NewRoomEvent) -> StoreResult<Appended> {
    if event.sender.is_none() {
        return append_event(store, event).await;
    }
    store.write_tx(|connection| {
        execute(
            connection,
            "INSERT INTO participation (user_id, room) VALUES (?, ?) ON CONFLICT (user_id, room) DO NOTHING",
            params![event.sender.as_ref().map(UserId::as_str), event.room.as_str()],
        )?;
        let inserted = insert_event(connection, &event)?;
        if inserted.is_some() {
            execute(connection, "UPDATE stats SET value = value + 1 WHERE name = 'total_messages'", [])?;
        }
        finish_append(connection, event, inserted, true)
    })
}

/// Runs [`APPEND`]: the new event's `seq`, or `None` for a duplicate.
fn insert_event(connection: &Connection, event: &NewRoomEvent) -> StoreResult<Option<i64>> {
    let data = serde_json::to_string(&event.data).map_err(StoreError::backend)?;
    optional_scalar(
        connection,
        APPEND,
        params![
            event.room.as_str(),
            event.id,
            event.event,
            data,
            event.sender.as_ref().map(UserId::as_str),
            event.client_msg_id.as_deref(),
            event.created_at.timestamp_millis(),
        ],
    )
}

/// The answer to an append whose INSERT returned `inserted` (the new `seq`, or nothing for a duplicate).
fn finish_append(
    connection: &Connection,
    event: NewRoomEvent,
    inserted: Option<i64>,
    counted: bool,
) -> StoreResult<Appended> {
    let Some(seq) = inserted else {
        // Only the client-message index can refuse the row: the seq was computed in the same statement.
        let first = one(
            connection,
            "SELECT * FROM room_events WHERE room = ? AND COALESCE(sender, '') = ? AND client_msg_id = ?",
            params![
                event.room.as_str(),
                event.sender.as_ref().map_or("", UserId::as_str),
                event.client_msg_id.as_deref()
            ],
            event_from_row,
        )?;
        return Ok(Appended { event: first, duplicate: true, counted });
    };
    let created_at = event.created_at.timestamp_millis();
    let stored = RoomEvent {
        room: event.room,
        seq: u64::try_from(seq).map_err(StoreError::backend)?,
        id: event.id,
        event: event.event,
        data: event.data,
        sender: event.sender,
        client_msg_id: event.client_msg_id,
        // Returned as stored, so the answer equals what a later read gives back.
        created_at: from_millis("room_events.created_at", created_at)?,
    };
    Ok(Appended { event: stored, duplicate: false, counted })
}

pub(super) async fn history(store: &SqliteStore, room: &RoomName, query: HistoryQuery) -> StoreResult<Vec<RoomEvent>> {
    let (sql, bound, limit) = match query {
        HistoryQuery::Latest { limit } => {
            ("SELECT * FROM room_events WHERE room = ? AND seq <= ? ORDER BY seq DESC LIMIT ?", i64::MAX, limit)
        }
        HistoryQuery::Before { before, limit } => (
            "SELECT * FROM room_events WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            bound_from(before),
            limit,
        ),
        HistoryQuery::After { after, limit } => {
            ("SELECT * FROM room_events WHERE room = ? AND seq > ? ORDER BY seq ASC LIMIT ?", bound_from(after), limit)
        }
    };
    let mut events = store
        .read(|connection| all(connection, sql, params![room.as_str(), bound, i64::from(limit)], event_from_row))?;
    // Pages taken from the newest end are read backwards; callers always get ascending order.
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

pub(super) async fn get_event(store: &SqliteStore, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>> {
    store.read(|connection| {
        optional(
            connection,
            "SELECT * FROM room_events WHERE room = ? AND id = ? LIMIT 1",
            params![room.as_str(), id],
            event_from_row,
        )
    })
}

pub(super) async fn count_unread(
    store: &SqliteStore,
    room: &RoomName,
    after_seq: u64,
    reader: &UserId,
) -> StoreResult<u64> {
    let count: i64 = store.read(|connection| {
        scalar(
            connection,
            "SELECT COUNT(*) FROM room_events WHERE room = ? AND seq > ? AND (sender IS NULL OR sender <> ?)",
            params![room.as_str(), bound_from(after_seq), reader.as_str()],
        )
    })?;
    u64::try_from(count).map_err(StoreError::backend)
}

pub(super) async fn mark_read(store: &SqliteStore, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64> {
    let seq = i64::try_from(seq).map_err(StoreError::backend)?;
    let watermark: i64 = store.write(|connection| {
        scalar(
            connection,
            "INSERT INTO read_watermarks (user_id, room, seq) VALUES (?, ?, ?)
             ON CONFLICT (user_id, room) DO UPDATE SET seq = MAX(seq, excluded.seq)
             RETURNING seq",
            params![user.as_str(), room.as_str(), seq],
        )
    })?;
    u64::try_from(watermark).map_err(StoreError::backend)
}

pub(super) async fn read_watermark(store: &SqliteStore, user: &UserId, room: &RoomName) -> StoreResult<u64> {
    let watermark: Option<i64> = store.read(|connection| {
        optional_scalar(
            connection,
            "SELECT seq FROM read_watermarks WHERE user_id = ? AND room = ?",
            params![user.as_str(), room.as_str()],
        )
    })?;
    u64::try_from(watermark.unwrap_or(0)).map_err(StoreError::backend)
}
