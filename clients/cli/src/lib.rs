//! `bellhop-cli`, the smoke-test client: connects to a hub's WebSocket API with a platform token (or a development
//! token it mints with the harness's secret), then runs `ping`, `join`, `leave`, `send` and `emit` commands, either
//! one from the command line or many from an interactive prompt, and prints every frame it receives as one JSON
//! line so scripts can parse the output.
//!
//! Everything lives here rather than in the binary so tests drive it in-process: [`parse_command`] turns a line
//! into a [`Command`], and a [`Session`] runs commands against a live connection and writes to any async writer.
//! This package is a client of the hub like any other; it holds no hub logic and reuses nothing of the harness but
//! the development-secret defaults of [`Config`]. [`AckRequest`], how a request finds its ack, is shared with the
//! end-to-end tests' client.

use std::error::Error as StdError;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shared::auth::{Claims, mint_token};
use shared::config::Config;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The harness's WebSocket URL with its default port and stage.
pub const DEFAULT_WS_URL: &str = "ws://127.0.0.1:3001/local";

/// Exit status of a command the hub answered with `ok: true` (or an HTTP success).
pub const EXIT_OK: u8 = 0;
/// Exit status of a command the hub refused (`ok: false`, or an HTTP error status).
pub const EXIT_FAILED: u8 = 1;
/// Exit status of a command line that could not be understood.
pub const EXIT_USAGE: u8 = 2;
/// Exit status when the hub could not be reached, refused the handshake, closed the socket or did not answer.
pub const EXIT_CONNECTION: u8 = 3;

/// The command list shown by `help`.
pub const HELP: &str = "\
commands:
  ping                                the heartbeat, answered by the gateway itself with a pong
  join <room> | join <kind> <id>      room:join, e.g. `join booking:1` or `join user 123`
  leave <room> | leave <kind> <id>    room:leave
  send <room> <text...>               message:send
  emit <event> <room|user:ID> [json]  POST /internal/emit with the internal API key; data defaults to {}
  help                                this list
  exit                                close the connection and quit
every frame received is printed as one JSON line";

/// Command-line arguments of `bellhop-cli`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "bellhop-cli",
    about = "Bellhop smoke-test client: ping, join, leave, send and emit against a hub, printing frames as JSON lines",
    group(ArgGroup::new("identity").required(true).args(["token", "user"]))
)]
pub struct Args {
    /// The hub's WebSocket URL.
    #[arg(long, env = "BELLHOP_WS_URL", default_value = DEFAULT_WS_URL)]
    pub url: String,
    /// Base URL of the HTTP API, for `emit` (default: the WebSocket URL's host, e.g. http://127.0.0.1:3001).
    #[arg(long, env = "BELLHOP_HTTP_URL")]
    pub http_url: Option<String>,
    /// A platform JWT to connect with.
    #[arg(long)]
    pub token: Option<String>,
    /// Mint a development token for this user id, signed with JWT_SECRET (or the harness's public dev secret).
    #[arg(long)]
    pub user: Option<String>,
    /// Role of the minted token (admin, provider, secretary, customer...).
    #[arg(long, requires = "user")]
    pub role: Option<String>,
    /// Display name of the minted token.
    #[arg(long, requires = "user")]
    pub name: Option<String>,
    /// A room the minted token grants (repeatable), e.g. `--room booking:1`.
    #[arg(long = "room", requires = "user")]
    pub rooms: Vec<String>,
    /// Internal API key for `emit` (default: INTERNAL_API_KEY, or the harness's public dev key).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Milliseconds to keep printing frames after a one-shot command's answer.
    #[arg(long, default_value_t = 500)]
    pub wait: u64,
    /// Milliseconds to wait for the handshake and for each answer.
    #[arg(long, default_value_t = 5000)]
    pub timeout: u64,
    /// Run this one command and exit, e.g. `-c 'join booking:1'`.
    #[arg(short = 'c', long = "command", conflicts_with = "args")]
    pub command: Option<String>,
    /// The one command as trailing arguments, e.g. `bellhop-cli --user u1 join booking:1`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

impl Args {
    /// Parses an argument vector (the program name first) without exiting on errors, for callers other than
    /// `main`, such as tests.
    pub fn try_from_argv<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(argv)
    }

