//! Call signalling: a state machine per call in the store, moved by conditional writes so two racing answers cannot
//! both win, and a relay for WebRTC offers, answers and ICE candidates between the two parties only.
//!
//! States: `initiating` → `ringing` → `accepted` → `in_progress` (first signal after acceptance) → `ended`; or
//! `rejected`, `missed` (nobody answered within `CALL_RING_SECONDS`, or the recipient had no open connection).
//! The missed-call check is scheduled through the [`crate::timer`] port and ends in [`expire_if_unanswered`];
//! [`load_call`] expires an overdue ringing call on touch as well, so a lost or late timer only delays the
//! `call:missed` frames.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::Deps;
use super::caller::Caller;
use super::errors::{ActionError, ActionResult, HandlerError};
use super::limits::{self, Verdict};
use super::notifications::{NotificationInput, notify_once};
use super::presence::{partition_visible, set_status};
use crate::ids::{ConnectionId, UserId};
use crate::protocol::payloads::{
    CallAccepted, CallEnded, CallIncoming, CallMissed, CallRef, CallRejected, CallSignal, CallStarted, CallView,
    InitiateCall, SignalRelayed, SignalRequest,
};
use crate::protocol::{ErrorCode, ServerFrame, events, timestamp};
use crate::store::{CallRecord, CallState, CallTransition, CallType, PresenceStatus, StoreError};
use crate::timer::TimerJob;

fn call_view(call: &CallRecord) -> CallView {
    CallView {
        call_id: call.call_id.clone(),
        caller_id: call.caller.clone(),
        recipient_id: call.recipient.clone(),
        call_type: call.call_type,
        visit_id: call.visit_id.clone(),
        state: call.state,
        created_at: timestamp(&call.created_at),
        answered_at: call.answered_at.as_ref().map(timestamp),
        ended_at: call.ended_at.as_ref().map(timestamp),
        duration: None,
    }
}

/// Sends a frame to every connection of the given users, except one connection (usually the sender's).
async fn tell_users(deps: &Deps, users: &[&UserId], frame: &ServerFrame, except: Option<&ConnectionId>) {
    let mut targets = Vec::new();
    for user in users {
        match deps.store.user_connections(user).await {
            Ok(connections) => targets.extend(connections.into_iter().map(|c| c.connection_id)),
            Err(error) => {
                tracing::warn!(user_id = %user, error = %error, "could not list connections for a call event")
            }
        }
    }
    targets.retain(|c| Some(c) != except);
    deps.deliver(targets, frame).await;
}

