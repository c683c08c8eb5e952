//! Notifications with an unread counter that moves in the same transaction as each read flag.

use rusqlite::{ToSql, params};

use super::codec::notification_from_row;
use super::{SqliteStore, all, execute, scalar};
use crate::ids::UserId;
use crate::store::{Notification, NotificationQuery, NotificationSelector, StoreError, StoreResult};

/// Adding the same (user, id) twice keeps the first notification, so a retried add changes nothing.
pub(super) async fn add_notification(store: &SqliteStore, notification: &Notification) -> StoreResult<bool> {
    let data = serde_json::to_string(&notification.data).map_err(StoreError::backend)?;
    let added = store.write(|writer| {
        execute(
            writer,
            "INSERT INTO notifications (user_id, id, title, message, kind, data, read, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (user_id, id) DO NOTHING",
            params![
                notification.user_id.as_str(),
                notification.id,
                notification.title,
                notification.message,
                notification.kind.as_deref(),
                data,
                notification.read,
                notification.created_at.timestamp_millis(),
            ],
        )
    })?;
    Ok(added > 0)
}

pub(super) async fn list_notifications(
    store: &SqliteStore,
    user: &UserId,
    query: &NotificationQuery,
) -> StoreResult<Vec<Notification>> {
    let user = user.as_str();
    let limit = i64::from(query.limit);
    let mut sql = String::from("SELECT * FROM notifications WHERE user_id = ?1");
    if query.unread_only {
        sql.push_str(" AND read = 0");
    }
    if query.before_id.is_some() {
        sql.push_str(" AND id < ?3");
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?2");
    let mut bound: Vec<&dyn ToSql> = vec![&user, &limit];
    if let Some(before_id) = &query.before_id {
        bound.push(before_id);
    }
    store.read(|reader| all(reader, &sql, bound.as_slice(), notification_from_row))
}

pub(super) async fn mark_notifications_read(
    store: &SqliteStore,
    user: &UserId,
    selector: &NotificationSelector,
) -> StoreResult<u64> {
    let changed = store.write_tx(|tx| match selector {
        NotificationSelector::All => {
            execute(tx, "UPDATE notifications SET read = 1 WHERE user_id = ? AND read = 0", [user.as_str()])
        }
        NotificationSelector::Ids(ids) => {
            // Only rows still unread change, so a repeated or retried id counts once.
            let mut changed = 0;
            for id in ids {
                changed += execute(
                    tx,
                    "UPDATE notifications SET read = 1 WHERE user_id = ? AND id = ? AND read = 0",
                    params![user.as_str(), id],
                )?;
            }
            Ok(changed)
        }
    })?;
    u64::try_from(changed).map_err(StoreError::backend)
}

pub(super) async fn unread_notifications(store: &SqliteStore, user: &UserId) -> StoreResult<u64> {
    let count: i64 = store.read(|reader| {
        scalar(reader, "SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read = 0", [user.as_str()])
    })?;
    u64::try_from(count).map_err(StoreError::backend)
}