    /// The one-shot command line, if one was given with `-c` or as trailing arguments.
    pub fn one_shot(&self) -> Option<String> {
        match &self.command {
            Some(command) => Some(command.clone()),
            None if !self.args.is_empty() => Some(self.args.join(" ")),
            None => None,
        }
    }

    /// Where and how to connect: the token given or minted, the HTTP API URL, the API key. Secrets come from
    /// `config` (the harness's defaults) unless given explicitly.
    pub fn endpoint(&self, config: &Config) -> Result<Endpoint, CliError> {
        let token = match (&self.token, &self.user) {
            (Some(token), _) => SecretString::from(token.clone()),
            (None, Some(user)) => dev_token(config, user, self.role.clone(), self.name.clone(), self.rooms.clone())?,
            (None, None) => return Err(CliError::NoIdentity),
        };
        let http_url = match &self.http_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => http_url_for(&self.url)?,
        };
        let api_key = match &self.api_key {
            Some(key) => SecretString::from(key.clone()),
            None => config.internal_api_key.clone(),
        };
        Ok(Endpoint {
            ws_url: self.url.clone(),
            http_url,
            token,
            api_key,
            timeout: Duration::from_millis(self.timeout.max(1)),
        })
    }
}

/// A development token for `user`, valid for an hour, signed with the configured secret. It carries the configured
/// issuer and audience so a hub that checks them accepts it.
pub fn dev_token(
    config: &Config,
    user: &str,
    role: Option<String>,
    name: Option<String>,
    rooms: Vec<String>,
) -> Result<SecretString, CliError> {
    let claims = Claims {
        role,
        name,
        rooms: (!rooms.is_empty()).then_some(rooms),
        ..Claims::for_subject(user, 3600, &config.jwt)
    };
    let token = mint_token(&config.jwt.secret, &claims).map_err(|e| CliError::Token(Box::new(e)))?;
    Ok(SecretString::from(token))
}

