//! The Management API pusher: [`Pusher`] on `aws-sdk-apigatewaymanagement` (`PostToConnection`,
//! `DeleteConnection`).
//!
//! In the cloud it posts to `https://{api}.execute-api.{region}.amazonaws.com/{stage}`; offline it is pointed at the
//! harness's `@connections` emulation, which is how the cloud path is tested without AWS.
//!
//! Retries are ours, not the SDK's: the SDK's retry layer is disabled so that a throttled fan-out backs off per
//! connection with full jitter and a fixed attempt budget, draws every retry from one quota the whole pusher shares
//! (so a fan-out to thousands of throttled connections cannot multiply its load by the attempt budget), and so that the outcome of each attempt is classified
//! here by the typed error (`GoneException`, `PayloadTooLargeException`, `LimitExceededException`) rather than by
//! strings. Gone means "prune this connection" and is never logged as an error; 413 is not retried because
//! retrying cannot make a payload smaller. Concurrency is bounded by the caller ([`super::fan_out`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use rand::Rng;

use super::{PushError, Pusher};
use crate::ids::ConnectionId;

/// How throttled (429) and failed (5xx, timeout, connection error) calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles per attempt up to `cap`. Each sleep is uniformly random in
    /// `0..=min(cap, base * 2^n)` ("full jitter"), so a throttled fan-out does not retry in lockstep.
    pub base: Duration,
    pub cap: Duration,
    /// Tokens every call of one pusher shares for retries, as the AWS SDKs' standard retry quota: a retry costs
    /// `retry_cost`, a call that succeeds gives back what it spent (or one token if it spent none), and with the
    /// quota empty a retryable failure is final. A fan-out to connections that are all throttled therefore makes
    /// at most `quota / retry_cost` retries before it stops adding load.
    pub quota: u32,
    pub retry_cost: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(1),
            quota: 500,
            retry_cost: 5,
        }
    }
}

/// The shared retry tokens of one pusher (see [`RetryPolicy::quota`]).
#[derive(Debug)]
struct RetryQuota {
    available: AtomicU32,
    capacity: u32,
}

impl RetryQuota {
    fn new(capacity: u32) -> Self {
        Self { available: AtomicU32::new(capacity), capacity }
    }

    fn try_spend(&self, cost: u32) -> bool {
        self.available.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| tokens.checked_sub(cost)).is_ok()
    }

    fn give_back(&self, tokens: u32) {
        let capacity = self.capacity;
        let _ = self.available.fetch_update(Ordering::AcqRel, Ordering::Acquire, |available| {
            Some(available.saturating_add(tokens).min(capacity))
        });
    }
}

impl RetryPolicy {
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.base.saturating_mul(2u32.saturating_pow(retry)).min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// The Management API endpoint for a WebSocket event's `domainName` and `stage`. API Gateway is HTTPS only; a
/// loopback domain (`127.0.0.1:PORT`, `localhost:PORT`) is the harness, which speaks plain HTTP.
pub fn endpoint_from_event(domain_name: &str, stage: &str) -> String {
    let host = domain_name.split(':').next().unwrap_or(domain_name);
    let scheme = if matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "0.0.0.0") { "http" } else { "https" };
    let stage = stage.trim_matches('/');
    if stage.is_empty() { format!("{scheme}://{domain_name}") } else { format!("{scheme}://{domain_name}/{stage}") }
}

/// [`Pusher`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct ApiGatewayPusher {
    client: Client,
    retry: RetryPolicy,
    quota: Arc<RetryQuota>,
}

impl ApiGatewayPusher {
    /// A pusher for `endpoint` (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`, or the harness's
    /// `http://127.0.0.1:PORT/{stage}`).
    ///
    /// Region and credentials as [`crate::aws::load`] gives them.
    pub async fn for_endpoint(endpoint: &str) -> Self {
        let shared = crate::aws::load(Some(endpoint)).await;
        Self::from_sdk_config(&shared, endpoint)
    }

