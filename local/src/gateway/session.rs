//! One open socket: reads client frames into MESSAGE events, writes queued messages (fragmented above 32 KiB),
//! enforces API Gateway's limits and timeouts, and runs `$disconnect` exactly once when the socket ends.
//!
//! Three tasks per connection: this reader loop (which also owns the timers and the close decision), a writer that
//! drains the outbound queue, and an invoker that runs `$default` for each message in arrival order. Sequential
//! invocation is stricter than AWS (which may run a connection's messages concurrently) but keeps local runs and
//! tests deterministic; route responses still travel through the same queue as posts.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::json;
use shared::handlers::{disconnect, message};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Gateway;
use super::connections::{CloseCause, Connection, ConnectionEnds, new_message_id, new_request_id};
use super::events::{self, ConnectionContext, Invocation};
use super::handshake::MAX_FRAME_BYTES;
use super::routes::{DEFAULT_ROUTE, select_route};

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Route keys of the emulated API: Bellhop deploys only `$default` (with a `$default` route response).
const ROUTES: [&str; 1] = [DEFAULT_ROUTE];
/// API Gateway's integration timeout.
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);
/// How long to wait for the client's half of a close handshake before dropping the TCP connection.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How the socket ended, as `$disconnect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ended {
    code: u16,
    reason: String,
}

pub(crate) async fn run(
    gateway: Arc<Gateway>,
    connection: Arc<Connection>,
    ends: ConnectionEnds,
    socket: Socket,
    ctx: ConnectionContext,
) {
    let ConnectionEnds { outbound, close: mut close_requests } = ends;
    let (sink, mut stream) = socket.split();
    let (close_tx, close_rx) = oneshot::channel::<CloseFrame>();
    let writer = tokio::spawn(write_loop(sink, outbound, close_rx, connection.clone()));
    let (inbox_tx, inbox_rx) = mpsc::channel::<String>(64);
    let invoker = tokio::spawn(invoke_loop(gateway.clone(), connection.clone(), ctx.clone(), inbox_rx));
    let mut shutdown = gateway.shutdown.clone();
    let lifetime_deadline = Instant::now() + gateway.max_lifetime;

    let ended = loop {
        let idle_deadline = connection.last_data() + gateway.idle_timeout;
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    connection.touch();
                    if inbox_tx.send(text.to_string()).await.is_err() {
                        tracing::warn!("message invoker stopped early");
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    // AWS closes instead of invoking any route: binary frames never reach Lambda.
                    break server_close(close_tx, &mut stream, CloseCause::binary(), true).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let ended = match frame {
                        Some(frame) => Ended { code: frame.code.into(), reason: frame.reason.to_string() },
                        None => Ended { code: 1005, reason: "Client-side close frame status not set".into() },
                    };
                    // tungstenite has queued the echo of the client's close frame; reading on flushes it.
                    drain(&mut stream).await;
                    drop(close_tx);
                    break ended;
                }
                Some(Err(WsError::Capacity(error))) => {
                    // tungstenite refuses the oversized frame or message but sends nothing; AWS answers 1009.
                    tracing::info!(%error, "closing oversized message");
                    break server_close(close_tx, &mut stream, CloseCause::too_big(), false).await;
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "socket error");
                    drop(close_tx);
                    break Ended { code: 1006, reason: "Connection closed abnormally".into() };
                }
                None => {
                    drop(close_tx);
                    break Ended { code: 1006, reason: "Connection closed abnormally".into() };
                }
            },
            _ = sleep_until(idle_deadline) => {
                if connection.last_data() + gateway.idle_timeout <= Instant::now() {
                    tracing::info!("idle timeout");
                    break server_close(close_tx, &mut stream, CloseCause::going_away(), true).await;
                }
            }
            _ = sleep_until(lifetime_deadline) => {
                tracing::info!("maximum connection duration reached");
                break server_close(close_tx, &mut stream, CloseCause::going_away(), true).await;
            }
            Ok(()) = close_requests.changed() => {
                let cause = close_requests.borrow_and_update().clone();
                if let Some(cause) = cause {
                    break server_close(close_tx, &mut stream, cause, true).await;
                }
            }
            Ok(()) = shutdown.changed() => {
                if *shutdown.borrow() {
                    break server_close(close_tx, &mut stream, CloseCause::shutdown(), true).await;
                }
            }
        }
    };

    // Gone for the management API from now on, before `$disconnect` runs, as in AWS.
    gateway.registry.remove(&connection.id);
    drop(inbox_tx);
    // Messages already received still run before `$disconnect`, so a late handler cannot re-create state the
    // disconnect just removed.
    if let Err(error) = invoker.await {
        tracing::error!(%error, "message invoker panicked");
    }
    writer.abort();
    run_disconnect(&gateway, &ctx, ended.code, &ended.reason).await;
}

