//! Seed `003_…` (telehealth visits), replayed on Bellhop.
//!
//! The seed is the widest: `connected` with the socket and user ids, `room:join` answered with participants and
//! announced as `room:userJoined`, `message:send` with an ack and `message:new`, `message:history`, typing, presence
//! (get, set, subscribe, changed through online/away/busy/in_call/offline), notifications with unread counts, calls
//! (`call:initiate/accept/end`, `call:incoming/accepted/ended` with a duration, missed after the ring time) with a
//! WebRTC signalling relay, server-side `emitToUser` / `emitToRoom` / `broadcast`, the room id formats `chat:a:b`,
//! `visit:x`, `topic:x`, and the auth errors `Invalid token` / `Token expired`. Bellhop's protocol is close to the
//! seed's own names, so these tests follow one visit between a doctor and a patient through all of it and prove each
//! step reaches the right party with the fields the seed's client reads, and nobody else.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::helpers::{TestClient, TestHub, error_code, spawn_hub, spawn_hub_with};

const QUIET: Duration = Duration::from_millis(300);
const VISIT: &str = "visit:visit-123";
const CHAT: &str = "chat:doc-1:pat-1";

/// Grants the visit room to the doctor and the patient, connects both and joins them to it, doctor first.
async fn visit(hub: &TestHub) -> (TestClient, TestClient) {
    hub.grant(VISIT, &["doc-1", "pat-1"]).await;
    let mut doctor = hub.connect(&named_token(hub, "doc-1", "provider", "Dr Lee")).await.expect("connect");
    let mut patient = hub.connect(&named_token(hub, "pat-1", "customer", "Pat Smith")).await.expect("connect");
    for side in [&mut doctor, &mut patient] {
        let ack = side.request("room:join", json!({"room": VISIT})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    doctor.next_event("room:userJoined").await;
    (doctor, patient)
}

fn named_token(hub: &TestHub, sub: &str, role: &str, name: &str) -> String {
    let mut claims = TestHub::claims(sub);
    claims.role = Some(role.to_owned());
    claims.name = Some(name.to_owned());
    hub.token_with(&claims)
}

fn user_ids(list: &Value) -> Vec<&str> {
    list.as_array().map(|items| items.iter().filter_map(|p| p["userId"].as_str()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn connected_carries_the_ids_and_joining_the_visit_answers_participants_and_announces_the_user() {
    let hub = spawn_hub().await;
    hub.grant(VISIT, &["doc-1", "pat-1"]).await;
    let mut doctor = hub.connect(&named_token(&hub, "doc-1", "provider", "Dr Lee")).await.expect("connect");
    let mut patient = hub.connect(&named_token(&hub, "pat-1", "customer", "Pat Smith")).await.expect("connect");

    patient.send_json(json!({"action": "hello"})).await;
    let connected = patient.next_event("connected").await;
    assert!(connected["data"]["connectionId"].as_str().is_some_and(|id| !id.is_empty()), "{connected}");
    assert_eq!(connected["data"]["user"]["id"], "pat-1");
    assert_eq!(connected["data"]["user"]["role"], "customer");
    let rooms: BTreeSet<&str> =
        connected["data"]["rooms"].as_array().expect("rooms").iter().filter_map(Value::as_str).collect();
    assert_eq!(rooms, BTreeSet::from(["user:pat-1", "customer:pat-1"]));

    doctor.request("room:join", json!({"room": VISIT})).await;
    let ack = patient.request("room:join", json!({"room": VISIT})).await;
    assert_eq!(ack["data"]["room"], VISIT);
    assert_eq!(user_ids(&ack["data"]["participants"]), ["doc-1", "pat-1"], "{ack}");
    let joined = doctor.next_event("room:userJoined").await;
    assert_eq!(joined["room"], VISIT);
    assert_eq!(joined["data"]["userId"], "pat-1");
    assert_eq!(joined["data"]["user"]["role"], "customer");
    assert_eq!(joined["data"]["user"]["name"], "Pat Smith");
    patient.expect_silence(QUIET).await;
}

#[tokio::test]
async fn visit_messages_are_acked_with_their_id_delivered_to_the_other_side_and_kept_in_history() {
    let hub = spawn_hub().await;
    let (mut doctor, mut patient) = visit(&hub).await;

    let ack = patient.request("message:send", json!({"room": VISIT, "content": "Hello, doctor!"})).await;

    let message = &ack["data"]["message"];
    assert!(message["id"].as_str().is_some_and(|id| !id.is_empty()), "{ack}");
    let new = doctor.next_event("message:new").await;
    assert_eq!(new["data"]["id"], message["id"]);
    assert_eq!(new["data"]["sender"]["id"], "pat-1");
    assert_eq!(new["data"]["content"], "Hello, doctor!");
    doctor.request("message:send", json!({"room": VISIT, "content": "Hello Pat, how are you feeling?"})).await;
    patient.next_event("message:new").await;
    let history = patient.request("message:history", json!({"room": VISIT})).await;
    let entries: Vec<(u64, &str)> = history["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap_or(0), e["data"]["sender"]["id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(entries, [(1, "pat-1"), (2, "doc-1")], "{history}");
    patient.expect_silence(QUIET).await;
    doctor.expect_silence(QUIET).await;
}

#[tokio::test]
async fn direct_chat_rooms_use_sorted_ids_and_carry_typing_indicators_with_the_role() {
    let hub = spawn_hub().await;
    let mut doctor = hub.connect(&hub.token("doc-1", "provider")).await.expect("connect");
    let mut patient = hub.connect(&hub.token("pat-1", "customer")).await.expect("connect");
    let mut intruder = hub.connect(&hub.token("eve", "customer")).await.expect("connect");

    let unsorted = patient.request("room:join", json!({"room": "chat:pat-1:doc-1"})).await;
    assert_eq!(error_code(&unsorted), "INVALID_ROOM", "{unsorted}");
    let foreign = intruder.request("room:join", json!({"room": CHAT})).await;
    assert_eq!(error_code(&foreign), "FORBIDDEN", "{foreign}");
    for side in [&mut doctor, &mut patient] {
        assert_eq!(side.request("room:join", json!({"room": CHAT})).await["ok"], true);
    }
    doctor.next_event("room:userJoined").await;

    patient.send_json(json!({"action": "typing:start", "data": {"room": CHAT}})).await;
    let typing = doctor.next_event("typing:start").await;
    assert_eq!(typing["data"], json!({"room": CHAT, "userId": "pat-1", "name": null, "role": "customer"}));
    patient.send_json(json!({"action": "typing:stop", "data": {"room": CHAT}})).await;
    assert_eq!(doctor.next_event("typing:stop").await["data"]["userId"], "pat-1");
    patient.expect_silence(QUIET).await;
    intruder.expect_silence(QUIET).await;
}

#[tokio::test]
async fn the_doctor_follows_the_patients_presence_through_away_busy_and_offline() {
    let hub = spawn_hub().await;
    let (mut doctor, mut patient) = visit(&hub).await;

    let ack = doctor.request("presence:subscribe", json!({"userIds": ["pat-1", "stranger"]})).await;
    assert_eq!(ack["data"]["subscribed"], json!(["pat-1"]), "{ack}");
    assert_eq!(ack["data"]["forbidden"], json!(["stranger"]), "{ack}");
    assert_eq!(ack["data"]["presences"][0]["status"], "online");

    for status in ["away", "busy"] {
        patient.request("presence:set", json!({"status": status, "customStatus": "In the waiting room"})).await;
        let changed = doctor.next_event("presence:changed").await;
        assert_eq!(changed["data"]["userId"], "pat-1");
        assert_eq!(changed["data"]["status"], status);
        assert_eq!(changed["data"]["customStatus"], "In the waiting room");
    }
    let got = doctor.request("presence:get", json!({"userIds": ["pat-1"]})).await;
    assert_eq!(got["data"]["presences"][0]["status"], "busy", "{got}");
    patient.close().await;
    let offline = doctor.next_event("presence:changed").await;
    assert_eq!(
        (offline["data"]["status"].clone(), offline["data"]["online"].clone()),
        (json!("offline"), json!(false))
    );
}

#[tokio::test]
async fn server_notifications_reach_the_user_with_unread_counts_and_are_marked_read() {
    let hub = spawn_hub().await;
    let (_doctor, mut patient) = visit(&hub).await;

    // The seed's `emitToUser('pat-1', 'notification:new', {title, message})`.
    let (status, report) = hub
        .emit(json!({
            "event": "visit:reminder",
            "data": {"visitId": "visit-123", "startsIn": 10},
            "users": ["pat-1"],
            "notification": {"title": "Visit soon", "message": "Your visit starts in 10 minutes"},
        }))
        .await;

    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(patient.next_event("visit:reminder").await["data"]["startsIn"], 10);
    let note = patient.next_event("notification:new").await;
    assert_eq!(
        (note["data"]["title"].clone(), note["data"]["message"].clone()),
        (json!("Visit soon"), json!("Your visit starts in 10 minutes"))
    );
    assert_eq!(note["data"]["unreadCount"], 1);
    assert_eq!(note["data"]["read"], false);
    assert_eq!(patient.request("notification:unreadCount", json!({})).await["data"]["unreadCount"], 1);
    let read = patient.request("notification:read", json!({"notificationId": note["data"]["id"]})).await;
    assert_eq!(read["data"], json!({"updated": 1, "unreadCount": 0}));
}

#[tokio::test]
async fn emit_to_user_emit_to_room_and_broadcast_reach_exactly_their_audiences() {
    let hub = spawn_hub_with(|options| options.config.broadcast_enabled = true).await;
    let mut doctor = hub.connect(&hub.token("doc-1", "provider")).await.expect("connect");
    let mut patient = hub.connect(&hub.token("pat-1", "customer")).await.expect("connect");
    let mut other = hub.connect(&hub.token("pat-2", "customer")).await.expect("connect");
    for side in [&mut doctor, &mut patient] {
        side.request("room:join", json!({"room": CHAT})).await;
    }
    other.request("room:join", json!({"room": "topic:appointments"})).await;
    doctor.drain(QUIET).await;

    hub.emit(json!({"event": "lab:ready", "data": {"labId": "l-1"}, "users": ["pat-1"]})).await;
    assert_eq!(patient.next_event("lab:ready").await["data"]["labId"], "l-1");
    hub.emit(json!({"event": "message:new", "data": {"id": "msg-123", "senderId": "doc-1"}, "rooms": [CHAT]})).await;
    assert_eq!(doctor.next_event("message:new").await["room"], CHAT);
    assert_eq!(patient.next_event("message:new").await["data"]["id"], "msg-123");
    hub.emit(json!({"event": "slots:changed", "rooms": ["topic:appointments"]})).await;
    other.next_event("slots:changed").await;
    doctor.expect_silence(QUIET).await;
    patient.expect_silence(QUIET).await;

    let (_, report) =
        hub.emit(json!({"event": "system:maintenance", "data": {"message": "in 10 minutes"}, "broadcast": true})).await;
    assert_eq!(report["delivered"], 3, "{report}");
    for client in [&mut doctor, &mut patient, &mut other] {
        assert_eq!(client.next_event("system:maintenance").await["data"]["message"], "in 10 minutes");
        client.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn a_video_visit_call_rings_every_patient_device_connects_relays_both_ways_and_ends_with_a_duration() {
    let hub = spawn_hub().await;
    let (mut doctor, mut patient) = visit(&hub).await;
    let mut patient_phone = hub.connect(&hub.token("pat-1", "customer")).await.expect("connect");
    let mut watcher = hub.connect(&hub.token("nurse-1", "provider")).await.expect("connect");
    hub.grant(VISIT, &["nurse-1"]).await;
    watcher.request("room:join", json!({"room": VISIT})).await;
    watcher.request("presence:subscribe", json!({"userIds": ["doc-1"]})).await;
    watcher.drain(QUIET).await;

    let ack = doctor
        .request("call:initiate", json!({"recipientId": "pat-1", "callType": "video", "visitId": "visit-123"}))
        .await;
    assert_eq!(ack["data"]["state"], "ringing", "{ack}");
    let call_id = ack["data"]["callId"].as_str().expect("call id").to_owned();
    for device in [&mut patient, &mut patient_phone] {
        let incoming = device.next_event("call:incoming").await;
        assert_eq!(incoming["data"]["callId"], call_id.as_str());
        assert_eq!(incoming["data"]["callerId"], "doc-1");
        assert_eq!(incoming["data"]["callType"], "video");
        assert_eq!(incoming["data"]["visitId"], "visit-123");
        assert_eq!(incoming["data"]["caller"]["name"], "Dr Lee");
    }

    let accepted = patient.request("call:accept", json!({"callId": call_id})).await;
    assert_eq!(accepted["data"]["state"], "accepted", "{accepted}");
    assert_eq!(doctor.next_event("call:accepted").await["data"]["acceptedBy"], "pat-1");
    // The phone stops ringing: it learns another device answered.
    assert_eq!(patient_phone.next_event("call:accepted").await["data"]["callId"], call_id.as_str());
    assert_eq!(watcher.next_event("presence:changed").await["data"]["status"], "in_call");

    let offer = json!({"type": "offer", "sdp": "v=0 offer"});
    let answer = json!({"type": "answer", "sdp": "v=0 answer"});
    doctor.request("call:signal", json!({"callId": call_id, "payload": offer})).await;
    assert_eq!(
        patient.next_event("call:signal").await["data"],
        json!({"callId": call_id, "from": "doc-1", "payload": offer})
    );
    patient.request("call:signal", json!({"callId": call_id, "payload": answer})).await;
    assert_eq!(doctor.next_event("call:signal").await["data"]["payload"], answer);

    let ended = doctor.request("call:end", json!({"callId": call_id})).await;
    assert_eq!(ended["data"]["state"], "ended", "{ended}");
    let told = patient.next_event("call:ended").await;
    assert_eq!(told["data"]["endedBy"], "doc-1");
    assert_eq!(told["data"]["duration"], ended["data"]["duration"]);
    assert!(told["data"]["duration"].as_i64().is_some_and(|d| d >= 0), "{told}");
    assert_eq!(watcher.next_event("presence:changed").await["data"]["status"], "online");
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn an_unanswered_visit_call_is_missed_after_the_ring_time_and_leaves_the_patient_a_notification() {
    let hub = spawn_hub_with(|options| options.config.call_ring_seconds = 1).await;
    let (mut doctor, mut patient) = visit(&hub).await;

    let ack = doctor
        .request("call:initiate", json!({"recipientId": "pat-1", "callType": "video", "visitId": "visit-123"}))
        .await;
    let call_id = ack["data"]["callId"].clone();
    assert_eq!(patient.next_event("call:incoming").await["data"]["ringSeconds"], 1);

    let expected = json!({"callId": call_id, "callerId": "doc-1", "recipientId": "pat-1", "callType": "video"});
    assert_eq!(doctor.next_event("call:missed").await["data"], expected);
    assert_eq!(patient.next_event("call:missed").await["data"], expected);
    let note = patient.next_event("notification:new").await;
    assert_eq!(note["data"]["title"], "Missed call");
    assert_eq!(note["data"]["message"], "You missed a video call");
    assert_eq!(note["data"]["data"], json!({"callId": call_id, "callerId": "doc-1"}));
    let late = patient.request("call:accept", json!({"callId": call_id})).await;
    assert_eq!(error_code(&late), "CONFLICT", "{late}");
    doctor.expect_silence(QUIET).await;
}

#[tokio::test]
async fn expired_and_invalid_tokens_are_refused_at_the_handshake_and_explained_with_the_seeds_messages() {
    let hub = spawn_hub().await;
    let mut claims = TestHub::claims("pat-1");
    claims.exp = chrono::Utc::now().timestamp() - 3600;
    let expired = hub.token_with(&claims);
    let cases = [
        (expired.as_str(), "TOKEN_EXPIRED", "Authentication error: Token expired"),
        ("not.a.jwt", "INVALID_TOKEN", "Authentication error: Invalid token"),
    ];

    for (token, code, message) in cases {
        match hub.connect(token).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 403, "{code}"),
            Err(other) => panic!("expected a 403 refusal for {code}, got {other}"),
            Ok(_) => panic!("a socket with a bad token ({code}) was accepted"),
        }
        // A handshake refusal cannot say why; `GET /me` with the same token does, in the seed's words.
        let (status, body) = hub.client_call(Method::GET, "/me", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({"error": {"code": code, "message": message}}));
    }
    assert!(hub.connection_ids().is_empty());
}
