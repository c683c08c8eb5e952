//! The real Management API adapter (`aws-sdk-apigatewaymanagement`) against the harness's `@connections`: typed
//! Gone and PayloadTooLarge, GetConnection timestamps the SDK parses, DELETE closing with 1000 and firing
//! `$disconnect`, stale connections pruned from the store; and the fan-out time to 1,000 sockets through each
//! pusher, printed (run with `--nocapture` to see it), never asserted.

use std::time::{Duration, Instant};

use futures::StreamExt;
use local::{PusherChoice, StoreChoice};
use serde_json::{Value, json};
use shared::ids::ConnectionId;
use shared::push::apigw::ApiGatewayPusher;
use shared::push::{MAX_PAYLOAD_BYTES, PushError, Pusher};
use shared::rooms::RoomName;
use shared::store::ConnectionRecord;
use tokio_tungstenite::tungstenite::Bytes;

use crate::helpers::{TestClient, TestHub, spawn_hub, spawn_hub_with};

const FAN_OUT_SOCKETS: usize = 1000;
const FAN_OUT_RUNS: usize = 3;
/// Liveness guard only: a loaded 2-core machine may be slow, and the figures are printed, not asserted.
const FAN_OUT_GUARD: std::time::Duration = std::time::Duration::from_secs(60);

fn id(raw: &str) -> ConnectionId {
    ConnectionId::parse(raw).expect("connection id")
}

/// An emit that must succeed; answers its delivery report.
async fn emit(hub: &TestHub, body: Value) -> Value {
    let (status, report) = hub.emit(body).await;
    assert!(status.is_success(), "emit: {status} {report}");
    report
}

#[tokio::test]
async fn the_sdk_pusher_delivers_through_the_harness_and_gets_typed_errors() {
    let hub = spawn_hub().await;
    let pusher = ApiGatewayPusher::for_endpoint(&hub.management_url).await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let connection = id(&client.connection_id().await);

    pusher.post(&connection, Bytes::from_static(br#"{"type":"event","event":"hi","data":{}}"#)).await.expect("post");
    assert_eq!(client.next_event("hi").await["event"], "hi");

    let too_large = pusher.post(&connection, Bytes::from(vec![b'x'; MAX_PAYLOAD_BYTES + 1])).await;
    assert!(matches!(too_large, Err(PushError::PayloadTooLarge)), "{too_large:?}");
    let still_open = client.ping().await;
    assert_eq!(still_open["type"], "pong", "the socket survives a refused oversize post");

    let info = pusher.client().get_connection().connection_id(connection.as_str()).send().await.expect("get");
    let connected_at = info.connected_at().expect("connectedAt parsed by the SDK");
    let last_active = info.last_active_at().expect("lastActiveAt parsed by the SDK");
    assert!(last_active.secs() >= connected_at.secs());
    let now = chrono::Utc::now().timestamp();
    assert!((now - connected_at.secs()).abs() < 60, "connectedAt is recent: {connected_at}");

    pusher.disconnect(&connection).await.expect("delete");
    let close = client.wait_closed(Duration::from_secs(5)).await;
    assert_eq!(close.map(|frame| u16::from(frame.code)), Some(1000));
    hub.wait_until_disconnected(connection.as_str()).await;

    let gone = pusher.post(&connection, Bytes::from_static(b"{}")).await;
    assert!(matches!(gone, Err(PushError::Gone)), "{gone:?}");
    let gone = pusher.disconnect(&connection).await;
    assert!(matches!(gone, Err(PushError::Gone)), "{gone:?}");
}

#[tokio::test]
async fn with_the_sdk_pusher_emits_reach_sockets_and_stale_connections_are_pruned_from_the_store() {
    let hub = spawn_hub_with(|options| options.pusher = PusherChoice::Sdk).await;
    let mut live = hub.connect(&hub.token("prov-1", "provider")).await.expect("connect");
    // A record whose socket is gone without a `$disconnect`: exactly what API Gateway leaves behind at times.
    let stale = id("c3RhbGVzdGFsZXN0YWw=");
    let record =
        ConnectionRecord { role: Some("provider".to_owned()), ..ConnectionRecord::for_tests(stale.as_str(), "prov-2") };
    let calendar = RoomName::parse("calendar").expect("room");
    hub.harness.deps.store.put_connection(&record, &[calendar]).await.expect("put stale connection");

    let report = emit(&hub, json!({"event": "appointment:created", "data": {"id": 1}, "rooms": ["calendar"]})).await;

    assert_eq!(report["recipients"], 2, "{report}");
    assert_eq!(report["delivered"], 1, "{report}");
    assert_eq!(report["pruned"], 1, "{report}");
    assert_eq!(live.next_event("appointment:created").await["room"], "calendar");
    assert_eq!(hub.harness.deps.store.get_connection(&stale).await.expect("store read"), None);
}

#[tokio::test]
async fn fan_out_to_a_thousand_sockets_is_measured_for_each_pusher() {
    let mut lines = Vec::new();
    for (name, choice) in [("in-process", PusherChoice::InProcess), ("sdk", PusherChoice::Sdk)] {
        // This compares pushers, so the store stays in-memory SQLite in every pass of the suite: 2,000 handshakes
        // against DynamoDB Local would measure the store instead (its request costs are in the `dynamo_costs` bench).
        let hub = spawn_hub_with(|options| {
            options.pusher = choice;
            options.store = StoreChoice::Memory;
        })
        .await;
        let mut clients = connect_many(&hub, FAN_OUT_SOCKETS).await;
        let mut runs = Vec::with_capacity(FAN_OUT_RUNS);
        for run in 0..FAN_OUT_RUNS {
            let event = format!("calendar.sync.{run}");
            let start = Instant::now();
            let post = emit(&hub, json!({"event": event, "data": {"run": run}, "rooms": ["calendar"]}));
            let receive = futures::future::join_all(clients.iter_mut().map(|client| {
                let event = event.clone();
                async move {
                    client.next_event_within(&event, FAN_OUT_GUARD).await;
                    start.elapsed()
                }
            }));
            let (report, arrivals) = tokio::join!(post, receive);
            assert_eq!(report["delivered"], FAN_OUT_SOCKETS, "{report}");
            runs.push(arrivals.into_iter().max().unwrap_or_default());
        }
        runs.sort();
        lines.push(format!(
            "fan-out to {FAN_OUT_SOCKETS} sockets, {name} pusher: median {:?} over {FAN_OUT_RUNS} runs (all: {runs:?})",
            runs[runs.len() / 2]
        ));
    }
    for line in lines {
        println!("{line}");
    }
}

/// Connects `n` admin sockets (auto-joined to `calendar`), a few dozen handshakes at a time.
async fn connect_many(hub: &TestHub, n: usize) -> Vec<TestClient> {
    let clients: Vec<TestClient> = futures::stream::iter(0..n)
        .map(|i| async move { hub.connect(&hub.token(&format!("admin-{i}"), "admin")).await.expect("connect") })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(clients.len(), n);
    clients
}
