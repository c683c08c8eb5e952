//! The management API (`@connections`): `PostToConnection`, `GetConnection`, `DeleteConnection` over the registry,
//! with AWS's statuses and error headers (§4), so the real SDK pusher works against the harness unchanged.
//!
//! Requests are accepted unsigned: SigV4 is not verified. That is safe only because the harness binds to loopback;
//! AWS itself answers 403 to unsigned calls.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::push::MAX_PAYLOAD_BYTES;

use super::Gateway;
use super::connections::{QueueError, is_well_formed_connection_id};

pub(crate) async fn post_to_connection(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !is_well_formed_connection_id(&id) {
        return invalid_id(&id);
    }
    // Checked before the connection is touched: an oversize post changes nothing, not even `lastActiveAt`.
    if body.len() > MAX_PAYLOAD_BYTES {
        return aws_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException", "Request payload too large");
    }
    // Data is delivered as one text message; the opcode AWS uses for non-UTF-8 data is unverified.
    let text = String::from_utf8_lossy(&body).into_owned();
    match gateway.registry.post(&id, text) {
        Ok(()) => with_request_id(StatusCode::OK.into_response()),
        Err(error) => queue_error(error),
    }
}

pub(crate) async fn get_connection(State(gateway): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    if !is_well_formed_connection_id(&id) {
        return invalid_id(&id);
    }
    let Some(connection) = gateway.registry.get(&id) else {
        return queue_error(QueueError::Gone);
    };
    let mut identity = serde_json::Map::new();
    identity.insert("sourceIp".into(), json!(connection.source_ip));
    if let Some(agent) = &connection.user_agent {
        identity.insert("userAgent".into(), json!(agent));
    }
    let body = json!({
        "connectedAt": rfc3339_ms(connection.connected_at_ms),
        "identity": identity,
        "lastActiveAt": rfc3339_ms(connection.last_active_ms()),
    });
    with_request_id((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

pub(crate) async fn delete_connection(State(gateway): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    if !is_well_formed_connection_id(&id) {
        return invalid_id(&id);
    }
    match gateway.registry.delete(&id) {
        Ok(()) => with_request_id(StatusCode::NO_CONTENT.into_response()),
        Err(error) => queue_error(error),
    }
}

/// RFC 3339 with milliseconds and `Z`, which the SDK's `DateTimeWithOffset` parser accepts.
pub(crate) fn rfc3339_ms(epoch_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(epoch_ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn queue_error(error: QueueError) -> Response {
    match error {
        // AWS's 410 bodies are often empty; the SDK only needs the error-type header.
        QueueError::Gone => aws_error(StatusCode::GONE, "GoneException", "Connection is gone"),
        QueueError::Full => aws_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", "Rate exceeded"),
    }
}

fn invalid_id(id: &str) -> Response {
    tracing::debug!(len = id.len(), "malformed connection id");
    // An unmodelled 400 in AWS: no error type the SDK would map.
    with_request_id((StatusCode::BAD_REQUEST, json!({"message": "Invalid connectionId"}).to_string()).into_response())
}

fn aws_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let mut response =
        (status, [(header::CONTENT_TYPE, "application/json")], json!({"message": message}).to_string()).into_response();
    response.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(error_type));
    with_request_id(response)
}

fn with_request_id(mut response: Response) -> Response {
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds_and_z() {
        assert_eq!(rfc3339_ms(1_790_294_265_737), "2026-09-24T23:57:45.737Z");
    }
}
