//! Connections: the connection item with its room set, the user mirror, membership items written at connect,
//! and the cleanup at disconnect.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use super::codec::{Item, attr_s, attr_string_set, attr_user, connection_attrs, connection_from_item, n, s, ts};
use super::keys::{META, TTL, USER_PRESENCE_FIRST, conn_pk, key, membership_key, user_pk};
use super::{DynamoItemError, DynamoStore, presence};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;
use crate::store::{
    ConnectionRecord, PresenceRecord, RemovedConnection, StoreError, StoreResult, WentOffline, now_millis,
};

impl DynamoStore {
    pub(super) fn membership_item(connection: &ConnectionRecord, room: &RoomName) -> Item {
        let mut item = membership_key(room, &connection.connection_id);
        item.insert("user_id".into(), s(connection.user_id.as_str()));
        item.insert(TTL.into(), n(connection.expires_at.timestamp()));
        item
    }

    pub(super) fn user_mirror_item(connection: &ConnectionRecord) -> Item {
        let mut item = key(user_pk(&connection.user_id), conn_pk(&connection.connection_id));
        connection_attrs(&mut item, connection);
        item
    }
}

pub(super) async fn put_connection(
    store: &DynamoStore,
    connection: &ConnectionRecord,
    rooms: &[RoomName],
) -> StoreResult<()> {
    let rooms: Vec<RoomName> = rooms.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    // The connection item goes first and carries the room set, so cleanup always knows every membership that
    // may exist. It is an UpdateItem rather than a PutItem so that re-putting a connection replaces its fields
    // but adds to its rooms atomically, and ALL_OLD tells a replacement apart from a new connection for the
    // counters.
    let mut request = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key(conn_pk(&connection.connection_id), META)))
        .return_values(ReturnValue::AllOld);
    let mut fields = Item::new();
    connection_attrs(&mut fields, connection);
    let mut sets = Vec::new();
    for (i, (name, value)) in fields.into_iter().enumerate() {
        sets.push(format!("#f{i} = :f{i}"));
        request = request
            .expression_attribute_names(format!("#f{i}"), name)
            .expression_attribute_values(format!(":f{i}"), value);
    }
    let mut expression = format!("SET {}", sets.join(", "));
    let absent: Vec<&str> = [
        ("role", connection.role.is_none()),
        ("name", connection.name.is_none()),
        ("email", connection.email.is_none()),
        ("token_expires_at", connection.token_expires_at.is_none()),
    ]
    .into_iter()
    .filter(|(_, absent)| *absent)
    .map(|(name, _)| name)
    .collect();
    for (i, name) in absent.iter().enumerate() {
        request = request.expression_attribute_names(format!("#r{i}"), *name);
    }
    if !absent.is_empty() {
        let names: Vec<String> = (0..absent.len()).map(|i| format!("#r{i}")).collect();
        expression.push_str(&format!(" REMOVE {}", names.join(", ")));
    }
    if !rooms.is_empty() {
        expression.push_str(" ADD rooms :rooms");
        request = request.expression_attribute_values(
            ":rooms",
            AttributeValue::Ss(rooms.iter().map(|r| r.as_str().to_owned()).collect()),
        );
    }
    let old = request
        .update_expression(expression)
        .send()
        .await
        .map_err(StoreError::backend)?
        .attributes
        .filter(|a| !a.is_empty());

    let mut writes = Vec::with_capacity(rooms.len() + 2);
    writes.push(DynamoStore::put_request(DynamoStore::user_mirror_item(connection))?);
    for room in &rooms {
        writes.push(DynamoStore::put_request(DynamoStore::membership_item(connection, room))?);
    }
    let mut added_rooms = rooms.clone();
    if let Some(old) = &old {
        let old_user = attr_user(old, "user_id")?;
        if old_user != connection.user_id {
            writes.push(DynamoStore::delete_request(key(user_pk(&old_user), conn_pk(&connection.connection_id)))?);
        }
        let old_rooms: BTreeSet<String> = attr_string_set(old, "rooms")?.into_iter().collect();
        added_rooms.retain(|r| !old_rooms.contains(r.as_str()));
    }
    store.batch_write(writes).await?;

    // The member counts and the connection gauges are items of their own, written at once: a Lambda is billed for
    // every request it waits for in turn (bench `cloud-durations`).
    let new_connection = i64::from(old.is_none());
    let gauges = [("active_connections", new_connection), ("total_connections", new_connection)];
    futures::try_join!(store.adjust_member_counts(&added_rooms, 1), store.adjust_stats(&gauges))?;
    Ok(())
}

pub(super) async fn get_connection(store: &DynamoStore, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
    store.fetch(key(conn_pk(id), META)).await?.map(|item| connection_from_item(&item)).transpose()
}

