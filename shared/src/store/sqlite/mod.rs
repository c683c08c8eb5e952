//! SQLite adapter of the store port: the embedded default of the local harness, a file under the data dir or an
//! isolated in-memory database for tests.
//!
//! It owns the physical layout in `shared/migrations/` and how each [`Store`] operation maps onto it. Every write
//! goes through one writer connection and every multi-statement write runs in a `BEGIN IMMEDIATE` transaction, so
//! sequence allocation, idempotency claims and call transitions are atomic without ever surfacing `SQLITE_BUSY`.
//! File-backed stores read through separate read-only connections, which WAL mode lets run beside the writer. It
//! deliberately does not expire stale connections or old events: pruning is the caller's policy.
//!
//! Statements run on the calling task's thread, under a mutex per connection, as better-sqlite3 runs them under
//! Node. Every statement here is an indexed lookup or a short write that takes microseconds, less than handing it
//! to a worker thread and waking the caller again: with a worker thread per connection (the sqlx driver this
//! adapter replaced) a `message:send` made 20–23 context switches instead of 6.5–9, and the harness's p99 at
//! 400 msg/s was 6.3–8.5 ms instead of 4.3–4.8 ms (bench/RESULTS.md, 2026-12-01). No statement is ever cut off
//! halfway by a cancelled caller either, since a call never yields while it holds a connection. What is slow,
//! copying the write-ahead log into the database file, runs on a thread of its own (see
//! [`checkpoint_in_background`]).

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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Params, Row, TransactionBehavior};
use serde_json::Value;

use super::{
    ActiveRoom, Admission, Appended, CallRecord, CallTransition, ConnectionRecord, HistoryQuery, IdempotencyClaim,
    Member, NewRoomEvent, Notification, NotificationQuery, NotificationSelector, Page, PresenceRecord, RateLimit,
    RemovedConnection, RoomEvent, Stats, Store, StoreError, StoreResult,
};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

/// How long a statement waits for a lock held by another process (two harnesses on one data dir) before failing.
/// Inside this process nothing waits: there is one writer, and WAL readers never block it.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read-only connections of a file-backed store. A read holds one only while its statement runs on the caller's
/// thread, so more than the runtime has threads would never all be in use.
const READERS: usize = 4;
/// Prepared statements kept per connection: every fixed statement of the adapter fits, so none is compiled twice.
const STATEMENT_CACHE: usize = 96;
/// How often a file-backed store moves the write-ahead log into the database file (see [`checkpoint_in_background`]).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The schema's migrations in order; a database's `user_version` is how many of them it has applied.
const MIGRATIONS: [(&str, &str); 3] = [
    ("0001_init", include_str!("../../../migrations/0001_init.sql")),
    ("0002_limits_paging_expiry", include_str!("../../../migrations/0002_limits_paging_expiry.sql")),
    ("0003_connection_activity", include_str!("../../../migrations/0003_connection_activity.sql")),
];

/// The SQLite implementation of [`Store`]. Clones share the same connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Connections>,
}

