//! Seed `001_…` (Appointyify client ↔ business chat), replayed on Bellhop.
//!
//! In the seed, a client and the business owner of a booking `joinBooking`, `sendMessage` and `markAsRead` over
//! Socket.IO, receive `newMessage` with a full message object (sender `{_id, name, email}`, ISO 8601 `createdAt` /
//! `updatedAt`) and `messagesMarkedAsRead`, and get an `error` event (`Booking not found`, `Unauthorized`) otherwise;
//! history, conversations and mark-read also exist over REST. Here the platform grants the booking room
//! `booking:{id}` to its client and owner through the internal API, and the chat uses `room:join`, `message:send`,
//! `message:read` and the HTTP client routes. These tests prove the message object carries the sender's details
//! from the token and ISO 8601 times, that reading is confirmed to the reader and announced to the other side, that
//! the business sees all its bookings as conversations, and that an outsider is refused and learns nothing.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestHub, error_code, spawn_hub};

const QUIET: Duration = Duration::from_millis(300);

/// A token carrying the profile the seed's message object shows for its sender.
fn token_for(hub: &TestHub, sub: &str, role: &str, name: &str, email: &str) -> String {
    let mut claims = TestHub::claims(sub);
    claims.role = Some(role.to_owned());
    claims.name = Some(name.to_owned());
    claims.email = Some(email.to_owned());
    hub.token_with(&claims)
}

