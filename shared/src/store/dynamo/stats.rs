//! The counters behind `/health`: per-room member counts and the sharded global counters.

use aws_sdk_dynamodb::types::ReturnValue;
use futures::{StreamExt, TryStreamExt};

use super::DynamoStore;
use super::codec::{Item, attr_i64, n, s};
use super::keys::{
    ACTIVE_ROOM, ACTIVE_ROOM_SHARDS, ACTIVE_ROOMS_INDEX, ACTIVE_SHARD, COUNT, STATS_PK, STATS_SHARDS,
    active_room_shard, active_rooms_pk, key, room_pk, stats_sk,
};
use super::requests::ITEM_CONCURRENCY;
use crate::rooms::RoomName;
use crate::store::{Stats, StoreError, StoreResult};

impl DynamoStore {
    /// Adds `delta` to the member count of each room and returns how many rooms became non-empty (positive) or
    /// empty (negative): a disconnect learns from its own user room's answer whether it was the last connection.
    ///
    /// The counter item is also the room's entry in the sparse `ActiveRooms` index (`active_shard = ACTIVE#{shard}`):
    /// an increment sets the index keys in the same UpdateItem, and the decrement that empties the room takes them
    /// away with one more conditional UpdateItem, which loses harmlessly to a join that refilled the room meanwhile.
    /// The index projects keys only and an increment re-sets the keys to the values they already hold, so the index
    /// is written only when a room becomes active or empties, not on every count change.
    pub(super) async fn adjust_member_counts(&self, rooms: &[RoomName], delta: i64) -> StoreResult<i64> {
        futures::stream::iter(rooms.iter().cloned())
            .map(|room| async move {
                let mut request = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(room_pk(&room), COUNT)))
                    .expression_attribute_values(":d", n(delta))
                    .return_values(ReturnValue::UpdatedNew);
                request = if delta > 0 {
                    request
                        .update_expression("ADD members :d SET #ipk = :ipk, #isk = :isk")
                        .expression_attribute_names("#ipk", ACTIVE_SHARD)
                        .expression_attribute_names("#isk", ACTIVE_ROOM)
                        .expression_attribute_values(":ipk", s(active_rooms_pk(active_room_shard(&room))))
                        .expression_attribute_values(":isk", s(room.as_str()))
                } else {
                    request.update_expression("ADD members :d")
                };
                let out = request.send().await.map_err(StoreError::backend)?;
                let now = attr_i64(out.attributes.as_ref().unwrap_or(&Item::new()), "members")?;
                if delta < 0 && now <= 0 {
                    self.drop_from_active_rooms(&room).await?;
                }
                Ok::<i64, StoreError>(match (delta > 0, now) {
                    (true, 1) => 1,
                    (false, 0) => -1,
                    _ => 0,
                })
            })
            .buffer_unordered(ITEM_CONCURRENCY)
            .try_fold(0i64, |sum, change| async move { Ok(sum + change) })
            .await
    }

    /// Takes an emptied room out of the active-rooms index, unless a join refilled it since.
    async fn drop_from_active_rooms(&self, room: &RoomName) -> StoreResult<()> {
        let removed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(room_pk(room), COUNT)))
            .update_expression("REMOVE #ipk, #isk")
            .condition_expression("members <= :zero")
            .expression_attribute_names("#ipk", ACTIVE_SHARD)
            .expression_attribute_names("#isk", ACTIVE_ROOM)
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match removed {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    /// Adds to the global counters in one UpdateItem on a random shard; zero deltas are left out.
    pub(super) async fn adjust_stats(&self, deltas: &[(&str, i64)]) -> StoreResult<()> {
        let deltas: Vec<_> = deltas.iter().filter(|(_, d)| *d != 0).collect();
        if deltas.is_empty() {
            return Ok(());
        }
        let shard = uuid::Uuid::new_v4().as_bytes()[0] % STATS_SHARDS;
        let mut request =
            self.client.update_item().table_name(&self.table).set_key(Some(key(STATS_PK, stats_sk(shard))));
        let mut parts = Vec::new();
        for (i, (name, delta)) in deltas.iter().enumerate() {
            parts.push(format!("#c{i} :d{i}"));
            request = request
                .expression_attribute_names(format!("#c{i}"), *name)
                .expression_attribute_values(format!(":d{i}"), n(delta));
        }
        request.update_expression(format!("ADD {}", parts.join(", "))).send().await.map_err(StoreError::backend)?;
        Ok(())
    }
}

pub(super) async fn count_messages(store: &DynamoStore, n_messages: u64) -> StoreResult<()> {
    store.adjust_stats(&[("total_messages", i64::try_from(n_messages).unwrap_or(i64::MAX))]).await
}

pub(super) async fn stats(store: &DynamoStore) -> StoreResult<Stats> {
    let shards = store.batch_get((0..STATS_SHARDS).map(|shard| key(STATS_PK, stats_sk(shard))).collect()).await?;
    // Each shard holds part of every counter; a shard can be negative on its own (a connect counted on one shard,
    // its disconnect on another), only the sum means anything.
    let sum = |name: &'static str| -> StoreResult<u64> {
        let mut total = 0i64;
        for shard in &shards {
            if shard.contains_key(name) {
                total = total.saturating_add(attr_i64(shard, name)?);
            }
        }
        Ok(u64::try_from(total).unwrap_or(0))
    };
    Ok(Stats {
        active_connections: sum("active_connections")?,
        active_rooms: count_active_rooms(store).await?,
        total_connections: sum("total_connections")?,
        total_messages: sum("total_messages")?,
    })
}

/// The number of entries in the `ActiveRooms` index: one Query per shard that counts (`Select: COUNT`) and returns no
/// items, the shards read concurrently, each paged by DynamoDB's 1 MB read limit. Counting here, when `/health` is
/// read, instead of keeping an `active_rooms` counter, is what spares a join that opens a room and a leave that
/// empties one a stats write each; the price is a read of the index (keys only, about 60 B an entry, so one page per
/// some 16,000 active rooms) on every `/health`. The index is eventually consistent, so a room that just emptied may
/// still be counted for a moment.
async fn count_active_rooms(store: &DynamoStore) -> StoreResult<u64> {
    futures::stream::iter(0..ACTIVE_ROOM_SHARDS)
        .map(|shard| {
            store.count_all(move || {
                store
                    .client
                    .query()
                    .table_name(&store.table)
                    .index_name(ACTIVE_ROOMS_INDEX)
                    .key_condition_expression("#pk = :pk")
                    .expression_attribute_names("#pk", ACTIVE_SHARD)
                    .expression_attribute_values(":pk", s(active_rooms_pk(shard)))
            })
        })
        .buffer_unordered(ITEM_CONCURRENCY)
        .try_fold(0u64, |sum, count| async move { Ok(sum + count) })
        .await
}
