//! The cloud path: what the Lambdas do that the harness comparison does not show.
//!
//! [`fanout`]: one emit to a room of many connections, run by the code the `emit` Lambda runs (the `shared` emit
//! handler with the AWS SDK's Management API client, [`ApiGatewayPusher`]) against the harness's `@connections`,
//! which answers each post after an injected delay standing in for the Management API's latency. The handler runs
//! in this process, on a thread of its own with a current-thread runtime as a Lambda has, over the harness's own
//! SQLite file (so it sees the room the clients joined), and signs its posts with the harness's development
//! credentials. Its wall time is compared with the floor the delay sets: with at most `FANOUT_CONCURRENCY` posts in
//! flight, `ceil(recipients ÷ concurrency) × delay`. Its CPU time is read per thread (`/proc/self/task/*/schedstat`,
//! nanoseconds): the handler's thread, which also runs the store's statements, and nothing of the WebSocket clients.
//!
//! [`init`]: each function binary, and a hello-world `lambda_runtime` binary built the same way, started as Lambda
//! starts a `provided.al2023` function under the local Runtime API of `tests::runtime_api`, with the environment
//! `template.yaml` gives it (`tests::sam_env`); init is the time from spawning the process to its first
//! `GET /runtime/invocation/next`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt, stream};
use serde::Serialize;
use serde_json::{Value, json};
use shared::config::Config;
use shared::handlers::{Deps, emit};
use shared::push::apigw::ApiGatewayPusher;
use shared::store::sqlite::SqliteStore;
use shared::timer::OnTouchTimer;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::proto::{EMIT_EVENT, Incoming, Protocol};
use crate::servers::{API_KEY, JWT_SECRET, Server};

/// The name of the thread (and of its runtime's blocking threads) that runs the emit handler.
const HANDLER_THREAD: &str = "emit-handler";
/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// How long one connection may take to open and join, and one emit to reach every client.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between emits, so each starts with the handler idle.
const EMIT_PAUSE: Duration = Duration::from_millis(200);

/// What [`fanout`] does.
#[derive(Clone, Debug)]
pub struct FanoutPlan {
    pub connections: usize,
    /// The harness's `--management-delay-ms`.
    pub delay: Duration,
    /// Measured emits, after one warm-up emit.
    pub emits: u32,
    /// `FANOUT_CONCURRENCY`: posts in flight at most.
    pub concurrency: usize,
    /// The harness's `--worker-threads`, which serve its `@connections`.
    pub harness_threads: u16,
}

/// What [`fanout`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct FanoutResult {
    pub recipients: usize,
    pub delay_ms: u64,
    pub concurrency: usize,
    pub harness_threads: u16,
    /// `ceil(recipients ÷ concurrency) × delay`.
    pub floor_ms: f64,
    /// The warm-up emit: it also opens the SDK client's connections.
    pub warm_up_ms: f64,
    /// Handler call → return, per measured emit, sorted.
    pub handler_ms: Vec<f64>,
    /// Handler call → the last client's receipt, per measured emit, sorted.
    pub to_last_ms: Vec<f64>,
    /// CPU time per measured emit of the handler's thread (handler, its store reads, SDK client, HTTP), sorted.
    pub handler_cpu_ms: Vec<f64>,
    /// CPU time per measured emit of the harness process: its `@connections` (SigV4 checks, the delay's timers)
    /// and the WebSocket frames it writes, sorted.
    pub harness_cpu_ms: Vec<f64>,
    /// Emits the handler did not report as delivered to every recipient, with what it answered.
    pub handler_failures: Vec<String>,
    /// (client, emit) pairs that never arrived, and that arrived more than once.
    pub missing: u64,
    pub duplicated: u64,
}

impl FanoutResult {
    /// Everything arrived exactly once and the handler reported every post delivered.
    pub fn clean(&self) -> bool {
        self.handler_failures.is_empty() && self.missing == 0 && self.duplicated == 0
    }

