//! Stored presence per user.

use std::collections::BTreeSet;

use super::DynamoStore;
use super::codec::{presence_from_item, put_opt, s, ts};
use super::keys::{PRESENCE, key, user_pk};
use crate::ids::UserId;
use crate::store::{PresenceRecord, StoreError, StoreResult};

pub(super) async fn set_presence(store: &DynamoStore, record: &PresenceRecord) -> StoreResult<()> {
    let mut item = key(user_pk(&record.user_id), PRESENCE);
    item.insert("user_id".into(), s(record.user_id.as_str()));
    item.insert("status".into(), s(record.status.as_str()));
    put_opt(&mut item, "custom_status", record.custom_status.as_deref());
    item.insert("last_seen".into(), ts(&record.last_seen));
    store.client.put_item().table_name(&store.table).set_item(Some(item)).send().await.map_err(StoreError::backend)?;
    Ok(())
}

pub(super) async fn get_presence(store: &DynamoStore, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
    // BatchGetItem rejects duplicate keys, so each user is asked for once.
    let users: BTreeSet<&UserId> = users.iter().collect();
    let items = store.batch_get(users.into_iter().map(|u| key(user_pk(u), PRESENCE)).collect()).await?;
    items.iter().map(presence_from_item).collect()
}
