//! The client protocol end to end: every action through the harness, with real WebSocket clients.

use std::time::Duration;

use serde_json::{Value, json};

use shared::gateway::PING_ROUTE_RESPONSE;

use crate::helpers::{RECV_TIMEOUT, error_code, spawn_hub};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_ping_with_or_without_id_or_data_is_answered_exactly_pong_and_never_acked() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");

    let pings = [
        json!({"action": "ping"}),
        json!({"action": "ping", "id": "p-1"}),
        json!({"action": "ping", "id": 7, "data": {"x": 1}}),
    ];
    for ping in pings {
        client.send_json(ping.clone()).await;

        let answer = client.recv_text_within(RECV_TIMEOUT).await.expect("an answer");
        assert_eq!(answer, PING_ROUTE_RESPONSE, "{ping}");
        assert_eq!(answer, r#"{"type":"pong"}"#);
    }
    // Had the message function run, a ping with an id would also have been acked (refused as an unknown action).
    client.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_burst_of_pings_invokes_no_handler_so_the_hubs_frame_limit_is_never_charged() {
    // The hub's own limit: bursts of 30 frames. The pings go past it many times over; only the stage's route
    // throttling (500 per route) sees them, as on AWS.
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let burst = shared::config::Config::for_tests().limits.inbound_burst as usize;
    let n = 100.max(3 * burst);

    for _ in 0..n {
        client.send_json(json!({"action": "ping"})).await;
    }
    for i in 0..n {
        let frame = client.recv_json_within(RECV_TIMEOUT).await.unwrap_or_else(|| panic!("pong {i} of {n}"));
        assert_eq!(frame, json!({"type": "pong"}), "answer {i}");
    }

    // The connection's bucket is still full: a whole burst of frames the function does see goes through.
    for i in 0..burst {
        client.send_json(json!({"action": "hello", "id": format!("h{i}")})).await;
    }
    for _ in 0..burst {
        let ack = client.recv_json_within(RECV_TIMEOUT).await.expect("every hello is answered");
        assert_eq!(ack["ok"], true, "{ack}");
    }
}

#[tokio::test]
async fn hello_answers_with_connection_id_user_and_auto_rooms() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("prov-1", "provider")).await.expect("connect");

    let ack = client.request("hello", json!({})).await;

    assert_eq!(ack["ok"], true, "{ack}");
    assert!(ack["data"]["connectionId"].as_str().is_some_and(|id| id.ends_with("==")), "{ack}");
    assert_eq!(ack["data"]["user"]["id"], "prov-1");
    let rooms: Vec<&str> = ack["data"]["rooms"].as_array().expect("rooms").iter().filter_map(Value::as_str).collect();
    for room in ["user:prov-1", "provider:prov-1", "calendar"] {
        assert!(rooms.contains(&room), "{room} missing from {rooms:?}");
    }
}

#[tokio::test]
async fn hello_without_id_answers_with_a_connected_event() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");

    client.send_json(json!({"action": "hello"})).await;

    let event = client.next_event("connected").await;
    assert_eq!(event["data"]["user"]["id"], "u1");
}

#[tokio::test]
async fn malformed_frames_get_precise_errors_and_the_socket_stays_open() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");

    client.send_text("this is not json").await;
    let event = client.next_event("error").await;
    assert_eq!(event["data"]["code"], "INVALID_JSON");

    let ack = client.request("dance", json!({})).await;
    assert_eq!(error_code(&ack), "UNKNOWN_ACTION");

    let ack = client.request("room:join", json!({"room": 42})).await;
    assert_eq!(error_code(&ack), "INVALID_DATA");
    assert!(ack["error"]["message"].as_str().unwrap_or("").contains("room"), "{ack}");

    let ack = client.request("room:join", json!({"room": "bad room"})).await;
    assert_eq!(error_code(&ack), "INVALID_ROOM");

    let ack = client.request("hello", json!({})).await;
    assert_eq!(ack["ok"], true, "the socket must still work: {ack}");
}

