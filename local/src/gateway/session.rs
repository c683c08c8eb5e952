//! One open socket: reads client frames into MESSAGE events, writes queued messages (fragmented above 32 KiB),
//! enforces API Gateway's limits and timeouts, and runs `$disconnect` exactly once when the socket ends.
//!
//! One long-lived task per connection: this loop, which reads, owns the timers and the close decision, and moves
//! the writes on through [`Duplex`]. Each message then runs as a task of its own that routes it: `ping` is answered
//! by its mock integration without running any handler, everything else runs `$default`. By default each message's
//! invocation starts as soon as it arrives, so one connection's handlers run concurrently and their route responses
//! come back in whatever order they finish, as on AWS (which invokes the integration for each frame independently).
//! `strict_order` runs them one after another instead, for debugging. Route responses travel through the same queue
//! as posts. An idle connection holds no invocation task, no inbox and no writer task: that memory is paid only
//! while a message runs.
//!
//! The loop is generic over the transport under the WebSocket, so its rules are unit-tested over an in-memory duplex
//! pipe as well as end to end over TCP.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use shared::gateway::{MAX_MESSAGE_BYTES, PING_ROUTE_KEY, PING_ROUTE_RESPONSE};
use shared::handlers::{disconnect, message};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::Gateway;
use super::connections::{CloseCause, Connection, new_message_id, new_request_id};
use super::duplex::{Duplex, Socket, Transport};
use super::events::{self, ConnectionContext, Invocation};
use super::routes::{DEFAULT_ROUTE, select_route};

/// Route keys of the emulated API, as `template.yaml` deploys them: `$default` (the message function, with a
/// `$default` route response) and the heartbeat's `ping` (a MOCK integration with a static response template).
const ROUTES: [&str; 2] = [DEFAULT_ROUTE, PING_ROUTE_KEY];
/// How long to wait for the client's half of a close handshake before dropping the TCP connection.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How the socket ended, as `$disconnect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ended {
    code: u16,
    reason: String,
}

/// The connection's task. Not an `async fn`: an async function keeps its arguments in its state beside the locals
/// made from them, so the socket and the context would take their room twice in every idle connection's task. The
/// values are built first and the async block owns them once.
pub(crate) fn run<T: Transport>(
    gateway: Arc<Gateway>,
    connection: Arc<Connection>,
    socket: Socket<T>,
    // Held until `$disconnect` has run, so a graceful shutdown waits for it.
    shutdown_guard: Option<mpsc::Sender<()>>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut socket = Duplex::new(socket, connection.clone());
    let mut invocations = Invocations::new(gateway.settings.strict_order);
    async move {
        let ended = loop {
            tokio::select! {
                frame = socket.next(invocations.has_room()) => match frame {
                    Some(Ok(Message::Text(text))) => {
                        connection.touch();
                        // Boxed, like the other rare or late steps below, so that the session task, which every idle
                        // connection keeps, is not sized for them.
                        invocations.start(Box::pin(invoke(gateway.clone(), connection.clone(), text)));
                    }
                    Some(Err(WsError::Utf8(error))) => {
                        // A text message that is not UTF-8 never reaches Lambda: the connection fails with 1007, as
                        // RFC 6455 requires, instead of dropping the TCP connection without a close frame.
                        tracing::info!(%error, "closing: text message is not UTF-8");
                        break server_close(&mut socket, CloseCause::invalid_payload(), false).await;
                    }
                    Some(Err(WsError::Protocol(error))) if is_client_protocol_error(&error) => {
                        // Unmasked client frames, reserved bits, bad opcodes: a protocol violation, closed with 1002.
                        tracing::info!(%error, "closing: protocol violation");
                        break server_close(&mut socket, CloseCause::protocol_error(), false).await;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        // AWS closes instead of invoking any route: binary frames never reach Lambda.
                        break server_close(&mut socket, CloseCause::binary(), true).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let ended = match frame {
                            Some(frame) => Ended { code: frame.code.into(), reason: frame.reason.to_string() },
                            None => Ended { code: 1005, reason: "Client-side close frame status not set".into() },
                        };
                        // tungstenite has queued the echo of the client's close frame; reading on flushes it.
                        drain(&mut socket).await;
                        break ended;
                    }
                    Some(Err(WsError::Capacity(error))) => {
                        // tungstenite refuses the oversized frame or message but sends nothing; AWS answers 1009.
                        tracing::info!(%error, "closing oversized message");
                        break server_close(&mut socket, CloseCause::too_big(), false).await;
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "socket error");
                        break Ended { code: 1006, reason: "Connection closed abnormally".into() };
                    }
                    None => break Ended { code: 1006, reason: "Connection closed abnormally".into() },
                },
                // Reaps finished invocations, so the set holds only the running ones.
                Some(done) = invocations.running.join_next(), if !invocations.running.is_empty() => report_panic(done),
                // Idle timeout, maximum duration, shutdown (`expiry`), `DeleteConnection`.
                cause = connection.close_requested() => break server_close(&mut socket, cause, true).await,
            }
        };

        // Gone for the management API from now on, before `$disconnect` runs, as in AWS.
        gateway.registry.remove(connection.id());
        // The socket closes here. With it goes the outbound queue, so an invocation still waiting for room in it learns
        // that the connection is gone instead of waiting for a writer that no longer runs.
        drop(socket);
        // Messages already received still run before `$disconnect`, so a late handler cannot re-create state the
        // disconnect just removed.
        Box::pin(invocations.finish()).await;
        Box::pin(run_disconnect(&gateway, &connection.context, ended.code, &ended.reason)).await;
        drop(shutdown_guard);
    }
}

