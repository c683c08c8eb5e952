//! Builds the Lambda events API Gateway would send, as JSON values in AWS's exact shape (see
//! `apigw-websocket.md` §1 and §3), then deserialises them into the `aws_lambda_events` types the handlers take.
//!
//! Building JSON first, rather than filling the Rust structs, is deliberate: it proves every shape we emit parses
//! the way a real AWS payload does (for example `connectedAt` and `requestTimeEpoch` have no serde default, so an
//! event without them would fail here exactly as it would fail in Lambda). This module does no I/O.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// What API Gateway knows about a connection, carried on every event of it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionContext {
    /// The API's id, stage and domain: the same for every connection, so shared rather than copied into each.
    pub(crate) api_id: Arc<str>,
    pub(crate) stage: Arc<str>,
    pub(crate) domain_name: Arc<str>,
    pub(crate) connection_id: String,
    pub(crate) connected_at_ms: i64,
    pub(crate) source_ip: String,
    pub(crate) user_agent: Option<String>,
    /// The authorizer's answer, already flattened to `principalId` + stringified context values.
    pub(crate) authorizer: Option<AuthorizerContext>,
}

#[cfg(test)]
impl ConnectionContext {
    /// A connection of the local stage, without an authorizer context.
    pub(crate) fn for_tests(connection_id: &str) -> Self {
        Self {
            api_id: "bellhoploc".into(),
            stage: "local".into(),
            domain_name: "127.0.0.1:3001".into(),
            connection_id: connection_id.into(),
            connected_at_ms: 1,
            source_ip: "127.0.0.1".into(),
            user_agent: None,
            authorizer: None,
        }
    }
}

/// The authorizer's answer as API Gateway attaches it to every event of the connection: `principalId` and each
/// context value as a string, by key. Every open connection holds one, so it is packed: all keys and values in one
/// string, with where each ends. A JSON map's first node alone is about 600 bytes, and a string per key and per
/// value about a dozen small allocations per connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuthorizerContext {
    text: Box<str>,
    /// For each pair in order: where its key ends and where its value ends, in `text`.
    ends: Box<[(usize, usize)]>,
}

impl AuthorizerContext {
    fn pack<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (key, value) in pairs {
            text.push_str(key);
            let key_end = text.len();
            text.push_str(value);
            ends.push((key_end, text.len()));
        }
        Self { text: text.into(), ends: ends.into() }
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let pair = (&self.text[start..key_end], &self.text[key_end..value_end]);
            start = value_end;
            pair
        })
    }

    /// The JSON object an event carries as `requestContext.authorizer`.
    fn to_map(&self) -> Map<String, Value> {
        self.pairs().map(|(key, value)| (key.to_owned(), Value::String(value.to_owned()))).collect()
    }
}

/// The handshake request as the client sent it.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandshakeRequest {
    /// Header names and values in arrival order. hyper lowercases names, so the client's literal spelling is lost.
    pub(crate) headers: Vec<(String, String)>,
    /// The raw query string, without `?`.
    pub(crate) query: Option<String>,
    pub(crate) local_port: u16,
    pub(crate) trace_id: String,
}

/// One request id: API Gateway's `requestId` and `extendedRequestId` are the same value.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    pub(crate) request_id: String,
    pub(crate) time_ms: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("emulated {kind} event does not deserialise")]
pub(crate) struct EventShapeError {
    kind: &'static str,
    #[source]
    source: serde_json::Error,
}

/// Headers of the handshake that never reach `$connect` (they do reach the authorizer).
const HOP_HEADERS: [&str; 3] = ["connection", "upgrade", "content-length"];

/// The REQUEST authorizer event, as the `$connect` authorizer receives it.
pub(crate) fn authorizer_event(
    ctx: &ConnectionContext,
    request: &HandshakeRequest,
    invocation: &Invocation,
) -> Result<(Value, ApiGatewayCustomAuthorizerRequestTypeRequest), EventShapeError> {
    let mut event = Map::new();
    event.insert("type".into(), json!("REQUEST"));
    event.insert(
        "methodArn".into(),
        json!(format!("arn:aws:execute-api:local:000000000000:{}/{}/$connect", ctx.api_id, ctx.stage)),
    );
    insert_headers(&mut event, &with_gateway_headers(&request.headers, ctx, request, true));
    insert_query(&mut event, request.query.as_deref());
    let mut context = common_context(ctx, "$connect", "CONNECT", invocation);
    // The authorizer runs before the connection exists, so it never sees an authorizer context.
    context.remove("authorizer");
    event.insert("requestContext".into(), Value::Object(context));
    let value = Value::Object(event);
    let typed =
        serde_json::from_value(value.clone()).map_err(|source| EventShapeError { kind: "authorizer", source })?;
    Ok((value, typed))
}

