//! The local harness: an API Gateway WebSocket API emulator plus Bellhop's HTTP API on one loopback listener,
//! running the very same `shared::handlers` the Lambdas run, on SQLite (or DynamoDB Local) instead of DynamoDB.
//!
//! [`spawn`] is used by `main` and by the end-to-end tests alike. What is emulated, and how faithfully, follows
//! `shared/reference/apigw-websocket.md`; the limits are `shared::gateway`'s:
//!
//! - `ws://127.0.0.1:P/{stage}`: the REQUEST authorizer (its identity source is not configured, so it always runs
//!   and finds the token itself), `$connect`, a `$default` route with a `$default` route response, the `ping` route
//!   (a MOCK integration answering a static pong, no handler), `$disconnect` exactly once per accepted connection; AWS's event shapes; 32 KiB frames and 128 KiB messages (1009), binary
//!   → 1003, invalid UTF-8 → 1007, protocol violations → 1002; route responses over 128 KiB refused; connect URLs
//!   over 4,096 bytes (414) and authorizer results over 8 KiB (500) refused; the 29-second integration timeout;
//!   idle timeout and maximum duration (both → 1001 "Going away"; AWS's code is unverified); each message invoked
//!   independently (concurrently, acks in completion order) unless `strict_order`; the stage's route throttling.
//! - `http://127.0.0.1:P/{stage}/@connections/{id}`: the management API, SigV4-verified.
//! - everything else: `shared::http::router`.
//!
//! The harness is also safe to leave running: it binds to loopback, answers only requests whose `Host` is a
//! loopback name (DNS rebinding), drops connections whose request headers take too long, and while the public
//! development secrets are in use accepts browser requests only from local origins (see [`edge`]).
//!
//! Known differences from AWS are listed in the README's "Local emulation" section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::Request;
use shared::config::Config;
use shared::handlers::Deps;
use shared::push::Pusher;
use shared::store::Store;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

pub mod delay_queue;
pub mod edge;
mod gateway;
pub mod pusher;

pub use gateway::sigv4::Credentials;
pub use gateway::throttle::Throttling;
pub use pusher::InProcessPusher;

/// How long a client may take to send a request's headers before the harness drops the connection, so half-sent
/// requests cannot pile up.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Gives up on the authorizer, `$connect` or a route after this long (AWS: 29 s).
    pub integration_timeout: Duration,
    /// Runs one connection's messages one after another instead of concurrently as AWS does (for debugging).
    pub strict_order: bool,
    /// The stage's route throttling; `None` turns it off (load tests).
    pub throttling: Option<Throttling>,
    /// What `@connections` requests must be signed with.
    pub credentials: Credentials,
    /// Added before every `@connections` answer (fan-out measurements).
    pub management_delay: Duration,
    /// Drops connections that have not sent their request headers within this long.
    pub header_read_timeout: Duration,
    pub config: Config,
}

