//! The local harness: an API Gateway WebSocket API emulator plus Bellhop's HTTP API on one loopback listener,
//! running the very same `shared::handlers` the Lambdas run, on SQLite (or DynamoDB Local) instead of DynamoDB.
//!
//! [`spawn`] is used by `main` and by the end-to-end tests alike. What is emulated, and how faithfully, follows
//! `shared/reference/apigw-websocket.md`:
//!
//! - `ws://127.0.0.1:P/{stage}`: the REQUEST authorizer (its identity source is not configured, so it always runs
//!   and finds the token itself), `$connect`, a `$default` route with a `$default` route response, `$disconnect`
//!   exactly once per accepted connection; AWS's event shapes, limits (32 KiB frames, 128 KiB messages, binary →
//!   1003), idle timeout and maximum duration (both → 1001 "Going away"; AWS's code is unverified).
//! - `http://127.0.0.1:P/{stage}/@connections/{id}`: the management API.
//! - everything else: `shared::http::router`.
//!
//! Known differences from AWS: header names reach `$connect` lowercased (hyper does not keep the client's
//! spelling); `X-Forwarded-Proto` is `http`; SigV4 on `@connections` is not verified (loopback only); messages of
//! one connection are invoked one after another rather than concurrently; no throttling except a bounded outbound
//! queue per connection (429 `LimitExceededException` when a client stops reading).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::Request;
use shared::config::Config;
use shared::handlers::Deps;
use shared::handlers::calls::InProcessCallTimer;
use shared::push::Pusher;
use shared::store::Store;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

pub mod cli;
mod gateway;
pub mod pusher;
pub mod redact;

pub use pusher::InProcessPusher;

/// Where the harness keeps its data.
#[derive(Clone)]
pub enum StoreChoice {
    /// A SQLite file, created if missing.
    Sqlite(PathBuf),
    /// In-memory SQLite: fresh and private to this harness.
    Memory,
    /// DynamoDB Local (or any endpoint); the table is created if missing.
    Dynamo { endpoint: String, table: String },
    /// A store built by the caller, e.g. a deliberately broken one in a test.
    Custom(Arc<dyn Store>),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreChoice::Memory => f.write_str("Memory"),
            StoreChoice::Dynamo { endpoint, table } => {
                f.debug_struct("Dynamo").field("endpoint", endpoint).field("table", table).finish()
            }
            StoreChoice::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// How handlers reach sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PusherChoice {
    /// Straight into the harness's connection registry.
    #[default]
    InProcess,
    /// The real AWS SDK adapter, calling this harness's `@connections` over HTTP.
    Sdk,
}

#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// 0 picks any free port.
    pub port: u16,
    pub stage: String,
    pub store: StoreChoice,
    pub pusher: PusherChoice,
    /// Closes connections without data frames in either direction for this long (AWS: 10 min).
    pub idle_timeout: Duration,
    /// Closes every connection after this long (AWS: 2 h).
    pub max_lifetime: Duration,
    pub config: Config,
}

impl HarnessOptions {
    /// AWS's timeouts, stage `local`, in-memory store, in-process pusher, any port.
    pub fn new(config: Config) -> Self {
        Self {
            port: 0,
            stage: "local".to_owned(),
            store: StoreChoice::Memory,
            pusher: PusherChoice::InProcess,
            idle_timeout: Duration::from_secs(10 * 60),
            max_lifetime: Duration::from_secs(2 * 60 * 60),
            config,
        }
    }
}

/// A running harness. Dropping it shuts it down without waiting; [`RunningHarness::shutdown`] waits until every
/// connection is closed and its `$disconnect` has run.
pub struct RunningHarness {
    pub addr: SocketAddr,
    /// `ws://127.0.0.1:P/{stage}`
    pub ws_url: String,
    /// `http://127.0.0.1:P`
    pub http_url: String,
    /// `http://127.0.0.1:P/{stage}`: the endpoint for `@connections`, as an SDK wants it.
    pub management_url: String,
    pub deps: Arc<Deps>,
    gateway: Arc<gateway::Gateway>,
    shutdown: watch::Sender<bool>,
    sessions_done: Option<mpsc::Receiver<()>>,
    server: Option<JoinHandle<()>>,
}

impl RunningHarness {
    /// Connections currently open (after `$connect`, before their socket closed).
    pub fn open_connections(&self) -> usize {
        self.gateway.registry.len()
    }

