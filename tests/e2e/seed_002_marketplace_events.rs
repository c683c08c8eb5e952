//! Seed `002_…` (FixRX service marketplace), replayed on Bellhop.
//!
//! In the seed, controllers call emitters (`emitServiceCreated(io, {service, actor})`…) that send `service:*`,
//! `booking:*` and `payment:*` events to the Socket.IO rooms `user:{userId}` and `vendor:{vendorId}`, and the server
//! only accepts the configured `CLIENT_ORIGIN`. Here each emitter is one `POST /internal/emit` naming those rooms;
//! a vendor's staff reach `vendor:{id}` through a signed `rooms` claim or a grant. These tests prove each family of
//! events reaches exactly the user and vendor it names (once per connection, even when a connection is in both
//! rooms), that a payment failure can also leave a notification with an unread count, that vendor and user rooms
//! are closed to everyone else, and that the origin allow-list is enforced on the socket and the HTTP API.
//! The smoke-test CLI of the seed is covered in `cli.rs`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::helpers::{TestHub, error_code, spawn_hub, spawn_hub_with};

const QUIET: Duration = Duration::from_millis(300);

/// A vendor staff member whose token the platform signed with the vendor's room, so the socket joins it at connect.
fn vendor_staff_token(hub: &TestHub, sub: &str, vendor: &str) -> String {
    let mut claims = TestHub::claims(sub);
    claims.role = Some("vendor".to_owned());
    claims.rooms = Some(vec![format!("vendor:{vendor}")]);
    hub.token_with(&claims)
}