/// The CONNECT event for `$connect`. `integration_latency_ms` is how long the authorizer took, which AWS reports
/// in the authorizer context of this event only.
pub(crate) fn connect_event(
    ctx: &ConnectionContext,
    request: &HandshakeRequest,
    invocation: &Invocation,
    integration_latency_ms: Option<i64>,
) -> Result<(Value, ApiGatewayWebsocketProxyRequest), EventShapeError> {
    let mut event = Map::new();
    insert_headers(&mut event, &with_gateway_headers(&request.headers, ctx, request, false));
    insert_query(&mut event, request.query.as_deref());
    let mut context = common_context(ctx, "$connect", "CONNECT", invocation);
    if let (Some(latency), Some(Value::Object(authorizer))) = (integration_latency_ms, context.get_mut("authorizer")) {
        authorizer.insert("integrationLatency".into(), json!(latency));
    }
    event.insert("requestContext".into(), Value::Object(context));
    event.insert("isBase64Encoded".into(), json!(false));
    finish(event, "connect")
}

/// A MESSAGE event: no headers, no query, the exact text of the message as `body`.
pub(crate) fn message_event(
    ctx: &ConnectionContext,
    route_key: &str,
    message_id: &str,
    body: &str,
    invocation: &Invocation,
) -> Result<(Value, ApiGatewayWebsocketProxyRequest), EventShapeError> {
    let mut event = Map::new();
    let mut context = common_context(ctx, route_key, "MESSAGE", invocation);
    context.insert("messageId".into(), json!(message_id));
    event.insert("requestContext".into(), Value::Object(context));
    event.insert("body".into(), json!(body));
    event.insert("isBase64Encoded".into(), json!(false));
    finish(event, "message")
}

/// The DISCONNECT event, with the odd fixed header set real AWS sends.
pub(crate) fn disconnect_event(
    ctx: &ConnectionContext,
    status_code: u16,
    reason: &str,
    invocation: &Invocation,
) -> Result<(Value, ApiGatewayWebsocketProxyRequest), EventShapeError> {
    let mut event = Map::new();
    let headers = vec![
        ("Host".to_owned(), ctx.domain_name.to_string()),
        ("x-api-key".to_owned(), String::new()),
        ("X-Forwarded-For".to_owned(), String::new()),
        ("x-restapi".to_owned(), String::new()),
    ];
    insert_headers(&mut event, &headers);
    let mut context = common_context(ctx, "$disconnect", "DISCONNECT", invocation);
    context.insert("disconnectStatusCode".into(), json!(status_code));
    context.insert("disconnectReason".into(), json!(reason));
    event.insert("requestContext".into(), Value::Object(context));
    event.insert("isBase64Encoded".into(), json!(false));
    finish(event, "disconnect")
}

/// Flattens an authorizer answer the way API Gateway does before attaching it to events: `principalId` plus every
/// context value turned into a string (`7` → `"7"`, `true` → `"true"`). Objects and arrays are not allowed by AWS;
/// they are dropped rather than passed on in a shape AWS would never produce.
pub(crate) fn stringify_authorizer_context(principal_id: Option<&str>, context: &Value) -> AuthorizerContext {
    let mut fields: std::collections::BTreeMap<&str, std::borrow::Cow<'_, str>> = std::collections::BTreeMap::new();
    if let Some(principal) = principal_id {
        fields.insert("principalId", principal.into());
    }
    if let Value::Object(context) = context {
        for (key, value) in context {
            let text = match value {
                Value::String(s) => s.as_str().into(),
                Value::Number(n) => n.to_string().into(),
                Value::Bool(b) => b.to_string().into(),
                Value::Null | Value::Array(_) | Value::Object(_) => continue,
            };
            fields.insert(key.as_str(), text);
        }
    }
    AuthorizerContext::pack(fields.iter().map(|(key, value)| (*key, value.as_ref())))
}

