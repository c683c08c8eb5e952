//! Call records and their conditional state transitions.

use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::codec::{call_from_item, call_type_str, put_opt, s, ts};
use super::keys::{call_pk, key};
use super::{DynamoItemError, DynamoStore};
use crate::store::{CallRecord, CallState, CallTransition, Store, StoreError, StoreResult};

pub(super) async fn create_call(store: &DynamoStore, call: &CallRecord) -> StoreResult<()> {
    let mut item = key(call_pk(&call.call_id), "CALL");
    item.insert("call_id".into(), s(&call.call_id));
    item.insert("caller".into(), s(call.caller.as_str()));
    item.insert("recipient".into(), s(call.recipient.as_str()));
    item.insert("call_type".into(), s(call_type_str(call.call_type)));
    put_opt(&mut item, "visit_id", call.visit_id.as_deref());
    item.insert("state".into(), s(call.state.as_str()));
    item.insert("created_at".into(), ts(&call.created_at));
    if let Some(at) = &call.answered_at {
        item.insert("answered_at".into(), ts(at));
    }
    if let Some(at) = &call.ended_at {
        item.insert("ended_at".into(), ts(at));
    }
    let created = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(PK)")
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
            Err(StoreError::ConditionFailed)
        }
        Err(e) => Err(StoreError::backend(e)),
    }
}

pub(super) async fn get_call(store: &DynamoStore, call_id: &str) -> StoreResult<Option<CallRecord>> {
    store.fetch(key(call_pk(call_id), "CALL")).await?.map(|item| call_from_item(&item)).transpose()
}

pub(super) async fn transition_call(
    store: &DynamoStore,
    call_id: &str,
    transition: &CallTransition,
) -> StoreResult<CallRecord> {
    if transition.from.is_empty() {
        // No state can match; still tell an unknown call apart.
        return match store.get_call(call_id).await? {
            Some(_) => Err(StoreError::ConditionFailed),
            None => Err(StoreError::NotFound),
        };
    }
    let placeholders: Vec<String> = (0..transition.from.len()).map(|i| format!(":from{i}")).collect();
    let mut sets = vec!["#state = :to".to_owned()];
    if transition.to == CallState::Accepted {
        sets.push("answered_at = :at".to_owned());
    }
    if transition.to.is_final() {
        sets.push("ended_at = :at".to_owned());
    }
    let mut request = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key(call_pk(call_id), "CALL")))
        .update_expression(format!("SET {}", sets.join(", ")))
        .condition_expression(format!("attribute_exists(PK) AND #state IN ({})", placeholders.join(", ")))
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":to", s(transition.to.as_str()))
        .return_values(ReturnValue::AllNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if sets.len() > 1 {
        request = request.expression_attribute_values(":at", ts(&transition.at));
    }
    for (placeholder, state) in placeholders.iter().zip(&transition.from) {
        request = request.expression_attribute_values(placeholder, s(state.as_str()));
    }
    match request.send().await {
        Ok(out) => {
            let item = out.attributes.ok_or_else(|| StoreError::backend(DynamoItemError::Attribute("state")))?;
            call_from_item(&item)
        }
        Err(e) => match e.as_service_error() {
            Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                // The old item tells a state mismatch apart from an unknown call; DynamoDB versions that do not
                // return it cost one extra read.
                let exists = match c.item() {
                    Some(item) => !item.is_empty(),
                    None => store.get_call(call_id).await?.is_some(),
                };
                Err(if exists { StoreError::ConditionFailed } else { StoreError::NotFound })
            }
            _ => Err(StoreError::backend(e)),
        },
    }
}
