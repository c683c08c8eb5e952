//! Seed `004_…` (Easy!Appointments mobile app), replayed on Bellhop.
//!
//! In the seed, the mobile app connects to `ws://host/ws` with a JWT signed by the `JWT_SECRET` it shares with the
//! backend, is subscribed by role (admin → `admin`, `calendar`; provider → `provider_{id}`, `calendar`; secretary →
//! `secretary_{id}`, `calendar`; customer → `customer_{id}`), receives `appointment.created/updated/cancelled` and
//! `calendar.sync`, and operators read `/health` with `active_connections, active_rooms, total_connections,
//! total_messages, uptime_seconds`. These tests prove the default role templates subscribe each role to exactly its
//! rooms, that the seed's underscore room names are one `ROLE_ROOMS` setting away, that each event reaches the
//! roles it is meant for and no other, that only tokens signed with the shared secret are let in, that the socket
//! can live under the seed's `/ws` path, and that `/health` counts what happened.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::rooms::RoleRooms;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::helpers::{RECV_TIMEOUT, TestClient, TestHub, spawn_hub, spawn_hub_with};

const QUIET: Duration = Duration::from_millis(300);

/// One connection per role of the seed's table, in the order admin, provider, secretary, customer.
async fn clinic(hub: &TestHub) -> [TestClient; 4] {
    [
        hub.connect(&hub.token("1", "admin")).await.expect("connect admin"),
        hub.connect(&hub.token("7", "provider")).await.expect("connect provider"),
        hub.connect(&hub.token("8", "secretary")).await.expect("connect secretary"),
        hub.connect(&hub.token("9", "customer")).await.expect("connect customer"),
    ]
}

async fn rooms_of(client: &mut TestClient) -> BTreeSet<String> {
    let ack = client.request("hello", json!({})).await;
    ack["data"]["rooms"].as_array().expect("rooms").iter().filter_map(Value::as_str).map(str::to_owned).collect()
}

fn set(rooms: &[&str]) -> BTreeSet<String> {
    rooms.iter().map(|r| (*r).to_owned()).collect()
}

async fn health(hub: &TestHub) -> Value {
    let response = hub.http().get(format!("{}/health", hub.http_url)).send().await.expect("health");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("health json")
}

