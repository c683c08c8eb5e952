//! The management API (`@connections`): `PostToConnection`, `GetConnection`, `DeleteConnection` over the registry,
//! with AWS's statuses and error headers (§4), so the real SDK pusher works against the harness unchanged.
//!
//! Every request must be SigV4-signed with the harness's configured credentials (dummy ones by default, which the
//! SDK pusher uses against a plain-HTTP endpoint): unsigned or wrongly signed calls, and calls to another stage, get
//! 403 `ForbiddenException` as on AWS. An optional delay before each answer stands in for the management API's
//! latency in fan-out measurements.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::gateway::MAX_MESSAGE_BYTES;

use super::connections::{Outbound, QueueError, is_well_formed_connection_id};
use super::{Gateway, sigv4};

/// The signed request, as every management handler needs it.
pub(crate) struct Signed {
    id: String,
}

/// Checks the signature (403 when it does not verify) and the connection id's shape, then waits the configured
/// answer delay.
async fn admit(gateway: &Gateway, request: Request) -> Result<(Signed, Bytes), Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_MESSAGE_BYTES + 1024 * 1024).await.map_err(|_| {
        aws_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException", "Request payload too large")
    })?;
    let verified = sigv4::verify(
        &gateway.settings.credentials,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        SystemTime::now(),
    );
    if let Err(error) = verified {
        tracing::warn!(%error, method = %parts.method, "@connections request refused: bad SigV4 signature");
        return Err(aws_error(StatusCode::FORBIDDEN, "ForbiddenException", &error.to_string()));
    }
    let id = parts.uri.path().rsplit('/').next().unwrap_or_default();
    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy().into_owned();
    let delay_ms = gateway.management_delay_ms.load(std::sync::atomic::Ordering::Relaxed);
    if delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    }
    Ok((Signed { id }, body))
}

/// `@connections` under a stage this API does not have, or without a stage: AWS's 403.
pub(crate) async fn wrong_stage() -> Response {
    aws_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden")
}

pub(crate) async fn post_to_connection(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (Signed { id }, body) = match admit(&gateway, request).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    if !is_well_formed_connection_id(&id) {
        return invalid_id(&id);
    }
    // Checked before the connection is touched: an oversize post changes nothing, not even `lastActiveAt`.
    if body.len() > MAX_MESSAGE_BYTES {
        return aws_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException", "Request payload too large");
    }
    match gateway.registry.post(&id, Outbound::from_post(body)) {
        Ok(()) => with_request_id(StatusCode::OK.into_response()),
        Err(error) => queue_error(error),
    }
}

pub(crate) async fn get_connection(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let id = match admit(&gateway, request).await {
        Ok((Signed { id }, _)) => id,
        Err(refusal) => return refusal,
    };
    if !is_well_formed_connection_id(&id) {
        return invalid_id(&id);
    }
    let Some(connection) = gateway.registry.get(&id) else {
        return queue_error(QueueError::Gone);
    };
    let mut identity = serde_json::Map::new();
    identity.insert("sourceIp".into(), json!(connection.context.source_ip));
    if let Some(agent) = &connection.context.user_agent {
        identity.insert("userAgent".into(), json!(agent));
    }
    let body = json!({
        "connectedAt": rfc3339_ms(connection.context.connected_at_ms),
        "identity": identity,
        "lastActiveAt": rfc3339_ms(connection.last_active_ms()),
    });
    with_request_id((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

pub(crate) async fn delete_connection(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let id = match admit(&gateway, request).await {
        Ok((Signed { id }, _)) => id,
        Err(refusal) => return refusal,
    };
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
