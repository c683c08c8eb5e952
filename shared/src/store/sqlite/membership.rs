//! Room membership (join, leave, fan-out listing), grants and participation.

use rusqlite::{Connection, Row, params};

use super::codec::{column, connection_id_from, room_from, user_from};
use super::{SqliteStore, all, execute, optional_scalar, scalar};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;
use crate::store::{
    ACTIVE_ROOMS_CURSOR, ActiveRoom, ConnectionRecord, MEMBERS_CURSOR, Member, Page, StoreError, StoreResult,
    USER_ROOMS_CURSOR, decode_cursor, page_from,
};

/// `NotFound` when the connection is unknown (a concurrent disconnect removed it): no membership may outlive
/// its connection, or the room would stay active in the stats and in fan-out forever.
pub(super) async fn join_room(
    store: &SqliteStore,
    connection: &ConnectionRecord,
    room: &RoomName,
) -> StoreResult<bool> {
    store.write_tx(|tx| {
        let exists: Option<i64> = optional_scalar(
            tx,
            "SELECT 1 FROM connections WHERE connection_id = ?",
            [connection.connection_id.as_str()],
        )?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        insert_membership(tx, &connection.connection_id, &connection.user_id, room)
    })
}

pub(super) async fn leave_room(store: &SqliteStore, connection: &ConnectionId, room: &RoomName) -> StoreResult<bool> {
    let removed = store.write(|writer| {
        execute(
            writer,
            "DELETE FROM memberships WHERE room = ? AND connection_id = ?",
            params![room.as_str(), connection.as_str()],
        )
    })?;
    Ok(removed == 1)
}

pub(super) async fn room_members(store: &SqliteStore, room: &RoomName) -> StoreResult<Vec<Member>> {
    store.read(|reader| {
        all(
            reader,
            "SELECT connection_id, user_id FROM memberships WHERE room = ? ORDER BY connection_id",
            [room.as_str()],
            member_from_row,
        )
    })
}

