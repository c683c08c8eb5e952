//! Rate-limit buckets (GCRA): one item per bucket holding its theoretical arrival time `tat` (ms), with a TTL at
//! the instant the bucket is full again, so idle buckets cost no storage.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};

use super::DynamoStore;
use super::codec::{Item, attr_i64, n};
use super::keys::{LIMIT, TTL, key, limit_pk};
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
    let now = now.timestamp_millis();
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
            .set_key(Some(key(limit_pk(key_raw), LIMIT)))
            .update_expression("SET tat = :tat, #ttl = :ttl")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":tat", n(tat))
            // DynamoDB's TTL has second precision; rounding up never deletes a bucket that still limits.
            .expression_attribute_values(":ttl", n(tat.div_euclid(1000) + 1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match expected {
            None => request
                .condition_expression("attribute_not_exists(tat) OR tat <= :now")
                .expression_attribute_values(":now", n(now)),
            Some(old) => request.condition_expression("tat = :old").expression_attribute_values(":old", n(old)),
        };
        let error = match request.send().await {
            Ok(_) => return Ok(Admission::Allowed),
            Err(error) => error,
        };
        let old: Option<Item> = match error.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
            _ => return Err(StoreError::backend(error)),
        };
        // The bucket changed under us: retry from the state the failed condition saw (absent means full again).
        expected = match old {
            Some(item) if item.contains_key("tat") => Some(attr_i64(&item, "tat")?),
            _ => None,
        };
        if expected.is_some_and(|tat| tat <= now) {
            expected = None;
        }
    }
    Err(StoreError::backend(super::DynamoItemError::Contended(ADMIT_ATTEMPTS)))
}
