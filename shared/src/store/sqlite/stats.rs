//! The counters behind `/health`.

use super::codec::column;
use super::{SqliteStore, execute, one};
use crate::store::{Stats, StoreError, StoreResult};

pub(super) async fn count_messages(store: &SqliteStore, n: u64) -> StoreResult<()> {
    let n = i64::try_from(n).map_err(StoreError::backend)?;
    store.write(|writer| execute(writer, "UPDATE stats SET value = value + ? WHERE name = 'total_messages'", [n]))?;
    Ok(())
}

pub(super) async fn stats(store: &SqliteStore) -> StoreResult<Stats> {
    store.read(|reader| {
        one(
            reader,
            "SELECT
                 (SELECT COUNT(*) FROM connections) AS active_connections,
                 (SELECT COUNT(DISTINCT room) FROM memberships) AS active_rooms,
                 (SELECT value FROM stats WHERE name = 'total_connections') AS total_connections,
                 (SELECT value FROM stats WHERE name = 'total_messages') AS total_messages",
            [],
            |row| {
                let count = |name: &str| -> StoreResult<u64> {
                    let value: Option<i64> = column(row, name)?;
                    u64::try_from(value.unwrap_or(0)).map_err(StoreError::backend)
                };
                Ok(Stats {
                    active_connections: count("active_connections")?,
                    active_rooms: count("active_rooms")?,
                    total_connections: count("total_connections")?,
                    total_messages: count("total_messages")?,
                })
            },
        )
    })
}
