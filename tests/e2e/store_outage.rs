//! DynamoDB going away mid-run: the harness on a DynamoDB Local of this test's own (the jar from
//! `scripts/dynamodb-local.sh`, persisting to a temporary directory), which is killed while clients are connected
//! and then restarted on the same port and data.
//!
//! While it is down, every request that needs the store fails clearly — an `INTERNAL` ack, a 5xx in the error
//! envelope, a refused handshake — and nothing is delivered. Once it is back, the state shows that nothing was
//! half-written: the sequence has no gap, history holds only what was acknowledged, and the refused connection left
//! no records.
//!
//! Skipped (loudly) when `DYNAMODB_LOCAL_JAR_DIR` is not set, and failing instead when `TEST_INTEGRATION=1`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use local::StoreChoice;
use reqwest::StatusCode;
use serde_json::json;
use shared::ids::UserId;
use shared::store::Store;
use shared::store::dynamo::DynamoStore;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite;

use shared::testing::integration_var;

use crate::helpers::{error_code, spawn_hub_with};

/// DynamoDB Local takes a few seconds to start on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(60);
/// The SDK retries a refused connection with backoff before the store gives up: allow for all of its attempts.
const FAILURE_LIMIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(500);

/// A DynamoDB Local process owned by this test, killed when dropped.
struct OwnDynamo {
    jar_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl OwnDynamo {
    async fn start(jar_dir: PathBuf) -> Self {
        let data_dir = std::env::temp_dir().join(format!("bellhop-outage-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&data_dir).expect("create the DynamoDB Local data directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let mut dynamo = Self { jar_dir, data_dir, port, child: None };
        dynamo.launch().await;
        dynamo
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the jar on this port with the data in `data_dir` (so a restart finds the tables again) and waits
    /// until it accepts connections.
    async fn launch(&mut self) {
        let child = Command::new("java")
            .current_dir(&self.jar_dir)
            .arg(format!("-Djava.library.path={}", self.jar_dir.join("DynamoDBLocal_lib").display()))
            .arg("-jar")
            .arg(self.jar_dir.join("DynamoDBLocal.jar"))
            .args(["-sharedDb", "-disableTelemetry", "-dbPath"])
            .arg(&self.data_dir)
            .args(["-port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start java (DynamoDB Local needs Java 17+)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "DynamoDB Local did not listen within {START_LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process the hard way, as a crash or a network cut would end it.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill DynamoDB Local");
        }
    }
}

impl Drop for OwnDynamo {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        remove_dir(&self.data_dir);
    }
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_store_outage_fails_every_request_clearly_and_leaves_nothing_half_written() {
    let Some(jar_dir) = integration_var("DYNAMODB_LOCAL_JAR_DIR", "the DynamoDB Local jar") else { return };
    let jar_dir = PathBuf::from(jar_dir);
    let mut dynamo = OwnDynamo::start(jar_dir).await;
    let endpoint = dynamo.endpoint();
    let table = "bellhop-outage".to_owned();
    let hub = spawn_hub_with(|options| options.store = StoreChoice::Dynamo { endpoint: endpoint.clone(), table }).await;

    let room = "topic:outage";
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect alice");
    let mut bob = hub.connect(&hub.token("bob", "customer")).await.expect("connect bob");
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.request("room:join", json!({"room": room})).await["ok"], true);
    }
    let before = alice.request("message:send", json!({"room": room, "content": "before"})).await;
    assert_eq!(before["data"]["message"]["seq"], 1, "{before}");
    bob.next_event("message:new").await;

    dynamo.kill().await;

    let during = alice.request_within("message:send", json!({"room": room, "content": "during"}), FAILURE_LIMIT).await;
    assert_eq!(during["ok"], false, "{during}");
    assert_eq!(error_code(&during), "INTERNAL", "{during}");
    assert!(during.to_string().contains("try again"), "the client is told the failure is temporary: {during}");

    let (status, body) = hub.emit(json!({"event": "appointment:created", "rooms": [room], "data": {}})).await;
    assert!(status.is_server_error(), "emit during the outage: {status} {body}");
    assert_eq!(body["error"]["code"], "INTERNAL", "{body}");

    match tokio::time::timeout(FAILURE_LIMIT, hub.connect(&hub.token("carol", "customer"))).await {
        Ok(Err(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "handshake during the outage");
        }
        Ok(Ok(_)) => panic!("a connection was accepted while its record could not be written"),
        Ok(Err(other)) => panic!("handshake failed in an unexpected way: {other}"),
        Err(_) => panic!("the refused handshake did not answer within {FAILURE_LIMIT:?}"),
    }
    bob.expect_silence(QUIET).await;

    dynamo.launch().await;

    let after = alice.request_within("message:send", json!({"room": room, "content": "after"}), FAILURE_LIMIT).await;
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(after["data"]["message"]["seq"], 2, "the failed send took no sequence number: {after}");
    let event = bob.next_event("message:new").await;
    assert_eq!(event["data"]["content"], "after", "bob never saw the failed send: {event}");
    let history = bob.request("message:history", json!({"room": room})).await;
    let contents: Vec<&str> = history["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["data"]["content"].as_str())
        .collect();
    assert_eq!(contents, ["before", "after"], "{history}");

    let store = DynamoStore::from_config("bellhop-outage", Some(&endpoint)).await;
    let carol = UserId::parse("carol").expect("user id");
    assert!(store.user_connections(&carol).await.expect("read").is_empty(), "the refused connect left a record");
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.active_connections, 2, "{stats:?}");
}
