//! The API Gateway event fixtures in `shared/tests/fixtures`, run through the same `shared::handlers` entry points
//! the functions' `main.rs` call, with the same `Deps` wiring except for the adapters: an in-memory SQLite store and
//! the recording pusher instead of DynamoDB and the Management API.
//!
//! `tests/template/fixtures.rs` checks that the fixtures have API Gateway's exact shapes; this file checks what the
//! handlers answer to those shapes, and what they leave in the store and push. It needs the `test-util` feature for
//! the recording pusher, so without it the file compiles to nothing rather than failing the build.
#![cfg(feature = "test-util")]

use std::sync::Arc;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse, ApiGatewayProxyResponse,
    ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shared::auth::{Claims, mint_token};
use shared::config::{Config, DEV_JWT_SECRET};
use shared::handlers::{Deps, authorizer, connect, disconnect, message};
use shared::ids::ConnectionId;
use shared::push::recording::RecordingPusher;
use shared::rooms::RoomName;
use shared::store::sqlite::SqliteStore;
use shared::store::{ConnectionRecord, HistoryQuery};
use shared::timer::OnTouchTimer;

/// The connection of the fixtures that carry a query string (connect, message, disconnect).
const CONNECTION: &str = "gbf_-C9vMQAYKEiZoA==";
/// The connection of `apigw-connect-no-query`, which offers its token as a subprotocol instead.
const CONNECTION_NO_QUERY: &str = "gbgBcu-0TQAYKEhFmA==";
/// The fixtures' method ARN, which an Allow or Deny policy must name.
const METHOD_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:x5dq2mb9qi/live/$connect";

#[tokio::test]
async fn the_fixture_token_is_signed_with_the_development_secret_the_test_config_uses() {
    let hub = Hub::new().await;
    let request: ApiGatewayCustomAuthorizerRequestTypeRequest = fixture("apigw-authorizer-request");
    let token = request.query_string_parameters.first("token").expect("token in the query string");

    let identity = hub.deps.verifier.verify(token).expect("the fixture token verifies with DEV_JWT_SECRET");

    assert_eq!(identity.user_id.as_str(), "u-42");
    assert_eq!(identity.role.as_deref(), Some("provider"));
}