    /// A pusher from an already loaded SDK configuration.
    pub fn from_sdk_config(shared: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(shared)
            .endpoint_url(endpoint.trim_end_matches('/'))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            )
            .build();
        let retry = RetryPolicy::default();
        Self { client: Client::from_conf(config), retry, quota: Arc::new(RetryQuota::new(retry.quota)) }
    }

    /// Replaces the retry policy (tests use short backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self.quota = Arc::new(RetryQuota::new(retry.quota));
        self
    }

    /// The SDK client, for `GetConnection` and other calls outside the [`Pusher`] port.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `call` until it succeeds, fails for good, or spends the attempt budget.
    async fn with_retries<F, Fut>(&self, connection: &ConnectionId, mut call: F) -> Result<(), PushError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        let mut attempt = 1;
        let mut spent = 0;
        loop {
            let outcome = call().await;
            let error = match outcome {
                Outcome::Done(result) => {
                    if result.is_ok() {
                        self.quota.give_back(spent.max(1));
                    }
                    return result;
                }
                Outcome::Retryable(error) => error,
            };
            if attempt >= self.retry.max_attempts {
                tracing::debug!(connection_id = %connection, attempts = attempt, "retry budget spent");
                return Err(error);
            }
            if !self.quota.try_spend(self.retry.retry_cost) {
                tracing::debug!(connection_id = %connection, attempts = attempt, "retry quota empty");
                return Err(error);
            }
            spent += self.retry.retry_cost;
            tokio::time::sleep(self.retry.backoff(attempt - 1)).await;
            attempt += 1;
        }
    }
}

/// One attempt's classified result.
enum Outcome {
    Done(Result<(), PushError>),
    /// Worth another attempt; this is the error to report if none is left.
    Retryable(PushError),
}

#[async_trait]
impl Pusher for ApiGatewayPusher {
    async fn post(&self, connection: &ConnectionId, payload: Bytes) -> Result<(), PushError> {
        self.with_retries(connection, || {
            let request = self
                .client
                .post_to_connection()
                .connection_id(connection.as_str())
                .data(aws_smithy_types::Blob::new(payload.to_vec()));
            async move {
                match request.send().await {
                    Ok(_) => Outcome::Done(Ok(())),
                    Err(error) => classify_post(error),
                }
            }
        })
        .await
    }

    async fn disconnect(&self, connection: &ConnectionId) -> Result<(), PushError> {
        self.with_retries(connection, || {
            let request = self.client.delete_connection().connection_id(connection.as_str());
            async move {
                match request.send().await {
                    Ok(_) => Outcome::Done(Ok(())),
                    Err(error) => classify_delete(error),
                }
            }
        })
        .await
    }
}

fn classify_post(error: SdkError<PostToConnectionError>) -> Outcome {
    let status = error.raw_response().map(|r| r.status().as_u16());
    match &error {
        SdkError::ServiceError(context) => match context.err() {
            PostToConnectionError::GoneException(_) => Outcome::Done(Err(PushError::Gone)),
            PostToConnectionError::PayloadTooLargeException(_) => Outcome::Done(Err(PushError::PayloadTooLarge)),
            PostToConnectionError::LimitExceededException(_) => Outcome::Retryable(PushError::Throttled),
            _ => by_status(status, Box::new(error)),
        },
        _ => transport(error),
    }
}

fn classify_delete(error: SdkError<DeleteConnectionError>) -> Outcome {
    let status = error.raw_response().map(|r| r.status().as_u16());
    match &error {
        SdkError::ServiceError(context) => match context.err() {
            DeleteConnectionError::GoneException(_) => Outcome::Done(Err(PushError::Gone)),
            DeleteConnectionError::LimitExceededException(_) => Outcome::Retryable(PushError::Throttled),
            _ => by_status(status, Box::new(error)),
        },
        _ => transport(error),
    }
}

/// Unmodelled service errors: 5xx is worth retrying, anything else (403 Forbidden, 400) is not.
fn by_status(status: Option<u16>, error: crate::store::BoxError) -> Outcome {
    match status {
        Some(429) => Outcome::Retryable(PushError::Throttled),
        Some(500..=599) => Outcome::Retryable(PushError::Backend(error)),
        _ => Outcome::Done(Err(PushError::Backend(error))),
    }
}

