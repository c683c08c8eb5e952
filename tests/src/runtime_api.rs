//! A local Lambda Runtime API (`2018-06-01`), and a function process driven through it as Lambda drives a
//! `provided.al2023` function: the binary is started with `AWS_LAMBDA_RUNTIME_API` pointing here, its init phase
//! ends with its first `GET /runtime/invocation/next`, and each invocation is handed out by that long poll and
//! finished by `POST /runtime/invocation/{id}/response` or `/error`.
//!
//! What is emulated, from the Runtime API reference (docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):
//! - `GET /2018-06-01/runtime/invocation/next` blocks until there is an invocation, and answers its payload with
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn` and
//!   `Lambda-Runtime-Trace-Id`;
//! - `POST .../invocation/{id}/response` (202; 413 past the 6 MB synchronous response limit, which fails the
//!   invocation as `Function.ResponseSizeTooLarge`) and `POST .../invocation/{id}/error` (202) finish it; an
//!   unknown or already finished id answers 400;
//! - `POST /2018-06-01/runtime/init/error` (202) records an init failure;
//! - a process that exits before its first poll failed its init (`Runtime.ExitError` on Lambda), and one that exits
//!   during an invocation failed that invocation;
//! - the init phase and each invocation are bounded (Lambda's 10 s init limit, the function's `Timeout`).
//!
//! Not emulated: extensions, streaming responses, SnapStart's `/restore` routes, and the sandbox freezing between
//! invocations (the process keeps running, as it does while Lambda keeps the environment warm).
//!
//! [`FunctionProcess::init_duration`] is the time from spawning the process to its first `/next` poll: the part
//! of a cold start the function's own code decides, for benchmarks as well as tests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

/// Lambda's limit on a synchronous invocation's response payload (6 MB).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Lambda's limit on the init phase of an on-demand function.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Body limit of the emulator's routes: above Lambda's own limit, so that an oversized response is answered 413 by
/// the emulator's rule rather than cut off by the HTTP layer.
const BODY_LIMIT: usize = MAX_RESPONSE_BYTES + 1024 * 1024;

const BASE: &str = "/2018-06-01/runtime";

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST .../response`: the payload as the function sent it.
    Response(Bytes),
    /// `POST .../error`: the `Lambda-Runtime-Function-Error-Type` header and the JSON body
    /// (`{"errorType", "errorMessage"}`).
    Error { header_error_type: Option<String>, body: Value },
    /// The response was larger than [`MAX_RESPONSE_BYTES`]: Lambda fails the invocation.
    ResponseTooLarge { bytes: usize },
}

impl Outcome {
    /// The response payload as JSON, or why it is not one.
    pub fn json(&self) -> Result<Value, String> {
        match self {
            Outcome::Response(bytes) => {
                serde_json::from_slice(bytes).map_err(|e| format!("response is not JSON ({e}): {bytes:?}"))
            }
            other => Err(format!("expected a response, the invocation ended with {other:?}")),
        }
    }
}

/// The init failure `POST /runtime/init/error` reported.
#[derive(Debug, Clone, PartialEq)]
pub struct InitError {
    pub header_error_type: Option<String>,
    pub body: Value,
}

/// One invocation waiting for a `/next` poll.
struct Queued {
    request_id: String,
    payload: Bytes,
    deadline_ms: u128,
    done: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Queued>,
    /// Invocations handed out by `/next` and not yet finished.
    in_flight: HashMap<String, oneshot::Sender<Outcome>>,
    first_poll: Option<Instant>,
    polls: u64,
    init_error: Option<InitError>,
}

struct ApiState {
    shared: Mutex<Shared>,
    /// Wakes `/next` polls when an invocation is queued.
    queued: Notify,
    /// Changes on the first poll and on an init error, for [`FunctionProcess::start`].
    phase: watch::Sender<u64>,
    function_arn: String,
}

impl ApiState {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A poisoned lock means a panic in this module's own short critical sections; the state is still usable.
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A Runtime API server on a free loopback port, serving one function's sandbox.
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<ApiState>,
    server: JoinHandle<()>,
}

/// Why an invocation did not finish.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function did not finish within its timeout of {0:?}")]
    Timeout(Duration),
    #[error("the function process exited during the invocation ({status:?})\n--- function output ---\n{logs}")]
    ProcessExited { status: Option<ExitStatus>, logs: String },
    #[error("the runtime API stopped before the invocation finished")]
    Abandoned,
    #[error("the payload is not JSON")]
    Encode(#[source] serde_json::Error),
}