#[tokio::test]
async fn authorizer_allows_a_valid_token_on_the_method_arn_with_the_identity_as_context() {
    let hub = Hub::new().await;

    let response = authorizer::handle(&hub.deps.verifier, fixture("apigw-authorizer-request")).await.expect("a policy");

    assert!(authorizer::is_allowed(&response));
    assert_eq!(response.principal_id.as_deref(), Some("u-42"));
    // The wire shape is what API Gateway reads, so it is checked as JSON rather than through the Rust fields.
    let wire = serde_json::to_value(&response).expect("serialisable");
    assert_eq!(wire["policyDocument"]["Version"], "2012-10-17");
    let statement = &wire["policyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], json!(["execute-api:Invoke"]));
    assert_eq!(statement["Resource"], json!([METHOD_ARN]));
    assert_eq!(
        wire["context"],
        json!({"userId": "u-42", "role": "provider", "name": "Dr Lee", "email": "lee@example.com", "exp": "4102444800"})
    );
}

#[tokio::test]
async fn the_authorizer_context_is_what_the_later_event_fixtures_carry() {
    let hub = Hub::new().await;
    let response = authorizer::handle(&hub.deps.verifier, fixture("apigw-authorizer-request")).await.expect("a policy");

    // API Gateway forwards the context with every value stringified, plus `principalId`, and adds
    // `integrationLatency` on CONNECT only (reference §3). Our context is all strings already.
    let mut forwarded = response.context.as_object().expect("context object").clone();
    forwarded.insert("principalId".to_owned(), json!(response.principal_id));
    for name in ["apigw-message", "apigw-disconnect", "apigw-connect"] {
        let event: ApiGatewayWebsocketProxyRequest = fixture(name);
        let mut carried: serde_json::Map<String, Value> = event.request_context.authorizer.fields.into_iter().collect();
        carried.remove("integrationLatency");
        assert_eq!(carried, forwarded, "{name}");
    }
}

#[tokio::test]
async fn authorizer_denies_an_expired_or_foreign_token_with_a_deny_policy_on_the_method_arn() {
    let hub = Hub::new().await;
    let past = chrono::Utc::now().timestamp() - 3600;
    let expired = token_signed_with(DEV_JWT_SECRET, past);
    let foreign = token_signed_with("some-other-platform-secret", past + 2 * 3600);

    for (label, token) in [("expired", expired.as_str()), ("foreign", foreign.as_str()), ("garbage", "not-a-jwt")] {
        let response = authorizer::handle(&hub.deps.verifier, authorizer_request_with_token(Some(token))).await;

        // A Deny policy is how the handler refuses a presented but bad token: API Gateway answers 403.
        let response = response.unwrap_or_else(|e| panic!("{label}: a deny policy, not an error: {e}"));
        assert!(!authorizer::is_allowed(&response), "{label}");
        assert_eq!(effects_and_resources(&response), vec![("Deny".to_owned(), vec![METHOD_ARN.to_owned()])]);
        assert_eq!(response.principal_id.as_deref(), Some("anonymous"), "{label}");
        assert_eq!(response.context, json!({}), "{label}: no identity leaks into a denied context");
    }
}

#[tokio::test]
async fn authorizer_without_a_token_fails_with_exactly_unauthorized_so_api_gateway_answers_401() {
    let hub = Hub::new().await;

    let error =
        authorizer::handle(&hub.deps.verifier, authorizer_request_with_token(None)).await.expect_err("no policy");

    // The Lambda runtime reports the error through this conversion, and API Gateway turns exactly the message
    // `Unauthorized` into a 401 (reference §3); any other message would become a 500.
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    assert_eq!(diagnostic.error_message, "Unauthorized");
    assert_eq!(diagnostic.error_type, "Unauthorized");
}

#[tokio::test]
async fn connect_records_the_connection_and_its_automatic_rooms() {
    let hub = Hub::new().await;

    let response = connect::handle(&hub.deps, fixture("apigw-connect")).await.expect("handled");

    assert_eq!(response.status_code, 200);
    assert!(response.headers.get("sec-websocket-protocol").is_none(), "no subprotocol was offered");
    let id = ConnectionId::parse(CONNECTION).expect("connection id");
    let record = hub.deps.store.get_connection(&id).await.expect("store").expect("connection recorded");
    assert_eq!(record.user_id.as_str(), "u-42");
    assert_eq!(record.role.as_deref(), Some("provider"));
    assert_eq!(record.connected_at.timestamp_millis(), 1_790_294_265_737, "connectedAt from the event");
    // A provider joins its own user room and the default role rooms of `RoleRooms::default()`.
    assert_eq!(sorted_rooms(&hub, &id).await, vec!["calendar", "provider:u-42", "user:u-42"]);
    let calendar = hub.deps.store.room_members(&room("calendar")).await.expect("store");
    assert_eq!(calendar.iter().map(|m| m.connection_id.as_str()).collect::<Vec<_>>(), vec![CONNECTION]);
    assert!(hub.pusher.sent().is_empty(), "nobody subscribed to u-42's presence, so nothing is pushed");
}

#[tokio::test]
async fn connect_without_a_query_string_is_accepted_on_the_authorizer_identity_and_selects_the_subprotocol() {
    let hub = Hub::new().await;

    let response = connect::handle(&hub.deps, fixture("apigw-connect-no-query")).await.expect("handled");

    assert_eq!(response.status_code, 200);
    // The browser offered `bellhop.v1, bearer.<jwt>`: the handshake fails unless the response selects one.
    let selected = response.headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
    assert_eq!(selected, Some("bellhop.v1"));
    let id = ConnectionId::parse(CONNECTION_NO_QUERY).expect("connection id");
    assert!(hub.deps.store.get_connection(&id).await.expect("store").is_some());
    assert_eq!(sorted_rooms(&hub, &id).await, vec!["calendar", "provider:u-42", "user:u-42"]);
}

#[tokio::test]
async fn connect_without_the_authorizer_identity_is_refused_with_401_and_records_nothing() {
    let hub = Hub::new().await;
    let mut event: ApiGatewayWebsocketProxyRequest = fixture("apigw-connect");
    event.request_context.authorizer.fields.clear();

    let response = connect::handle(&hub.deps, event).await.expect("handled");

    assert_eq!(response.status_code, 401);
    let body: Value = serde_json::from_str(&text(&response)).expect("JSON envelope");
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    let id = ConnectionId::parse(CONNECTION).expect("connection id");
    assert!(hub.deps.store.get_connection(&id).await.expect("store").is_none());
}

#[tokio::test]
async fn the_message_fixture_is_answered_with_its_ack_as_the_route_response_and_pushes_nothing() {
    let hub = Hub::new().await;
    hub.connect_fixture().await;

    let response = message::handle(&hub.deps, fixture("apigw-message")).await.expect("handled");

    assert_eq!(response.status_code, 200);
    let ack: Value = serde_json::from_str(&text(&response)).expect("JSON ack");
    assert_eq!(
        (&ack["type"], &ack["id"], &ack["ok"], &ack["data"]["connectionId"]),
        (&json!("ack"), &json!("c-1"), &json!(true), &json!(CONNECTION))
    );
    assert!(hub.pusher.sent().is_empty(), "a hello is answered by the route response alone");
}

/// API Gateway answers `ping` on its own route; a ping reaches `$default` only when that route is missing, and the
/// function then says so instead of answering what the client would mistake for a heartbeat.
#[tokio::test]
async fn a_ping_that_reaches_the_message_function_is_an_unknown_action_naming_the_missing_route() {
    let hub = Hub::new().await;
    hub.connect_fixture().await;
    let mut event: ApiGatewayWebsocketProxyRequest = fixture("apigw-message");
    event.body = Some(r#"{"action":"ping","id":"p-1"}"#.to_owned());

    let response = message::handle(&hub.deps, event).await.expect("handled");

    assert_eq!(response.status_code, 200);
    let ack: Value = serde_json::from_str(&text(&response)).expect("JSON ack");
    assert_eq!(
        (&ack["id"], &ack["ok"], &ack["error"]["code"]),
        (&json!("p-1"), &json!(false), &json!("UNKNOWN_ACTION"))
    );
    let message = ack["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("API Gateway's ping route"), "{ack}");
    assert!(hub.pusher.sent().is_empty());
}

#[tokio::test]
async fn a_message_send_fixture_acks_the_sender_and_pushes_the_message_to_the_other_members_only() {
    let hub = Hub::new().await;
    hub.connect_fixture().await;
    let other = hub.put_member("gbgZZq7nvQAYKEj7Tw==", "u-7", "topic:lobby").await;
    hub.join_fixture_connection("topic:lobby").await;
    hub.pusher.clear();

    let response = message::handle(&hub.deps, fixture("apigw-message-send")).await.expect("handled");

    assert_eq!(response.status_code, 200);
    let ack: Value = serde_json::from_str(&text(&response)).expect("JSON ack");
    assert_eq!((&ack["type"], &ack["id"], &ack["ok"]), (&json!("ack"), &json!("c-2"), &json!(true)), "{ack}");
    let stored = &ack["data"]["message"];
    assert_eq!(
        (&stored["room"], &stored["seq"], &stored["content"]),
        (&json!("topic:lobby"), &json!(1), &json!("Running 5 minutes late"))
    );
    assert_eq!(stored["sender"]["id"], "u-42");
    let sent = hub.pusher.sent();
    assert_eq!(sent.len(), 1, "one push, to the one other member: {sent:?}");
    let (to, frame) = &sent[0];
    assert_eq!(to, &other);
    assert_eq!(
        (&frame["type"], &frame["event"], &frame["room"], &frame["seq"]),
        (&json!("event"), &json!("message:new"), &json!("topic:lobby"), &json!(1))
    );
    assert_eq!(&frame["data"], stored, "the pushed message is the acked one");
}

#[tokio::test]
async fn a_malformed_message_body_is_answered_with_an_error_frame_and_changes_nothing() {
    let hub = Hub::new().await;
    hub.connect_fixture().await;

    let response = message::handle(&hub.deps, fixture("apigw-message-malformed")).await.expect("handled, not panicked");

    // The truncated JSON has no readable `id`, so the error cannot be an ack to a request: it is an `error` event.
    assert_eq!(response.status_code, 200);
    let frame: Value = serde_json::from_str(&text(&response)).expect("JSON frame");
    assert_eq!(
        (&frame["type"], &frame["event"], &frame["data"]["code"]),
        (&json!("event"), &json!("error"), &json!("INVALID_JSON")),
        "{frame}"
    );
    assert!(hub.pusher.sent().is_empty());
    let lobby = room("topic:lobby");
    let history = hub.deps.store.history(&lobby, HistoryQuery::Latest { limit: 10 }).await.expect("store");
    assert!(history.is_empty(), "nothing was appended: {history:?}");
}

#[tokio::test]
async fn malformed_frames_with_a_readable_id_get_a_failed_ack_and_others_an_error_event() {
    let hub = Hub::new().await;
    hub.connect_fixture().await;
    let cases: [(Option<&str>, Option<&str>, &str); 7] = [
        (None, None, "INVALID_JSON"),
        (Some(""), None, "INVALID_JSON"),
        (Some("[1, 2]"), None, "INVALID_FRAME"),
        (Some(r#"{"id": "c-4", "action": 42}"#), Some("c-4"), "INVALID_FRAME"),
        (Some(r#"{"id": "c-5"}"#), Some("c-5"), "INVALID_FRAME"),
        (Some(r#"{"id": "c-6", "action": "room:explode"}"#), Some("c-6"), "UNKNOWN_ACTION"),
        (Some(r#"{"id": "c-7", "action": "message:send", "data": {"room": 7}}"#), Some("c-7"), "INVALID_DATA"),
    ];

    for (body, id, code) in cases {
        let mut event: ApiGatewayWebsocketProxyRequest = fixture("apigw-message");
        event.body = body.map(str::to_owned);

        let response = message::handle(&hub.deps, event).await.expect("handled, not panicked");

        assert_eq!(response.status_code, 200, "{body:?}");
        let frame: Value = serde_json::from_str(&text(&response)).expect("JSON frame");
        match id {
            Some(id) => {
                assert_eq!(
                    (&frame["type"], &frame["id"], &frame["ok"]),
                    (&json!("ack"), &json!(id), &json!(false)),
                    "{body:?}: {frame}"
                );
                assert_eq!(frame["error"]["code"], code, "{body:?}: {frame}");
            }
            None => {
                assert_eq!((&frame["type"], &frame["event"]), (&json!("event"), &json!("error")), "{body:?}: {frame}");
                assert_eq!(frame["data"]["code"], code, "{body:?}: {frame}");
            }
        }
    }
    assert!(hub.pusher.sent().is_empty());
}

#[tokio::test]
async fn disconnect_removes_the_connection_and_its_rooms_and_tells_the_rooms_left_behind() {
    let hub = Hub::new().await;
    hub.connect_fixture().await;
    let other = hub.put_member("gbgZZq7nvQAYKEj7Tw==", "u-7", "topic:lobby").await;
    hub.join_fixture_connection("topic:lobby").await;
    hub.pusher.clear();

    let response = disconnect::handle(&hub.deps, fixture("apigw-disconnect")).await.expect("handled");

    assert_eq!(response.status_code, 200);
    let id = ConnectionId::parse(CONNECTION).expect("connection id");
    assert!(hub.deps.store.get_connection(&id).await.expect("store").is_none());
    assert!(hub.deps.store.connection_rooms(&id).await.expect("store").is_empty());
    for name in ["calendar", "provider:u-42", "user:u-42"] {
        assert!(hub.deps.store.room_members(&room(name)).await.expect("store").is_empty(), "{name}");
    }
    let lobby = hub.deps.store.room_members(&room("topic:lobby")).await.expect("store");
    assert_eq!(lobby.iter().map(|m| &m.connection_id).collect::<Vec<_>>(), vec![&other]);
    // Only the public room announces the departure; role and personal rooms are not conversations.
    let sent = hub.pusher.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, other);
    assert_eq!((&sent[0].1["event"], &sent[0].1["data"]["userId"]), (&json!("room:userLeft"), &json!("u-42")));
}

#[tokio::test]
async fn a_repeated_disconnect_is_harmless() {
    let hub = Hub::new().await;
    hub.connect_fixture().await;
    let first = disconnect::handle(&hub.deps, fixture("apigw-disconnect")).await.expect("handled");

    // API Gateway may deliver `$disconnect` after a push already pruned the connection.
    let second = disconnect::handle(&hub.deps, fixture("apigw-disconnect")).await.expect("handled");

    assert_eq!((first.status_code, second.status_code), (200, 200));
    assert!(hub.pusher.sent().is_empty());
}

/// One function's worth of wiring, as `Deps::for_lambda` builds it, with test adapters.
struct Hub {
    deps: Deps,
    pusher: Arc<RecordingPusher>,
}

impl Hub {
    async fn new() -> Self {
        // `Config::for_tests` uses DEV_JWT_SECRET, the secret the fixtures' token was signed with.
        let store = SqliteStore::in_memory().await.expect("in-memory store");
        let pusher = Arc::new(RecordingPusher::default());
        let deps = Deps::new(Config::for_tests(), Arc::new(store), pusher.clone(), Arc::new(OnTouchTimer));
        Self { deps, pusher }
    }

    /// Runs the `apigw-connect` fixture, which every later event of [`CONNECTION`] presupposes.
    async fn connect_fixture(&self) {
        let response = connect::handle(&self.deps, fixture("apigw-connect")).await.expect("handled");
        assert_eq!(response.status_code, 200);
    }

    /// Joins [`CONNECTION`] to a room through the `$default` route, as the client would.
    async fn join_fixture_connection(&self, room: &str) {
        let mut event: ApiGatewayWebsocketProxyRequest = fixture("apigw-message");
        event.body = Some(json!({"action": "room:join", "id": "j-1", "data": {"room": room}}).to_string());
        let response = message::handle(&self.deps, event).await.expect("handled");
        let ack: Value = serde_json::from_str(&text(&response)).expect("JSON ack");
        assert_eq!(ack["ok"], true, "join {room}: {ack}");
    }

    /// Puts another user's connection in the store, a member of `room`, without going through the handlers.
    async fn put_member(&self, connection: &str, user: &str, room_name: &str) -> ConnectionId {
        let record =
            ConnectionRecord { role: Some("customer".to_owned()), ..ConnectionRecord::for_tests(connection, user) };
        self.deps.store.put_connection(&record, &[room(room_name)]).await.expect("put connection");
        record.connection_id
    }
}

/// Reads a fixture into the `aws_lambda_events` type its function takes.
fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} does not deserialise: {e}"))
}

/// The authorizer fixture with its token replaced, or with every place a token could be removed.
fn authorizer_request_with_token(token: Option<&str>) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let mut raw: Value = fixture("apigw-authorizer-request");
    match token {
        Some(token) => {
            raw["queryStringParameters"]["token"] = json!(token);
            raw["multiValueQueryStringParameters"]["token"] = json!([token]);
        }
        None => {
            for map in ["queryStringParameters", "multiValueQueryStringParameters"] {
                raw[map].as_object_mut().expect("query map").remove("token");
            }
        }
    }
    serde_json::from_value(raw).expect("still an authorizer request")
}

fn token_signed_with(secret: &str, exp: i64) -> String {
    let claims = Claims {
        sub: "u-42".to_owned(),
        exp,
        nbf: None,
        iat: Some(exp - 3600),
        iss: None,
        aud: None,
        role: Some("provider".to_owned()),
        name: None,
        email: None,
        rooms: None,
    };
    mint_token(&secrecy::SecretString::from(secret.to_owned()), &claims).expect("signed")
}

fn effects_and_resources(response: &ApiGatewayCustomAuthorizerResponse) -> Vec<(String, Vec<String>)> {
    let wire = serde_json::to_value(response).expect("serialisable");
    let statements = wire["policyDocument"]["Statement"].as_array().cloned().unwrap_or_default();
    statements
        .iter()
        .map(|s| {
            let resources = s["Resource"].as_array().into_iter().flatten().filter_map(Value::as_str);
            (s["Effect"].as_str().unwrap_or_default().to_owned(), resources.map(str::to_owned).collect())
        })
        .collect()
}

fn text(response: &ApiGatewayProxyResponse) -> String {
    match &response.body {
        Some(Body::Text(text)) => text.clone(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("room name")
}

async fn sorted_rooms(hub: &Hub, connection: &ConnectionId) -> Vec<String> {
    let mut rooms: Vec<String> = hub
        .deps
        .store
        .connection_rooms(connection)
        .await
        .expect("store")
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    rooms.sort();
    rooms
}
