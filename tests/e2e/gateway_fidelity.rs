//! What API Gateway enforces and the harness now enforces the same way: sizes (route responses, connect URLs,
//! authorizer results), independent invocation of each frame, the stage's route throttling, SigV4 on
//! `@connections`, binary posts, invalid frames, integration timeouts, and tokens kept out of logs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use local::{PusherChoice, StoreChoice, Throttling};
use serde_json::{Value, json};
use shared::gateway::{
    MAX_AUTHORIZER_RESULT_BYTES, MAX_CONNECT_URL_BYTES, MAX_MESSAGE_BYTES, STAGE_THROTTLING_BURST,
    STAGE_THROTTLING_RATE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

use crate::helpers::{RECV_TIMEOUT, TestClient, TestHub, spawn_hub, spawn_hub_with};

fn refusal_status(result: Result<TestClient, WsError>) -> (u16, Value) {
    match result {
        Err(WsError::Http(response)) => {
            let body = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got 101"),
    }
}

/// Thrown-away throttling that never refills within a test: `burst` requests, then refusals.
fn burst_only(burst: u32) -> Option<Throttling> {
    Some(Throttling { burst, rate: 0.001 })
}

// ---- sizes -------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_history_page_that_would_outgrow_a_websocket_message_is_cut_and_still_delivered() {
    // The harness replaces a route response over 128 KiB with API Gateway's error frame (unit-tested in
    // local::gateway::session); the product must never produce one, so this asks for one and gets a cut page.
    let hub = spawn_hub_with(|options| options.config.limits.max_content_chars = 20_000).await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    assert_eq!(client.request("room:join", json!({"room": "topic:big"})).await["ok"], true);
    for n in 0..8 {
        let ack = client
            .request("message:send", json!({"room": "topic:big", "content": format!("{n}{}", "x".repeat(19_000))}))
            .await;
        assert_eq!(ack["ok"], true, "send {n}");
    }

    // Eight messages of 19 KB would make a page of about 155 KB, over API Gateway's 128 KB message limit.
    let page = client.request("message:history", json!({"room": "topic:big", "limit": 8})).await;

    assert_eq!(page["ok"], true, "the answer arrives");
    assert!(page.to_string().len() <= MAX_MESSAGE_BYTES, "{} bytes", page.to_string().len());
    assert_eq!(page["data"]["hasMore"], true);
    assert_eq!(page["data"]["events"].as_array().and_then(|e| e.last()).map(|e| e["seq"].clone()), Some(json!(8)));
}

#[tokio::test]
async fn a_route_response_over_128_kib_never_reaches_the_client_and_a_gateway_error_does() {
    // The product bounds its answers by construction; a deployment that raises the room limit can still make a
    // `hello` list more than 128 KB of rooms, which API Gateway would never deliver. The rule under test is the
    // harness's, whatever the store, so this hub keeps its 1,300 joins in memory.
    let hub = spawn_hub_with(|options| {
        options.store = StoreChoice::Memory;
        options.pusher = PusherChoice::InProcess;
        options.config.limits.max_rooms_per_connection = 2000;
        options.config.limits.inbound_per_second = 0;
        options.throttling = None;
    })
    .await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let rooms: Vec<String> = (0..1300).map(|n| format!("topic:{n:05}-{}", "r".repeat(120))).collect();
    for (n, room) in rooms.iter().enumerate() {
        client.send_json(json!({"action": "room:join", "id": format!("j{n}"), "data": {"room": room}})).await;
    }
    for _ in 0..rooms.len() {
        let ack = client.recv_json_within(Duration::from_secs(30)).await.expect("every join is answered");
        assert_eq!(ack["ok"], true, "{ack}");
    }

    client.send_json(json!({"action": "hello", "id": "big", "data": {}})).await;

    let frame = client.recv_json_within(RECV_TIMEOUT).await.expect("an answer");
    let shown: String = frame.to_string().chars().take(200).collect();
    assert_eq!(frame["message"], "Internal server error", "{shown}");
    assert!(frame["requestId"].is_string() && frame["connectionId"].is_string(), "{frame}");
    assert_eq!(client.ping().await["type"], "pong", "the socket stays open");
}

#[tokio::test]
async fn a_connect_url_over_4096_bytes_is_refused_with_414_and_one_at_the_limit_connects() {
    let hub = spawn_hub().await;
    let token = hub.token("u1", "customer");
    let base = format!("/local?token={token}&pad=");
    let path_len = |pad: usize| base.len() + pad;
    let at_limit = MAX_CONNECT_URL_BYTES - base.len();

    let over = hub.connect_raw(hub.ws_request(Some(&format!("token={token}&pad={}", "p".repeat(at_limit + 1))))).await;
    let (status, body) = refusal_status(over);
    assert_eq!((status, path_len(at_limit + 1)), (414, MAX_CONNECT_URL_BYTES + 1), "{body}");
    assert!(hub.connection_ids().is_empty());

    let exact = hub.connect_raw(hub.ws_request(Some(&format!("token={token}&pad={}", "p".repeat(at_limit))))).await;
    assert_eq!(exact.expect("a URL of exactly 4096 bytes connects").handshake.status(), 101);
}

#[tokio::test]
async fn an_authorizer_result_over_8_kib_fails_the_connect_with_500() {
    let hub = spawn_hub().await;
    let mut claims = TestHub::claims("u1");
    claims.role = Some("customer".into());
    // Rooms travel in the authorizer's context: 600 of them make well over 8 KB.
    let rooms: Vec<String> = (0..600).map(|n| format!("topic:room-{n:05}")).collect();
    assert!(rooms.join(",").len() > MAX_AUTHORIZER_RESULT_BYTES, "the arrangement must cross the limit");
    claims.rooms = Some(rooms);
    let mut request = hub.ws_request(None);
    let bearer = format!("Bearer {}", hub.token_with(&claims));
    request.headers_mut().insert("authorization", bearer.parse().expect("header"));

    let (status, body) = refusal_status(hub.connect_raw(request).await);

    assert_eq!(status, 500, "{body}");
    assert_eq!(body["message"], "Internal server error");
    assert!(hub.connection_ids().is_empty());
}

// ---- concurrency and order ---------------------------------------------------------------------------------------

/// Two members of `topic:slow`, on a hub whose `@connections` answers only after `delay`, reached through the SDK
/// pusher: every `message:send` then spends `delay` (or the SDK's 5 s attempt timeout) in its fan-out.
async fn slow_fan_out_hub(delay: Duration, strict_order: bool) -> (TestHub, TestClient, TestClient) {
    let hub = spawn_hub_with(|options| {
        options.pusher = PusherChoice::Sdk;
        options.strict_order = strict_order;
    })
    .await;
    let mut sender = hub.connect(&hub.token("alice", "customer")).await.expect("connect alice");
    let mut member = hub.connect(&hub.token("bob", "customer")).await.expect("connect bob");
    for client in [&mut sender, &mut member] {
        assert_eq!(client.request("room:join", json!({"room": "topic:slow"})).await["ok"], true);
    }
    hub.harness.set_management_delay(delay);
    (hub, sender, member)
}

/// The ids of the next `n` acks, in the order they arrive.
async fn ack_order(client: &mut TestClient, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let frame = client.recv_json_within(Duration::from_secs(20)).await.expect("an ack");
        if frame["type"] == "ack" {
            ids.push(frame["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    ids
}

#[tokio::test]
async fn a_connections_messages_run_concurrently_so_a_quick_ack_overtakes_a_slow_one() {
    // The delay outlasts the SDK's attempt timeout: the send's fan-out is stuck for seconds (its retries included),
    // the hello is not.
    let (_hub, mut sender, _member) = slow_fan_out_hub(Duration::from_secs(60), false).await;

    sender
        .send_json(json!({"action": "message:send", "id": "slow", "data": {"room": "topic:slow", "content": "hi"}}))
        .await;
    sender.send_json(json!({"action": "hello", "id": "quick"})).await;

    // The slow ack comes once the SDK gives up on its posts; the quick one must not wait for it.
    assert_eq!(ack_order(&mut sender, 1).await, ["quick"]);
}

#[tokio::test]
async fn strict_order_answers_a_connections_messages_in_the_order_they_were_sent() {
    let (_hub, mut sender, _member) = slow_fan_out_hub(Duration::from_millis(300), true).await;

    sender
        .send_json(json!({"action": "message:send", "id": "slow", "data": {"room": "topic:slow", "content": "hi"}}))
        .await;
    sender.send_json(json!({"action": "hello", "id": "quick"})).await;

    assert_eq!(ack_order(&mut sender, 2).await, ["slow", "quick"]);
}

#[tokio::test]
async fn concurrent_sends_from_one_connection_get_gapless_distinct_seqs() {
    // The hub's own per-connection rate limit is lifted: this is about concurrent invocation, not abuse.
    let hub = spawn_hub_with(|options| options.config.limits.inbound_per_second = 0).await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    assert_eq!(client.request("room:join", json!({"room": "topic:burst"})).await["ok"], true);
    const N: u64 = 40;

    for n in 0..N {
        let frame = json!({"action": "message:send", "id": format!("m{n}"), "data": {"room": "topic:burst", "content": format!("m{n}")}});
        client.send_json(frame).await;
    }
    let mut seqs = Vec::new();
    let mut ids = HashSet::new();
    while seqs.len() < N as usize {
        let frame = client.recv_json_within(RECV_TIMEOUT).await.expect("every send is answered");
        if frame["type"] == "ack" {
            assert_eq!(frame["ok"], true, "{frame}");
            assert!(ids.insert(frame["id"].to_string()), "one ack per request: {frame}");
            seqs.push(frame["data"]["message"]["seq"].as_u64().expect("seq"));
        }
    }

    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
}

// ---- throttling --------------------------------------------------------------------------------------------------

#[tokio::test]
async fn connects_beyond_the_stage_burst_are_refused_with_429() {
    let hub = spawn_hub_with(|options| options.throttling = burst_only(2)).await;
    let token = hub.token("u1", "customer");
    let _a = hub.connect(&token).await.expect("first");
    let _b = hub.connect(&token).await.expect("second");

    let (status, body) = refusal_status(hub.connect(&token).await);

    assert_eq!(status, 429);
    assert_eq!(body["message"], "Too Many Requests");
    assert_eq!(hub.connection_ids().len(), 2);
}

#[tokio::test]
async fn messages_beyond_the_stage_burst_are_answered_too_many_requests_and_the_socket_stays_open() {
    let hub = spawn_hub_with(|options| options.throttling = burst_only(3)).await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");

    for n in 0..5 {
        client.send_json(json!({"action": "hello", "id": format!("h{n}")})).await;
    }
    let mut acks = 0;
    let mut throttled = 0;
    for _ in 0..5 {
        let frame = client.recv_json_within(RECV_TIMEOUT).await.expect("every message is answered");
        if frame["type"] == "ack" {
            acks += 1;
        } else {
            assert_eq!(frame["message"], "Too Many Requests", "{frame}");
            assert!(frame["requestId"].is_string() && frame["connectionId"].is_string(), "{frame}");
            throttled += 1;
        }
    }

    assert_eq!((acks, throttled), (3, 2));
    assert!(!client.is_closed());
}

#[tokio::test]
async fn the_ping_route_is_throttled_with_its_own_bucket_like_any_route() {
    let hub = spawn_hub_with(|options| options.throttling = burst_only(3)).await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");

    for _ in 0..4 {
        client.send_json(json!({"action": "ping"})).await;
    }
    let mut answers = Vec::new();
    for _ in 0..4 {
        let frame = client.recv_json_within(RECV_TIMEOUT).await.expect("every ping is answered");
        answers.push(if frame["type"] == "pong" { "pong".to_owned() } else { frame["message"].to_string() });
    }
    answers.sort();

    assert_eq!(answers, ["\"Too Many Requests\"", "pong", "pong", "pong"]);
    // `$default` has a bucket of its own, untouched by the pings.
    assert_eq!(client.request("hello", json!({})).await["ok"], true);
}

#[tokio::test]
async fn without_throttling_a_burst_beyond_the_stage_limit_goes_through() {
    let hub = spawn_hub_with(|options| {
        options.throttling = None;
        options.config.limits.inbound_per_second = 0;
    })
    .await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let n = STAGE_THROTTLING_BURST as usize + 50;

    for i in 0..n {
        client.send_json(json!({"action": "hello", "id": format!("h{i}")})).await;
    }
    let mut acks = 0;
    while acks < n {
        let frame = client.recv_json_within(Duration::from_secs(20)).await.expect("every hello is answered");
        assert_eq!(frame["type"], "ack", "{frame}");
        acks += 1;
    }
}

#[test]
fn the_harness_throttles_with_the_values_template_yaml_deploys() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let template: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("read template.yaml")).expect("parse template.yaml");
    let default = |name: &str| template["Parameters"][name]["Default"].as_u64();

    assert_eq!(default("ThrottlingBurstLimit"), Some(u64::from(STAGE_THROTTLING_BURST)));
    assert_eq!(default("ThrottlingRateLimit"), Some(u64::from(STAGE_THROTTLING_RATE)));
    let defaults = Throttling::stage_defaults();
    assert_eq!((defaults.burst, defaults.rate), (STAGE_THROTTLING_BURST, f64::from(STAGE_THROTTLING_RATE)));
}

// ---- SigV4 on @connections ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unsigned_post_to_connection_is_refused_with_403_forbidden_and_delivers_nothing() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let id = client.connection_id().await;

    let response = hub.http().post(hub.connection_url(&id)).body("unsigned").send().await.expect("post");

    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-amzn-errortype"], "ForbiddenException");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["message"], "Missing Authentication Token");
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_secret_is_refused_with_403() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let id = client.connection_id().await;
    let mut wrong = hub.credentials.clone();
    wrong.secret_access_key = "not-the-secret".to_owned().into();

    let post = hub.management("POST", &hub.connection_url(&id), "x".into(), &wrong).await;
    let delete = hub.management("DELETE", &hub.connection_url(&id), Bytes::new(), &wrong).await;

    for response in [post, delete] {
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()["x-amzn-errortype"], "ForbiddenException");
    }
    assert_eq!(client.ping().await["type"], "pong", "the connection is untouched");
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_signed_request_to_another_stage_or_without_a_stage_is_refused_with_403() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let id = crate::helpers::percent_encode_id(&client.connection_id().await);

    for url in [format!("{}/prod/@connections/{id}", hub.http_url), format!("{}/@connections/{id}", hub.http_url)] {
        let response = hub.management("POST", &url, "x".into(), &hub.credentials).await;
        assert_eq!(response.status(), 403, "{url}");
        assert_eq!(response.headers()["x-amzn-errortype"], "ForbiddenException", "{url}");
    }
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn boto3_signs_post_to_connection_the_way_the_harness_verifies() {
    let Some(python) = python_with_boto3().await else { return };
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let id = client.connection_id().await;
    let script = r#"
import sys, boto3
endpoint, region, key, secret, connection = sys.argv[1:6]
client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, region_name=region,
                      aws_access_key_id=key, aws_secret_access_key=secret)
client.post_to_connection(ConnectionId=connection, Data=b"from boto3")
info = client.get_connection(ConnectionId=connection)
print(info["Identity"]["SourceIp"])
"#;
    use secrecy::ExposeSecret;
    let credentials = &hub.credentials;

    let output = tokio::process::Command::new(&python)
        .args(["-c", script, &hub.management_url, &credentials.region, &credentials.access_key_id])
        .arg(credentials.secret_access_key.expose_secret())
        .arg(&id)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.expect("boto3 in time").expect("run");

    assert!(output.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "127.0.0.1");
    assert_eq!(client.recv_text_within(RECV_TIMEOUT).await.as_deref(), Some("from boto3"));
}