/// The `/health` stats once `ready` holds for them, or the last ones read after [`RECV_TIMEOUT`]. `$disconnect`
/// moves the counters after the connection record is gone, and no event marks that moment, so this polls.
async fn health_once(hub: &TestHub, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let stats = health(hub).await["stats"].clone();
        if ready(&stats) || tokio::time::Instant::now() >= deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_role_is_subscribed_at_connect_to_exactly_the_rooms_of_the_seeds_table() {
    let hub = spawn_hub().await;
    let [mut admin, mut provider, mut secretary, mut customer] = clinic(&hub).await;

    assert_eq!(rooms_of(&mut admin).await, set(&["user:1", "admin", "calendar"]));
    assert_eq!(rooms_of(&mut provider).await, set(&["user:7", "provider:7", "calendar"]));
    assert_eq!(rooms_of(&mut secretary).await, set(&["user:8", "secretary:8", "calendar"]));
    assert_eq!(rooms_of(&mut customer).await, set(&["user:9", "customer:9"]));
}

#[tokio::test]
async fn the_seeds_underscore_room_names_come_from_the_role_rooms_setting() {
    let templates = "admin=admin|calendar;provider=provider_{sub}|calendar;secretary=secretary_{sub}|calendar;\
                     customer=customer_{sub}";
    let hub =
        spawn_hub_with(|options| options.config.role_rooms = RoleRooms::parse(templates).expect("valid templates"))
            .await;
    let [_, mut provider, mut secretary, mut customer] = clinic(&hub).await;

    assert_eq!(rooms_of(&mut provider).await, set(&["user:7", "provider_7", "calendar"]));
    assert_eq!(rooms_of(&mut secretary).await, set(&["user:8", "secretary_8", "calendar"]));
    assert_eq!(rooms_of(&mut customer).await, set(&["user:9", "customer_9"]));
    let (status, _) = hub.emit(json!({"event": "appointment.created", "rooms": ["provider_7"]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(provider.next_event("appointment.created").await["room"], "provider_7");
    secretary.expect_silence(QUIET).await;
    customer.expect_silence(QUIET).await;
}

#[tokio::test]
async fn appointment_events_reach_the_provider_and_customer_concerned_and_calendar_sync_reaches_staff_only() {
    let hub = spawn_hub().await;
    let [mut admin, mut provider, mut secretary, mut customer] = clinic(&hub).await;
    let mut other_provider = hub.connect(&hub.token("17", "provider")).await.expect("connect");
    let mut other_customer = hub.connect(&hub.token("19", "customer")).await.expect("connect");
    let appointment = json!({"id": 301, "providerId": 7, "customerId": 9, "start": "2026-02-09T10:30:00Z"});

    for event in ["appointment.created", "appointment.updated", "appointment.cancelled"] {
        let (status, report) = hub
            .emit(json!({"event": event, "data": appointment, "rooms": ["provider:7", "customer:9", "admin"]}))
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["delivered"], 3, "{event}: {report}");
        assert_eq!(provider.next_event(event).await["room"], "provider:7");
        assert_eq!(customer.next_event(event).await["data"], appointment);
        assert_eq!(admin.next_event(event).await["room"], "admin");
    }
    for client in [&mut secretary, &mut other_provider, &mut other_customer] {
        client.expect_silence(QUIET).await;
    }

    let (_, report) =
        hub.emit(json!({"event": "calendar.sync", "data": {"reason": "bulk import"}, "rooms": ["calendar"]})).await;
    assert_eq!(report["delivered"], 4, "admin, both providers and the secretary: {report}");
    for staff in [&mut admin, &mut provider, &mut secretary, &mut other_provider] {
        let sync = staff.next_event("calendar.sync").await;
        assert_eq!((sync["room"].clone(), sync["data"].clone()), (json!("calendar"), json!({"reason": "bulk import"})));
    }
    for client in [&mut admin, &mut provider, &mut secretary, &mut customer, &mut other_provider, &mut other_customer] {
        client.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn only_tokens_signed_with_the_shared_jwt_secret_are_let_in() {
    let hub = spawn_hub().await;
    let mut claims = TestHub::claims("7");
    claims.role = Some("provider".to_owned());
    let foreign_secret = SecretString::from("a-different-backend-secret-0123456789abcdef".to_owned());
    let foreign = shared::auth::mint_token(&foreign_secret, &claims).expect("sign token");

    match hub.connect(&foreign).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("expected a 403 refusal, got {other}"),
        Ok(_) => panic!("a token signed with another secret was accepted"),
    }
    let mut client = hub.connect(&hub.token_with(&claims)).await.expect("same secret");
    assert_eq!(client.request("hello", json!({})).await["ok"], true);
}

#[tokio::test]
async fn the_socket_can_be_served_under_the_ws_path_the_mobile_app_derives() {
    let hub = spawn_hub_with(|options| options.stage = "ws".to_owned()).await;

    let mut client = hub.connect(&hub.token("7", "provider")).await.expect("connect");

    assert!(hub.ws_url.ends_with("/ws"), "{}", hub.ws_url);
    hub.emit(json!({"event": "calendar.sync", "rooms": ["calendar"]})).await;
    client.next_event("calendar.sync").await;
}

#[tokio::test]
async fn health_counts_the_clinics_connections_rooms_and_messages() {
    let hub = spawn_hub().await;
    let [_admin, _provider, _secretary, mut customer] = clinic(&hub).await;
    let customer_id = customer.connection_id().await;
    for event in ["appointment.created", "calendar.sync"] {
        let (status, _) = hub.emit(json!({"event": event, "rooms": ["calendar"]})).await;
        assert_eq!(status, StatusCode::OK);
    }

    let body = health(&hub).await;

    assert_eq!(body["status"], "healthy");
    let stats = &body["stats"];
    // user:1 admin calendar user:7 provider:7 user:8 secretary:8 user:9 customer:9
    let expected = json!({"active_connections": 4, "active_rooms": 9, "total_connections": 4, "total_messages": 2});
    for (key, value) in expected.as_object().expect("object") {
        assert_eq!(&stats[key], value, "{key}: {body}");
    }
    assert!(stats["uptime_seconds"].is_u64(), "{body}");

    customer.close().await;
    hub.wait_until_disconnected(&customer_id).await;
    // On DynamoDB the connection gauge and the rooms' member counts are separate items written side by side, so
    // one may be read before the other: wait for both, then check them.
    let stats = health_once(&hub, |stats| stats["active_connections"] == 3 && stats["active_rooms"] == 7).await;
    assert_eq!(stats["active_connections"], 3, "{stats}");
    assert_eq!(stats["active_rooms"], 7, "the customer's two rooms emptied: {stats}");
    assert_eq!(stats["total_connections"], 4, "a total never goes down: {stats}");
}