#[tokio::test]
async fn message_to_a_topic_reaches_every_other_member_once_with_a_seq() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");
    let mut bob = hub.connect(&hub.token("bob", "customer")).await.expect("connect");
    let mut carol = hub.connect(&hub.token("carol", "customer")).await.expect("connect");
    for client in [&mut alice, &mut bob] {
        let ack = client.request("room:join", json!({"room": "topic:lobby"})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    let ack = alice.request("message:send", json!({"room": "topic:lobby", "content": "  Hello  "})).await;

    assert_eq!(ack["ok"], true, "{ack}");
    let message = &ack["data"]["message"];
    assert_eq!(message["content"], "Hello");
    assert_eq!(message["seq"], 1);
    assert_eq!(message["sender"]["id"], "alice");
    assert!(chrono::DateTime::parse_from_rfc3339(message["createdAt"].as_str().unwrap_or("")).is_ok(), "{message}");
    let event = bob.next_event("message:new").await;
    assert_eq!(event["room"], "topic:lobby");
    assert_eq!(event["seq"], 1);
    assert_eq!(event["data"]["id"], message["id"]);
    alice.expect_silence(QUIET).await;
    carol.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_retried_send_with_the_same_client_msg_id_is_stored_and_delivered_once() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");
    let mut bob = hub.connect(&hub.token("bob", "customer")).await.expect("connect");
    for client in [&mut alice, &mut bob] {
        client.request("room:join", json!({"room": "chat:alice:bob"})).await;
    }
    let send = json!({"room": "chat:alice:bob", "content": "once", "clientMsgId": "m-1"});

    let first = alice.request("message:send", send.clone()).await;
    let retry = alice.request("message:send", send).await;

    assert_eq!(first["data"]["duplicate"], false);
    assert_eq!(retry["data"]["duplicate"], true);
    assert_eq!(first["data"]["message"]["id"], retry["data"]["message"]["id"]);
    bob.next_event("message:new").await;
    bob.expect_silence(QUIET).await;
    let history = bob.request("message:history", json!({"room": "chat:alice:bob"})).await;
    assert_eq!(history["data"]["events"].as_array().map(Vec::len), Some(1), "{history}");
}

#[tokio::test]
async fn sending_requires_membership_and_valid_content() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");

    let ack = alice.request("message:send", json!({"room": "topic:lobby", "content": "hi"})).await;
    assert_eq!(error_code(&ack), "FORBIDDEN");

    alice.request("room:join", json!({"room": "topic:lobby"})).await;
    let ack = alice.request("message:send", json!({"room": "topic:lobby", "content": "   "})).await;
    assert_eq!(error_code(&ack), "INVALID_DATA");
    let ack = alice.request("message:send", json!({"room": "topic:lobby", "content": "x".repeat(4001)})).await;
    assert_eq!(error_code(&ack), "PAYLOAD_TOO_LARGE");
    let ack = alice.request("message:send", json!({"room": "topic:lobby"})).await;
    assert_eq!(error_code(&ack), "INVALID_DATA");
}

#[tokio::test]
async fn history_pages_backwards_and_recovers_after_a_seq() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");
    alice.request("room:join", json!({"room": "topic:log"})).await;
    for n in 1..=5 {
        alice.request("message:send", json!({"room": "topic:log", "content": format!("m{n}")})).await;
    }
    let seqs = |ack: &Value| -> Vec<u64> {
        ack["data"]["events"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["seq"].as_u64()).collect())
            .unwrap_or_default()
    };

    let latest = alice.request("message:history", json!({"room": "topic:log", "limit": 2})).await;
    let before = alice.request("message:history", json!({"room": "topic:log", "beforeSeq": 4, "limit": 2})).await;
    let after = alice.request("message:history", json!({"room": "topic:log", "afterSeq": 3})).await;

    assert_eq!(seqs(&latest), [4, 5]);
    assert_eq!(latest["data"]["hasMore"], true);
    assert_eq!(seqs(&before), [2, 3]);
    assert_eq!(seqs(&after), [4, 5]);
    assert_eq!(after["data"]["hasMore"], false);
    assert_eq!(after["data"]["events"][0]["data"]["content"], "m4");
}