/// `call:initiate {recipientId, callType, visitId?}` → ack `{callId, state}`; `call:incoming` to every connection of
/// the recipient.
pub async fn initiate(deps: &Deps, caller: &Caller, request: InitiateCall) -> ActionResult<CallStarted> {
    let recipient =
        UserId::parse(request.recipient_id).map_err(|_| ActionError::invalid("recipientId is not a valid user id"))?;
    let me = &caller.identity.user_id;
    if &recipient == me {
        return Err(ActionError::invalid("you cannot call yourself"));
    }
    if request.visit_id.as_ref().is_some_and(|v| v.is_empty() || v.len() > 128) {
        return Err(ActionError::invalid("visitId must be 1 to 128 characters"));
    }
    let (visible, _) = partition_visible(deps, &caller.identity, vec![recipient.clone()]).await?;
    if visible.is_empty() {
        return Err(ActionError::forbidden("you can only call users you share a conversation with"));
    }
    // The pair is checked first, so a caller retrying the same recipient does not use up their calls per minute.
    if let Verdict::Limited { retry_after } = limits::ring(deps, me, &recipient).await {
        return Err(ActionError::rate_limited(
            format!("a call to {recipient} is already ringing; wait before calling again"),
            retry_after,
        ));
    }
    if let Verdict::Limited { retry_after } = limits::call(deps, me).await {
        return Err(ActionError::rate_limited("too many calls started; wait before calling again", retry_after));
    }
    let now = chrono::Utc::now();
    let call = CallRecord {
        call_id: uuid::Uuid::now_v7().to_string(),
        caller: me.clone(),
        recipient: recipient.clone(),
        call_type: request.call_type,
        visit_id: request.visit_id,
        state: CallState::Initiating,
        created_at: now,
        answered_at: None,
        ended_at: None,
    };
    deps.store.create_call(&call).await?;

    let recipient_connections = deps.store.user_connections(&recipient).await?;
    if recipient_connections.is_empty() {
        let missed = transition(deps, &call.call_id, &[CallState::Initiating], CallState::Missed).await?;
        announce_missed(deps, &missed).await?;
        return Ok(CallStarted {
            call_id: missed.call_id,
            state: missed.state,
            reason: Some("recipient is offline".to_owned()),
        });
    }
    let ringing = transition(deps, &call.call_id, &[CallState::Initiating], CallState::Ringing).await?;
    let incoming = CallIncoming {
        call_id: ringing.call_id.clone(),
        caller_id: me.clone(),
        caller: caller.identity.profile(),
        call_type: ringing.call_type,
        visit_id: ringing.visit_id.clone(),
        ring_seconds: deps.config.call_ring_seconds,
    };
    let incoming = ServerFrame::typed_event(events::CALL_INCOMING, &incoming);
    deps.deliver(recipient_connections.into_iter().map(|c| c.connection_id).collect(), &incoming).await;
    let check = TimerJob::missed_call(ringing.call_id.clone());
    if let Err(error) = deps.timer.schedule(&check, deps.config.call_ring_seconds).await {
        // Without the timer the call would ring forever: fail it now rather than leave it hanging.
        tracing::error!(error = %error, "could not schedule the missed-call check");
        transition(deps, &ringing.call_id, &[CallState::Ringing], CallState::Failed).await?;
        return Err(ActionError::new(ErrorCode::Internal, "could not start the call; try again"));
    }
    tracing::info!(call_id = %ringing.call_id, "call ringing");
    Ok(CallStarted { call_id: ringing.call_id, state: ringing.state, reason: None })
}

async fn load_call(deps: &Deps, caller: &Caller, request: CallRef) -> Result<CallRecord, ActionError> {
    let call = deps
        .store
        .get_call(&request.call_id)
        .await?
        .ok_or_else(|| ActionError::not_found(format!("call {} not found", request.call_id)))?;
    let me = &caller.identity.user_id;
    if &call.caller != me && &call.recipient != me {
        // Outsiders learn nothing about calls they are not part of, not even that they exist.
        return Err(ActionError::not_found(format!("call {} not found", call.call_id)));
    }
    let ring = chrono::Duration::seconds(i64::try_from(deps.config.call_ring_seconds).unwrap_or(i64::MAX / 2));
    if call.state == CallState::Ringing && chrono::Utc::now() > call.created_at + ring {
        // The timer may not have fired (or may not exist, in Lambda): the ring time is the rule, not the timer.
        expire_if_unanswered(deps, &call.call_id).await?;
        return deps
            .store
            .get_call(&call.call_id)
            .await?
            .ok_or_else(|| ActionError::not_found(format!("call {} not found", call.call_id)));
    }
    Ok(call)
}

/// A conditional transition whose lost race becomes a `CONFLICT` naming the state the call is really in.
async fn transition(deps: &Deps, call_id: &str, from: &[CallState], to: CallState) -> Result<CallRecord, ActionError> {
    let change = CallTransition { from: from.to_vec(), to, at: chrono::Utc::now() };
    match deps.store.transition_call(call_id, &change).await {
        Ok(call) => Ok(call),
        Err(StoreError::ConditionFailed) => {
            let state = deps.store.get_call(call_id).await?.map(|c| c.state.as_str()).unwrap_or("unknown");
            Err(ActionError::new(ErrorCode::Conflict, format!("call is {state}; it cannot become {to}")))
        }
        Err(StoreError::NotFound) => Err(ActionError::not_found(format!("call {call_id} not found"))),
        Err(error) => Err(error.into()),
    }
}

