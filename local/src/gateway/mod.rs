//! The API Gateway WebSocket emulation: `/{stage}` upgrades run the authorizer and `$connect`, each socket's
//! messages become MESSAGE events for `$default` (except the heartbeat, which the `ping` route's mock integration
//! answers without an event), closes become `$disconnect`, and `/{stage}/@connections/{id}` is
//! the management API. Behaviour follows `shared/reference/apigw-websocket.md`; deliberate differences are listed
//! in the crate docs.
//!
//! Architecture invariant: nothing here knows what Bellhop does. It translates sockets into `aws_lambda_events`
//! values for `shared::handlers` and management calls into socket writes, the way API Gateway would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, post};
use shared::handlers::Deps;
use tokio::sync::{mpsc, watch};

pub(crate) mod connections;
mod duplex;
pub(crate) mod events;
pub(crate) mod expiry;
pub(crate) mod handshake;
pub(crate) mod management;
pub(crate) mod routes;
pub(crate) mod session;
pub(crate) mod sigv4;
pub(crate) mod throttle;

pub(crate) use connections::Registry;

/// The fixed API id of the emulated API (real ids are 10 lowercase characters too).
pub(crate) const API_ID: &str = "bellhoploc";

/// How the emulated API behaves: timeouts, limits, invocation order and the management API's credentials.
#[derive(Debug, Clone)]
pub(crate) struct EmulationSettings {
    pub(crate) stage: String,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) integration_timeout: Duration,
    /// Runs one connection's messages one after another instead of concurrently.
    pub(crate) strict_order: bool,
    pub(crate) throttling: Option<throttle::Throttling>,
    pub(crate) credentials: sigv4::Credentials,
}

/// Everything the emulation shares across connections.
pub(crate) struct Gateway {
    pub(crate) deps: Arc<Deps>,
    pub(crate) registry: Registry,
    pub(crate) settings: EmulationSettings,
    /// The API's id, stage and domain, shared by every connection's context.
    pub(crate) api_id: Arc<str>,
    pub(crate) stage: Arc<str>,
    pub(crate) domain_name: Arc<str>,
    pub(crate) port: u16,
    pub(crate) throttles: Option<throttle::RouteThrottles>,
    /// Milliseconds added before every `@connections` answer, to measure fan-out against a management API with a
    /// realistic latency. Adjustable while running.
    pub(crate) management_delay_ms: std::sync::atomic::AtomicU64,
    /// Flips to true when the harness shuts down; every connection is then asked to close with 1001 (`expiry`), and
    /// its session runs `$disconnect`.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Each session holds a clone; shutdown waits until all are dropped, i.e. every `$disconnect` has run.
    sessions: Mutex<Option<mpsc::Sender<()>>>,
}

impl Gateway {
    pub(crate) fn new(
        deps: Arc<Deps>,
        registry: Registry,
        settings: EmulationSettings,
        port: u16,
        shutdown: watch::Receiver<bool>,
        sessions: mpsc::Sender<()>,
        management_delay: Duration,
    ) -> Self {
        Self {
            management_delay_ms: u64::try_from(management_delay.as_millis()).unwrap_or(u64::MAX).into(),
            deps,
            registry,
            api_id: API_ID.into(),
            stage: settings.stage.as_str().into(),
            throttles: settings.throttling.map(throttle::RouteThrottles::new),
            settings,
            domain_name: format!("127.0.0.1:{port}").into(),
            port,
            shutdown,
            sessions: Mutex::new(Some(sessions)),
        }
    }

    /// A token that keeps shutdown waiting while a session (and its `$disconnect`) is still running.
    pub(crate) fn session_guard(&self) -> Option<mpsc::Sender<()>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops handing out session guards, so the shutdown wait can complete.
    pub(crate) fn stop_tracking(&self) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The WebSocket endpoint and the management API, both under `/{stage}`.
pub(crate) fn router(gateway: Arc<Gateway>) -> Router {
    let stage = gateway.stage.clone();
    let connections = axum::routing::get(management::get_connection)
        .merge(post(management::post_to_connection))
        .merge(axum::routing::delete(management::delete_connection));
    Router::new()
        .route(&format!("/{stage}"), any(handshake::upgrade))
        .route(&format!("/{stage}/"), any(handshake::upgrade))
        // SDKs send `%40connections` and percent-encode the id (`=` → `%3D`); axum matches the raw path and decodes
        // the captured id, so both spellings land here with the decoded id.
        .route(&format!("/{stage}/@connections/{{id}}"), connections.clone())
        .route(&format!("/{stage}/%40connections/{{id}}"), connections)
        // Any other stage, or none at all (an endpoint without `/{stage}`): AWS answers 403.
        .route("/{stage}/@connections/{id}", any(management::wrong_stage))
        .route("/{stage}/%40connections/{id}", any(management::wrong_stage))
        .route("/@connections/{id}", any(management::wrong_stage))
        .route("/%40connections/{id}", any(management::wrong_stage))
        .with_state(gateway)
}
