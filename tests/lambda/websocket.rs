//! The WebSocket API's functions: the authorizer, then `$connect`, `$default` and `$disconnect`, each fed the event
//! API Gateway would send, the later ones carrying the context the authorizer binary actually answered.

use serde_json::{Value, json};
use shared::ids::{ConnectionId, UserId};
use shared::rooms::RoomName;
use shared::store::{ConnectionRecord, Store};

use crate::{CONNECTION, JWT_SECRET, Stack, USER, body_of, fixture, invoke, invoke_error, message_event, token};

/// The private conversation of the fixture user and the harness's client.
const CHAT: &str = "chat:u-42:u-7";

/// A connection the store still lists but whose socket is gone: the harness's `@connections` answers 410 for it.
const STALE_CONNECTION: &str = "gbgZZq7nvQAYKEj7Tw==";

/// The authorizer fixture with `token` in its query string (or with no token at all).
fn authorizer_request(token: Option<&str>) -> Value {
    let mut event = fixture("apigw-authorizer-request");
    for (map, value) in [("queryStringParameters", json!(token)), ("multiValueQueryStringParameters", json!([token]))] {
        let query = event[map].as_object_mut().expect("query map");
        match token {
            Some(_) => query.insert("token".to_owned(), value),
            None => query.remove("token"),
        };
    }
    event
}

/// What API Gateway forwards to the integrations from an Allow answer: the context, `principalId`, and on
/// `$connect` the `integrationLatency` (reference §3).
fn forwarded_context(allow: &Value) -> Value {
    let mut context = allow["context"].clone();
    context["principalId"] = allow["principalId"].clone();
    context["integrationLatency"] = json!(12);
    context
}

#[tokio::test]
async fn the_authorizer_binary_allows_a_token_signed_with_the_secret_of_the_template_and_denies_others() {
    let Some(stack) = Stack::new().await else { return };
    let mut authorizer = stack.start("authorizer").await;
    let good = token(JWT_SECRET, USER, "provider");
    let method_arn = fixture("apigw-authorizer-request")["methodArn"].clone();

    let allow = invoke(&mut authorizer, &authorizer_request(Some(&good))).await;
    // The fixture as recorded carries a token signed with the harness's public development secret: a function
    // that fell back to it instead of reading JWT_SECRET would allow this one.
    let deny = invoke(&mut authorizer, &fixture("apigw-authorizer-request")).await;
    let (header_type, missing) = invoke_error(&mut authorizer, &authorizer_request(None)).await;

    assert_eq!(allow["principalId"], USER, "{allow}");
    assert_eq!(allow["policyDocument"]["Statement"][0]["Effect"], "Allow", "{allow}");
    assert_eq!(allow["policyDocument"]["Statement"][0]["Resource"], json!([method_arn]), "{allow}");
    assert_eq!((&allow["context"]["userId"], &allow["context"]["role"]), (&json!(USER), &json!("provider")));
    assert_eq!(deny["policyDocument"]["Statement"][0]["Effect"], "Deny", "{deny}");
    // API Gateway answers 401 only when the authorizer fails with exactly this message.
    assert_eq!(missing["errorMessage"], "Unauthorized", "{missing}");
    assert_eq!(missing["errorType"], "Unauthorized", "{missing}");
    assert!(header_type.is_some(), "the runtime names the error type in a header");
    assert!(authorizer.init_duration().is_some());
    let logs = authorizer.logs();
    assert!(!logs.contains(&good), "the token reached the log:\n{logs}");
    for line in logs.lines().filter(|line| !line.trim().is_empty()) {
        // LogFormat JSON: CloudWatch reads every line as one JSON record.
        let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(record.is_object(), "{line}");
    }
}

