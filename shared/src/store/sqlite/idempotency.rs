//! Idempotency keys: claim, complete and release, with expiry compared at claim time.

use chrono::Utc;
use rusqlite::params;
use serde_json::Value;

use super::codec::column;
use super::{SqliteStore, execute, optional};
use crate::store::{IdempotencyClaim, StoreError, StoreResult};

/// A key is free again from its expiry instant on (`expires_at <= now`), so a ttl of 0 never blocks a retry.
pub(super) async fn claim_idempotency(
    store: &SqliteStore,
    key: &str,
    ttl_seconds: u64,
) -> StoreResult<IdempotencyClaim> {
    let now = Utc::now().timestamp_millis();
    store.write_tx(|tx| {
        let existing = optional(tx, "SELECT result, expires_at FROM idempotency WHERE key = ?", [key], |row| {
            Ok((column::<Option<String>>(row, "result")?, column::<i64>(row, "expires_at")?))
        })?;
        if let Some((result, expires_at)) = existing
            && expires_at > now
        {
            return match result {
                None => Ok(IdempotencyClaim::InFlight),
                Some(json) => {
                    Ok(IdempotencyClaim::Completed(serde_json::from_str(&json).map_err(StoreError::backend)?))
                }
            };
        }
        execute(
            tx,
            "INSERT INTO idempotency (key, result, expires_at) VALUES (?, NULL, ?)
             ON CONFLICT (key) DO UPDATE SET result = NULL, expires_at = excluded.expires_at",
            params![key, expiry(now, ttl_seconds)],
        )?;
        Ok(IdempotencyClaim::Claimed)
    })
}

/// `NotFound` for a key nobody claimed (or whose claim was released): there is no claim to answer for.
pub(super) async fn complete_idempotency(
    store: &SqliteStore,
    key: &str,
    result: &Value,
    ttl_seconds: u64,
) -> StoreResult<()> {
    let json = serde_json::to_string(result).map_err(StoreError::backend)?;
    let expires_at = expiry(Utc::now().timestamp_millis(), ttl_seconds);
    let updated = store.write(|writer| {
        execute(
            writer,
            "UPDATE idempotency SET result = ?, expires_at = ? WHERE key = ?",
            params![json, expires_at, key],
        )
    })?;
    if updated == 1 { Ok(()) } else { Err(StoreError::NotFound) }
}

/// Only an in-flight claim is freed: a late release after completion must not throw away the stored answer.
pub(super) async fn release_idempotency(store: &SqliteStore, key: &str) -> StoreResult<()> {
    store.write(|writer| execute(writer, "DELETE FROM idempotency WHERE key = ? AND result IS NULL", [key]))?;
    Ok(())
}

fn expiry(now_ms: i64, ttl_seconds: u64) -> i64 {
    now_ms.saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX).saturating_mul(1000))
}
