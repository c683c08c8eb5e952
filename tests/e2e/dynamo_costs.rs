//! What each client action costs in DynamoDB, measured: the harness runs on DynamoDB Local with a
//! [`RequestCounter`] (an SDK interceptor) on the store's client, real sockets perform each action, and the requests
//! and consumed capacity units that action made are printed as a table (run with `--nocapture` to see it;
//! `scripts/test.sh` does).
//!
//! Request counts are deterministic for a given code path, so unlike timings they are asserted: each action's
//! request count is pinned to the formula ARCHITECTURE.md gives for it, and a change to the store's request
//! pattern has to update both. Capacity units are printed, not asserted: DynamoDB Local's figures follow the real
//! service's rules only roughly.
//!
//! Skipped (loudly) when `DYNAMODB_ENDPOINT` is not set, and failing instead when `TEST_INTEGRATION=1`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use local::StoreChoice;
use serde_json::{Value, json};
use shared::store::dynamo::{DynamoStore, RequestCounter};

use shared::testing::integration_var;

use crate::helpers::{TestClient, TestHub, spawn_hub_with};

/// How long the request count must stay still before an action counts as finished. Handlers finish their store
/// work before they answer, but `$disconnect` has no answer to wait for.
const SETTLE: Duration = Duration::from_millis(300);
/// Upper bound on waiting for an action's requests to stop.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// One measured action: what ran, how many requests of each operation, and the capacity they consumed.
#[derive(Clone)]
struct Row {
    action: String,
    operations: BTreeMap<&'static str, u64>,
    capacity: f64,
}

impl Row {
    fn total(&self) -> u64 {
        self.operations.values().sum()
    }

    fn count(&self, operation: &str) -> u64 {
        self.operations.get(operation).copied().unwrap_or(0)
    }
}

struct Bench {
    hub: TestHub,
    counter: RequestCounter,
    rows: std::sync::Mutex<Vec<Row>>,
}

impl Bench {
    async fn start() -> Option<Self> {
        let endpoint = integration_var("DYNAMODB_ENDPOINT", "DynamoDB Local")?;
        let counter = RequestCounter::new();
        let table = format!("bellhop-costs-{}", uuid::Uuid::now_v7().simple());
        let store = DynamoStore::from_config_with_counter(&table, Some(&endpoint), &counter).await;
        store.create_table_if_missing().await.expect("create the benchmark table");
        let hub = spawn_hub_with(|options| {
            options.store = StoreChoice::Custom(Arc::new(store));
            // Every frame takes a token from its connection's rate-limit bucket. With a 1 ms interval each bucket is
            // full again by the time the next action is measured, so every row shows the common case (one
            // UpdateItem) however fast the setup frames went; a partly drained bucket costs a second one.
            options.config.limits.inbound_per_second = 1000;
        })
        .await;
        Some(Self { hub, counter, rows: std::sync::Mutex::default() })
    }

    /// Runs `action` with a fresh count, waits until its requests have stopped, prints the row later and answers
    /// it with the action's output.
    async fn measure<T>(&self, name: impl Into<String>, action: impl Future<Output = T>) -> (T, Row) {
        self.settle().await;
        self.counter.reset();
        let output = action.await;
        self.settle().await;
        let row =
            Row { action: name.into(), operations: self.counter.operations(), capacity: self.counter.capacity_units() };
        self.rows.lock().expect("rows").push(row.clone());
        (output, row)
    }

    fn rename_last(&self, action: &str) {
        if let Some(row) = self.rows.lock().expect("rows").last_mut() {
            row.action = action.to_owned();
        }
    }

    /// Waits until no request has been made for [`SETTLE`].
    async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
        let mut seen = self.counter.attempts();
        loop {
            tokio::time::sleep(SETTLE).await;
            let now = self.counter.attempts();
            if now == seen {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "DynamoDB requests did not stop within {SETTLE_LIMIT:?}");
            seen = now;
        }
    }

    /// Connects `user` with `role` and token rooms `rooms`, outside any measurement.
    async fn connect(&self, user: &str, role: &str, rooms: &[String]) -> TestClient {
        let mut claims = TestHub::claims(user);
        claims.role = Some(role.to_owned());
        if !rooms.is_empty() {
            claims.rooms = Some(rooms.to_vec());
        }
        self.hub.connect(&self.hub.token_with(&claims)).await.expect("connect")
    }

    /// `n` customers joined to `room`, outside any measurement.
    async fn room_of(&self, room: &str, n: usize, prefix: &str) -> Vec<TestClient> {
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut client = self.connect(&format!("{prefix}-{i}"), "customer", &[]).await;
            let ack = client.request("room:join", json!({"room": room})).await;
            assert_eq!(ack["ok"], true, "{ack}");
            clients.push(client);
        }
        clients
    }

    fn print(&self) {
        println!();
        println!("DynamoDB requests per action (DynamoDB Local; capacity units as DynamoDB Local reports them)");
        println!("{:<44} {:>8} {:>9}  operations", "action", "requests", "capacity");
        for row in self.rows.lock().expect("rows").iter() {
            let operations: Vec<String> = row.operations.iter().map(|(op, n)| format!("{op}×{n}")).collect();
            println!("{:<44} {:>8} {:>9.1}  {}", row.action, row.total(), row.capacity, operations.join(" "));
        }
    }
}