/// The HTTP API next to a WebSocket API on the same host: `ws://h:p/stage` → `http://h:p`, `wss` → `https`. In the
/// cloud the two APIs have different hosts, hence `--http-url`.
pub fn http_url_for(ws_url: &str) -> Result<String, CliError> {
    let invalid = |reason: &str| CliError::InvalidUrl { url: ws_url.to_owned(), reason: reason.to_owned() };
    let (scheme, rest) = ws_url.split_once("://").ok_or_else(|| invalid("expected ws://host[:port]/stage"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" => "http",
        "wss" => "https",
        _ => return Err(invalid("the scheme must be ws or wss")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid("the URL has no host"));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// One command of the prompt or of the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Ping,
    Join { room: String },
    Leave { room: String },
    Send { room: String, text: String },
    Emit { event: String, target: EmitTarget, data: Value },
    Help,
    Exit,
}

/// Where an `emit` goes: a room, or a user (all of the user's connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitTarget {
    Room(String),
    User(String),
}

/// Why a command line could not be understood. Room names are not checked here: the hub's own error code is the
/// useful answer, so bad names go to the hub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command; type `help` for the list")]
    Empty,
    #[error("unknown command `{0}`; type `help` for the list")]
    Unknown(String),
    #[error("`{command}` needs {missing}; usage: {usage}")]
    MissingArgument { command: &'static str, missing: &'static str, usage: &'static str },
    #[error("`{command}` has too many arguments; usage: {usage}")]
    TooManyArguments { command: &'static str, usage: &'static str },
    #[error("emit data must be JSON: {0}")]
    InvalidJson(String),
}

const USAGE_JOIN: &str = "join <room> | join <kind> <id>";
const USAGE_LEAVE: &str = "leave <room> | leave <kind> <id>";
const USAGE_SEND: &str = "send <room> <text...>";
const USAGE_EMIT: &str = "emit <event> <room|user:ID> [json]";

/// Parses one command line. `send` keeps its text as typed (inner spaces included) and `emit` reads the rest of
/// the line as JSON, so neither needs quoting.
pub fn parse_command(line: &str) -> Result<Command, ParseError> {
    let (name, rest) = split_word(line.trim());
    match name.to_ascii_lowercase().as_str() {
        "" => Err(ParseError::Empty),
        "ping" => no_arguments("ping", rest).map(|()| Command::Ping),
        "help" | "?" => no_arguments("help", rest).map(|()| Command::Help),
        "exit" | "quit" => no_arguments("exit", rest).map(|()| Command::Exit),
        "join" => room_argument("join", USAGE_JOIN, rest).map(|room| Command::Join { room }),
        "leave" => room_argument("leave", USAGE_LEAVE, rest).map(|room| Command::Leave { room }),
        "send" => {
            let (room, text) = split_word(rest);
            let missing = |missing| ParseError::MissingArgument { command: "send", missing, usage: USAGE_SEND };
            match (room, text) {
                ("", _) => Err(missing("a room")),
                (_, "") => Err(missing("a message text")),
                (room, text) => Ok(Command::Send { room: room.to_owned(), text: text.to_owned() }),
            }
        }
        "emit" => {
            let (event, rest) = split_word(rest);
            let (target, data) = split_word(rest);
            let missing = |missing| ParseError::MissingArgument { command: "emit", missing, usage: USAGE_EMIT };
            if event.is_empty() {
                return Err(missing("an event name"));
            }
            let target = match target.split_once(':') {
                _ if target.is_empty() => return Err(missing("a room or user:ID")),
                Some(("user", "")) => return Err(missing("a user id after user:")),
                Some(("user", id)) => EmitTarget::User(id.to_owned()),
                _ => EmitTarget::Room(target.to_owned()),
            };
            let data = if data.is_empty() {
                json!({})
            } else {
                serde_json::from_str(data).map_err(|e| ParseError::InvalidJson(e.to_string()))?
            };
            Ok(Command::Emit { event: event.to_owned(), target, data })
        }
        _ => Err(ParseError::Unknown(name.to_owned())),
    }
}

/// The first whitespace-separated word and the rest of the line, trimmed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

fn no_arguments(command: &'static str, rest: &str) -> Result<(), ParseError> {
    if rest.is_empty() { Ok(()) } else { Err(ParseError::TooManyArguments { command, usage: command }) }
}

/// `<room>`, or `<kind> <id>` joined as `kind:id` as in seed 002's `join user 123`.
fn room_argument(command: &'static str, usage: &'static str, rest: &str) -> Result<String, ParseError> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        [] => Err(ParseError::MissingArgument { command, missing: "a room", usage }),
        [room] => Ok((*room).to_owned()),
        [kind, id] => Ok(format!("{kind}:{id}")),
        _ => Err(ParseError::TooManyArguments { command, usage }),
    }
}

/// Everything needed to open a session. Secrets are wrapped so a `Debug` print never shows them.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub ws_url: String,
    pub http_url: String,
    pub token: SecretString,
    pub api_key: SecretString,
    /// Limit for the handshake and for each answer.
    pub timeout: Duration,
}

