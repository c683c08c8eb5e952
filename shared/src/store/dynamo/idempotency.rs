//! Idempotency keys: claim, complete and release, with expiry read from the item so TTL lag never blocks a key.

use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::Utc;
use serde_json::Value;

use super::DynamoStore;
use super::codec::{attr_json, attr_s, json_string, n, s};
use super::keys::{TTL, idem_pk, key};
use crate::store::{IdempotencyClaim, StoreError, StoreResult};

pub(super) async fn claim_idempotency(
    store: &DynamoStore,
    key_raw: &str,
    ttl_seconds: u64,
) -> StoreResult<IdempotencyClaim> {
    let now = Utc::now();
    let expires_at = now + chrono::Duration::seconds(i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 1000));
    let mut item = key(idem_pk(key_raw), "IDEM");
    item.insert("state".into(), s("pending"));
    item.insert("expires_at".into(), n(expires_at.timestamp_millis()));
    item.insert(TTL.into(), n(expires_at.timestamp()));
    // TTL deletion lags by up to days, so an expired key that still exists counts as free, from its expiry instant on.
    let claimed = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(PK) OR expires_at <= :now")
        .expression_attribute_values(":now", n(now.timestamp_millis()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    let error = match claimed {
        Ok(_) => return Ok(IdempotencyClaim::Claimed),
        Err(error) => error,
    };
    let old = match error.as_service_error() {
        Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
            c.item().cloned()
        }
        _ => return Err(StoreError::backend(error)),
    };
    let old = match old {
        Some(item) => item,
        None => match store.fetch(key(idem_pk(key_raw), "IDEM")).await? {
            Some(item) => item,
            // Released between our write and our read: the caller may simply try again.
            None => return Ok(IdempotencyClaim::InFlight),
        },
    };
    match attr_s(&old, "state")? {
        "done" => Ok(IdempotencyClaim::Completed(attr_json(&old, "result")?)),
        _ => Ok(IdempotencyClaim::InFlight),
    }
}

pub(super) async fn complete_idempotency(
    store: &DynamoStore,
    key_raw: &str,
    result: &Value,
    ttl_seconds: u64,
) -> StoreResult<()> {
    let expires_at = Utc::now() + chrono::Duration::seconds(i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 1000));
    let completed = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key(idem_pk(key_raw), "IDEM")))
        .update_expression("SET #state = :done, #result = :result, expires_at = :expires, #ttl = :ttl")
        .condition_expression("attribute_exists(PK)")
        .expression_attribute_names("#state", "state")
        .expression_attribute_names("#result", "result")
        .expression_attribute_names("#ttl", TTL)
        .expression_attribute_values(":expires", n(expires_at.timestamp_millis()))
        .expression_attribute_values(":ttl", n(expires_at.timestamp()))
        .expression_attribute_values(":done", s("done"))
        .expression_attribute_values(":result", json_string(result))
        .send()
        .await;
    match completed {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
            Err(StoreError::NotFound)
        }
        Err(e) => Err(StoreError::backend(e)),
    }
}

pub(super) async fn release_idempotency(store: &DynamoStore, key_raw: &str) -> StoreResult<()> {
    // Only a pending claim is released: a completed answer must survive a late release from a confused caller.
    let released = store
        .client
        .delete_item()
        .table_name(&store.table)
        .set_key(Some(key(idem_pk(key_raw), "IDEM")))
        .condition_expression("#state = :pending")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":pending", s("pending"))
        .send()
        .await;
    match released {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
        Err(e) => Err(StoreError::backend(e)),
    }
}
