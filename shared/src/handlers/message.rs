//! `$default`: every client frame arrives here. Parses it, dispatches on `action`, and answers through the route
//! response, which API Gateway sends back to the sender without a `PostToConnection`.
//!
//! A frame with an `id` gets exactly one ack, success or failure. A frame without an `id` gets nothing on success and
//! an `error` event on failure, so mistakes are never silent.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::{Value, json};

use super::caller::{Caller, caller_of, response};
use super::{Deps, HandlerError, calls, chat, membership, notifications, presence};
use crate::protocol::{
    Action, ClientFrame, ErrorBody, ErrorCode, ProtocolError, ServerFrame, events, parse_client_frame,
};
use crate::store::StoreError;

/// Why an action failed: the client's mistake (answered with its code) or ours (answered `INTERNAL`, logged).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{}", .0.message)]
    Client(ErrorBody),
    #[error(transparent)]
    Internal(#[from] HandlerError),
}

impl ActionError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ActionError::Client(ErrorBody::new(code, message))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidData, message)
    }
}

impl From<ProtocolError> for ActionError {
    fn from(error: ProtocolError) -> Self {
        ActionError::Client(error.to_error_body())
    }
}

impl From<StoreError> for ActionError {
    fn from(error: StoreError) -> Self {
        ActionError::Internal(HandlerError::Store(error))
    }
}

impl From<crate::rooms::RoomError> for ActionError {
    fn from(error: crate::rooms::RoomError) -> Self {
        Self::new(ErrorCode::InvalidRoom, error.to_string())
    }
}

/// What an action answers: the ack's `data`, or, for `hello` without an id, an event instead.
pub type ActionResult = Result<Value, ActionError>;

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
    let frame = match parse_client_frame(body) {
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

async fn dispatch(deps: &Deps, caller: &Caller, frame: ClientFrame) -> ActionResult {
    let ClientFrame { action, data, .. } = frame;
    match action {
        Action::Hello => membership::hello(deps, caller).await,
        Action::Ping => Ok(json!({"pong": true, "time": crate::handlers::now_iso()})),
        Action::RoomJoin => membership::join(deps, caller, data).await,
        Action::RoomLeave => membership::leave(deps, caller, data).await,
        Action::RoomMembers => membership::members(deps, caller, data).await,
        Action::AuthRefresh => {
            Err(ActionError::new(ErrorCode::UnknownAction, "auth:refresh is not available on this server yet"))
        }
        Action::MessageSend => chat::send(deps, caller, data).await,
        Action::MessageHistory => chat::history(deps, caller, data).await,
        Action::MessageRead => chat::read(deps, caller, data).await,
        Action::TypingStart => chat::typing(deps, caller, data, events::TYPING_START).await,
        Action::TypingStop => chat::typing(deps, caller, data, events::TYPING_STOP).await,
        Action::PresenceSet => presence::set(deps, caller, data).await,
        Action::PresenceGet => presence::get(deps, caller, data).await,
        Action::PresenceSubscribe => presence::subscribe(deps, caller, data).await,
        Action::PresenceUnsubscribe => presence::unsubscribe(deps, caller, data).await,
        Action::NotificationList => notifications::list(deps, caller, data).await,
        Action::NotificationRead => notifications::read(deps, caller, data).await,
        Action::NotificationUnreadCount => notifications::unread_count(deps, caller).await,
        Action::CallInitiate => calls::initiate(deps, caller, data).await,
        Action::CallAccept => calls::accept(deps, caller, data).await,
        Action::CallReject => calls::reject(deps, caller, data).await,
        Action::CallEnd => calls::end(deps, caller, data).await,
        Action::CallSignal => calls::signal(deps, caller, data).await,
    }
}

/// Turns an action's outcome into the route response. Internal failures are logged here, once, with their cause;
/// the client only learns that it was our fault.
fn reply(id: Option<String>, outcome: ActionResult, is_hello: bool) -> ApiGatewayProxyResponse {
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