    /// The table of this run, in Markdown.
    pub fn table(&self) -> String {
        let floor = self.floor_ms;
        let mut out = String::new();
        out.push_str(&format!(
            "\nCloud path: one emit to {} connections through the AWS SDK's Management API client; `@connections` \
             (the harness on {} worker threads) answers after {} ms; at most {} posts in flight; {} measured emits \
             after one warm-up\n\n",
            self.recipients,
            self.harness_threads,
            self.delay_ms,
            self.concurrency,
            self.handler_ms.len()
        ));
        out.push_str("| figure | p50 | [min–max] |\n|---|---|---|\n");
        out.push_str(&format!(
            "| floor: ceil({} ÷ {}) × {} ms | {floor:.0} ms | – |\n",
            self.recipients, self.concurrency, self.delay_ms
        ));
        let row = |out: &mut String, name: &str, values: &[f64], unit: &str| {
            out.push_str(&format!(
                "| {name} | {:.1}{unit} | [{:.1}–{:.1}] |\n",
                median(values),
                values.first().copied().unwrap_or(0.0),
                values.last().copied().unwrap_or(0.0)
            ));
        };
        row(&mut out, "handler wall time (call → return)", &self.handler_ms, " ms");
        let ratios: Vec<f64> = self.handler_ms.iter().map(|ms| ms / floor).collect();
        out.push_str(&format!(
            "| handler wall time ÷ floor | {:.2}× | [{:.2}–{:.2}] |\n",
            median(&ratios),
            ratios.first().copied().unwrap_or(0.0),
            ratios.last().copied().unwrap_or(0.0)
        ));
        row(&mut out, "call → last client's receipt", &self.to_last_ms, " ms");
        row(&mut out, "handler CPU per emit (handler thread)", &self.handler_cpu_ms, " ms");
        row(&mut out, "harness CPU per emit (@connections + WebSocket writes)", &self.harness_cpu_ms, " ms");
        out.push_str(&format!(
            "| warm-up emit wall time (opens the client's connections) | {:.1} ms | – |\n",
            self.warm_up_ms
        ));
        out.push_str(&format!("| deliveries missing / duplicated | {} / {} | – |\n", self.missing, self.duplicated));
        out
    }
}

/// The middle value of a sorted slice (the mean of the two middle ones for an even length); 0 when empty.
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Runs the fan-out workload against `server`, a harness started on SQLite in `data_dir` with `@connections`
/// delayed by `plan.delay`.
pub async fn fanout(server: &Server, data_dir: &Path, run_id: &str, plan: &FanoutPlan) -> anyhow::Result<FanoutResult> {
    let room = format!("topic:bench-{run_id}-cloud");
    let clients = open_clients(&server.ws_base, run_id, &room, plan.connections).await?;

    // The harness's `@connections` is at http://HOST:PORT/STAGE, the WebSocket URL's address and stage.
    let management = server.ws_base.replacen("ws://", "http://", 1);
    let handler = HandlerThread::start(data_dir.join("bellhop.db"), management, plan.concurrency).await?;

    let mut result = FanoutResult {
        recipients: plan.connections,
        delay_ms: millis(plan.delay),
        harness_threads: plan.harness_threads,
        concurrency: plan.concurrency,
        floor_ms: plan.connections.div_ceil(plan.concurrency.max(1)) as f64 * plan.delay.as_secs_f64() * 1000.0,
        warm_up_ms: 0.0,
        handler_ms: Vec::new(),
        to_last_ms: Vec::new(),
        handler_cpu_ms: Vec::new(),
        harness_cpu_ms: Vec::new(),
        handler_failures: Vec::new(),
        missing: 0,
        duplicated: 0,
    };
    for n in 0..=u64::from(plan.emits) {
        let payload = json!({"event": EMIT_EVENT, "data": {"n": n}, "rooms": [room]});
        let cpu_before = handler_thread_cpu_ms();
        let harness_before = server.sample()?;
        let run = handler.emit(payload).await?;
        let cpu_after = handler_thread_cpu_ms();
        let harness_after = server.sample()?;
        let last = clients.wait_for(n, run.started + STEP_TIMEOUT).await;
        match &run.answer {
            Ok(report)
                if report["delivered"].as_u64() == Some(plan.connections as u64)
                    && report["recipients"].as_u64() == Some(plan.connections as u64) => {}
            Ok(report) => result.handler_failures.push(format!("emit {n}: {report}")),
            Err(error) => result.handler_failures.push(format!("emit {n}: {error}")),
        }
        let handler_ms = run.wall.as_secs_f64() * 1000.0;
        if n == 0 {
            result.warm_up_ms = handler_ms;
        } else {
            result.handler_ms.push(handler_ms);
            if let Some(last) = last {
                result.to_last_ms.push(last.saturating_duration_since(run.started).as_secs_f64() * 1000.0);
            }
            result.handler_cpu_ms.push(cpu_after - cpu_before);
            result.harness_cpu_ms.push(harness_after.cpu_us.saturating_sub(harness_before.cpu_us) as f64 / 1000.0);
        }
        eprintln!(
            "bench:   emit {n}{}: handler {handler_ms:.1} ms, last receipt {}",
            if n == 0 { " (warm-up)" } else { "" },
            last.map_or("never".to_owned(), |at| format!(
                "{:.1} ms",
                at.saturating_duration_since(run.started).as_secs_f64() * 1000.0
            ))
        );
        tokio::time::sleep(EMIT_PAUSE).await;
    }
    handler.stop();
    // Late duplicates would arrive within the pause above; count every (client, emit) pair.
    let (missing, duplicated) = clients.check(u64::from(plan.emits) + 1);
    result.missing = missing;
    result.duplicated = duplicated;
    for values in
        [&mut result.handler_ms, &mut result.to_last_ms, &mut result.handler_cpu_ms, &mut result.harness_cpu_ms]
    {
        values.sort_by(f64::total_cmp);
    }
    Ok(result)
}