#[tokio::test]
async fn read_watermark_is_announced_and_never_goes_back() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");
    let mut bob = hub.connect(&hub.token("bob", "customer")).await.expect("connect");
    for client in [&mut alice, &mut bob] {
        client.request("room:join", json!({"room": "chat:alice:bob"})).await;
    }
    let sent = alice.request("message:send", json!({"room": "chat:alice:bob", "content": "one"})).await;
    alice.request("message:send", json!({"room": "chat:alice:bob", "content": "two"})).await;
    let first_id = sent["data"]["message"]["id"].clone();

    let ack = bob.request("message:read", json!({"room": "chat:alice:bob", "seq": 2})).await;
    assert_eq!(ack["data"]["seq"], 2, "{ack}");
    let event = alice.next_event("message:read").await;
    assert_eq!(event["data"]["userId"], "bob");
    assert_eq!(event["data"]["seq"], 2);

    let ack = bob.request("message:read", json!({"room": "chat:alice:bob", "messageIds": [first_id]})).await;
    assert_eq!(ack["data"]["seq"], 2, "watermark must not go back: {ack}");
    let ack = bob.request("message:read", json!({"room": "chat:alice:bob", "seq": 99})).await;
    assert_eq!(error_code(&ack), "INVALID_DATA");
}

#[tokio::test]
async fn typing_reaches_other_users_but_never_the_senders_own_connections() {
    let hub = spawn_hub().await;
    let token = hub.token("alice", "customer");
    let mut alice_phone = hub.connect(&token).await.expect("connect");
    let mut alice_laptop = hub.connect(&token).await.expect("connect");
    let mut bob = hub.connect(&hub.token("bob", "customer")).await.expect("connect");
    for client in [&mut alice_phone, &mut alice_laptop, &mut bob] {
        client.request("room:join", json!({"room": "chat:alice:bob"})).await;
    }
    // Joins announce themselves to earlier members; drain those before watching for typing.
    alice_phone.drain(QUIET).await;
    alice_laptop.drain(QUIET).await;

    alice_phone.send_json(json!({"action": "typing:start", "data": {"room": "chat:alice:bob"}})).await;

    let event = bob.next_event("typing:start").await;
    assert_eq!(event["data"]["userId"], "alice");
    alice_phone.expect_silence(QUIET).await;
    alice_laptop.expect_silence(QUIET).await;
}

#[tokio::test]
async fn joining_announces_the_user_and_leaving_announces_departure() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");
    let mut bob = hub.connect(&hub.token("bob", "customer")).await.expect("connect");
    alice.request("room:join", json!({"room": "topic:x"})).await;

    let ack = bob.request("room:join", json!({"room": "topic:x"})).await;
    let participants: Vec<&str> = ack["data"]["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["userId"].as_str())
        .collect();
    assert_eq!(participants, ["alice", "bob"]);
    let joined = alice.next_event("room:userJoined").await;
    assert_eq!(joined["data"]["userId"], "bob");

    bob.request("room:leave", json!({"room": "topic:x"})).await;
    let left = alice.next_event("room:userLeft").await;
    assert_eq!(left["data"]["userId"], "bob");
}

