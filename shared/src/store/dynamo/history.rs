//! Room history: gap-free sequence numbers through a conditional counter, idempotent appends, paging, unread
//! counts and read watermarks.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::codec::{attr_u64, event_attrs, event_from_item, n, s};
use super::keys::{COUNTER, GSI1, GSI1PK, GSI1SK, events_pk, key, key_part, room_pk, seq_sk, user_pk};
use super::requests::{CONDITION_FAILED, TRANSACTION_CONFLICT, backoff, cancellation_reasons, reason_is};
use super::{DynamoItemError, DynamoStore};
use crate::ids::UserId;
use crate::rooms::RoomName;
use crate::store::{Appended, HistoryQuery, NewRoomEvent, RoomEvent, Store, StoreError, StoreResult};

/// Attempts of an append before the room is declared too contended; each lost attempt means another append won.
const APPEND_ATTEMPTS: u32 = 200;
/// The in-process sequence hints are bounded so a long-lived harness does not grow without limit.
const MAX_SEQ_HINTS: usize = 10_000;

impl DynamoStore {
    pub(super) fn seq_hint(&self, room: &RoomName) -> u64 {
        let hints = self.seq_hints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hints.get(room.as_str()).copied().unwrap_or(0)
    }

    pub(super) fn remember_seq(&self, room: &RoomName, seq: u64) {
        let mut hints = self.seq_hints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if hints.len() >= MAX_SEQ_HINTS && !hints.contains_key(room.as_str()) {
            hints.clear();
        }
        let hint = hints.entry(room.as_str().to_owned()).or_insert(0);
        *hint = (*hint).max(seq);
    }

    pub(super) async fn read_counter(&self, room: &RoomName) -> StoreResult<u64> {
        let item = self.fetch(key(room_pk(room), COUNTER)).await?;
        item.map_or(Ok(0), |i| attr_u64(&i, "seq"))
    }
}

pub(super) async fn append_event(store: &DynamoStore, event: NewRoomEvent) -> StoreResult<Appended> {
    // User ids cannot be empty, so `CMID##…` (no sender: a platform emit) never collides with a user's key.
    let dedupe_sk = event.client_msg_id.as_ref().map(|cmid| {
        let sender = event.sender.as_ref().map_or("", UserId::as_str);
        format!("CMID#{sender}#{}", key_part(cmid))
    });
    let mut prev = store.seq_hint(&event.room);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let stored = RoomEvent {
            room: event.room.clone(),
            seq: prev + 1,
            id: event.id.clone(),
            event: event.event.clone(),
            data: event.data.clone(),
            sender: event.sender.clone(),
            client_msg_id: event.client_msg_id.clone(),
            created_at: event.created_at,
        };
        // The counter moves from exactly `prev`, so a lost race cancels the whole transaction and no number is
        // ever skipped. ALL_OLD on the counter hands back the winner's value for the next attempt.
        let counter = Update::builder()
            .table_name(&store.table)
            .set_key(Some(key(room_pk(&event.room), COUNTER)))
            .update_expression("SET seq = :next")
            .condition_expression(if prev == 0 { "attribute_not_exists(seq)" } else { "seq = :prev" })
            .set_expression_attribute_values(if prev == 0 {
                Some(HashMap::from([(":next".to_owned(), n(stored.seq))]))
            } else {
                Some(HashMap::from([(":next".to_owned(), n(stored.seq)), (":prev".to_owned(), n(prev))]))
            })
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(StoreError::backend)?;
        let mut event_item = key(events_pk(&event.room), seq_sk(stored.seq));
        event_attrs(&mut event_item, &stored);
        event_item.insert(GSI1PK.into(), s(events_pk(&event.room)));
        event_item.insert(GSI1SK.into(), s(format!("ID#{}", key_part(&event.id))));
        let event_put = Put::builder()
            .table_name(&store.table)
            .set_item(Some(event_item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(StoreError::backend)?;
        let mut request = store
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(counter).build())
            .transact_items(TransactWriteItem::builder().put(event_put).build());
        if let Some(dedupe_sk) = &dedupe_sk {
            let mut dedupe = key(events_pk(&event.room), dedupe_sk.clone());
            event_attrs(&mut dedupe, &stored);
            let dedupe_put = Put::builder()
                .table_name(&store.table)
                .set_item(Some(dedupe))
                .condition_expression("attribute_not_exists(PK)")
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(StoreError::backend)?;
            request = request.transact_items(TransactWriteItem::builder().put(dedupe_put).build());
        }
        let error = match request.send().await {
            Ok(_) => {
                store.remember_seq(&event.room, stored.seq);
                return Ok(Appended { event: stored, duplicate: false, counted: false });
            }
            Err(error) => error,
        };
        let Some(reasons) = cancellation_reasons(&error) else { return Err(StoreError::backend(error)) };
        if let Some(dedupe_sk) = dedupe_sk.as_ref().filter(|_| reason_is(reasons, 2, CONDITION_FAILED)) {
            let first = match reasons.get(2).and_then(CancellationReason::item) {
                Some(item) => event_from_item(item)?,
                None => match store.fetch(key(events_pk(&event.room), dedupe_sk.clone())).await? {
                    Some(item) => event_from_item(&item)?,
                    None => return Err(StoreError::backend(error)),
                },
            };
            return Ok(Appended { event: first, duplicate: true, counted: false });
        }
        if attempt >= APPEND_ATTEMPTS {
            return Err(StoreError::backend(DynamoItemError::Contended(attempt)));
        }
        if reason_is(reasons, 0, CONDITION_FAILED) {
            prev = match reasons.first().and_then(CancellationReason::item).filter(|i| !i.is_empty()) {
                Some(item) => attr_u64(item, "seq")?,
                None => store.read_counter(&event.room).await?,
            };
            store.remember_seq(&event.room, prev);
            // A stale hint costs one immediate retry; after that we are racing other appenders, so spread out.
            if attempt > 1 {
                backoff(attempt.min(6), 2, 50).await;
            }
        } else if reasons.iter().any(|r| r.code() == Some(TRANSACTION_CONFLICT)) {
            backoff(attempt.min(6), 5, 200).await;
        } else {
            return Err(StoreError::backend(error));
        }
    }
}

