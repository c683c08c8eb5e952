//! Room history: sequence numbers allocated inside the append transaction, idempotent appends, paging, unread
//! counts and read watermarks.

use super::SqliteStore;
use super::codec::{bound_from, event_from_row, from_millis};
use crate::ids::UserId;
use crate::rooms::RoomName;
use crate::store::{Appended, HistoryQuery, NewRoomEvent, RoomEvent, StoreError, StoreResult};

pub(super) async fn append_event(store: &SqliteStore, event: NewRoomEvent) -> StoreResult<Appended> {
    let mut tx = store.write_tx().await?;
    // The duplicate check runs inside the write transaction, so two racing retries cannot both miss it.
    if let Some(client_msg_id) = &event.client_msg_id {
        let existing =
            sqlx::query("SELECT * FROM room_events WHERE room = ? AND COALESCE(sender, '') = ? AND client_msg_id = ?")
                .bind(event.room.as_str())
                .bind(event.sender.as_ref().map_or("", UserId::as_str))
                .bind(client_msg_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        if let Some(row) = existing {
            return Ok(Appended { event: event_from_row(&row)?, duplicate: true });
        }
    }
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO room_counters (room, last_seq) VALUES (?, 1)
         ON CONFLICT (room) DO UPDATE SET last_seq = last_seq + 1
         RETURNING last_seq",
    )
    .bind(event.room.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::backend)?;
    let data = serde_json::to_string(&event.data).map_err(StoreError::backend)?;
    sqlx::query(
        "INSERT INTO room_events (room, seq, id, event, data, sender, client_msg_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.room.as_str())
    .bind(seq)
    .bind(&event.id)
    .bind(&event.event)
    .bind(data)
    .bind(event.sender.as_ref().map(UserId::as_str))
    .bind(event.client_msg_id.as_deref())
    .bind(event.created_at.timestamp_millis())
    .execute(&mut *tx)
    .await
    .map_err(StoreError::backend)?;
    tx.commit().await.map_err(StoreError::backend)?;
    let stored = RoomEvent {
        room: event.room,
        seq: u64::try_from(seq).map_err(StoreError::backend)?,
        id: event.id,
        event: event.event,
        data: event.data,
        sender: event.sender,
        client_msg_id: event.client_msg_id,
        // Returned as stored, so the answer equals what a later read gives back.
        created_at: from_millis("room_events.created_at", event.created_at.timestamp_millis())?,
    };
    Ok(Appended { event: stored, duplicate: false })
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
