//! Both directions of one socket, driven by the connection's one task: reading client frames, and writing what the
//! outbound queue holds (route responses and `@connections` posts) and the close frame.
//!
//! Writing is not a task of its own. Every time the session polls for the next client frame, [`Duplex`] first moves
//! its writes as far as the socket allows: it takes queued messages, frames them into the socket's [`Outlet`], and
//! writes the outlet out once the queue has nothing more ready, so a burst to one connection leaves in as few writes
//! as fit [`WRITE_AHEAD`]. A client that stops reading only stops this connection's writes: the session still reads,
//! times out and closes. An idle connection therefore holds one task, not two, and no lock between two halves of
//! the socket.
//!
//! Data frames bypass tungstenite's writer, which keeps the capacity of the largest burst it ever wrote and offers
//! no way to release it (about 0.9 KB in every idle connection that was once answered). The outlet frees its
//! buffer each time it is written out. tungstenite still reads, and writes its own control frames (pongs, the
//! close frame and the reply to the client's) through the same outlet, so every frame goes out whole and in order.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use shared::gateway::MAX_FRAME_BYTES;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::connections::{Connection, Outbound};

/// What a connection's WebSocket runs over: TCP through hyper's upgrade in the harness, an in-memory pipe in tests.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T> Transport for T where T: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

/// A connection's WebSocket: tungstenite reads frames from the transport and writes its control frames into the
/// outlet in front of it.
pub(crate) type Socket<T> = WebSocketStream<Outlet<T>>;

/// Bytes framed and not yet written beyond which the duplex takes no more messages from the queue (and tungstenite's
/// own writes wait): a client that stops reading holds at most this much here besides its queue.
const WRITE_AHEAD: usize = MAX_FRAME_BYTES;

/// The transport with the frames waiting to be written to it. The buffer is freed whenever it has all been
/// written, so an idle connection holds none.
pub(crate) struct Outlet<T> {
    transport: T,
    pending: Vec<u8>,
}

impl<T: Transport> Outlet<T> {
    pub(crate) fn new(transport: T) -> Self {
        Self { transport, pending: Vec::new() }
    }

    /// Frames one data frame behind what is waiting. Writing into a `Vec` cannot fail; the error is tungstenite's
    /// signature.
    fn push(&mut self, frame: Frame) -> Result<(), WsError> {
        frame.format(&mut self.pending)
    }

    fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Writes what is waiting until nothing is left or the transport is full, then flushes the transport.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.transport).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if written == self.pending.len() {
                // Released rather than kept for the next burst: see the module's documentation.
                self.pending = Vec::new();
            } else {
                self.pending.drain(..written);
            }
        }
        Pin::new(&mut self.transport).poll_flush(cx)
    }
}

impl<T: Transport> AsyncRead for Outlet<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.transport).poll_read(cx, buf)
    }
}

/// tungstenite's writes: its control frames, taken whole behind the data frames already waiting.
impl<T: Transport> AsyncWrite for Outlet<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.waiting() >= WRITE_AHEAD {
            ready!(self.poll_write_out(cx))?;
        }
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_out(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(cx))?;
        Pin::new(&mut self.transport).poll_shutdown(cx)
    }
}

/// One socket and its outbound queue.
pub(crate) struct Duplex<T> {
    socket: Socket<T>,
    /// Whose outbound queue this duplex writes; taking a message refreshes its idle timer and `lastActiveAt`.
    connection: Arc<Connection>,
    /// What is left to write of the message taken from the queue.
    frames: Frames,
    /// The close frame asked for, sent once every message queued before it is out.
    close_frame: Option<CloseFrame>,
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
    /// The close frame was handed to tungstenite; flushing it is left.
    CloseSent,
    /// The close frame is written: nothing more will be.
    Closed,
    /// A write failed: the socket is broken, and the read direction will see it end.
    Failed,
}

