//! Test fixtures: a fresh harness per test (`spawn_hub`), tokens signed with its secret, real WebSocket clients with
//! timeouts on every receive, and an HTTP client. Set `TEST_LOG=1` to see the harness's logs.
//!
//! `E2E_STORE=dynamodb` (with `DYNAMODB_ENDPOINT`) runs every hub on DynamoDB Local, each in a fresh table, and
//! `E2E_PUSHER=sdk` delivers through the AWS SDK and the harness's `@connections`: together they are the cloud code
//! path, which `scripts/test.sh` runs as a second pass of this suite. A test that chooses its own store or pusher
//! keeps its choice.

#![allow(dead_code)] // Each test module uses a different subset of these helpers.

use std::collections::VecDeque;
use std::sync::LazyLock;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use local::{HarnessOptions, PusherChoice, RunningHarness, StoreChoice};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shared::auth::{Claims, mint_token};
use shared::config::Config;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a receive waits before the test fails: generous, because CI machines are slow.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(5);

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "local=debug,shared=debug,tower_http=info".into());
        tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().init();
    }
});

/// A running hub with fresh, private state.
pub(crate) struct TestHub {
    pub(crate) ws_url: String,
    pub(crate) http_url: String,
    pub(crate) management_url: String,
    pub(crate) harness: RunningHarness,
    jwt_secret: SecretString,
    api_key: SecretString,
    /// What the hub's `@connections` expects requests to be signed with.
    pub(crate) credentials: local::Credentials,
    http: reqwest::Client,
}

/// A hub on a free port with fresh state: in-memory SQLite and the in-process pusher unless `E2E_STORE` and
/// `E2E_PUSHER` say otherwise.
pub(crate) async fn spawn_hub() -> TestHub {
    spawn_hub_with(|_| {}).await
}

/// As [`spawn_hub`], after `adjust` has changed the options (timeouts, pusher, config...).
pub(crate) async fn spawn_hub_with(adjust: impl FnOnce(&mut HarnessOptions)) -> TestHub {
    LazyLock::force(&TRACING);
    let mut options = HarnessOptions::new(Config::for_tests());
    options.port = 0;
    options.store = store_from_env();
    options.pusher = pusher_from_env();
    // The region the SDK resolves on this machine, which `ApiGatewayPusher::for_endpoint` in a test signs for.
    if let Some(region) = shared::aws::load(None).await.region() {
        options.credentials.region = region.to_string();
    }
    adjust(&mut options);
    let jwt_secret = options.config.jwt.secret.clone();
    let api_key = options.config.internal_api_key.clone();
    let credentials = options.credentials.clone();
    let harness = local::spawn(options).await.expect("spawn harness");
    TestHub {
        ws_url: harness.ws_url.clone(),
        http_url: harness.http_url.clone(),
        management_url: harness.management_url.clone(),
        harness,
        jwt_secret,
        api_key,
        credentials,
        http: reqwest::Client::new(),
    }
}

/// The store this run's hubs use by default: see the module documentation.
fn store_from_env() -> StoreChoice {
    match std::env::var("E2E_STORE").as_deref() {
        Err(_) | Ok("" | "memory") => StoreChoice::Memory,
        Ok("dynamodb") => {
            let endpoint = std::env::var("DYNAMODB_ENDPOINT")
                .expect("E2E_STORE=dynamodb needs DYNAMODB_ENDPOINT: run scripts/test.sh or scripts/dynamodb-local.sh");
            StoreChoice::Dynamo { endpoint, table: format!("bellhop-e2e-{}", uuid::Uuid::now_v7().simple()) }
        }
        Ok(other) => panic!("E2E_STORE must be memory or dynamodb, not {other:?}"),
    }
}

fn pusher_from_env() -> PusherChoice {
    match std::env::var("E2E_PUSHER").as_deref() {
        Err(_) | Ok("" | "in-process") => PusherChoice::InProcess,
        Ok("sdk") => PusherChoice::Sdk,
        Ok(other) => panic!("E2E_PUSHER must be in-process or sdk, not {other:?}"),
    }
}

