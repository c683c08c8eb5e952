//! Stored presence per user, and the user-partition read `$connect` and the last `$disconnect` make: the user's
//! connections, stored presence and presence subscribers sort next to each other (see [`super::keys`]).

use std::collections::BTreeSet;

use super::DynamoStore;
use super::codec::{Item, attr_s, connection_from_item, presence_from_item, put_opt, s, ts};
use super::keys::{PRESENCE, PRESENCE_SUBSCRIBER, SK, USER_PRESENCE_FIRST, USER_PRESENCE_LAST, key, user_pk};
use super::membership::member_from_item;
use crate::ids::UserId;
use crate::store::{PresenceRecord, StoreError, StoreResult, UserPresence};

pub(super) fn presence_item(record: &PresenceRecord) -> Item {
    let mut item = key(user_pk(&record.user_id), PRESENCE);
    item.insert("user_id".into(), s(record.user_id.as_str()));
    item.insert("status".into(), s(record.status.as_str()));
    put_opt(&mut item, "custom_status", record.custom_status.as_deref());
    item.insert("last_seen".into(), ts(&record.last_seen));
    item
}

pub(super) async fn set_presence(store: &DynamoStore, record: &PresenceRecord) -> StoreResult<()> {
    let item = presence_item(record);
    store.client.put_item().table_name(&store.table).set_item(Some(item)).send().await.map_err(StoreError::backend)?;
    Ok(())
}

pub(super) async fn get_presence(store: &DynamoStore, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
    // BatchGetItem rejects duplicate keys, so each user is asked for once.
    let users: BTreeSet<&UserId> = users.iter().collect();
    let items = store.batch_get(users.into_iter().map(|u| key(user_pk(u), PRESENCE)).collect()).await?;
    items.iter().map(presence_from_item).collect()
}

/// One strongly consistent Query (more pages only past 1 MB of subscribers) instead of three reads.
pub(super) async fn user_presence(store: &DynamoStore, user: &UserId) -> StoreResult<UserPresence> {
    read_user_range(store, user, USER_PRESENCE_FIRST).await
}

/// The stored presence and the subscribers only, for a disconnect that already knows no connection is left.
pub(super) async fn presence_and_subscribers(store: &DynamoStore, user: &UserId) -> StoreResult<UserPresence> {
    read_user_range(store, user, PRESENCE).await
}

async fn read_user_range(store: &DynamoStore, user: &UserId, from: &str) -> StoreResult<UserPresence> {
    let pk = user_pk(user);
    let items = store.query_all(|| store.query_range(&pk, from, USER_PRESENCE_LAST)).await?;
    let mut found = UserPresence::default();
    for item in &items {
        match attr_s(item, SK)? {
            PRESENCE => found.stored = Some(presence_from_item(item)?),
            sk if sk.starts_with(PRESENCE_SUBSCRIBER) => {
                found.subscribers.push(member_from_item(item, PRESENCE_SUBSCRIBER)?);
            }
            sk if sk.starts_with(USER_PRESENCE_FIRST) => found.connections.push(connection_from_item(item)?),
            _ => {}
        }
    }
    Ok(found)
}