impl<T: Transport> Duplex<T> {
    pub(crate) fn new(socket: Socket<T>, connection: Arc<Connection>) -> Self {
        Self { socket, connection, frames: Frames::None, close_frame: None, writes: Writes::Open }
    }

    /// The next client frame, or `None` when the stream ended; writes move on while it waits. With `read` false it
    /// only moves writes on and never returns: for a session that must not take more frames for now, while the
    /// route responses it waits for still have to go out.
    pub(crate) async fn next(&mut self, read: bool) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| {
            self.poll_writes(cx);
            if !read {
                return Poll::Pending;
            }
            match ready!(self.socket.poll_next_unpin(cx)) {
                // tungstenite's last act on a server's socket is writing its reply to the client's close frame,
                // without a flush (it expects its writes to reach the transport directly). The stream answers
                // `None` again when polled after the reply is written out.
                None if self.socket.get_ref().waiting() > 0 => self.poll_write_out(cx).map(|_| None),
                frame => Poll::Ready(frame),
            }
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

    /// Waits until the close frame is written, or the write direction failed.
    pub(crate) async fn flush_close(&mut self) {
        poll_fn(|cx| {
            self.poll_writes(cx);
            if matches!(self.writes, Writes::Closed | Writes::Failed) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }

    /// Frames queued messages into the outlet while it has room, then writes it out; registers the waker of
    /// whatever it waits on.
    fn poll_writes(&mut self, cx: &mut Context<'_>) {
        loop {
            match self.writes {
                Writes::Open | Writes::Closing => {}
                Writes::CloseSent => {
                    // tungstenite's flush writes whatever of the close frame it still holds into the outlet; the
                    // outlet's write-out sends it.
                    match self.poll_flush_close(cx) {
                        Poll::Ready(Ok(())) => self.writes = Writes::Closed,
                        Poll::Ready(Err(error)) => self.fail(error),
                        Poll::Pending => {}
                    }
                    return;
                }
                Writes::Closed | Writes::Failed => return,
            }
            if self.socket.get_ref().waiting() >= WRITE_AHEAD {
                match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return self.fail(error),
                    Poll::Pending => return,
                }
            }
            if let Some(frame) = self.frames.next() {
                if let Err(error) = self.socket.get_mut().push(frame) {
                    return self.fail(error);
                }
                continue;
            }
            if let Poll::Ready(message) = self.connection.poll_outbound(cx) {
                self.connection.touch();
                self.frames = Frames::of(message);
                continue;
            }
            if let Some(frame) = self.close_frame.take() {
                // Sent by tungstenite rather than framed here, so that it knows the closing handshake has begun.
                match self.socket.poll_ready_unpin(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return self.fail(error),
                    Poll::Pending => {
                        self.close_frame = Some(frame);
                        return;
                    }
                }
                if let Err(error) = self.socket.start_send_unpin(Message::Close(Some(frame))) {
                    return self.fail(error);
                }
                self.writes = Writes::CloseSent;
                continue;
            }
            if self.socket.get_ref().waiting() > 0
                && let Poll::Ready(Err(error)) = self.poll_write_out(cx)
            {
                self.fail(error);
            }
            return;
        }
    }

    fn poll_flush_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        ready!(self.socket.poll_flush_unpin(cx))?;
        self.poll_write_out(cx)
    }

    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.socket.get_mut().poll_write_out(cx).map_err(WsError::Io)
    }

    fn fail(&mut self, error: WsError) {
        // The read direction decides how the connection ends; the queue fills and posts answer 429 meanwhile.
        tracing::debug!(%error, "write failed");
        self.writes = Writes::Failed;
        self.frames = Frames::None;
    }
}

/// The socket closes with the duplex, and nothing will write what is still queued: posts answer Gone from now on, and
/// route responses waiting for room stop waiting.
impl<T> Drop for Duplex<T> {
    fn drop(&mut self) {
        self.connection.close_outbox();
    }
}

