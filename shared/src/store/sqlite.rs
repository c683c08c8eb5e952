//! SQLite adapter of the store port: the embedded default of the local harness, a file under the data dir or an
//! isolated in-memory database for tests.
//!
//! It owns the physical layout in `shared/migrations/` and how each [`Store`] operation maps onto it. Every write
//! goes through one writer connection and every multi-statement write runs in a `BEGIN IMMEDIATE` transaction, so
//! sequence allocation, idempotency claims and call transitions are atomic without ever surfacing `SQLITE_BUSY`.
//! File-backed stores read through a separate pool of read-only connections, which WAL mode lets run beside the
//! writer. It deliberately does not expire stale connections or old events: pruning is the caller's policy.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, Transaction};

use super::{
    Appended, CallRecord, CallState, CallTransition, CallType, ConnectionRecord, HistoryQuery, IdempotencyClaim,
    Member, NewRoomEvent, Notification, NotificationQuery, NotificationSelector, PresenceRecord, PresenceStatus,
    RemovedConnection, RoomEvent, Stats, Store, StoreError, StoreResult,
};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

/// How long a statement waits for a lock held by another connection (or process) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers of a file-backed store. WAL lets them run beside the single writer.
const MAX_READERS: u32 = 8;
/// Most bound values put into one `IN (…)` list, well under SQLite's variable limit.
const IN_LIST_CHUNK: usize = 500;

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The only connection that writes. One writer means writers queue in the pool instead of racing for the
    /// database lock, so `SQLITE_BUSY` never reaches a caller from inside this process.
    writer: SqlitePool,
    /// Read-only connections for a file-backed store; the writer pool itself for an in-memory one.
    reader: SqlitePool,
    /// Keeps a shared-cache in-memory database alive: SQLite drops it when its last connection closes, and the
    /// pool may close and reopen its connection (after an I/O error or a cancelled query). The mutex is never
    /// locked; it only makes the connection shareable between threads.
    _keep_alive: Option<Arc<Mutex<SqliteConnection>>>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A blocking call is acceptable here: this runs once, at start-up, before any request is served.
            std::fs::create_dir_all(parent).map_err(StoreError::backend)?;
        }
        let options = SqliteConnectOptions::new().filename(path).busy_timeout(BUSY_TIMEOUT).foreign_keys(true);
        let writer_options = options
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let writer = single_connection_pool().connect_with(writer_options).await.map_err(StoreError::backend)?;
        migrate(&writer).await?;
        // Readers open only after the writer created the file and switched it to WAL, which is persistent.
        let reader = SqlitePoolOptions::new()
            .max_connections(MAX_READERS)
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::backend)?;
        Ok(Self { writer, reader, _keep_alive: None })
    }

    /// A fresh in-memory database, independent of every other one, migrated and ready.
    pub async fn in_memory() -> Result<Self, StoreError> {
        // A uniquely named shared-cache database: the pool's connection and the keep-alive connection see the
        // same data, and no other store in the process can open it by accident.
        let options = SqliteConnectOptions::new()
            .filename(format!("file:bellhop-{}", uuid::Uuid::new_v4().simple()))
            .in_memory(true)
            .shared_cache(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let keep_alive = SqliteConnection::connect_with(&options).await.map_err(StoreError::backend)?;
        // One connection serves reads and writes: shared-cache connections lock whole tables, so more of them
        // would only trade queueing in the pool for lock errors.
        let writer = single_connection_pool().connect_with(options).await.map_err(StoreError::backend)?;
        migrate(&writer).await?;
        Ok(Self { reader: writer.clone(), writer, _keep_alive: Some(Arc::new(Mutex::new(keep_alive))) })
    }

    /// Starts a write transaction that takes the database's write lock at once, so a transaction that reads
    /// before it writes can never fail to upgrade its lock halfway through.
    async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::backend)
    }
}

#[async_trait]
impl Store for SqliteStore {
    // ---- connections ------------------------------------------------------------------------------------------

