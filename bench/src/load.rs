//! The connection fleet and the workloads it drives: idle connections in rooms, room broadcast at a fixed rate,
//! and internal emits to a room.
//!
//! Every connection joins exactly one bench room. Its reader task checks every chat message it receives: it must
//! be for its room, and its `seq` must be higher than the last one seen. After each step the fleet also checks that
//! every connection received exactly the messages its room carried minus its own; together that proves none was
//! lost, none arrived twice, and all arrived in `seq` order. Latency is measured with one clock: the sender writes
//! its send time (µs since the generator's epoch) into the message content and the receiver subtracts it.
//!
//! Sends are open-loop at a fixed rate (no waiting for acks), so a slow server shows up as latency rather than as a
//! lower offered load.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, stream};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::proto::{EMIT_EVENT, Incoming, Protocol};
use crate::servers::{API_KEY, JWT_SECRET};

/// How long one connection may take to open, authenticate and join.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections opened at once while building the fleet.
const CONNECT_CONCURRENCY: usize = 64;
/// How long a step waits for its last deliveries and acks after the sending stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an internal emit may take to reach its whole room.
const EMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the fleet could not be built or driven.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connection {index}: websocket")]
    WebSocket {
        index: usize,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("connection {index}: {stage} timed out")]
    Timeout { index: usize, stage: &'static str },
    #[error("connection {index}: {what}")]
    Refused { index: usize, what: String },
    #[error("sign a token")]
    Token(#[source] jsonwebtoken::errors::Error),
    #[error("internal emit")]
    Emit(#[source] reqwest::Error),
    #[error("internal emit answered {status}: {body}")]
    EmitStatus { status: u16, body: String },
}

/// What one connection has seen, shared between its reader task and the fleet.
#[derive(Debug, Default)]
struct ConnState {
    last_seq: u64,
    received: u64,
    /// Messages for another room, with a `seq` not above the last one, or unreadable.
    violations: u64,
    first_violation: Option<String>,
    acks_ok: u64,
    acks_failed: u64,
    latencies_us: Vec<u32>,
    last_emit: Option<(u64, Instant)>,
    closed: bool,
}

struct Conn {
    room: usize,
    tx: mpsc::UnboundedSender<Message>,
    state: Arc<Mutex<ConnState>>,
    /// Messages this connection sent in the current step.
    sent: u64,
}

/// A fleet of connections spread over rooms, all joined and listening.
pub struct Fleet {
    protocol: Protocol,
    conns: Vec<Conn>,
    rooms: Vec<String>,
    /// The members of each room, as indices into `conns`.
    members: Vec<Vec<usize>>,
    epoch: Instant,
    next_id: u64,
    http: reqwest::Client,
    http_base: String,
}

/// The outcome of one fixed-rate broadcast step.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub rate: u32,
    pub sent: u64,
    pub acks_failed: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub extra: u64,
    pub violations: u64,
    pub first_violation: Option<String>,
    /// All delivery latencies of the step, in µs, sorted.
    #[serde(skip)]
    pub latencies_us: Vec<u32>,
    pub send_secs: f64,
}

/// Latency of each internal emit from the POST to the last member, in µs, and how many never arrived in full.
#[derive(Clone, Debug, Default)]
pub struct EmitReport {
    pub to_last_us: Vec<u32>,
    pub incomplete: u64,
}

/// A short-lived bench token for `sub`.
fn token(sub: &str) -> Result<String, LoadError> {
    #[derive(Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        name: &'a str,
        exp: u64,
        iat: u64,
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let claims = Claims { sub, name: sub, exp: now + 3600, iat: now };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .map_err(LoadError::Token)
}

impl Fleet {
    /// Opens `connections` connections to the server at `ws_base`, `room_size` to a room, each authenticated with
    /// its own token and joined to its room before this returns.
    pub async fn build(
        protocol: Protocol,
        ws_base: &str,
        http_base: &str,
        run_id: &str,
        connections: usize,
        room_size: usize,
    ) -> Result<Fleet, LoadError> {
        let room_count = connections.div_ceil(room_size.max(1));
        let rooms: Vec<String> = (0..room_count).map(|room| format!("topic:bench-{run_id}-{room}")).collect();
        let epoch = Instant::now();
        let opened: Vec<Result<Conn, LoadError>> = stream::iter(0..connections)
            .map(|index| {
                let room = index % room_count;
                let room_name = rooms[room].clone();
                async move { open(protocol, ws_base, run_id, index, room, &room_name, epoch).await }
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        let mut conns = Vec::with_capacity(connections);
        for conn in opened {
            conns.push(conn?);
        }
        let mut members = vec![Vec::new(); room_count];
        for (index, conn) in conns.iter().enumerate() {
            members[conn.room].push(index);
        }
        Ok(Fleet {
            protocol,
            conns,
            rooms,
            members,
            epoch,
            next_id: 1,
            http: reqwest::Client::new(),
            http_base: http_base.to_owned(),
        })
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections the server closed since the fleet was built.
    pub fn closed(&self) -> usize {
        self.conns.iter().filter(|conn| lock(&conn.state).closed).count()
    }

    /// Sends `message:send` at `rate` messages a second for `duration`, rotating over rooms and, within each room,
    /// over its members; then waits for every ack and delivery (or [`DRAIN_TIMEOUT`]) and checks them.
    pub async fn broadcast_step(&mut self, rate: u32, duration: Duration) -> StepReport {
        for conn in &mut self.conns {
            conn.sent = 0;
            let mut state = lock(&conn.state);
            state.received = 0;
            state.acks_ok = 0;
            state.acks_failed = 0;
            state.latencies_us.clear();
        }
        let mut room_sent = vec![0_u64; self.rooms.len()];
        let mut cursor = vec![0_usize; self.rooms.len()];
        let started = Instant::now();
        let mut sent = 0_u64;
        let mut ticker = tokio::time::interval(Duration::from_millis(2));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticker.tick().await;
            let elapsed = started.elapsed();
            if elapsed >= duration {
                break;
            }
            // Open loop: however late this tick is, send exactly what the schedule owes by now.
            let due = (elapsed.as_secs_f64() * f64::from(rate)) as u64;
            while sent < due {
                let room = (sent as usize) % self.rooms.len();
                let members = &self.members[room];
                if members.len() < 2 {
                    sent += 1;
                    continue;
                }
                let index = members[cursor[room] % members.len()];
                cursor[room] += 1;
                let sent_us = self.epoch.elapsed().as_micros() as u64;
                let frame = self.protocol.send(self.next_id, &self.rooms[room], sent_us);
                self.next_id += 1;
                let conn = &mut self.conns[index];
                if conn.tx.send(Message::text(frame)).is_ok() {
                    conn.sent += 1;
                    room_sent[room] += 1;
                }
                sent += 1;
            }
        }
        let send_secs = started.elapsed().as_secs_f64();
        let total_sent: u64 = room_sent.iter().sum();

        // The expected deliveries: every message reaches every member of its room but its sender.
        let expected_for = |conn: &Conn| room_sent[conn.room] - conn.sent;
        let expected: u64 = self.conns.iter().map(expected_for).sum();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let (delivered, acks) = self.conns.iter().fold((0, 0), |(delivered, acks), conn| {
                let state = lock(&conn.state);
                (delivered + state.received, acks + state.acks_ok + state.acks_failed)
            });
            if (delivered >= expected && acks >= total_sent) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let mut report = StepReport {
            rate,
            sent: total_sent,
            acks_failed: 0,
            expected,
            delivered: 0,
            lost: 0,
            extra: 0,
            violations: 0,
            first_violation: None,
            latencies_us: Vec::new(),
            send_secs,
        };
        for conn in &self.conns {
            let want = expected_for(conn);
            let mut state = lock(&conn.state);
            report.delivered += state.received;
            report.lost += want.saturating_sub(state.received);
            report.extra += state.received.saturating_sub(want);
            report.acks_failed += state.acks_failed + (conn.sent - (state.acks_ok + state.acks_failed).min(conn.sent));
            report.violations += state.violations;
            if report.first_violation.is_none() {
                report.first_violation = state.first_violation.clone();
            }
            report.latencies_us.append(&mut state.latencies_us);
        }
        report.latencies_us.sort_unstable();
        report
    }

    /// Posts `count` internal emits one after another, each to the next room, and measures each from the POST to
    /// the moment its last member received it.
    pub async fn emits(&mut self, count: u32) -> Result<EmitReport, LoadError> {
        let mut report = EmitReport::default();
        for n in 0..u64::from(count) {
            let room = (n as usize) % self.rooms.len();
            let body = serde_json::json!({
                "event": EMIT_EVENT,
                "data": {"n": n},
                "rooms": [self.rooms[room]],
            });
            let posted = Instant::now();
            let response = self
                .http
                .post(format!("{}/internal/emit", self.http_base))
                .header("x-api-key", API_KEY)
                .json(&body)
                .send()
                .await
                .map_err(LoadError::Emit)?;
            let status = response.status();
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                return Err(LoadError::EmitStatus { status: status.as_u16(), body });
            }
            let deadline = posted + EMIT_TIMEOUT;
            let last = loop {
                let arrivals: Vec<Option<Instant>> = self.members[room]
                    .iter()
                    .map(|&index| match lock(&self.conns[index].state).last_emit {
                        Some((seen, at)) if seen == n => Some(at),
                        _ => None,
                    })
                    .collect();
                if arrivals.iter().all(Option::is_some) {
                    break arrivals.into_iter().flatten().max();
                }
                if Instant::now() >= deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            match last {
                Some(at) => report.to_last_us.push(at.saturating_duration_since(posted).as_micros() as u32),
                None => report.incomplete += 1,
            }
            // A pause between emits, so each is measured on an idle server.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        report.to_last_us.sort_unstable();
        Ok(report)
    }
}

fn lock(state: &Mutex<ConnState>) -> MutexGuard<'_, ConnState> {
    // A reader task that panicked leaves a poisoned lock; its counters are still the best information there is.
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Opens one connection, authenticates, joins `room_name` and starts its reader and writer tasks.
async fn open(
    protocol: Protocol,
    ws_base: &str,
    run_id: &str,
    index: usize,
    room: usize,
    room_name: &str,
    epoch: Instant,
) -> Result<Conn, LoadError> {
    let sub = format!("bench-{run_id}-{index}");
    let token = token(&sub)?;
    // Small buffers: the generator holds as many sockets as the server, and must not run out of memory first.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let connect = tokio_tungstenite::connect_async_with_config(protocol.url(ws_base, &token), Some(config), true);
    let (mut socket, _) = tokio::time::timeout(SETUP_TIMEOUT, connect)
        .await
        .map_err(|_| LoadError::Timeout { index, stage: "connect" })?
        .map_err(|source| LoadError::WebSocket { index, source })?;

    let setup = async {
        if let Some(packet) = protocol.connect_packet(&token) {
            socket.send(Message::text(packet)).await.map_err(|source| LoadError::WebSocket { index, source })?;
            // Socket.IO answers the connect packet with `40{"sid":..}`, or `44{..}` when the middleware refuses.
            loop {
                let text = next_text(&mut socket, index).await?;
                if text.starts_with("40") {
                    break;
                }
                if text.starts_with("44") {
                    return Err(LoadError::Refused { index, what: text });
                }
            }
        }
        socket
            .send(Message::text(protocol.join(room_name)))
            .await
            .map_err(|source| LoadError::WebSocket { index, source })?;
        loop {
            let text = next_text(&mut socket, index).await?;
            match protocol.parse(&text) {
                Incoming::Ack { ok: true } => return Ok(()),
                Incoming::Ack { ok: false } => return Err(LoadError::Refused { index, what: text }),
                Incoming::Ping => {
                    if let Some(pong) = protocol.pong() {
                        socket
                            .send(Message::text(pong))
                            .await
                            .map_err(|source| LoadError::WebSocket { index, source })?;
                    }
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(SETUP_TIMEOUT, setup).await.map_err(|_| LoadError::Timeout { index, stage: "join" })??;

    let (mut write, mut read) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if write.send(message).await.is_err() {
                break;
            }
        }
    });
    let state = Arc::new(Mutex::new(ConnState::default()));
    let reader_state = Arc::clone(&state);
    let pong_tx = tx.clone();
    let own_room = room_name.to_owned();
    tokio::spawn(async move {
        while let Some(Ok(message)) = read.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let incoming = protocol.parse(text.as_str());
            let now = Instant::now();
            let mut state = lock(&reader_state);
            match incoming {
                Incoming::Message { room, seq, sent_us } => {
                    if room != own_room || seq <= state.last_seq {
                        state.violations += 1;
                        if state.first_violation.is_none() {
                            state.first_violation =
                                Some(format!("{own_room}: got {room} seq {seq} after seq {}", state.last_seq));
                        }
                    } else {
                        state.last_seq = seq;
                    }
                    state.received += 1;
                    let latency = (now.saturating_duration_since(epoch).as_micros() as u64).saturating_sub(sent_us);
                    state.latencies_us.push(u32::try_from(latency).unwrap_or(u32::MAX));
                }
                Incoming::Ack { ok: true } => state.acks_ok += 1,
                Incoming::Ack { ok: false } => state.acks_failed += 1,
                Incoming::Emit { n } => state.last_emit = Some((n, now)),
                Incoming::Ping => {
                    if let Some(pong) = protocol.pong() {
                        let _ = pong_tx.send(Message::text(pong));
                    }
                }
                Incoming::Other => {}
                Incoming::Malformed(what) => {
                    state.violations += 1;
                    if state.first_violation.is_none() {
                        state.first_violation = Some(what);
                    }
                }
            }
        }
        lock(&reader_state).closed = true;
    });
    Ok(Conn { room, tx, state, sent: 0 })
}

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    index: usize,
) -> Result<String, LoadError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(LoadError::Refused { index, what: format!("closed during setup: {frame:?}") });
            }
            Some(Ok(_)) => {}
            Some(Err(source)) => return Err(LoadError::WebSocket { index, source }),
            None => return Err(LoadError::Refused { index, what: "closed during setup".to_owned() }),
        }
    }
}
