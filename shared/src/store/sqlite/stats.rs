//! The counters behind `/health`.

use super::SqliteStore;
use super::codec::column;
use crate::store::{Stats, StoreError, StoreResult};

pub(super) async fn count_messages(store: &SqliteStore, n: u64) -> StoreResult<()> {
    let n = i64::try_from(n).map_err(StoreError::backend)?;
    sqlx::query("UPDATE stats SET value = value + ? WHERE name = 'total_messages'")
        .bind(n)
        .execute(&store.writer)
        .await
        .map_err(StoreError::backend)?;
    Ok(())
}

pub(super) async fn stats(store: &SqliteStore) -> StoreResult<Stats> {
    let row = sqlx::query(
        "SELECT
             (SELECT COUNT(*) FROM connections) AS active_connections,
             (SELECT COUNT(DISTINCT room) FROM memberships) AS active_rooms,
             (SELECT value FROM stats WHERE name = 'total_connections') AS total_connections,
             (SELECT value FROM stats WHERE name = 'total_messages') AS total_messages",
    )
    .fetch_one(&store.reader)
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