/// The text of a Lambda proxy response body; `None` when there is no body to send.
pub(crate) fn body_text(body: Option<aws_lambda_events::encodings::Body>) -> Option<String> {
    use aws_lambda_events::encodings::Body;
    match body? {
        Body::Text(text) => Some(text),
        Body::Binary(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

/// `requestTime` in the Common Log Format AWS uses, always UTC.
pub(crate) fn clf_time(epoch_ms: i64) -> String {
    let time = DateTime::<Utc>::from_timestamp_millis(epoch_ms).unwrap_or_default();
    time.format("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

fn finish(
    event: Map<String, Value>,
    kind: &'static str,
) -> Result<(Value, ApiGatewayWebsocketProxyRequest), EventShapeError> {
    let value = Value::Object(event);
    let typed = serde_json::from_value(value.clone()).map_err(|source| EventShapeError { kind, source })?;
    Ok((value, typed))
}

fn common_context(ctx: &ConnectionContext, route_key: &str, event_type: &str, inv: &Invocation) -> Map<String, Value> {
    let mut identity = Map::new();
    if let Some(agent) = &ctx.user_agent {
        identity.insert("userAgent".into(), json!(agent));
    }
    identity.insert("sourceIp".into(), json!(ctx.source_ip));
    let mut context = Map::new();
    context.insert("routeKey".into(), json!(route_key));
    if let Some(authorizer) = &ctx.authorizer {
        context.insert("authorizer".into(), Value::Object(authorizer.to_map()));
    }
    context.insert("eventType".into(), json!(event_type));
    context.insert("extendedRequestId".into(), json!(inv.request_id));
    context.insert("requestTime".into(), json!(clf_time(inv.time_ms)));
    context.insert("messageDirection".into(), json!("IN"));
    context.insert("stage".into(), json!(&*ctx.stage));
    context.insert("connectedAt".into(), json!(ctx.connected_at_ms));
    context.insert("requestTimeEpoch".into(), json!(inv.time_ms.max(ctx.connected_at_ms)));
    context.insert("identity".into(), Value::Object(identity));
    context.insert("requestId".into(), json!(inv.request_id));
    context.insert("domainName".into(), json!(&*ctx.domain_name));
    context.insert("connectionId".into(), json!(ctx.connection_id));
    context.insert("apiId".into(), json!(&*ctx.api_id));
    context
}

/// The client's headers (minus hop-by-hop ones for `$connect`) plus the ones API Gateway adds. Client-sent copies of
/// the added headers are replaced, as a proxy would, so a client cannot spoof its source address.
fn with_gateway_headers(
    client: &[(String, String)],
    ctx: &ConnectionContext,
    request: &HandshakeRequest,
    for_authorizer: bool,
) -> Vec<(String, String)> {
    const ADDED: [&str; 4] = ["x-amzn-trace-id", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"];
    let mut headers: Vec<(String, String)> = client
        .iter()
        .filter(|(name, _)| {
            let lower = name.to_ascii_lowercase();
            !ADDED.contains(&lower.as_str()) && (for_authorizer || !HOP_HEADERS.contains(&lower.as_str()))
        })
        .cloned()
        .collect();
    if for_authorizer && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        headers.push(("content-length".into(), "0".into()));
    }
    headers.push(("X-Amzn-Trace-Id".into(), request.trace_id.clone()));
    headers.push(("X-Forwarded-For".into(), ctx.source_ip.clone()));
    headers.push(("X-Forwarded-Port".into(), request.local_port.to_string()));
    // Loopback has no TLS; saying `https` would be a lie the handlers might act on.
    headers.push(("X-Forwarded-Proto".into(), "http".into()));
    headers
}

/// `headers` keeps the last value of a repeated header (assumed like the query rule); `multiValueHeaders` all.
fn insert_headers(event: &mut Map<String, Value>, headers: &[(String, String)]) {
    let mut single = Map::new();
    let mut multi = Map::new();
    for (name, value) in headers {
        single.insert(name.clone(), json!(value));
        match multi.entry(name.clone()).or_insert_with(|| json!([])) {
            Value::Array(values) => values.push(json!(value)),
            other => *other = json!([value]),
        }
    }
    event.insert("headers".into(), Value::Object(single));
    event.insert("multiValueHeaders".into(), Value::Object(multi));
}

/// Query maps: form-decoded, last value wins in the single map, and both keys absent without a query string.
fn insert_query(event: &mut Map<String, Value>, query: Option<&str>) {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return;
    };
    let mut single = Map::new();
    let mut multi = Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        single.insert(name.to_string(), json!(value));
        match multi.entry(name.to_string()).or_insert_with(|| json!([])) {
            Value::Array(values) => values.push(json!(value)),
            other => *other = json!([value]),
        }
    }
    event.insert("queryStringParameters".into(), Value::Object(single));
    event.insert("multiValueQueryStringParameters".into(), Value::Object(multi));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(authorizer: Option<AuthorizerContext>) -> ConnectionContext {
        ConnectionContext {
            api_id: "bellhoploc".into(),
            stage: "local".into(),
            domain_name: "127.0.0.1:3001".into(),
            connection_id: "gbf_-C9vMQAYKEiZoA==".into(),
            connected_at_ms: 1_790_294_265_737,
            source_ip: "127.0.0.1".into(),
            user_agent: Some("probe".into()),
            authorizer,
        }
    }

    fn request(query: Option<&str>) -> HandshakeRequest {
        HandshakeRequest {
            headers: vec![
                ("host".into(), "127.0.0.1:3001".into()),
                ("connection".into(), "Upgrade".into()),
                ("upgrade".into(), "websocket".into()),
                ("sec-websocket-key".into(), "gtw+zuVOHmE2T4hoXWDqdA==".into()),
                ("x-forwarded-for".into(), "6.6.6.6".into()),
                ("user-agent".into(), "probe".into()),
            ],
            query: query.map(str::to_owned),
            local_port: 3001,
            trace_id: "Root=1-6ab5b8f9-03af80023921e01c301d6aef".into(),
        }
    }

    fn inv(offset: i64) -> Invocation {
        Invocation { request_id: "EOnXGHGfIAMErsw=".into(), time_ms: 1_790_294_265_737 + offset }
    }

    fn authorizer() -> AuthorizerContext {
        let context = json!({"n": 7, "b": true, "f": false, "s": "", "o": {"x": 1}, "name": "Zoë 🐕"});
        stringify_authorizer_context(Some("u1"), &context)
    }

    #[test]
    fn authorizer_context_values_are_stringified_with_the_principal() {
        assert_eq!(
            Value::Object(authorizer().to_map()),
            json!({"principalId": "u1", "n": "7", "b": "true", "f": "false", "s": "", "name": "Zoë 🐕"})
        );
    }

    #[test]
    fn connect_without_query_string_omits_both_query_maps() {
        let (value, typed) = connect_event(&ctx(None), &request(None), &inv(12), None).expect("shape");
        assert!(value.get("queryStringParameters").is_none());
        assert!(value.get("multiValueQueryStringParameters").is_none());
        assert!(value.get("body").is_none());
        assert_eq!(typed.request_context.connected_at, 1_790_294_265_737);
    }

    #[test]
    fn repeated_query_values_are_last_wins_and_form_decoded() {
        let (value, _) = connect_event(&ctx(None), &request(Some("a=1&a=2&e=a%2Bb+space")), &inv(0), None).expect("x");
        assert_eq!(value["queryStringParameters"], json!({"a": "2", "e": "a+b space"}));
        assert_eq!(value["multiValueQueryStringParameters"], json!({"a": ["1", "2"], "e": ["a+b space"]}));
    }

    #[test]
    fn connect_forwards_client_headers_without_hop_headers_and_adds_gateway_headers() {
        let (value, _) = connect_event(&ctx(None), &request(None), &inv(0), None).expect("shape");
        let headers = value["headers"].as_object().expect("headers");
        for absent in ["connection", "upgrade", "content-length"] {
            assert!(!headers.keys().any(|k| k.eq_ignore_ascii_case(absent)), "{absent} forwarded");
        }
        assert_eq!(headers["sec-websocket-key"], "gtw+zuVOHmE2T4hoXWDqdA==");
        assert_eq!(headers["X-Forwarded-For"], "127.0.0.1", "client-sent X-Forwarded-For must be replaced");
        assert_eq!(headers["X-Forwarded-Port"], "3001");
        assert!(headers.contains_key("X-Amzn-Trace-Id"));
        assert_eq!(value["multiValueHeaders"]["user-agent"], json!(["probe"]));
    }

    #[test]
    fn the_authorizer_event_keeps_hop_headers_and_names_the_connect_route_arn() {
        let (value, typed) = authorizer_event(&ctx(None), &request(Some("token=t")), &inv(0)).expect("shape");
        assert_eq!(value["type"], "REQUEST");
        assert_eq!(
            typed.method_arn.as_deref(),
            Some("arn:aws:execute-api:local:000000000000:bellhoploc/local/$connect")
        );
        assert!(typed.headers.contains_key("upgrade"));
        assert!(typed.headers.contains_key("content-length"));
        assert_eq!(typed.query_string_parameters.first("token"), Some("t"));
    }

    #[test]
    fn request_ids_match_and_request_time_describes_the_epoch() {
        let (value, _) = connect_event(&ctx(None), &request(None), &inv(5), None).expect("shape");
        let rc = &value["requestContext"];
        assert_eq!(rc["requestId"], rc["extendedRequestId"]);
        assert_eq!(rc["requestTime"], "24/Sep/2026:23:57:45 +0000");
        assert_eq!(rc["requestTimeEpoch"], 1_790_294_265_742_i64);
        assert_eq!(rc["identity"], json!({"userAgent": "probe", "sourceIp": "127.0.0.1"}));
    }

    #[test]
    fn integration_latency_appears_on_connect_only() {
        let ctx = ctx(Some(authorizer()));
        let (connect, typed) = connect_event(&ctx, &request(None), &inv(0), Some(33)).expect("shape");
        assert_eq!(connect["requestContext"]["authorizer"]["integrationLatency"], 33);
        assert_eq!(typed.request_context.authorizer.fields.get("n"), Some(&json!("7")));
        let (message, _) = message_event(&ctx, "$default", "m1", "{}", &inv(1)).expect("shape");
        assert_eq!(
            message["requestContext"]["authorizer"],
            json!({"principalId": "u1", "n": "7", "b": "true", "f": "false", "s": "", "name": "Zoë 🐕"})
        );
        let (disconnect, _) = disconnect_event(&ctx, 1000, "bye", &inv(2)).expect("shape");
        assert_eq!(
            disconnect["requestContext"]["authorizer"],
            json!({"principalId": "u1", "n": "7", "b": "true", "f": "false", "s": "", "name": "Zoë 🐕"})
        );
    }

    #[test]
    fn a_message_has_no_headers_or_query_and_carries_the_exact_body() {
        let (value, typed) =
            message_event(&ctx(None), "$default", "gbgaE67pRQAYKEj6PA==", "plain|text", &inv(9)).expect("shape");
        for absent in ["headers", "multiValueHeaders", "queryStringParameters"] {
            assert!(value.get(absent).is_none(), "{absent} present");
        }
        assert_eq!(value["isBase64Encoded"], false);
        assert_eq!(typed.body.as_deref(), Some("plain|text"));
        assert_eq!(typed.request_context.message_id.as_deref(), Some("gbgaE67pRQAYKEj6PA=="));
        assert_eq!(typed.request_context.event_type.as_deref(), Some("MESSAGE"));
    }

    #[test]
    fn a_disconnect_has_the_fixed_header_set_and_the_close_status() {
        let (value, typed) =
            disconnect_event(&ctx(None), 1005, "Client-side close frame status not set", &inv(3)).expect("shape");
        assert_eq!(
            value["headers"],
            json!({"Host": "127.0.0.1:3001", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""})
        );
        assert!(value.get("body").is_none());
        assert!(value["requestContext"].get("messageId").is_none());
        assert_eq!(typed.request_context.disconnect_status_code, Some(1005));
        assert_eq!(typed.request_context.route_key.as_deref(), Some("$disconnect"));
    }
}
