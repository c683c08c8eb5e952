//! Seed `000_…` (pet-grooming backend and its booking bot), replayed on Bellhop.
//!
//! In the seed, the bot calls `POST /api/v1/internal/socket/appointment-{created,updated,canceled}` with
//! `x-api-key`, and the backend re-emits `appointment:created/updated/canceled` over Socket.IO so the dashboard shows
//! the appointment without a refresh. Here the bot calls `POST /internal/emit` directly. These tests prove that a
//! dashboard connection in the right room receives each event under the seed's exact name and payload while nobody
//! else does, that a dashboard which was away recovers the events it missed by `seq`, and that a missing field or a
//! wrong key is answered in the seed's envelope `{"error":{"code","message"}}` with 400 or 403 and reaches no one.
//! The seed's `APPOINTMENT_NOT_FOUND` check stays in the platform: Bellhop does not know appointments.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn_hub;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_booking_bot_emit_of_appointment_created_reaches_the_staff_dashboards_and_no_customer() {
    let hub = spawn_hub().await;
    let mut groomer = hub.connect(&hub.token("groomer-1", "provider")).await.expect("connect");
    let mut front_desk = hub.connect(&hub.token("desk-1", "admin")).await.expect("connect");
    let mut customer = hub.connect(&hub.token("owner-of-rex", "customer")).await.expect("connect");
    let appointment = json!({"appointmentId": "507f1f77bcf86cd799439011", "service": "Full groom", "at": "14:00"});

    let (status, report) =
        hub.emit(json!({"event": "appointment:created", "data": appointment, "rooms": ["calendar"]})).await;

    // The seed answered `{success, message, eventType}`; Bellhop's report says who was actually reached.
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["recipients"], 2, "{report}");
    assert_eq!(report["delivered"], 2, "{report}");
    assert_eq!((report["failed"].clone(), report["pruned"].clone()), (json!(0), json!(0)), "{report}");
    for dashboard in [&mut groomer, &mut front_desk] {
        let event = dashboard.next_event("appointment:created").await;
        assert_eq!(event["room"], "calendar", "{event}");
        assert_eq!(event["data"], appointment, "{event}");
        assert!(event.get("seq").is_none(), "an emit that is not persisted has no seq: {event}");
    }
    for client in [&mut groomer, &mut front_desk, &mut customer] {
        client.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn created_updated_and_canceled_arrive_in_order_and_a_returning_dashboard_recovers_them_by_seq() {
    let hub = spawn_hub().await;
    let mut live = hub.connect(&hub.token("groomer-1", "provider")).await.expect("connect");
    let id = "507f1f77bcf86cd799439011";
    let events = ["appointment:created", "appointment:updated", "appointment:canceled"];

    for (n, name) in events.iter().enumerate() {
        let body = json!({
            "event": name,
            "data": {"appointmentId": id, "version": n + 1},
            "rooms": ["provider:groomer-1"],
            "persist": true,
        });
        let (status, report) = hub.emit(body).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["seqs"]["provider:groomer-1"], n + 1, "{report}");
    }

    for (n, name) in events.iter().enumerate() {
        let event = live.next_event(name).await;
        assert_eq!(event["room"], "provider:groomer-1");
        assert_eq!(event["seq"], n + 1, "{event}");
        assert_eq!(event["data"], json!({"appointmentId": id, "version": n + 1}));
    }
    // The groomer's tablet was offline after seeing seq 1: on reconnecting it asks for everything after it.
    let mut tablet = hub.connect(&hub.token("groomer-1", "provider")).await.expect("connect");
    let ack = tablet.request("message:history", json!({"room": "provider:groomer-1", "afterSeq": 1})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let recovered: Vec<(u64, &str)> = ack["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap_or(0), e["event"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(recovered, [(2, "appointment:updated"), (3, "appointment:canceled")]);
    assert_eq!(ack["data"]["hasMore"], false);
}

#[tokio::test]
async fn an_emit_missing_its_event_or_targets_is_refused_with_400_in_the_envelope_and_reaches_no_one() {
    let hub = spawn_hub().await;
    let mut dashboard = hub.connect(&hub.token("groomer-1", "provider")).await.expect("connect");
    let cases = [
        (
            json!({"data": {"appointmentId": "507f"}, "rooms": ["calendar"]}),
            json!({"error": {"code": "MISSING_EVENT", "message": "event is required"}}),
        ),
        (
            json!({"event": "appointment:created", "data": {"appointmentId": "507f"}}),
            json!({"error": {
                "code": "MISSING_TARGETS",
                "message": "give at least one of rooms, users, connections, or broadcast: true",
            }}),
        ),
    ];

    for (body, envelope) in cases {
        let (status, answer) = hub.emit(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer, envelope, "{body}");
    }

    dashboard.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_bot_with_a_mismatched_api_key_gets_403_and_the_dashboard_stays_unchanged() {
    let hub = spawn_hub().await;
    let mut dashboard = hub.connect(&hub.token("groomer-1", "provider")).await.expect("connect");
    let body = json!({"event": "appointment:created", "data": {"appointmentId": "507f"}, "rooms": ["calendar"]});

    let response = hub
        .http()
        .post(format!("{}/internal/emit", hub.http_url))
        .header("x-api-key", "key-from-the-other-env-file")
        .json(&body)
        .send()
        .await
        .expect("request");

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let answer: Value = response.json().await.expect("envelope");
    assert_eq!(answer["error"]["code"], "FORBIDDEN", "{answer}");
    dashboard.expect_silence(QUIET).await;
    // Once both sides share the key, the same request goes through.
    let (status, _) = hub.emit(body).await;
    assert_eq!(status, StatusCode::OK);
    dashboard.next_event("appointment:created").await;
}

#[tokio::test]
async fn an_emit_to_a_room_nobody_watches_succeeds_with_zero_recipients() {
    let hub = spawn_hub().await;
    let mut other_salon = hub.connect(&hub.token("groomer-2", "provider")).await.expect("connect");

    let (status, report) =
        hub.emit(json!({"event": "appointment:created", "data": {}, "rooms": ["provider:groomer-1"]})).await;

    // Nobody being online is not an error: the appointment exists, and the dashboard loads it when it opens.
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["recipients"].clone(), report["delivered"].clone()), (json!(0), json!(0)), "{report}");
    other_salon.expect_silence(QUIET).await;
}
