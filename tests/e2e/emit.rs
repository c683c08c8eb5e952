//! Internal emit end to end: `POST /internal/emit` through the harness, received by real sockets.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_hub, spawn_hub_with};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn emit_to_rooms_users_and_connections_reaches_exactly_the_right_sockets_once() {
    let hub = spawn_hub().await;
    let mut provider = hub.connect(&hub.token("prov-1", "provider")).await.expect("connect");
    let mut admin = hub.connect(&hub.token("admin-1", "admin")).await.expect("connect");
    let mut customer = hub.connect(&hub.token("cust-1", "customer")).await.expect("connect");
    let mut bystander = hub.connect(&hub.token("cust-2", "customer")).await.expect("connect");
    let admin_id = admin.connection_id().await;

    let (status, report) = hub
        .emit(json!({
            "event": "appointment:created",
            "data": {"appointmentId": "507f"},
            "rooms": ["calendar"],
            "users": ["prov-1", "cust-1"],
            "connections": [admin_id],
        }))
        .await;

    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["recipients"], 3, "{report}");
    assert_eq!(report["delivered"], 3, "{report}");
    let event = provider.next_event("appointment:created").await;
    assert_eq!(event["room"], "calendar");
    assert_eq!(event["data"], json!({"appointmentId": "507f"}));
    assert_eq!(admin.next_event("appointment:created").await["room"], "calendar");
    let direct = customer.next_event("appointment:created").await;
    assert!(direct.get("room").is_none(), "reached as a user, not through a room: {direct}");
    for client in [&mut provider, &mut admin, &mut customer, &mut bystander] {
        client.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn the_excepted_connection_does_not_receive_the_event() {
    let hub = spawn_hub().await;
    let mut origin = hub.connect(&hub.token("prov-1", "provider")).await.expect("connect");
    let mut other = hub.connect(&hub.token("prov-2", "provider")).await.expect("connect");
    let origin_id = origin.connection_id().await;

    let (status, report) =
        hub.emit(json!({"event": "calendar.sync", "rooms": ["calendar"], "exceptConnection": origin_id})).await;

    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["recipients"], 1);
    other.next_event("calendar.sync").await;
    origin.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_delivers_once_and_answers_the_first_result() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("cust-1", "customer")).await.expect("connect");
    let body = json!({"event": "payment:failed", "users": ["cust-1"], "idempotencyKey": "payment-9-failed"});

    let (_, first) = hub.emit(body.clone()).await;
    let (status, second) = hub.emit(body).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["delivered"], first["delivered"]);
    client.next_event("payment:failed").await;
    client.expect_silence(QUIET).await;
}

#[tokio::test]
async fn event_names_are_kept_exactly_as_the_caller_gives_them() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("admin-1", "admin")).await.expect("connect");

    for name in ["appointment:created", "booking:status_changed", "appointment.created", "calendar.sync"] {
        let (status, _) = hub.emit(json!({"event": name, "data": {"n": name}, "rooms": ["admin"]})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(client.next_event(name).await["data"]["n"], name);
    }
}

#[tokio::test]
async fn a_persisted_emit_carries_a_seq_and_is_recovered_from_history() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("cust-1", "customer")).await.expect("connect");
    client.request("room:join", json!({"room": "topic:grooming"})).await;

    let (_, report) = hub.emit(json!({"event": "system:maintenance", "data": {"at": "02:00"}, "rooms": ["topic:grooming"], "persist": true}),
    )
    .await;

    assert_eq!(report["seqs"]["topic:grooming"], 1, "{report}");
    assert_eq!(client.next_event("system:maintenance").await["seq"], 1);
    let ack = client.request("message:history", json!({"room": "topic:grooming", "afterSeq": 0})).await;
    assert_eq!(ack["data"]["events"][0]["event"], "system:maintenance", "{ack}");
    assert_eq!(ack["data"]["events"][0]["data"], json!({"at": "02:00"}));
}

#[tokio::test]
async fn a_stale_connection_is_reported_pruned() {
    let hub = spawn_hub().await;

    let (status, report) = hub.emit(json!({"event": "e", "connections": ["Zm9vYmFyYmF6cXV4cQ="]})).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!((report["delivered"].clone(), report["pruned"].clone()), (json!(0), json!(1)), "{report}");
}

#[tokio::test]
async fn broadcast_reaches_every_connection_only_when_enabled() {
    let off = spawn_hub().await;
    let (status, body) = off.emit(json!({"event": "system:maintenance", "broadcast": true})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "BROADCAST_DISABLED");

    let on = spawn_hub_with(|options| options.config.broadcast_enabled = true).await;
    let mut a = on.connect(&on.token("u1", "customer")).await.expect("connect");
    let mut b = on.connect(&on.token("u2", "provider")).await.expect("connect");
    let (status, report) = on.emit(json!({"event": "system:maintenance", "broadcast": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["delivered"], 2);
    a.next_event("system:maintenance").await;
    b.next_event("system:maintenance").await;
}

#[tokio::test]
async fn missing_or_wrong_api_keys_are_refused_with_403() {
    let hub = spawn_hub().await;
    let url = format!("{}/internal/emit", hub.http_url);
    let body = json!({"event": "e", "rooms": ["calendar"]});

    for key in [None, Some("wrong-key"), Some("")] {
        let mut request = hub.http().post(&url).json(&body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{key:?}");
        let body: Value = response.json().await.expect("envelope");
        assert_eq!(body, json!({"error": {"code": "FORBIDDEN", "message": "invalid or missing x-api-key"}}));
    }
}

#[tokio::test]
async fn bad_payloads_get_the_documented_codes_and_statuses() {
    let hub = spawn_hub().await;
    let cases = [
        (json!({"rooms": ["calendar"]}), StatusCode::BAD_REQUEST, "MISSING_EVENT"),
        (json!({"event": "e", "rooms": ["bad room"]}), StatusCode::BAD_REQUEST, "INVALID_ROOM"),
        (json!({"event": "e", "users": ["a/b"]}), StatusCode::BAD_REQUEST, "INVALID_USER"),
        (json!({"event": "e"}), StatusCode::BAD_REQUEST, "MISSING_TARGETS"),
        (json!({"event": "e", "rooms": ["calendar"], "colour": "red"}), StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"),
        (json!(["not", "an", "object"]), StatusCode::BAD_REQUEST, "INVALID_JSON"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = hub.emit(body.clone()).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
    }

    let url = format!("{}/internal/emit", hub.http_url);
    let send = |body: String, content_type: &'static str| {
        hub.http().post(&url).header("x-api-key", hub.api_key()).header("content-type", content_type).body(body).send()
    };
    let not_json = send("{\"event\":".to_owned(), "application/json").await.expect("request");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(not_json.json::<Value>().await.expect("envelope")["error"]["code"], "INVALID_JSON");
    let wrong_type = send("{}".to_owned(), "text/plain").await.expect("request");
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(wrong_type.json::<Value>().await.expect("envelope")["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
    let huge = json!({"event": "e", "rooms": ["calendar"], "data": "x".repeat(200 * 1024)}).to_string();
    let too_large = send(huge, "application/json").await.expect("request");
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.json::<Value>().await.expect("envelope")["error"]["code"], "PAYLOAD_TOO_LARGE");
}