/// What the CLI can fail at, apart from the hub refusing a command (that is an [`Outcome::Failed`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("give --token, or --user to mint a development token")]
    NoIdentity,
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("could not sign a development token")]
    Token(#[source] Box<dyn StdError + Send + Sync>),
    #[error("could not connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: Box<tungstenite::Error>,
    },
    #[error("the hub refused the handshake with HTTP {status}{hint}")]
    Refused { status: u16, hint: &'static str },
    #[error("no handshake answer from {url} within {after:?}")]
    ConnectTimeout { url: String, after: Duration },
    #[error("the hub closed the connection (code {code}{reason})", reason = if reason.is_empty() { String::new() } else { format!(", {reason}") })]
    Closed { code: u16, reason: String },
    #[error("no answer to {action} within {after:?}")]
    AnswerTimeout { action: String, after: Duration },
    #[error("the WebSocket connection failed")]
    Socket(#[source] Box<tungstenite::Error>),
    #[error("the emit request to {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not write the output")]
    Output(#[source] std::io::Error),
    #[error("could not read the input")]
    Input(#[source] std::io::Error),
}

impl CliError {
    /// The process exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NoIdentity | CliError::Parse(_) | CliError::InvalidUrl { .. } => EXIT_USAGE,
            _ => EXIT_CONNECTION,
        }
    }
}

/// The error and its causes on one line, `outer: inner: innermost`, for stderr.
pub fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors (tungstenite's `Io`) repeat their source in their own message; say it once.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// How the hub answered one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An `ok: true` ack or an HTTP success (or a local command such as `help`).
    Ok,
    /// An `ok: false` ack or an HTTP error, with the hub's code and message.
    Failed { code: String, message: String },
    /// `exit` was asked for.
    Exit,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ok | Outcome::Exit => EXIT_OK,
            Outcome::Failed { .. } => EXIT_FAILED,
        }
    }
}

/// One request of the client protocol (`{"action", "id", "data"}`) and the rule that recognises its answer: the ack
/// carrying the same id. Acks may arrive in any order (API Gateway invokes each frame independently), so a client
/// matches them by id, never by position.
#[derive(Debug, Clone, PartialEq)]
pub struct AckRequest {
    pub action: String,
    pub id: String,
    pub data: Value,
}

impl AckRequest {
    pub fn new(action: impl Into<String>, id: impl Into<String>, data: Value) -> Self {
        Self { action: action.into(), id: id.into(), data }
    }

    /// The text frame to send.
    pub fn to_text(&self) -> String {
        json!({"action": self.action, "id": self.id, "data": self.data}).to_string()
    }

    /// Whether `frame` is this request's ack.
    pub fn is_answered_by(&self, frame: &Value) -> bool {
        frame["type"] == "ack" && frame["id"] == self.id.as_str()
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection to a hub and the writer its frames are printed to, one JSON line each.
pub struct Session<W> {
    ws: Socket,
    out: W,
    http: reqwest::Client,
    http_url: String,
    api_key: SecretString,
    timeout: Duration,
    next_id: u64,
}

impl<W: AsyncWrite + Unpin> Session<W> {
    /// Opens the WebSocket with the token in `?token=`, the form every API Gateway deployment of Bellhop accepts.
    pub async fn connect(endpoint: &Endpoint, out: W) -> Result<Self, CliError> {
        let separator = if endpoint.ws_url.contains('?') { '&' } else { '?' };
        let token: String = form_urlencoded::byte_serialize(endpoint.token.expose_secret().as_bytes()).collect();
        // The request carries the token, so errors name `endpoint.ws_url`, never this URL.
        let request = format!("{}{separator}token={token}", endpoint.ws_url)
            .into_client_request()
            .map_err(|e| CliError::InvalidUrl { url: endpoint.ws_url.clone(), reason: describe(&e) })?;
        let connecting = tokio_tungstenite::connect_async(request);
        let (ws, _) = match tokio::time::timeout(endpoint.timeout, connecting).await {
            Err(_) => return Err(CliError::ConnectTimeout { url: endpoint.ws_url.clone(), after: endpoint.timeout }),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let hint = match status {
                    401 => " (no token)",
                    403 => " (invalid or expired token; GET /me with it as a Bearer token says why)",
                    _ => "",
                };
                return Err(CliError::Refused { status, hint });
            }
            Ok(Err(error)) => {
                return Err(CliError::Connect { url: endpoint.ws_url.clone(), source: Box::new(error) });
            }
            Ok(Ok(connected)) => connected,
        };
        let http = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .build()
            .map_err(|source| CliError::Http { url: endpoint.http_url.clone(), source })?;
        Ok(Self {
            ws,
            out,
            http,
            http_url: endpoint.http_url.clone(),
            api_key: endpoint.api_key.clone(),
            timeout: endpoint.timeout,
            next_id: 0,
        })
    }

    /// The writer, e.g. to read what a test session printed.
    pub fn output(&self) -> &W {
        &self.out
    }

    /// Runs one command and waits for its answer, printing every frame that arrives meanwhile.
    pub async fn run(&mut self, command: &Command) -> Result<Outcome, CliError> {
        match command {
            Command::Ping => self.ping().await,
            Command::Join { room } => self.request("room:join", json!({"room": room})).await,
            Command::Leave { room } => self.request("room:leave", json!({"room": room})).await,
            Command::Send { room, text } => self.request("message:send", json!({"room": room, "content": text})).await,
            Command::Emit { event, target, data } => self.emit(event, target, data).await,
            Command::Help => {
                self.write_line(HELP).await?;
                Ok(Outcome::Ok)
            }
            Command::Exit => {
                self.close().await;
                Ok(Outcome::Exit)
            }
        }
    }

    /// Prints every frame that arrives within `wait`.
    pub async fn collect(&mut self, wait: Duration) -> Result<(), CliError> {
        let deadline = Instant::now() + wait;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            self.print_incoming(next).await?;
        }
        Ok(())
    }