#[tokio::test]
async fn connect_message_and_disconnect_binaries_keep_their_state_in_dynamodb_and_push_through_the_management_api() {
    let Some(stack) = Stack::new().await else { return };
    // Another user, connected through the harness, is in the room the fixture connection will join.
    let mut other = stack.client("u-7").await;
    assert_eq!(other.request("room:join", json!({"room": "topic:lobby"})).await["ok"], true);
    let mut authorizer = stack.start("authorizer").await;
    let mut connect = stack.start("connect").await;
    let mut message = stack.start("message").await;
    let mut disconnect = stack.start("disconnect").await;
    let allow = invoke(&mut authorizer, &authorizer_request(Some(&token(JWT_SECRET, USER, "provider")))).await;
    let mut connect_event = fixture("apigw-connect");
    connect_event["requestContext"]["authorizer"] = forwarded_context(&allow);

    // $connect: the connection and its automatic rooms land in the table the template names.
    let connected = invoke(&mut connect, &connect_event).await;
    assert_eq!(connected["statusCode"], 200, "{connected}");
    let id = ConnectionId::parse(CONNECTION).expect("connection id");
    let record = stack.store.get_connection(&id).await.expect("store").expect("connection recorded");
    assert_eq!(record.user_id.as_str(), USER);
    let mut rooms: Vec<String> =
        stack.store.connection_rooms(&id).await.expect("store").iter().map(|r| r.as_str().to_owned()).collect();
    rooms.sort();
    assert_eq!(rooms, ["calendar", "provider:u-42", "user:u-42"]);

    // $default: the acks are the route responses; what others must see goes through @connections.
    let joined = invoke(
        &mut message,
        &message_event(&json!({"action": "room:join", "id": "j-1", "data": {"room": "topic:lobby"}})),
    )
    .await;
    assert_eq!(body_of(&joined)["ok"], true, "{joined}");
    let arrival = other.next_event("room:userJoined").await;
    assert_eq!(arrival["data"]["userId"], USER, "{arrival}");
    // Presence is visible to those who share a private conversation.
    assert_eq!(other.request("room:join", json!({"room": CHAT})).await["ok"], true);
    let chat = json!({"action": "room:join", "id": "j-2", "data": {"room": CHAT}});
    assert_eq!(body_of(&invoke(&mut message, &message_event(&chat)).await)["ok"], true);
    let subscribed = other.request("presence:subscribe", json!({"userIds": [USER]})).await;
    assert_eq!(subscribed["data"]["subscribed"], json!([USER]), "{subscribed}");
    let sent = invoke(&mut message, &fixture("apigw-message-send")).await;
    let ack = body_of(&sent);
    assert_eq!((&ack["id"], &ack["ok"], &ack["data"]["message"]["seq"]), (&json!("c-2"), &json!(true), &json!(1)));
    let delivered = other.next_event("message:new").await;
    assert_eq!((&delivered["data"]["content"], &delivered["seq"]), (&json!("Running 5 minutes late"), &json!(1)));
    // Reading by message id looks the message up through GSI1.
    let message_id = delivered["data"]["id"].clone();
    let read =
        json!({"action": "message:read", "id": "r-1", "data": {"room": "topic:lobby", "messageIds": [message_id]}});
    let read = body_of(&invoke(&mut message, &message_event(&read)).await);
    assert_eq!((&read["ok"], &read["data"]["seq"]), (&json!(true), &json!(1)), "{read}");
    let hello = body_of(&invoke(&mut message, &fixture("apigw-message")).await);
    assert_eq!((&hello["id"], &hello["ok"]), (&json!("c-1"), &json!(true)), "{hello}");
    // API Gateway answers `ping` itself; one that reaches the function anyway (the route is missing) is refused
    // with a message that says so.
    let stray_ping = body_of(&invoke(&mut message, &message_event(&json!({"action": "ping", "id": "p-1"}))).await);
    assert_eq!((&stray_ping["id"], &stray_ping["error"]["code"]), (&json!("p-1"), &json!("UNKNOWN_ACTION")));
    let malformed = body_of(&invoke(&mut message, &fixture("apigw-message-malformed")).await);
    assert_eq!((&malformed["event"], &malformed["data"]["code"]), (&json!("error"), &json!("INVALID_JSON")));

    // $disconnect: the records go, and the room hears of it.
    let gone = invoke(&mut disconnect, &fixture("apigw-disconnect")).await;
    assert_eq!(gone["statusCode"], 200, "{gone}");
    assert!(stack.store.get_connection(&id).await.expect("store").is_none());
    let departure = other.next_event("room:userLeft").await;
    assert_eq!(departure["data"]["userId"], USER, "{departure}");
    let offline = other.next_event("presence:changed").await;
    assert_eq!((&offline["data"]["userId"], &offline["data"]["online"]), (&json!(USER), &json!(false)), "{offline}");

    // Coming back: the connect function tells the presence subscribers through @connections, and prunes a
    // subscriber whose socket is gone (410) as $disconnect would.
    let stale = ConnectionRecord::for_tests(STALE_CONNECTION, "u-9");
    let presence_room = RoomName::presence_of(&UserId::parse(USER).expect("user id"));
    stack.store.put_connection(&stale, &[presence_room]).await.expect("put a stale subscriber");
    assert_eq!(invoke(&mut connect, &connect_event).await["statusCode"], 200);
    let online = other.next_event("presence:changed").await;
    assert_eq!((&online["data"]["userId"], &online["data"]["online"]), (&json!(USER), &json!(true)), "{online}");
    assert!(stack.store.get_connection(&stale.connection_id).await.expect("store").is_none(), "stale subscriber kept");
    // The connect event carries the client's token in its query string; no function may log it.
    let query_token = connect_event["queryStringParameters"]["token"].as_str().expect("the fixture's token");
    for function in [&authorizer, &connect, &message, &disconnect] {
        assert!(!function.logs().contains(query_token), "{} logged the token:\n{}", function.name(), function.logs());
    }
    stack.assert_permissions();
}

#[tokio::test]
async fn the_connect_binary_refuses_an_origin_outside_the_template_cors_origins() {
    let Some(stack) = Stack::new().await else { return };
    let mut connect = stack.start("connect").await;
    let mut event = fixture("apigw-connect");
    event["headers"]["Origin"] = json!("https://elsewhere.example.org");
    event["multiValueHeaders"]["Origin"] = json!(["https://elsewhere.example.org"]);

    let refused = invoke(&mut connect, &event).await;

    // CorsOrigins is set to the fixtures' origin for these tests, so only a function that reads CORS_ORIGINS
    // refuses this one.
    assert_eq!(refused["statusCode"], 403, "{refused}");
    let id = ConnectionId::parse(CONNECTION).expect("connection id");
    assert!(stack.store.get_connection(&id).await.expect("store").is_none());
}
