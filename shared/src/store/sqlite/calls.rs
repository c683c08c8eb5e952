//! Call records and their conditional state transitions.

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::codec::{call_from_row, call_type_str};
use crate::store::{CallRecord, CallState, CallTransition, StoreError, StoreResult};

pub(super) async fn create_call(store: &SqliteStore, call: &CallRecord) -> StoreResult<()> {
    let result = sqlx::query(
        "INSERT INTO calls (call_id, caller, recipient, call_type, visit_id, state, created_at, answered_at, ended_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (call_id) DO NOTHING",
    )
    .bind(&call.call_id)
    .bind(call.caller.as_str())
    .bind(call.recipient.as_str())
    .bind(call_type_str(call.call_type))
    .bind(call.visit_id.as_deref())
    .bind(call.state.as_str())
    .bind(call.created_at.timestamp_millis())
    .bind(call.answered_at.map(|t| t.timestamp_millis()))
    .bind(call.ended_at.map(|t| t.timestamp_millis()))
    .execute(&store.writer)
    .await
    .map_err(StoreError::backend)?;
    if result.rows_affected() == 1 { Ok(()) } else { Err(StoreError::ConditionFailed) }
}

pub(super) async fn get_call(store: &SqliteStore, call_id: &str) -> StoreResult<Option<CallRecord>> {
    sqlx::query("SELECT * FROM calls WHERE call_id = ?")
        .bind(call_id)
        .fetch_optional(&store.reader)
        .await
        .map_err(StoreError::backend)?
        .map(|row| call_from_row(&row))
        .transpose()
}

pub(super) async fn transition_call(
    store: &SqliteStore,
    call_id: &str,
    transition: &CallTransition,
) -> StoreResult<CallRecord> {
    let at = transition.at.timestamp_millis();
    let mut tx = store.write_tx().await?;
    let mut sql = QueryBuilder::<Sqlite>::new("UPDATE calls SET state = ");
    sql.push_bind(transition.to.as_str());
    if transition.to == CallState::Accepted {
        sql.push(", answered_at = ").push_bind(at);
    }
    if transition.to.is_final() {
        sql.push(", ended_at = ").push_bind(at);
    }
    sql.push(" WHERE call_id = ").push_bind(call_id);
    // SQLite reads `state IN ()` as false, so an empty `from` is a condition no call meets.
    sql.push(" AND state IN (");
    let mut states = sql.separated(", ");
    for state in &transition.from {
        states.push_bind(state.as_str());
    }
    sql.push(") RETURNING *");
    let updated = sql.build().fetch_optional(&mut *tx).await.map_err(StoreError::backend)?;
    if let Some(row) = updated {
        let call = call_from_row(&row)?;
        tx.commit().await.map_err(StoreError::backend)?;
        return Ok(call);
    }
    // The existence check runs in the same transaction, so the answer matches the failed update.
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM calls WHERE call_id = ?")
        .bind(call_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
    Err(if exists.is_some() { StoreError::ConditionFailed } else { StoreError::NotFound })
}
