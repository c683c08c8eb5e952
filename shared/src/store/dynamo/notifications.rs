//! Notifications with an unread counter that moves in the same transaction as each read flag.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use futures::{StreamExt, TryStreamExt};

use super::DynamoStore;
use super::codec::{attr_count, attr_s, json_string, n, notification_from_item, put_opt, s, ts};
use super::keys::{UNREAD, key, key_part, notif_pk};
use super::requests::{CONDITION_FAILED, ITEM_CONCURRENCY, cancellation_reasons, reason_is};
use crate::ids::UserId;
use crate::store::{Notification, NotificationQuery, NotificationSelector, StoreError, StoreResult};

impl DynamoStore {
    /// One transaction per notification id: the read flag flips only if it was false, and the unread counter moves
    /// in the same transaction, so a retried request can never count a notification twice.
    pub(super) async fn mark_one_read(&self, user: &UserId, id: &str) -> StoreResult<u64> {
        let flip = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(notif_pk(user), format!("N#{}", key_part(id)))))
            .update_expression("SET #read = :true")
            .condition_expression("attribute_exists(PK) AND #read = :false")
            .expression_attribute_names("#read", "read")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .build()
            .map_err(StoreError::backend)?;
        let counter = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(notif_pk(user), UNREAD)))
            .update_expression("ADD unread :minus")
            .expression_attribute_values(":minus", n(-1))
            .build()
            .map_err(StoreError::backend)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(flip).build())
            .transact_items(TransactWriteItem::builder().update(counter).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(1),
            Err(e) if cancellation_reasons(&e).is_some_and(|r| reason_is(r, 0, CONDITION_FAILED)) => Ok(0),
            Err(e) => Err(StoreError::backend(e)),
        }
    }
}

pub(super) async fn add_notification(store: &DynamoStore, notification: &Notification) -> StoreResult<bool> {
    let user = &notification.user_id;
    let mut item = key(notif_pk(user), format!("N#{}", key_part(&notification.id)));
    item.insert("id".into(), s(&notification.id));
    item.insert("user_id".into(), s(user.as_str()));
    item.insert("title".into(), s(&notification.title));
    item.insert("message".into(), s(&notification.message));
    put_opt(&mut item, "kind", notification.kind.as_deref());
    item.insert("data".into(), json_string(&notification.data));
    item.insert("read".into(), AttributeValue::Bool(notification.read));
    item.insert("created_at".into(), ts(&notification.created_at));
    let put = Put::builder()
        .table_name(&store.table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(StoreError::backend)?;
    let mut request = store.client.transact_write_items().transact_items(TransactWriteItem::builder().put(put).build());
    if !notification.read {
        let counter = Update::builder()
            .table_name(&store.table)
            .set_key(Some(key(notif_pk(user), UNREAD)))
            .update_expression("ADD unread :one")
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(StoreError::backend)?;
        request = request.transact_items(TransactWriteItem::builder().update(counter).build());
    }
    match request.send().await {
        Ok(_) => Ok(true),
        // The same notification added twice (a retried request): the first one counted, this one is a no-op.
        Err(e) if cancellation_reasons(&e).is_some_and(|r| reason_is(r, 0, CONDITION_FAILED)) => Ok(false),
        Err(e) => Err(StoreError::backend(e)),
    }
}

pub(super) async fn list_notifications(
    store: &DynamoStore,
    user: &UserId,
    query: &NotificationQuery,
) -> StoreResult<Vec<Notification>> {
    let limit = query.limit as usize;
    let mut found = Vec::new();
    let mut start = None;
    // With `unread_only` the filter runs after `Limit`, so pages may come back short: keep reading until the
    // page is full or the partition ends.
    while found.len() < limit {
        let mut request = store
            .client
            .query()
            .table_name(&store.table)
            .consistent_read(true)
            .expression_attribute_values(":pk", s(notif_pk(user)))
            .scan_index_forward(false)
            .limit(store.page_size.unwrap_or(i32::try_from(limit).unwrap_or(i32::MAX)))
            .set_exclusive_start_key(start.take());
        request = match &query.before_id {
            Some(before) => request
                .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :before")
                .expression_attribute_values(":low", s("N#"))
                .expression_attribute_values(":before", s(format!("N#{}", key_part(before)))),
            None => request
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":prefix", s("N#")),
        };
        if query.unread_only {
            request = request
                .filter_expression("#read = :false")
                .expression_attribute_names("#read", "read")
                .expression_attribute_values(":false", AttributeValue::Bool(false));
        }
        let out = request.send().await.map_err(StoreError::backend)?;
        for item in out.items.unwrap_or_default() {
            let notification = notification_from_item(&item)?;
            // BETWEEN is inclusive; the cursor itself belongs to the previous page.
            if query.before_id.as_deref() != Some(notification.id.as_str()) {
                found.push(notification);
            }
        }
        match out.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => break,
        }
    }
    found.truncate(limit);
    Ok(found)
}

pub(super) async fn mark_notifications_read(
    store: &DynamoStore,
    user: &UserId,
    selector: &NotificationSelector,
) -> StoreResult<u64> {
    let ids: Vec<String> = match selector {
        NotificationSelector::Ids(ids) => ids.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect(),
        NotificationSelector::All => {
            let items = store
                .query_all(|| {
                    store
                        .query_prefix(&notif_pk(user), "N#")
                        .filter_expression("#read = :false")
                        .expression_attribute_names("#read", "read")
                        .expression_attribute_values(":false", AttributeValue::Bool(false))
                        .projection_expression("id")
                })
                .await?;
            items.iter().map(|i| attr_s(i, "id").map(str::to_owned)).collect::<StoreResult<_>>()?
        }
    };
    futures::stream::iter(ids)
        .map(|id| async move { store.mark_one_read(user, &id).await })
        .buffer_unordered(ITEM_CONCURRENCY)
        .try_fold(0u64, |sum, changed| async move { Ok(sum + changed) })
        .await
}

pub(super) async fn unread_notifications(store: &DynamoStore, user: &UserId) -> StoreResult<u64> {
    let item = store.fetch(key(notif_pk(user), UNREAD)).await?;
    attr_count(item.as_ref(), "unread")
}
