//! The contract suite and the adapter's own cases on in-memory and file-backed databases.

use chrono::Utc;

use super::*;
use crate::store::contract;

/// One `#[tokio::test]` per contract case, each on its own fresh in-memory store, so a failure names its case.
macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = SqliteStore::in_memory().await.expect("in-memory store opens");
                contract::$case(&store).await;
            }
        )*
    };
}

contract::with_every_case!(contract_cases);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_contract_case_passes_in_sequence_on_one_shared_store() {
    let store = SqliteStore::in_memory().await.expect("in-memory store opens");
    contract::run_all(&store).await;
}

#[tokio::test]
async fn in_memory_stores_are_isolated_from_each_other() {
    let (a, b) = (SqliteStore::in_memory().await.expect("store a"), SqliteStore::in_memory().await.expect("store b"));
    let room = RoomName::parse("topic:isolation").expect("room");
    let user = UserId::parse("isolated-user").expect("user");
    a.record_participation(&user, &room).await.expect("participation in a");

    assert_eq!(a.user_rooms(&user).await.expect("rooms in a"), [room]);
    assert!(b.user_rooms(&user).await.expect("rooms in b").is_empty());
}

/// A temporary directory removed when the test ends, whether it passed or not.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("bellhop-sqlite-{}", uuid::Uuid::new_v4().simple())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Cleanup is best effort: a leftover temp directory must not turn a passing test into a failure.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_contract_case_passes_on_a_file_backed_store() {
    // The file-backed store splits reads from writes across connections, which in-memory stores do not exercise.
    let dir = TempDir::new();
    let store = SqliteStore::open(&dir.0.join("bellhop.db")).await.expect("file store opens");
    contract::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_backed_store_keeps_its_data_across_reopening() {
    let dir = TempDir::new();
    let path = dir.0.join("nested").join("bellhop.db");
    let room = RoomName::parse("booking:reopen").expect("room");
    let user = UserId::parse("reopen-user").expect("user");

    let first = SqliteStore::open(&path).await.expect("store opens and creates its directories");
    first.grant(&room, std::slice::from_ref(&user)).await.expect("grant");
    let appended = first
        .append_event(NewRoomEvent {
            room: room.clone(),
            id: uuid::Uuid::now_v7().to_string(),
            event: "message".to_owned(),
            data: serde_json::json!({ "text": "kept" }),
            sender: Some(user.clone()),
            client_msg_id: Some("m1".to_owned()),
            created_at: Utc::now(),
        })
        .await
        .expect("append");
    // Reading through a read-only connection right after the write shows readers see committed data.
    assert_eq!(first.get_event(&room, &appended.event.id).await.expect("read back"), Some(appended.event.clone()));
    drop(first);

    let reopened = SqliteStore::open(&path).await.expect("store reopens and skips applied migrations");
    let history = reopened.history(&room, HistoryQuery::Latest { limit: 10 }).await.expect("history");
    let granted = reopened.is_granted(&room, &user).await.expect("grant lookup");

    assert_eq!(history, [appended.event]);
    assert!(granted);
}

/// A data dir from a harness whose SQLite driver recorded migrations in `_sqlx_migrations` (and left
/// `user_version` at 0) opens without applying them again, which would fail on the existing tables, and with its
/// data.
#[tokio::test]
async fn a_database_migrated_by_the_earlier_driver_opens_without_reapplying_migrations() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let path = dir.0.join("earlier.db");
    let user = UserId::parse("earlier-user").expect("user");
    let room = RoomName::parse("topic:earlier").expect("room");
    {
        let earlier = rusqlite::Connection::open(&path).expect("open");
        earlier
            .execute_batch(
                "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
                     installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
                     checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);",
            )
            .expect("sqlx's table");
        for (version, (name, sql)) in (1_i64..).zip(MIGRATIONS) {
            earlier.execute_batch(sql).expect("migration");
            earlier
                .execute(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                     VALUES (?, ?, TRUE, x'00', 0)",
                    rusqlite::params![version, name],
                )
                .expect("record");
        }
        earlier
            .execute("INSERT INTO participation (user_id, room) VALUES (?, ?)", [user.as_str(), room.as_str()])
            .expect("data");
    }

    let store = SqliteStore::open(&path).await.expect("the earlier database opens");
    assert_eq!(store.user_rooms(&user).await.expect("rooms"), [room]);
    drop(store);
    let version: i64 = rusqlite::Connection::open(&path)
        .and_then(|c| c.pragma_query_value(None, "user_version", |row| row.get(0)))
        .expect("user_version");
    assert_eq!(version, MIGRATIONS.len() as i64, "the applied count is recorded where this adapter looks");
}