fn is_iso_utc(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test]
async fn client_and_business_owner_chat_in_their_booking_with_full_sender_details_and_iso_times() {
    let hub = spawn_hub().await;
    let booking = "booking:507f1f77bcf86cd799439013";
    hub.grant(booking, &["client-1", "owner-1"]).await;
    let mut client = hub
        .connect(&token_for(&hub, "client-1", "customer", "John Doe", "john.doe@example.com"))
        .await
        .expect("connect");
    let mut owner = hub
        .connect(&token_for(&hub, "owner-1", "provider", "Paws Salon", "hello@paws.example"))
        .await
        .expect("connect");
    for side in [&mut client, &mut owner] {
        let ack = side.request("room:join", json!({"room": booking})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    client.next_event("room:userJoined").await;

    let text = "Hi, I would like to confirm my appointment time.";
    let sent = client
        .request("message:send", json!({"room": booking, "content": text, "metadata": {"senderType": "client"}}))
        .await;

    assert_eq!(sent["ok"], true, "{sent}");
    let event = owner.next_event("message:new").await;
    assert_eq!(event["room"], booking);
    assert_eq!(event["seq"], 1);
    let message = &event["data"];
    assert_eq!(message["id"], sent["data"]["message"]["id"], "the ack and the event describe one message");
    assert_eq!(message["room"], booking);
    assert_eq!(
        message["sender"],
        json!({"id": "client-1", "name": "John Doe", "email": "john.doe@example.com", "role": "customer"})
    );
    assert_eq!(message["content"], text);
    assert_eq!(message["metadata"], json!({"senderType": "client"}));
    assert!(is_iso_utc(&message["createdAt"]), "{message}");
    assert_eq!(message["createdAt"], message["updatedAt"], "a new message was never edited");
    client.expect_silence(QUIET).await;

    owner
        .request(
            "message:send",
            json!({"room": booking, "content": "Confirmed for 2pm.", "metadata": {"senderType": "business"}}),
        )
        .await;
    let reply = client.next_event("message:new").await;
    assert_eq!(reply["seq"], 2);
    assert_eq!(reply["data"]["sender"]["name"], "Paws Salon");
    assert_eq!(reply["data"]["metadata"]["senderType"], "business");
    owner.expect_silence(QUIET).await;
}

#[tokio::test]
async fn marking_messages_read_by_id_is_confirmed_to_the_reader_and_announced_to_the_sender() {
    let hub = spawn_hub().await;
    let booking = "booking:b-14";
    hub.grant(booking, &["client-1", "owner-1"]).await;
    let mut client = hub.connect(&hub.token("client-1", "customer")).await.expect("connect");
    let mut owner = hub.connect(&hub.token("owner-1", "provider")).await.expect("connect");
    client.request("room:join", json!({"room": booking})).await;
    owner.request("room:join", json!({"room": booking})).await;
    let mut ids = Vec::new();
    for text in ["Your groomer is Ana.", "Please arrive 10 minutes early."] {
        let ack = owner.request("message:send", json!({"room": booking, "content": text})).await;
        ids.push(ack["data"]["message"]["id"].clone());
    }
    client.drain(QUIET).await;

    // The seed's `markAsRead {messageIds}` and its `messagesMarkedAsRead {messageIds}` confirmation.
    let confirmation = client.request("message:read", json!({"room": booking, "messageIds": ids})).await;

    assert_eq!(confirmation["ok"], true, "{confirmation}");
    assert_eq!(confirmation["data"], json!({"room": booking, "seq": 2, "messageIds": ids}));
    let receipt = owner.next_event("message:read").await;
    assert_eq!(receipt["room"], booking);
    assert_eq!((receipt["data"]["userId"].clone(), receipt["data"]["seq"].clone()), (json!("client-1"), json!(2)));
    assert!(is_iso_utc(&receipt["data"]["readAt"]), "{receipt}");
    client.expect_silence(QUIET).await;
    let unknown = client.request("message:read", json!({"room": booking, "messageIds": ["no-such-message"]})).await;
    assert_eq!(error_code(&unknown), "NOT_FOUND", "{unknown}");
}

#[tokio::test]
async fn history_client_conversations_and_the_business_inbox_come_from_the_http_api() {
    let hub = spawn_hub().await;
    hub.grant("booking:b-1", &["client-1", "owner-1"]).await;
    hub.grant("booking:b-2", &["client-2", "owner-1"]).await;
    let client_token = hub.token("client-1", "customer");
    let owner_token = hub.token("owner-1", "provider");
    let mut client = hub.connect(&client_token).await.expect("connect");
    let mut other_client = hub.connect(&hub.token("client-2", "customer")).await.expect("connect");
    client.request("room:join", json!({"room": "booking:b-1"})).await;
    other_client.request("room:join", json!({"room": "booking:b-2"})).await;
    client.request("message:send", json!({"room": "booking:b-1", "content": "Can I bring two dogs?"})).await;
    other_client.request("message:send", json!({"room": "booking:b-2", "content": "Running late"})).await;
    other_client.request("message:send", json!({"room": "booking:b-2", "content": "Sorry!"})).await;

    // GET /api/messages/booking/:bookingId
    let (status, page) = hub.client_call(Method::GET, "/rooms/booking:b-1/messages", &client_token, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["room"], "booking:b-1");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["events"][0]["event"], "message:new");
    assert_eq!(page["events"][0]["data"]["content"], "Can I bring two dogs?");
    assert_eq!(page["events"][0]["data"]["sender"]["id"], "client-1");
    assert!(is_iso_utc(&page["events"][0]["createdAt"]), "{page}");

    // GET /api/messages/my-conversations: the client sees only its own booking, and nothing unread of its own.
    let (_, mine) = hub.client_call(Method::GET, "/me/conversations", &client_token, None).await;
    let rooms: Vec<&str> =
        mine["conversations"].as_array().expect("list").iter().filter_map(|c| c["room"].as_str()).collect();
    assert_eq!(rooms, ["booking:b-1"], "{mine}");
    assert_eq!(mine["conversations"][0]["unreadCount"], 0, "{mine}");

    // GET /api/messages/business/:businessId/conversations is the owner's own list: newest activity first.
    let (status, inbox) = hub.client_call(Method::GET, "/me/conversations", &owner_token, None).await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    let summary: Vec<(&str, u64)> = inbox["conversations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| (c["room"].as_str().unwrap_or(""), c["unreadCount"].as_u64().unwrap_or(u64::MAX)))
        .collect();
    assert_eq!(summary, [("booking:b-2", 2), ("booking:b-1", 1)], "{inbox}");

    // POST /api/messages/mark-read: the read watermark, announced to the room like the socket action.
    let (status, read) = hub
        .client_call(Method::POST, "/messages/read", &owner_token, Some(json!({"room": "booking:b-2", "seq": 2})))
        .await;
    assert_eq!((status, read), (StatusCode::OK, json!({"room": "booking:b-2", "seq": 2})));
    let receipt = other_client.next_event("message:read").await;
    assert_eq!(receipt["data"]["userId"], "owner-1");
    let (_, inbox) = hub.client_call(Method::GET, "/me/conversations", &owner_token, None).await;
    assert_eq!(inbox["conversations"][0]["unreadCount"], 0, "{inbox}");
    assert_eq!(inbox["conversations"][1]["unreadCount"], 1, "{inbox}");
    client.expect_silence(QUIET).await;
}

#[tokio::test]
async fn an_outsider_is_refused_everywhere_and_an_unknown_booking_is_not_found() {
    let hub = spawn_hub().await;
    let booking = "booking:b-9";
    hub.grant(booking, &["client-1", "owner-1"]).await;
    let mut client = hub.connect(&hub.token("client-1", "customer")).await.expect("connect");
    client.request("room:join", json!({"room": booking})).await;
    let outsider_token = hub.token("mallory", "customer");
    let mut outsider = hub.connect(&outsider_token).await.expect("connect");

    let join = outsider.request("room:join", json!({"room": booking})).await;
    assert_eq!(error_code(&join), "FORBIDDEN", "{join}");
    assert!(join["error"]["message"].as_str().is_some_and(|m| m.starts_with("Unauthorized")), "{join}");
    // The seed's clients send without a callback and listen for `error`: a frame without an id is answered so.
    outsider.send_json(json!({"action": "message:send", "data": {"room": booking, "content": "let me in"}})).await;
    let error = outsider.next_event("error").await;
    assert_eq!(error["data"]["code"], "FORBIDDEN", "{error}");
    let missing = outsider.request("room:join", json!({"room": "booking:does-not-exist"})).await;
    assert_eq!(error_code(&missing), "NOT_FOUND", "{missing}");
    assert_eq!(missing["error"]["message"], "Booking booking:does-not-exist not found");
    let (status, body) =
        hub.client_call(Method::GET, &format!("/rooms/{booking}/messages"), &outsider_token, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{body}");

    client.expect_silence(QUIET).await;
    let (_, info) = hub.internal(Method::GET, &format!("/internal/rooms/{booking}"), None).await;
    assert_eq!(info["connections"], 1, "the outsider never became a member: {info}");
}