#[tokio::test]
async fn granted_rooms_admit_only_granted_users() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("client-1", "customer")).await.expect("connect");
    let mut outsider = hub.connect(&hub.token("mallory", "customer")).await.expect("connect");

    let ack = client.request("room:join", json!({"room": "booking:42"})).await;
    assert_eq!(error_code(&ack), "NOT_FOUND", "no grants yet: {ack}");
    assert!(ack["error"]["message"].as_str().unwrap_or("").starts_with("Booking"), "{ack}");

    hub.grant("booking:42", &["client-1", "owner-1"]).await;
    let ack = client.request("room:join", json!({"room": "booking:42"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = outsider.request("room:join", json!({"room": "booking:42"})).await;
    assert_eq!(error_code(&ack), "FORBIDDEN", "{ack}");
    let ack = outsider.request("message:history", json!({"room": "booking:42"})).await;
    assert_eq!(error_code(&ack), "FORBIDDEN", "{ack}");
}

#[tokio::test]
async fn role_rooms_are_closed_to_other_roles() {
    let hub = spawn_hub().await;
    let mut customer = hub.connect(&hub.token("c1", "customer")).await.expect("connect");

    for room in ["calendar", "admin", "provider:p1", "user:c2"] {
        let ack = customer.request("room:join", json!({"room": room})).await;
        assert_eq!(error_code(&ack), "FORBIDDEN", "{room}: {ack}");
    }
}

#[tokio::test]
async fn presence_is_visible_to_users_sharing_a_room_and_follows_connections() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");
    let mut stranger = hub.connect(&hub.token("zed", "customer")).await.expect("connect");
    let bob_token = hub.token("bob", "customer");
    let mut bob = hub.connect(&bob_token).await.expect("connect");
    for client in [&mut alice, &mut bob] {
        client.request("room:join", json!({"room": "chat:alice:bob"})).await;
    }

    let ack = alice.request("presence:subscribe", json!({"userIds": ["bob"]})).await;
    assert_eq!(ack["data"]["subscribed"], json!(["bob"]), "{ack}");
    assert_eq!(ack["data"]["presences"][0]["status"], "online");
    let ack = stranger.request("presence:get", json!({"userIds": ["bob"]})).await;
    assert_eq!(ack["data"]["forbidden"], json!(["bob"]), "{ack}");

    bob.request("presence:set", json!({"status": "busy", "customStatus": "In a meeting"})).await;
    let changed = alice.next_event("presence:changed").await;
    assert_eq!(changed["data"]["status"], "busy");
    assert_eq!(changed["data"]["customStatus"], "In a meeting");

    // A second connection keeps the chosen status; closing both takes the user offline.
    let mut bob_phone = hub.connect(&bob_token).await.expect("connect");
    let ack = alice.request("presence:get", json!({"userIds": ["bob"]})).await;
    assert_eq!(ack["data"]["presences"][0]["status"], "busy", "{ack}");
    bob.close().await;
    bob_phone.close().await;
    let offline = alice.next_event("presence:changed").await;
    assert_eq!(offline["data"]["status"], "offline", "{offline}");
    assert!(offline["data"]["lastSeen"].is_string(), "{offline}");
}

#[tokio::test]
async fn presence_set_rejects_unknown_statuses() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");
    let ack = alice.request("presence:set", json!({"status": "invisible"})).await;
    assert_eq!(error_code(&ack), "INVALID_DATA");
}