    /// Re-putting a connection id replaces its record and adds the new rooms to its memberships. Only a new
    /// connection counts in `total_connections`: a re-put is the same connection, as in the DynamoDB adapter.
    async fn put_connection(&self, connection: &ConnectionRecord, rooms: &[RoomName]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let existed: Option<i64> = sqlx::query_scalar("SELECT 1 FROM connections WHERE connection_id = ?")
            .bind(connection.connection_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        sqlx::query(
            "INSERT INTO connections (connection_id, user_id, role, name, email, connected_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (connection_id) DO UPDATE SET user_id = excluded.user_id, role = excluded.role,
                 name = excluded.name, email = excluded.email, connected_at = excluded.connected_at,
                 expires_at = excluded.expires_at",
        )
        .bind(connection.connection_id.as_str())
        .bind(connection.user_id.as_str())
        .bind(connection.role.as_deref())
        .bind(connection.name.as_deref())
        .bind(connection.email.as_deref())
        .bind(connection.connected_at.timestamp_millis())
        .bind(connection.expires_at.timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
        // A replaced connection may belong to another user now; its memberships must say so for fan-out.
        sqlx::query("UPDATE memberships SET user_id = ? WHERE connection_id = ?")
            .bind(connection.user_id.as_str())
            .bind(connection.connection_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        for room in rooms {
            insert_membership(&mut tx, &connection.connection_id, &connection.user_id, room).await?;
        }
        if existed.is_none() {
            sqlx::query("UPDATE stats SET value = value + 1 WHERE name = 'total_connections'")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        tx.commit().await.map_err(StoreError::backend)
    }

    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        sqlx::query("SELECT * FROM connections WHERE connection_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .map(|row| connection_from_row(&row))
            .transpose()
    }

    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<Option<RemovedConnection>> {
        let mut tx = self.write_tx().await?;
        // Memberships go first: deleting the connection would cascade them away before we learn their rooms.
        let rooms = sqlx::query("DELETE FROM memberships WHERE connection_id = ? RETURNING room")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::backend)?
            .iter()
            .map(|row| room_from(row, "room"))
            .collect::<StoreResult<BTreeSet<_>>>()?
            .into_iter()
            .collect();
        let row = sqlx::query("DELETE FROM connections WHERE connection_id = ? RETURNING *")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        let Some(row) = row else {
            // An unknown connection has no memberships either; dropping the transaction rolls back nothing.
            return Ok(None);
        };
        let record = connection_from_row(&row)?;
        let remaining: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connections WHERE user_id = ?")
            .bind(record.user_id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        tx.commit().await.map_err(StoreError::backend)?;
        Ok(Some(RemovedConnection { record, rooms, last_of_user: remaining == 0 }))
    }

    async fn user_connections(&self, user: &UserId) -> StoreResult<Vec<ConnectionRecord>> {
        sqlx::query("SELECT * FROM connections WHERE user_id = ? ORDER BY connected_at, connection_id")
            .bind(user.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .iter()
            .map(connection_from_row)
            .collect()
    }

    async fn all_connections(&self) -> StoreResult<Vec<ConnectionId>> {
        sqlx::query("SELECT connection_id FROM connections ORDER BY connection_id")
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .iter()
            .map(|row| connection_id_from(row, "connection_id"))
            .collect()
    }

    // ---- membership -------------------------------------------------------------------------------------------

    /// `NotFound` when the connection is unknown (a concurrent disconnect removed it): no membership may outlive
    /// its connection, or the room would stay active in the stats and in fan-out forever.
    async fn join_room(&self, connection: &ConnectionRecord, room: &RoomName) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM connections WHERE connection_id = ?")
            .bind(connection.connection_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let joined = insert_membership(&mut tx, &connection.connection_id, &connection.user_id, room).await?;
        tx.commit().await.map_err(StoreError::backend)?;
        Ok(joined)
    }

    async fn leave_room(&self, connection: &ConnectionId, room: &RoomName) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM memberships WHERE room = ? AND connection_id = ?")
            .bind(room.as_str())
            .bind(connection.as_str())
            .execute(&self.writer)
            .await
            .map_err(StoreError::backend)?;
        Ok(result.rows_affected() == 1)
    }

    async fn room_members(&self, room: &RoomName) -> StoreResult<Vec<Member>> {
        sqlx::query("SELECT connection_id, user_id FROM memberships WHERE room = ? ORDER BY connection_id")
            .bind(room.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .iter()
            .map(|row| {
                Ok(Member {
                    connection_id: connection_id_from(row, "connection_id")?,
                    user_id: user_from(row, "user_id")?,
                })
            })
            .collect()
    }

    async fn connection_rooms(&self, connection: &ConnectionId) -> StoreResult<Vec<RoomName>> {
        sqlx::query("SELECT room FROM memberships WHERE connection_id = ? ORDER BY room")
            .bind(connection.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .iter()
            .map(|row| room_from(row, "room"))
            .collect()
    }

    // ---- grants and participation -----------------------------------------------------------------------------

    async fn grant(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for user in users {
            sqlx::query("INSERT INTO grants (room, user_id) VALUES (?, ?) ON CONFLICT (room, user_id) DO NOTHING")
                .bind(room.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        tx.commit().await.map_err(StoreError::backend)
    }

    async fn revoke(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for user in users {
            sqlx::query("DELETE FROM grants WHERE room = ? AND user_id = ?")
                .bind(room.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        tx.commit().await.map_err(StoreError::backend)
    }

    async fn is_granted(&self, room: &RoomName, user: &UserId) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM grants WHERE room = ? AND user_id = ?")
            .bind(room.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::backend)?;
        Ok(found.is_some())
    }

    async fn room_grants(&self, room: &RoomName) -> StoreResult<Vec<UserId>> {
        sqlx::query("SELECT user_id FROM grants WHERE room = ? ORDER BY user_id")
            .bind(room.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .iter()
            .map(|row| user_from(row, "user_id"))
            .collect()
    }

    async fn record_participation(&self, user: &UserId, room: &RoomName) -> StoreResult<()> {
        sqlx::query("INSERT INTO participation (user_id, room) VALUES (?, ?) ON CONFLICT (user_id, room) DO NOTHING")
            .bind(user.as_str())
            .bind(room.as_str())
            .execute(&self.writer)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn user_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomName>> {
        // UNION (not UNION ALL) removes a room that is both granted and joined.
        sqlx::query(
            "SELECT room FROM participation WHERE user_id = ?1
             UNION SELECT room FROM grants WHERE user_id = ?1
             ORDER BY room",
        )
        .bind(user.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::backend)?
        .iter()
        .map(|row| room_from(row, "room"))
        .collect()
    }

    // ---- room history -----------------------------------------------------------------------------------------

    async fn append_event(&self, event: NewRoomEvent) -> StoreResult<Appended> {
        let mut tx = self.write_tx().await?;
        // The duplicate check runs inside the write transaction, so two racing retries cannot both miss it.
        if let (Some(sender), Some(client_msg_id)) = (&event.sender, &event.client_msg_id) {
            let existing = sqlx::query("SELECT * FROM room_events WHERE room = ? AND sender = ? AND client_msg_id = ?")
                .bind(event.room.as_str())
                .bind(sender.as_str())
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

    async fn history(&self, room: &RoomName, query: HistoryQuery) -> StoreResult<Vec<RoomEvent>> {
        let (sql, bound, limit) = match query {
            HistoryQuery::Latest { limit } => {
                ("SELECT * FROM room_events WHERE room = ? AND seq <= ? ORDER BY seq DESC LIMIT ?", i64::MAX, limit)
            }
            HistoryQuery::Before { before, limit } => (
                "SELECT * FROM room_events WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                bound_from(before),
                limit,
            ),
            HistoryQuery::After { after, limit } => (
                "SELECT * FROM room_events WHERE room = ? AND seq > ? ORDER BY seq ASC LIMIT ?",
                bound_from(after),
                limit,
            ),
        };
        let mut events = sqlx::query(sql)
            .bind(room.as_str())
            .bind(bound)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .iter()
            .map(event_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // Pages taken from the newest end are read backwards; callers always get ascending order.
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    async fn get_event(&self, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>> {
        sqlx::query("SELECT * FROM room_events WHERE room = ? AND id = ? LIMIT 1")
            .bind(room.as_str())
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .map(|row| event_from_row(&row))
            .transpose()
    }

    async fn count_unread(&self, room: &RoomName, after_seq: u64, reader: &UserId) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM room_events WHERE room = ? AND seq > ? AND (sender IS NULL OR sender <> ?)",
        )
        .bind(room.as_str())
        .bind(bound_from(after_seq))
        .bind(reader.as_str())
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::backend)?;
        u64::try_from(count).map_err(StoreError::backend)
    }

    async fn mark_read(&self, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64> {
        let seq = i64::try_from(seq).map_err(StoreError::backend)?;
        let watermark: i64 = sqlx::query_scalar(
            "INSERT INTO read_watermarks (user_id, room, seq) VALUES (?, ?, ?)
             ON CONFLICT (user_id, room) DO UPDATE SET seq = MAX(seq, excluded.seq)
             RETURNING seq",
        )
        .bind(user.as_str())
        .bind(room.as_str())
        .bind(seq)
        .fetch_one(&self.writer)
        .await
        .map_err(StoreError::backend)?;
        u64::try_from(watermark).map_err(StoreError::backend)
    }

    async fn read_watermark(&self, user: &UserId, room: &RoomName) -> StoreResult<u64> {
        let watermark: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM read_watermarks WHERE user_id = ? AND room = ?")
                .bind(user.as_str())
                .bind(room.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(StoreError::backend)?;
        u64::try_from(watermark.unwrap_or(0)).map_err(StoreError::backend)
    }

    // ---- idempotency ------------------------------------------------------------------------------------------

    /// A key is free again from its expiry instant on (`expires_at <= now`), so a ttl of 0 never blocks a retry.
    async fn claim_idempotency(&self, key: &str, ttl_seconds: u64) -> StoreResult<IdempotencyClaim> {
        let now = Utc::now().timestamp_millis();
        let ttl_ms = i64::try_from(ttl_seconds).unwrap_or(i64::MAX).saturating_mul(1000);
        let mut tx = self.write_tx().await?;
        let existing = sqlx::query("SELECT result, expires_at FROM idempotency WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        if let Some(row) = existing {
            let expires_at: i64 = column(&row, "expires_at")?;
            if expires_at > now {
                let result: Option<String> = column(&row, "result")?;
                return match result {
                    None => Ok(IdempotencyClaim::InFlight),
                    Some(json) => {
                        Ok(IdempotencyClaim::Completed(serde_json::from_str(&json).map_err(StoreError::backend)?))
                    }
                };
            }
        }
        sqlx::query(
            "INSERT INTO idempotency (key, result, expires_at) VALUES (?, NULL, ?)
             ON CONFLICT (key) DO UPDATE SET result = NULL, expires_at = excluded.expires_at",
        )
        .bind(key)
        .bind(now.saturating_add(ttl_ms))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
        tx.commit().await.map_err(StoreError::backend)?;
        Ok(IdempotencyClaim::Claimed)
    }

    /// `NotFound` for a key nobody claimed (or whose claim was released): there is no claim to answer for.
    async fn complete_idempotency(&self, key: &str, result: &Value) -> StoreResult<()> {
        let json = serde_json::to_string(result).map_err(StoreError::backend)?;
        let updated = sqlx::query("UPDATE idempotency SET result = ? WHERE key = ?")
            .bind(json)
            .bind(key)
            .execute(&self.writer)
            .await
            .map_err(StoreError::backend)?;
        if updated.rows_affected() == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    /// Only an in-flight claim is freed: a late release after completion must not throw away the stored answer.
    async fn release_idempotency(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency WHERE key = ? AND result IS NULL")
            .bind(key)
            .execute(&self.writer)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    // ---- stats ------------------------------------------------------------------------------------------------

    async fn count_messages(&self, n: u64) -> StoreResult<()> {
        let n = i64::try_from(n).map_err(StoreError::backend)?;
        sqlx::query("UPDATE stats SET value = value + ? WHERE name = 'total_messages'")
            .bind(n)
            .execute(&self.writer)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn stats(&self) -> StoreResult<Stats> {
        let row = sqlx::query(
            "SELECT
                 (SELECT COUNT(*) FROM connections) AS active_connections,
                 (SELECT COUNT(DISTINCT room) FROM memberships) AS active_rooms,
                 (SELECT value FROM stats WHERE name = 'total_connections') AS total_connections,
                 (SELECT value FROM stats WHERE name = 'total_messages') AS total_messages",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::backend)?;
        let count = |name: &str| -> StoreResult<u64> {
            let value: Option<i64> = column(&row, name)?;
            u64::try_from(value.unwrap_or(0)).map_err(StoreError::backend)
        };
        Ok(Stats {
            active_connections: count("active_connections")?,
            active_rooms: count("active_rooms")?,
            total_connections: count("total_connections")?,
            total_messages: count("total_messages")?,
        })
    }

    // ---- presence ---------------------------------------------------------------------------------------------

    async fn set_presence(&self, record: &PresenceRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO presence (user_id, status, custom_status, last_seen) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id) DO UPDATE SET status = excluded.status, custom_status = excluded.custom_status,
                 last_seen = excluded.last_seen",
        )
        .bind(record.user_id.as_str())
        .bind(record.status.as_str())
        .bind(record.custom_status.as_deref())
        .bind(record.last_seen.timestamp_millis())
        .execute(&self.writer)
        .await
        .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn get_presence(&self, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
        // Deduplicating first keeps a user named in two chunks from being returned twice.
        let users: Vec<&str> = users.iter().map(UserId::as_str).collect::<BTreeSet<_>>().into_iter().collect();
        let mut records = Vec::with_capacity(users.len());
        for chunk in users.chunks(IN_LIST_CHUNK) {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM presence WHERE user_id IN (");
            let mut list = query.separated(", ");
            for user in chunk {
                list.push_bind(*user);
            }
            query.push(")");
            for row in query.build().fetch_all(&self.reader).await.map_err(StoreError::backend)? {
                let status: String = column(&row, "status")?;
                records.push(PresenceRecord {
                    user_id: user_from(&row, "user_id")?,
                    status: PresenceStatus::parse(&status).ok_or_else(|| invalid("presence.status", status))?,
                    custom_status: column(&row, "custom_status")?,
                    last_seen: time_from(&row, "last_seen")?,
                });
            }
        }
        Ok(records)
    }

    // ---- notifications ----------------------------------------------------------------------------------------

    /// Adding the same (user, id) twice keeps the first notification, so a retried add changes nothing.
    async fn add_notification(&self, notification: &Notification) -> StoreResult<bool> {
        let data = serde_json::to_string(&notification.data).map_err(StoreError::backend)?;
        let done = sqlx::query(
            "INSERT INTO notifications (user_id, id, title, message, kind, data, read, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (user_id, id) DO NOTHING",
        )
        .bind(notification.user_id.as_str())
        .bind(&notification.id)
        .bind(&notification.title)
        .bind(&notification.message)
        .bind(notification.kind.as_deref())
        .bind(data)
        .bind(notification.read)
        .bind(notification.created_at.timestamp_millis())
        .execute(&self.writer)
        .await
        .map_err(StoreError::backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_notifications(&self, user: &UserId, query: &NotificationQuery) -> StoreResult<Vec<Notification>> {
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT * FROM notifications WHERE user_id = ");
        sql.push_bind(user.as_str());
        if query.unread_only {
            sql.push(" AND read = 0");
        }
        if let Some(before_id) = &query.before_id {
            sql.push(" AND id < ").push_bind(before_id.as_str());
        }
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
        sql.build()
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .iter()
            .map(notification_from_row)
            .collect()
    }

    async fn mark_notifications_read(&self, user: &UserId, selector: &NotificationSelector) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let changed = match selector {
            NotificationSelector::All => {
                sqlx::query("UPDATE notifications SET read = 1 WHERE user_id = ? AND read = 0")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend)?
                    .rows_affected()
            }
            NotificationSelector::Ids(ids) => {
                // Only rows still unread change, so a repeated or retried id counts once.
                let mut changed = 0;
                for id in ids {
                    changed +=
                        sqlx::query("UPDATE notifications SET read = 1 WHERE user_id = ? AND id = ? AND read = 0")
                            .bind(user.as_str())
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::backend)?
                            .rows_affected();
                }
                changed
            }
        };
        tx.commit().await.map_err(StoreError::backend)?;
        Ok(changed)
    }

    async fn unread_notifications(&self, user: &UserId) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read = 0")
            .bind(user.as_str())
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::backend)?;
        u64::try_from(count).map_err(StoreError::backend)
    }

    // ---- calls ------------------------------------------------------------------------------------------------

    async fn create_call(&self, call: &CallRecord) -> StoreResult<()> {
        let result = sqlx::query(
            "INSERT INTO calls (call_id, caller, recipient, call_type, visit_id, state, created_at, answered_at, ended_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(&call.call_id)
        .bind(call.caller.as_str())
        .bind(call.recipient.as_str())
        .bind(call_type_str(call.call_type))
        .bind(call.visit_id.as_deref())
        .bind(call.state.as_str())
        .bind(call.created_at.timestamp_millis())
        .bind(call.answered_at.map(|t| t.timestamp_millis()))
        .bind(call.ended_at.map(|t| t.timestamp_millis()))
        .execute(&self.writer)
        .await
        .map_err(StoreError::backend)?;
        if result.rows_affected() == 1 { Ok(()) } else { Err(StoreError::ConditionFailed) }
    }

    async fn get_call(&self, call_id: &str) -> StoreResult<Option<CallRecord>> {
        sqlx::query("SELECT * FROM calls WHERE call_id = ?")
            .bind(call_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::backend)?
            .map(|row| call_from_row(&row))
            .transpose()
    }

    async fn transition_call(&self, call_id: &str, transition: &CallTransition) -> StoreResult<CallRecord> {
        let at = transition.at.timestamp_millis();
        let mut tx = self.write_tx().await?;
        let mut sql = QueryBuilder::<Sqlite>::new("UPDATE calls SET state = ");
        sql.push_bind(transition.to.as_str());
        if transition.to == CallState::Accepted {
            sql.push(", answered_at = ").push_bind(at);
        }
        if transition.to.is_final() {
            sql.push(", ended_at = ").push_bind(at);
        }
        sql.push(" WHERE call_id = ").push_bind(call_id);
        // SQLite reads `state IN ()` as false, so an empty `from` is a condition no call meets.
        sql.push(" AND state IN (");
        let mut states = sql.separated(", ");
        for state in &transition.from {
            states.push_bind(state.as_str());
        }
        sql.push(") RETURNING *");
        let updated = sql.build().fetch_optional(&mut *tx).await.map_err(StoreError::backend)?;
        if let Some(row) = updated {
            let call = call_from_row(&row)?;
            tx.commit().await.map_err(StoreError::backend)?;
            return Ok(call);
        }
        // The existence check runs in the same transaction, so the answer matches the failed update.
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM calls WHERE call_id = ?")
            .bind(call_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        Err(if exists.is_some() { StoreError::ConditionFailed } else { StoreError::NotFound })
    }
}

/// A value read back from the database that no valid write could have produced.
#[derive(Debug, thiserror::Error)]
#[error("stored {column} `{value}` is not valid")]
struct InvalidValue {
    column: &'static str,
    value: String,
}

fn invalid(column: &'static str, value: impl Into<String>) -> StoreError {
    StoreError::backend(InvalidValue { column, value: value.into() })
}

/// A pool of exactly one connection that is never closed for being idle or old.
fn single_connection_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
}

async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
    sqlx::migrate!("./migrations").run(pool).await.map_err(StoreError::backend)
}

/// Adds a membership inside `tx`; false when the connection was already in the room.
async fn insert_membership(
    tx: &mut Transaction<'static, Sqlite>,
    connection: &ConnectionId,
    user: &UserId,
    room: &RoomName,
) -> StoreResult<bool> {
    let inserted = sqlx::query(
        "INSERT INTO memberships (room, connection_id, user_id) VALUES (?, ?, ?)
         ON CONFLICT (room, connection_id) DO NOTHING",
    )
    .bind(room.as_str())
    .bind(connection.as_str())
    .bind(user.as_str())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::backend)?;
    Ok(inserted.rows_affected() == 1)
}

/// A sequence bound for a query: anything beyond SQLite's integer range behaves as "beyond every event".
fn bound_from(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn call_type_str(call_type: CallType) -> &'static str {
    match call_type {
        CallType::Audio => "audio",
        CallType::Video => "video",
    }
}

fn column<'r, T>(row: &'r SqliteRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name).map_err(StoreError::backend)
}

fn user_from(row: &SqliteRow, name: &str) -> StoreResult<UserId> {
    UserId::parse(column::<String>(row, name)?).map_err(StoreError::backend)
}

fn connection_id_from(row: &SqliteRow, name: &str) -> StoreResult<ConnectionId> {
    ConnectionId::parse(column::<String>(row, name)?).map_err(StoreError::backend)
}

fn room_from(row: &SqliteRow, name: &str) -> StoreResult<RoomName> {
    RoomName::parse(column::<String>(row, name)?).map_err(StoreError::backend)
}

fn from_millis(column: &'static str, ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| invalid(column, ms.to_string()))
}

fn time_from(row: &SqliteRow, name: &'static str) -> StoreResult<DateTime<Utc>> {
    from_millis(name, column(row, name)?)
}

fn optional_time_from(row: &SqliteRow, name: &'static str) -> StoreResult<Option<DateTime<Utc>>> {
    column::<Option<i64>>(row, name)?.map(|ms| from_millis(name, ms)).transpose()
}

fn json_from(row: &SqliteRow, name: &str) -> StoreResult<Value> {
    serde_json::from_str(&column::<String>(row, name)?).map_err(StoreError::backend)
}

fn connection_from_row(row: &SqliteRow) -> StoreResult<ConnectionRecord> {
    Ok(ConnectionRecord {
        connection_id: connection_id_from(row, "connection_id")?,
        user_id: user_from(row, "user_id")?,
        role: column(row, "role")?,
        name: column(row, "name")?,
        email: column(row, "email")?,
        connected_at: time_from(row, "connected_at")?,
        expires_at: time_from(row, "expires_at")?,
    })
}

fn event_from_row(row: &SqliteRow) -> StoreResult<RoomEvent> {
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

fn notification_from_row(row: &SqliteRow) -> StoreResult<Notification> {
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

fn call_from_row(row: &SqliteRow) -> StoreResult<CallRecord> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    /// One `#[tokio::test]` per contract case, each on its own fresh in-memory store, so a failure names its case.
    macro_rules! contract_cases {
        ($($case:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let store = SqliteStore::in_memory().await.expect("in-memory store opens");
                    contract::$case(&store).await;
                }
            )*
        };
    }

    contract::with_every_case!(contract_cases);

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_contract_case_passes_in_sequence_on_one_shared_store() {
        let store = SqliteStore::in_memory().await.expect("in-memory store opens");
        contract::run_all(&store).await;
    }

    #[tokio::test]
    async fn in_memory_stores_are_isolated_from_each_other() {
        let (a, b) =
            (SqliteStore::in_memory().await.expect("store a"), SqliteStore::in_memory().await.expect("store b"));
        let room = RoomName::parse("topic:isolation").expect("room");
        let user = UserId::parse("isolated-user").expect("user");
        a.record_participation(&user, &room).await.expect("participation in a");

        assert_eq!(a.user_rooms(&user).await.expect("rooms in a"), [room]);
        assert!(b.user_rooms(&user).await.expect("rooms in b").is_empty());
    }

    /// A temporary directory removed when the test ends, whether it passed or not.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            Self(std::env::temp_dir().join(format!("bellhop-sqlite-{}", uuid::Uuid::new_v4().simple())))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            // Cleanup is best effort: a leftover temp directory must not turn a passing test into a failure.
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn close(store: SqliteStore) {
        store.writer.close().await;
        store.reader.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_contract_case_passes_on_a_file_backed_store() {
        // The file-backed store splits reads from writes across pools, which in-memory stores do not exercise.
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.0.join("bellhop.db")).await.expect("file store opens");
        contract::run_all(&store).await;
        close(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_file_backed_store_keeps_its_data_across_reopening() {
        let dir = TempDir::new();
        let path = dir.0.join("nested").join("bellhop.db");
        let room = RoomName::parse("booking:reopen").expect("room");
        let user = UserId::parse("reopen-user").expect("user");

        let first = SqliteStore::open(&path).await.expect("store opens and creates its directories");
        first.grant(&room, std::slice::from_ref(&user)).await.expect("grant");
        let appended = first
            .append_event(NewRoomEvent {
                room: room.clone(),
                id: uuid::Uuid::now_v7().to_string(),
                event: "message".to_owned(),
                data: serde_json::json!({ "text": "kept" }),
                sender: Some(user.clone()),
                client_msg_id: Some("m1".to_owned()),
                created_at: Utc::now(),
            })
            .await
            .expect("append");
        // Reading through the read-only pool right after the write shows readers see committed data.
        assert_eq!(first.get_event(&room, &appended.event.id).await.expect("read back"), Some(appended.event.clone()));
        close(first).await;

        let reopened = SqliteStore::open(&path).await.expect("store reopens and skips applied migrations");
        let history = reopened.history(&room, HistoryQuery::Latest { limit: 10 }).await.expect("history");
        let granted = reopened.is_granted(&room, &user).await.expect("grant lookup");
        close(reopened).await;

        assert_eq!(history, [appended.event]);
        assert!(granted);
    }
}
