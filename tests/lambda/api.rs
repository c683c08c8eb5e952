//! The functions behind the HTTP API and the direct invoke: `api` (axum on lambda_http, payload format 2.0) and
//! `emit`.

use serde_json::{Value, json};

use crate::{INTERNAL_API_KEY, JWT_SECRET, Stack, body_of, invoke, own_fixture, token};

/// The HTTP API v2 request fixture with the method, path, extra headers and JSON body given.
fn http_request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Value {
    let mut event = own_fixture("httpapi-v2-request");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    match body {
        Some(body) => {
            event["body"] = json!(body.to_string());
            event["headers"]["content-type"] = json!("application/json");
        }
        None => {
            event.as_object_mut().expect("event object").remove("body");
        }
    }
    event
}

#[tokio::test]
async fn the_api_binary_answers_http_api_requests_with_the_router_and_the_template_secrets() {
    let Some(stack) = Stack::new().await else { return };
    let mut client = stack.client("u-7").await;
    let mut api = stack.start("api").await;
    let booking = json!({"event": "booking:created", "data": {"bookingId": "b1"}, "users": ["u-7"]});
    let bearer = format!("Bearer {}", token(JWT_SECRET, "u-7", "customer"));

    let health = invoke(&mut api, &http_request("GET", "/health", &[], None)).await;
    let emitted =
        invoke(&mut api, &http_request("POST", "/internal/emit", &[("x-api-key", INTERNAL_API_KEY)], Some(&booking)))
            .await;
    let forbidden =
        invoke(&mut api, &http_request("POST", "/internal/emit", &[("x-api-key", "wrong")], Some(&booking))).await;
    let me = invoke(&mut api, &http_request("GET", "/me", &[("authorization", &bearer)], None)).await;

    assert_eq!((&health["statusCode"], &body_of(&health)["status"]), (&json!(200), &json!("healthy")), "{health}");
    assert_eq!(emitted["statusCode"], 200, "{emitted}");
    assert_eq!(body_of(&emitted)["delivered"], 1, "{emitted}");
    let event = client.next_event("booking:created").await;
    assert_eq!(event["data"]["bookingId"], "b1", "{event}");
    assert_eq!(forbidden["statusCode"], 403, "{forbidden}");
    assert_eq!(me["statusCode"], 200, "{me}");
    assert!(me["body"].as_str().is_some_and(|body| body.contains("u-7")), "{me}");

    // Internal routes that write grants and close connections through the Management API (DELETE).
    let members = json!({"users": ["u-7"]});
    let key = [("x-api-key", INTERNAL_API_KEY)];
    let granted =
        invoke(&mut api, &http_request("PUT", "/internal/rooms/booking:1/members", &key, Some(&members))).await;
    assert_eq!(granted["statusCode"], 200, "{granted}");
    let connection_id = client.request("hello", json!({})).await["data"]["connectionId"].as_str().map(str::to_owned);
    let connection_id = connection_id.expect("the client's connection id");
    // The operator's active rooms: Queries on the ActiveRooms index, which the policy must allow the api function.
    let rooms = invoke(&mut api, &http_request("GET", "/internal/rooms", &key, None)).await;
    assert_eq!(rooms["statusCode"], 200, "{rooms}");
    let listed = body_of(&rooms)["items"].as_array().cloned().unwrap_or_default();
    assert!(listed.iter().any(|r| r["room"] == "user:u-7" && r["members"] == 1), "{rooms}");
    let path = format!("/internal/connections/{}", connection_id.replace('=', "%3D"));
    let closed = invoke(&mut api, &http_request("DELETE", &path, &key, None)).await;
    assert_eq!(closed["statusCode"], 200, "{closed}");
    assert_eq!(body_of(&closed)["wasStale"], false, "{closed}");
    stack.assert_permissions();
}

#[tokio::test]
async fn the_emit_binary_delivers_an_invoke_payload_and_answers_a_bad_one_without_failing() {
    let Some(stack) = Stack::new().await else { return };
    let mut client = stack.client("u-7").await;
    let mut emit = stack.start("emit").await;

    let report = invoke(&mut emit, &json!({"event": "payment:failed", "data": {"amount": 12}, "users": ["u-7"]})).await;
    let refused = invoke(&mut emit, &json!({"data": {}})).await;

    assert_eq!((&report["recipients"], &report["delivered"]), (&json!(1), &json!(1)), "{report}");
    let event = client.next_event("payment:failed").await;
    assert_eq!(event["data"]["amount"], 12, "{event}");
    // A bad payload is an answer, not a function error: Lambda would retry an asynchronous invoke that failed.
    assert_eq!((&refused["error"]["code"], &refused["status"]), (&json!("MISSING_EVENT"), &json!(400)), "{refused}");
    stack.assert_permissions();
}
