//! How long each function runs per action, the figure Lambda bills: the handlers' wall time with DynamoDB and the
//! Management API answering at a stated latency.
//!
//! The harness runs in this process on the DynamoDB store (DynamoDB Local) with the AWS SDK pusher, as the Lambdas
//! do. Two latencies are injected, because the emulators' own are not AWS's: every DynamoDB request is padded to
//! take at least `dynamodb_latency` (an HTTP connector around the SDK's own, [`PaddedConnector`]), and the harness's
//! `@connections` answers each post after `management_delay`. Real WebSocket clients perform each action; each
//! handler's wall time is read from its own tracing span (`#[tracing::instrument]` on every handler), from the
//! moment it was called to the moment it returned, by a [`HandlerSpans`] layer installed in this process.
//!
//! The figures are what one invocation would take if DynamoDB and the Management API answered at those latencies
//! and the CPU work took what it takes here. They replace the cost model's "k round trips × 10 ms" with the
//! handlers' real concurrency and sequencing; they are not measured on AWS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use futures::StreamExt;
use local::{HarnessOptions, PusherChoice, RunningHarness, StoreChoice};
use serde::Serialize;
use serde_json::json;
use shared::config::Config;
use shared::store::dynamo::DynamoStore;
use tracing::span;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::cloud::{Socket, lock, median, millis, request, token};
use crate::proto::{EMIT_EVENT, Protocol};
use crate::report::percentile;
use crate::servers::{API_KEY, JWT_SECRET};

/// How long one action may take to finish, its handler's span included.
const ACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the spans are checked while waiting for a handler to return.
const POLL: Duration = Duration::from_millis(2);
/// The role of every connection: the configuration's default role rooms give a provider `provider:{sub}` and
/// `calendar` besides its user room.
const PROVIDER: &str = "provider";

/// What [`measure`] does.
#[derive(Clone, Debug)]
pub struct DurationsPlan {
    /// DynamoDB Local's endpoint.
    pub endpoint: String,
    /// The least time each DynamoDB request takes.
    pub dynamodb_latency: Duration,
    /// The harness's `@connections` delay before each answer.
    pub management_delay: Duration,
    /// Connections in the conversation room, the measured one included.
    pub room_size: usize,
    /// Measured rounds, after one warm-up round.
    pub rounds: u32,
}

/// One action's measurements over the measured rounds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ActionDurations {
    /// Handler call → return, per round, sorted (ms).
    pub wall_ms: Vec<f64>,
    /// The time a thread spent running the handler (its span entered), per round, sorted (ms).
    pub cpu_ms: Vec<f64>,
    /// DynamoDB requests the handler made, per round, sorted.
    pub requests: Vec<u64>,
}

/// What [`measure`] measured, by action.
#[derive(Clone, Debug, Serialize)]
pub struct DurationsResult {
    pub dynamodb_latency_ms: u64,
    pub management_delay_ms: u64,
    pub room_size: usize,
    pub rounds: u32,
    pub actions: BTreeMap<Action, ActionDurations>,
    /// How long DynamoDB Local took for each request of the measured actions, before the padding, sorted (ms). A
    /// request that took longer than the stated latency counts for more than it in the durations.
    pub local_ms: Vec<f64>,
}

/// The measured actions, in the order a session performs them, with the function that runs each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Action {
    Authorizer,
    Connect,
    RoomJoin,
    MessageSend,
    Emit,
    RoomLeave,
    Disconnect,
}

impl Action {
    /// The handler span that measures this action, and the `action` it records, if any.
    fn span(self) -> (&'static str, Option<&'static str>) {
        match self {
            Action::Authorizer => ("authorizer", None),
            Action::Connect => ("connect", None),
            Action::RoomJoin => ("message", Some("room:join")),
            Action::MessageSend => ("message", Some("message:send")),
            Action::Emit => ("emit", None),
            Action::RoomLeave => ("message", Some("room:leave")),
            Action::Disconnect => ("disconnect", None),
        }
    }