pub(super) async fn delete_connection(
    store: &DynamoStore,
    id: &ConnectionId,
) -> StoreResult<Option<RemovedConnection>> {
    // Deleting with ALL_OLD both reads what to clean up and decides the race between two deleters (a prune and
    // a `$disconnect`): only one of them gets the old item, so counters and presence move once.
    let old = store
        .client
        .delete_item()
        .table_name(&store.table)
        .set_key(Some(key(conn_pk(id), META)))
        .return_values(ReturnValue::AllOld)
        .send()
        .await
        .map_err(StoreError::backend)?
        .attributes
        .filter(|a| !a.is_empty());
    let Some(old) = old else { return Ok(None) };
    let record = connection_from_item(&old)?;
    let mut rooms = Vec::new();
    for raw in attr_string_set(&old, "rooms")? {
        rooms.push(RoomName::parse(raw).map_err(|_| StoreError::backend(DynamoItemError::Invalid("rooms")))?);
    }
    rooms.sort();

    let user = record.user_id.clone();

    // The counters go first: the connection item is gone, so stopping anywhere from here on leaves only items
    // that expire by TTL. The user's own room has exactly the user's connections as members, so its count
    // reaching 0 says this was the last one without a read. A count only drifts high (a connection whose
    // `$disconnect` never came was never subtracted), so a count above 0 is confirmed by a Query below. The
    // connection gauge depends on nothing else and goes with them.
    let own_room = RoomName::for_user(&user);
    let (own, others): (Vec<RoomName>, Vec<RoomName>) = rooms.iter().cloned().partition(|room| *room == own_room);
    let (own_change, _, ()) = futures::try_join!(
        store.adjust_member_counts(&own, -1),
        store.adjust_member_counts(&others, -1),
        store.adjust_stats(&[("active_connections", -1)]),
    )?;

    let mut writes = vec![DynamoStore::delete_request(key(user_pk(&user), conn_pk(id)))?];
    for room in &rooms {
        writes.push(DynamoStore::delete_request(membership_key(room, id))?);
    }
    let mut offline = None;
    let mut presence_error = None;
    if own_change < 0 {
        // The offline presence rides the batch that removes the items. If it cannot be read, the removal still
        // happens, and the error is reported after it.
        match presence::presence_and_subscribers(store, &user).await {
            Ok(found) => {
                let presence = PresenceRecord::gone_offline(&user, found.stored, now_millis());
                writes.push(DynamoStore::put_request(presence::presence_item(&presence))?);
                offline = Some(WentOffline { presence, subscribers: found.subscribers });
            }
            Err(error) => presence_error = Some(error),
        }
    }
    store.batch_write(writes).await?;
    if let Some(error) = presence_error {
        return Err(error);
    }
    if offline.is_none() {
        // This connection's mirror is deleted before asking, so of two last connections closing at once at least
        // the later one finds none left.
        let remaining = store
            .query_prefix(&user_pk(&user), USER_PRESENCE_FIRST)
            .limit(1)
            .projection_expression("PK")
            .send()
            .await
            .map_err(StoreError::backend)?;
        if remaining.items.unwrap_or_default().is_empty() {
            let found = presence::presence_and_subscribers(store, &user).await?;
            let presence = PresenceRecord::gone_offline(&user, found.stored, now_millis());
            presence::set_presence(store, &presence).await?;
            offline = Some(WentOffline { presence, subscribers: found.subscribers });
        }
    }
    Ok(Some(RemovedConnection { record, rooms, last_of_user: offline.is_some(), offline }))
}

pub(super) async fn user_connections(store: &DynamoStore, user: &UserId) -> StoreResult<Vec<ConnectionRecord>> {
    let items = store.query_all(|| store.query_prefix(&user_pk(user), "CONN#")).await?;
    items.iter().map(connection_from_item).collect()
}

pub(super) async fn all_connections(store: &DynamoStore) -> StoreResult<Vec<ConnectionId>> {
    // The one Scan in this adapter: listing every connection is inherently O(table) and only runs for an
    // explicitly configured broadcast. The filter keeps the answer small, not the read cost.
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let out = store
            .client
            .scan()
            .table_name(&store.table)
            .filter_expression("begins_with(PK, :conn) AND SK = :meta")
            .expression_attribute_values(":conn", s("CONN#"))
            .expression_attribute_values(":meta", s(META))
            .projection_expression("connection_id")
            .set_limit(store.page_size)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(StoreError::backend)?;
        for item in out.items.unwrap_or_default() {
            ids.push(
                ConnectionId::parse(attr_s(&item, "connection_id")?)
                    .map_err(|_| StoreError::backend(DynamoItemError::Invalid("connection_id")))?,
            );
        }
        match out.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => return Ok(ids),
        }
    }
}

/// Two UpdateItems: the connection item first (it answers whether the connection exists and whose it is), then the
/// user mirror that `user_connections` reads. A refresh is rare, so the extra request costs little.
pub(super) async fn set_token_expiry(store: &DynamoStore, id: &ConnectionId, at: DateTime<Utc>) -> StoreResult<bool> {
    let updated = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key(conn_pk(id), META)))
        .update_expression("SET token_expires_at = :at")
        .condition_expression("attribute_exists(PK)")
        .expression_attribute_values(":at", ts(&at))
        .return_values(ReturnValue::AllNew)
        .send()
        .await;
    let item = match updated {
        Ok(out) => out.attributes.unwrap_or_default(),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => return Ok(false),
        Err(e) => return Err(StoreError::backend(e)),
    };
    let user = attr_user(&item, "user_id")?;
    let mirrored = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key(user_pk(&user), conn_pk(id))))
        .update_expression("SET token_expires_at = :at")
        .condition_expression("attribute_exists(PK)")
        .expression_attribute_values(":at", ts(&at))
        .send()
        .await;
    match mirrored {
        // The mirror went away with a concurrent disconnect: the connection is gone, nothing is left to extend.
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(true),
        Err(e) => Err(StoreError::backend(e)),
    }
}
