//! A harness left running is safe from the web pages its developer visits: requests naming a foreign `Host` (DNS
//! rebinding) are refused, browsers from other origins cannot connect or call the HTTP API while the public dev
//! secrets are in use, CORS never answers `*`, and half-sent requests do not hold connections open.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::helpers::{RECV_TIMEOUT, spawn_hub, spawn_hub_with};

#[tokio::test]
async fn a_request_naming_a_foreign_host_is_refused_with_403() {
    let hub = spawn_hub().await;

    let response = hub
        .http()
        .get(format!("{}/health", hub.http_url))
        .header("host", "rebind.evil.example")
        .send()
        .await
        .expect("request");

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let local = hub.http().get(format!("{}/health", hub.http_url)).header("host", "localhost:3001").send().await;
    assert_eq!(local.expect("request").status(), StatusCode::OK);
}

#[tokio::test]
async fn a_websocket_from_a_foreign_origin_is_refused_while_dev_secrets_are_in_use() {
    let hub = spawn_hub().await;
    let token = hub.token("u1", "customer");
    let mut request = hub.ws_request(Some(&format!("token={token}")));
    request.headers_mut().insert("origin", "https://evil.example".parse().expect("origin"));

    let refused = hub.connect_raw(request).await;

    match refused {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("expected 403, got {other}"),
        Ok(_) => panic!("a foreign origin connected"),
    }
    assert!(hub.connection_ids().is_empty());
    let mut local = hub.ws_request(Some(&format!("token={token}")));
    local.headers_mut().insert("origin", "http://localhost:5173".parse().expect("origin"));
    assert_eq!(hub.connect_raw(local).await.expect("a local page connects").handshake.status(), 101);
}

#[tokio::test]
async fn cors_answers_a_local_page_with_its_origin_and_refuses_any_other() {
    let hub = spawn_hub().await;
    let preflight = |origin: &'static str| {
        hub.http()
            .request(reqwest::Method::OPTIONS, format!("{}/internal/emit", hub.http_url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
    };

    let foreign = preflight("https://evil.example").await.expect("preflight");
    let local = preflight("http://127.0.0.1:5173").await.expect("preflight");

    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(foreign.headers().get("access-control-allow-origin").is_none());
    assert!(local.status().is_success(), "{}", local.status());
    assert_eq!(local.headers()["access-control-allow-origin"], "http://127.0.0.1:5173");
}

#[tokio::test]
async fn with_real_secrets_the_hubs_own_origin_rules_apply() {
    let hub = spawn_hub_with(|options| {
        options.config.harness.dev_secrets = false;
    })
    .await;
    let mut request = hub.ws_request(Some(&format!("token={}", hub.token("u1", "customer"))));
    request.headers_mut().insert("origin", "https://app.example".parse().expect("origin"));

    // No CORS_ORIGINS: the hub's own rule allows any origin.
    assert_eq!(hub.connect_raw(request).await.expect("connect").handshake.status(), 101);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_headers_is_disconnected() {
    let hub = spawn_hub_with(|options| options.header_read_timeout = Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(hub.harness.addr).await.expect("connect");

    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.expect("write");

    // The harness must close the connection: read until it does, however it answers first.
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(RECV_TIMEOUT, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a half-sent request was still held after {RECV_TIMEOUT:?}");
}