/// Timeouts, connection failures and unreadable responses may succeed on another attempt; a request that could not
/// even be built will not.
fn transport<E>(error: SdkError<E>) -> Outcome
where
    E: std::error::Error + Send + Sync + 'static,
{
    let retryable =
        matches!(error, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_));
    let error = PushError::Backend(Box::new(error));
    if retryable { Outcome::Retryable(error) } else { Outcome::Done(Err(error)) }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::{IntoResponse, Response};

    use super::*;

    /// One request the fake Management API saw: method and body length.
    type Call = (String, usize);

    /// What the fake Management API saw, per connection id.
    #[derive(Default, Clone)]
    struct Seen(Arc<Mutex<HashMap<String, Vec<Call>>>>);

    impl Seen {
        fn calls(&self, id: &str) -> Vec<Call> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned().unwrap_or_default()
        }
    }

    fn error(status: StatusCode, kind: &str, body: &'static str) -> Response {
        (status, [("x-amzn-ErrorType", kind), ("content-type", "application/json")], body).into_response()
    }

    /// A tiny `@connections` server whose behaviour is chosen by the connection id: `gone`, `big`, `throttled`
    /// (429 forever), `busy2` (429 twice, then 200), `flaky` (500 once, then 200), `forbidden`, anything else 200.
    async fn fake_management_api() -> (String, Seen) {
        let seen = Seen::default();
        let state = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let seen = state.clone();
            async move {
                let method = request.method().to_string();
                let path = request.uri().path().to_owned();
                let id = path.rsplit('/').next().unwrap_or("").to_owned();
                let body = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap_or_default();
                let attempt = {
                    let mut map = seen.0.lock().unwrap_or_else(|e| e.into_inner());
                    let calls = map.entry(id.clone()).or_default();
                    calls.push((method, body.len()));
                    calls.len()
                };
                if !path.contains("/stage/%40connections/") && !path.contains("/stage/@connections/") {
                    return error(StatusCode::NOT_FOUND, "NotFoundException", r#"{"message":"bad path"}"#);
                }
                match (id.as_str(), attempt) {
                    // Real API Gateway often answers Gone with an empty body: the header alone must suffice.
                    ("gone", _) => error(StatusCode::GONE, "GoneException", ""),
                    ("big", _) => error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PayloadTooLargeException",
                        r#"{"message":"Message too long"}"#,
                    ),
                    (throttled, _) if throttled.starts_with("throttled") => {
                        error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", r#"{"message":"slow down"}"#)
                    }
                    ("busy2", 1 | 2) => {
                        error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", r#"{"message":"slow down"}"#)
                    }
                    ("flaky", 1) => error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerErrorException", "{}"),
                    ("forbidden", _) => {
                        error(StatusCode::FORBIDDEN, "ForbiddenException", r#"{"message":"Forbidden"}"#)
                    }
                    _ => StatusCode::OK.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}/stage"), seen)
    }

    async fn pusher(endpoint: &str) -> ApiGatewayPusher {
        ApiGatewayPusher::for_endpoint(endpoint).await.with_retry(RetryPolicy {
            base: Duration::from_millis(2),
            cap: Duration::from_millis(10),
            ..RetryPolicy::default()
        })
    }

    fn id(raw: &str) -> ConnectionId {
        ConnectionId::parse(raw).expect("connection id")
    }

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), future).await.expect("the call finished in time")
    }

    #[tokio::test]
    async fn a_successful_post_sends_the_payload_once() {
        let (endpoint, seen) = fake_management_api().await;
        let pusher = pusher(&endpoint).await;

        within(pusher.post(&id("ok"), Bytes::from_static(b"{\"hi\":1}"))).await.expect("delivered");

        assert_eq!(seen.calls("ok"), vec![("POST".to_owned(), 8)]);
    }

    #[tokio::test]
    async fn gone_maps_to_gone_without_retrying() {
        let (endpoint, seen) = fake_management_api().await;
        let pusher = pusher(&endpoint).await;

        let result = within(pusher.post(&id("gone"), Bytes::from_static(b"x"))).await;

        assert!(matches!(result, Err(PushError::Gone)), "{result:?}");
        assert_eq!(seen.calls("gone").len(), 1);
    }

    #[tokio::test]
    async fn payload_too_large_maps_to_a_clear_failure_without_retrying() {
        let (endpoint, seen) = fake_management_api().await;
        let pusher = pusher(&endpoint).await;

        let result = within(pusher.post(&id("big"), Bytes::from_static(b"x"))).await;

        assert!(matches!(result, Err(PushError::PayloadTooLarge)), "{result:?}");
        assert_eq!(seen.calls("big").len(), 1);
    }

    #[tokio::test]
    async fn throttling_is_retried_until_it_clears() {
        let (endpoint, seen) = fake_management_api().await;
        let pusher = pusher(&endpoint).await;

        within(pusher.post(&id("busy2"), Bytes::from_static(b"x"))).await.expect("delivered on the third try");

        assert_eq!(seen.calls("busy2").len(), 3);
    }

    #[tokio::test]
    async fn endless_throttling_spends_the_budget_and_reports_throttled() {
        let (endpoint, seen) = fake_management_api().await;
        let pusher = pusher(&endpoint).await;

        let result = within(pusher.post(&id("throttled"), Bytes::from_static(b"x"))).await;

        assert!(matches!(result, Err(PushError::Throttled)), "{result:?}");
        assert_eq!(seen.calls("throttled").len(), 5);
    }

    #[tokio::test]
    async fn a_server_error_is_retried() {
        let (endpoint, seen) = fake_management_api().await;
        let pusher = pusher(&endpoint).await;

        within(pusher.post(&id("flaky"), Bytes::from_static(b"x"))).await.expect("delivered on the second try");

        assert_eq!(seen.calls("flaky").len(), 2);
    }

    #[tokio::test]
    async fn forbidden_is_a_backend_failure_without_retrying() {
        let (endpoint, seen) = fake_management_api().await;
        let pusher = pusher(&endpoint).await;

        let result = within(pusher.post(&id("forbidden"), Bytes::from_static(b"x"))).await;

        assert!(matches!(result, Err(PushError::Backend(_))), "{result:?}");
        assert_eq!(seen.calls("forbidden").len(), 1);
    }

    #[tokio::test]
    async fn disconnect_sends_delete_and_maps_gone() {
        let (endpoint, seen) = fake_management_api().await;
        let pusher = pusher(&endpoint).await;

        within(pusher.disconnect(&id("ok"))).await.expect("deleted");
        let gone = within(pusher.disconnect(&id("gone"))).await;

        assert_eq!(seen.calls("ok"), vec![("DELETE".to_owned(), 0)]);
        assert!(matches!(gone, Err(PushError::Gone)), "{gone:?}");
    }

    #[test]
    fn endpoints_derive_from_the_event_domain_and_stage() {
        assert_eq!(
            endpoint_from_event("abc123.execute-api.eu-west-1.amazonaws.com", "prod"),
            "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
        );
        assert_eq!(endpoint_from_event("127.0.0.1:4000", "local"), "http://127.0.0.1:4000/local");
        assert_eq!(endpoint_from_event("localhost:4000", "/dev/"), "http://localhost:4000/dev");
    }

    #[tokio::test]
    async fn retries_stop_when_the_shared_quota_is_spent_and_successes_refill_it() {
        let (endpoint, seen) = fake_management_api().await;
        // Room for two retries: the first connection retries twice, every later one fails on its first answer.
        let pusher = ApiGatewayPusher::for_endpoint(&endpoint).await.with_retry(RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            quota: 10,
            retry_cost: 5,
        });

        for n in 1..=4 {
            let result = within(pusher.post(&id(&format!("throttled-{n}")), Bytes::from_static(b"x"))).await;
            assert!(matches!(result, Err(PushError::Throttled)), "{result:?}");
        }
        let attempts: Vec<usize> = (1..=4).map(|n| seen.calls(&format!("throttled-{n}")).len()).collect();
        assert_eq!(attempts, [3, 1, 1, 1], "retries drawn from the quota, then none");

        // Five successes give back five tokens: one retry's worth again.
        for _ in 0..5 {
            within(pusher.post(&id("ok"), Bytes::from_static(b"x"))).await.expect("delivered");
        }
        let _ = within(pusher.post(&id("throttled-5"), Bytes::from_static(b"x"))).await;
        assert_eq!(seen.calls("throttled-5").len(), 2, "one retry after the quota refilled");
    }

    #[test]
    fn backoff_stays_within_the_capped_exponential_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 0..10 {
            let ceiling = policy.base.saturating_mul(2u32.saturating_pow(retry)).min(policy.cap);
            for _ in 0..20 {
                assert!(policy.backoff(retry) <= ceiling);
            }
        }
    }
}