    /// The prompt: reads commands from `input` until `exit` or end of input, printing frames as they arrive.
    /// Refused commands and unparsable lines are reported on `err` and the prompt goes on; a lost connection ends
    /// it with an error. `prompt` shows `> ` on `err` before each command, for a terminal rather than a pipe.
    pub async fn interactive<R, E>(&mut self, input: R, mut err: E, prompt: bool) -> Result<(), CliError>
    where
        R: AsyncBufRead + Unpin,
        E: AsyncWrite + Unpin,
    {
        let mut lines = input.lines();
        let mut show_prompt = prompt;
        loop {
            if show_prompt {
                write_to(&mut err, "> ").await?;
                show_prompt = false;
            }
            // Both futures are cancel-safe: a frame that wins the race leaves a half-read line buffered in `lines`.
            tokio::select! {
                line = lines.next_line() => {
                    let Some(line) = line.map_err(CliError::Input)? else {
                        break;
                    };
                    show_prompt = prompt;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let command = match parse_command(&line) {
                        Ok(command) => command,
                        Err(error) => {
                            write_to(&mut err, &format!("error: {error}\n")).await?;
                            continue;
                        }
                    };
                    match self.run(&command).await? {
                        Outcome::Exit => return Ok(()),
                        Outcome::Ok => {}
                        Outcome::Failed { code, message } => {
                            write_to(&mut err, &format!("error: {code}: {message}\n")).await?;
                        }
                    }
                }
                next = self.ws.next() => {
                    self.print_incoming(next).await?;
                }
            }
        }
        self.close().await;
        Ok(())
    }

    /// Closes with 1000 and waits, up to the timeout, for the hub's answering close frame, so the hub records a
    /// clean disconnect rather than a reset. The process is leaving either way, so a failed close changes nothing.
    pub async fn close(&mut self) {
        let handshake = async {
            let normal = CloseFrame { code: CloseCode::Normal, reason: "".into() };
            if self.ws.close(Some(normal)).await.is_ok() {
                while let Some(Ok(message)) = self.ws.next().await {
                    if message.is_close() {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(self.timeout, handshake).await;
    }

    /// Sends `{"action", "id", "data"}` and waits for the ack with that id.
    async fn request(&mut self, action: &str, data: Value) -> Result<Outcome, CliError> {
        self.next_id += 1;
        let request = AckRequest::new(action, format!("cli-{}", self.next_id), data);
        self.ws.send(Message::text(request.to_text())).await.map_err(|e| CliError::Socket(Box::new(e)))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| CliError::AnswerTimeout { action: action.to_owned(), after: self.timeout })?;
            if let Some(ack) = self.print_incoming(next).await?
                && request.is_answered_by(&ack)
            {
                return Ok(outcome_of_ack(&ack));
            }
        }
    }

    /// Sends the heartbeat and waits for the gateway's pong. A pong carries no id (API Gateway answers it from a
    /// static template), so any pong answers it: a ping proves the socket is alive, not which request got through.
    async fn ping(&mut self) -> Result<Outcome, CliError> {
        let ping = json!({"action": shared::protocol::PING_ACTION}).to_string();
        self.ws.send(Message::text(ping)).await.map_err(|e| CliError::Socket(Box::new(e)))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| CliError::AnswerTimeout { action: "ping".to_owned(), after: self.timeout })?;
            if let Some(frame) = self.print_incoming(next).await?
                && frame["type"] == "pong"
            {
                return Ok(Outcome::Ok);
            }
        }
    }

