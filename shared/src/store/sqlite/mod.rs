//! SQLite adapter of the store port: the embedded default of the local harness, a file under the data dir or an
//! isolated in-memory database for tests.
//!
//! It owns the physical layout in `shared/migrations/` and how each [`Store`] operation maps onto it. Every write
//! goes through one writer connection and every multi-statement write runs in a `BEGIN IMMEDIATE` transaction, so
//! sequence allocation, idempotency claims and call transitions are atomic without ever surfacing `SQLITE_BUSY`.
//! File-backed stores read through a separate pool of read-only connections, which WAL mode lets run beside the
//! writer. It deliberately does not expire stale connections or old events: pruning is the caller's policy.

mod calls;
mod codec;
mod connections;
mod history;
mod idempotency;
mod limits;
mod membership;
mod notifications;
mod presence;
mod stats;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, Transaction};

use super::{
    ActiveRoom, Admission, Appended, CallRecord, CallTransition, ConnectionRecord, HistoryQuery, IdempotencyClaim,
    Member, NewRoomEvent, Notification, NotificationQuery, NotificationSelector, Page, PresenceRecord, RateLimit,
    RemovedConnection, RoomEvent, Stats, Store, StoreError, StoreResult,
};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

/// How long a statement waits for a lock held by another connection (or process) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers of a file-backed store. WAL lets them run beside the single writer.
const MAX_READERS: u32 = 8;
/// How often a file-backed store moves the write-ahead log into the database file (see [`checkpoint_in_background`]).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Most bound values put into one `IN (…)` list, well under SQLite's variable limit.
pub(super) const IN_LIST_CHUNK: usize = 500;

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
    /// Stops a file-backed store's checkpoint task when the last clone of the store is dropped.
    _checkpointer: Option<Arc<AbortOnDrop>>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
            .synchronous(SqliteSynchronous::Normal)
            // The writer never checkpoints: see `checkpoint_in_background`.
            .pragma("wal_autocheckpoint", "0");
        let writer = single_connection_pool().connect_with(writer_options).await.map_err(StoreError::backend)?;
        migrate(&writer).await?;
        let checkpointer = SqliteConnection::connect_with(&options).await.map_err(StoreError::backend)?;
        let checkpointer = AbortOnDrop(tokio::spawn(checkpoint_in_background(checkpointer)).abort_handle());
        // Readers open only after the writer created the file and switched it to WAL, which is persistent.
        let reader = SqlitePoolOptions::new()
            .max_connections(MAX_READERS)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::backend)?;
        Ok(Self { writer, reader, _keep_alive: None, _checkpointer: Some(Arc::new(checkpointer)) })
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
        Ok(Self {
            reader: writer.clone(),
            writer,
            _keep_alive: Some(Arc::new(Mutex::new(keep_alive))),
            _checkpointer: None,
        })
    }

    /// Starts a write transaction that takes the database's write lock at once, so a transaction that reads
    /// before it writes can never fail to upgrade its lock halfway through.
    async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::backend)
    }
}

/// A pool of exactly one connection that is never closed for being idle or old. Pools check each connection with a
/// ping before lending it by default, which for an embedded database is a round trip to its worker thread per
/// statement and guards against nothing: a local connection does not go stale, and a broken one fails its statement
/// just as clearly. The readers skip the ping for the same reason.
fn single_connection_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
}

/// Copies the write-ahead log into the database file every [`CHECKPOINT_INTERVAL`], on a connection of its own.
///
/// By default SQLite checkpoints inside the commit that makes the log pass 1,000 pages, so every so often one write
/// also pays for copying the log and syncing the file: the harness's p99 at 400 msg/s was 5.8 ms with that and
/// 2.0–2.3 ms without it (bench/RESULTS.md). The writer therefore never checkpoints (`wal_autocheckpoint = 0`) and
/// this task does it beside it. `PASSIVE` takes no lock that the writer or the readers wait for; it copies what no
/// reader still needs, and the log starts over once it has all been copied, so the log stays about one interval of
/// writes long.
async fn checkpoint_in_background(mut connection: SqliteConnection) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + CHECKPOINT_INTERVAL, CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut connection).await {
            tracing::warn!(%error, "SQLite checkpoint failed; the write-ahead log keeps growing until one succeeds");
        }
    }
}

async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
    sqlx::migrate!("./migrations").run(pool).await.map_err(StoreError::backend)
}

