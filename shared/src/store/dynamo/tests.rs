//! Runs the store contract suite and the adapter's own cases against a real DynamoDB Local. Every test creates
//! a table of its own (`bellhop-test-{uuid}`), so cases never see each other's counters. Without
//! `DYNAMODB_ENDPOINT` the tests say loudly that they skipped; with `TEST_INTEGRATION=1` they fail instead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::future::join_all;
use serde_json::json;

use super::*;
use crate::store::{Admission, CallState, CallType, RateLimit, StoreError, contract};

/// A store on a fresh table, with a request counter attached.
struct TestTable {
    store: DynamoStore,
    counter: RequestCounter,
    endpoint: String,
}

impl TestTable {
    async fn create() -> Option<Self> {
        let endpoint = crate::testing::integration_var("DYNAMODB_ENDPOINT", "DynamoDB Local")?;
        let table = format!("bellhop-test-{}", uuid::Uuid::new_v4().simple());
        let counter = RequestCounter::new();
        let store = DynamoStore::from_config_with_counter(&table, Some(&endpoint), &counter).await;
        store.create_table_if_missing().await.expect("create test table");
        counter.reset();
        Some(Self { store, counter, endpoint })
    }

    /// Another store on the same table, as a second Lambda instance would have: no shared sequence hints.
    async fn second_store(&self) -> DynamoStore {
        DynamoStore::from_config(self.store.table(), Some(&self.endpoint)).await
    }

    async fn drop_table(self) {
        // Best effort: DynamoDB Local runs in memory, so a table left behind by a failed test dies with it.
        let _ = self.store.client().delete_table().table_name(self.store.table()).send().await;
    }
}

macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let Some(table) = TestTable::create().await else { return };
            contract::$case(&table.store).await;
            table.drop_table().await;
        }
    )*};
}

contract::with_every_case!(contract_cases);

fn user(prefix: &str) -> UserId {
    UserId::parse(format!("{prefix}-{}", uuid::Uuid::new_v4().simple())).expect("valid user id")
}

fn room(kind: &str) -> RoomName {
    RoomName::parse(format!("{kind}:{}", uuid::Uuid::new_v4().simple())).expect("valid room name")
}

fn connection(user: &UserId) -> ConnectionRecord {
    let connected_at = Utc::now();
    ConnectionRecord {
        connection_id: ConnectionId::parse(format!("c-{}", uuid::Uuid::new_v4().simple())).expect("valid id"),
        user_id: user.clone(),
        role: None,
        name: Some("Tester".to_owned()),
        email: Some("tester@example.com".to_owned()),
        connected_at,
        expires_at: connected_at + ChronoDuration::hours(2),
        token_expires_at: None,
    }
}