/// `$disconnect` for a connection whose `$connect` succeeded but whose upgrade never completed: the handler still
/// needs to hear that the connection is gone.
pub(crate) async fn abandon(gateway: &Arc<Gateway>, ctx: &ConnectionContext) {
    gateway.registry.remove(&ctx.connection_id);
    run_disconnect(gateway, ctx, 1006, "Connection closed abnormally").await;
}

/// Sends our close frame after the message being written, waits briefly for the client's reply, and reports the
/// cause. Boxed: see `run`.
fn server_close<T: Transport>(socket: &mut Duplex<T>, cause: CloseCause, await_reply: bool) -> BoxFuture<'_, Ended> {
    Box::pin(async move {
        socket.close(CloseFrame { code: CloseCode::from(cause.code), reason: cause.frame_reason.clone().into() });
        if await_reply {
            drain(socket).await;
        } else {
            // After a capacity or protocol error the read side is mid-frame or unusable: only flush the close.
            let _ = timeout(Duration::from_millis(100), socket.flush_close()).await;
        }
        Ended { code: cause.code, reason: cause.disconnect_reason }
    })
}

/// Reads until the close handshake completes (or the grace period ends), discarding anything else: frames that
/// arrive after a close never reach Lambda. Boxed: see `run`.
fn drain<T: Transport>(socket: &mut Duplex<T>) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let _ = timeout(CLOSE_GRACE, async {
            while let Some(Ok(frame)) = socket.next(true).await {
                if matches!(frame, Message::Close(_)) {
                    // One more read flushes any queued reply and observes the end of the stream.
                    let _ = timeout(Duration::from_millis(200), socket.next(true)).await;
                    break;
                }
            }
        })
        .await;
    })
}

/// Protocol errors that are the client's fault and fail the connection with 1002. Errors about the connection's
/// own state (a reset, frames after the close) end it without a close frame.
fn is_client_protocol_error(error: &ProtocolError) -> bool {
    matches!(
        error,
        ProtocolError::UnmaskedFrameFromClient
            | ProtocolError::NonZeroReservedBits
            | ProtocolError::UnknownControlFrameType(_)
            | ProtocolError::UnknownDataFrameType(_)
            | ProtocolError::UnexpectedContinueFrame
            | ProtocolError::ExpectedFragment(_)
            | ProtocolError::FragmentedControlFrame
            | ProtocolError::ControlFrameTooBig
            | ProtocolError::InvalidCloseSequence
            | ProtocolError::InvalidOpcode(_)
    )
}