#[tokio::test]
async fn a_full_call_rings_connects_relays_signals_and_ends_with_a_duration() {
    let hub = spawn_hub().await;
    let mut doctor = hub.connect(&hub.token("doc", "provider")).await.expect("connect");
    let mut patient = hub.connect(&hub.token("pat", "customer")).await.expect("connect");
    let mut outsider = hub.connect(&hub.token("eve", "customer")).await.expect("connect");
    for client in [&mut doctor, &mut patient] {
        client.request("room:join", json!({"room": "chat:doc:pat"})).await;
    }

    let ack =
        doctor.request("call:initiate", json!({"recipientId": "pat", "callType": "video", "visitId": "v-1"})).await;
    assert_eq!(ack["data"]["state"], "ringing", "{ack}");
    let call_id = ack["data"]["callId"].as_str().expect("call id").to_owned();
    let incoming = patient.next_event("call:incoming").await;
    assert_eq!(incoming["data"]["callId"], call_id.as_str());
    assert_eq!(incoming["data"]["callerId"], "doc");

    let ack = outsider.request("call:accept", json!({"callId": call_id})).await;
    assert_eq!(error_code(&ack), "NOT_FOUND", "outsiders learn nothing: {ack}");
    let ack = patient.request("call:accept", json!({"callId": call_id})).await;
    assert_eq!(ack["data"]["state"], "accepted", "{ack}");
    doctor.next_event("call:accepted").await;
    let again = patient.request("call:accept", json!({"callId": call_id})).await;
    assert_eq!(error_code(&again), "CONFLICT", "{again}");

    let offer = json!({"type": "offer", "sdp": "v=0..."});
    let ack = doctor.request("call:signal", json!({"callId": call_id, "payload": offer})).await;
    assert_eq!(ack["data"]["relayed"], 1, "{ack}");
    let signal = patient.next_event("call:signal").await;
    assert_eq!(signal["data"]["payload"], offer);
    assert_eq!(signal["data"]["from"], "doc");
    outsider.expect_silence(QUIET).await;

    let ack = patient.request("call:end", json!({"callId": call_id})).await;
    assert_eq!(ack["data"]["state"], "ended", "{ack}");
    let ended = doctor.next_event("call:ended").await;
    assert_eq!(ended["data"]["endedBy"], "pat");
    assert!(ended["data"]["duration"].as_i64().is_some(), "{ended}");
}

#[tokio::test]
async fn an_unanswered_call_becomes_missed_for_both_sides() {
    let hub = crate::helpers::spawn_hub_with(|options| options.config.call_ring_seconds = 1).await;
    let mut doctor = hub.connect(&hub.token("doc", "provider")).await.expect("connect");
    let mut patient = hub.connect(&hub.token("pat", "customer")).await.expect("connect");
    for client in [&mut doctor, &mut patient] {
        client.request("room:join", json!({"room": "chat:doc:pat"})).await;
    }

    let ack = doctor.request("call:initiate", json!({"recipientId": "pat", "callType": "audio"})).await;
    let call_id = ack["data"]["callId"].clone();

    patient.next_event("call:incoming").await;
    let missed = doctor.next_event("call:missed").await;
    assert_eq!(missed["data"]["callId"], call_id);
    patient.next_event("call:missed").await;
    let note = patient.next_event("notification:new").await;
    assert_eq!(note["data"]["kind"], "call:missed");
    let ack = patient.request("notification:unreadCount", json!({})).await;
    assert_eq!(ack["data"]["unreadCount"], 1);
}

#[tokio::test]
async fn notifications_are_listed_and_marked_read_without_drift() {
    let hub = crate::helpers::spawn_hub_with(|options| options.config.call_ring_seconds = 1).await;
    let mut doctor = hub.connect(&hub.token("doc", "provider")).await.expect("connect");
    let mut patient = hub.connect(&hub.token("pat", "customer")).await.expect("connect");
    for client in [&mut doctor, &mut patient] {
        client.request("room:join", json!({"room": "chat:doc:pat"})).await;
    }
    // A missed call is the simplest way for a client alone to produce a notification.
    doctor.request("call:initiate", json!({"recipientId": "pat", "callType": "audio"})).await;
    let note = patient.next_event("notification:new").await;
    let id = note["data"]["id"].clone();

    let list = patient.request("notification:list", json!({"unreadOnly": true})).await;
    assert_eq!(list["data"]["notifications"][0]["id"], id, "{list}");
    let first = patient.request("notification:read", json!({"notificationId": id})).await;
    let retry = patient.request("notification:read", json!({"notificationId": id})).await;
    assert_eq!(first["data"]["updated"], 1);
    assert_eq!(retry["data"]["updated"], 0);
    assert_eq!(retry["data"]["unreadCount"], 0);
    let bad = patient.request("notification:read", json!({})).await;
    assert_eq!(error_code(&bad), "INVALID_DATA");
}
