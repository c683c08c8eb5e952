//! Rate-limit buckets (GCRA): one row per bucket holding its theoretical arrival time.

use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::{Admission, RateLimit, StoreError, StoreResult, gcra_step};

/// Reads and moves the bucket in one write transaction, so concurrent admits of one key are serialised. Rows of
/// full buckets (`tat` in the past) say nothing a missing row would not, so each admit also deletes a few of them:
/// the table stays as large as the set of buckets currently limiting someone.
pub(super) async fn admit(
    store: &SqliteStore,
    key: &str,
    limit: RateLimit,
    now: DateTime<Utc>,
) -> StoreResult<Admission> {
    let now = now.timestamp_millis();
    let mut tx = store.write_tx().await?;
    let tat: Option<i64> = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE key = ?")
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
    let admission = match gcra_step(tat, now, limit) {
        Ok(tat) => {
            sqlx::query(
                "INSERT INTO rate_limits (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
            )
            .bind(key)
            .bind(tat)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
            Admission::Allowed
        }
        Err(retry_after) => Admission::Limited { retry_after },
    };
    sqlx::query("DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE tat <= ? LIMIT 16)")
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
    tx.commit().await.map_err(StoreError::backend)?;
    Ok(admission)
}