    fn label(self, room_size: usize) -> String {
        let others = room_size - 1;
        match self {
            Action::Authorizer => "`authorizer`: verify the JWT".to_owned(),
            Action::Connect => "`connect`: a provider's first connection, 3 automatic rooms".to_owned(),
            Action::RoomJoin => format!("`message`: `room:join` a room of {others} (`room:userJoined` to them)"),
            Action::MessageSend => format!("`message`: `message:send` to a room of {room_size} ({others} posts)"),
            Action::Emit => format!("`emit` (`POST /internal/emit`): one room of {room_size} ({room_size} posts)"),
            Action::RoomLeave => format!("`message`: `room:leave` a room of {room_size} (`room:userLeft` to {others})"),
            Action::Disconnect => "`disconnect`: the user's last connection, 3 rooms, 2 of them emptied".to_owned(),
        }
    }
}

impl DurationsResult {
    /// The table of this run, in Markdown.
    pub fn table(&self) -> String {
        let mut out = format!(
            "\nFunction durations: every DynamoDB request takes at least {} ms (DynamoDB Local, padded), `@connections` \
             answers after {} ms; {} measured rounds after one warm-up\n\n",
            self.dynamodb_latency_ms, self.management_delay_ms, self.rounds
        );
        out.push_str(
            "| function and action | DynamoDB requests | wall p50 (ms) | [min–max] | billed p50 (ms) | CPU p50 (ms) |\n",
        );
        out.push_str("|---|---|---|---|---|---|\n");
        for (action, measured) in &self.actions {
            let requests = match (measured.requests.first(), measured.requests.last()) {
                (Some(low), Some(high)) if low == high => low.to_string(),
                (Some(low), Some(high)) => format!("{low}–{high}"),
                _ => "–".to_owned(),
            };
            let p50 = median(&measured.wall_ms);
            out.push_str(&format!(
                "| {} | {requests} | {p50:.2} | [{:.2}–{:.2}] | {:.0} | {:.2} |\n",
                action.label(self.room_size),
                measured.wall_ms.first().copied().unwrap_or(0.0),
                measured.wall_ms.last().copied().unwrap_or(0.0),
                p50.ceil(),
                median(&measured.cpu_ms)
            ));
        }
        let slow = self.local_ms.iter().filter(|&&ms| ms > self.dynamodb_latency_ms as f64).count();
        out.push_str(&format!(
            "\nDynamoDB Local's own time per request, before the padding: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {slow} \
             of {} requests took longer than {} ms and count for more than it above\n",
            median(&self.local_ms),
            percentile(&self.local_ms, 0.99),
            self.local_ms.last().copied().unwrap_or(0.0),
            self.local_ms.len(),
            self.dynamodb_latency_ms
        ));
        out
    }
}