/// What is left to write of one outbound message: API Gateway sends a message of up to 32 KiB in one frame, and a
/// longer one as continuation frames of 32 KiB.
#[derive(Debug)]
enum Frames {
    None,
    Data { bytes: Bytes, first: Data, sent: usize },
}

impl Frames {
    fn of(message: Outbound) -> Self {
        match message {
            Outbound::Text(text) => Frames::Data { bytes: Bytes::from(text), first: Data::Text, sent: 0 },
            Outbound::Binary(data) => Frames::Data { bytes: data, first: Data::Binary, sent: 0 },
        }
    }
}

impl Iterator for Frames {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let Frames::Data { bytes, first, sent } = std::mem::replace(self, Frames::None) else { return None };
        let start = sent * MAX_FRAME_BYTES;
        let end = (start + MAX_FRAME_BYTES).min(bytes.len());
        let opcode = if sent == 0 { OpCode::Data(first) } else { OpCode::Data(Data::Continue) };
        let is_final = end == bytes.len();
        let frame = Frame::message(bytes.slice(start..end), opcode, is_final);
        if !is_final {
            *self = Frames::Data { bytes, first, sent: sent + 1 };
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::DuplexStream;
    use tokio::time::timeout;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;
    use crate::gateway::handshake;

    fn shapes(frames: Frames) -> Vec<(OpCode, bool, usize)> {
        frames.map(|frame| (frame.header().opcode, frame.header().is_final, frame.len())).collect()
    }

    #[test]
    fn messages_up_to_32_kib_go_out_whole_and_longer_ones_in_continuation_frames() {
        let whole = shapes(Frames::of(Outbound::Text("x".repeat(MAX_FRAME_BYTES).into())));
        assert_eq!(whole, [(OpCode::Data(Data::Text), true, MAX_FRAME_BYTES + 4)]);

        let empty = shapes(Frames::of(Outbound::Text("".into())));
        assert_eq!(empty, [(OpCode::Data(Data::Text), true, 2)]);

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
    async fn pipe() -> (Duplex<DuplexStream>, WebSocketStream<DuplexStream>, Arc<Connection>) {
        let connection = Connection::for_tests("gbf_-C9vMQAYKEiZoA==");
        let (server_io, client_io) = tokio::io::duplex(256 * 1024);
        let server =
            WebSocketStream::from_raw_socket(Outlet::new(server_io), Role::Server, Some(handshake::socket_config()))
                .await;
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        (Duplex::new(server, connection.clone()), client, connection)
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
        assert_eq!(duplex.socket.get_ref().pending.capacity(), 0, "the outlet's buffer is freed once written out");
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_transport_takes_at_once_arrives_whole_and_in_order() {
        // A pipe of 1 KiB: every message below is larger, so each write is partial and the outlet must keep the
        // rest, in order, until the client reads.
        let connection = Connection::for_tests("gbf_-C9vMQAYKEiZoB==");
        let (server_io, client_io) = tokio::io::duplex(1024);
        let server =
            WebSocketStream::from_raw_socket(Outlet::new(server_io), Role::Server, Some(handshake::socket_config()))
                .await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let mut duplex = Duplex::new(server, connection.clone());
        let sent: Vec<String> = (0..20).map(|n| format!("{n:04}").repeat(1500)).collect();
        for text in &sent {
            connection.queue(Outbound::Text(text.clone().into())).expect("queued");
        }

        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            while received.len() < sent.len() {
                match timeout(Duration::from_secs(5), client.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => received.push(text.to_string()),
                    other => panic!("expected a text message, got {other:?}"),
                }
            }
            (received, sent)
        });
        let (received, sent) = tokio::select! {
            received = reader => received.expect("the reader"),
            frame = duplex.next(false) => panic!("a duplex that does not read returned {frame:?}"),
        };

        assert_eq!(received, sent);
    }
}
