//! The HTTP API end to end: health, the OpenAPI document, grants and their effect on socket joins, history,
//! conversations and mark-read over HTTP, notifications and their unread count over HTTP, forced disconnects, and
//! the error envelope on every failure.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestHub, spawn_hub};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn health_reports_real_counters_from_the_store() {
    let hub = spawn_hub().await;
    let _a = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let _b = hub.connect(&hub.token("u2", "admin")).await.expect("connect");
    let (status, _) = hub.internal(Method::POST, "/internal/emit", Some(json!({"event": "e", "users": ["u1"]}))).await;
    assert_eq!(status, StatusCode::OK);

    let response = hub.http().get(format!("{}/health", hub.http_url)).send().await.expect("health");

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "healthy");
    let stats = &body["stats"];
    assert_eq!(stats["active_connections"], 2, "{body}");
    assert!(stats["total_connections"].as_u64() >= Some(2), "{body}");
    assert!(stats["total_messages"].as_u64() >= Some(1), "{body}");
    assert!(stats["active_rooms"].as_u64() >= Some(3), "{body}");
    assert!(stats["uptime_seconds"].is_u64(), "{body}");
}

#[tokio::test]
async fn the_openapi_document_is_generated_from_the_routes() {
    let hub = spawn_hub().await;

    let doc: Value =
        hub.http().get(format!("{}/openapi.json", hub.http_url)).send().await.expect("get").json().await.expect("json");

    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    for path in [
        "/health",
        "/internal/emit",
        "/internal/rooms/{room}/members",
        "/internal/rooms",
        "/rooms/{room}/messages",
        "/me",
        "/me/notifications",
        "/me/notifications/read",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["EmitRequest"].is_object());
    assert!(doc["components"]["schemas"]["NotificationPage"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_bad_bodies_answer_in_the_envelope() {
    let hub = spawn_hub().await;

    let (status, body) = hub.internal(Method::GET, "/no/such/route", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "{body}");

    let (status, body) = hub.internal(Method::PATCH, "/health", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("METHOD_NOT_ALLOWED")));

    let (status, body) =
        hub.internal(Method::PUT, "/internal/rooms/booking:1/members", Some(json!({"users": "u1"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_DATA")), "{body}");

    let (status, body) =
        hub.internal(Method::PUT, "/internal/rooms/calendar/members", Some(json!({"users": ["u1"]}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_ROOM")), "{body}");
}

#[tokio::test]
async fn grants_let_the_bookings_client_and_business_owner_join_and_keep_everyone_else_out() {
    let hub = spawn_hub().await;
    hub.grant("booking:42", &["client-1", "business-1"]).await;
    let mut client = hub.connect(&hub.token("client-1", "customer")).await.expect("connect");
    let mut owner = hub.connect(&hub.token("business-1", "provider")).await.expect("connect");
    let mut stranger = hub.connect(&hub.token("stranger", "customer")).await.expect("connect");

    let joined_client = client.request("room:join", json!({"room": "booking:42"})).await;
    let joined_owner = owner.request("room:join", json!({"room": "booking:42"})).await;
    let refused = stranger.request("room:join", json!({"room": "booking:42"})).await;

    assert_eq!(joined_client["ok"], true, "{joined_client}");
    assert_eq!(joined_owner["ok"], true, "{joined_owner}");
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"]["code"], "FORBIDDEN", "{refused}");
    let (status, info) = hub.internal(Method::GET, "/internal/rooms/booking:42", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["connections"], 2, "{info}");
    assert_eq!(info["members"], json!(["business-1", "client-1"]), "{info}");
}

#[tokio::test]
async fn revoking_a_grant_removes_the_users_live_connections_from_the_room() {
    let hub = spawn_hub().await;
    hub.grant("booking:7", &["client-1", "business-1"]).await;
    let mut client = hub.connect(&hub.token("client-1", "customer")).await.expect("connect");
    let mut owner = hub.connect(&hub.token("business-1", "provider")).await.expect("connect");
    client.request("room:join", json!({"room": "booking:7"})).await;
    owner.request("room:join", json!({"room": "booking:7"})).await;

    let (status, body) =
        hub.internal(Method::DELETE, "/internal/rooms/booking:7/members", Some(json!({"users": ["client-1"]}))).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["removedConnections"], 1);
    assert_eq!(owner.next_event("room:userLeft").await["data"]["userId"], "client-1");
    let (_, report) = hub
        .internal(Method::POST, "/internal/emit", Some(json!({"event": "booking:updated", "rooms": ["booking:7"]})))
        .await;
    assert_eq!(report["recipients"], 1, "{report}");
    let again = client.request("room:join", json!({"room": "booking:7"})).await;
    assert_eq!(again["error"]["code"], "FORBIDDEN", "{again}");
}

#[tokio::test]
async fn history_and_conversations_over_http_match_what_was_sent() {
    let hub = spawn_hub().await;
    hub.grant("booking:9", &["client-1", "business-1"]).await;
    let client_token = hub.token("client-1", "customer");
    let owner_token = hub.token("business-1", "provider");
    let mut client = hub.connect(&client_token).await.expect("connect");
    let mut owner = hub.connect(&owner_token).await.expect("connect");
    client.request("room:join", json!({"room": "booking:9"})).await;
    owner.request("room:join", json!({"room": "booking:9"})).await;
    for text in ["Hi", "Is 2pm fine?", "See you"] {
        let ack = client.request("message:send", json!({"room": "booking:9", "content": text})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    let (status, page) = hub.client_call(Method::GET, "/rooms/booking:9/messages?limit=2", &owner_token, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let contents: Vec<&str> =
        page["events"].as_array().expect("events").iter().filter_map(|e| e["data"]["content"].as_str()).collect();
    assert_eq!(contents, ["Is 2pm fine?", "See you"]);
    assert_eq!(page["hasMore"], true);
    let (_, older) = hub.client_call(Method::GET, "/rooms/booking:9/messages?before=2", &owner_token, None).await;
    assert_eq!(older["events"][0]["data"]["content"], "Hi", "{older}");

    let (status, list) = hub.client_call(Method::GET, "/me/conversations", &owner_token, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let conversation = &list["conversations"][0];
    assert_eq!(conversation["room"], "booking:9", "{list}");
    assert_eq!(conversation["unreadCount"], 3);
    assert_eq!(conversation["lastEvent"]["data"]["content"], "See you");

    client.drain(QUIET).await;
    let (status, read) = hub
        .client_call(Method::POST, "/messages/read", &owner_token, Some(json!({"room": "booking:9", "seq": 3})))
        .await;
    assert_eq!((status, read["seq"].clone()), (StatusCode::OK, json!(3)), "{read}");
    let receipt = client.next_event("message:read").await;
    assert_eq!(receipt["data"]["userId"], "business-1");
    assert_eq!(receipt["data"]["seq"], 3);
    let (_, list) = hub.client_call(Method::GET, "/me/conversations", &owner_token, None).await;
    assert_eq!(list["conversations"][0]["unreadCount"], 0, "{list}");
}

#[tokio::test]
async fn history_of_a_room_the_user_may_not_join_is_forbidden() {
    let hub = spawn_hub().await;
    hub.grant("booking:5", &["client-1"]).await;

    let (status, body) =
        hub.client_call(Method::GET, "/rooms/booking:5/messages", &hub.token("stranger", "customer"), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{body}");

    let (status, body) =
        hub.client_call(Method::GET, "/rooms/calendar/messages", &hub.token("c", "customer"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn client_routes_reject_missing_invalid_and_expired_tokens_with_401() {
    let hub = spawn_hub().await;
    let mut expired = TestHub::claims("u1");
    expired.exp = chrono::Utc::now().timestamp() - 3600;
    let expired = hub.token_with(&expired);

    let missing = hub.http().get(format!("{}/me", hub.http_url)).send().await.expect("request");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "MISSING_TOKEN");
    assert_eq!(body["error"]["message"], "Authentication error: Missing token");
    for (token, code) in [("not.a.jwt", "INVALID_TOKEN"), (expired.as_str(), "TOKEN_EXPIRED")] {
        let (status, body) = hub.client_call(Method::GET, "/me", token, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some(code)), "{body}");
    }
}

#[tokio::test]
async fn me_describes_the_identity_and_its_auto_rooms() {
    let hub = spawn_hub().await;

    let (status, me) = hub.client_call(Method::GET, "/me", &hub.token("prov-7", "provider"), None).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["userId"], "prov-7");
    assert_eq!(me["role"], "provider");
    assert_eq!(me["autoRooms"], json!(["user:prov-7", "provider:prov-7", "calendar"]));
}

#[tokio::test]
async fn force_disconnect_closes_the_socket_and_unknown_ids_are_404() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("u1", "customer")).await.expect("connect");
    let id = client.connection_id().await;

    let (status, body) = hub.internal(Method::DELETE, &format!("/internal/connections/{id}"), None).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let close = client.wait_closed(Duration::from_secs(5)).await;
    assert_eq!(close.map(|frame| u16::from(frame.code)), Some(1000));
    hub.wait_until_disconnected(&id).await;
    let (status, body) = hub.internal(Method::DELETE, &format!("/internal/connections/{id}"), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "{body}");
}

/// Stores one notification for `user` through the internal emit, as a platform backend would; the tests read it
/// back through the routes under test.
async fn notify(hub: &TestHub, user: &str, title: &str) {
    let (status, report) = hub
        .emit(json!({
            "event": "booking:confirmed",
            "users": [user],
            "notification": {"title": title, "message": "Your booking is confirmed"},
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["notified"], 1, "{report}");
}

fn titles(page: &Value) -> Vec<&str> {
    page["notifications"]
        .as_array()
        .map(|all| all.iter().filter_map(|n| n["title"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn notifications_over_http_are_paged_newest_first_and_read_without_drift() {
    let hub = spawn_hub().await;
    let token = hub.token("u1", "customer");
    for title in ["first", "second", "third"] {
        notify(&hub, "u1", title).await;
    }
    notify(&hub, "someone-else", "not yours").await;

    let (status, page) = hub.client_call(Method::GET, "/me/notifications?limit=2", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(titles(&page), ["third", "second"]);
    assert_eq!(page["unreadCount"], 3, "{page}");
    assert_eq!(page["notifications"][0]["read"], false);
    assert!(page["notifications"][0]["createdAt"].is_string(), "{page}");
    let cursor = page["nextBefore"].as_str().expect("a next page").to_owned();
    let (_, rest) = hub.client_call(Method::GET, &format!("/me/notifications?before={cursor}"), &token, None).await;
    assert_eq!(titles(&rest), ["first"]);
    assert_eq!(rest["nextBefore"], Value::Null, "{rest}");

    let id = page["notifications"][0]["id"].clone();
    let (status, first) =
        hub.client_call(Method::POST, "/me/notifications/read", &token, Some(json!({"notificationId": id}))).await;
    let (_, retry) =
        hub.client_call(Method::POST, "/me/notifications/read", &token, Some(json!({"notificationId": id}))).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!((first["updated"].clone(), first["unreadCount"].clone()), (json!(1), json!(2)), "{first}");
    assert_eq!((retry["updated"].clone(), retry["unreadCount"].clone()), (json!(0), json!(2)), "{retry}");
    let (_, unread) = hub.client_call(Method::GET, "/me/notifications?unread=true", &token, None).await;
    assert_eq!(titles(&unread), ["second", "first"]);
    assert_eq!(unread["unreadCount"], 2);

    let (_, all) = hub.client_call(Method::POST, "/me/notifications/read", &token, Some(json!({"all": true}))).await;
    let (_, all_again) =
        hub.client_call(Method::POST, "/me/notifications/read", &token, Some(json!({"all": true}))).await;
    assert_eq!((all["updated"].clone(), all["unreadCount"].clone()), (json!(2), json!(0)), "{all}");
    assert_eq!((all_again["updated"].clone(), all_again["unreadCount"].clone()), (json!(0), json!(0)), "{all_again}");
    let (_, other) =
        hub.client_call(Method::GET, "/me/notifications", &hub.token("someone-else", "customer"), None).await;
    assert_eq!(other["unreadCount"], 1, "another user's count is untouched: {other}");
}

#[tokio::test]
async fn a_notification_read_over_http_is_reflected_on_the_sockets_unread_count() {
    let hub = spawn_hub().await;
    let token = hub.token("u1", "customer");
    let mut socket = hub.connect(&token).await.expect("connect");
    notify(&hub, "u1", "Reminder").await;
    let announced = socket.next_event("notification:new").await;
    assert_eq!(announced["data"]["unreadCount"], 1, "{announced}");
    let id = announced["data"]["id"].clone();

    let (status, read) =
        hub.client_call(Method::POST, "/me/notifications/read", &token, Some(json!({"notificationId": id}))).await;

    assert_eq!((status, read["unreadCount"].clone()), (StatusCode::OK, json!(0)), "{read}");
    let count = socket.request("notification:unreadCount", json!({})).await;
    assert_eq!(count["data"]["unreadCount"], 0, "{count}");
    let listed = socket.request("notification:list", json!({})).await;
    assert_eq!(listed["data"]["notifications"][0]["read"], true, "{listed}");
}

#[tokio::test]
async fn reading_an_unknown_or_someone_elses_notification_changes_nothing_and_bad_input_is_400() {
    let hub = spawn_hub().await;
    let token = hub.token("u1", "customer");
    notify(&hub, "u2", "for u2").await;
    let (_, theirs) = hub.client_call(Method::GET, "/me/notifications", &hub.token("u2", "customer"), None).await;
    let their_id = theirs["notifications"][0]["id"].clone();
    notify(&hub, "u1", "for u1").await;

    for id in [json!("0190aaaa-0000-7000-8000-000000000000"), their_id] {
        let (status, body) =
            hub.client_call(Method::POST, "/me/notifications/read", &token, Some(json!({"notificationId": id}))).await;
        assert_eq!((status, &body["updated"], &body["unreadCount"]), (StatusCode::OK, &json!(0), &json!(1)), "{body}");
    }
    let (_, theirs_after) = hub.client_call(Method::GET, "/me/notifications", &hub.token("u2", "customer"), None).await;
    assert_eq!(theirs_after["unreadCount"], 1, "{theirs_after}");

    for bad in [
        json!({}),
        json!({"all": false}),
        json!({"notificationId": ""}),
        json!({"notificationId": "x", "all": true}),
        json!({"notificationIds": "x"}),
        json!({"notificationId": 7}),
    ] {
        let (status, body) = hub.client_call(Method::POST, "/me/notifications/read", &token, Some(bad.clone())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_DATA")), "{bad}");
    }
    for (query, code) in
        [("limit=0", "INVALID_DATA"), ("limit=1000", "INVALID_DATA"), ("unread=maybe", "INVALID_QUERY")]
    {
        let (status, body) = hub.client_call(Method::GET, &format!("/me/notifications?{query}"), &token, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{query}: {body}");
    }
    let (_, mine) = hub.client_call(Method::GET, "/me/notifications", &token, None).await;
    assert_eq!(mine["unreadCount"], 1, "nothing was marked by the refused requests: {mine}");
}

#[tokio::test]
async fn notification_routes_without_a_token_are_401() {
    let hub = spawn_hub().await;

    let list = hub.http().get(format!("{}/me/notifications", hub.http_url)).send().await.expect("request");
    let read = hub
        .http()
        .post(format!("{}/me/notifications/read", hub.http_url))
        .json(&json!({"all": true}))
        .send()
        .await
        .expect("request");

    for response in [list, read] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "MISSING_TOKEN", "{body}");
    }
}
