//! Connections: the connection row with its memberships, written and removed in one transaction each.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::codec::{connection_from_row, connection_id_from, room_from};
use super::membership::{insert_membership, member_from_row};
use super::presence::{presence_from_row, write_presence};
use super::{SqliteStore, all, execute, optional, optional_scalar, scalar};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;
use crate::store::{ConnectionRecord, PresenceRecord, RemovedConnection, StoreResult, WentOffline, now_millis};

/// Re-putting a connection id replaces its record and adds the new rooms to its memberships. Only a new
/// connection counts in `total_connections`: a re-put is the same connection, as in the DynamoDB adapter.
pub(super) async fn put_connection(
    store: &SqliteStore,
    connection: &ConnectionRecord,
    rooms: &[RoomName],
) -> StoreResult<()> {
    let id = connection.connection_id.as_str();
    store.write_tx(|tx| {
        let existed: Option<i64> = optional_scalar(tx, "SELECT 1 FROM connections WHERE connection_id = ?", [id])?;
        execute(
            tx,
            "INSERT INTO connections
                 (connection_id, user_id, role, name, email, connected_at, expires_at, token_expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (connection_id) DO UPDATE SET user_id = excluded.user_id, role = excluded.role,
                 name = excluded.name, email = excluded.email, connected_at = excluded.connected_at,
                 expires_at = excluded.expires_at, token_expires_at = excluded.token_expires_at",
            params![
                id,
                connection.user_id.as_str(),
                connection.role.as_deref(),
                connection.name.as_deref(),
                connection.email.as_deref(),
                connection.connected_at.timestamp_millis(),
                connection.expires_at.timestamp_millis(),
                connection.token_expires_at.map(|at| at.timestamp_millis()),
            ],
        )?;
        // A replaced connection may belong to another user now; its memberships must say so for fan-out.
        execute(
            tx,
            "UPDATE memberships SET user_id = ? WHERE connection_id = ?",
            params![connection.user_id.as_str(), id],
        )?;
        for room in rooms {
            insert_membership(tx, &connection.connection_id, &connection.user_id, room)?;
        }
        if existed.is_none() {
            execute(tx, "UPDATE stats SET value = value + 1 WHERE name = 'total_connections'", [])?;
        }
        Ok(())
    })
}

pub(super) async fn get_connection(store: &SqliteStore, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
    store.read(|reader| {
        optional(reader, "SELECT * FROM connections WHERE connection_id = ?", [id.as_str()], connection_from_row)
    })
}

pub(super) async fn delete_connection(
    store: &SqliteStore,
    id: &ConnectionId,
) -> StoreResult<Option<RemovedConnection>> {
    store.write_tx(|tx| {
        // Memberships go first: deleting the connection would cascade them away before we learn their rooms.
        let rooms: BTreeSet<RoomName> =
            all(tx, "DELETE FROM memberships WHERE connection_id = ? RETURNING room", [id.as_str()], |row| {
                room_from(row, "room")
            })?
            .into_iter()
            .collect();
        let deleted = optional(
            tx,
            "DELETE FROM connections WHERE connection_id = ? RETURNING *",
            [id.as_str()],
            connection_from_row,
        )?;
        let Some(record) = deleted else {
            // An unknown connection has no memberships either: the transaction commits no change.
            return Ok(None);
        };
        let remaining: i64 =
            scalar(tx, "SELECT COUNT(*) FROM connections WHERE user_id = ?", [record.user_id.as_str()])?;
        let offline = if remaining == 0 {
            let user = &record.user_id;
            let stored = optional(tx, "SELECT * FROM presence WHERE user_id = ?", [user.as_str()], presence_from_row)?;
            let presence = PresenceRecord::gone_offline(user, stored, now_millis());
            write_presence(tx, &presence)?;
            let subscribers = all(
                tx,
                "SELECT connection_id, user_id FROM memberships WHERE room = ? ORDER BY connection_id",
                [RoomName::presence_of(user).as_str()],
                member_from_row,
            )?;
            Some(WentOffline { presence, subscribers })
        } else {
            None
        };
        let rooms = rooms.into_iter().collect();
        Ok(Some(RemovedConnection { record, rooms, last_of_user: offline.is_some(), offline }))
    })
}

pub(super) async fn user_connections(store: &SqliteStore, user: &UserId) -> StoreResult<Vec<ConnectionRecord>> {
    store.read(|reader| {
        all(
            reader,
            "SELECT * FROM connections WHERE user_id = ? ORDER BY connected_at, connection_id",
            [user.as_str()],
            connection_from_row,
        )
    })
}

pub(super) async fn all_connections(store: &SqliteStore) -> StoreResult<Vec<ConnectionId>> {
    store.read(|reader| {
        all(reader, "SELECT connection_id FROM connections ORDER BY connection_id", [], |row| {
            connection_id_from(row, "connection_id")
        })
    })
}

pub(super) async fn set_token_expiry(store: &SqliteStore, id: &ConnectionId, at: DateTime<Utc>) -> StoreResult<bool> {
    let updated = store.write(|writer| {
        execute(
            writer,
            "UPDATE connections SET token_expires_at = ? WHERE connection_id = ?",
            params![at.timestamp_millis(), id.as_str()],
        )
    })?;
    Ok(updated == 1)
}