#[derive(Debug)]
struct Connections {
    /// The only connection that writes, so writers queue on its mutex instead of racing for the database lock, and
    /// `SQLITE_BUSY` never reaches a caller from inside this process. An in-memory store reads through it too.
    writer: Mutex<Connection>,
    /// Read-only connections of a file-backed store; empty for an in-memory one, whose database only its own
    /// connection can see.
    readers: Vec<Mutex<Connection>>,
    /// Where a read that finds every reader busy waits, turn by turn.
    next_reader: AtomicUsize,
    /// Stops a file-backed store's checkpoint thread when dropped: the thread sees its channel close.
    _checkpointer: Option<mpsc::Sender<()>>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        // Blocking calls are acceptable here: this runs once, at start-up, before any request is served.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(StoreError::backend)?;
        }
        let mut writer = Connection::open(path).map_err(StoreError::backend)?;
        configure(&mut writer)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 -- The writer never checkpoints: see `checkpoint_in_background`.
                 PRAGMA wal_autocheckpoint = 0;",
            )
            .map_err(StoreError::backend)?;
        migrate(&mut writer)?;
        let mut checkpointer = Connection::open(path).map_err(StoreError::backend)?;
        configure(&mut checkpointer)?;
        let (stop, stopped) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_in_background(&checkpointer, &stopped))
            .map_err(StoreError::backend)?;
        // Readers open only after the writer created the file and switched it to WAL, which is persistent.
        let readers = (0..READERS)
            .map(|_| {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let mut reader = Connection::open_with_flags(path, flags).map_err(StoreError::backend)?;
                configure(&mut reader)?;
                Ok(Mutex::new(reader))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Self::from_parts(writer, readers, Some(stop)))
    }

    /// A fresh in-memory database, independent of every other one, migrated and ready.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let mut connection = Connection::open_in_memory().map_err(StoreError::backend)?;
        configure(&mut connection)?;
        migrate(&mut connection)?;
        Ok(Self::from_parts(connection, Vec::new(), None))
    }

    fn from_parts(writer: Connection, readers: Vec<Mutex<Connection>>, checkpointer: Option<mpsc::Sender<()>>) -> Self {
        let inner = Connections {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            _checkpointer: checkpointer,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Runs `work` on the writer connection, each statement committing on its own.
    fn write<T>(&self, work: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        work(&lock(&self.inner.writer))
    }

    /// Runs `work` in a write transaction that takes the database's write lock at once, so a transaction that reads
    /// before it writes can never fail to upgrade its lock halfway through. It commits when `work` succeeds and
    /// rolls back otherwise, also when `work` panics (the transaction's drop rolls it back while unwinding).
    fn write_tx<T>(&self, work: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let mut writer = lock(&self.inner.writer);
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::backend)?;
        let value = work(&tx)?;
        tx.commit().map_err(StoreError::backend)?;
        Ok(value)
    }

    /// Runs `work` on an idle reader, or waits for one, or on the writer of an in-memory store.
    fn read<T>(&self, work: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let readers = &self.inner.readers;
        if readers.is_empty() {
            return self.write(work);
        }
        for reader in readers {
            match reader.try_lock() {
                Ok(connection) => return work(&connection),
                Err(TryLockError::Poisoned(poisoned)) => return work(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let turn = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        work(&lock(&readers[turn]))
    }
}

/// A connection's mutex is poisoned when a call panicked while holding it. The connection itself is sound: no
/// statement runs half-way and an open transaction rolls back as it unwinds, so the next caller may use it.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The settings every connection of a store shares.
fn configure(connection: &mut Connection) -> StoreResult<()> {
    connection.busy_timeout(BUSY_TIMEOUT).map_err(StoreError::backend)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    connection.pragma_update(None, "foreign_keys", true).map_err(StoreError::backend)?;
    // Each finished statement is logged when the log asks for it at start-up
    // (`RUST_LOG=shared::store::sqlite=debug`), with its SQL text, never its bound values, and how long SQLite took.
    // Otherwise SQLite calls nothing.
    if tracing::enabled!(tracing::Level::DEBUG) {
        connection
            .trace_v2(
                TraceEventCodes::SQLITE_TRACE_PROFILE,
                Some(|event: TraceEvent<'_>| {
                    if let TraceEvent::Profile(statement, took) = event {
                        tracing::debug!(sql = %statement.sql(), took_us = took.as_micros(), "SQLite statement");
                    }
                }),
            )
            .map_err(StoreError::backend)?;
    }
    Ok(())
}

/// Copies the write-ahead log into the database file every [`CHECKPOINT_INTERVAL`], on a connection and a thread
/// of its own, until the store is dropped.
///
/// By default SQLite checkpoints inside the commit that makes the log pass 1,000 pages, so every so often one write
/// also pays for copying the log and syncing the file: the harness's p99 at 400 msg/s was 5.8 ms with that and
/// 2.0–2.3 ms without it (bench/RESULTS.md). The writer therefore never checkpoints (`wal_autocheckpoint = 0`) and
/// this thread does it beside it. `PASSIVE` takes no lock that the writer or the readers wait for; it copies what
/// no reader still needs, and the log starts over once it has all been copied, so the log stays about one interval
/// of writes long.
fn checkpoint_in_background(connection: &Connection, stopped: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_INTERVAL) {
        // The pragma answers with a row (busy flag, log pages, pages copied), which nothing here needs.
        if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "SQLite checkpoint failed; the write-ahead log keeps growing until one succeeds");
        }
    }
}