/// Every operation delegates to the module of its aggregate, which owns the statements.
#[async_trait]
impl Store for SqliteStore {
    async fn put_connection(&self, connection: &ConnectionRecord, rooms: &[RoomName]) -> StoreResult<()> {
        connections::put_connection(self, connection, rooms).await
    }

    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        connections::get_connection(self, id).await
    }

    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<Option<RemovedConnection>> {
        connections::delete_connection(self, id).await
    }

    async fn set_token_expiry(&self, id: &ConnectionId, at: DateTime<Utc>) -> StoreResult<bool> {
        connections::set_token_expiry(self, id, at).await
    }

    async fn user_connections(&self, user: &UserId) -> StoreResult<Vec<ConnectionRecord>> {
        connections::user_connections(self, user).await
    }

    async fn all_connections(&self) -> StoreResult<Vec<ConnectionId>> {
        connections::all_connections(self).await
    }

    async fn join_room(&self, connection: &ConnectionRecord, room: &RoomName) -> StoreResult<bool> {
        membership::join_room(self, connection, room).await
    }

    async fn leave_room(&self, connection: &ConnectionId, room: &RoomName) -> StoreResult<bool> {
        membership::leave_room(self, connection, room).await
    }

    async fn room_members(&self, room: &RoomName) -> StoreResult<Vec<Member>> {
        membership::room_members(self, room).await
    }

    async fn room_members_page(&self, room: &RoomName, after: Option<&str>, limit: u32) -> StoreResult<Page<Member>> {
        membership::room_members_page(self, room, after, limit).await
    }

    async fn room_member_count(&self, room: &RoomName) -> StoreResult<u64> {
        membership::room_member_count(self, room).await
    }

    async fn active_rooms_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Page<ActiveRoom>> {
        membership::active_rooms_page(self, after, limit).await
    }

    async fn connection_rooms(&self, connection: &ConnectionId) -> StoreResult<Vec<RoomName>> {
        membership::connection_rooms(self, connection).await
    }

    async fn grant(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        membership::grant(self, room, users).await
    }

    async fn revoke(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        membership::revoke(self, room, users).await
    }

    async fn is_granted(&self, room: &RoomName, user: &UserId) -> StoreResult<bool> {
        membership::is_granted(self, room, user).await
    }

    async fn room_grants(&self, room: &RoomName) -> StoreResult<Vec<UserId>> {
        membership::room_grants(self, room).await
    }

    async fn record_participation(&self, user: &UserId, room: &RoomName) -> StoreResult<()> {
        membership::record_participation(self, user, room).await
    }

    async fn user_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomName>> {
        membership::user_rooms(self, user).await
    }

    async fn user_rooms_page(&self, user: &UserId, after: Option<&str>, limit: u32) -> StoreResult<Page<RoomName>> {
        membership::user_rooms_page(self, user, after, limit).await
    }

    async fn append_event(&self, event: NewRoomEvent) -> StoreResult<Appended> {
        history::append_event(self, event).await
    }

    async fn append_message(&self, event: NewRoomEvent) -> StoreResult<Appended> {
        history::append_message(self, event).await
    }

    async fn history(&self, room: &RoomName, query: HistoryQuery) -> StoreResult<Vec<RoomEvent>> {
        history::history(self, room, query).await
    }

    async fn get_event(&self, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>> {
        history::get_event(self, room, id).await
    }

    async fn count_unread(&self, room: &RoomName, after_seq: u64, reader: &UserId) -> StoreResult<u64> {
        history::count_unread(self, room, after_seq, reader).await
    }

    async fn mark_read(&self, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64> {
        history::mark_read(self, user, room, seq).await
    }

    async fn read_watermark(&self, user: &UserId, room: &RoomName) -> StoreResult<u64> {
        history::read_watermark(self, user, room).await
    }

    async fn claim_idempotency(&self, key: &str, ttl_seconds: u64) -> StoreResult<IdempotencyClaim> {
        idempotency::claim_idempotency(self, key, ttl_seconds).await
    }

    async fn complete_idempotency(&self, key: &str, result: &Value, ttl_seconds: u64) -> StoreResult<()> {
        idempotency::complete_idempotency(self, key, result, ttl_seconds).await
    }

    async fn release_idempotency(&self, key: &str) -> StoreResult<()> {
        idempotency::release_idempotency(self, key).await
    }

    async fn admit(&self, key: &str, limit: RateLimit, now: DateTime<Utc>) -> StoreResult<Admission> {
        limits::admit(self, key, limit, now).await
    }

    async fn admit_frame(
        &self,
        connection: &ConnectionId,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission> {
        limits::admit_frame(self, connection, limit, now).await
    }

    async fn connection_activity(&self, connection: &ConnectionId) -> StoreResult<Option<DateTime<Utc>>> {
        limits::connection_activity(self, connection).await
    }

    async fn count_messages(&self, n: u64) -> StoreResult<()> {
        stats::count_messages(self, n).await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        stats::stats(self).await
    }

    async fn set_presence(&self, record: &PresenceRecord) -> StoreResult<()> {
        presence::set_presence(self, record).await
    }

    async fn get_presence(&self, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
        presence::get_presence(self, users).await
    }

    async fn add_notification(&self, notification: &Notification) -> StoreResult<bool> {
        notifications::add_notification(self, notification).await
    }

    async fn list_notifications(&self, user: &UserId, query: &NotificationQuery) -> StoreResult<Vec<Notification>> {
        notifications::list_notifications(self, user, query).await
    }

    async fn mark_notifications_read(&self, user: &UserId, selector: &NotificationSelector) -> StoreResult<u64> {
        notifications::mark_notifications_read(self, user, selector).await
    }

    async fn unread_notifications(&self, user: &UserId) -> StoreResult<u64> {
        notifications::unread_notifications(self, user).await
    }

    async fn create_call(&self, call: &CallRecord) -> StoreResult<()> {
        calls::create_call(self, call).await
    }

    async fn get_call(&self, call_id: &str) -> StoreResult<Option<CallRecord>> {
        calls::get_call(self, call_id).await
    }

    async fn transition_call(&self, call_id: &str, transition: &CallTransition) -> StoreResult<CallRecord> {
        calls::transition_call(self, call_id, transition).await
    }
}