    /// `POST /internal/emit`, printing the answer as `{"type":"http","status":...,"body":...}`.
    async fn emit(&mut self, event: &str, target: &EmitTarget, data: &Value) -> Result<Outcome, CliError> {
        let mut body = json!({"event": event, "data": data});
        match target {
            EmitTarget::Room(room) => body["rooms"] = json!([room]),
            EmitTarget::User(user) => body["users"] = json!([user]),
        }
        let url = format!("{}/internal/emit", self.http_url);
        let response = self
            .http
            .post(&url)
            .header("x-api-key", self.api_key.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|source| CliError::Http { url: self.http_url.clone(), source })?;
        let status = response.status();
        let text = response.text().await.map_err(|source| CliError::Http { url: self.http_url.clone(), source })?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        self.write_line(&json!({"type": "http", "status": status.as_u16(), "body": answer}).to_string()).await?;
        if status.is_success() {
            return Ok(Outcome::Ok);
        }
        let code = answer["error"]["code"].as_str().map_or_else(|| format!("HTTP_{}", status.as_u16()), str::to_owned);
        let message = answer["error"]["message"].as_str().unwrap_or("the HTTP API refused the emit").to_owned();
        Ok(Outcome::Failed { code, message })
    }

    /// Prints one received message as a JSON line and returns it when it is JSON. A close is printed and then
    /// reported as [`CliError::Closed`], so no caller goes on reading a dead socket.
    async fn print_incoming(
        &mut self,
        next: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<Option<Value>, CliError> {
        let message = match next {
            None => return Err(CliError::Closed { code: 1006, reason: "no close frame".to_owned() }),
            Some(Err(error)) => return Err(CliError::Socket(Box::new(error))),
            Some(Ok(message)) => message,
        };
        match message {
            Message::Text(text) => match serde_json::from_str::<Value>(&text) {
                Ok(frame) => {
                    // The hub's own text keeps its key order; only a frame spread over lines is re-serialised.
                    let line = if text.contains('\n') { frame.to_string() } else { text.trim().to_owned() };
                    self.write_line(&line).await?;
                    Ok(Some(frame))
                }
                Err(_) => {
                    self.write_line(&json!({"type": "text", "text": text.as_str()}).to_string()).await?;
                    Ok(None)
                }
            },
            Message::Binary(bytes) => {
                self.write_line(&json!({"type": "binary", "bytes": bytes.len()}).to_string()).await?;
                Ok(None)
            }
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                self.write_line(&json!({"type": "close", "code": code, "reason": reason}).to_string()).await?;
                Err(CliError::Closed { code, reason })
            }
            // tungstenite answers pings itself; neither is a frame of the protocol.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(None),
        }
    }

    async fn write_line(&mut self, line: &str) -> Result<(), CliError> {
        write_to(&mut self.out, &format!("{line}\n")).await
    }
}

/// `Ok` for an `ok: true` ack, otherwise the ack's error.
fn outcome_of_ack(ack: &Value) -> Outcome {
    if ack["ok"] == true {
        return Outcome::Ok;
    }
    Outcome::Failed {
        code: ack["error"]["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
        message: ack["error"]["message"].as_str().unwrap_or("the hub refused the command").to_owned(),
    }
}

/// Writes and flushes at once, so a reader of a pipe sees every line as soon as it is printed.
async fn write_to<W: AsyncWrite + Unpin>(out: &mut W, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes()).await.map_err(CliError::Output)?;
    out.flush().await.map_err(CliError::Output)
}