/// Applies the migrations the database has not applied yet, each in a transaction with the version it reaches.
///
/// Databases created before this adapter recorded their migrations in sqlx's `_sqlx_migrations` table instead of
/// `user_version`; the first open takes their applied count from there, so a data dir from an older harness keeps
/// working.
fn migrate(connection: &mut Connection) -> StoreResult<()> {
    let mut applied: i64 =
        connection.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(StoreError::backend)?;
    if applied == 0 {
        let earlier: i64 = connection
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
                [],
                |row| row.get(0),
            )
            .map_err(StoreError::backend)?;
        if earlier == 1 {
            applied = connection
                .query_row("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success", [], |row| row.get(0))
                .map_err(StoreError::backend)?;
            connection.pragma_update(None, "user_version", applied).map_err(StoreError::backend)?;
        }
    }
    let applied = usize::try_from(applied).map_err(StoreError::backend)?;
    for (version, (name, sql)) in (1_i64..).zip(MIGRATIONS).skip(applied) {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::backend)?;
        tx.execute_batch(sql).map_err(|error| StoreError::backend(MigrationFailed { name, error }))?;
        tx.pragma_update(None, "user_version", version).map_err(StoreError::backend)?;
        tx.commit().map_err(StoreError::backend)?;
    }
    Ok(())
}

/// A migration whose statements SQLite refused.
#[derive(Debug, thiserror::Error)]
#[error("migration {name} failed")]
struct MigrationFailed {
    name: &'static str,
    #[source]
    error: rusqlite::Error,
}

/// Runs a store call once the calling task has taken a unit of tokio's cooperative budget, which yields to the
/// runtime when the budget is spent. A call here never waits, so without this a loop made of store calls (the
/// delay queue's consumer, a handler paging through members) would keep its thread from every other task until it
/// ended; with a worker thread per connection each call used to yield by itself.
async fn budgeted<T>(call: impl Future<Output = T>) -> T {
    tokio::task::consume_budget().await;
    call.await
}

/// Runs a statement that returns no rows and answers how many rows it changed.
pub(super) fn execute(connection: &Connection, sql: &str, params: impl Params) -> StoreResult<usize> {
    connection.prepare_cached(sql).and_then(|mut statement| statement.execute(params)).map_err(StoreError::backend)
}

/// The first row of a query turned into a record, or `None` when it returns no row.
pub(super) fn optional<T>(
    connection: &Connection,
    sql: &str,
    params: impl Params,
    from_row: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut statement = connection.prepare_cached(sql).map_err(StoreError::backend)?;
    let mut rows = statement.query(params).map_err(StoreError::backend)?;
    rows.next().map_err(StoreError::backend)?.map(from_row).transpose()
}

/// The first row of a query that always returns one, turned into a record.
pub(super) fn one<T>(
    connection: &Connection,
    sql: &str,
    params: impl Params,
    from_row: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    optional(connection, sql, params, from_row)?
        .ok_or_else(|| StoreError::backend(rusqlite::Error::QueryReturnedNoRows))
}

/// One value of a query that always returns a row, such as a `COUNT(*)`.
pub(super) fn scalar<T: rusqlite::types::FromSql>(
    connection: &Connection,
    sql: &str,
    params: impl Params,
) -> StoreResult<T> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.query_row(params, |row| row.get(0)))
        .map_err(StoreError::backend)
}

