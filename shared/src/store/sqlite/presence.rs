//! Stored presence per user.

use std::collections::BTreeSet;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};

use super::codec::{column, invalid, time_from, user_from};
use super::{IN_LIST_CHUNK, SqliteStore};
use crate::ids::UserId;
use crate::store::{PresenceRecord, PresenceStatus, StoreError, StoreResult};

pub(super) async fn set_presence(store: &SqliteStore, record: &PresenceRecord) -> StoreResult<()> {
    write_presence(&store.writer, record).await
}

/// Stores `record` through `executor`: the writer pool, or a transaction that changes more.
pub(super) async fn write_presence<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    record: &PresenceRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO presence (user_id, status, custom_status, last_seen) VALUES (?, ?, ?, ?)
         ON CONFLICT (user_id) DO UPDATE SET status = excluded.status, custom_status = excluded.custom_status,
             last_seen = excluded.last_seen",
    )
    .bind(record.user_id.as_str())
    .bind(record.status.as_str())
    .bind(record.custom_status.as_deref())
    .bind(record.last_seen.timestamp_millis())
    .execute(executor)
    .await
    .map_err(StoreError::backend)?;
    Ok(())
}

pub(super) fn presence_from_row(row: &SqliteRow) -> StoreResult<PresenceRecord> {
    let status: String = column(row, "status")?;
    Ok(PresenceRecord {
        user_id: user_from(row, "user_id")?,
        status: PresenceStatus::parse(&status).ok_or_else(|| invalid("presence.status", status))?,
        custom_status: column(row, "custom_status")?,
        last_seen: time_from(row, "last_seen")?,
    })
}

pub(super) async fn get_presence(store: &SqliteStore, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
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
        for row in query.build().fetch_all(&store.reader).await.map_err(StoreError::backend)? {
            records.push(presence_from_row(&row)?);
        }
    }
    Ok(records)
}