/// `call:accept {callId}` (recipient only) → ack with the call; `call:accepted` to the caller and to the recipient's
/// other connections, so other devices stop ringing. Both parties become `in_call`.
pub async fn accept(deps: &Deps, caller: &Caller, request: CallRef) -> ActionResult<CallView> {
    let call = load_call(deps, caller, request).await?;
    if call.recipient != caller.identity.user_id {
        return Err(ActionError::forbidden("only the recipient can accept a call"));
    }
    let call = transition(deps, &call.call_id, &[CallState::Ringing], CallState::Accepted).await?;
    let accepted = CallAccepted {
        call_id: call.call_id.clone(),
        accepted_by: caller.identity.user_id.clone(),
        accepted_by_connection: caller.id().clone(),
    };
    let frame = ServerFrame::typed_event(events::CALL_ACCEPTED, &accepted);
    tell_users(deps, &[&call.caller, &call.recipient], &frame, Some(caller.id())).await;
    for user in [&call.caller, &call.recipient] {
        set_status(deps, user, PresenceStatus::InCall).await?;
    }
    Ok(call_view(&call))
}

/// `call:reject {callId}` (recipient only) → `call:rejected` to the caller and the recipient's other connections.
pub async fn reject(deps: &Deps, caller: &Caller, request: CallRef) -> ActionResult<CallView> {
    let call = load_call(deps, caller, request).await?;
    if call.recipient != caller.identity.user_id {
        return Err(ActionError::forbidden("only the recipient can reject a call"));
    }
    let call = transition(deps, &call.call_id, &[CallState::Ringing], CallState::Rejected).await?;
    let rejected = CallRejected { call_id: call.call_id.clone(), rejected_by: caller.identity.user_id.clone() };
    let frame = ServerFrame::typed_event(events::CALL_REJECTED, &rejected);
    tell_users(deps, &[&call.caller, &call.recipient], &frame, Some(caller.id())).await;
    Ok(call_view(&call))
}

/// `call:end {callId}` (either party) → `call:ended {callId, endedBy, duration}` to both parties' other connections.
/// Ending a ringing call cancels it (duration 0). Both parties leave `in_call`.
pub async fn end(deps: &Deps, caller: &Caller, request: CallRef) -> ActionResult<CallView> {
    let call = load_call(deps, caller, request).await?;
    let was_connected = matches!(call.state, CallState::Accepted | CallState::InProgress);
    let call = transition(
        deps,
        &call.call_id,
        &[CallState::Ringing, CallState::Accepted, CallState::InProgress],
        CallState::Ended,
    )
    .await?;
    let duration = match (call.answered_at, call.ended_at) {
        (Some(answered), Some(ended)) => (ended - answered).num_seconds().max(0),
        _ => 0,
    };
    let ended = CallEnded { call_id: call.call_id.clone(), ended_by: caller.identity.user_id.clone(), duration };
    let frame = ServerFrame::typed_event(events::CALL_ENDED, &ended);
    tell_users(deps, &[&call.caller, &call.recipient], &frame, Some(caller.id())).await;
    if was_connected {
        for user in [&call.caller, &call.recipient] {
            set_status(deps, user, PresenceStatus::Online).await?;
        }
    }
    Ok(CallView { duration: Some(duration), ..call_view(&call) })
}