pub(super) async fn history(store: &DynamoStore, room: &RoomName, query: HistoryQuery) -> StoreResult<Vec<RoomEvent>> {
    let (low, high, limit, newest_first) = match query {
        HistoryQuery::Latest { limit } => (1, u64::MAX, limit, true),
        HistoryQuery::Before { before, limit } => (1, before.saturating_sub(1), limit, true),
        HistoryQuery::After { after, limit } => (after.saturating_add(1), u64::MAX, limit, false),
    };
    if limit == 0 || low > high {
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    let mut start = None;
    // `Limit` bounds items read per page, but a page also stops at 1 MB, so keep reading until `limit` is met.
    while events.len() < limit as usize {
        let remaining = i32::try_from(limit as usize - events.len()).unwrap_or(i32::MAX);
        let out = store
            .client
            .query()
            .table_name(&store.table)
            .consistent_read(true)
            .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
            .expression_attribute_values(":pk", s(events_pk(room)))
            .expression_attribute_values(":low", s(seq_sk(low)))
            .expression_attribute_values(":high", s(seq_sk(high)))
            .scan_index_forward(!newest_first)
            .limit(store.page_size.map_or(remaining, |p| p.min(remaining)))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(StoreError::backend)?;
        for item in out.items.unwrap_or_default() {
            events.push(event_from_item(&item)?);
        }
        match out.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => break,
        }
    }
    events.truncate(limit as usize);
    if newest_first {
        events.reverse();
    }
    Ok(events)
}

pub(super) async fn get_event(store: &DynamoStore, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>> {
    // GSI1 is eventually consistent: an event appended a few milliseconds ago may not be found yet.
    let out = store
        .client
        .query()
        .table_name(&store.table)
        .index_name(GSI1)
        .key_condition_expression("GSI1PK = :pk AND GSI1SK = :sk")
        .expression_attribute_values(":pk", s(events_pk(room)))
        .expression_attribute_values(":sk", s(format!("ID#{}", key_part(id))))
        .send()
        .await
        .map_err(StoreError::backend)?;
    out.items.unwrap_or_default().first().map(event_from_item).transpose()
}

pub(super) async fn count_unread(
    store: &DynamoStore,
    room: &RoomName,
    after_seq: u64,
    reader: &UserId,
) -> StoreResult<u64> {
    // Reads every event after the watermark (the filter does not reduce the read cost); unread tails are short.
    store
        .count_all(|| {
            store
                .client
                .query()
                .table_name(&store.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
                .filter_expression("attribute_not_exists(sender) OR sender <> :reader")
                .expression_attribute_values(":pk", s(events_pk(room)))
                .expression_attribute_values(":low", s(seq_sk(after_seq.saturating_add(1))))
                .expression_attribute_values(":high", s(seq_sk(u64::MAX)))
                .expression_attribute_values(":reader", s(reader.as_str()))
        })
        .await
}

pub(super) async fn mark_read(store: &DynamoStore, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64> {
    let updated = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key(user_pk(user), format!("READ#{room}"))))
        .update_expression("SET seq = :seq")
        .condition_expression("attribute_not_exists(seq) OR seq < :seq")
        .expression_attribute_values(":seq", n(seq))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match updated {
        Ok(_) => Ok(seq),
        Err(e) => match e.as_service_error() {
            // The stored watermark is already at or above `seq`; it never moves down.
            Some(service) if service.is_conditional_check_failed_exception() => {
                let old = match &service {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item().cloned()
                    }
                    _ => None,
                };
                match old {
                    Some(item) => attr_u64(&item, "seq"),
                    None => store.read_watermark(user, room).await,
                }
            }
            _ => Err(StoreError::backend(e)),
        },
    }
}

pub(super) async fn read_watermark(store: &DynamoStore, user: &UserId, room: &RoomName) -> StoreResult<u64> {
    let item = store.fetch(key(user_pk(user), format!("READ#{room}"))).await?;
    item.map_or(Ok(0), |i| attr_u64(&i, "seq"))
}
