//! Rate-limit buckets (GCRA): one item per bucket holding its theoretical arrival time `tat` (ms), with a TTL at
//! the instant the bucket is full again, so idle buckets cost no storage; except a connection's inbound bucket,
//! which is the `in_tat` attribute of the connection item, written together with its `last_activity`.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};

use super::DynamoStore;
use super::codec::{Item, attr_i64, attr_opt_time, n, ts};
use super::keys::{LIMIT, META, TTL, conn_pk, key, limit_pk};
use crate::ids::ConnectionId;
use crate::store::{Admission, RateLimit, StoreError, StoreResult, gcra_step};

/// Attempts before giving up when other admits of the same key keep moving it between our read and our write.
const ADMIT_ATTEMPTS: u32 = 8;

/// The common case, a bucket that is full (absent, or `tat` in the past), is one conditional UpdateItem that sets
/// `tat = now + interval`. When the bucket is partly drained the failed condition hands back the stored `tat`
/// (ReturnValuesOnConditionCheckFailure), which decides without another read: limited (no further request), or a
/// second UpdateItem that moves `tat` on only if nobody else moved it meanwhile.
pub(super) async fn admit(
    store: &DynamoStore,
    key_raw: &str,
    limit: RateLimit,
    now: DateTime<Utc>,
) -> StoreResult<Admission> {
    take(store, Bucket::Own(key_raw), limit, now).await
}

/// The same steps on the connection item: its `in_tat` attribute is the bucket, and the write that moves it also
/// sets `last_activity`, so recording activity costs no request. The bucket is deleted with the connection, and the
/// condition that the item exists keeps a frame of a connection already cleaned up from recreating it.
pub(super) async fn admit_frame(
    store: &DynamoStore,
    connection: &ConnectionId,
    limit: RateLimit,
    now: DateTime<Utc>,
) -> StoreResult<Admission> {
    take(store, Bucket::Connection(connection), limit, now).await
}

/// One GetItem of the connection item's `last_activity`.
pub(super) async fn connection_activity(
    store: &DynamoStore,
    connection: &ConnectionId,
) -> StoreResult<Option<DateTime<Utc>>> {
    let item = store.get_item(key(conn_pk(connection), META)).projection_expression(LAST_ACTIVITY).send().await;
    match item.map_err(StoreError::backend)?.item {
        Some(item) => attr_opt_time(&item, LAST_ACTIVITY),
        None => Ok(None),
    }
}

const LAST_ACTIVITY: &str = "last_activity";

/// Where a bucket's `tat` is kept.
enum Bucket<'a> {
    /// An item of its own (`RL#{key}`/`RL`), deleted by TTL once full again.
    Own(&'a str),
    /// The `in_tat` attribute of the connection item, which also carries the last activity.
    Connection(&'a ConnectionId),
}

/// The GCRA steps described on [`admit`], on either kind of bucket.
async fn take(store: &DynamoStore, bucket: Bucket<'_>, limit: RateLimit, now: DateTime<Utc>) -> StoreResult<Admission> {
    let at = now;
    let now = now.timestamp_millis();
    let (item_key, tat_name) = match bucket {
        Bucket::Own(key_raw) => (key(limit_pk(key_raw), LIMIT), "tat"),
        Bucket::Connection(connection) => (key(conn_pk(connection), META), "in_tat"),
    };
    let mut expected: Option<i64> = None;
    for _ in 0..ADMIT_ATTEMPTS {
        let tat = match gcra_step(expected, now, limit) {
            Ok(tat) => tat,
            Err(retry_after) => return Ok(Admission::Limited { retry_after }),
        };
        let request = store
            .client
            .update_item()
            .table_name(&store.table)
            .set_key(Some(item_key.clone()))
            .expression_attribute_names("#tat", tat_name)
            .expression_attribute_values(":tat", n(tat))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match bucket {
            Bucket::Own(_) => request
                .update_expression("SET #tat = :tat, #ttl = :ttl")
                .expression_attribute_names("#ttl", TTL)
                // DynamoDB's TTL has second precision; rounding up never deletes a bucket that still limits.
                .expression_attribute_values(":ttl", n(tat.div_euclid(1000) + 1)),
            Bucket::Connection(_) => request
                .update_expression("SET #tat = :tat, #activity = :activity")
                .expression_attribute_names("#activity", LAST_ACTIVITY)
                .expression_attribute_values(":activity", ts(&at)),
        };
        let exists = match bucket {
            Bucket::Own(_) => "",
            Bucket::Connection(_) => "attribute_exists(PK) AND ",
        };
        let request = match expected {
            None => request
                .condition_expression(format!("{exists}(attribute_not_exists(#tat) OR #tat <= :now)"))
                .expression_attribute_values(":now", n(now)),
            Some(old) => {
                request.condition_expression(format!("{exists}#tat = :old")).expression_attribute_values(":old", n(old))
            }
        };
        let error = match request.send().await {
            Ok(_) => return Ok(Admission::Allowed),
            Err(error) => error,
        };
        let old: Option<Item> = match error.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned().filter(|i| !i.is_empty()),
            _ => return Err(StoreError::backend(error)),
        };
        if old.is_none() && matches!(bucket, Bucket::Connection(_)) {
            // The connection is no longer recorded (a disconnect raced this frame): there is no bucket to hold it back,
            // and a frame is let through whenever the limiter cannot decide.
            return Ok(Admission::Allowed);
        }
        // The bucket changed under us: retry from the state the failed condition saw (absent means full again).
        expected = match old {
            Some(item) if item.contains_key(tat_name) => Some(attr_i64(&item, tat_name)?),
            _ => None,
        };
        if expected.is_some_and(|tat| tat <= now) {
            expected = None;
        }
    }
    Err(StoreError::backend(super::DynamoItemError::Contended(ADMIT_ATTEMPTS)))
}