#[tokio::test]
async fn service_events_reach_the_vendor_room_and_the_acting_user_and_nobody_else() {
    let hub = spawn_hub().await;
    let mut vendor = hub.connect(&vendor_staff_token(&hub, "staff-1", "v-77")).await.expect("connect");
    let mut user = hub.connect(&hub.token("u-1", "customer")).await.expect("connect");
    let mut other_vendor = hub.connect(&vendor_staff_token(&hub, "staff-9", "v-99")).await.expect("connect");
    let mut other_user = hub.connect(&hub.token("u-2", "customer")).await.expect("connect");

    for event in ["service:created", "service:updated", "service:status_changed"] {
        let data = json!({"service": {"id": "svc-5", "status": "active"}, "actor": {"id": "u-1", "role": "customer"}});
        let (status, report) =
            hub.emit(json!({"event": event, "data": data, "rooms": ["vendor:v-77", "user:u-1"]})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["delivered"], 2, "{event}: {report}");

        let at_vendor = vendor.next_event(event).await;
        assert_eq!((at_vendor["room"].clone(), at_vendor["data"].clone()), (json!("vendor:v-77"), data.clone()));
        let at_user = user.next_event(event).await;
        assert_eq!((at_user["room"].clone(), at_user["data"].clone()), (json!("user:u-1"), data));
    }
    for client in [&mut vendor, &mut user, &mut other_vendor, &mut other_user] {
        client.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn booking_events_reach_a_connection_in_both_rooms_once_framed_for_the_first_room_named() {
    let hub = spawn_hub().await;
    hub.grant("vendor:v-77", &["vendor-owner"]).await;
    // The vendor's owner also booked a service of their own vendor: one socket in both target rooms.
    let mut owner = hub.connect(&hub.token("vendor-owner", "customer")).await.expect("connect");
    let ack = owner.request("room:join", json!({"room": "vendor:v-77"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut customer = hub.connect(&hub.token("u-1", "customer")).await.expect("connect");

    for event in ["booking:created", "booking:status_changed", "booking:cancelled"] {
        let body = json!({
            "event": event,
            "data": {"bookingId": "bk-3", "status": "confirmed"},
            "rooms": ["vendor:v-77", "user:vendor-owner", "user:u-1"],
        });
        let (status, report) = hub.emit(body).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!((report["recipients"].clone(), report["delivered"].clone()), (json!(2), json!(2)), "{report}");
        assert_eq!(owner.next_event(event).await["room"], "vendor:v-77");
        assert_eq!(customer.next_event(event).await["room"], "user:u-1");
    }
    owner.expect_silence(QUIET).await;
    customer.expect_silence(QUIET).await;
}

#[tokio::test]
async fn payment_events_reach_the_payer_and_a_failure_leaves_a_notification_with_an_unread_count() {
    let hub = spawn_hub().await;
    let mut payer = hub.connect(&hub.token("u-1", "customer")).await.expect("connect");
    let mut vendor = hub.connect(&vendor_staff_token(&hub, "staff-1", "v-77")).await.expect("connect");

    let (status, _) = hub
        .emit(json!({"event": "payment:completed", "data": {"paymentId": "p-1", "amount": 4900}, "rooms": ["user:u-1", "vendor:v-77"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payer.next_event("payment:completed").await["data"]["amount"], 4900);
    assert_eq!(vendor.next_event("payment:completed").await["room"], "vendor:v-77");

    let (status, report) = hub
        .emit(json!({
            "event": "payment:failed",
            "data": {"paymentId": "p-2", "reason": "card_declined"},
            "users": ["u-1"],
            "notification": {"title": "Payment failed", "message": "Your card was declined", "kind": "payment:failed"},
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["notified"], 1, "{report}");
    let failed = payer.next_event("payment:failed").await;
    assert_eq!(failed["data"]["reason"], "card_declined");
    assert!(failed.get("room").is_none(), "reached as a user, not through a room: {failed}");
    let note = payer.next_event("notification:new").await;
    assert_eq!(note["data"]["title"], "Payment failed");
    assert_eq!(note["data"]["kind"], "payment:failed");
    assert_eq!(note["data"]["unreadCount"], 1);
    assert_eq!(payer.request("notification:unreadCount", json!({})).await["data"]["unreadCount"], 1);
    vendor.expect_silence(QUIET).await;
    payer.expect_silence(QUIET).await;
}

#[tokio::test]
async fn vendor_and_user_rooms_are_closed_to_everyone_they_do_not_name() {
    let hub = spawn_hub().await;
    hub.grant("vendor:v-77", &["vendor-owner"]).await;
    let mut user = hub.connect(&hub.token("u-1", "customer")).await.expect("connect");

    // The seed's smoke client could `join vendor 77` or `join user 123` as anyone; Bellhop checks every join.
    for room in ["vendor:v-77", "user:u-2"] {
        let ack = user.request("room:join", json!({"room": room})).await;
        assert_eq!(error_code(&ack), "FORBIDDEN", "{room}: {ack}");
    }
    let ack = user.request("room:join", json!({"room": "vendor:v-1000"})).await;
    assert_eq!(error_code(&ack), "NOT_FOUND", "a vendor nobody was granted: {ack}");
    let (_, report) = hub.emit(json!({"event": "booking:created", "rooms": ["vendor:v-77", "user:u-2"]})).await;
    assert_eq!(report["recipients"], 0, "{report}");
    user.expect_silence(QUIET).await;
}

#[tokio::test]
async fn only_the_configured_client_origin_may_open_a_socket_or_call_the_http_api() {
    let hub = spawn_hub_with(|options| options.config.cors_origins = vec!["http://localhost:3000".to_owned()]).await;
    let token = hub.token("u-1", "customer");
    let with_origin = |origin: &'static str| {
        let mut request = hub.ws_request(Some(&format!("token={token}")));
        request.headers_mut().insert("origin", http::HeaderValue::from_static(origin));
        request
    };

    let mut allowed = hub.connect_raw(with_origin("http://localhost:3000")).await.expect("allowed origin");
    let refused = hub.connect_raw(with_origin("https://evil.example")).await;

    assert_eq!(allowed.ping().await["type"], "pong");
    match refused {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("expected a 403 refusal, got {other}"),
        Ok(_) => panic!("a socket from an unlisted origin was accepted"),
    }
    let preflight = |origin: &'static str| {
        hub.http()
            .request(reqwest::Method::OPTIONS, format!("{}/health", hub.http_url))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let ok = preflight("http://localhost:3000").await.expect("preflight");
    assert_eq!(
        ok.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("http://localhost:3000")
    );
    let other = preflight("https://evil.example").await.expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none(), "{:?}", other.headers());
}
