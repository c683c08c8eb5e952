//! What a client may do, tried as an attacker would: writing where only the platform writes, watching and calling
//! strangers met in a public topic, opening sockets and joining rooms without end, and answers that would outgrow
//! what API Gateway can deliver. Each test fails on a hub that trusts its clients more than its rooms allow.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_hub, spawn_hub_with};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_provider_cannot_post_into_the_calendar_and_nothing_is_stored_or_delivered() {
    let hub = spawn_hub().await;
    let mut attacker = hub.connect(&hub.token("prov-1", "provider")).await.expect("connect");
    let mut colleague = hub.connect(&hub.token("prov-2", "provider")).await.expect("connect");
    colleague.request("hello", json!({})).await;

    let ack =
        attacker.request("message:send", json!({"room": "calendar", "content": "all appointments cancelled"})).await;
    let typing = attacker.request("typing:start", json!({"room": "calendar"})).await;

    assert_eq!(error_code(&ack), "FORBIDDEN", "{ack}");
    assert_eq!(error_code(&typing), "FORBIDDEN", "{typing}");
    colleague.expect_silence(QUIET).await;
    let history = attacker.request("message:history", json!({"room": "calendar"})).await;
    assert_eq!(history["data"]["events"], json!([]), "nothing was stored: {history}");
}

#[tokio::test]
async fn nobody_posts_into_a_user_room_or_a_presence_room() {
    let hub = spawn_hub().await;
    let mut alice = hub.connect(&hub.token("alice", "customer")).await.expect("connect");

    let own = alice.request("message:send", json!({"room": "user:alice", "content": "hi me"})).await;
    let read = alice.request("message:read", json!({"room": "user:alice", "seq": 0})).await;

    assert_eq!(error_code(&own), "FORBIDDEN", "{own}");
    assert_eq!(error_code(&read), "FORBIDDEN", "{read}");
}

#[tokio::test]
async fn members_of_a_conversation_room_still_write_to_it() {
    let hub = spawn_hub().await;
    hub.grant("booking:7", &["client-1", "biz-1"]).await;
    let mut client = hub.connect(&hub.token("client-1", "customer")).await.expect("connect");
    let mut business = hub.connect(&hub.token("biz-1", "provider")).await.expect("connect");
    client.request("room:join", json!({"room": "booking:7"})).await;
    business.request("room:join", json!({"room": "booking:7"})).await;

    let ack = client.request("message:send", json!({"room": "booking:7", "content": "Is 3 pm fine?"})).await;

    assert_eq!(ack["ok"], true, "{ack}");
    let event = business.next_event("message:new").await;
    assert_eq!(event["data"]["content"], "Is 3 pm fine?");
}

