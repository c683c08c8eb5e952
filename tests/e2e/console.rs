//! The routes behind the browser pages, end to end: the embedded pages and every asset they reference, served with
//! a policy that keeps them on this origin; the development token route and when it exists; the operator's read
//! routes and their paging (which `scripts/test.sh` also runs on DynamoDB Local, where each is a keyed read); and the
//! WebSocket protocol reference. The pages themselves are driven in Chromium by `clients/console`'s tests.

use std::collections::BTreeSet;

use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestHub, spawn_hub, spawn_hub_with};

async fn get(hub: &TestHub, path: &str) -> reqwest::Response {
    hub.http().get(format!("{}{path}", hub.http_url)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn post_json(hub: &TestHub, path: &str, body: Value) -> (StatusCode, Value) {
    let response = hub.http().post(format!("{}{path}", hub.http_url)).json(&body).send().await.expect("POST");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The `/assets/...` paths an HTML page refers to in `src="..."` and `href="..."`.
fn referenced_assets(html: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            if let Some(path) = piece.split('"').next().filter(|p| p.starts_with("/assets/")) {
                found.insert(path.to_owned());
            }
        }
    }
    found
}

#[tokio::test]
async fn the_pages_and_every_asset_they_load_are_served_from_this_origin_only() {
    let hub = spawn_hub().await;
    let mut assets = BTreeSet::new();
    for page in ["/", "/admin", "/docs"] {
        let response = get(&hub, page).await;
        assert_eq!(response.status(), StatusCode::OK, "{page}");
        let headers = response.headers().clone();
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8", "{page}");
        let policy = headers[CONTENT_SECURITY_POLICY].to_str().expect("ascii policy");
        assert!(policy.starts_with("default-src 'self'; script-src 'self';"), "{page}: {policy}");
        assert_eq!(headers[CACHE_CONTROL], "no-cache", "{page}");
        let html = response.text().await.expect("body");
        assert!(!html.contains("http://") && !html.contains("https://"), "{page} names another origin");
        assets.extend(referenced_assets(&html));
    }
    assert!(assets.contains("/assets/swagger-ui-bundle.js") && assets.contains("/assets/console.js"), "{assets:?}");
    for asset in &assets {
        let response = get(&hub, asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let etag = response.headers()[ETAG].clone();
        assert!(response.bytes().await.expect("body").len() > 100, "{asset} is nearly empty");
        // Unchanged bytes are not sent again.
        let again = hub
            .http()
            .get(format!("{}{asset}", hub.http_url))
            .header(IF_NONE_MATCH, etag)
            .send()
            .await
            .expect("conditional GET");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{asset}");
    }
    let (status, body) = hub.internal(Method::GET, "/assets/nothing.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn development_tokens_connect_with_the_claims_asked_for() {
    let hub = spawn_hub().await;
    let (status, minted) = post_json(
        &hub,
        "/dev/token",
        json!({"sub": "client-5", "role": "customer", "name": "Ada", "rooms": ["booking:5"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    assert_eq!(minted["internalApiKey"], shared::config::DEV_INTERNAL_API_KEY);
    assert!(minted["warning"].as_str().is_some_and(|w| w.contains("PUBLIC development JWT secret")), "{minted}");
    let token = minted["token"].as_str().expect("token");

    let mut client = hub.connect(token).await.expect("the minted token connects");
    let hello = client.request("hello", Value::Null).await;
    assert_eq!(hello["data"]["user"], json!({"id": "client-5", "name": "Ada", "role": "customer", "email": null}));
    // The token's room claim lets the user into the granted room without a stored grant.
    let joined = client.request("room:join", json!({"room": "booking:5"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
}

#[tokio::test]
async fn development_token_requests_that_cannot_be_honoured_are_refused_by_name() {
    let hub = spawn_hub().await;
    for (body, code) in [
        (json!({"sub": ""}), "INVALID_USER"),
        (json!({"sub": "u1", "rooms": ["no spaces allowed"]}), "INVALID_ROOM"),
        (json!({"sub": "u1", "ttlSeconds": 0}), "INVALID_DATA"),
        (json!({"sub": "u1", "ttlSeconds": 86_401}), "INVALID_DATA"),
        (json!({"sub": "u1", "admin": true}), "INVALID_DATA"),
    ] {
        let (status, answer) = post_json(&hub, "/dev/token", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
}

#[tokio::test]
async fn no_development_token_is_minted_once_a_real_secret_is_configured() {
    let hub = spawn_hub_with(|options| {
        options.config.jwt.secret = SecretString::from("a-real-secret-nobody-else-knows".to_owned());
    })
    .await;
    let (status, answer) = post_json(&hub, "/dev/token", json!({"sub": "u1"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["code"], "DEV_TOKENS_DISABLED", "{answer}");
}

/// Follows `next` from the first page to the last, asserting each page's size, and returns every item.
async fn all_pages(hub: &TestHub, path: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..20 {
        let query = match &after {
            Some(after) => format!("{path}?limit={limit}&after={after}"),
            None => format!("{path}?limit={limit}"),
        };
        let (status, page) = hub.internal(Method::GET, &query, None).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        let got = page["items"].as_array().cloned().unwrap_or_default();
        assert!(got.len() <= limit, "{query}: {page}");
        items.extend(got);
        match page["next"].as_str() {
            Some(next) => after = Some(next.replace('=', "%3D")),
            None => return items,
        }
    }
    panic!("{path} never reached its last page");
}

#[tokio::test]
async fn operators_page_through_a_users_connections_a_rooms_members_and_grants() {
    let hub = spawn_hub().await;
    let token = hub.token("agent-1", "customer");
    let mut connections = Vec::new();
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let mut client = hub.connect(&token).await.expect("connect");
        let hello = client.request("hello", Value::Null).await;
        ids.insert(hello["data"]["connectionId"].as_str().expect("connection id").to_owned());
        let joined = client.request("room:join", json!({"room": "topic:help"})).await;
        assert_eq!(joined["ok"], true, "{joined}");
        connections.push(client);
    }

    let views = all_pages(&hub, "/internal/users/agent-1/connections", 2).await;
    let seen: BTreeSet<String> = views.iter().map(|v| v["connectionId"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(seen, ids);
    for view in &views {
        assert_eq!(view["userId"], "agent-1", "{view}");
        assert_eq!(view["role"], "customer", "{view}");
        let rooms = view["rooms"].as_array().expect("rooms");
        assert!(rooms.contains(&json!("topic:help")) && rooms.contains(&json!("user:agent-1")), "{view}");
    }

    let one = ids.iter().next().expect("an id").clone();
    let (status, view) =
        hub.internal(Method::GET, &format!("/internal/connections/{}", one.replace('=', "%3D")), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["connectionId"], one.as_str());
    assert!(view["connectedAt"].as_str().is_some() && view["expiresAt"].as_str().is_some(), "{view}");

    let members = all_pages(&hub, "/internal/rooms/topic:help/connections", 2).await;
    let member_ids: BTreeSet<String> =
        members.iter().map(|m| m["connectionId"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(member_ids, ids);

    let users: Vec<String> = (0..5).map(|i| format!("guest-{i}")).collect();
    let (status, _) =
        hub.internal(Method::PUT, "/internal/rooms/booking:88/members", Some(json!({"users": users}))).await;
    assert_eq!(status, StatusCode::OK);
    let grants = all_pages(&hub, "/internal/rooms/booking:88/grants", 2).await;
    assert_eq!(grants, users.iter().map(|u| json!(u)).collect::<Vec<_>>());
}

#[tokio::test]
async fn operators_list_the_active_rooms_with_member_counts_and_last_seq_in_pages() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect alice");
    let mut bob = hub.connect(&hub.token("bob", "customer")).await.expect("connect bob");
    assert_eq!(alice.request("room:join", json!({"room": "topic:lobby"})).await["ok"], true);
    for room in ["topic:lobby", "topic:quiet"] {
        assert_eq!(bob.request("room:join", json!({"room": room})).await["ok"], true, "{room}");
    }
    for n in 1..=2 {
        let sent = alice.request("message:send", json!({"room": "topic:lobby", "content": format!("n{n}")})).await;
        assert_eq!(sent["ok"], true, "{sent}");
    }

    let rooms = all_pages(&hub, "/internal/rooms", 2).await;

    let listed = |rooms: &[Value], name: &str| -> Vec<(u64, u64)> {
        rooms
            .iter()
            .filter(|r| r["room"] == name)
            .map(|r| (r["members"].as_u64().unwrap_or(0), r["lastSeq"].as_u64().unwrap_or(u64::MAX)))
            .collect()
    };
    assert_eq!(listed(&rooms, "topic:lobby"), [(2, 2)], "{rooms:?}");
    assert_eq!(listed(&rooms, "topic:quiet"), [(1, 0)], "{rooms:?}");
    assert_eq!(listed(&rooms, "user:alice"), [(1, 0)], "automatic rooms are rooms too: {rooms:?}");
    let names: BTreeSet<&str> = rooms.iter().filter_map(|r| r["room"].as_str()).collect();
    assert_eq!(names.len(), rooms.len(), "no room twice across pages: {rooms:?}");
    assert!(rooms.len() > 2, "the listing took more than one page: {rooms:?}");

    assert_eq!(bob.request("room:leave", json!({"room": "topic:quiet"})).await["ok"], true);
    let rooms = all_pages(&hub, "/internal/rooms", 50).await;
    assert!(listed(&rooms, "topic:quiet").is_empty(), "an emptied room is gone: {rooms:?}");
    assert_eq!(listed(&rooms, "topic:lobby"), [(2, 2)], "{rooms:?}");
}

#[tokio::test]
async fn a_connections_last_activity_is_null_until_its_first_frame_and_moves_with_each_frame() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("idle-1", "customer")).await.expect("connect");
    let activity = || async {
        let (status, page) = hub.internal(Method::GET, "/internal/users/idle-1/connections", None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let view = page["items"][0].clone();
        let id = view["connectionId"].as_str().expect("connection id").replace('=', "%3D");
        let (status, one) = hub.internal(Method::GET, &format!("/internal/connections/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{one}");
        assert_eq!(one["lastActivity"], view["lastActivity"], "the inspector and the user's list agree");
        one["lastActivity"].as_str().map(|at| chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339"))
    };

    assert_eq!(activity().await, None, "no frame yet");
    assert_eq!(client.request("hello", Value::Null).await["ok"], true);
    let first = activity().await.expect("recorded by the first frame");
    // Millisecond timestamps: wait past the first one's millisecond so the second frame's is later.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(client.request("hello", Value::Null).await["ok"], true);
    let second = activity().await.expect("recorded by the second frame");

    assert!(second > first, "{first} -> {second}");
}

#[tokio::test]
async fn operators_read_a_rooms_events_newest_page_first() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("writer", "customer")).await.expect("connect");
    assert_eq!(client.request("room:join", json!({"room": "topic:news"})).await["ok"], true);
    for n in 1..=3 {
        let sent = client.request("message:send", json!({"room": "topic:news", "content": format!("n{n}")})).await;
        assert_eq!(sent["ok"], true, "{sent}");
    }

    let (status, newest) = hub.internal(Method::GET, "/internal/rooms/topic:news/events?limit=2", None).await;
    assert_eq!(status, StatusCode::OK, "{newest}");
    let seqs: Vec<u64> =
        newest["events"].as_array().expect("events").iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(newest["hasMore"], true);
    assert_eq!(newest["events"][1]["data"]["content"], "n3", "{newest}");

    let (_, older) = hub.internal(Method::GET, "/internal/rooms/topic:news/events?limit=2&before=2", None).await;
    let seqs: Vec<u64> = older["events"].as_array().expect("events").iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [1]);
    assert_eq!(older["hasMore"], false);
}

#[tokio::test]
async fn operator_routes_need_the_key_and_refuse_bad_input_by_name() {
    let hub = spawn_hub().await;
    for path in ["/internal/users/u1/connections", "/internal/rooms"] {
        assert_eq!(get(&hub, path).await.status(), StatusCode::FORBIDDEN, "{path} without the key");
    }

    for (path, status, code) in [
        ("/internal/users/u1/connections?limit=lots", StatusCode::BAD_REQUEST, "INVALID_QUERY"),
        ("/internal/users/u1/connections?page=2", StatusCode::BAD_REQUEST, "INVALID_QUERY"),
        ("/internal/rooms/not%20a%20room/connections", StatusCode::BAD_REQUEST, "INVALID_ROOM"),
        ("/internal/rooms/topic:x/events?before=-1", StatusCode::BAD_REQUEST, "INVALID_QUERY"),
        ("/internal/connections/nobody%3D%3D", StatusCode::NOT_FOUND, "NOT_FOUND"),
        ("/internal/rooms/topic:x/connections?after=bm90LWEtY3Vyc29y", StatusCode::BAD_REQUEST, "INVALID_CURSOR"),
        ("/internal/rooms?after=bm90LWEtY3Vyc29y", StatusCode::BAD_REQUEST, "INVALID_CURSOR"),
        ("/internal/rooms?limit=lots", StatusCode::BAD_REQUEST, "INVALID_QUERY"),
    ] {
        let (got, body) = hub.internal(Method::GET, path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
}

#[tokio::test]
async fn the_protocol_reference_lists_every_action_and_event_with_declared_types() {
    let hub = spawn_hub().await;
    let reference: Value = get(&hub, "/docs/protocol.json").await.json().await.expect("json");
    let actions: BTreeSet<&str> =
        reference["actions"].as_array().expect("actions").iter().filter_map(|a| a["name"].as_str()).collect();
    for action in shared::protocol::Action::ALL {
        assert!(actions.contains(action.as_str()), "{action} missing");
    }
    let types: BTreeSet<&str> =
        reference["types"].as_array().expect("types").iter().filter_map(|t| t["name"].as_str()).collect();
    for event in reference["events"].as_array().expect("events") {
        assert!(types.contains(event["data"].as_str().unwrap_or("")), "{event}");
    }
    assert!(reference["errorCodes"].as_array().expect("codes").contains(&json!("FORBIDDEN")));
}
