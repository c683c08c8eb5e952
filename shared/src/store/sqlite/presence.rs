//! Stored presence per user.

use std::collections::BTreeSet;

use rusqlite::{Connection, Row, params};

use super::codec::{column, invalid, time_from, user_from};
use super::{SqliteStore, all, execute};
use crate::ids::UserId;
use crate::store::{PresenceRecord, PresenceStatus, StoreError, StoreResult};

pub(super) async fn set_presence(store: &SqliteStore, record: &PresenceRecord) -> StoreResult<()> {
    store.write(|writer| write_presence(writer, record))
}

/// Stores `record` on the writer, on its own or inside a transaction that changes more.
pub(super) fn write_presence(writer: &Connection, record: &PresenceRecord) -> StoreResult<()> {
    execute(
        writer,
        "INSERT INTO presence (user_id, status, custom_status, last_seen) VALUES (?, ?, ?, ?)
         ON CONFLICT (user_id) DO UPDATE SET status = excluded.status, custom_status = excluded.custom_status,
             last_seen = excluded.last_seen",
        params![
            record.user_id.as_str(),
            record.status.as_str(),
            record.custom_status.as_deref(),
            record.last_seen.timestamp_millis()
        ],
    )?;
    Ok(())
}

pub(super) fn presence_from_row(row: &Row<'_>) -> StoreResult<PresenceRecord> {
    let status: String = column(row, "status")?;
    Ok(PresenceRecord {
        user_id: user_from(row, "user_id")?,
        status: PresenceStatus::parse(&status).ok_or_else(|| invalid("presence.status", status))?,
        custom_status: column(row, "custom_status")?,
        last_seen: time_from(row, "last_seen")?,
    })
}

/// One statement for any number of users: the list is bound as one JSON array and read back with `json_each`, so
/// there is no variable limit to chunk for, and the statement is prepared once and cached like every other.
pub(super) async fn get_presence(store: &SqliteStore, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
    // Deduplicating first keeps a user named twice from being returned twice.
    let users: BTreeSet<&str> = users.iter().map(UserId::as_str).collect();
    let users = serde_json::to_string(&users).map_err(StoreError::backend)?;
    store.read(|reader| {
        all(
            reader,
            "SELECT * FROM presence WHERE user_id IN (SELECT value FROM json_each(?))",
            [users],
            presence_from_row,
        )
    })
}
