//! How handlers fail: [`HandlerError`] for faults no client input explains, [`ActionError`] for the outcome of a
//! client action, which is either the client's mistake (answered with its stable code) or ours.
//!
//! Both edges map these, and only these, to answers: the socket to an ack or an `error` event
//! ([`super::message`]), the HTTP API to a status and the error envelope ([`crate::http`]).

use crate::protocol::{ErrorBody, ErrorCode, ProtocolError};
use crate::rooms::RoomError;
use crate::store::StoreError;

/// A failure no client input explains. Client mistakes never become this; they become error frames or statuses.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("store operation failed")]
    Store(#[from] StoreError),
    #[error("event is missing {0}")]
    MalformedEvent(&'static str),
}

/// Why an action failed: the client's mistake (answered with its code) or ours (answered `INTERNAL`, logged).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{}", .0.message)]
    Client(ErrorBody),
    #[error(transparent)]
    Internal(#[from] HandlerError),
}

/// What an action answers: its typed ack data, or why it failed.
pub type ActionResult<T> = Result<T, ActionError>;

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

    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        ActionError::Client(ErrorBody::rate_limited(message, retry_after))
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

impl From<RoomError> for ActionError {
    fn from(error: RoomError) -> Self {
        Self::new(ErrorCode::InvalidRoom, error.to_string())
    }
}

/// How the Lambda runtime reports an unexpected handler failure: a stable type, and a message without internals.
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::Store(_) => "StoreError",
            HandlerError::MalformedEvent(_) => "MalformedEvent",
        };
        tracing::error!(error = %error, source = ?std::error::Error::source(&error), "handler failed");
        lambda_runtime::Diagnostic { error_type: error_type.to_owned(), error_message: error.to_string() }
    }
}