/// The whole program after argument parsing: runs the one-shot command or the prompt (showing `> ` when `prompt`),
/// prints failures on `err`, and returns the exit status.
pub async fn run<R, W, E>(args: &Args, config: &Config, input: R, out: W, mut err: E, prompt: bool) -> u8
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    match run_inner(args, config, input, out, &mut err, prompt).await {
        Ok(code) => code,
        Err(error) => {
            // Nothing more can be reported when stderr itself is gone.
            let _ = write_to(&mut err, &format!("error: {}\n", describe(&error))).await;
            error.exit_code()
        }
    }
}

async fn run_inner<R, W, E>(
    args: &Args,
    config: &Config,
    input: R,
    out: W,
    err: &mut E,
    prompt: bool,
) -> Result<u8, CliError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    // A one-shot line is parsed before connecting: a typo should not cost a handshake.
    let one_shot = args.one_shot().map(|line| parse_command(&line)).transpose()?;
    let mut out = out;
    match &one_shot {
        Some(Command::Help) => {
            write_to(&mut out, &format!("{HELP}\n")).await?;
            return Ok(EXIT_OK);
        }
        Some(Command::Exit) => return Ok(EXIT_OK),
        _ => {}
    }
    let endpoint = args.endpoint(config)?;
    let mut session = Session::connect(&endpoint, out).await?;
    let Some(command) = one_shot else {
        write_to(err, &format!("connected to {}; type `help` for the commands\n", endpoint.ws_url)).await?;
        session.interactive(input, &mut *err, prompt).await?;
        return Ok(EXIT_OK);
    };
    let outcome = session.run(&command).await?;
    if let Outcome::Failed { code, message } = &outcome {
        write_to(err, &format!("error: {code}: {message}\n")).await?;
    } else {
        session.collect(Duration::from_millis(args.wait)).await?;
    }
    session.close().await;
    Ok(outcome.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<Command, ParseError>) {
        assert_eq!(parse_command(line), expected, "{line:?}");
    }

    fn room(name: &str) -> String {
        name.to_owned()
    }

    #[test]
    fn simple_commands_parse_case_insensitively_and_ignore_surrounding_space() {
        check("ping", Ok(Command::Ping));
        check("  PING  ", Ok(Command::Ping));
        check("help", Ok(Command::Help));
        check("?", Ok(Command::Help));
        check("exit", Ok(Command::Exit));
        check("quit", Ok(Command::Exit));
    }

    #[test]
    fn join_and_leave_take_a_room_or_a_kind_and_an_id() {
        check("join booking:1", Ok(Command::Join { room: room("booking:1") }));
        check("join user 123", Ok(Command::Join { room: room("user:123") }));
        check("leave topic:news", Ok(Command::Leave { room: room("topic:news") }));
        check("leave vendor  v9", Ok(Command::Leave { room: room("vendor:v9") }));
    }

    #[test]
    fn send_keeps_the_text_as_typed() {
        check(
            "send booking:1 Is 2pm  fine?",
            Ok(Command::Send { room: room("booking:1"), text: "Is 2pm  fine?".to_owned() }),
        );
    }

    #[test]
    fn emit_targets_a_room_or_a_user_and_reads_the_rest_as_json() {
        check(
            r#"emit appointment:created calendar {"appointmentId": "a 1"}"#,
            Ok(Command::Emit {
                event: "appointment:created".to_owned(),
                target: EmitTarget::Room(room("calendar")),
                data: json!({"appointmentId": "a 1"}),
            }),
        );
        check(
            "emit payment:failed user:u7",
            Ok(Command::Emit {
                event: "payment:failed".to_owned(),
                target: EmitTarget::User("u7".to_owned()),
                data: json!({}),
            }),
        );
    }

    #[test]
    fn missing_arguments_name_what_is_missing_and_the_usage() {
        let missing = |command, missing, usage| Err(ParseError::MissingArgument { command, missing, usage });
        check("join", missing("join", "a room", USAGE_JOIN));
        check("leave ", missing("leave", "a room", USAGE_LEAVE));
        check("send", missing("send", "a room", USAGE_SEND));
        check("send booking:1", missing("send", "a message text", USAGE_SEND));
        check("emit", missing("emit", "an event name", USAGE_EMIT));
        check("emit e", missing("emit", "a room or user:ID", USAGE_EMIT));
        check("emit e user:", missing("emit", "a user id after user:", USAGE_EMIT));
        let message = parse_command("send booking:1").map(|_| ()).unwrap_err().to_string();
        assert_eq!(message, "`send` needs a message text; usage: send <room> <text...>");
    }

    #[test]
    fn unknown_commands_extra_arguments_and_bad_json_are_clear_errors() {
        check("", Err(ParseError::Empty));
        check("   ", Err(ParseError::Empty));
        check("jump booking:1", Err(ParseError::Unknown("jump".to_owned())));
        check("ping now", Err(ParseError::TooManyArguments { command: "ping", usage: "ping" }));
        check("join a b c", Err(ParseError::TooManyArguments { command: "join", usage: USAGE_JOIN }));
        assert!(matches!(parse_command("emit e calendar {not json"), Err(ParseError::InvalidJson(_))));
        assert_eq!(
            parse_command("jump").map(|_| ()).unwrap_err().to_string(),
            "unknown command `jump`; type `help` for the list"
        );
    }

    #[test]
    fn the_http_api_is_found_next_to_the_websocket_api() {
        assert_eq!(http_url_for("ws://127.0.0.1:3001/local").ok(), Some("http://127.0.0.1:3001".to_owned()));
        assert_eq!(http_url_for("wss://hub.example.com/prod?x=1").ok(), Some("https://hub.example.com".to_owned()));
        assert!(matches!(http_url_for("http://h/local"), Err(CliError::InvalidUrl { .. })));
        assert!(matches!(http_url_for("ws:///local"), Err(CliError::InvalidUrl { .. })));
        assert!(matches!(http_url_for("localhost:3001"), Err(CliError::InvalidUrl { .. })));
    }

    #[test]
    fn arguments_need_an_identity_and_take_the_command_either_way() {
        assert!(Args::try_parse_from(["bellhop-cli", "ping"]).is_err(), "neither --token nor --user");
        let flag = Args::try_parse_from(["bellhop-cli", "--user", "u1", "-c", "join booking:1"]).expect("parse");
        let trailing =
            Args::try_parse_from(["bellhop-cli", "--user", "u1", "send", "booking:1", "hi", "there"]).expect("parse");
        assert_eq!(flag.one_shot().as_deref(), Some("join booking:1"));
        assert_eq!(trailing.one_shot().as_deref(), Some("send booking:1 hi there"));
        assert_eq!(flag.url, DEFAULT_WS_URL);
        assert_eq!(flag.wait, 500);
    }

    #[test]
    fn a_minted_token_is_signed_with_the_configured_secret_and_never_shown_by_debug() {
        let config = Config::for_tests();
        let args = Args::try_parse_from(["bellhop-cli", "--user", "u1", "--role", "customer"]).expect("parse");

        let endpoint = args.endpoint(&config).expect("endpoint");

        let verifier = shared::auth::TokenVerifier::new(&config.jwt);
        let identity = verifier.verify(endpoint.token.expose_secret()).expect("the hub accepts the minted token");
        assert_eq!(identity.user_id.as_str(), "u1");
        assert_eq!(identity.role.as_deref(), Some("customer"));
        let shown = format!("{endpoint:?}");
        assert!(!shown.contains(endpoint.token.expose_secret()), "{shown}");
        assert!(!shown.contains(config.internal_api_key.expose_secret()), "{shown}");
    }
}