/// The error code of an ack or error frame, or "" when it has none.
pub(crate) fn error_code(frame: &Value) -> &str {
    frame["error"]["code"].as_str().unwrap_or("")
}

impl TestHub {
    /// A request to the hub's HTTP API; the body, when any, is sent as JSON. Answers the status and the JSON body
    /// (`Null` when the body is not JSON).
    async fn call(&self, method: Method, path: &str, auth: Auth<'_>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.http_url));
        request = match auth {
            Auth::ApiKey => request.header("x-api-key", self.api_key.expose_secret()),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("HTTP request to {path}: {error}"));
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// An internal request (`/internal/...`) with the API key.
    pub(crate) async fn internal(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Auth::ApiKey, body).await
    }

    /// A client request with `Authorization: Bearer <token>`.
    pub(crate) async fn client_call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Auth::Bearer(token), body).await
    }

    /// `POST /internal/emit` with the API key.
    pub(crate) async fn emit(&self, body: Value) -> (StatusCode, Value) {
        self.internal(Method::POST, "/internal/emit", Some(body)).await
    }

    /// Grants `users` the granted room `room`, failing the test if the hub refuses.
    pub(crate) async fn grant(&self, room: &str, users: &[&str]) {
        let path = format!("/internal/rooms/{room}/members");
        let (status, body) = self.internal(Method::PUT, &path, Some(json!({"users": users}))).await;
        assert_eq!(status, StatusCode::OK, "grant {room}: {body}");
    }

    /// Claims for `sub` valid for ten minutes, without role or rooms.
    pub(crate) fn claims(sub: &str) -> Claims {
        Claims::for_subject(sub, 600, &Config::for_tests().jwt)
    }

    /// A valid token for `sub` with `role`.
    pub(crate) fn token(&self, sub: &str, role: &str) -> String {
        let mut claims = Self::claims(sub);
        claims.role = Some(role.to_owned());
        self.token_with(&claims)
    }

    pub(crate) fn token_with(&self, claims: &Claims) -> String {
        mint_token(&self.jwt_secret, claims).expect("sign token")
    }

    pub(crate) fn api_key(&self) -> &str {
        self.api_key.expose_secret()
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Connects with `?token=`, as a browser would.
    pub(crate) async fn connect(&self, token: &str) -> Result<TestClient, tungstenite::Error> {
        self.connect_raw(self.ws_request(Some(&format!("token={token}")))).await
    }

    /// A handshake request for the hub's WebSocket URL with an optional raw query string, for tests that add
    /// headers (subprotocols, user agent...).
    pub(crate) fn ws_request(&self, query: Option<&str>) -> http::Request<()> {
        let url = match query {
            Some(query) => format!("{}?{query}", self.ws_url),
            None => self.ws_url.clone(),
        };
        url.into_client_request().expect("valid ws url")
    }

    /// Connects with a custom handshake request. A refused handshake is `Err(Error::Http(response))`.
    pub(crate) async fn connect_raw(&self, request: http::Request<()>) -> Result<TestClient, tungstenite::Error> {
        let (ws, response) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .unwrap_or_else(|_| panic!("handshake did not finish within {RECV_TIMEOUT:?}"))?;
        Ok(TestClient { ws, handshake: response, buffered: VecDeque::new(), next_id: 0, closed: None })
    }

    /// `POST {management}/@connections/{id}` with a raw body, SigV4-signed as an AWS SDK signs it.
    pub(crate) async fn post_to_connection(&self, id: &str, body: impl Into<bytes::Bytes>) -> reqwest::Response {
        self.management("POST", &self.connection_url(id), body.into(), &self.credentials).await
    }

    pub(crate) async fn get_connection(&self, id: &str) -> reqwest::Response {
        self.management("GET", &self.connection_url(id), bytes::Bytes::new(), &self.credentials).await
    }

    pub(crate) async fn delete_connection(&self, id: &str) -> reqwest::Response {
        self.management("DELETE", &self.connection_url(id), bytes::Bytes::new(), &self.credentials).await
    }

    /// A management API request to `url`, signed with `credentials` (which may be wrong on purpose).
    pub(crate) async fn management(
        &self,
        method: &str,
        url: &str,
        body: bytes::Bytes,
        credentials: &local::Credentials,
    ) -> reqwest::Response {
        let headers = sigv4_headers(method, url, &body, credentials);
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.unwrap_or_else(|error| panic!("management request to {url}: {error}"))
    }

    /// The `@connections` URL of `id`, percent-encoded as SDKs send it.
    pub(crate) fn connection_url(&self, id: &str) -> String {
        let encoded = percent_encode_id(id);
        format!("{}/@connections/{encoded}", self.management_url)
    }

    /// Ids of the connections open right now.
    pub(crate) fn connection_ids(&self) -> Vec<String> {
        self.harness.connection_ids()
    }

    /// Waits until the store no longer has the connection: the sign that `$disconnect` ran.
    pub(crate) async fn wait_until_disconnected(&self, id: &str) {
        let id = shared::ids::ConnectionId::parse(id).expect("connection id");
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let record = self.harness.deps.store.get_connection(&id).await.expect("store read");
            if record.is_none() {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "$disconnect did not remove {id} within {RECV_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The headers (`x-amz-date`, `authorization`) the AWS SDK's SigV4 signer adds to a management API request.
pub(crate) fn sigv4_headers(
    method: &str,
    url: &str,
    body: &[u8],
    credentials: &local::Credentials,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_smithy_runtime_api::client::identity::Identity;

    let identity: Identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        credentials.secret_access_key.expose_secret(),
        None,
        None,
        "e2e",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&credentials.region)
        .name("execute-api")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing parameters")
        .into();
    let request = SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(body)).expect("signable");
    let (instructions, _) = sign(request, &params).expect("sign").into_parts();
    instructions.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect()
}

enum Auth<'a> {
    ApiKey,
    Bearer(&'a str),
}

/// `=` → `%3D` and other reserved characters, as the AWS SDKs encode the id path segment.
pub(crate) fn percent_encode_id(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A real WebSocket client. Every receive has a timeout; frames that arrive while waiting for something else are
/// kept for later calls.
pub(crate) struct TestClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The 101 response, to check negotiated headers.
    pub(crate) handshake: tungstenite::handshake::client::Response,
    buffered: VecDeque<Value>,
    next_id: u64,
    closed: Option<Option<CloseFrame>>,
}

impl TestClient {
    /// This socket's connection id, from a `hello` ack.
    pub(crate) async fn connection_id(&mut self) -> String {
        let ack = self.request("hello", json!({})).await;
        ack["data"]["connectionId"].as_str().expect("connection id").to_owned()
    }

    pub(crate) async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send text");
    }

    /// Sends any message (binary, raw frames...), returning the error instead of failing.
    pub(crate) async fn send_message(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        self.ws.send(message).await
    }

    /// Sends `{"action", "id", "data"}` and returns the ack with that id; events seen meanwhile are kept.
    pub(crate) async fn request(&mut self, action: &str, data: Value) -> Value {
        self.request_within(action, data, RECV_TIMEOUT).await
    }

    /// As [`TestClient::request`], waiting up to `wait` for the ack.
    pub(crate) async fn request_within(&mut self, action: &str, data: Value, wait: Duration) -> Value {
        self.next_id += 1;
        let request = cli::AckRequest::new(action, format!("t{}", self.next_id), data);
        self.send_text(&request.to_text()).await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let id = &request.id;
            let frame =
                self.read_json(remaining).await.unwrap_or_else(|| panic!("no ack for {action} ({id}) within {wait:?}"));
            if request.is_answered_by(&frame) {
                return frame;
            }
            self.buffered.push_back(frame);
        }
    }

    /// Sends the heartbeat `{"action":"ping"}` and returns the gateway's answer, the next `{"type":"pong"}`; frames
    /// seen meanwhile are kept. A pong carries no id, so this proves the socket is alive, nothing more.
    pub(crate) async fn ping(&mut self) -> Value {
        self.send_json(json!({"action": "ping"})).await;
        self.next_pong(RECV_TIMEOUT).await
    }

    /// The next pong (buffered first), skipping and keeping other frames; fails after `wait`.
    pub(crate) async fn next_pong(&mut self, wait: Duration) -> Value {
        let is_pong = |frame: &Value| frame["type"] == "pong";
        if let Some(at) = self.buffered.iter().position(is_pong) {
            return self.buffered.remove(at).unwrap_or(Value::Null);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.read_json(remaining).await.unwrap_or_else(|| panic!("no pong within {wait:?}"));
            if is_pong(&frame) {
                return frame;
            }
            self.buffered.push_back(frame);
        }
    }

    /// The next JSON frame (buffered first), or `None` if nothing arrives within `wait`.
    pub(crate) async fn recv_json_within(&mut self, wait: Duration) -> Option<Value> {
        match self.buffered.pop_front() {
            Some(frame) => Some(frame),
            None => self.read_json(wait).await,
        }
    }

    /// The next text frame as a string, or `None` within `wait`; for frames that are not JSON.
    pub(crate) async fn recv_text_within(&mut self, wait: Duration) -> Option<String> {
        if let Some(frame) = self.buffered.pop_front() {
            return Some(frame.to_string());
        }
        match self.read_message(wait).await? {
            Message::Text(text) => Some(text.to_string()),
            _ => None,
        }
    }

    /// The next `event` frame named `name`, skipping (and keeping) others; fails after [`RECV_TIMEOUT`].
    pub(crate) async fn next_event(&mut self, name: &str) -> Value {
        self.next_event_within(name, RECV_TIMEOUT).await
    }

    /// As [`TestClient::next_event`] with a longer guard, for measurements on a loaded machine: the timeout there
    /// only proves liveness, it is not a speed assertion.
    pub(crate) async fn next_event_within(&mut self, name: &str, wait: Duration) -> Value {
        let is_it = |frame: &Value| frame["type"] == "event" && frame["event"] == name;
        if let Some(at) = self.buffered.iter().position(is_it) {
            return self.buffered.remove(at).unwrap_or(Value::Null);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.read_json(remaining).await.unwrap_or_else(|| panic!("no {name} event within {wait:?}"));
            if is_it(&frame) {
                return frame;
            }
            self.buffered.push_back(frame);
        }
    }

    /// Asserts that nothing new arrives on the socket for `wait`. Frames buffered earlier (seen while waiting for
    /// an ack) had already arrived, so they are left for `next_event` / `recv_json_within` and do not count.
    pub(crate) async fn expect_silence(&mut self, wait: Duration) {
        if let Some(frame) = self.read_json(wait).await {
            panic!("expected silence, got {frame}");
        }
    }

    /// Discards whatever arrives within `wait`.
    pub(crate) async fn drain(&mut self, wait: Duration) {
        self.buffered.clear();
        while self.read_json(wait).await.is_some() {}
    }

    /// Closes with 1000 and waits for the server's close reply.
    pub(crate) async fn close(&mut self) {
        self.close_with(1000, "").await;
    }

    /// Sends Close(code, reason) and returns the close frame the server answered with.
    pub(crate) async fn close_with(&mut self, code: u16, reason: &str) -> Option<CloseFrame> {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        self.wait_closed(RECV_TIMEOUT).await
    }

    /// Waits for the server to close the socket and returns its close frame (`None` for no frame or no close).
    pub(crate) async fn wait_closed(&mut self, wait: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.closed.is_none() {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() || self.read_message(remaining).await.is_none() && self.closed.is_none() {
                break;
            }
        }
        self.closed.clone().flatten()
    }

    /// Whether the server's close has been seen.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// The raw next data message (pings and pongs skipped), or `None` within `wait` or after close.
    pub(crate) async fn read_message(&mut self, wait: Duration) -> Option<Message> {
        if self.closed.is_some() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            match next {
                Some(Ok(Message::Close(frame))) => {
                    self.closed = Some(frame);
                    return None;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => {
                    self.closed = Some(None);
                    return None;
                }
            }
        }
    }

    async fn read_json(&mut self, wait: Duration) -> Option<Value> {
        match self.read_message(wait).await? {
            Message::Text(text) => Some(serde_json::from_str(&text).unwrap_or(Value::String(text.to_string()))),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}
