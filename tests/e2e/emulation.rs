//! The API Gateway emulation itself, as a client sees it: handshake outcomes, limits, close codes, timeouts and the
//! `@connections` management API (`apigw-websocket.md` §2–§6).

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::helpers::{RECV_TIMEOUT, TestClient, TestHub, spawn_hub, spawn_hub_with};

const QUIET: Duration = Duration::from_millis(300);

/// Connects one client and returns it with its connection id (the only open connection of the hub).
async fn connect_one(hub: &TestHub) -> (TestClient, String) {
    let client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let ids = hub.connection_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    (client, ids[0].clone())
}

fn refused(result: Result<TestClient, WsError>) -> http::Response<Option<Vec<u8>>> {
    match result {
        Err(WsError::Http(response)) => *response,
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got 101"),
    }
}

fn body_json(response: &http::Response<Option<Vec<u8>>>) -> Value {
    serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn connect_without_token_is_rejected_with_401() {
    let hub = spawn_hub().await;

    let response = refused(hub.connect_raw(hub.ws_request(None)).await);

    assert_eq!(response.status(), 401);
    assert_eq!(body_json(&response)["message"], "Unauthorized");
    assert!(hub.connection_ids().is_empty());
}

#[tokio::test]
async fn connect_with_a_bad_token_is_rejected_with_403_in_the_aws_shape() {
    let hub = spawn_hub().await;

    let response = refused(hub.connect("not.a.token").await);

    assert_eq!(response.status(), 403);
    let body = body_json(&response);
    assert_eq!(body["message"], "Forbidden");
    let request_id = body["requestId"].as_str().expect("requestId");
    assert!(body["connectionId"].as_str().is_some_and(|id| id.ends_with("==")), "{body}");
    assert_eq!(response.headers()["x-amz-apigw-id"], request_id);
    assert_eq!(response.headers()["content-type"], "application/json; charset=UTF-8");
}

#[tokio::test]
async fn connect_with_a_valid_token_switches_protocols_without_choosing_a_subprotocol() {
    let hub = spawn_hub().await;

    let client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");

    assert_eq!(client.handshake.status(), 101);
    assert!(client.handshake.headers().get("sec-websocket-protocol").is_none());
    assert_eq!(hub.connection_ids().len(), 1);
}

#[tokio::test]
async fn a_subprotocol_token_with_bellhop_v1_offered_selects_bellhop_v1() {
    let hub = spawn_hub().await;
    let mut request = hub.ws_request(None);
    let offered = format!("bellhop.v1, bearer.{}", hub.token("u1", "customer"));
    request.headers_mut().insert("sec-websocket-protocol", offered.parse().expect("header"));

    let client = hub.connect_raw(request).await.expect("connect");

    assert_eq!(client.handshake.status(), 101);
    assert_eq!(client.handshake.headers()["sec-websocket-protocol"], "bellhop.v1");
}

#[tokio::test]
async fn a_plain_get_to_the_websocket_url_answers_426() {
    let hub = spawn_hub().await;

    let response = hub.http().get(format!("{}/local", hub.http_url)).send().await.expect("get");

    assert_eq!(response.status(), 426);
}

#[tokio::test]
async fn the_stage_url_with_a_trailing_slash_also_upgrades() {
    let hub = spawn_hub().await;
    let url = format!("{}/?token={}", hub.ws_url, hub.token("u1", "customer"));

    let (_socket, response) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("connect");

    assert_eq!(response.status(), 101);
}

#[tokio::test]
async fn two_connections_get_distinct_well_formed_ids() {
    let hub = spawn_hub().await;
    let _a = hub.connect(&hub.token("u1", "customer")).await.expect("connect a");
    let _b = hub.connect(&hub.token("u1", "customer")).await.expect("connect b");

    let ids = hub.connection_ids();

    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(id.len(), 18, "{id}");
        assert!(id.ends_with("=="), "{id}");
    }
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003_and_fires_disconnect() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;

    client.send_message(Message::binary(vec![1, 2, 3])).await.expect("send binary");

    let close = client.wait_closed(RECV_TIMEOUT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1003);
    assert_eq!(close.reason.as_str(), "Binary is not supported");
    hub.wait_until_disconnected(&id).await;
}