/// How many messages may wait for their turn under `strict_order` before the session stops reading the socket, so a
/// client that sends faster than its messages run is held back by TCP instead of by the harness's memory.
const STRICT_ORDER_BACKLOG: usize = 64;

/// A connection's running invocations (see [`invoke`]), one task each: concurrent by default, each waiting for the
/// one before it under `strict_order`.
struct Invocations {
    running: JoinSet<()>,
    strict_order: bool,
    /// Under `strict_order`, fires when the last started invocation has finished (or panicked).
    previous: Option<oneshot::Receiver<()>>,
}

impl Invocations {
    fn new(strict_order: bool) -> Self {
        Self { running: JoinSet::new(), strict_order, previous: None }
    }

    /// Whether another message may start: always, unless `strict_order`'s backlog is full. The session stops
    /// reading until it is not.
    fn has_room(&self) -> bool {
        !self.strict_order || self.running.len() < STRICT_ORDER_BACKLOG
    }

    fn start(&mut self, invocation: impl Future<Output = ()> + Send + 'static) {
        if !self.strict_order {
            self.running.spawn(invocation);
            return;
        }
        let previous = self.previous.take();
        let (finished, next) = oneshot::channel();
        self.previous = Some(next);
        self.running.spawn(async move {
            if let Some(previous) = previous {
                // An error only means the previous invocation panicked; it is over either way.
                let _ = previous.await;
            }
            invocation.await;
            let _ = finished.send(());
        });
    }

    /// Waits for every started invocation, so `$disconnect` never overtakes a message that arrived before the close.
    async fn finish(mut self) {
        while let Some(done) = self.running.join_next().await {
            report_panic(done);
        }
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!(%error, "message invocation panicked");
    }
}