fn new_event(room: &RoomName, sender: Option<&UserId>, client_msg_id: Option<&str>) -> NewRoomEvent {
    NewRoomEvent {
        room: room.clone(),
        id: uuid::Uuid::now_v7().to_string(),
        event: "message".to_owned(),
        data: json!({ "text": "hi" }),
        sender: sender.cloned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        created_at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_suite_passes_in_sequence_on_one_table() {
    let Some(table) = TestTable::create().await else { return };
    contract::run_all(&table.store).await;
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_the_table_twice_is_harmless() {
    let Some(table) = TestTable::create().await else { return };
    table.store.create_table_if_missing().await.expect("second create");
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_connection_with_30_rooms_writes_in_two_batches() {
    let Some(table) = TestTable::create().await else { return };
    let conn = connection(&user("batch"));
    let rooms: Vec<RoomName> = (0..30).map(|_| room("topic")).collect();

    table.store.put_connection(&conn, &rooms).await.expect("put connection");

    // 30 memberships + the user mirror = 31 items = two BatchWriteItem calls. Besides them: one UpdateItem for
    // the connection item, one per room for its member count, and one for the global stats.
    let ops = table.counter.operations();
    assert_eq!(table.counter.count("BatchWriteItem"), 2, "{ops:?}");
    assert_eq!(table.counter.count("UpdateItem"), 1 + 30 + 1, "{ops:?}");
    assert_eq!(table.counter.total(), 2 + 32, "{ops:?}");
    assert!(table.counter.capacity_units() > 0.0, "consumed capacity is summed: {ops:?}");
    assert_eq!(table.store.connection_rooms(&conn.connection_id).await.expect("rooms").len(), 30);
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncontended_append_is_one_transaction() {
    let Some(table) = TestTable::create().await else { return };
    let chat = room("topic");
    let sender = user("sender");
    let one_transaction = BTreeMap::from([("TransactWriteItems", 1)]);

    let first = table.store.append_event(new_event(&chat, Some(&sender), Some("m"))).await.expect("append");
    assert_eq!((first.event.seq, first.duplicate), (1, false));
    assert_eq!(table.counter.operations(), one_transaction);

    table.counter.reset();
    let second = table.store.append_event(new_event(&chat, Some(&sender), None)).await.expect("append");
    assert_eq!((second.event.seq, second.duplicate), (2, false));
    assert_eq!(table.counter.operations(), one_transaction);

    // A retry is answered by the failed transaction itself: the dedupe item's old image is the first event.
    table.counter.reset();
    let retry = table.store.append_event(new_event(&chat, Some(&sender), Some("m"))).await.expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.event, first.event);
    assert_eq!(table.counter.operations(), one_transaction);

    // A fresh instance does not know the room's counter yet: its first append costs one failed transaction.
    let cold = table.second_store().await;
    let third = cold.append_event(new_event(&chat, None, None)).await.expect("append from a cold instance");
    assert_eq!(third.event.seq, 3);
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitting_from_a_full_or_limiting_bucket_is_one_update_and_a_drained_one_two() {
    let Some(table) = TestTable::create().await else { return };
    let limit = RateLimit { interval: Duration::from_secs(1), burst: 2 };
    let bucket = format!("bucket-{}", uuid::Uuid::new_v4().simple());
    let now = Utc::now();
    let updates = |n: u64| BTreeMap::from([("UpdateItem", n)]);

    let full = table.store.admit(&bucket, limit, now).await.expect("admit");
    assert_eq!((full, table.counter.operations()), (Admission::Allowed, updates(1)), "full bucket");

    table.counter.reset();
    let drained = table.store.admit(&bucket, limit, now).await.expect("admit");
    assert_eq!((drained, table.counter.operations()), (Admission::Allowed, updates(2)), "partly drained");

    table.counter.reset();
    let limited = table.store.admit(&bucket, limit, now).await.expect("admit");
    assert!(matches!(limited, Admission::Limited { .. }), "{limited:?}");
    assert_eq!(table.counter.operations(), updates(1), "limiting");

    table.counter.reset();
    let idle = table.store.admit(&bucket, limit, now + ChronoDuration::seconds(10)).await.expect("admit");
    assert_eq!((idle, table.counter.operations()), (Admission::Allowed, updates(1)), "full again after idling");
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_a_stale_hint_still_appends_without_gaps() {
    let Some(table) = TestTable::create().await else { return };
    let other = table.second_store().await;
    let chat = room("topic");

    let mut seqs = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { &table.store } else { &other };
        seqs.push(store.append_event(new_event(&chat, None, None)).await.expect("append").event.seq);
    }

    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_from_two_instances_leave_no_gaps() {
    let Some(table) = TestTable::create().await else { return };
    let other = table.second_store().await;
    let chat = room("topic");

    let appends = (0..30).map(|i| {
        let store = if i % 2 == 0 { &table.store } else { &other };
        store.append_event(new_event(&chat, None, None))
    });
    let mut seqs: Vec<u64> = join_all(appends).await.into_iter().map(|r| r.expect("append").event.seq).collect();
    seqs.sort_unstable();

    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
    let history = table.store.history(&chat, HistoryQuery::Latest { limit: 100 }).await.expect("history");
    assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=30).collect::<Vec<u64>>());
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_follow_every_page_when_pages_are_small() {
    let Some(table) = TestTable::create().await else { return };
    let store = table.store.clone().with_page_size(7);
    let crowd = room("topic");
    let owner = user("paged");
    let conns: Vec<ConnectionRecord> = (0..120).map(|_| connection(&owner)).collect();
    for chunk in conns.chunks(20) {
        for result in join_all(chunk.iter().map(|c| store.put_connection(c, std::slice::from_ref(&crowd)))).await {
            result.expect("put connection");
        }
    }
    for _ in 0..25 {
        store.append_event(new_event(&crowd, None, None)).await.expect("append");
    }

    assert_eq!(store.room_members(&crowd).await.expect("members").len(), 120);
    assert_eq!(store.user_connections(&owner).await.expect("user connections").len(), 120);
    assert_eq!(store.all_connections().await.expect("all").len(), 120);
    let latest = store.history(&crowd, HistoryQuery::Latest { limit: 20 }).await.expect("history");
    assert_eq!(latest.iter().map(|e| e.seq).collect::<Vec<_>>(), (6..=25).collect::<Vec<u64>>());
    assert_eq!(store.count_unread(&crowd, 3, &owner).await.expect("unread"), 22);
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mark_all_read_never_drifts_the_unread_counter() {
    let Some(table) = TestTable::create().await else { return };
    let me = user("notified");
    for i in 0..12 {
        let notification = Notification {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: me.clone(),
            title: format!("n{i}"),
            message: "m".to_owned(),
            kind: None,
            data: json!(null),
            read: false,
            created_at: Utc::now(),
        };
        table.store.add_notification(&notification).await.expect("add");
        // Adding the same notification again (a retried request) must not count it twice.
        table.store.add_notification(&notification).await.expect("add again");
    }
    assert_eq!(table.store.unread_notifications(&me).await.expect("unread"), 12);

    let marks = (0..3).map(|_| table.store.mark_notifications_read(&me, &NotificationSelector::All));
    let changed: u64 = join_all(marks).await.into_iter().map(|r| r.expect("mark all")).sum();

    assert_eq!(changed, 12, "each notification flips exactly once");
    assert_eq!(table.store.unread_notifications(&me).await.expect("unread after"), 0);
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_with_an_unknown_connection_is_not_found_and_writes_nothing() {
    let Some(table) = TestTable::create().await else { return };
    let conn = connection(&user("ghost"));
    let topic = room("topic");

    let joined = table.store.join_room(&conn, &topic).await;

    assert!(matches!(joined, Err(StoreError::NotFound)), "{joined:?}");
    assert!(table.store.room_members(&topic).await.expect("members").is_empty());
    assert!(table.store.get_connection(&conn.connection_id).await.expect("get").is_none());
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_round_trip_to_the_nanosecond() {
    let Some(table) = TestTable::create().await else { return };
    let mut conn = connection(&user("clock"));
    conn.connected_at = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid instant");
    conn.expires_at = conn.connected_at + ChronoDuration::milliseconds(7_200_001);

    table.store.put_connection(&conn, &[]).await.expect("put");

    assert_eq!(table.store.get_connection(&conn.connection_id).await.expect("get"), Some(conn));
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_transition_from_no_state_tells_unknown_from_mismatched() {
    let Some(table) = TestTable::create().await else { return };
    let call = CallRecord {
        call_id: format!("call-{}", uuid::Uuid::new_v4().simple()),
        caller: user("caller"),
        recipient: user("callee"),
        call_type: CallType::Audio,
        visit_id: None,
        state: CallState::Ringing,
        created_at: Utc::now(),
        answered_at: None,
        ended_at: None,
    };
    table.store.create_call(&call).await.expect("create");
    let nothing = CallTransition { from: Vec::new(), to: CallState::Ended, at: Utc::now() };

    let known = table.store.transition_call(&call.call_id, &nothing).await;
    let unknown = table.store.transition_call("call-unknown", &nothing).await;

    assert!(matches!(known, Err(StoreError::ConditionFailed)), "{known:?}");
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    table.drop_table().await;
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast_with_a_backend_error() {
    // Bind a port, learn its number and close it, so nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.local_addr().expect("local addr").port()
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(3))
                .build(),
        )
        .build();
    let store = DynamoStore::new(Client::from_conf(config), "unreachable");
    let started = Instant::now();

    let result = tokio::time::timeout(Duration::from_secs(10), store.stats()).await;

    let result = result.expect("the call gives up instead of hanging");
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_enters_the_active_index_with_its_first_member_and_leaves_it_when_emptied() {
    let Some(table) = TestTable::create().await else { return };
    let user = UserId::parse("indexed").expect("user");
    let (a, b) = (connection(&user), connection(&user));
    let lobby = room("topic");
    let index_entries = || async {
        let shard = keys::active_rooms_pk(keys::active_room_shard(&lobby));
        let out = table
            .store
            .client()
            .query()
            .table_name(table.store.table())
            .index_name(keys::ACTIVE_ROOMS_INDEX)
            .key_condition_expression("active_shard = :pk AND active_room = :room")
            .expression_attribute_values(":pk", codec::s(shard))
            .expression_attribute_values(":room", codec::s(lobby.as_str()))
            .send()
            .await
            .expect("query index");
        out.items.unwrap_or_default().len()
    };
    table.store.put_connection(&a, &[]).await.expect("put a");
    table.store.put_connection(&b, &[]).await.expect("put b");

    table.store.join_room(&a, &lobby).await.expect("join a");
    table.store.join_room(&b, &lobby).await.expect("join b");
    assert_eq!(index_entries().await, 1, "one entry however many members");

    table.counter.reset();
    table.store.leave_room(&a.connection_id, &lobby).await.expect("leave a");
    let not_emptied = table.counter.count("UpdateItem");
    table.counter.reset();
    table.store.leave_room(&b.connection_id, &lobby).await.expect("leave b");
    let emptied = table.counter.count("UpdateItem");

    assert_eq!(index_entries().await, 0, "an emptied room leaves the index");
    // `/health` counts the index instead of an `active_rooms` counter, so the emptying leave pays no stats write:
    // the index removal is its one more request.
    assert_eq!(emptied, not_emptied + 1, "only the leave that empties the room pays the index removal");
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_count_change_writes_the_active_index_only_when_the_room_becomes_active_or_empties() {
    let Some(table) = TestTable::create().await else { return };
    let lobby = room("topic");
    let capacity_of = |delta: i64| {
        let (store, counter, lobby) = (table.store.clone(), table.counter.clone(), lobby.clone());
        async move {
            counter.reset();
            store.adjust_member_counts(std::slice::from_ref(&lobby), delta).await.expect("adjust");
            counter.capacity_units()
        }
    };

    let first_join = capacity_of(1).await;
    let second_join = capacity_of(1).await;
    let first_leave = capacity_of(-1).await;
    let emptying_leave = capacity_of(-1).await;

    // DynamoDB Local's consumed capacity includes index writes. The keys-only index changes only when its keys
    // appear or go: an ADD that re-sets them to the values they hold costs the counter item's 1 WRU alone.
    assert_eq!(first_join, 2.0, "the counter and the new index entry");
    assert_eq!(second_join, 1.0, "the counter only");
    assert_eq!(first_leave, 1.0, "the counter only");
    assert_eq!(emptying_leave, 3.0, "the counter, then the removal: the item and the index entry");
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_rooms_skip_index_entries_whose_count_is_already_zero_and_still_fill_their_pages() {
    let Some(table) = TestTable::create().await else { return };
    let conn = connection(&user("lagging"));
    let rooms: Vec<RoomName> = (0..6).map(|_| room("topic")).collect();
    table.store.put_connection(&conn, &rooms).await.expect("put");
    // What the index shows between an emptying decrement and the removal of its entry: keys still set, count 0.
    for stale in &rooms[..3] {
        table
            .store
            .client()
            .update_item()
            .table_name(table.store.table())
            .set_key(Some(keys::key(keys::room_pk(stale), keys::COUNT)))
            .update_expression("SET members = :zero")
            .expression_attribute_values(":zero", codec::n(0))
            .send()
            .await
            .expect("zero the count");
    }

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = table.store.active_rooms_page(after.as_deref(), 2).await.expect("page");
        pages.push(page.items.iter().map(|r| r.room.clone()).collect::<Vec<_>>());
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }

    let listed: BTreeSet<RoomName> = pages.iter().flatten().cloned().collect();
    assert_eq!(listed, rooms[3..].iter().cloned().collect(), "only the rooms with members: {pages:?}");
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1], "skipped entries do not shorten a page");
    table.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_made_before_the_active_rooms_index_is_refused_naming_the_index() {
    let Some(endpoint) = crate::testing::integration_var("DYNAMODB_ENDPOINT", "DynamoDB Local") else { return };
    let table = format!("bellhop-test-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStore::from_config(&table, Some(&endpoint)).await;
    let string = |name: &str| {
        aws_sdk_dynamodb::types::AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let element = |name: &str, key_type| {
        aws_sdk_dynamodb::types::KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .expect("key element")
    };
    let gsi1 = aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
        .index_name(keys::GSI1)
        .key_schema(element(keys::GSI1PK, aws_sdk_dynamodb::types::KeyType::Hash))
        .key_schema(element(keys::GSI1SK, aws_sdk_dynamodb::types::KeyType::Range))
        .projection(
            aws_sdk_dynamodb::types::Projection::builder()
                .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
                .build(),
        )
        .build()
        .expect("index");
    store
        .client()
        .create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(string(keys::PK))
        .attribute_definitions(string(keys::SK))
        .attribute_definitions(string(keys::GSI1PK))
        .attribute_definitions(string(keys::GSI1SK))
        .key_schema(element(keys::PK, aws_sdk_dynamodb::types::KeyType::Hash))
        .key_schema(element(keys::SK, aws_sdk_dynamodb::types::KeyType::Range))
        .global_secondary_indexes(gsi1)
        .send()
        .await
        .expect("create the table as it was before the index");

    let refused = store.create_table_if_missing().await;

    let reason = match &refused {
        Err(StoreError::Backend(source)) => source.to_string(),
        other => panic!("expected the table to be refused, got {other:?}"),
    };
    assert!(reason.contains(&table) && reason.contains("`ActiveRooms`"), "{reason}");
    let _ = store.client().delete_table().table_name(&table).send().await;
}
