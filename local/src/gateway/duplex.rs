//! Both directions of one socket, driven by the connection's one task: reading client frames, and writing what the
//! outbound queue holds (route responses and `@connections` posts) and the close frame.
//!
//! Writing is not a task of its own. Every time the session polls for the next client frame, [`Duplex`] first moves
//! its writes as far as the socket allows: it takes queued messages, hands their frames to tungstenite, and flushes
//! once the queue has nothing more ready, so a burst to one connection leaves in as few writes as fit tungstenite's
//! 32 KiB buffer. A client that stops reading only stops this connection's writes: the session still reads, times
//! out and closes. An idle connection therefore holds one task, not two, and no lock between two halves of the
//! socket.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use shared::gateway::MAX_FRAME_BYTES;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::connections::{Connection, Outbound};
use super::session::Socket;

/// One socket and its outbound queue.
pub(crate) struct Duplex<S> {
    socket: S,
    queue: flume::r#async::RecvStream<'static, Outbound>,
    /// Refreshes the idle timer and `lastActiveAt` as each message is taken for writing.
    connection: Arc<Connection>,
    /// The frames of the message being written: one, or several for a message above 32 KiB.
    frames: Frames,
    /// The close frame asked for, sent once every message queued before it is out.
    close_frame: Option<CloseFrame>,
    /// Frames were handed to tungstenite since the last flush.
    unflushed: bool,
    writes: Writes,
}

/// Where the write direction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Writing whatever the queue holds.
    Open,
    /// A close frame is to follow what the queue still holds: posts that `@connections` accepted are delivered
    /// before the close, as API Gateway delivers them.
    Closing,
    /// The close frame was handed over; only flushing is left.
    CloseSent,
    /// A write failed: the socket is broken, and the read direction will see it end.
    Failed,
}

impl<S: Socket> Duplex<S> {
    pub(crate) fn new(socket: S, queue: flume::Receiver<Outbound>, connection: Arc<Connection>) -> Self {
        Self {
            socket,
            queue: queue.into_stream(),
            connection,
            frames: Frames::None,
            close_frame: None,
            unflushed: false,
            writes: Writes::Open,
        }
    }

