//! The event fixtures in `shared/tests/fixtures`, in the exact shapes API Gateway sends
//! (`/work/shared/reference/apigw-websocket.md` §1 and §3), deserialise into the `aws_lambda_events` types the
//! functions take, with the fields the handlers read intact. The handler-level tests use the same files.
//!
//! The shapes are checked on the raw JSON too, because the Rust types default absent keys: a MESSAGE has no
//! `headers`, a connect without a query string has no `queryStringParameters` key at all.

use std::path::PathBuf;

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest};
use serde_json::Value;

fn fixture_path(name: &str) -> PathBuf {
    super::workspace().join("shared/tests/fixtures").join(format!("{name}.json"))
}

fn raw(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("read fixture {name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

fn websocket(name: &str) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(raw(name))
        .unwrap_or_else(|e| panic!("{name} is not an ApiGatewayWebsocketProxyRequest: {e}"))
}

/// What every WebSocket event carries, whatever its type (reference §1.1, checklist 4–6).
fn check_common(name: &str, event: &ApiGatewayWebsocketProxyRequest, route_key: &str, event_type: &str) {
    let context = &event.request_context;
    assert_eq!(context.route_key.as_deref(), Some(route_key), "{name}");
    assert_eq!(context.event_type.as_deref(), Some(event_type), "{name}");
    assert_eq!(context.message_direction.as_deref(), Some("IN"), "{name}");
    assert!(context.request_id.is_some() && context.request_id == context.extended_request_id, "{name}");
    assert!(context.connected_at > 0 && context.request_time_epoch >= context.connected_at, "{name}");
    assert!(context.connection_id.as_deref().is_some_and(|id| id.ends_with("==")), "{name}");
    assert!(context.domain_name.as_deref().is_some_and(|d| d.ends_with(".amazonaws.com")), "{name}");
    assert!(context.stage.is_some() && context.apiid.is_some(), "{name}");
    assert!(context.identity.source_ip.is_some() && context.identity.user_agent.is_some(), "{name}");
    assert_eq!(context.authorizer.fields.get("userId").and_then(Value::as_str), Some("u-42"), "{name}");
    assert_eq!(context.authorizer.fields.get("principalId").and_then(Value::as_str), Some("u-42"), "{name}");
    assert!(!event.is_base64_encoded, "{name}");
    let raw = raw(name);
    for absent in ["resource", "path", "httpMethod", "pathParameters"] {
        assert!(raw.get(absent).is_none(), "{name}: AWS sends no {absent} on WebSocket events");
    }
}

#[test]
fn connect_with_a_query_string_carries_the_token_and_the_authorizer_context() {
    let event = websocket("apigw-connect");
    check_common("apigw-connect", &event, "$connect", "CONNECT");
    assert!(event.query_string_parameters.first("token").is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(event.query_string_parameters.first("client"), Some("dashboard"), "single-value map: last wins");
    assert_eq!(event.multi_value_query_string_parameters.all("client"), Some(vec!["web", "dashboard"]));
    assert_eq!(event.headers.get("origin").and_then(|v| v.to_str().ok()), Some("https://app.example.com"));
    assert!(event.headers.get("upgrade").is_none() && event.headers.get("connection").is_none());
    assert!(event.request_context.authorizer.fields.get("integrationLatency").is_some_and(Value::is_number));
    assert!(event.body.is_none() && event.request_context.message_id.is_none());
}

#[test]
fn connect_without_a_query_string_has_no_query_keys_and_offers_the_token_as_a_subprotocol() {
    let raw = raw("apigw-connect-no-query");
    assert!(raw.get("queryStringParameters").is_none() && raw.get("multiValueQueryStringParameters").is_none());
    let event = websocket("apigw-connect-no-query");
    check_common("apigw-connect-no-query", &event, "$connect", "CONNECT");
    assert!(event.query_string_parameters.is_empty());
    let offered = event.headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(offered.starts_with("bellhop.v1, bearer.ey"), "{offered}");
}

#[test]
fn message_has_a_body_and_a_message_id_but_no_headers() {
    let raw = raw("apigw-message");
    for absent in ["headers", "multiValueHeaders", "queryStringParameters"] {
        assert!(raw.get(absent).is_none(), "MESSAGE events have no {absent}");
    }
    let event = websocket("apigw-message");
    check_common("apigw-message", &event, "$default", "MESSAGE");
    assert!(event.request_context.message_id.is_some());
    assert!(!event.request_context.authorizer.fields.contains_key("integrationLatency"), "CONNECT only");
    let body: Value = serde_json::from_str(event.body.as_deref().expect("body")).expect("body is JSON");
    assert_eq!(body["action"], "hello");
}

#[test]
fn disconnect_carries_the_close_status_and_reason() {
    let event = websocket("apigw-disconnect");
    check_common("apigw-disconnect", &event, "$disconnect", "DISCONNECT");
    assert_eq!(event.request_context.disconnect_status_code, Some(1000));
    assert_eq!(event.request_context.disconnect_reason.as_deref(), Some("bye"));
    let names: Vec<&str> = event.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), 4, "the fixed DISCONNECT header set: {names:?}");
    assert_eq!(event.headers.get("x-api-key").and_then(|v| v.to_str().ok()), Some(""));
    assert!(event.body.is_none() && event.request_context.message_id.is_none());
}

#[test]
fn authorizer_request_carries_the_method_arn_the_query_and_the_handshake_headers() {
    let raw = raw("apigw-authorizer-request");
    assert_eq!(raw["type"], "REQUEST");
    assert!(raw.get("pathParameters").is_none(), "WebSocket authorizer events have no pathParameters");
    let request: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_value(raw).expect("an ApiGatewayCustomAuthorizerRequestTypeRequest");
    let arn = request.method_arn.as_deref().expect("methodArn");
    assert!(arn.starts_with("arn:aws:execute-api:") && arn.ends_with("/live/$connect"), "{arn}");
    assert!(request.query_string_parameters.first("token").is_some_and(|t| t.split('.').count() == 3));
    for (name, value) in [("connection", "upgrade"), ("upgrade", "websocket"), ("content-length", "0")] {
        assert_eq!(request.headers.get(name).and_then(|v| v.to_str().ok()), Some(value), "authorizer sees {name}");
    }
    assert_eq!(request.request_context.stage.as_deref(), Some("live"));
    assert_eq!(request.request_context.apiid.as_deref(), Some("x5dq2mb9qi"));
    assert!(request.http_method.is_none(), "methodArn has no verb and the event no httpMethod");
}
