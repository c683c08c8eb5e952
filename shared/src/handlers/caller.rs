//! Who sent a WebSocket event, read from the event itself: the connection id from `requestContext` and the identity
//! the authorizer attached. Also the small response builders the WebSocket handlers share.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use chrono::{DateTime, Utc};

use crate::auth::Identity;
use crate::config::Config;
use crate::ids::ConnectionId;
use crate::protocol::{ErrorCode, ErrorEnvelope};
use crate::store::ConnectionRecord;

/// The authenticated connection an event came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    /// Built from the event alone, without a store read.
    pub connection: ConnectionRecord,
}

impl Caller {
    pub fn id(&self) -> &ConnectionId {
        &self.connection.connection_id
    }
}

/// Why an event could not be attributed to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    #[error("event has no valid connection id")]
    ConnectionId,
    #[error("event carries no authorizer identity")]
    Identity,
}

pub fn caller_of(event: &ApiGatewayWebsocketProxyRequest, config: &Config) -> Result<Caller, CallerError> {
    let context = &event.request_context;
    let connection_id = context
        .connection_id
        .as_deref()
        .and_then(|id| ConnectionId::parse(id).ok())
        .ok_or(CallerError::ConnectionId)?;
    let identity = Identity::from_authorizer_fields(&context.authorizer.fields).ok_or(CallerError::Identity)?;
    let connected_at = DateTime::<Utc>::from_timestamp_millis(context.connected_at).unwrap_or_else(Utc::now);
    let ttl = chrono::Duration::seconds(i64::try_from(config.connection_ttl_seconds).unwrap_or(i64::MAX / 2));
    let connection = ConnectionRecord {
        connection_id,
        user_id: identity.user_id.clone(),
        role: identity.role.clone(),
        name: identity.name.clone(),
        email: identity.email.clone(),
        connected_at,
        expires_at: connected_at + ttl,
        token_expires_at: identity.expires_at.and_then(|exp| DateTime::<Utc>::from_timestamp(exp, 0)),
    };
    Ok(Caller { identity, connection })
}

/// A response with a status and an optional text body.
pub fn response(status: i64, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.body = body.map(Body::Text);
    response
}

/// A refusal in the HTTP error envelope, for `$connect`.
pub fn refusal(status: i64, code: ErrorCode, message: &str) -> ApiGatewayProxyResponse {
    let body = serde_json::to_string(&ErrorEnvelope::new(code, message)).unwrap_or_default();
    let mut response = response(status, Some(body));
    response.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}
