//! Connections: the connection row with its memberships, written and removed in one transaction each.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::SqliteStore;
use super::codec::{connection_from_row, connection_id_from, room_from, user_from};
use super::membership::insert_membership;
use super::presence::{presence_from_row, write_presence};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;
use crate::store::{
    ConnectionRecord, Member, PresenceRecord, RemovedConnection, StoreError, StoreResult, WentOffline, now_millis,
};

/// Re-putting a connection id replaces its record and adds the new rooms to its memberships. Only a new
/// connection counts in `total_connections`: a re-put is the same connection, as in the DynamoDB adapter.
pub(super) async fn put_connection(
    store: &SqliteStore,
    connection: &ConnectionRecord,
    rooms: &[RoomName],
) -> StoreResult<()> {
    let mut tx = store.write_tx().await?;
    let existed: Option<i64> = sqlx::query_scalar("SELECT 1 FROM connections WHERE connection_id = ?")
        .bind(connection.connection_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
    sqlx::query(
        "INSERT INTO connections
             (connection_id, user_id, role, name, email, connected_at, expires_at, token_expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (connection_id) DO UPDATE SET user_id = excluded.user_id, role = excluded.role,
             name = excluded.name, email = excluded.email, connected_at = excluded.connected_at,
             expires_at = excluded.expires_at, token_expires_at = excluded.token_expires_at",
    )
    .bind(connection.connection_id.as_str())
    .bind(connection.user_id.as_str())
    .bind(connection.role.as_deref())
    .bind(connection.name.as_deref())
    .bind(connection.email.as_deref())
    .bind(connection.connected_at.timestamp_millis())
    .bind(connection.expires_at.timestamp_millis())
    .bind(connection.token_expires_at.map(|at| at.timestamp_millis()))
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

pub(super) async fn get_connection(store: &SqliteStore, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
    sqlx::query("SELECT * FROM connections WHERE connection_id = ?")
        .bind(id.as_str())
        .fetch_optional(&store.reader)
        .await
        .map_err(StoreError::backend)?
        .map(|row| connection_from_row(&row))
        .transpose()
}

pub(super) async fn delete_connection(
    store: &SqliteStore,
    id: &ConnectionId,
) -> StoreResult<Option<RemovedConnection>> {
    let mut tx = store.write_tx().await?;
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
    let offline = if remaining == 0 {
        let user = &record.user_id;
        let stored = sqlx::query("SELECT * FROM presence WHERE user_id = ?")
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?
            .map(|row| presence_from_row(&row))
            .transpose()?;
        let presence = PresenceRecord::gone_offline(user, stored, now_millis());
        write_presence(&mut *tx, &presence).await?;
        let subscribers =
            sqlx::query("SELECT connection_id, user_id FROM memberships WHERE room = ? ORDER BY connection_id")
                .bind(RoomName::presence_of(user).as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::backend)?
                .iter()
                .map(|row| {
                    Ok(Member {
                        connection_id: connection_id_from(row, "connection_id")?,
                        user_id: user_from(row, "user_id")?,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
        Some(WentOffline { presence, subscribers })
    } else {
        None
    };
    tx.commit().await.map_err(StoreError::backend)?;
    Ok(Some(RemovedConnection { record, rooms, last_of_user: offline.is_some(), offline }))
}

pub(super) async fn user_connections(store: &SqliteStore, user: &UserId) -> StoreResult<Vec<ConnectionRecord>> {
    sqlx::query("SELECT * FROM connections WHERE user_id = ? ORDER BY connected_at, connection_id")
        .bind(user.as_str())
        .fetch_all(&store.reader)
        .await
        .map_err(StoreError::backend)?
        .iter()
        .map(connection_from_row)
        .collect()
}

pub(super) async fn all_connections(store: &SqliteStore) -> StoreResult<Vec<ConnectionId>> {
    sqlx::query("SELECT connection_id FROM connections ORDER BY connection_id")
        .fetch_all(&store.reader)
        .await
        .map_err(StoreError::backend)?
        .iter()
        .map(|row| connection_id_from(row, "connection_id"))
        .collect()
}

pub(super) async fn set_token_expiry(store: &SqliteStore, id: &ConnectionId, at: DateTime<Utc>) -> StoreResult<bool> {
    let updated = sqlx::query("UPDATE connections SET token_expires_at = ? WHERE connection_id = ?")
        .bind(at.timestamp_millis())
        .bind(id.as_str())
        .execute(&store.writer)
        .await
        .map_err(StoreError::backend)?;
    Ok(updated.rows_affected() == 1)
}