/// One MESSAGE: route selection, the route's throttling, then its integration (the `$default` function under the
/// integration timeout, or the `ping` route's mock) and its route response.
async fn invoke(gateway: Arc<Gateway>, connection: Arc<Connection>, body: Utf8Bytes) {
    let ctx = &connection.context;
    let invocation = Invocation { request_id: new_request_id(), time_ms: chrono::Utc::now().timestamp_millis() };
    let route_key = select_route(&body, &ROUTES);
    if let Some(throttles) = &gateway.throttles
        && !throttles.message_route(route_key).try_take()
    {
        tracing::warn!(connection_id = %ctx.connection_id, route_key, "message throttled by the stage's route limits");
        let _ = connection.queue_waiting(gateway_error("Too Many Requests", ctx, &invocation)).await;
        return;
    }
    if route_key == PING_ROUTE_KEY {
        // A MOCK integration: API Gateway answers with the route's response template and invokes nothing, so no
        // handler runs, whatever else the frame carries.
        let _ = connection.queue_waiting(PING_ROUTE_RESPONSE.to_owned()).await;
        return;
    }
    let message_id = new_message_id();
    let reply = match events::message_event(ctx, route_key, &message_id, &body, &invocation) {
        Ok((_, event)) => {
            let deps = gateway.deps.clone();
            let call = tokio::spawn(async move { message::handle(&deps, event).await });
            match timeout(gateway.settings.integration_timeout, call).await {
                // The `$default` route response sends the body, whatever the status code.
                Ok(Ok(Ok(response))) => events::body_text(response.body),
                Ok(Ok(Err(error))) => {
                    tracing::error!(%error, "$default failed");
                    Some(gateway_error("Internal server error", ctx, &invocation))
                }
                Ok(Err(join)) => {
                    tracing::error!(error = %join, "$default panicked");
                    Some(gateway_error("Internal server error", ctx, &invocation))
                }
                Err(_) => {
                    tracing::error!(connection_id = %ctx.connection_id, "$default exceeded the integration timeout");
                    Some(gateway_error("Endpoint request timed out", ctx, &invocation))
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, "message event has the wrong shape");
            Some(gateway_error("Internal server error", ctx, &invocation))
        }
    };
    let reply = reply.map(|reply| within_message_limit(reply, ctx, &invocation));
    if let Some(reply) = reply {
        let _ = connection.queue_waiting(reply).await;
    }
}

/// A route response as API Gateway delivers it: unchanged when it fits one message, otherwise replaced by the
/// gateway's error frame, because API Gateway cannot send a message that large and the answer never reaches the
/// client. Logged loudly: on AWS this is an ack that silently goes missing.
fn within_message_limit(reply: String, ctx: &ConnectionContext, invocation: &Invocation) -> String {
    if reply.len() <= MAX_MESSAGE_BYTES {
        return reply;
    }
    tracing::error!(
        connection_id = %ctx.connection_id,
        bytes = reply.len(),
        limit = MAX_MESSAGE_BYTES,
        "route response exceeds API Gateway's message limit and is not delivered"
    );
    gateway_error("Internal server error", ctx, invocation)
}

fn gateway_error(message: &str, ctx: &ConnectionContext, invocation: &Invocation) -> String {
    json!({"message": message, "connectionId": ctx.connection_id, "requestId": invocation.request_id}).to_string()
}

async fn run_disconnect(gateway: &Gateway, ctx: &ConnectionContext, code: u16, reason: &str) {
    let invocation = Invocation { request_id: new_request_id(), time_ms: chrono::Utc::now().timestamp_millis() };
    let event = match events::disconnect_event(ctx, code, reason, &invocation) {
        Ok((_, event)) => event,
        Err(error) => {
            tracing::error!(%error, "disconnect event has the wrong shape");
            return;
        }
    };
    let deps = gateway.deps.clone();
    // Best effort, and the answer is ignored, as in AWS.
    match tokio::spawn(async move { disconnect::handle(&deps, event).await }).await {
        Ok(Ok(_)) => tracing::info!(connection_id = %ctx.connection_id, code, reason, "disconnected"),
        Ok(Err(error)) => tracing::warn!(connection_id = %ctx.connection_id, %error, "$disconnect failed"),
        Err(join) => tracing::error!(connection_id = %ctx.connection_id, error = %join, "$disconnect panicked"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::{SinkExt, StreamExt};
    use shared::config::Config;
    use shared::handlers::Deps;
    use shared::store::sqlite::SqliteStore;
    use shared::timer::OnTouchTimer;
    use tokio::io::DuplexStream;
    use tokio::sync::watch;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use crate::gateway::connections::Registry;
    use crate::gateway::sigv4::Credentials;
    use crate::gateway::{EmulationSettings, handshake};

    use super::*;

    fn context() -> (ConnectionContext, Invocation) {
        let ctx = ConnectionContext {
            api_id: "api".into(),
            stage: "local".into(),
            domain_name: "127.0.0.1".into(),
            connection_id: "conn-1==".into(),
            connected_at_ms: 0,
            source_ip: "127.0.0.1".into(),
            user_agent: None,
            authorizer: Default::default(),
        };
        (ctx, Invocation { request_id: "req-1".into(), time_ms: 0 })
    }

    #[test]
    fn a_route_response_at_the_message_limit_is_delivered_unchanged() {
        let (ctx, invocation) = context();
        let reply = "x".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(within_message_limit(reply.clone(), &ctx, &invocation), reply);
    }

    #[test]
    fn a_route_response_over_the_message_limit_becomes_the_gateway_error() {
        let (ctx, invocation) = context();
        let answer = within_message_limit("x".repeat(MAX_MESSAGE_BYTES + 1), &ctx, &invocation);
        let frame: serde_json::Value = serde_json::from_str(&answer).expect("json");
        assert_eq!(frame["message"], "Internal server error");
        assert_eq!(frame["connectionId"], "conn-1==");
        assert_eq!(frame["requestId"], "req-1");
    }

    #[test]
    fn client_protocol_errors_are_told_apart_from_the_connections_own_state() {
        assert!(is_client_protocol_error(&ProtocolError::UnmaskedFrameFromClient));
        assert!(is_client_protocol_error(&ProtocolError::NonZeroReservedBits));
        assert!(!is_client_protocol_error(&ProtocolError::ResetWithoutClosingHandshake));
        assert!(!is_client_protocol_error(&ProtocolError::ReceivedAfterClosing));
    }

    /// A session over an in-memory pipe: the harness's side runs `run`, the test holds the client's side.
    struct Pipe {
        client: WebSocketStream<DuplexStream>,
        session: tokio::task::JoinHandle<()>,
        _shutdown: watch::Sender<bool>,
    }

    async fn pipe(idle_timeout: Duration) -> Pipe {
        let config = Config::for_tests();
        let store = Arc::new(SqliteStore::in_memory().await.expect("store"));
        let registry = Registry::default();
        let pusher = Arc::new(crate::InProcessPusher::new(registry.clone()));
        let deps = Arc::new(Deps::new(config, store, pusher, Arc::new(OnTouchTimer)));
        let settings = EmulationSettings {
            stage: "local".into(),
            idle_timeout,
            max_lifetime: shared::gateway::MAX_CONNECTION_DURATION,
            integration_timeout: shared::gateway::INTEGRATION_TIMEOUT,
            strict_order: false,
            throttling: None,
            credentials: Credentials {
                access_key_id: "a".into(),
                secret_access_key: "s".to_owned().into(),
                region: "us-east-1".into(),
            },
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (sessions, _) = tokio::sync::mpsc::channel(1);
        let gateway = Arc::new(Gateway::new(deps, registry, settings, 3001, shutdown_rx, sessions, Duration::ZERO));
        tokio::spawn(crate::gateway::expiry::run(gateway.clone()));
        let connection = Connection::for_tests(&super::super::connections::new_connection_id());
        gateway.registry.insert(connection.clone());
        let (server_io, client_io) = tokio::io::duplex(256 * 1024);
        let server = WebSocketStream::from_raw_socket(
            crate::gateway::duplex::Outlet::new(server_io),
            Role::Server,
            Some(handshake::socket_config()),
        )
        .await;
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let session = tokio::spawn(run(gateway, connection, server, None));
        Pipe { client, session, _shutdown: shutdown }
    }

    /// The close frame the harness sends, read from the client's side (a liveness guard of 5 s, never reached when
    /// the rule holds).
    async fn close_code(client: &mut WebSocketStream<DuplexStream>) -> Option<u16> {
        let read = async {
            while let Some(Ok(message)) = client.next().await {
                if let Message::Close(frame) = message {
                    return frame.map(|f| u16::from(f.code));
                }
            }
            None
        };
        timeout(Duration::from_secs(5), read).await.expect("a close within 5 s")
    }

    #[tokio::test]
    async fn a_ping_is_answered_with_the_mock_routes_static_pong_whatever_it_carries() {
        let mut pipe = pipe(Duration::from_secs(600)).await;

        pipe.client.send(Message::text(r#"{"action":"ping","id":"p1","data":{"x":1}}"#)).await.expect("send");

        let answer = timeout(Duration::from_secs(5), pipe.client.next()).await.expect("an answer within 5 s");
        match answer {
            Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), PING_ROUTE_RESPONSE),
            other => panic!("expected the pong, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_binary_message_closes_with_1003_and_ends_the_session() {
        let mut pipe = pipe(Duration::from_secs(600)).await;

        pipe.client.send(Message::Binary(vec![1, 2, 3].into())).await.expect("send");

        assert_eq!(close_code(&mut pipe.client).await, Some(1003));
        pipe.session.await.expect("the session ends");
    }

    #[tokio::test]
    async fn a_client_close_is_answered_with_the_same_code() {
        let mut pipe = pipe(Duration::from_secs(600)).await;

        let frame = CloseFrame { code: CloseCode::from(4000), reason: "bye".into() };
        pipe.client.send(Message::Close(Some(frame))).await.expect("send");

        assert_eq!(close_code(&mut pipe.client).await, Some(4000));
        pipe.session.await.expect("the session ends");
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_with_1001_at_the_idle_timeout() {
        let mut pipe = pipe(Duration::from_millis(100)).await;

        assert_eq!(close_code(&mut pipe.client).await, Some(1001));
        pipe.session.await.expect("the session ends");
    }
}