/// Runs the actions `plan.rounds + 1` times against a fresh harness on a fresh table and answers their durations.
/// `spans` must be installed as a layer of this process's tracing subscriber.
pub async fn measure(plan: &DurationsPlan, spans: &HandlerSpans) -> anyhow::Result<DurationsResult> {
    anyhow::ensure!(plan.room_size >= 2, "a room needs at least two connections");
    let requests = RequestLog::default();
    let store = padded_store(plan, &requests).await?;
    let harness = start_harness(plan, store).await?;
    let run = std::process::id();
    let room = format!("topic:bench-{run}-durations");

    // The room's other members: they stay for the whole run and only read. They are providers too, so that the
    // `calendar` room keeps members when the measured connection leaves it, as in the README's cost model.
    let mut members = Vec::new();
    for index in 1..plan.room_size {
        let mut socket = connect(&harness.ws_url, &format!("bench-{run}-member{index}"), Some(PROVIDER)).await?;
        request(&mut socket, &Protocol::Bellhop.join(&room)).await.context("a member joins")?;
        members.push(drain(socket));
    }

    let mut actions: BTreeMap<Action, ActionDurations> = BTreeMap::new();
    let mut local_ms = Vec::new();
    let http = reqwest::Client::new();
    for round in 0..=plan.rounds {
        let mut timed = Vec::new();
        let mark = spans.mark();
        let mut socket = connect(&harness.ws_url, &format!("bench-{run}-sender{round}"), Some(PROVIDER)).await?;
        timed.push((Action::Authorizer, spans.wait(Action::Authorizer, mark).await?));
        timed.push((Action::Connect, spans.wait(Action::Connect, mark).await?));

        let mark = spans.mark();
        request(&mut socket, &Protocol::Bellhop.join(&room)).await.context("room:join")?;
        timed.push((Action::RoomJoin, spans.wait(Action::RoomJoin, mark).await?));

        let mark = spans.mark();
        request(&mut socket, &Protocol::Bellhop.send(u64::from(round), &room, 0)).await.context("message:send")?;
        timed.push((Action::MessageSend, spans.wait(Action::MessageSend, mark).await?));

        let mark = spans.mark();
        let emit = json!({"event": EMIT_EVENT, "data": {"n": round}, "rooms": [room]});
        let answer = http
            .post(format!("{}/internal/emit", harness.http_url))
            .header("x-api-key", API_KEY)
            .json(&emit)
            .send()
            .await
            .context("POST /internal/emit")?;
        anyhow::ensure!(answer.status().is_success(), "POST /internal/emit answered {}", answer.status());
        timed.push((Action::Emit, spans.wait(Action::Emit, mark).await?));

        let mark = spans.mark();
        let leave = json!({"action": "room:leave", "id": "leave", "data": {"room": room}}).to_string();
        request(&mut socket, &leave).await.context("room:leave")?;
        timed.push((Action::RoomLeave, spans.wait(Action::RoomLeave, mark).await?));

        let mark = spans.mark();
        socket.close(None).await.context("close the sender")?;
        timed.push((Action::Disconnect, spans.wait(Action::Disconnect, mark).await?));

        if round == 0 {
            continue;
        }
        for (action, span) in timed {
            let measured = actions.entry(action).or_default();
            measured.wall_ms.push(span.wall().as_secs_f64() * 1000.0);
            measured.cpu_ms.push(span.cpu.as_secs_f64() * 1000.0);
            let made = requests.started_within(span.opened, span.closed);
            measured.requests.push(made.len() as u64);
            local_ms.extend(made.iter().map(|took| took.as_secs_f64() * 1000.0));
        }
    }
    for measured in actions.values_mut() {
        measured.wall_ms.sort_by(f64::total_cmp);
        measured.cpu_ms.sort_by(f64::total_cmp);
        measured.requests.sort_unstable();
    }
    local_ms.sort_by(f64::total_cmp);
    for member in members {
        member.abort();
    }
    harness.shutdown().await;
    Ok(DurationsResult {
        dynamodb_latency_ms: millis(plan.dynamodb_latency),
        management_delay_ms: millis(plan.management_delay),
        room_size: plan.room_size,
        rounds: plan.rounds,
        actions,
        local_ms,
    })
}

/// A DynamoDB store on a fresh table of DynamoDB Local whose client pads every request to the stated latency.
async fn padded_store(plan: &DurationsPlan, requests: &RequestLog) -> anyhow::Result<DynamoStore> {
    let table = format!("bellhop-durations-{}", std::process::id());
    let plain = DynamoStore::from_config(&table, Some(&plan.endpoint)).await;
    let config = plain.client().config();
    // The client the SDK would pick by default, which the configuration does not name: hyper with rustls.
    let inner = config.http_client().unwrap_or_else(|| {
        aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_https()
    });
    let padded = PaddedClient { inner, latency: plan.dynamodb_latency, log: requests.clone() };
    let client = aws_sdk_dynamodb::Client::from_conf(config.to_builder().http_client(padded).build());
    let store = DynamoStore::new(client, table);
    store.create_table_if_missing().await.context("create the table on DynamoDB Local")?;
    Ok(store)
}