#[tokio::test]
async fn a_frame_over_32_kib_closes_with_1009() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;

    let _ = client.send_message(Message::text("x".repeat(32 * 1024 + 1))).await;

    let close = client.wait_closed(RECV_TIMEOUT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1009);
    hub.wait_until_disconnected(&id).await;
}

#[tokio::test]
async fn a_message_over_128_kib_in_small_frames_closes_with_1009() {
    let hub = spawn_hub().await;
    let (mut client, _id) = connect_one(&hub).await;
    let chunk = "y".repeat(16 * 1024);

    // Nine 16 KiB fragments: every frame is within the 32 KiB limit, the message (144 KiB) is not.
    for i in 0..9 {
        let opcode = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        let frame = Frame::message(chunk.clone(), opcode, i == 8);
        if client.send_message(Message::Frame(frame)).await.is_err() {
            break;
        }
    }

    let close = client.wait_closed(RECV_TIMEOUT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1009);
}

#[tokio::test]
async fn a_client_close_is_echoed_with_its_code_and_reason_and_fires_disconnect() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;

    let echo = client.close_with(1000, "bye").await.expect("echoed close");

    assert_eq!(u16::from(echo.code), 1000);
    assert_eq!(echo.reason.as_str(), "bye");
    hub.wait_until_disconnected(&id).await;
    assert!(hub.connection_ids().is_empty());
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_1001_after_the_idle_timeout() {
    let hub = spawn_hub_with(|options| options.idle_timeout = Duration::from_secs(1)).await;
    let (mut client, id) = connect_one(&hub).await;

    let close = client.wait_closed(Duration::from_secs(4)).await.expect("server close");

    assert_eq!(u16::from(close.code), 1001);
    hub.wait_until_disconnected(&id).await;
}

#[tokio::test]
async fn pings_do_not_keep_an_idle_connection_open() {
    let hub = spawn_hub_with(|options| options.idle_timeout = Duration::from_secs(1)).await;
    let (mut client, _id) = connect_one(&hub).await;

    for _ in 0..3 {
        let _ = client.send_message(Message::Ping(vec![1].into())).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let close = client.wait_closed(Duration::from_secs(3)).await.expect("server close");
    assert_eq!(u16::from(close.code), 1001);
}

#[tokio::test]
async fn heartbeat_frames_keep_a_connection_open_past_the_idle_timeout() {
    let hub = spawn_hub_with(|options| options.idle_timeout = Duration::from_secs(2)).await;
    let (mut client, _id) = connect_one(&hub).await;

    // Three idle timeouts' worth of heartbeats: each ping and its pong are data frames, answered by the gateway.
    for _ in 0..20 {
        assert_eq!(client.ping().await["type"], "pong");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    assert!(!client.is_closed());
    let close = client.wait_closed(Duration::from_secs(5)).await.expect("closed once the heartbeat stops");
    assert_eq!(u16::from(close.code), 1001);
}

#[tokio::test]
async fn the_maximum_lifetime_closes_even_an_active_connection() {
    let hub = spawn_hub_with(|options| options.max_lifetime = Duration::from_secs(1)).await;
    let (mut client, _id) = connect_one(&hub).await;
    for _ in 0..3 {
        client.send_text("keep-alive").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let close = client.wait_closed(Duration::from_secs(3)).await.expect("server close");

    assert_eq!(u16::from(close.code), 1001);
}

#[tokio::test]
async fn any_message_gets_its_route_response_back_as_one_text_frame() {
    let hub = spawn_hub().await;
    let (mut client, _id) = connect_one(&hub).await;

    client.send_json(json!({"action": "hello", "id": "h1"})).await;

    // The message handler decides the content; the emulation only guarantees the body comes back.
    let frame = client.recv_json_within(RECV_TIMEOUT).await.expect("route response");
    assert!(frame.is_object(), "{frame}");
}

#[tokio::test]
async fn post_to_connection_delivers_the_body_as_one_text_message() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;

    let response = hub.post_to_connection(&id, r#"{"type":"event","event":"x","data":{}}"#).await;

    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-amzn-requestid"));
    let text = client.recv_text_within(RECV_TIMEOUT).await.expect("delivered");
    assert!(text.contains(r#""event":"x""#), "{text}");
}

#[tokio::test]
async fn the_unencoded_at_sign_path_works_too() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;

    let url = format!("{}/@connections/{id}", hub.management_url);
    let response = hub.management("POST", &url, "plain".into(), &hub.credentials).await;

    assert_eq!(response.status(), 200);
    assert_eq!(client.recv_text_within(RECV_TIMEOUT).await.as_deref(), Some("plain"));
}

#[tokio::test]
async fn the_percent_encoded_at_sign_path_works_too() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;

    let url = format!("{}/%40connections/{}", hub.management_url, crate::helpers::percent_encode_id(&id));
    let response = hub.management("POST", &url, "encoded".into(), &hub.credentials).await;

    assert_eq!(response.status(), 200);
    assert_eq!(client.recv_text_within(RECV_TIMEOUT).await.as_deref(), Some("encoded"));
}

#[tokio::test]
async fn posting_to_an_unknown_id_answers_410_gone_every_time() {
    let hub = spawn_hub().await;

    for _ in 0..2 {
        let response = hub.post_to_connection("AAAAAAAAAAAAAAAA==", "x").await;
        assert_eq!(response.status(), 410);
        assert_eq!(response.headers()["x-amzn-errortype"], "GoneException");
        assert!(response.headers().contains_key("x-amzn-requestid"));
    }
}

#[tokio::test]
async fn a_malformed_connection_id_answers_400() {
    let hub = spawn_hub().await;

    for id in ["not-an-id", "AAAAAAAAAAAAAAA!=="] {
        let response = hub.post_to_connection(id, "x").await;
        assert_eq!(response.status(), 400, "{id}");
    }
}

#[tokio::test]
async fn an_oversize_post_answers_413_and_the_socket_survives() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;

    let response = hub.post_to_connection(&id, "z".repeat(131_073)).await;

    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["x-amzn-errortype"], "PayloadTooLargeException");
    let body: Value = response.json().await.expect("json body");
    assert!(body["message"].is_string(), "{body}");
    client.expect_silence(QUIET).await;
    assert!(!client.is_closed());
    assert_eq!(hub.post_to_connection(&id, "still here").await.status(), 200);
    assert_eq!(client.recv_text_within(RECV_TIMEOUT).await.as_deref(), Some("still here"));
}

#[tokio::test]
async fn a_maximum_size_post_arrives_whole_through_fragmented_frames() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;
    let payload = "m".repeat(131_072);

    let response = hub.post_to_connection(&id, payload.clone()).await;

    assert_eq!(response.status(), 200);
    let text = client.recv_text_within(RECV_TIMEOUT).await.expect("delivered");
    assert_eq!(text.len(), payload.len());
}