/// One value of the first row of a query, or `None` when it returns no row.
pub(super) fn optional_scalar<T: rusqlite::types::FromSql>(
    connection: &Connection,
    sql: &str,
    params: impl Params,
) -> StoreResult<Option<T>> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.query_row(params, |row| row.get(0)).optional())
        .map_err(StoreError::backend)
}

/// Every row of a query, each turned into a record.
pub(super) fn all<T>(
    connection: &Connection,
    sql: &str,
    params: impl Params,
    mut from_row: impl FnMut(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = connection.prepare_cached(sql).map_err(StoreError::backend)?;
    let mut rows = statement.query(params).map_err(StoreError::backend)?;
    let mut records = Vec::new();
    while let Some(row) = rows.next().map_err(StoreError::backend)? {
        records.push(from_row(row)?);
    }
    Ok(records)
}

/// Every operation delegates to the module of its aggregate, which owns the statements, through [`budgeted`].
#[async_trait]
impl Store for SqliteStore {
    async fn put_connection(&self, connection: &ConnectionRecord, rooms: &[RoomName]) -> StoreResult<()> {
        budgeted(connections::put_connection(self, connection, rooms)).await
    }

    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        budgeted(connections::get_connection(self, id)).await
    }

    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<Option<RemovedConnection>> {
        budgeted(connections::delete_connection(self, id)).await
    }

    async fn set_token_expiry(&self, id: &ConnectionId, at: DateTime<Utc>) -> StoreResult<bool> {
        budgeted(connections::set_token_expiry(self, id, at)).await
    }

    async fn user_connections(&self, user: &UserId) -> StoreResult<Vec<ConnectionRecord>> {
        budgeted(connections::user_connections(self, user)).await
    }

    async fn all_connections(&self) -> StoreResult<Vec<ConnectionId>> {
        budgeted(connections::all_connections(self)).await
    }

    async fn join_room(&self, connection: &ConnectionRecord, room: &RoomName) -> StoreResult<bool> {
        budgeted(membership::join_room(self, connection, room)).await
    }

    async fn leave_room(&self, connection: &ConnectionId, room: &RoomName) -> StoreResult<bool> {
        budgeted(membership::leave_room(self, connection, room)).await
    }

    async fn room_members(&self, room: &RoomName) -> StoreResult<Vec<Member>> {
        budgeted(membership::room_members(self, room)).await
    }

    async fn room_members_page(&self, room: &RoomName, after: Option<&str>, limit: u32) -> StoreResult<Page<Member>> {
        budgeted(membership::room_members_page(self, room, after, limit)).await
    }

    async fn room_member_count(&self, room: &RoomName) -> StoreResult<u64> {
        budgeted(membership::room_member_count(self, room)).await
    }

    async fn active_rooms_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Page<ActiveRoom>> {
        budgeted(membership::active_rooms_page(self, after, limit)).await
    }

    async fn connection_rooms(&self, connection: &ConnectionId) -> StoreResult<Vec<RoomName>> {
        budgeted(membership::connection_rooms(self, connection)).await
    }

    async fn grant(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        budgeted(membership::grant(self, room, users)).await
    }

    async fn revoke(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        budgeted(membership::revoke(self, room, users)).await
    }

    async fn is_granted(&self, room: &RoomName, user: &UserId) -> StoreResult<bool> {
        budgeted(membership::is_granted(self, room, user)).await
    }

    async fn room_grants(&self, room: &RoomName) -> StoreResult<Vec<UserId>> {
        budgeted(membership::room_grants(self, room)).await
    }

    async fn record_participation(&self, user: &UserId, room: &RoomName) -> StoreResult<()> {
        budgeted(membership::record_participation(self, user, room)).await
    }

    async fn user_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomName>> {
        budgeted(membership::user_rooms(self, user)).await
    }

    async fn user_rooms_page(&self, user: &UserId, after: Option<&str>, limit: u32) -> StoreResult<Page<RoomName>> {
        budgeted(membership::user_rooms_page(self, user, after, limit)).await
    }

    async fn append_event(&self, event: NewRoomEvent) -> StoreResult<Appended> {
        budgeted(history::append_event(self, event)).await
    }

    async fn append_message(&self, event: NewRoomEvent) -> StoreResult<Appended> {
        budgeted(history::append_message(self, event)).await
    }

    async fn history(&self, room: &RoomName, query: HistoryQuery) -> StoreResult<Vec<RoomEvent>> {
        budgeted(history::history(self, room, query)).await
    }

    async fn get_event(&self, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>> {
        budgeted(history::get_event(self, room, id)).await
    }

    async fn count_unread(&self, room: &RoomName, after_seq: u64, reader: &UserId) -> StoreResult<u64> {
        budgeted(history::count_unread(self, room, after_seq, reader)).await
    }

    async fn mark_read(&self, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64> {
        budgeted(history::mark_read(self, user, room, seq)).await
    }

    async fn read_watermark(&self, user: &UserId, room: &RoomName) -> StoreResult<u64> {
        budgeted(history::read_watermark(self, user, room)).await
    }

    async fn claim_idempotency(&self, key: &str, ttl_seconds: u64) -> StoreResult<IdempotencyClaim> {
        budgeted(idempotency::claim_idempotency(self, key, ttl_seconds)).await
    }

    async fn complete_idempotency(&self, key: &str, result: &Value, ttl_seconds: u64) -> StoreResult<()> {
        budgeted(idempotency::complete_idempotency(self, key, result, ttl_seconds)).await
    }

    async fn release_idempotency(&self, key: &str) -> StoreResult<()> {
        budgeted(idempotency::release_idempotency(self, key)).await
    }

    async fn admit(&self, key: &str, limit: RateLimit, now: DateTime<Utc>) -> StoreResult<Admission> {
        budgeted(limits::admit(self, key, limit, now)).await
    }

    async fn admit_frame(
        &self,
        connection: &ConnectionId,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission> {
        budgeted(limits::admit_frame(self, connection, limit, now)).await
    }

    async fn connection_activity(&self, connection: &ConnectionId) -> StoreResult<Option<DateTime<Utc>>> {
        budgeted(limits::connection_activity(self, connection)).await
    }

    async fn count_messages(&self, n: u64) -> StoreResult<()> {
        budgeted(stats::count_messages(self, n)).await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        budgeted(stats::stats(self)).await
    }

    async fn set_presence(&self, record: &PresenceRecord) -> StoreResult<()> {
        budgeted(presence::set_presence(self, record)).await
    }

    async fn get_presence(&self, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
        budgeted(presence::get_presence(self, users)).await
    }

    async fn add_notification(&self, notification: &Notification) -> StoreResult<bool> {
        budgeted(notifications::add_notification(self, notification)).await
    }

    async fn list_notifications(&self, user: &UserId, query: &NotificationQuery) -> StoreResult<Vec<Notification>> {
        budgeted(notifications::list_notifications(self, user, query)).await
    }

    async fn mark_notifications_read(&self, user: &UserId, selector: &NotificationSelector) -> StoreResult<u64> {
        budgeted(notifications::mark_notifications_read(self, user, selector)).await
    }

    async fn unread_notifications(&self, user: &UserId) -> StoreResult<u64> {
        budgeted(notifications::unread_notifications(self, user)).await
    }

    async fn create_call(&self, call: &CallRecord) -> StoreResult<()> {
        budgeted(calls::create_call(self, call)).await
    }

    async fn get_call(&self, call_id: &str) -> StoreResult<Option<CallRecord>> {
        budgeted(calls::get_call(self, call_id)).await
    }

    async fn transition_call(&self, call_id: &str, transition: &CallTransition) -> StoreResult<CallRecord> {
        budgeted(calls::transition_call(self, call_id, transition)).await
    }
}