pub(super) async fn room_members_page(
    store: &SqliteStore,
    room: &RoomName,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Page<Member>> {
    let after = after.map(|cursor| decode_cursor(MEMBERS_CURSOR, cursor)).transpose()?;
    let limit = limit.max(1);
    let members = store.read(|reader| {
        all(
            reader,
            "SELECT connection_id, user_id FROM memberships WHERE room = ? AND connection_id > ?
             ORDER BY connection_id LIMIT ?",
            params![room.as_str(), after.as_deref().unwrap_or(""), i64::from(limit) + 1],
            member_from_row,
        )
    })?;
    Ok(page_from(members, limit as usize, MEMBERS_CURSOR, |m| m.connection_id.as_str()))
}

/// A row of `connection_id, user_id`.
pub(super) fn member_from_row(row: &Row<'_>) -> StoreResult<Member> {
    Ok(Member { connection_id: connection_id_from(row, "connection_id")?, user_id: user_from(row, "user_id")? })
}

/// Counted on the membership primary key `(room, connection_id)`: SQLite walks only this room's index entries.
pub(super) async fn room_member_count(store: &SqliteStore, room: &RoomName) -> StoreResult<u64> {
    let count: i64 =
        store.read(|reader| scalar(reader, "SELECT COUNT(*) FROM memberships WHERE room = ?", [room.as_str()]))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(super) async fn connection_rooms(store: &SqliteStore, connection: &ConnectionId) -> StoreResult<Vec<RoomName>> {
    store.read(|reader| {
        all(
            reader,
            "SELECT room FROM memberships WHERE connection_id = ? ORDER BY room",
            [connection.as_str()],
            |row| room_from(row, "room"),
        )
    })
}

pub(super) async fn grant(store: &SqliteStore, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
    for_each_user(store, room, users, "INSERT INTO grants (room, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING")
}

pub(super) async fn revoke(store: &SqliteStore, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
    for_each_user(store, room, users, "DELETE FROM grants WHERE room = ? AND user_id = ?")
}

/// Runs `statement` (binding the room, then a user) for every user, in one write transaction.
fn for_each_user(store: &SqliteStore, room: &RoomName, users: &[UserId], statement: &str) -> StoreResult<()> {
    store.write_tx(|tx| {
        for user in users {
            execute(tx, statement, params![room.as_str(), user.as_str()])?;
        }
        Ok(())
    })
}

pub(super) async fn is_granted(store: &SqliteStore, room: &RoomName, user: &UserId) -> StoreResult<bool> {
    let found: Option<i64> = store.read(|reader| {
        optional_scalar(
            reader,
            "SELECT 1 FROM grants WHERE room = ? AND user_id = ?",
            params![room.as_str(), user.as_str()],
        )
    })?;
    Ok(found.is_some())
}

pub(super) async fn room_grants(store: &SqliteStore, room: &RoomName) -> StoreResult<Vec<UserId>> {
    store.read(|reader| {
        all(reader, "SELECT user_id FROM grants WHERE room = ? ORDER BY user_id", [room.as_str()], |row| {
            user_from(row, "user_id")
        })
    })
}

pub(super) async fn record_participation(store: &SqliteStore, user: &UserId, room: &RoomName) -> StoreResult<()> {
    store.write(|writer| {
        execute(
            writer,
            "INSERT INTO participation (user_id, room) VALUES (?, ?) ON CONFLICT (user_id, room) DO NOTHING",
            params![user.as_str(), room.as_str()],
        )
    })?;
    Ok(())
}

pub(super) async fn user_rooms(store: &SqliteStore, user: &UserId) -> StoreResult<Vec<RoomName>> {
    // UNION (not UNION ALL) removes a room that is both granted and joined.
    store.read(|reader| {
        all(
            reader,
            "SELECT room FROM participation WHERE user_id = ?1
             UNION SELECT room FROM grants WHERE user_id = ?1
             ORDER BY room",
            [user.as_str()],
            |row| room_from(row, "room"),
        )
    })
}

pub(super) async fn user_rooms_page(
    store: &SqliteStore,
    user: &UserId,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Page<RoomName>> {
    let after = after.map(|cursor| decode_cursor(USER_ROOMS_CURSOR, cursor)).transpose()?;
    let limit = limit.max(1);
    // Each side of the UNION reads from its primary key or index starting at the cursor, so a page costs its size.
    let rooms = store.read(|reader| {
        all(
            reader,
            "SELECT room FROM (
                 SELECT room FROM participation WHERE user_id = ?1 AND room > ?2
                 UNION SELECT room FROM grants WHERE user_id = ?1 AND room > ?2
             ) ORDER BY room LIMIT ?3",
            params![user.as_str(), after.as_deref().unwrap_or(""), i64::from(limit) + 1],
            |row| room_from(row, "room"),
        )
    })?;
    Ok(page_from(rooms, limit as usize, USER_ROOMS_CURSOR, RoomName::as_str))
}

/// Rooms with members, in room name order from the cursor on: the grouping walks the memberships' primary key
/// (room, connection) from the cursor, and each room's last `seq` is one lookup at the end of its events' key.
pub(super) async fn active_rooms_page(
    store: &SqliteStore,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Page<ActiveRoom>> {
    let after = after.map(|cursor| decode_cursor(ACTIVE_ROOMS_CURSOR, cursor)).transpose()?;
    let limit = limit.max(1);
    let rooms = store.read(|reader| {
        all(
            reader,
            "SELECT room, members,
                    COALESCE((SELECT MAX(seq) FROM room_events WHERE room_events.room = active.room), 0) AS last_seq
             FROM (SELECT room, COUNT(*) AS members FROM memberships WHERE room > ?1
                   GROUP BY room ORDER BY room LIMIT ?2) AS active
             ORDER BY room",
            params![after.as_deref().unwrap_or(""), i64::from(limit) + 1],
            |row| {
                Ok(ActiveRoom {
                    room: room_from(row, "room")?,
                    members: u64::try_from(column::<i64>(row, "members")?).unwrap_or(0),
                    last_seq: u64::try_from(column::<i64>(row, "last_seq")?).unwrap_or(0),
                })
            },
        )
    })?;
    Ok(page_from(rooms, limit as usize, ACTIVE_ROOMS_CURSOR, |r| r.room.as_str()))
}

/// Adds a membership inside a write transaction; false when the connection was already in the room.
pub(super) fn insert_membership(
    tx: &Connection,
    connection: &ConnectionId,
    user: &UserId,
    room: &RoomName,
) -> StoreResult<bool> {
    let inserted = execute(
        tx,
        "INSERT INTO memberships (room, connection_id, user_id) VALUES (?, ?, ?)
         ON CONFLICT (room, connection_id) DO NOTHING",
        params![room.as_str(), connection.as_str(), user.as_str()],
    )?;
    Ok(inserted == 1)
}