/// `$disconnect` for a connection whose `$connect` succeeded but whose upgrade never completed: the handler still
/// needs to hear that the connection is gone.
pub(crate) async fn abandon(gateway: &Arc<Gateway>, ctx: &ConnectionContext) {
    gateway.registry.remove(&ctx.connection_id);
    run_disconnect(gateway, ctx, 1006, "Connection closed abnormally").await;
}

/// Sends our close frame through the writer, waits briefly for the client's reply, and reports the cause.
async fn server_close(
    tx: oneshot::Sender<CloseFrame>,
    stream: &mut SplitStream<Socket>,
    cause: CloseCause,
    await_reply: bool,
) -> Ended {
    let frame = CloseFrame { code: CloseCode::from(cause.code), reason: cause.frame_reason.clone().into() };
    // The writer may already have stopped after a failed write; then there is nobody left to tell.
    let _ = tx.send(frame);
    if await_reply {
        drain(stream).await;
    } else {
        // After a capacity error the read side is mid-frame; give the writer a moment to flush the close instead.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ended { code: cause.code, reason: cause.disconnect_reason }
}

/// Reads until the close handshake completes (or the grace period ends), discarding anything else: frames that
/// arrive after a close never reach Lambda.
async fn drain(stream: &mut SplitStream<Socket>) {
    let _ = timeout(CLOSE_GRACE, async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                // One more read flushes any queued reply and observes the end of the stream.
                let _ = timeout(Duration::from_millis(200), stream.next()).await;
                break;
            }
        }
    })
    .await;
}

async fn write_loop(
    mut sink: SplitSink<Socket, Message>,
    mut outbound: mpsc::Receiver<String>,
    mut close: oneshot::Receiver<CloseFrame>,
    connection: Arc<Connection>,
) {
    loop {
        tokio::select! {
            biased;
            frame = &mut close => {
                if let Ok(frame) = frame {
                    let _ = sink.send(Message::Close(Some(frame))).await;
                }
                return;
            }
            text = outbound.recv() => {
                let Some(text) = text else { return };
                connection.touch();
                if let Err(error) = write_text(&mut sink, text).await {
                    tracing::debug!(%error, "write failed");
                    // Keep waiting for the close signal: the reader decides how the connection ends.
                    let _ = close.await;
                    return;
                }
            }
        }
    }
}

/// Writes one text message, split into continuation frames of at most 32 KiB as API Gateway does.
async fn write_text(sink: &mut SplitSink<Socket, Message>, text: String) -> Result<(), WsError> {
    if text.len() <= MAX_FRAME_BYTES {
        return sink.send(Message::text(text)).await;
    }
    let bytes = bytes::Bytes::from(text);
    let n_chunks = bytes.len().div_ceil(MAX_FRAME_BYTES);
    for i in 0..n_chunks {
        let chunk = bytes.slice(i * MAX_FRAME_BYTES..((i + 1) * MAX_FRAME_BYTES).min(bytes.len()));
        let opcode = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        sink.feed(Message::Frame(Frame::message(chunk, opcode, i + 1 == n_chunks))).await?;
    }
    sink.flush().await
}

/// Runs `$default` for each received message, in order, and sends the route response back.
async fn invoke_loop(
    gateway: Arc<Gateway>,
    connection: Arc<Connection>,
    ctx: ConnectionContext,
    mut inbox: mpsc::Receiver<String>,
) {
    while let Some(body) = inbox.recv().await {
        let route_key = select_route(&body, &ROUTES);
        let invocation = Invocation { request_id: new_request_id(), time_ms: chrono::Utc::now().timestamp_millis() };
        let message_id = new_message_id();
        let reply = match events::message_event(&ctx, route_key, &message_id, &body, &invocation) {
            Ok((_, event)) => {
                let deps = gateway.deps.clone();
                let call = tokio::spawn(async move { message::handle(&deps, event).await });
                match timeout(INTEGRATION_TIMEOUT, call).await {
                    // The `$default` route response sends the body, whatever the status code.
                    Ok(Ok(Ok(response))) => events::body_text(response.body),
                    Ok(Ok(Err(error))) => {
                        tracing::error!(%error, "$default failed");
                        Some(gateway_error("Internal server error", &ctx, &invocation))
                    }
                    Ok(Err(join)) => {
                        tracing::error!(error = %join, "$default panicked");
                        Some(gateway_error("Internal server error", &ctx, &invocation))
                    }
                    Err(_) => Some(gateway_error("Endpoint request timed out", &ctx, &invocation)),
                }
            }
            Err(error) => {
                tracing::error!(%error, "message event has the wrong shape");
                Some(gateway_error("Internal server error", &ctx, &invocation))
            }
        };
        if let Some(reply) = reply {
            let _ = connection.queue_waiting(reply).await;
        }
    }
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