/// The harness as the cloud runs the handlers: DynamoDB, the SDK's Management API client, the stage's default
/// limits but for a frame rate high enough that every action finds its connection's bucket full (the common case:
/// one bucket write, as `tests/e2e/dynamo_costs.rs` measures).
async fn start_harness(plan: &DurationsPlan, store: DynamoStore) -> anyhow::Result<RunningHarness> {
    let mut config = Config::from_lookup(
        |name| match name {
            "JWT_SECRET" => Some(JWT_SECRET.to_owned()),
            "INTERNAL_API_KEY" => Some(API_KEY.to_owned()),
            _ => None,
        },
        true,
    )
    .context("the harness's configuration")?;
    config.limits.inbound_per_second = 1000;
    let mut options = HarnessOptions::new(config);
    options.store = StoreChoice::Custom(Arc::new(store));
    options.pusher = PusherChoice::Sdk;
    options.management_delay = plan.management_delay;
    options.throttling = None;
    local::spawn(options).await.context("start the harness")
}

/// Opens a connection for `sub` with `role`, and waits for the upgrade: `$connect` has returned by then.
async fn connect(ws_url: &str, sub: &str, role: Option<&str>) -> anyhow::Result<Socket> {
    let token = token(sub, role)?;
    let url = Protocol::Bellhop.url(ws_url, &token);
    let (socket, _) = tokio::time::timeout(ACTION_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connect {sub}"))?;
    Ok(socket)
}

/// Reads and drops everything a member receives, so that its socket never backs up.
fn drain(mut socket: Socket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} })
}

/// When each DynamoDB request started, and how long DynamoDB Local took to answer it.
#[derive(Clone, Debug, Default)]
struct RequestLog(Arc<Mutex<Vec<(Instant, Duration)>>>);

impl RequestLog {
    fn record(&self, started: Instant, took: Duration) {
        lock(&self.0).push((started, took));
    }

    /// How long DynamoDB Local took for each request that started between `from` and `to`.
    fn started_within(&self, from: Instant, to: Instant) -> Vec<Duration> {
        lock(&self.0).iter().filter(|(started, _)| (from..=to).contains(started)).map(|&(_, took)| took).collect()
    }
}

/// The SDK's HTTP client with every request padded to `latency`: a request DynamoDB Local answers sooner waits for
/// the rest before its answer is handed back, as if the network and the service had taken that long.
#[derive(Debug)]
struct PaddedClient {
    inner: SharedHttpClient,
    latency: Duration,
    log: RequestLog,
}

impl HttpClient for PaddedClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(PaddedConnector {
            inner: self.inner.http_connector(settings, components),
            latency: self.latency,
            log: self.log.clone(),
        })
    }
}

#[derive(Debug)]
struct PaddedConnector {
    inner: SharedHttpConnector,
    latency: Duration,
    log: RequestLog,
}

impl HttpConnector for PaddedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let started = Instant::now();
        let answer = self.inner.call(request);
        let (latency, log) = (self.latency, self.log.clone());
        HttpConnectorFuture::new(async move {
            let answer = answer.await;
            let took = started.elapsed();
            log.record(started, took);
            tokio::time::sleep(latency.saturating_sub(took)).await;
            answer
        })
    }
}

/// A handler span that has closed: its name, the `action` it recorded, when it opened and closed, and how long a
/// thread ran inside it.
#[derive(Clone, Debug)]
pub struct ClosedSpan {
    name: &'static str,
    action: Option<String>,
    opened: Instant,
    closed: Instant,
    cpu: Duration,
}

impl ClosedSpan {
    fn wall(&self) -> Duration {
        self.closed - self.opened
    }
}

/// A tracing layer that times the handlers' spans (`shared::handlers`), from creation to close.
#[derive(Clone, Debug, Default)]
pub struct HandlerSpans {
    closed: Arc<Mutex<Vec<ClosedSpan>>>,
}

/// Kept in an open handler span's extensions.
struct OpenSpan {
    opened: Instant,
    action: Option<String>,
    /// The thread's CPU clock when the span was last entered; spans are entered and exited on the same thread.
    entered: Option<Duration>,
    cpu: Duration,
}