    /// Ids of the open connections.
    pub fn connection_ids(&self) -> Vec<String> {
        self.gateway.registry.all().iter().map(|c| c.id.clone()).collect()
    }

    /// Stops accepting, closes every socket with 1001, waits for every `$disconnect` (at most 10 s), then stops.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.gateway.stop_tracking();
        if let Some(mut done) = self.sessions_done.take() {
            // Every session holds a sender; `None` means all of them finished.
            let _ = tokio::time::timeout(Duration::from_secs(10), done.recv()).await;
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for RunningHarness {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.gateway.stop_tracking();
    }
}

/// Builds the store, the pusher and the handlers' dependencies, binds `127.0.0.1:{port}` and serves.
pub async fn spawn(options: HarnessOptions) -> anyhow::Result<RunningHarness> {
    let HarnessOptions { port, stage, store, pusher, idle_timeout, max_lifetime, mut config } = options;
    let stage = stage.trim_matches('/').to_owned();
    anyhow::ensure!(
        !stage.is_empty() && stage.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "stage must be letters, digits, - or _"
    );
    // Loopback only: the management API below accepts unsigned requests.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("bind 127.0.0.1:{port}"))?;
    let addr = listener.local_addr().context("read the bound address")?;
    let http_url = format!("http://{addr}");
    let management_url = format!("{http_url}/{stage}");
    if config.management_endpoint.is_none() {
        config.management_endpoint = Some(management_url.clone());
    }

    let store = build_store(store).await?;
    let registry = gateway::Registry::default();
    let pusher: Arc<dyn Pusher> = match pusher {
        PusherChoice::InProcess => Arc::new(InProcessPusher::new(registry.clone())),
        PusherChoice::Sdk => Arc::new(shared::push::apigw::ApiGatewayPusher::for_endpoint(&management_url).await),
    };
    let timer = InProcessCallTimer::new();
    let deps = Arc::new(Deps::new(config, store, pusher, timer.clone()));
    timer.bind(&deps);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (sessions_tx, sessions_rx) = mpsc::channel(1);
    let gateway = Arc::new(gateway::Gateway::new(
        deps.clone(),
        registry,
        stage.clone(),
        addr.port(),
        idle_timeout,
        max_lifetime,
        shutdown_rx.clone(),
        sessions_tx,
    ));
    let app = app(gateway.clone(), deps.clone());

    let mut server_shutdown = shutdown_rx;
    let server = tokio::spawn(async move {
        let signal = async move {
            let _ = server_shutdown.wait_for(|stop| *stop).await;
        };
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, service).with_graceful_shutdown(signal).await {
            tracing::error!(%error, "harness server failed");
        }
    });
    tracing::info!(%addr, stage, "harness listening");

    Ok(RunningHarness {
        addr,
        ws_url: format!("ws://{addr}/{stage}"),
        http_url,
        management_url,
        deps,
        gateway,
        shutdown: shutdown_tx,
        sessions_done: Some(sessions_rx),
        server: Some(server),
    })
}

fn app(gateway: Arc<gateway::Gateway>, deps: Arc<Deps>) -> Router {
    gateway::router(gateway).merge(shared::http::router(deps)).layer(TraceLayer::new_for_http().make_span_with(
        |request: &Request<_>| {
            // Tokens travel in query strings (`?token=`); never let one reach a log line.
            tracing::info_span!("http", method = %request.method(), uri = %redact::uri(request.uri()))
        },
    ))
}

async fn build_store(choice: StoreChoice) -> anyhow::Result<Arc<dyn Store>> {
    use shared::store::sqlite::SqliteStore;
    Ok(match choice {
        StoreChoice::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("create data directory {}", dir.display()))?;
            }
            Arc::new(SqliteStore::open(&path).await.with_context(|| format!("open sqlite store {}", path.display()))?)
        }
        StoreChoice::Memory => Arc::new(SqliteStore::in_memory().await.context("open in-memory sqlite store")?),
        StoreChoice::Dynamo { endpoint, table } => {
            let store = shared::store::dynamo::DynamoStore::from_config(&table, Some(&endpoint)).await;
            store.create_table_if_missing().await.with_context(|| format!("create table {table} at {endpoint}"))?;
            Arc::new(store)
        }
        StoreChoice::Custom(store) => store,
    })
}