/// A Python that can import boto3: `BOTO3_PYTHON` (which `scripts/test.sh` points at `.venv`, where boto3 is
/// installed) or `python3`. Without one the test is skipped loudly, or fails with `TEST_INTEGRATION=1`.
async fn python_with_boto3() -> Option<String> {
    let python = std::env::var("BOTO3_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = tokio::process::Command::new(&python).args(["-c", "import boto3"]).output().await;
    if probe.is_ok_and(|output| output.status.success()) {
        return Some(python);
    }
    assert!(
        std::env::var("TEST_INTEGRATION").as_deref() != Ok("1"),
        "TEST_INTEGRATION=1 but python3 cannot import boto3: run scripts/test.sh, which installs it"
    );
    eprintln!("SKIPPED: boto3 is not installed (pip install boto3, or run scripts/test.sh)");
    None
}

// ---- binary posts and odd frames ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_post_that_is_not_utf8_arrives_byte_for_byte_as_a_binary_message() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let id = client.connection_id().await;
    let data = Bytes::from_static(&[0xff, 0x00, 0xfe, b'a', 0x80]);

    let response = hub.post_to_connection(&id, data.clone()).await;

    assert_eq!(response.status(), 200);
    match client.read_message(RECV_TIMEOUT).await {
        Some(Message::Binary(received)) => assert_eq!(received, data),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_large_binary_post_arrives_whole_through_binary_continuation_frames() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let id = client.connection_id().await;
    let data = Bytes::from((0..100_000u32).map(|n| (n % 251) as u8 | 0x80).collect::<Vec<u8>>());

    assert_eq!(hub.post_to_connection(&id, data.clone()).await.status(), 200);

    match client.read_message(RECV_TIMEOUT).await {
        Some(Message::Binary(received)) => assert_eq!(received, data),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007_and_fires_disconnect() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let id = client.connection_id().await;

    let frame = Frame::message(Bytes::from_static(&[0xc3, 0x28]), OpCode::Data(Data::Text), true);
    client.send_message(Message::Frame(frame)).await.expect("send");

    let close = client.wait_closed(RECV_TIMEOUT).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1007);
    hub.wait_until_disconnected(&id).await;
}

#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    let hub = spawn_hub().await;
    let (mut stream, leftover) = raw_handshake(&hub).await;

    // FIN + text, no mask bit: a client must mask every frame (RFC 6455 §5.1).
    stream.write_all(&[0x81, 0x02, b'h', b'i']).await.expect("write");

    let close = read_close_code(&mut stream, leftover).await;
    assert_eq!(close, Some(1002));
}