impl HarnessOptions {
    /// Stage `local`, in-memory store, in-process pusher, any port; AWS's limits, timeouts and throttling, and the
    /// credentials, invocation order and management delay of `config.harness`.
    pub fn new(config: Config) -> Self {
        let harness = &config.harness;
        Self {
            port: 0,
            stage: "local".to_owned(),
            store: StoreChoice::Memory,
            pusher: PusherChoice::InProcess,
            idle_timeout: shared::gateway::IDLE_TIMEOUT,
            max_lifetime: shared::gateway::MAX_CONNECTION_DURATION,
            integration_timeout: shared::gateway::INTEGRATION_TIMEOUT,
            strict_order: harness.strict_order,
            throttling: harness.throttling.map(|(burst, rate)| Throttling { burst, rate: f64::from(rate) }),
            credentials: Credentials {
                access_key_id: harness.access_key_id.clone(),
                secret_access_key: harness.secret_access_key.clone(),
                region: harness.region.clone(),
            },
            management_delay: Duration::from_millis(harness.management_delay_ms),
            header_read_timeout: HEADER_READ_TIMEOUT,
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

    /// Changes the delay added before every `@connections` answer (see [`HarnessOptions::management_delay`]).
    pub fn set_management_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.gateway.management_delay_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ids of the open connections.
    pub fn connection_ids(&self) -> Vec<String> {
        self.gateway.registry.all().iter().map(|c| c.id().to_owned()).collect()
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
    let HarnessOptions {
        port,
        stage,
        store,
        pusher,
        idle_timeout,
        max_lifetime,
        integration_timeout,
        strict_order,
        throttling,
        credentials,
        management_delay,
        header_read_timeout,
        mut config,
    } = options;
    let stage = stage.trim_matches('/').to_owned();
    anyhow::ensure!(
        !stage.is_empty() && stage.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "stage must be letters, digits, - or _"
    );
    // Loopback only: the harness runs with public development secrets by default.
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
        PusherChoice::Sdk => Arc::new(sdk_pusher(&management_url, &credentials).await),
    };
    // Missed calls go through an emulated SQS delay queue to `call-timeout`'s handler, as in the cloud.
    let queue = delay_queue::DelayQueue::new(delay_queue::QueueSettings::default(), credentials.region.clone());
    let deps = Arc::new(Deps::new(config, store, pusher, queue.clone()));
    queue.start(&deps);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (sessions_tx, sessions_rx) = mpsc::channel(1);
    let settings = gateway::EmulationSettings {
        stage: stage.clone(),
        idle_timeout,
        max_lifetime,
        integration_timeout,
        strict_order,
        throttling,
        credentials,
    };
    let edge = edge::EdgePolicy::from_config(&deps.config);
    let gateway = Arc::new(gateway::Gateway::new(
        deps.clone(),
        registry,
        settings,
        addr.port(),
        shutdown_rx.clone(),
        sessions_tx,
        management_delay,
    ));
    tokio::spawn(gateway::expiry::run(gateway.clone()));
    let app = app(gateway.clone(), deps.clone(), edge);

    let server = tokio::spawn(serve(listener, app, header_read_timeout, shutdown_rx));
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

fn app(gateway: Arc<gateway::Gateway>, deps: Arc<Deps>, edge: edge::EdgePolicy) -> Router {
    gateway::router(gateway)
        .merge(shared::http::router(deps))
        .layer(axum::middleware::from_fn_with_state(Arc::new(edge), edge::guard))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            // Tokens travel in query strings (`?token=`); never let one reach a log line.
            tracing::info_span!("http", method = %request.method(), uri = %shared::telemetry::redacted_uri(request.uri()))
        }))
}

/// The SDK pusher, signing with the harness's own credentials and region so its requests verify.
async fn sdk_pusher(endpoint: &str, credentials: &Credentials) -> shared::push::apigw::ApiGatewayPusher {
    use secrecy::ExposeSecret;
    let shared = shared::aws::load(Some(endpoint))
        .await
        .into_builder()
        .region(aws_config::Region::new(credentials.region.clone()))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                &credentials.access_key_id,
                credentials.secret_access_key.expose_secret(),
                None,
                None,
                "bellhop-harness",
            ),
        ))
        .build();
    shared::push::apigw::ApiGatewayPusher::from_sdk_config(&shared, endpoint)
}

/// Accepts connections until shutdown: each gets `TCP_NODELAY` (acks and events are small writes that must not wait
/// for Nagle's algorithm), a header read timeout, and the peer address the handlers read as `ConnectInfo`.
async fn serve(listener: TcpListener, app: Router, header_read_timeout: Duration, mut shutdown: watch::Receiver<bool>) {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => return,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let service = app.clone().map_request(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                // The guard `wait_for` returns is dropped at once: it must not live across the await below.
                _ = async { drop(stop.wait_for(|stop| *stop).await) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
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
