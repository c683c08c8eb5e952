//! Call records and their conditional state transitions.

use rusqlite::ToSql;
use rusqlite::params;

use super::codec::{call_from_row, call_type_str};
use super::{SqliteStore, execute, optional, optional_scalar};
use crate::store::{CallRecord, CallState, CallTransition, StoreError, StoreResult};

pub(super) async fn create_call(store: &SqliteStore, call: &CallRecord) -> StoreResult<()> {
    let created = store.write(|writer| {
        execute(
            writer,
            "INSERT INTO calls (call_id, caller, recipient, call_type, visit_id, state, created_at, answered_at,
                 ended_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (call_id) DO NOTHING",
            params![
                call.call_id,
                call.caller.as_str(),
                call.recipient.as_str(),
                call_type_str(call.call_type),
                call.visit_id.as_deref(),
                call.state.as_str(),
                call.created_at.timestamp_millis(),
                call.answered_at.map(|t| t.timestamp_millis()),
                call.ended_at.map(|t| t.timestamp_millis()),
            ],
        )
    })?;
    if created == 1 { Ok(()) } else { Err(StoreError::ConditionFailed) }
}

pub(super) async fn get_call(store: &SqliteStore, call_id: &str) -> StoreResult<Option<CallRecord>> {
    store.read(|reader| optional(reader, "SELECT * FROM calls WHERE call_id = ?", [call_id], call_from_row))
}

pub(super) async fn transition_call(
    store: &SqliteStore,
    call_id: &str,
    transition: &CallTransition,
) -> StoreResult<CallRecord> {
    let at = transition.at.timestamp_millis();
    let mut sql = String::from("UPDATE calls SET state = ?1");
    if transition.to == CallState::Accepted {
        sql.push_str(", answered_at = ?2");
    }
    if transition.to.is_final() {
        sql.push_str(", ended_at = ?2");
    }
    // A bare `?` takes the number after the largest used so far, so the states are ?4 on. SQLite reads
    // `state IN ()` as false, so an empty `from` is a condition no call meets.
    sql.push_str(" WHERE call_id = ?3 AND state IN (");
    let from: Vec<&str> = transition.from.iter().map(|state| state.as_str()).collect();
    sql.push_str(&vec!["?"; from.len()].join(", "));
    sql.push_str(") RETURNING *");
    let to = transition.to.as_str();
    let mut bound: Vec<&dyn ToSql> = vec![&to, &at, &call_id];
    bound.extend(from.iter().map(|state| state as &dyn ToSql));
    store.write_tx(|tx| {
        if let Some(call) = optional(tx, &sql, bound.as_slice(), call_from_row)? {
            return Ok(call);
        }
        // The existence check runs in the same transaction, so the answer matches the failed update.
        let exists: Option<i64> = optional_scalar(tx, "SELECT 1 FROM calls WHERE call_id = ?", [call_id])?;
        Err(if exists.is_some() { StoreError::ConditionFailed } else { StoreError::NotFound })
    })
}
