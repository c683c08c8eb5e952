//! Rate-limit buckets (GCRA): one row per bucket holding its theoretical arrival time, except a connection's inbound
//! bucket, which is the `inbound_tat` column of its row, moved together with its `last_activity`.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::codec::from_millis;
use super::{SqliteStore, execute, optional_scalar};
use crate::ids::ConnectionId;
use crate::store::{Admission, RateLimit, StoreResult, gcra_bounds, gcra_step};

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
    store.write_tx(|tx| {
        let tat: Option<i64> = optional_scalar(tx, "SELECT tat FROM rate_limits WHERE key = ?", [key])?;
        let admission = match gcra_step(tat, now, limit) {
            Ok(tat) => {
                execute(
                    tx,
                    "INSERT INTO rate_limits (key, tat) VALUES (?, ?)
                     ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
                    params![key, tat],
                )?;
                Admission::Allowed
            }
            Err(retry_after) => Admission::Limited { retry_after },
        };
        execute(
            tx,
            "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE tat <= ? LIMIT 16)",
            [now],
        )?;
        Ok(admission)
    })
}

/// The connection row's `inbound_tat` is the bucket; the update that moves it also stamps `last_activity`. The GCRA
/// test is the update's own `WHERE`, so an allowed frame costs one statement, atomic on its own: concurrent frames of
/// a connection are serialised by the single writer without a transaction. Only when nothing was updated does a
/// second read, under the same hold of the writer, tell a refusal (and its wait) from a connection that is no longer
/// recorded.
pub(super) async fn admit_frame(
    store: &SqliteStore,
    connection: &ConnectionId,
    limit: RateLimit,
    now: DateTime<Utc>,
) -> StoreResult<Admission> {
    let now = now.timestamp_millis();
    let (interval, tolerance) = gcra_bounds(limit);
    store.write(|writer| {
        let moved = execute(
            writer,
            "UPDATE connections
             SET inbound_tat = MAX(COALESCE(inbound_tat, ?1), ?1) + ?2, last_activity = ?1
             WHERE connection_id = ?4 AND MAX(COALESCE(inbound_tat, ?1), ?1) - ?1 <= ?3",
            params![now, interval, tolerance, connection.as_str()],
        )?;
        if moved == 1 {
            return Ok(Admission::Allowed);
        }
        let row: Option<Option<i64>> = optional_scalar(
            writer,
            "SELECT inbound_tat FROM connections WHERE connection_id = ?",
            [connection.as_str()],
        )?;
        // A connection that is no longer recorded (a disconnect raced this frame) has no bucket to hold it back,
        // and a frame is let through whenever the limiter cannot decide.
        let Some(tat) = row else { return Ok(Admission::Allowed) };
        Ok(match gcra_step(tat, now, limit) {
            Err(retry_after) => Admission::Limited { retry_after },
            // Nothing writes between the two statements, so the update's test and `gcra_step` agree; were they ever
            // to differ, the frame is refused with no wait rather than let through without moving the bucket.
            Ok(_) => Admission::Limited { retry_after: std::time::Duration::ZERO },
        })
    })
}

pub(super) async fn connection_activity(
    store: &SqliteStore,
    connection: &ConnectionId,
) -> StoreResult<Option<DateTime<Utc>>> {
    let at: Option<Option<i64>> = store.read(|reader| {
        optional_scalar(reader, "SELECT last_activity FROM connections WHERE connection_id = ?", [connection.as_str()])
    })?;
    at.flatten().map(|ms| from_millis("last_activity", ms)).transpose()
}