fn ok(ack: &Value) {
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn each_action_makes_the_dynamodb_requests_its_design_says_and_the_table_is_printed() {
    let Some(bench) = Bench::start().await else { return };

    // Connect: one Query of the user's partition (open connections for the per-user limit, stored presence and
    // presence subscribers), one UpdateItem for the connection item (with its room set), BatchWriteItem for the
    // user mirror and the k memberships (25 items a request), then the counters: one UpdateItem per room's member
    // count and one for the global stats.
    for (role, token_rooms) in [("customer", 0), ("admin", 0), ("customer", 28)] {
        let rooms: Vec<String> = (0..token_rooms).map(|i| format!("topic:auto-{i}")).collect();
        let user = format!("connect-{role}-{token_rooms}");
        let (mut client, mut row) = bench.measure("connect", bench.connect(&user, role, &rooms)).await;
        let hello = client.request("hello", json!({})).await;
        let k = hello["data"]["rooms"].as_array().map(Vec::len).expect("rooms in hello") as u64;
        row.action = format!("connect, {k} auto rooms ({role})");
        bench.rename_last(&row.action);
        assert_eq!(row.count("BatchWriteItem"), (k + 1).div_ceil(25), "{}", row.action);
        assert_eq!(row.count("UpdateItem"), 1 + k + 1, "connection item, k member counts, stats: {}", row.action);
        assert_eq!((row.count("Query"), row.count("BatchGetItem")), (1, 0), "{}", row.action);
        assert_eq!(row.total(), 3 + (k + 1).div_ceil(25) + k, "{}", row.action);
        client.close().await;
        bench.settle().await;
    }

    // A room of N for the fan-out actions; `sender` is one of its members.
    for n in [1usize, 10, 50] {
        let room = format!("topic:room-{n}");
        let mut members = bench.room_of(&room, n, &format!("member-{n}")).await;
        let sender = members.first_mut().expect("n >= 1");

        let (ack, row) = bench
            .measure(
                format!("message:send to a room of {n}"),
                sender.request("message:send", json!({"room": room, "content": "hello"})),
            )
            .await;
        ok(&ack);
        // The inbound rate limit, one membership page, one transaction (counter + event), the message counter,
        // the participation item.
        assert_eq!(row.count("Query"), 1, "{}", row.action);
        assert_eq!(row.count("TransactWriteItems"), 1, "{}", row.action);
        assert_eq!(row.total(), 1 + 4, "{}", row.action);

        let (ack, row) = bench
            .measure(format!("typing:start in a room of {n}"), sender.request("typing:start", json!({"room": room})))
            .await;
        ok(&ack);
        // The inbound rate limit and the typing coalescing bucket, then one membership query.
        assert_eq!((row.count("Query"), row.count("UpdateItem"), row.total()), (1, 2, 3), "{}", row.action);

        let emit = json!({"event": "appointment:updated", "rooms": [room], "data": {"id": "a-1"}});
        let ((status, report), row) = bench.measure(format!("emit to a room of {n}"), bench.hub.emit(emit)).await;
        assert!(status.is_success(), "{report}");
        // One membership page and the message counter.
        assert_eq!((row.count("Query"), row.total()), (1, 2), "{}", row.action);
        for member in &mut members {
            member.close().await;
        }
        bench.settle().await;
    }

    let mut alice = bench.connect("alice", "customer", &[]).await;
    let room = "topic:costs";
    let (ack, row) = bench.measure("room:join (new room)", alice.request("room:join", json!({"room": room}))).await;
    ok(&ack);
    // The rate limit, the membership transaction (its condition is the room limit), participation, the member count
    // (which also puts the room in the active-rooms index), and one Query for the members and the latest seq. No
    // stats write: `/health` counts active rooms in the index.
    assert_eq!(
        (row.count("TransactWriteItems"), row.count("Query"), row.count("GetItem")),
        (1, 1, 0),
        "{}",
        row.action
    );
    assert_eq!(row.total(), 5, "{}", row.action);
    let join_requests = row.total();
    for i in 0..30 {
        ok(&alice.request("message:send", json!({"room": room, "content": format!("m{i}")})).await);
    }
    let (ack, row) = bench
        .measure("message:history, page of 20", alice.request("message:history", json!({"room": room, "limit": 20})))
        .await;
    ok(&ack);
    assert_eq!((row.count("Query"), row.count("GetItem")), (1, 0), "{}", row.action);
    let (ack, row) =
        bench.measure("message:read", alice.request("message:read", json!({"room": room, "seq": 30}))).await;
    ok(&ack);
    let read_requests = row.total();
    let (ack, row) = bench.measure("room:leave", alice.request("room:leave", json!({"room": room}))).await;
    ok(&ack);
    let leave_requests = row.total();
    let (_, row) = bench.measure("disconnect (2 auto rooms)", alice.close()).await;
    // Two automatic rooms (`user:alice`, `customer:alice`), and alice's last connection: DeleteItem, the two member
    // counts (the user room's reaching 0 says "last"), one Query for the stored presence and its subscribers, one
    // BatchWriteItem removing the mirror and memberships and storing the offline presence, the stats counter. Both
    // rooms empty, so each also leaves the active-rooms index: one conditional UpdateItem a room.
    assert_eq!((row.count("UpdateItem"), row.count("Query"), row.count("BatchWriteItem")), (5, 1, 1), "{}", row.action);
    assert_eq!(row.total(), 6 + 2, "{}", row.action);
    let disconnect_requests = row.total();

    bench.print();
    println!(
        "join {join_requests}, read {read_requests}, leave {leave_requests}, disconnect {disconnect_requests} \
         requests: see ARCHITECTURE.md for each one"
    );
}
