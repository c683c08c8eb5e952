//! Request helpers shared by every aggregate: strongly consistent reads, Queries followed to their last page, batch
//! writes and reads with retries of unprocessed items, and reading the reasons of a cancelled transaction.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{CancellationReason, DeleteRequest, PutRequest, WriteRequest};

use super::codec::{Item, s};
use super::{DynamoItemError, DynamoStore};
use crate::store::{StoreError, StoreResult};

/// BatchWriteItem's limit.
pub(super) const BATCH_WRITE_MAX: usize = 25;
/// BatchGetItem's limit.
pub(super) const BATCH_GET_MAX: usize = 100;
/// Retries of a batch's unprocessed items before giving up (DynamoDB throttling lasts seconds, not minutes).
pub(super) const BATCH_RETRIES: u32 = 8;
/// Concurrent single-item requests a store operation may have in flight (member count updates, notification reads).
pub(super) const ITEM_CONCURRENCY: usize = 8;

/// The cancellation reasons of a cancelled transaction, or `None` for any other failure.
pub(super) fn cancellation_reasons<R>(error: &SdkError<TransactWriteItemsError, R>) -> Option<&[CancellationReason]> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => Some(e.cancellation_reasons()),
        _ => None,
    }
}

pub(super) fn reason_is(reasons: &[CancellationReason], index: usize, code: &str) -> bool {
    reasons.get(index).and_then(CancellationReason::code) == Some(code)
}

pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailed";
pub(super) const TRANSACTION_CONFLICT: &str = "TransactionConflict";

/// Sleeps before retry `attempt` (1-based) with full jitter, capped at `cap_ms`.
pub(super) async fn backoff(attempt: u32, base_ms: u64, cap_ms: u64) {
    let ceiling = base_ms.saturating_mul(1 << attempt.min(10)).min(cap_ms).max(1);
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=ceiling))).await;
}

impl DynamoStore {
    pub(super) fn get_item(&self, key: Item) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
        self.client.get_item().table_name(&self.table).set_key(Some(key)).consistent_read(true)
    }

    pub(super) async fn fetch(&self, key: Item) -> StoreResult<Option<Item>> {
        let out = self.get_item(key).send().await.map_err(StoreError::backend)?;
        Ok(out.item)
    }

    /// Runs a Query to the end, following `LastEvaluatedKey`. `build` returns the request without a start key.
    pub(super) async fn query_all(
        &self,
        build: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = build()
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::backend)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// Counts what a Query matches (`Select: COUNT`, no items returned), following `LastEvaluatedKey` across
    /// DynamoDB's 1 MB pages. `build` returns the request without a start key.
    pub(super) async fn count_all(
        &self,
        build: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> StoreResult<u64> {
        let mut count = 0u64;
        let mut start = None;
        loop {
            let out = build()
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::backend)?;
            count += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(count),
            }
        }
    }

    /// Query on one partition, `SK` starting with `prefix`, strongly consistent.
    pub(super) fn query_prefix(
        &self,
        pk: &str,
        prefix: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
    }

    /// Query on one partition, `SK` between `low` and `high` inclusive, strongly consistent: several record kinds
    /// that sort next to each other, read in one request.
    pub(super) fn query_range(
        &self,
        pk: &str,
        low: &str,
        high: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":low", s(low))
            .expression_attribute_values(":high", s(high))
    }

    /// Writes `requests` in BatchWriteItem calls of at most 25, concurrently, retrying unprocessed items with
    /// backoff. Not atomic: callers order their writes so a partial failure leaves only harmless leftovers.
    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> StoreResult<()> {
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(BATCH_WRITE_MAX).map(<[WriteRequest]>::to_vec).collect();
        futures::future::try_join_all(chunks.into_iter().map(|chunk| self.batch_write_chunk(chunk))).await?;
        Ok(())
    }

    pub(super) async fn batch_write_chunk(&self, mut pending: Vec<WriteRequest>) -> StoreResult<()> {
        let mut attempt = 0;
        while !pending.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(StoreError::backend)?;
            pending = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
            if pending.is_empty() {
                break;
            }
            attempt += 1;
            if attempt > BATCH_RETRIES {
                return Err(StoreError::backend(DynamoItemError::Unprocessed(pending.len())));
            }
            backoff(attempt, 25, 2_000).await;
        }
        Ok(())
    }

    /// Reads `keys` (distinct) with strongly consistent BatchGetItem calls of up to 100 keys, retrying unprocessed
    /// keys with backoff. Missing items are simply absent from the answer.
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = Some(
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(StoreError::backend)?,
            );
            let mut attempt = 0;
            while let Some(keys) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(StoreError::backend)?;
                items.extend(out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    attempt += 1;
                    if attempt > BATCH_RETRIES {
                        let left = pending.map_or(0, |k| k.keys().len());
                        return Err(StoreError::backend(DynamoItemError::Unprocessed(left)));
                    }
                    backoff(attempt, 25, 2_000).await;
                }
            }
        }
        Ok(items)
    }

    pub(super) fn put_request(item: Item) -> StoreResult<WriteRequest> {
        Ok(WriteRequest::builder()
            .put_request(PutRequest::builder().set_item(Some(item)).build().map_err(StoreError::backend)?)
            .build())
    }

    pub(super) fn delete_request(key: Item) -> StoreResult<WriteRequest> {
        Ok(WriteRequest::builder()
            .delete_request(DeleteRequest::builder().set_key(Some(key)).build().map_err(StoreError::backend)?)
            .build())
    }
}
