//! `$default`: every client frame arrives here. Parses it, dispatches on `action`, and answers through the route
//! response, which API Gateway sends back to the sender without a `PostToConnection`.
//!
//! A frame with an `id` gets exactly one ack, success or failure. A frame without an `id` gets nothing on success and
//! an `error` event on failure, so mistakes are never silent.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde::Serialize;
use serde_json::Value;

use super::caller::{Caller, caller_of, response};
use super::delivery::prune;
use super::errors::{ActionError, ActionResult, HandlerError};
use super::limits::{self, Verdict};
use super::{Deps, calls, chat, membership, notifications, presence, tokens};
use crate::protocol::{
    Action, ClientFrame, ErrorBody, ErrorCode, RejectedFrame, ServerFrame, events, parse_client_frame, parse_data,
    to_data,
};
use crate::push::PushError;

#[tracing::instrument(name = "message", skip_all, fields(connection_id, user_id, action))]
pub async fn handle(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let caller = match caller_of(&event, &deps.config) {
        Ok(caller) => caller,
        Err(error) => {
            tracing::warn!(%error, "message from an unattributable connection");
            let frame =
                ServerFrame::error_event(ErrorBody::new(ErrorCode::Unauthorized, "connection is not authenticated"));
            return Ok(response(200, Some(frame.to_json())));
        }
    };
    let span = tracing::Span::current();
    span.record("connection_id", caller.id().as_str());
    span.record("user_id", caller.identity.user_id.as_str());

    let body = event.body.as_deref().unwrap_or("");
    let parsed = parse_client_frame(body);
    // Every frame counts against the connection's rate, malformed ones too, and is refused before any store write
    // or fan-out. The frame is parsed first only so that the refusal can be addressed to its request id.
    if let Verdict::Limited { retry_after } = limits::inbound_frame(deps, caller.id()).await {
        let id = request_id(&parsed);
        if limits::strike(deps, caller.id()).await != Verdict::Allowed {
            close_for_flooding(deps, &caller).await;
        }
        let refusal = ActionError::rate_limited("too many frames on this connection; slow down", retry_after);
        return Ok(reply(id, Err(refusal), false));
    }
    match tokens::refuse_if_expired(deps, &caller).await {
        Ok(None) => {}
        Ok(Some(refusal)) => return Ok(reply(request_id(&parsed), Err(refusal), false)),
        Err(error) => return Ok(reply(request_id(&parsed), Err(error.into()), false)),
    }
    let frame = match parsed {
        Ok(frame) => frame,
        Err(rejected) => {
            tracing::info!(code = rejected.error.code().as_str(), "rejected frame");
            return Ok(reply(rejected.id, Err(ActionError::from(rejected.error)), false));
        }
    };
    span.record("action", frame.action.as_str());
    let id = frame.id.clone();
    let is_hello = frame.action == Action::Hello;
    let outcome = dispatch(deps, &caller, frame).await;
    Ok(reply(id, outcome, is_hello))
}

/// The request id of a frame, parsed or not, so that a refusal can be addressed to it.
fn request_id(parsed: &Result<ClientFrame, RejectedFrame>) -> Option<String> {
    match parsed {
        Ok(frame) => frame.id.clone(),
        Err(rejected) => rejected.id.clone(),
    }
}

/// Closes a connection that kept exceeding its rate after being told to slow down. The Management API closes with
/// 1000 whatever the reason (API Gateway offers no other code), so the reason travels first as an `error` event.
async fn close_for_flooding(deps: &Deps, caller: &Caller) {
    tracing::warn!("closing a connection that keeps exceeding its rate limit");
    let notice = ServerFrame::error_event(ErrorBody::new(
        ErrorCode::RateLimited,
        "connection closed: it kept exceeding its rate limit (policy violation, 1008)",
    ));
    deps.deliver(vec![caller.id().clone()], &notice).await;
    match deps.pusher.disconnect(caller.id()).await {
        Ok(()) => {}
        Err(PushError::Gone) => prune(deps, caller.id()).await,
        Err(error) => tracing::warn!(%error, "could not close a flooding connection"),
    }
}

async fn dispatch(deps: &Deps, caller: &Caller, frame: ClientFrame) -> ActionResult<Value> {
    let ClientFrame { action, data, .. } = frame;
    match action {
        Action::Hello => ack(membership::hello(deps, caller).await),
        Action::AuthRefresh => ack(tokens::refresh(deps, caller, parse_data(data)?).await),
        Action::RoomJoin => ack(membership::join(deps, caller, parse_data(data)?).await),
        Action::RoomLeave => ack(membership::leave(deps, caller, parse_data(data)?).await),
        Action::RoomMembers => ack(membership::members(deps, caller, parse_data(data)?).await),
        Action::MessageSend => ack(chat::send(deps, caller, parse_data(data)?).await),
        Action::MessageHistory => ack(chat::history(deps, caller, parse_data(data)?).await),
        Action::MessageRead => ack(chat::read(deps, caller, parse_data(data)?).await),
        Action::TypingStart => ack(chat::typing(deps, caller, parse_data(data)?, events::TYPING_START).await),
        Action::TypingStop => ack(chat::typing(deps, caller, parse_data(data)?, events::TYPING_STOP).await),
        Action::PresenceSet => ack(presence::set(deps, caller, parse_data(data)?).await),
        Action::PresenceGet => ack(presence::get(deps, caller, parse_data(data)?).await),
        Action::PresenceSubscribe => ack(presence::subscribe(deps, caller, parse_data(data)?).await),
        Action::PresenceUnsubscribe => ack(presence::unsubscribe(deps, caller, parse_data(data)?).await),
        Action::NotificationList => ack(notifications::list(deps, caller, parse_data(data)?).await),
        Action::NotificationRead => ack(notifications::read(deps, caller, parse_data(data)?).await),
        Action::NotificationUnreadCount => ack(notifications::unread_count(deps, caller).await),
        Action::CallInitiate => ack(calls::initiate(deps, caller, parse_data(data)?).await),
        Action::CallAccept => ack(calls::accept(deps, caller, parse_data(data)?).await),
        Action::CallReject => ack(calls::reject(deps, caller, parse_data(data)?).await),
        Action::CallEnd => ack(calls::end(deps, caller, parse_data(data)?).await),
        Action::CallSignal => ack(calls::signal(deps, caller, parse_data(data)?).await),
    }
}

/// An action's typed answer as the ack's `data`.
fn ack(outcome: ActionResult<impl Serialize>) -> ActionResult<Value> {
    outcome.map(|answer| to_data(&answer))
}

/// Turns an action's outcome into the route response. Internal failures are logged here, once, with their cause;
/// the client only learns that it was our fault.
fn reply(id: Option<String>, outcome: ActionResult<Value>, is_hello: bool) -> ApiGatewayProxyResponse {
    let frame = match (outcome, id) {
        (Ok(data), Some(id)) => Some(ServerFrame::ack_ok(Some(id), data)),
        (Ok(data), None) if is_hello => Some(ServerFrame::event(events::CONNECTED, data)),
        (Ok(_), None) => None,
        (Err(error), id) => {
            let body = match error {
                ActionError::Client(body) => body,
                ActionError::Internal(error) => {
                    tracing::error!(error = %error, source = ?std::error::Error::source(&error), "action failed");
                    ErrorBody::new(ErrorCode::Internal, "internal error; nothing was changed, try again")
                }
            };
            Some(match id {
                Some(id) => ServerFrame::ack_err(Some(id), body),
                None => ServerFrame::error_event(body),
            })
        }
    };
    response(200, frame.map(|f| f.to_json()))
}