#[tokio::test]
async fn get_connection_reports_rfc3339_timestamps_and_identity() {
    let hub = spawn_hub().await;
    let mut request = hub.ws_request(Some(&format!("token={}", hub.token("u1", "customer"))));
    request.headers_mut().insert("user-agent", "emulation-test".parse().expect("header"));
    let _client = hub.connect_raw(request).await.expect("connect");
    let id = hub.connection_ids().pop().expect("one connection");

    let response = hub.get_connection(&id).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let connected = chrono::DateTime::parse_from_rfc3339(body["connectedAt"].as_str().expect("connectedAt"))
        .expect("rfc3339 connectedAt");
    let active = chrono::DateTime::parse_from_rfc3339(body["lastActiveAt"].as_str().expect("lastActiveAt"))
        .expect("rfc3339 lastActiveAt");
    assert!(active >= connected);
    assert!(body["connectedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    assert_eq!(body["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(body["identity"]["userAgent"], "emulation-test");
}

#[tokio::test]
async fn delete_connection_closes_with_1000_and_fires_disconnect() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;

    let response = hub.delete_connection(&id).await;

    assert_eq!(response.status(), 204);
    let close = client.wait_closed(RECV_TIMEOUT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1000);
    hub.wait_until_disconnected(&id).await;
    assert_eq!(hub.post_to_connection(&id, "late").await.status(), 410);
    assert_eq!(hub.delete_connection(&id).await.status(), 410);
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_1001_and_runs_disconnect() {
    let hub = spawn_hub().await;
    let (mut client, id) = connect_one(&hub).await;
    let deps = hub.harness.deps.clone();

    hub.harness.shutdown().await;

    let close = client.wait_closed(RECV_TIMEOUT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1001);
    let id = shared::ids::ConnectionId::parse(id).expect("id");
    assert!(deps.store.get_connection(&id).await.expect("store").is_none());
}