/// The calling thread's CPU clock, `None` where the platform has none.
fn thread_cpu_clock() -> Option<Duration> {
    cpu_time::ThreadTime::try_now().ok().map(|now| now.as_duration())
}

/// Reads the `action` field when a handler records it.
struct ActionField<'a>(&'a mut Option<String>);

impl tracing::field::Visit for ActionField<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "action" {
            *self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl HandlerSpans {
    /// The position from which [`HandlerSpans::wait`] looks.
    fn mark(&self) -> usize {
        lock(&self.closed).len()
    }

    /// Waits for the first span of `action` that closed after `mark`.
    async fn wait(&self, action: Action, mark: usize) -> anyhow::Result<ClosedSpan> {
        let (name, wanted) = action.span();
        let deadline = Instant::now() + ACTION_TIMEOUT;
        loop {
            let found = lock(&self.closed)
                .iter()
                .skip(mark)
                .find(|span| span.name == name && span.action.as_deref() == wanted)
                .cloned();
            if let Some(span) = found {
                return Ok(span);
            }
            anyhow::ensure!(Instant::now() < deadline, "the {name} handler did not return within {ACTION_TIMEOUT:?}");
            tokio::time::sleep(POLL).await;
        }
    }
}

impl<S> Layer<S> for HandlerSpans
where
    S: tracing::Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        if !attrs.metadata().target().starts_with("shared::handlers") {
            return;
        }
        if let Some(span) = ctx.span(id) {
            let mut open = OpenSpan { opened: Instant::now(), action: None, entered: None, cpu: Duration::ZERO };
            attrs.record(&mut ActionField(&mut open.action));
            span.extensions_mut().insert(open);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<OpenSpan>()
        {
            values.record(&mut ActionField(&mut open.action));
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<OpenSpan>()
        {
            open.entered = thread_cpu_clock();
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<OpenSpan>()
            && let (Some(entered), Some(now)) = (open.entered.take(), thread_cpu_clock())
        {
            open.cpu += now.saturating_sub(entered);
        }
    }

    fn on_close(&self, id: span::Id, ctx: LayerContext<'_, S>) {
        let closed = Instant::now();
        if let Some(span) = ctx.span(&id)
            && let Some(open) = span.extensions_mut().remove::<OpenSpan>()
        {
            lock(&self.closed).push(ClosedSpan {
                name: span.metadata().name(),
                action: open.action,
                opened: open.opened,
                closed,
                cpu: open.cpu,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// The layer times a handler's span from creation to close, and picks up the `action` recorded after creation.
    #[test]
    fn handler_spans_are_timed_with_their_action() {
        let spans = HandlerSpans::default();
        let subscriber = tracing_subscriber::registry().with(spans.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!(target: "shared::handlers::message", "message", action = tracing::field::Empty);
            span.record("action", "message:send");
            // Busy inside the span, so that its CPU time cannot be zero.
            span.in_scope(|| {
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(2) {
                    std::hint::black_box(0);
                }
            });
            drop(span);
            let other = tracing::info_span!(target: "local::gateway", "message");
            drop(other);
        });
        let closed = lock(&spans.closed).clone();
        assert_eq!(closed.len(), 1, "only spans of shared::handlers are timed: {closed:?}");
        assert_eq!(closed[0].name, "message");
        assert_eq!(closed[0].action.as_deref(), Some("message:send"));
        assert!(closed[0].wall() >= Duration::from_millis(2), "{:?}", closed[0]);
        assert!(closed[0].cpu > Duration::ZERO && closed[0].cpu <= closed[0].wall(), "{:?}", closed[0]);
    }

    #[test]
    fn requests_are_counted_by_when_they_started() {
        let log = RequestLog::default();
        let start = Instant::now();
        log.record(start, Duration::from_millis(3));
        log.record(start + Duration::from_millis(5), Duration::from_millis(12));
        log.record(start + Duration::from_millis(20), Duration::from_millis(1));
        let within = log.started_within(start, start + Duration::from_millis(10));
        assert_eq!(within, vec![Duration::from_millis(3), Duration::from_millis(12)]);
    }
}