/// A WebSocket handshake by hand over TCP, for frames no client library will send. Returns the stream and any
/// bytes read past the 101 response.
async fn raw_handshake(hub: &TestHub) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(hub.harness.addr).await.expect("tcp connect");
    let request = format!(
        "GET /local?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        hub.token("u1", "customer"),
        hub.harness.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write handshake");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    let end = loop {
        let n = tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut buffer)).await.expect("101 in time").expect("read");
        assert!(n > 0, "connection closed during the handshake");
        received.extend_from_slice(&buffer[..n]);
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(received.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&received));
    (stream, received[end..].to_vec())
}

/// Reads server frames until a close frame, answering its status code (`None` if the socket ends without one).
async fn read_close_code(stream: &mut TcpStream, mut received: Vec<u8>) -> Option<u16> {
    let mut buffer = [0u8; 4096];
    loop {
        // Server frames are unmasked: opcode, 7-bit length (close frames are short), payload.
        while received.len() >= 2 {
            let len = usize::from(received[1] & 0x7f);
            assert!(len < 126, "unexpected long frame from the server");
            if received.len() < 2 + len {
                break;
            }
            if received[0] & 0x0f == 0x8 {
                return (len >= 2).then(|| u16::from_be_bytes([received[2], received[3]]));
            }
            received.drain(..2 + len);
        }
        let n = tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut buffer)).await.expect("a frame in time").ok()?;
        if n == 0 {
            return None;
        }
        received.extend_from_slice(&buffer[..n]);
    }
}