    /// The next client frame, or `None` when the stream ended; writes move on while it waits. With `read` false it
    /// only moves writes on and never returns: for a session that must not take more frames for now, while the
    /// route responses it waits for still have to go out.
    pub(crate) async fn next(&mut self, read: bool) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| {
            self.poll_writes(cx);
            if read { self.socket.poll_next_unpin(cx) } else { Poll::Pending }
        })
        .await
    }

    /// Sends `frame` once the messages queued so far are out; nothing is written after it. The frame leaves as the
    /// session goes on polling: [`Self::next`] or [`Self::flush_close`].
    pub(crate) fn close(&mut self, frame: CloseFrame) {
        if self.writes == Writes::Open {
            self.writes = Writes::Closing;
            self.close_frame = Some(frame);
        }
    }

    /// Waits until the close frame is flushed, or the write direction failed.
    pub(crate) async fn flush_close(&mut self) {
        poll_fn(|cx| {
            self.poll_writes(cx);
            match (self.writes, self.unflushed) {
                (Writes::Failed, _) | (Writes::CloseSent, false) => Poll::Ready(()),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// Hands frames to tungstenite while it takes them, then flushes; registers the waker of whatever it waits on.
    fn poll_writes(&mut self, cx: &mut Context<'_>) {
        loop {
            if self.writes == Writes::Failed {
                return;
            }
            if self.frames.is_empty() && matches!(self.writes, Writes::Open | Writes::Closing) {
                match self.queue.poll_next_unpin(cx) {
                    Poll::Ready(Some(message)) => {
                        self.connection.touch();
                        self.frames = Frames::of(message);
                    }
                    // Nothing queued (the queue cannot end while the connection holds its sender): the close frame's
                    // turn, if one was asked for.
                    Poll::Ready(None) | Poll::Pending => {
                        if let Some(frame) = self.close_frame.take() {
                            self.frames = Frames::Whole(Message::Close(Some(frame)));
                        }
                    }
                }
            }
            if !self.frames.is_empty() {
                match self.socket.poll_ready_unpin(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return self.fail(error),
                    Poll::Pending => return,
                }
                let Some(frame) = self.frames.next() else { continue };
                let is_close = matches!(frame, Message::Close(_));
                if let Err(error) = self.socket.start_send_unpin(frame) {
                    return self.fail(error);
                }
                if is_close {
                    self.writes = Writes::CloseSent;
                }
                self.unflushed = true;
                continue;
            }
            if self.unflushed {
                match self.socket.poll_flush_unpin(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = false,
                    Poll::Ready(Err(error)) => self.fail(error),
                    Poll::Pending => {}
                }
            }
            return;
        }
    }

    fn fail(&mut self, error: WsError) {
        // The read direction decides how the connection ends; the queue fills and posts answer 429 meanwhile.
        tracing::debug!(%error, "write failed");
        self.writes = Writes::Failed;
        self.frames = Frames::None;
    }
}

/// The frames of one outbound message, handed out one by one.
#[derive(Debug)]
enum Frames {
    None,
    /// A message that fits one frame (API Gateway sends messages of up to 32 KiB whole), or the close frame.
    Whole(Message),
    /// A message above 32 KiB, split into continuation frames of 32 KiB as API Gateway does.
    Split {
        bytes: Bytes,
        first: Data,
        sent: usize,
    },
}

impl Frames {
    fn of(message: Outbound) -> Self {
        match message {
            Outbound::Text(text) if text.len() <= MAX_FRAME_BYTES => Frames::Whole(Message::Text(text)),
            Outbound::Binary(data) if data.len() <= MAX_FRAME_BYTES => Frames::Whole(Message::Binary(data)),
            Outbound::Text(text) => Frames::Split { bytes: Bytes::from(text), first: Data::Text, sent: 0 },
            Outbound::Binary(data) => Frames::Split { bytes: data, first: Data::Binary, sent: 0 },
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Frames::None)
    }
}

impl Iterator for Frames {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        match std::mem::replace(self, Frames::None) {
            Frames::None => None,
            Frames::Whole(message) => Some(message),
            Frames::Split { bytes, first, sent } => {
                let start = sent * MAX_FRAME_BYTES;
                let end = (start + MAX_FRAME_BYTES).min(bytes.len());
                let opcode = if sent == 0 { OpCode::Data(first) } else { OpCode::Data(Data::Continue) };
                let is_final = end == bytes.len();
                let frame = Frame::message(bytes.slice(start..end), opcode, is_final);
                if !is_final {
                    *self = Frames::Split { bytes, first, sent: sent + 1 };
                }
                Some(Message::Frame(frame))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::DuplexStream;
    use tokio::time::timeout;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    fn shapes(frames: Frames) -> Vec<(OpCode, bool, usize)> {
        frames
            .map(|message| match message {
                Message::Frame(frame) => (frame.header().opcode, frame.header().is_final, frame.len()),
                Message::Text(text) => (OpCode::Data(Data::Text), true, text.len()),
                Message::Binary(data) => (OpCode::Data(Data::Binary), true, data.len()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn messages_up_to_32_kib_go_out_whole_and_longer_ones_in_continuation_frames() {
        let whole = shapes(Frames::of(Outbound::Text("x".repeat(MAX_FRAME_BYTES).into())));
        assert_eq!(whole, [(OpCode::Data(Data::Text), true, MAX_FRAME_BYTES)]);

        let split = shapes(Frames::of(Outbound::Binary(vec![0xff; MAX_FRAME_BYTES * 2 + 1].into())));
        let kinds: Vec<(OpCode, bool)> = split.iter().map(|(op, fin, _)| (*op, *fin)).collect();
        assert_eq!(
            kinds,
            [
                (OpCode::Data(Data::Binary), false),
                (OpCode::Data(Data::Continue), false),
                (OpCode::Data(Data::Continue), true)
            ]
        );
        assert!(split.iter().all(|(_, _, len)| *len <= MAX_FRAME_BYTES + 14), "{split:?}");
    }

    /// A duplex over an in-memory pipe, with the test holding the client's side and the queue's sender.
    async fn pipe() -> (Duplex<WebSocketStream<DuplexStream>>, WebSocketStream<DuplexStream>, Arc<Connection>) {
        let (connection, ends) = Connection::new("gbf_-C9vMQAYKEiZoA==".into(), 1, "127.0.0.1".into(), None);
        let (server_io, client_io) = tokio::io::duplex(256 * 1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        (Duplex::new(server, ends.outbound, connection.clone()), client, connection)
    }

    #[tokio::test]
    async fn messages_queued_before_a_close_are_delivered_before_the_close_frame() {
        let (mut duplex, mut client, connection) = pipe().await;
        connection.queue(Outbound::Text("first".into())).expect("queued");
        connection.queue(Outbound::Text("second".into())).expect("queued");

        duplex.close(CloseFrame { code: CloseCode::Away, reason: "Going away".into() });
        timeout(Duration::from_secs(5), duplex.flush_close()).await.expect("the close is flushed within 5 s");

        let mut received = Vec::new();
        while let Ok(Some(Ok(message))) = timeout(Duration::from_secs(5), client.next()).await {
            let is_close = matches!(message, Message::Close(_));
            received.push(message);
            if is_close {
                break;
            }
        }
        assert_eq!(
            received,
            [
                Message::Text("first".into()),
                Message::Text("second".into()),
                Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "Going away".into() }))
            ]
        );
    }

    #[tokio::test]
    async fn a_burst_to_one_connection_arrives_whole_and_in_order() {
        let (mut duplex, mut client, connection) = pipe().await;
        let sent: Vec<String> = (0..50).map(|n| format!("message {n}")).collect();
        for text in &sent {
            connection.queue(Outbound::Text(text.clone().into())).expect("queued");
        }
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            while received.len() < 50 {
                match timeout(Duration::from_secs(5), client.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => received.push(text.to_string()),
                    other => panic!("expected a text message, got {other:?}"),
                }
            }
            received
        });

        // Without reading, the duplex only moves the writes on, and never returns.
        let received = tokio::select! {
            received = reader => received.expect("the reader"),
            frame = duplex.next(false) => panic!("a duplex that does not read returned {frame:?}"),
        };

        assert_eq!(received, sent);
    }
}