/// Not a timed assertion: prints what the store calls of one `message:send` cost (the inbound frame's bucket, the
/// room's members, the message with participation and count), on an in-memory and a file-backed store, next to the
/// same work made of separate calls. These figures are the round-trip budget's in ARCHITECTURE.md; see them with
/// `--nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_calls_of_a_message_send_are_measured() {
    const SENDS: u32 = 500;
    let dir = TempDir::new();
    let stores = [
        ("in-memory", SqliteStore::in_memory().await.expect("in-memory store")),
        ("file", SqliteStore::open(&dir.0.join("bench.db")).await.expect("file store")),
    ];
    let limit = RateLimit { interval: std::time::Duration::from_millis(1), burst: 1_000_000 };
    for (kind, store) in stores {
        let room = RoomName::parse("topic:bench").expect("room");
        let sender = ConnectionRecord::for_tests("c-bench", "bench-user");
        store.put_connection(&sender, std::slice::from_ref(&room)).await.expect("put");
        let message = |i: u32| NewRoomEvent {
            room: room.clone(),
            id: uuid::Uuid::now_v7().to_string(),
            event: "message:new".to_owned(),
            data: serde_json::json!({ "content": "hello" }),
            sender: Some(sender.user_id.clone()),
            client_msg_id: Some(format!("m-{i}")),
            created_at: Utc::now(),
        };
        // Side by side in one run: the chat handler's calls, and the same work as the separate calls it made before
        // `append_message` (participation, append, count).
        let started = std::time::Instant::now();
        for i in 0..SENDS {
            store.admit_frame(&sender.connection_id, limit, Utc::now()).await.expect("admit");
            store.room_members(&room).await.expect("members");
            store.append_message(message(i)).await.expect("append");
        }
        let fused = started.elapsed() / SENDS;
        let started = std::time::Instant::now();
        for i in SENDS..2 * SENDS {
            store.admit_frame(&sender.connection_id, limit, Utc::now()).await.expect("admit");
            store.room_members(&room).await.expect("members");
            store.record_participation(&sender.user_id, &room).await.expect("participation");
            store.append_event(message(i)).await.expect("append");
            store.count_messages(1).await.expect("count");
        }
        let separate = started.elapsed() / SENDS;
        let line = format!(
            "SQLITE BENCH {kind}: {fused:?} of store calls per message:send, {separate:?} with participation, append \
             and count as separate calls ({SENDS} sends each)\n"
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
}

/// SQLite counts a chat message in the query that stores it, so the chat handler makes no separate stats write.
#[tokio::test]
async fn append_message_counts_new_messages_itself_and_duplicates_not_at_all() {
    let store = SqliteStore::in_memory().await.expect("in-memory store opens");
    let message = NewRoomEvent {
        room: RoomName::parse("topic:counted").expect("room"),
        id: uuid::Uuid::now_v7().to_string(),
        event: "message:new".to_owned(),
        data: serde_json::json!({ "text": "hi" }),
        sender: Some(UserId::parse("counted-user").expect("user")),
        client_msg_id: Some("m1".to_owned()),
        created_at: chrono::Utc::now(),
    };
    let first = store.append_message(message.clone()).await.expect("append");
    assert!(first.counted && !first.duplicate);
    assert_eq!(store.stats().await.expect("stats").total_messages, 1);
    let retry = store.append_message(message).await.expect("append retry");
    assert!(retry.counted && retry.duplicate, "nothing is owed for a duplicate");
    assert_eq!(store.stats().await.expect("stats").total_messages, 1);
}

/// The writer never checkpoints, so only the background task can move the log into the database file: the file
/// growing proves the task runs. (In WAL mode nothing else writes to the database file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_backed_store_checkpoints_its_log_in_the_background() {
    let dir = TempDir::new();
    let path = dir.0.join("bellhop.db");
    let store = SqliteStore::open(&path).await.expect("file store opens");
    let file_size = || std::fs::metadata(&path).expect("database file").len();
    // The first checkpoint comes one interval after opening, so the migrations are still in the log here.
    let started = file_size();
    let room = RoomName::parse("topic:checkpoint").expect("room");
    for i in 0..300 {
        let event = NewRoomEvent {
            room: room.clone(),
            id: uuid::Uuid::now_v7().to_string(),
            event: "message:new".to_owned(),
            data: serde_json::json!({ "text": "x".repeat(200), "i": i }),
            sender: None,
            client_msg_id: None,
            created_at: Utc::now(),
        };
        store.append_event(event).await.expect("append");
    }
    let grown = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while file_size() <= started {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(grown.is_ok(), "no checkpoint within 20 s: the database file stayed at {started} bytes");
}