/// One emit run by the handler thread.
struct HandlerRun {
    started: Instant,
    wall: Duration,
    answer: Result<Value, String>,
}

type EmitCall = (Value, oneshot::Sender<HandlerRun>);

/// The emit handler on a thread of its own, with a current-thread runtime, as the `emit` Lambda runs it: the same
/// [`Deps`] but for the store (the harness's SQLite file instead of DynamoDB).
struct HandlerThread {
    calls: mpsc::UnboundedSender<EmitCall>,
}

impl HandlerThread {
    async fn start(database: PathBuf, management: String, concurrency: usize) -> anyhow::Result<Self> {
        let (calls, mut incoming) = mpsc::unbounded_channel::<EmitCall>();
        let (ready_tx, ready) = oneshot::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name(HANDLER_THREAD.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name(HANDLER_THREAD)
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(format!("start the handler's runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let deps = match handler_deps(&database, &management, concurrency).await {
                        Ok(deps) => deps,
                        Err(error) => {
                            let _ = ready_tx.send(Err(format!("{error:#}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    while let Some((payload, reply)) = incoming.recv().await {
                        let started = Instant::now();
                        let answer = emit::handle_value(&deps, payload).await.map_err(|error| error.to_string());
                        let _ = reply.send(HandlerRun { started, wall: started.elapsed(), answer });
                    }
                });
            })
            .context("start the handler thread")?;
        ready.await.context("the handler thread ended before it was ready")?.map_err(anyhow::Error::msg)?;
        Ok(Self { calls })
    }

    async fn emit(&self, payload: Value) -> anyhow::Result<HandlerRun> {
        let (reply, answer) = oneshot::channel();
        self.calls.send((payload, reply)).map_err(|_| anyhow::anyhow!("the handler thread has ended"))?;
        answer.await.context("the handler thread ended during an emit")
    }

    /// Ends the handler thread once its current emit is done.
    fn stop(self) {
        drop(self.calls);
    }
}

/// The emit Lambda's dependencies (`shared::cloud::deps`) with the harness's store: the Management API client
/// pointed at the harness's `@connections` (a plain-HTTP endpoint, so signed with the harness's development
/// credentials), and the configuration's defaults with the bench secrets and the given fan-out concurrency.
async fn handler_deps(database: &Path, management: &str, concurrency: usize) -> anyhow::Result<Deps> {
    let concurrency = concurrency.to_string();
    let config = Config::from_lookup(
        |name| match name {
            "JWT_SECRET" => Some(JWT_SECRET.to_owned()),
            "INTERNAL_API_KEY" => Some(API_KEY.to_owned()),
            "FANOUT_CONCURRENCY" => Some(concurrency.clone()),
            _ => None,
        },
        true,
    )
    .context("the handler's configuration")?;
    let store = SqliteStore::open(database).await.with_context(|| format!("open {}", database.display()))?;
    let pusher = ApiGatewayPusher::for_endpoint(management).await;
    Ok(Deps::new(config, Arc::new(store), Arc::new(pusher), Arc::new(OnTouchTimer)))
}

/// CPU time of the handler's thread in ms: `/proc/self/task/*/schedstat` (time on a CPU, ns) of the threads by
/// that name. The store runs its statements on the calling thread, so the handler's store reads are in it too.
fn handler_thread_cpu_ms() -> f64 {
    let mut cpu = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let (Ok(name), Ok(schedstat)) =
            (std::fs::read_to_string(task.path().join("comm")), std::fs::read_to_string(task.path().join("schedstat")))
        else {
            continue;
        };
        let Some(ns) = schedstat.split_whitespace().next().and_then(|field| field.parse::<u64>().ok()) else {
            continue;
        };
        if name.trim_end() == HANDLER_THREAD {
            cpu += ns as f64 / 1e6;
        }
    }
    cpu
}

/// Per client, each emit `n` it received: how many times, and when first.
type Receipts = Arc<Mutex<HashMap<u64, (u64, Instant)>>>;

/// The WebSocket clients of the fan-out, all in one room.
struct Clients {
    receipts: Vec<Receipts>,
}

impl Clients {
    /// Waits until every client received emit `n` (or `deadline`), and answers the last first receipt.
    async fn wait_for(&self, n: u64, deadline: Instant) -> Option<Instant> {
        loop {
            let firsts: Vec<Option<Instant>> =
                self.receipts.iter().map(|receipts| lock(receipts).get(&n).map(|&(_, at)| at)).collect();
            if firsts.iter().all(Option::is_some) {
                return firsts.into_iter().flatten().max();
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// For emits `0..emits`: (client, emit) pairs never received, and receipts beyond the first.
    fn check(&self, emits: u64) -> (u64, u64) {
        let (mut missing, mut duplicated) = (0, 0);
        for receipts in &self.receipts {
            let receipts = lock(receipts);
            for n in 0..emits {
                match receipts.get(&n) {
                    None => missing += 1,
                    Some(&(count, _)) => duplicated += count.saturating_sub(1),
                }
            }
            // An emit number this run never sent is a duplicate of nothing: count it as one too many.
            duplicated += receipts.keys().filter(|&&n| n >= emits).map(|n| receipts[n].0).sum::<u64>();
        }
        (missing, duplicated)
    }
}

/// Locks `mutex`, taking the data over from a thread that panicked while holding it: counters stay readable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Bellhop client's WebSocket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends a Bellhop request `frame` and reads until its ack, which must be a success, for at most [`STEP_TIMEOUT`].
pub(crate) async fn request(socket: &mut Socket, frame: &str) -> anyhow::Result<()> {
    socket.send(Message::text(frame)).await?;
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.context("no ack in time")?;
        let Some(message) = message else { anyhow::bail!("closed before the ack") };
        let Message::Text(text) = message? else { continue };
        match Protocol::Bellhop.parse(text.as_str()) {
            Incoming::Ack { ok: true } => return Ok(()),
            Incoming::Ack { ok: false } => anyhow::bail!("refused: {text}"),
            _ => {}
        }
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Opens `count` connections, each with its own user, and joins them all to `room`.
async fn open_clients(ws_base: &str, run_id: &str, room: &str, count: usize) -> anyhow::Result<Clients> {
    let opened: Vec<anyhow::Result<Receipts>> = stream::iter(0..count)
        .map(|index| async move {
            tokio::time::timeout(STEP_TIMEOUT, open_client(ws_base, &format!("bench-{run_id}-c{index}"), room))
                .await
                .with_context(|| format!("client {index}: connect and join timed out"))?
                .with_context(|| format!("client {index}"))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let receipts = opened.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Clients { receipts })
}

/// One client: connect, join `room` and wait for the ack, then count every emit it receives.
async fn open_client(ws_base: &str, sub: &str, room: &str) -> anyhow::Result<Receipts> {
    let protocol = Protocol::Bellhop;
    let token = token(sub, None)?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(protocol.url(ws_base, &token), Some(config), true).await?;
    request(&mut socket, &protocol.join(room)).await.context("join")?;
    let receipts: Receipts = Arc::default();
    let seen = Arc::clone(&receipts);
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            match protocol.parse(text.as_str()) {
                Incoming::Emit { n } => {
                    let now = Instant::now();
                    lock(&seen).entry(n).and_modify(|(count, _)| *count += 1).or_insert((1, now));
                }
                Incoming::Ping => {
                    if let Some(pong) = protocol.pong()
                        && socket.send(Message::text(pong)).await.is_err()
                    {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    Ok(receipts)
}

/// A bench token for `sub`, valid for an hour, with `role` when given.
pub(crate) fn token(sub: &str, role: Option<&str>) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        role: Option<&'a str>,
        exp: u64,
        iat: u64,
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let claims = Claims { sub, role, exp: now + 3600, iat: now };
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    Ok(jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key)?)
}

/// What [`init`] does.
#[derive(Clone, Debug)]
pub struct InitPlan {
    /// Where the binaries are: `<dir>/<package>` (cargo's layout) or `<dir>/<package>/bootstrap`.
    pub bin_dir: PathBuf,
    /// Starts per binary; each figure is the median.
    pub starts: usize,
    /// The hello-world baseline's package.
    pub baseline: String,
}

/// Init times of one binary.
#[derive(Clone, Debug, Serialize)]
pub struct InitResult {
    pub package: String,
    /// Spawn → first `/next` poll, per start, in ms, sorted.
    pub init_ms: Vec<f64>,
}

/// Starts every function binary and the baseline `plan.starts` times each, interleaved so that a busy moment of
/// the machine is spread over all of them, and answers their init times, the baseline's first.
pub async fn init(plan: &InitPlan) -> anyhow::Result<Vec<InitResult>> {
    let root = ::tests::function_binaries::workspace_root();
    let mut functions: Vec<String> = std::fs::read_dir(root.join("functions"))
        .context("read functions/")?
        .filter_map(|entry| entry.ok().map(|entry| entry.file_name().to_string_lossy().into_owned()))
        .collect();
    functions.sort();
    let resolver = template_resolver(&root)?;
    let function_env = |package: &str| -> anyhow::Result<(BTreeMap<String, String>, Duration)> {
        let spec = resolver.function(package).with_context(|| format!("{package} in template.yaml"))?;
        Ok((spec.env, spec.timeout))
    };
    // The baseline gets the environment of the `emit` function: everything Lambda sets, and variables it ignores.
    let mut packages = vec![(plan.baseline.clone(), function_env("emit")?)];
    for package in &functions {
        packages.push((package.clone(), function_env(package)?));
    }
    let mut results: Vec<InitResult> =
        packages.iter().map(|(package, _)| InitResult { package: package.clone(), init_ms: Vec::new() }).collect();
    // One unmeasured round first: a binary's first start also reads it from disk, a cost of this machine's page
    // cache rather than of the function.
    for round in 0..=plan.starts {
        for ((package, (env, timeout)), result) in packages.iter().zip(&mut results) {
            let binary = [plan.bin_dir.join(package), plan.bin_dir.join(package).join("bootstrap")]
                .into_iter()
                .find(|path| path.is_file())
                .with_context(|| format!("no binary for {package} in {}", plan.bin_dir.display()))?;
            let function = ::tests::runtime_api::FunctionProcess::start(::tests::runtime_api::LaunchSpec {
                name: package.clone(),
                binary,
                env: env.clone(),
                timeout: *timeout,
                init_timeout: ::tests::runtime_api::INIT_TIMEOUT,
                echo_output: false,
            })
            .await?;
            let init = function.init_duration().context("the first poll was not seen")?;
            if round > 0 {
                result.init_ms.push(init.as_secs_f64() * 1000.0);
            }
            function.stop().await;
        }
    }
    for result in &mut results {
        result.init_ms.sort_by(f64::total_cmp);
    }
    Ok(results)
}

/// The deployment the functions' environment is resolved against. Init does no I/O, so every endpoint is a local
/// port nothing listens on: a function that called out during init would fail its start here.
fn template_resolver(root: &Path) -> anyhow::Result<::tests::sam_env::Resolver> {
    use ::tests::sam_env::{ACCOUNT_ID, REGION, Resolver};
    const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bellhop/bench-AbCdEf";
    const API_ID: &str = "x5dq2mb9qi";
    const STAGE: &str = "live";
    const NOWHERE: &str = "http://127.0.0.1:9";
    let secrets = [("JWT_SECRET", "bellhop-bench-jwt-secret-of-at-least-32-bytes"), ("INTERNAL_API_KEY", API_KEY)];
    let queue_url = format!("{NOWHERE}/{ACCOUNT_ID}/bellhop-missed");
    Ok(Resolver::from_file(&root.join("template.yaml"))
        .context("read template.yaml")?
        .parameter("SecretArn", SECRET_ARN)
        .parameter("StageName", STAGE)
        .parameter("CorsOrigins", "https://app.example.com")
        .parameter("LogLevel", "INFO")
        .secret(SECRET_ARN, &secrets)
        .resource("Table", "bellhop-bench")
        .resource("Table.Arn", format!("arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/bellhop-bench"))
        .resource("MissedCallQueue", queue_url)
        .resource("MissedCallQueue.Arn", format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:bellhop-missed"))
        .resource("WebSocketApi", API_ID)
        .endpoint(format!("https://{API_ID}.execute-api.{REGION}.amazonaws.com/{STAGE}"), format!("{NOWHERE}/{STAGE}"))
        .service_endpoint("DYNAMODB", NOWHERE)
        .service_endpoint("SQS", NOWHERE))
}

/// The init table: median and range per binary, and the ratio of each median to the baseline's.
pub fn init_table(results: &[InitResult], starts: usize, bin_dir: &Path) -> String {
    let baseline = results.first().map(|result| median(&result.init_ms)).unwrap_or(0.0);
    let mut out = format!(
        "\nInit: process start → first `GET /runtime/invocation/next` under the local Runtime API, median of {starts} \
         starts, binaries from {}\n\n| binary | init p50 (ms) | [min–max] | ÷ {} |\n|---|---|---|---|\n",
        bin_dir.display(),
        results.first().map_or("baseline", |result| result.package.as_str())
    );
    for result in results {
        let p50 = median(&result.init_ms);
        out.push_str(&format!(
            "| {} | {p50:.2} | [{:.2}–{:.2}] | {:.2}× |\n",
            result.package,
            result.init_ms.first().copied().unwrap_or(0.0),
            result.init_ms.last().copied().unwrap_or(0.0),
            if baseline > 0.0 { p50 / baseline } else { 0.0 }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_a_sorted_slice_is_its_middle() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[1.0, 2.0, 10.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 10.0]), 3.0);
    }

    #[test]
    fn every_client_must_receive_every_emit_exactly_once() {
        let now = Instant::now();
        let client = |seen: &[(u64, u64)]| -> Receipts {
            Arc::new(Mutex::new(seen.iter().map(|&(n, count)| (n, (count, now))).collect()))
        };
        let clean = Clients { receipts: vec![client(&[(0, 1), (1, 1)]), client(&[(0, 1), (1, 1)])] };
        assert_eq!(clean.check(2), (0, 0));
        // One client missed emit 1; another got emit 0 three times and an emit that was never sent.
        let faulty = Clients { receipts: vec![client(&[(0, 1)]), client(&[(0, 3), (1, 1), (7, 1)])] };
        assert_eq!(faulty.check(2), (1, 3));
    }

    #[test]
    fn the_handler_threads_cpu_is_read_by_name() {
        // This test's thread is not the handler's: the sum stays at zero.
        assert_eq!(handler_thread_cpu_ms(), 0.0);
        assert!(std::fs::read_to_string("/proc/thread-self/schedstat").is_ok_and(|s| !s.is_empty()));
    }
}