// ---- integration timeouts ----------------------------------------------------------------------------------------

#[tokio::test]
async fn a_connect_whose_integration_outlives_the_timeout_is_refused_with_504() {
    // A DynamoDB endpoint that accepts connections and never answers: `$connect` hangs on its first write.
    let black_hole = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", black_hole.local_addr().expect("addr"));
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let _accepting = tokio::spawn(async move {
        while let Ok((socket, _)) = black_hole.accept().await {
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
        }
    });
    let store = shared::store::dynamo::DynamoStore::from_config("bellhop-black-hole", Some(&endpoint)).await;
    let hub = spawn_hub_with(|options| {
        options.store = StoreChoice::Custom(Arc::new(store));
        options.integration_timeout = Duration::from_millis(300);
    })
    .await;

    let (status, body) = refusal_status(hub.connect(&hub.token("u1", "customer")).await);

    assert_eq!(status, 504, "{body}");
    assert_eq!(body["message"], "Endpoint request timed out");
    assert!(hub.connection_ids().is_empty());
}

// ---- logs --------------------------------------------------------------------------------------------------------

/// Collects every log line written while it is the thread's default subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_a_log_line_even_under_percent_encoded_names() {
    // The test runtime is single-threaded, so the harness's tasks log through this thread's subscriber.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let hub = spawn_hub().await;
    // Other tests, on other threads, hit the same log sites for the first time while this subscriber registers: a
    // site whose registration straddled it keeps the interest it computed without this subscriber (none), and its
    // lines would be missing here. Recomputing every site's interest now, with this subscriber in place, closes
    // that race.
    tracing::callsite::rebuild_interest_cache();
    let token = hub.token("u1", "customer");

    let mut client = hub.connect_raw(hub.ws_request(Some(&format!("tok%65n={token}")))).await.expect("connect");
    client.close().await;
    let health = hub.http().get(format!("{}/health?token={token}&t%6Fken={token}", hub.http_url)).send().await;
    assert!(health.expect("health").status().is_success());
    drop(hub);

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(logs.contains("REDACTED"), "the request lines were logged: {logs}");
    let signature = token.rsplit('.').next().expect("a signature part");
    let leaks: Vec<String> = logs
        .lines()
        .filter(|line| line.contains(signature))
        .map(|line| line.replace(signature, "<SIGNATURE>"))
        .collect();
    assert!(leaks.is_empty(), "a token reached the log: {leaks:#?}");
}