impl RuntimeApi {
    /// Starts the server; `function_arn` is what `Lambda-Runtime-Invoked-Function-Arn` carries.
    pub async fn start(function_arn: impl Into<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (phase, _) = watch::channel(0);
        let state = Arc::new(ApiState {
            shared: Mutex::new(Shared::default()),
            queued: Notify::new(),
            phase,
            function_arn: function_arn.into(),
        });
        let app = Router::new()
            .route(&format!("{BASE}/invocation/next"), get(next))
            .route(&format!("{BASE}/invocation/{{id}}/response"), post(response))
            .route(&format!("{BASE}/invocation/{{id}}/error"), post(error))
            .route(&format!("{BASE}/init/error"), post(init_error))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            // The server lives as long as the emulator; it only stops when the task is aborted on drop.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, server })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API`: `host:port`, without a scheme.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// When the first `/next` poll arrived.
    pub fn first_poll(&self) -> Option<Instant> {
        self.state.lock().first_poll
    }

    /// How many `/next` polls arrived so far.
    pub fn polls(&self) -> u64 {
        self.state.lock().polls
    }

    /// The init failure the function reported, if any.
    pub fn init_error(&self) -> Option<InitError> {
        self.state.lock().init_error.clone()
    }

    /// Queues an invocation with `payload` and waits for its outcome (without a time limit: callers bound it).
    /// `deadline` is what the function is told through `Lambda-Runtime-Deadline-Ms`.
    pub async fn invoke(&self, payload: Bytes, deadline: Duration) -> Result<Outcome, InvokeError> {
        let (done, outcome) = oneshot::channel();
        let deadline_ms = (SystemTime::now() + deadline).duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        let request_id = uuid::Uuid::new_v4().to_string();
        self.state.lock().queue.push_back(Queued { request_id, payload, deadline_ms, done });
        self.state.queued.notify_one();
        outcome.await.map_err(|_| InvokeError::Abandoned)
    }

    /// Waits until the first `/next` poll or an init error, whichever comes first.
    async fn init_settled(&self) {
        let mut phase = self.state.phase.subscribe();
        loop {
            {
                let shared = self.state.lock();
                if shared.first_poll.is_some() || shared.init_error.is_some() {
                    return;
                }
            }
            if phase.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(state): State<Arc<ApiState>>) -> Response {
    {
        let mut shared = state.lock();
        shared.polls += 1;
        if shared.first_poll.is_none() {
            shared.first_poll = Some(Instant::now());
            state.phase.send_modify(|n| *n += 1);
        }
    }
    // Long poll: the runtime waits here between invocations, as it does on Lambda.
    let queued = loop {
        let notified = state.queued.notified();
        if let Some(queued) = state.lock().queue.pop_front() {
            break queued;
        }
        notified.await;
    };
    let Queued { request_id, payload, deadline_ms, done } = queued;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", &request_id);
    set("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &state.function_arn);
    set("lambda-runtime-trace-id", &trace_id());
    set("content-type", "application/json");
    state.lock().in_flight.insert(request_id, done);
    (StatusCode::OK, headers, payload).into_response()
}

async fn response(State(state): State<Arc<ApiState>>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(done) = state.lock().in_flight.remove(&id) else {
        return unknown_request(&id);
    };
    if body.len() > MAX_RESPONSE_BYTES {
        let _ = done.send(Outcome::ResponseTooLarge { bytes: body.len() });
        let message = format!("response payload size ({} bytes) exceeded maximum allowed", body.len());
        return runtime_error(StatusCode::PAYLOAD_TOO_LARGE, "Function.ResponseSizeTooLarge", &message);
    }
    let _ = done.send(Outcome::Response(body));
    accepted()
}

async fn error(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(done) = state.lock().in_flight.remove(&id) else {
        return unknown_request(&id);
    };
    let _ = done.send(Outcome::Error { header_error_type: error_type(&headers), body: json_or_text(&body) });
    accepted()
}

async fn init_error(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    let reported = InitError { header_error_type: error_type(&headers), body: json_or_text(&body) };
    state.lock().init_error = Some(reported);
    state.phase.send_modify(|n| *n += 1);
    accepted()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn unknown_request(id: &str) -> Response {
    runtime_error(StatusCode::BAD_REQUEST, "InvalidRequestID", &format!("no invocation {id} is in progress"))
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (status, axum::Json(json!({"errorType": error_type, "errorMessage": message}))).into_response()
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers.get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn json_or_text(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// An X-Ray trace header of the shape Lambda sends (`Root=1-{epoch hex}-{24 hex}`), not sampled.
fn trace_id() -> String {
    let epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{epoch:08x}-{};Parent={};Sampled=0", &random[..24], &random[..16])
}

/// What it takes to start one function as Lambda does.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The function's name (Lambda's `AWS_LAMBDA_FUNCTION_NAME`), also used in messages.
    pub name: String,
    pub binary: PathBuf,
    /// The whole environment of the process: nothing else is inherited. [`FunctionProcess::start`] adds only
    /// `AWS_LAMBDA_RUNTIME_API`, which Lambda sets to its own Runtime API.
    pub env: BTreeMap<String, String>,
    /// The function's `Timeout`: each invocation's deadline.
    pub timeout: Duration,
    /// How long the init phase may take before the start fails.
    pub init_timeout: Duration,
    /// Copy the function's output to this process's stderr as it arrives (for debugging; `TEST_LOG=1`).
    pub echo_output: bool,
}

/// Why a function did not get through its init phase.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not start {name} ({binary})")]
    Spawn {
        name: String,
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start the runtime API for {name}")]
    RuntimeApi {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} failed its init: {reason}\n--- function output ---\n{logs}")]
    InitFailed { name: String, reason: String, init_error: Option<InitError>, status: Option<ExitStatus>, logs: String },
    #[error("{name} did not poll for its first invocation within {timeout:?}\n--- function output ---\n{logs}")]
    InitTimeout { name: String, timeout: Duration, logs: String },
}

impl StartError {
    /// The function's output (stdout and stderr, interleaved by line) up to the failure.
    pub fn logs(&self) -> &str {
        match self {
            StartError::InitFailed { logs, .. } | StartError::InitTimeout { logs, .. } => logs,
            StartError::Spawn { .. } | StartError::RuntimeApi { .. } => "",
        }
    }
}

/// A function binary running under its own [`RuntimeApi`]. Dropping it kills the process.
pub struct FunctionProcess {
    name: String,
    api: RuntimeApi,
    child: Child,
    exit: Option<ExitStatus>,
    spawned: Instant,
    timeout: Duration,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl FunctionProcess {
    /// Starts the binary with exactly `spec.env` plus `AWS_LAMBDA_RUNTIME_API`, and waits for the end of its init
    /// phase: its first `/next` poll. An init error report, an exit or `spec.init_timeout` fails the start.
    pub async fn start(spec: LaunchSpec) -> Result<Self, StartError> {
        let LaunchSpec { name, binary, env, timeout, init_timeout, echo_output } = spec;
        let arn = env
            .get("AWS_REGION")
            .map(|region| format!("arn:aws:lambda:{region}:123456789012:function:{name}"))
            .unwrap_or_else(|| format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"));
        let api =
            RuntimeApi::start(arn).await.map_err(|source| StartError::RuntimeApi { name: name.clone(), source })?;
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .envs(&env)
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = command.spawn().map_err(|source| StartError::Spawn {
            name: name.clone(),
            binary: binary.display().to_string(),
            source,
        })?;
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(collect(stdout, output.clone(), echo_output.then(|| name.clone()))));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(collect(stderr, output.clone(), echo_output.then(|| name.clone()))));
        }
        let mut process = Self { name, api, child, exit: None, spawned, timeout, output, readers };

        let settled = tokio::select! {
            () = process.api.init_settled() => Ok(()),
            status = process.child.wait() => Err(status.ok()),
            () = tokio::time::sleep(init_timeout) => {
                return Err(StartError::InitTimeout {
                    name: process.name.clone(),
                    timeout: init_timeout,
                    logs: process.logs_after_exit().await,
                });
            }
        };
        match (settled, process.api.init_error()) {
            (Ok(()), None) => Ok(process),
            (settled, init_error) => {
                let status = match settled {
                    Err(status) => status,
                    // An init error was posted: Lambda stops the process; its output is read to the end.
                    Ok(()) => {
                        let _ = process.child.start_kill();
                        process.child.wait().await.ok()
                    }
                };
                let reason = match (&init_error, status) {
                    (Some(reported), _) => format!("reported {:?} {}", reported.header_error_type, reported.body),
                    (None, Some(status)) => format!("the process exited ({status}) before polling for an invocation"),
                    (None, None) => "the process ended before polling for an invocation".to_owned(),
                };
                Err(StartError::InitFailed {
                    name: process.name.clone(),
                    reason,
                    init_error,
                    status,
                    logs: process.logs_after_exit().await,
                })
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// From spawning the process to its first `/next` poll.
    pub fn init_duration(&self) -> Option<Duration> {
        self.api.first_poll().map(|first| first.saturating_duration_since(self.spawned))
    }

    /// Invokes the function with `payload` and waits for its outcome, at most the function's timeout.
    pub async fn invoke(&mut self, payload: &Value) -> Result<Outcome, InvokeError> {
        let bytes = Bytes::from(serde_json::to_vec(payload).map_err(InvokeError::Encode)?);
        self.invoke_bytes(bytes).await
    }

    /// As [`FunctionProcess::invoke`], with the payload's exact bytes.
    pub async fn invoke_bytes(&mut self, payload: Bytes) -> Result<Outcome, InvokeError> {
        if let Some(status) = self.exit {
            return Err(InvokeError::ProcessExited { status: Some(status), logs: self.logs() });
        }
        let timeout = self.timeout;
        let outcome = tokio::select! {
            outcome = self.api.invoke(payload, timeout) => outcome,
            status = self.child.wait() => {
                self.exit = status.ok();
                Err(InvokeError::ProcessExited { status: self.exit, logs: self.logs_after_exit().await })
            }
            () = tokio::time::sleep(timeout) => {
                // Lambda ends a timed-out invocation by stopping the environment; the next one starts cold.
                let _ = self.child.kill().await;
                self.exit = self.child.try_wait().ok().flatten();
                Err(InvokeError::Timeout(timeout))
            }
        };
        outcome
    }

    /// The function's output so far: stdout and stderr, line by line in arrival order.
    pub fn logs(&self) -> String {
        self.output.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The output once the process has exited and both pipes are read to the end.
    async fn logs_after_exit(&mut self) -> String {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        self.logs()
    }

    /// Stops the process (SIGKILL, as Lambda ends an environment it shuts down without extensions).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Appends every line of `stream` to `output`, echoing it to stderr with the function's name when asked.
async fn collect(stream: impl AsyncRead + Unpin, output: Arc<Mutex<String>>, echo: Option<String>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(name) = &echo {
            eprintln!("[{name}] {line}");
        }
        let mut output = output.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        output.push_str(&line);
        output.push('\n');
    }
}

#[cfg(test)]
mod tests {
    //! The emulator against a runtime written here with a plain HTTP client, following the Runtime API reference.

    use super::*;

    /// Receives one invocation as a runtime does: the payload and the request id.
    async fn next_invocation(http: &reqwest::Client, api: &RuntimeApi) -> (reqwest::header::HeaderMap, Value) {
        let response =
            http.get(format!("http://{}{BASE}/invocation/next", api.address())).send().await.expect("poll next");
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        (headers, response.json().await.expect("JSON payload"))
    }

    fn request_id(headers: &reqwest::header::HeaderMap) -> String {
        headers["lambda-runtime-aws-request-id"].to_str().expect("ascii").to_owned()
    }

    #[tokio::test]
    async fn an_invocation_is_handed_out_with_the_lambda_headers_and_finished_by_its_response() {
        let api = RuntimeApi::start("arn:aws:lambda:us-east-1:123456789012:function:f").await.expect("start");
        let http = reqwest::Client::new();
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();

        let invocation = api.invoke(Bytes::from_static(br#"{"n":1}"#), Duration::from_secs(30));
        let runtime = async {
            let (headers, payload) = next_invocation(&http, &api).await;
            let id = request_id(&headers);
            let url = format!("http://{}{BASE}/invocation/{id}/response", api.address());
            let posted = http.post(url).body(r#"{"ok":true}"#).send().await.expect("post response");
            (headers, payload, posted.status())
        };
        let (outcome, (headers, payload, status)) =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(invocation, runtime) })
                .await
                .expect("the exchange finishes");

        assert_eq!(payload, json!({"n": 1}));
        assert_eq!(status, 202);
        assert_eq!(outcome.expect("outcome").json(), Ok(json!({"ok": true})));
        let deadline: u128 = headers["lambda-runtime-deadline-ms"].to_str().expect("ascii").parse().expect("ms");
        assert!(deadline >= before + 30_000, "deadline {deadline} is the timeout after the invoke");
        assert_eq!(headers["lambda-runtime-invoked-function-arn"], "arn:aws:lambda:us-east-1:123456789012:function:f");
        assert!(headers["lambda-runtime-trace-id"].to_str().expect("ascii").starts_with("Root=1-"));
        assert_eq!(api.polls(), 1);
        assert!(api.first_poll().is_some());
    }

    #[tokio::test]
    async fn errors_unknown_ids_oversized_responses_and_init_errors_are_answered_as_lambda_does() {
        let api = RuntimeApi::start("arn:aws:lambda:us-east-1:123456789012:function:f").await.expect("start");
        let http = reqwest::Client::new();
        let base = format!("http://{}{BASE}", api.address());

        let unknown = http.post(format!("{base}/invocation/nope/response")).body("{}").send().await.expect("post");
        let failed = async {
            let invocation = api.invoke(Bytes::from_static(b"{}"), Duration::from_secs(30));
            let runtime = async {
                let (headers, _) = next_invocation(&http, &api).await;
                http.post(format!("{base}/invocation/{}/error", request_id(&headers)))
                    .header("lambda-runtime-function-error-type", "unhandled")
                    .body(r#"{"errorType":"Boom","errorMessage":"it broke"}"#)
                    .send()
                    .await
                    .expect("post error")
                    .status()
            };
            tokio::join!(invocation, runtime)
        };
        let (failed, error_status) = tokio::time::timeout(Duration::from_secs(10), failed).await.expect("finishes");
        let oversized = async {
            let invocation = api.invoke(Bytes::from_static(b"{}"), Duration::from_secs(30));
            let runtime = async {
                let (headers, _) = next_invocation(&http, &api).await;
                let body = vec![b'x'; MAX_RESPONSE_BYTES + 1];
                let url = format!("{base}/invocation/{}/response", request_id(&headers));
                http.post(url).body(body).send().await.expect("post response").status()
            };
            tokio::join!(invocation, runtime)
        };
        let (oversized, oversized_status) =
            tokio::time::timeout(Duration::from_secs(10), oversized).await.expect("finishes");
        let init = http
            .post(format!("{base}/init/error"))
            .header("lambda-runtime-function-error-type", "Runtime.InitError")
            .body(r#"{"errorType":"ConfigError","errorMessage":"JWT_SECRET is required"}"#)
            .send()
            .await
            .expect("post init error");

        assert_eq!(unknown.status(), 400);
        assert_eq!(error_status, 202);
        assert_eq!(
            failed.expect("outcome"),
            Outcome::Error {
                header_error_type: Some("unhandled".to_owned()),
                body: json!({"errorType": "Boom", "errorMessage": "it broke"})
            }
        );
        assert_eq!(oversized_status, 413);
        assert_eq!(oversized.expect("outcome"), Outcome::ResponseTooLarge { bytes: MAX_RESPONSE_BYTES + 1 });
        assert_eq!(init.status(), 202);
        let reported = api.init_error().expect("init error recorded");
        assert_eq!(reported.header_error_type.as_deref(), Some("Runtime.InitError"));
        assert_eq!(reported.body["errorMessage"], "JWT_SECRET is required");
    }

    #[tokio::test]
    async fn a_process_that_exits_before_its_first_poll_failed_its_init() {
        let spec = LaunchSpec {
            name: "false".to_owned(),
            binary: PathBuf::from("/bin/false"),
            env: BTreeMap::new(),
            timeout: Duration::from_secs(3),
            init_timeout: Duration::from_secs(30),
            echo_output: false,
        };

        let started = FunctionProcess::start(spec).await;

        match started {
            Err(StartError::InitFailed { status, init_error, .. }) => {
                assert!(status.is_some_and(|s| !s.success()), "{status:?}");
                assert_eq!(init_error, None);
            }
            Err(other) => panic!("expected an init failure, got {other}"),
            Ok(_) => panic!("/bin/false cannot poll"),
        }
    }
}
