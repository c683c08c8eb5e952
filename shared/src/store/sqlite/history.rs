//! Room history: sequence numbers allocated inside the append statement, idempotent appends, paging, unread counts
//! and read watermarks.

use super::SqliteStore;
use super::codec::{bound_from, event_from_row, from_millis};
use crate::ids::UserId;
use crate::rooms::RoomName;
use crate::store::{Appended, HistoryQuery, NewRoomEvent, RoomEvent, StoreError, StoreResult};

/// The append, one statement: the next `seq` is computed inside the INSERT (a lookup at the end of the `(room, seq)`
/// primary key), and a duplicate (room, sender, client_msg_id) hits the unique index and inserts nothing. A single
/// statement is atomic on its own and the writer connection runs one at a time, so there is no explicit transaction
/// and no race between allocating the number and storing the event. Events are never deleted, so the largest stored
/// `seq` is the room's counter. Parameters: room, id, event, data, sender, client_msg_id, created_at.
macro_rules! append_statement {
    () => {
        "INSERT INTO room_events (room, seq, id, event, data, sender, client_msg_id, created_at)
         VALUES (?1, COALESCE((SELECT MAX(seq) FROM room_events WHERE room = ?1), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT DO NOTHING
         RETURNING seq"
    };
}

/// One statement in the common case; only a duplicate costs a second one, to read the first event back.
pub(super) async fn append_event(store: &SqliteStore, event: NewRoomEvent) -> StoreResult<Appended> {
    let inserted: Option<i64> = bind_append(sqlx::query_scalar(append_statement!()), &event)?
        .fetch_optional(&store.writer)
        .await
        .map_err(StoreError::backend)?;
    finish_append(store, event, inserted, false).await
}

/// Participation, the append and the message count as three statements of one query, which the writer's thread
/// runs in a single round trip instead of three. Each statement commits on its own, in this order: a failure after
/// the first leaves only the participation marker (as [`crate::store::Store::append_message`] allows), and the count
/// adds `changes()`, the rows the append inserted, so a duplicate counts nothing. No `BEGIN … COMMIT` wraps them: a
/// query abandoned halfway (a cancelled caller) would leave that transaction open on the only writer.
pub(super) async fn append_message(store: &SqliteStore, event: NewRoomEvent) -> StoreResult<Appended> {
    if event.sender.is_none() {
        return append_event(store, event).await;
    }
    let rows = bind_append(
        sqlx::query_scalar(concat!(
            "INSERT INTO participation (user_id, room) VALUES (?5, ?1) ON CONFLICT (user_id, room) DO NOTHING;",
            append_statement!(),
            ";UPDATE stats SET value = value + changes() WHERE name = 'total_messages';"
        )),
        &event,
    )?
    // All rows, never `fetch_optional`: that stops the worker at the first row, before the count runs.
    .fetch_all(&store.writer)
    .await
    .map_err(StoreError::backend)?;
    finish_append(store, event, rows.first().copied(), true).await
}

/// A query that returns the appended event's `seq`.
type AppendQuery<'q> = sqlx::query::QueryScalar<'q, sqlx::Sqlite, i64, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds the parameters of `append_statement!`, in its order.
fn bind_append<'q>(query: AppendQuery<'q>, event: &'q NewRoomEvent) -> StoreResult<AppendQuery<'q>> {
    let data = serde_json::to_string(&event.data).map_err(StoreError::backend)?;
    Ok(query
        .bind(event.room.as_str())
        .bind(&event.id)
        .bind(&event.event)
        .bind(data)
        .bind(event.sender.as_ref().map(UserId::as_str))
        .bind(event.client_msg_id.as_deref())
        .bind(event.created_at.timestamp_millis()))
}

/// The answer to an append whose INSERT returned `inserted` (the new `seq`, or nothing for a duplicate).
async fn finish_append(
    store: &SqliteStore,
    event: NewRoomEvent,
    inserted: Option<i64>,
    counted: bool,
) -> StoreResult<Appended> {
    let Some(seq) = inserted else {
        // Only the client-message index can refuse the row: the seq was computed in the same statement.
        let first =
            sqlx::query("SELECT * FROM room_events WHERE room = ? AND COALESCE(sender, '') = ? AND client_msg_id = ?")
                .bind(event.room.as_str())
                .bind(event.sender.as_ref().map_or("", UserId::as_str))
                .bind(event.client_msg_id.as_deref())
                .fetch_one(&store.writer)
                .await
                .map_err(StoreError::backend)?;
        return Ok(Appended { event: event_from_row(&first)?, duplicate: true, counted });
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
    let mut events = sqlx::query(sql)
        .bind(room.as_str())
        .bind(bound)
        .bind(i64::from(limit))
        .fetch_all(&store.reader)
        .await
        .map_err(StoreError::backend)?
        .iter()
        .map(event_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    // Pages taken from the newest end are read backwards; callers always get ascending order.
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

pub(super) async fn get_event(store: &SqliteStore, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>> {
    sqlx::query("SELECT * FROM room_events WHERE room = ? AND id = ? LIMIT 1")
        .bind(room.as_str())
        .bind(id)
        .fetch_optional(&store.reader)
        .await
        .map_err(StoreError::backend)?
        .map(|row| event_from_row(&row))
        .transpose()
}

pub(super) async fn count_unread(
    store: &SqliteStore,
    room: &RoomName,
    after_seq: u64,
    reader: &UserId,
) -> StoreResult<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM room_events WHERE room = ? AND seq > ? AND (sender IS NULL OR sender <> ?)",
    )
    .bind(room.as_str())
    .bind(bound_from(after_seq))
    .bind(reader.as_str())
    .fetch_one(&store.reader)
    .await
    .map_err(StoreError::backend)?;
    u64::try_from(count).map_err(StoreError::backend)
}

pub(super) async fn mark_read(store: &SqliteStore, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64> {
    let seq = i64::try_from(seq).map_err(StoreError::backend)?;
    let watermark: i64 = sqlx::query_scalar(
        "INSERT INTO read_watermarks (user_id, room, seq) VALUES (?, ?, ?)
         ON CONFLICT (user_id, room) DO UPDATE SET seq = MAX(seq, excluded.seq)
         RETURNING seq",
    )
    .bind(user.as_str())
    .bind(room.as_str())
    .bind(seq)
    .fetch_one(&store.writer)
    .await
    .map_err(StoreError::backend)?;
    u64::try_from(watermark).map_err(StoreError::backend)
}

pub(super) async fn read_watermark(store: &SqliteStore, user: &UserId, room: &RoomName) -> StoreResult<u64> {
    let watermark: Option<i64> = sqlx::query_scalar("SELECT seq FROM read_watermarks WHERE user_id = ? AND room = ?")
        .bind(user.as_str())
        .bind(room.as_str())
        .fetch_optional(&store.reader)
        .await
        .map_err(StoreError::backend)?;
    u64::try_from(watermark.unwrap_or(0)).map_err(StoreError::backend)
}
