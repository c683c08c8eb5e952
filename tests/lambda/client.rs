//! A real WebSocket client of the harness, with a timeout on every receive. Frames that arrive while waiting for
//! something else are kept for later calls.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a receive waits before the test fails: generous, because CI machines are slow.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buffered: VecDeque<Value>,
    next_id: u64,
}

impl WsClient {
    pub(crate) async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("handshake did not finish within {RECV_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("handshake refused: {e}"));
        Self { ws, buffered: VecDeque::new(), next_id: 0 }
    }

    /// Sends `{"action", "id", "data"}` and returns the ack with that id; events seen meanwhile are kept.
    pub(crate) async fn request(&mut self, action: &str, data: Value) -> Value {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        let frame = json!({"action": action, "id": id, "data": data}).to_string();
        self.ws.send(Message::text(frame)).await.expect("send a frame");
        self.next_matching(&format!("the ack of {action}"), |frame| frame["type"] == "ack" && frame["id"] == id).await
    }

    /// The next `event` frame named `name`, skipping (and keeping) others.
    pub(crate) async fn next_event(&mut self, name: &str) -> Value {
        self.next_matching(&format!("a {name} event"), |frame| frame["type"] == "event" && frame["event"] == name).await
    }

    async fn next_matching(&mut self, what: &str, is_it: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.buffered.iter().position(&is_it) {
            return self.buffered.remove(at).unwrap_or(Value::Null);
        }
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {RECV_TIMEOUT:?}; seen {:?}", self.buffered));
            let frame = match next {
                Some(Ok(Message::Text(text))) => {
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("waiting for {what}, the socket gave {other:?}"),
            };
            if is_it(&frame) {
                return frame;
            }
            self.buffered.push_back(frame);
        }
    }
}