#[tokio::test]
async fn a_public_topic_reveals_no_presence_and_allows_no_calls() {
    let hub = spawn_hub().await;
    let mut stalker = hub.connect(&hub.token("stalker", "customer")).await.expect("connect");
    let mut victim = hub.connect(&hub.token("victim", "customer")).await.expect("connect");
    for client in [&mut stalker, &mut victim] {
        let ack = client.request("room:join", json!({"room": "topic:dogs"})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    victim.request("message:send", json!({"room": "topic:dogs", "content": "woof"})).await;

    let presence = stalker.request("presence:get", json!({"userIds": ["victim"]})).await;
    let call = stalker.request("call:initiate", json!({"recipientId": "victim", "callType": "audio"})).await;

    assert_eq!(presence["data"]["forbidden"], json!(["victim"]), "{presence}");
    assert_eq!(error_code(&call), "FORBIDDEN", "{call}");
    victim.expect_silence(QUIET).await;
}

#[tokio::test]
async fn opening_a_chat_pair_alone_does_not_reveal_the_other_user() {
    let hub = spawn_hub().await;
    let mut stalker = hub.connect(&hub.token("a-stalker", "customer")).await.expect("connect");
    let _victim = hub.connect(&hub.token("z-victim", "customer")).await.expect("connect");
    stalker.request("room:join", json!({"room": "chat:a-stalker:z-victim"})).await;
    stalker.request("message:send", json!({"room": "chat:a-stalker:z-victim", "content": "hello?"})).await;

    let presence = stalker.request("presence:get", json!({"userIds": ["z-victim"]})).await;

    assert_eq!(presence["data"]["forbidden"], json!(["z-victim"]), "{presence}");
}

#[tokio::test]
async fn a_shared_booking_reveals_presence_until_the_grant_is_revoked() {
    let hub = spawn_hub().await;
    hub.grant("booking:9", &["client-9", "biz-9"]).await;
    let mut client = hub.connect(&hub.token("client-9", "customer")).await.expect("connect");
    let _business = hub.connect(&hub.token("biz-9", "provider")).await.expect("connect");

    let before = client.request("presence:get", json!({"userIds": ["biz-9"]})).await;
    let (status, body) =
        hub.internal(Method::DELETE, "/internal/rooms/booking:9/members", Some(json!({"users": ["client-9"]}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = client.request("presence:get", json!({"userIds": ["biz-9"]})).await;

    assert_eq!(before["data"]["presences"][0]["online"], true, "{before}");
    assert_eq!(after["data"]["forbidden"], json!(["biz-9"]), "{after}");
}

#[tokio::test]
async fn a_user_cannot_hold_more_connections_than_the_limit() {
    let hub = spawn_hub_with(|options| options.config.limits.max_connections_per_user = 3).await;
    let token = hub.token("greedy", "customer");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(hub.connect(&token).await.expect("within the limit"));
    }

    match hub.connect(&token).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        Err(other) => panic!("expected a 429 handshake refusal, got {other}"),
        Ok(_) => panic!("a connection over the limit was accepted"),
    }
    let other_user = hub.connect(&hub.token("modest", "customer")).await;
    assert!(other_user.is_ok(), "the limit is per user");
}

#[tokio::test]
async fn a_connection_cannot_join_more_rooms_than_the_limit() {
    let hub = spawn_hub_with(|options| options.config.limits.max_rooms_per_connection = 4).await;
    let mut client = hub.connect(&hub.token("joiner", "customer")).await.expect("connect");
    // user:joiner and customer:joiner are joined at connect.
    for topic in ["topic:a", "topic:b"] {
        let ack = client.request("room:join", json!({"room": topic})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    let refused = client.request("room:join", json!({"room": "topic:c"})).await;
    client.request("room:leave", json!({"room": "topic:a"})).await;
    let after_leaving = client.request("room:join", json!({"room": "topic:c"})).await;

    assert_eq!(error_code(&refused), "RATE_LIMITED", "{refused}");
    assert_eq!(after_leaving["ok"], true, "{after_leaving}");
    let hello = client.request("hello", json!({})).await;
    assert_eq!(hello["data"]["rooms"].as_array().map(Vec::len), Some(4), "{hello}");
}

#[tokio::test]
async fn a_history_page_stops_at_its_byte_budget_and_pages_on() {
    let hub = spawn_hub_with(|options| {
        options.config.limits.max_content_chars = 8000;
        options.config.limits.inbound_burst = 100;
    })
    .await;
    let mut client = hub.connect(&hub.token("writer", "customer")).await.expect("connect");
    client.request("room:join", json!({"room": "topic:long"})).await;
    let big = "x".repeat(7990);
    for i in 0..30 {
        let ack = client.request("message:send", json!({"room": "topic:long", "content": format!("{i}{big}")})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    let first = client.request("message:history", json!({"room": "topic:long", "limit": 100})).await;
    let events = first["data"]["events"].as_array().cloned().unwrap_or_default();
    let oldest = events.first().and_then(|e| e["seq"].as_u64()).expect("a page");
    let second =
        client.request("message:history", json!({"room": "topic:long", "beforeSeq": oldest, "limit": 100})).await;

    assert!(first.to_string().len() < 128 * 1024, "the ack fits a WebSocket frame: {} bytes", first.to_string().len());
    assert_eq!(first["data"]["hasMore"], true);
    assert!(events.len() < 30, "{} events", events.len());
    assert_eq!(events.last().and_then(|e| e["seq"].as_u64()), Some(30), "the newest page ends at the newest event");
    let second_events = second["data"]["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(second_events.last().and_then(|e| e["seq"].as_u64()), Some(oldest - 1), "{second}");
    let seen = events.len() + second_events.len();
    assert!(seen <= 30, "no event twice");
}

#[tokio::test]
async fn a_join_ack_reports_the_participant_count() {
    let hub = spawn_hub().await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut client = hub.connect(&hub.token(&format!("fan-{i}"), "customer")).await.expect("connect");
        client.request("room:join", json!({"room": "topic:show"})).await;
        clients.push(client);
    }
    let mut late = hub.connect(&hub.token("late", "customer")).await.expect("connect");

    let ack = late.request("room:join", json!({"room": "topic:show"})).await;
    let members = late.request("room:members", json!({"room": "topic:show", "limit": 2})).await;
    let cursor = members["data"]["nextCursor"].clone();
    let rest = late.request("room:members", json!({"room": "topic:show", "limit": 2, "cursor": cursor})).await;

    assert_eq!(ack["data"]["participantCount"], 4, "{ack}");
    let listed: Vec<Value> = [&members, &rest]
        .iter()
        .flat_map(|page| page["data"]["participants"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(listed.len(), 4, "{members} {rest}");
    assert_eq!(rest["data"]["nextCursor"], Value::Null, "{rest}");
}

#[tokio::test]
async fn a_flooding_connection_is_refused_before_any_write_then_closed() {
    let hub = spawn_hub_with(|options| {
        let limits = &mut options.config.limits;
        (limits.inbound_per_second, limits.inbound_burst, limits.rate_strikes) = (1, 5, 5);
    })
    .await;
    let mut flooder = hub.connect(&hub.token("flooder", "customer")).await.expect("connect");
    let mut reader = hub.connect(&hub.token("reader", "customer")).await.expect("connect");
    reader.request("room:join", json!({"room": "topic:flood"})).await;
    flooder.request("room:join", json!({"room": "topic:flood"})).await;

    for i in 0..40 {
        let frame = json!({"action": "message:send", "id": format!("m{i}"), "data": {"room": "topic:flood", "content": format!("spam {i}")}});
        if flooder.send_message(frame.to_string().into()).await.is_err() {
            break;
        }
    }
    let mut accepted = 0;
    let mut refused = Vec::new();
    let mut closing_notice = None;
    while let Some(frame) = flooder.recv_json_within(Duration::from_secs(5)).await {
        match (frame["type"].as_str(), frame["ok"].as_bool()) {
            (Some("ack"), Some(true)) => accepted += 1,
            (Some("ack"), Some(false)) => refused.push(frame),
            (Some("event"), _) if frame["event"] == "error" => closing_notice = Some(frame),
            _ => {}
        }
    }

    assert!(flooder.is_closed(), "the connection is closed after it kept flooding");
    assert!(!refused.is_empty(), "frames over the rate are refused");
    for refusal in &refused {
        assert_eq!(error_code(refusal), "RATE_LIMITED", "{refusal}");
        assert!(refusal["error"]["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0), "{refusal}");
    }
    let notice = closing_notice.expect("the reason is sent before the close");
    assert_eq!(notice["data"]["code"], "RATE_LIMITED", "{notice}");
    // Acks of stored messages may be lost with the close, so the check runs the other way: no refused frame was
    // stored, and every acknowledged one was.
    let history = reader.request("message:history", json!({"room": "topic:flood", "limit": 100})).await;
    let stored: Vec<String> = history["data"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|event| event["data"]["content"].as_str().map(|c| c.replace("spam ", "m")))
        .collect();
    for refusal in &refused {
        let id = refusal["id"].as_str().unwrap_or_default().to_owned();
        assert!(!stored.contains(&id), "refused frame {id} was stored: {history}");
    }
    assert!(stored.len() >= accepted, "every acknowledged message was stored: {history}");
}

#[tokio::test]
async fn a_burst_of_typing_costs_one_fan_out_per_interval() {
    let hub = spawn_hub_with(|options| {
        options.config.limits.typing_interval_ms = 60_000;
        options.config.limits.inbound_burst = 100;
    })
    .await;
    hub.grant("booking:5", &["typist", "watcher"]).await;
    let mut typist = hub.connect(&hub.token("typist", "customer")).await.expect("connect");
    let mut watcher = hub.connect(&hub.token("watcher", "provider")).await.expect("connect");
    typist.request("room:join", json!({"room": "booking:5"})).await;
    watcher.request("room:join", json!({"room": "booking:5"})).await;
    watcher.drain(QUIET).await;

    let mut coalesced = 0;
    for _ in 0..50 {
        let ack = typist.request("typing:start", json!({"room": "booking:5"})).await;
        assert_eq!(ack["ok"], true, "{ack}");
        coalesced += usize::from(ack["data"]["coalesced"] == true);
    }
    let stop = typist.request("typing:stop", json!({"room": "booking:5"})).await;

    assert_eq!(coalesced, 49);
    assert_eq!(stop["data"]["coalesced"], false, "a stop is never swallowed by the starts before it");
    watcher.next_event("typing:start").await;
    watcher.next_event("typing:stop").await;
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn calls_are_limited_per_caller_and_one_rings_per_recipient() {
    let hub = spawn_hub_with(|options| options.config.limits.calls_per_minute = 2).await;
    for (booking, user) in [("booking:b", "bob"), ("booking:c", "carol"), ("booking:d", "dave")] {
        hub.grant(booking, &["caller", user]).await;
    }
    let mut caller = hub.connect(&hub.token("caller", "customer")).await.expect("connect");
    let mut recipients = Vec::new();
    for user in ["bob", "carol", "dave"] {
        recipients.push(hub.connect(&hub.token(user, "provider")).await.expect("connect"));
    }
    let call = |to: &str| json!({"recipientId": to, "callType": "audio"});

    let first = caller.request("call:initiate", call("bob")).await;
    let again = caller.request("call:initiate", call("bob")).await;
    let second = caller.request("call:initiate", call("carol")).await;
    let third = caller.request("call:initiate", call("dave")).await;

    assert_eq!(first["data"]["state"], "ringing", "{first}");
    assert_eq!(error_code(&again), "RATE_LIMITED", "{again}");
    assert!(again["error"]["message"].as_str().unwrap_or("").contains("already ringing"), "{again}");
    assert_eq!(second["data"]["state"], "ringing", "{second}");
    assert_eq!(error_code(&third), "RATE_LIMITED", "{third}");
    assert!(third["error"]["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0), "{third}");
    let bob = &mut recipients[0];
    bob.next_event("call:incoming").await;
    bob.expect_silence(QUIET).await;
}

/// Claims for `sub` expiring `seconds` from now.
fn claims_expiring_in(sub: &str, seconds: i64) -> shared::auth::Claims {
    let mut claims = crate::helpers::TestHub::claims(sub);
    claims.exp = chrono::Utc::now().timestamp() + seconds;
    claims
}

#[tokio::test]
async fn a_connection_is_warned_before_its_token_expires_then_closed_with_the_reason() {
    // The warning is due 1 to 2 s after the token is minted (`exp` has whole seconds), and the check that sends it
    // must run before the token expires, or it rightly closes without warning: 6 s of slack keep a loaded machine
    // (a cold CI build running the suite in parallel) from turning that into a failure.
    let hub = spawn_hub_with(|options| {
        options.config.jwt.leeway_seconds = 0;
        options.config.limits.token_warning_seconds = 6;
    })
    .await;
    let mut client = hub.connect(&hub.token_with(&claims_expiring_in("short", 8))).await.expect("connect");

    let warning = client.next_event_within("auth:expiring", Duration::from_secs(10)).await;
    let notice = client.next_event_within("error", Duration::from_secs(10)).await;
    let close = client.wait_closed(Duration::from_secs(10)).await;

    assert!(warning["data"]["expiresAt"].is_string() && warning["data"]["closesAt"].is_string(), "{warning}");
    assert_eq!(notice["data"]["code"], "TOKEN_EXPIRED", "{notice}");
    assert!(close.is_some() || client.is_closed(), "the connection is closed once the token expired");
}

#[tokio::test]
async fn auth_refresh_with_a_new_token_keeps_the_connection_open_past_the_old_expiry() {
    let hub = spawn_hub_with(|options| {
        options.config.jwt.leeway_seconds = 0;
        options.config.limits.token_warning_seconds = 4;
    })
    .await;
    let mut client = hub.connect(&hub.token_with(&claims_expiring_in("renewer", 6))).await.expect("connect");
    client.next_event_within("auth:expiring", Duration::from_secs(10)).await;

    let fresh = hub.token_with(&claims_expiring_in("renewer", 600));
    let refreshed = client.request("auth:refresh", json!({"token": fresh})).await;
    // Past the first token's expiry: a frame is refused and the timer closes the connection unless the refresh held.
    client.expect_silence(Duration::from_secs(7)).await;
    // A frame the message function sees (a ping would not: API Gateway answers it without checking the token).
    let hello = client.request("hello", json!({})).await;

    assert_eq!(refreshed["ok"], true, "{refreshed}");
    assert!(refreshed["data"]["expiresAt"].is_string(), "{refreshed}");
    assert_eq!(hello["ok"], true, "{hello}");
    assert!(!client.is_closed());
}

#[tokio::test]
async fn auth_refresh_refuses_another_users_token_and_a_forged_one() {
    let hub = spawn_hub().await;
    let mut client = hub.connect(&hub.token("owner", "customer")).await.expect("connect");

    let other = client.request("auth:refresh", json!({"token": hub.token("intruder", "customer")})).await;
    let forged = client.request("auth:refresh", json!({"token": "not.a.jwt"})).await;
    let expired =
        client.request("auth:refresh", json!({"token": hub.token_with(&claims_expiring_in("owner", -3600))})).await;

    assert_eq!(error_code(&other), "FORBIDDEN", "{other}");
    assert_eq!(error_code(&forged), "UNAUTHORIZED", "{forged}");
    assert_eq!(error_code(&expired), "TOKEN_EXPIRED", "{expired}");
}

#[tokio::test]
async fn conversations_page_with_a_cursor_and_a_forged_cursor_is_refused() {
    let hub = spawn_hub().await;
    let token = hub.token("talker", "customer");
    let mut client = hub.connect(&token).await.expect("connect");
    for n in 0..5 {
        let room = format!("topic:t{n}");
        client.request("room:join", json!({"room": room})).await;
        let ack = client.request("message:send", json!({"room": room, "content": "hi"})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    let mut rooms = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(cursor) => format!("/me/conversations?limit=2&cursor={cursor}"),
            None => "/me/conversations?limit=2".to_owned(),
        };
        let (status, page) = hub.client_call(Method::GET, &path, &token, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let conversations = page["conversations"].as_array().cloned().unwrap_or_default();
        assert!(conversations.len() <= 2, "{page}");
        rooms.extend(conversations.iter().filter_map(|c| c["room"].as_str().map(str::to_owned)));
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let (forged_status, forged) =
        hub.client_call(Method::GET, "/me/conversations?cursor=bm90LWEtY3Vyc29y", &token, None).await;
    let members = client.request("room:members", json!({"room": "topic:t0", "cursor": "garbage!"})).await;

    rooms.sort();
    assert_eq!(rooms, ["topic:t0", "topic:t1", "topic:t2", "topic:t3", "topic:t4"]);
    assert_eq!(forged_status, StatusCode::BAD_REQUEST, "{forged}");
    assert_eq!(forged["error"]["code"], "INVALID_CURSOR", "{forged}");
    assert_eq!(error_code(&members), "INVALID_CURSOR", "{members}");
}
