//! Notifications with an unread counter that moves in the same transaction as each read flag.

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::codec::notification_from_row;
use crate::ids::UserId;
use crate::store::{Notification, NotificationQuery, NotificationSelector, StoreError, StoreResult};

/// Adding the same (user, id) twice keeps the first notification, so a retried add changes nothing.
pub(super) async fn add_notification(store: &SqliteStore, notification: &Notification) -> StoreResult<bool> {
    let data = serde_json::to_string(&notification.data).map_err(StoreError::backend)?;
    let done = sqlx::query(
        "INSERT INTO notifications (user_id, id, title, message, kind, data, read, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (user_id, id) DO NOTHING",
    )
    .bind(notification.user_id.as_str())
    .bind(&notification.id)
    .bind(&notification.title)
    .bind(&notification.message)
    .bind(notification.kind.as_deref())
    .bind(data)
    .bind(notification.read)
    .bind(notification.created_at.timestamp_millis())
    .execute(&store.writer)
    .await
    .map_err(StoreError::backend)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn list_notifications(
    store: &SqliteStore,
    user: &UserId,
    query: &NotificationQuery,
) -> StoreResult<Vec<Notification>> {
    let mut sql = QueryBuilder::<Sqlite>::new("SELECT * FROM notifications WHERE user_id = ");
    sql.push_bind(user.as_str());
    if query.unread_only {
        sql.push(" AND read = 0");
    }
    if let Some(before_id) = &query.before_id {
        sql.push(" AND id < ").push_bind(before_id.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
    sql.build().fetch_all(&store.reader).await.map_err(StoreError::backend)?.iter().map(notification_from_row).collect()
}

pub(super) async fn mark_notifications_read(
    store: &SqliteStore,
    user: &UserId,
    selector: &NotificationSelector,
) -> StoreResult<u64> {
    let mut tx = store.write_tx().await?;
    let changed = match selector {
        NotificationSelector::All => sqlx::query("UPDATE notifications SET read = 1 WHERE user_id = ? AND read = 0")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?
            .rows_affected(),
        NotificationSelector::Ids(ids) => {
            // Only rows still unread change, so a repeated or retried id counts once.
            let mut changed = 0;
            for id in ids {
                changed += sqlx::query("UPDATE notifications SET read = 1 WHERE user_id = ? AND id = ? AND read = 0")
                    .bind(user.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend)?
                    .rows_affected();
            }
            changed
        }
    };
    tx.commit().await.map_err(StoreError::backend)?;
    Ok(changed)
}

pub(super) async fn unread_notifications(store: &SqliteStore, user: &UserId) -> StoreResult<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read = 0")
        .bind(user.as_str())
        .fetch_one(&store.reader)
        .await
        .map_err(StoreError::backend)?;
    u64::try_from(count).map_err(StoreError::backend)
}