/// `call:signal {callId, payload}` → `call:signal {callId, from, payload}` to the other party's connections only.
/// The first signal after acceptance moves the call to `in_progress`.
pub async fn signal(deps: &Deps, caller: &Caller, request: SignalRequest) -> ActionResult<SignalRelayed> {
    if request.payload.is_null() {
        return Err(ActionError::invalid("payload is required"));
    }
    let size = request.payload.to_string().len();
    let max = deps.config.limits.max_signal_bytes;
    if size > max {
        return Err(ActionError::new(
            ErrorCode::PayloadTooLarge,
            format!("payload is {size} bytes; the limit is {max}"),
        ));
    }
    let call = load_call(deps, caller, CallRef { call_id: request.call_id }).await?;
    if !matches!(call.state, CallState::Ringing | CallState::Accepted | CallState::InProgress) {
        return Err(ActionError::new(
            ErrorCode::Conflict,
            format!("call is {}; signals are no longer relayed", call.state),
        ));
    }
    if call.state == CallState::Accepted {
        // Losing this race only means another signal already moved the call on.
        let change =
            CallTransition { from: vec![CallState::Accepted], to: CallState::InProgress, at: chrono::Utc::now() };
        match deps.store.transition_call(&call.call_id, &change).await {
            Ok(_) | Err(StoreError::ConditionFailed) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let me = &caller.identity.user_id;
    let other = if &call.caller == me { &call.recipient } else { &call.caller };
    let connections = deps.store.user_connections(other).await?;
    let signal = CallSignal { call_id: call.call_id.clone(), from: me.clone(), payload: request.payload };
    let frame = ServerFrame::typed_event(events::CALL_SIGNAL, &signal);
    let report = deps.deliver(connections.into_iter().map(|c| c.connection_id).collect(), &frame).await;
    Ok(SignalRelayed { call_id: call.call_id, relayed: report.delivered.len() as u64 })
}

/// Turns a call still ringing into a missed one and tells both parties. Called by the [`Timer`] when the ring
/// time is up; harmless when the call was answered, rejected or ended in the meantime.
pub async fn expire_if_unanswered(deps: &Deps, call_id: &str) -> Result<(), HandlerError> {
    let change = CallTransition { from: vec![CallState::Ringing], to: CallState::Missed, at: chrono::Utc::now() };
    match deps.store.transition_call(call_id, &change).await {
        Ok(call) => announce_missed(deps, &call).await,
        Err(StoreError::ConditionFailed) => match deps.store.get_call(call_id).await? {
            // Already missed: an earlier check may have failed after the transition, before the recipient's
            // notification was stored. Storing it is idempotent, so finishing that step again is safe; the
            // `call:missed` frames went out before it and are not repeated.
            Some(call) if call.state == CallState::Missed => notify_missed(deps, &call).await,
            _ => Ok(()),
        },
        Err(StoreError::NotFound) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn announce_missed(deps: &Deps, call: &CallRecord) -> Result<(), HandlerError> {
    tracing::info!(call_id = %call.call_id, "call missed");
    let missed = CallMissed {
        call_id: call.call_id.clone(),
        caller_id: call.caller.clone(),
        recipient_id: call.recipient.clone(),
        call_type: call.call_type,
    };
    let frame = ServerFrame::typed_event(events::CALL_MISSED, &missed);
    tell_users(deps, &[&call.caller, &call.recipient], &frame, None).await;
    notify_missed(deps, call).await
}

/// Stores the recipient's "Missed call" notification, once: its id is derived from the call, so a retry finds it.
async fn notify_missed(deps: &Deps, call: &CallRecord) -> Result<(), HandlerError> {
    if limits::notification(deps, &call.recipient).await != Verdict::Allowed {
        // The `call:missed` frames went out; only the stored reminder is skipped for a recipient flooded with calls.
        tracing::warn!(call_id = %call.call_id, "missed-call notification skipped: recipient's notification limit");
        return Ok(());
    }
    let note = NotificationInput {
        title: "Missed call".to_owned(),
        message: format!(
            "You missed a {} call",
            match call.call_type {
                CallType::Audio => "voice",
                CallType::Video => "video",
            }
        ),
        kind: Some("call:missed".to_owned()),
        data: Some(json!({"callId": call.call_id, "callerId": call.caller})),
    };
    notify_once(deps, &call.recipient, &note, missed_call_notification_id(call)).await?;
    Ok(())
}

/// A UUIDv7 whose time is when the call was missed and whose other bits come from the call id: the same for every
/// attempt at the same call, and in time order among the recipient's other notifications.
fn missed_call_notification_id(call: &CallRecord) -> String {
    let at = call.ended_at.unwrap_or(call.created_at);
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let digest = Sha256::digest(format!("missed-call:{}", call.call_id).as_bytes());
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().to_string()
}
