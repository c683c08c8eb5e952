//! The registry of open connections: what API Gateway remembers per connection (connectedAt, identity, authorizer
//! context, lastActiveAt) and the handle used to write to or close its socket.
//!
//! A connection is in the registry only between a successful `$connect` and the moment its socket closes, so
//! `@connections` answers Gone before (during `$connect`) and after, exactly as AWS does. The registry owns no
//! sockets: each connection's task does, and the registry only holds its outbound queue and close signal.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::events::ConnectionContext;

/// Messages waiting for a slow client before posts start answering 429, as AWS does when "the WebSocket client side
/// buffer is full".
pub(crate) const OUTBOUND_QUEUE: usize = 256;

/// Why the harness closes a connection: the close frame it sends and what `$disconnect` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseCause {
    pub(crate) code: u16,
    /// The reason in the close frame sent to the client.
    pub(crate) frame_reason: String,
    /// The reason `$disconnect` reports.
    pub(crate) disconnect_reason: String,
}

impl CloseCause {
    /// `DeleteConnection`: close 1000 and `$disconnect` reason "Connection Closed Normally" (§4).
    pub(crate) fn deleted() -> Self {
        Self { code: 1000, frame_reason: String::new(), disconnect_reason: "Connection Closed Normally".into() }
    }

    /// Idle timeout and maximum lifetime. AWS's code is unverified; serverless-offline's 1001 is the likeliest.
    pub(crate) fn going_away() -> Self {
        Self::same(1001, "Going away")
    }

    pub(crate) fn binary() -> Self {
        Self::same(1003, "Binary is not supported")
    }

    pub(crate) fn too_big() -> Self {
        Self::same(1009, "Message too big")
    }

    /// A text message that is not UTF-8 (RFC 6455 §8.1).
    pub(crate) fn invalid_payload() -> Self {
        Self::same(1007, "Invalid frame payload data")
    }

    /// A frame that breaks the protocol: unmasked, reserved bits, unknown opcodes (RFC 6455 §5.1, §5.2).
    pub(crate) fn protocol_error() -> Self {
        Self::same(1002, "Protocol error")
    }

    pub(crate) fn shutdown() -> Self {
        Self::same(1001, "Going away")
    }

    fn same(code: u16, reason: &str) -> Self {
        Self { code, frame_reason: reason.into(), disconnect_reason: reason.into() }
    }
}

/// One message waiting to be written to a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// A text message: route responses, gateway error frames, and posts whose data is valid UTF-8. It shares the
    /// post's buffer: a fan-out hands every recipient the same bytes, and none of them is copied until the socket
    /// write frames it.
    Text(Utf8Bytes),
    /// A binary message: a post whose data is not valid UTF-8, which API Gateway delivers byte for byte in binary
    /// frames rather than altering it.
    Binary(bytes::Bytes),
}

impl Outbound {
    /// The message API Gateway sends for `PostToConnection` data: text when the bytes are UTF-8, binary otherwise.
    pub(crate) fn from_post(data: bytes::Bytes) -> Self {
        // Cloning `Bytes` only counts a reference; the check reads the bytes without copying them.
        match Utf8Bytes::try_from(data.clone()) {
            Ok(text) => Outbound::Text(text),
            Err(_) => Outbound::Binary(data),
        }
    }
}

/// Why a post could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueueError {
    #[error("connection is gone")]
    Gone,
    #[error("the connection's outbound queue is full")]
    Full,
}

/// One open connection, as the management API sees it.
pub(crate) struct Connection {
    /// What API Gateway attaches to each of the connection's events, the identity `@connections` reports among it.
    pub(crate) context: Arc<ConnectionContext>,
    /// When the connection was accepted, for its maximum duration.
    pub(crate) opened: Instant,
    last_active_ms: AtomicI64,
    /// Last data frame in either direction, for the idle timeout; pings and pongs do not count.
    last_data: Mutex<Instant>,
    outbox: Outbox,
    /// Why the connection is to close, once something asked (the first cause wins), and the connection's task to
    /// wake then. Kept in the connection itself, and polled rather than awaited through a `Notify`: a watch channel
    /// would be an allocation of about 400 bytes per connection, and a `Notify`'s waiting future about 90 bytes in
    /// every idle connection's task, for a signal that fires at most once.
    close_cause: OnceLock<CloseCause>,
    close_waker: AtomicWaker,
}

/// A connection's outbound queue, bounded by [`OUTBOUND_QUEUE`] and read by the connection's task alone. It holds
/// no memory while empty: a channel (tokio's reserves a block of 32 slots up front, flume's keeps the capacity of
/// its busiest moment and a waiting receiver's hook) would cost every idle connection up to 1.3 KB.
struct Outbox {
    state: Mutex<OutboxState>,
    /// The connection's task, waiting for the next message.
    reader: AtomicWaker,
    /// Route responses waiting for room: they answer the client's own message, so they wait instead of failing.
    room: Notify,
}

#[derive(Default)]
struct OutboxState {
    messages: VecDeque<Outbound>,
    /// The socket is gone: nothing will read what is queued.
    closed: bool,
}

impl Outbox {
    fn push(&self, message: Outbound) -> Result<(), (QueueError, Outbound)> {
        let mut state = self.lock();
        if state.closed {
            return Err((QueueError::Gone, message));
        }
        if state.messages.len() >= OUTBOUND_QUEUE {
            return Err((QueueError::Full, message));
        }
        state.messages.push_back(message);
        drop(state);
        self.reader.wake();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Connection {
    pub(crate) fn new(context: Arc<ConnectionContext>) -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last_active_ms: AtomicI64::new(context.connected_at_ms),
            context,
            last_data: Mutex::new(Instant::now()),
            outbox: Outbox { state: Mutex::default(), reader: AtomicWaker::new(), room: Notify::new() },
            close_cause: OnceLock::new(),
            close_waker: AtomicWaker::new(),
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.context.connection_id
    }

    #[cfg(test)]
    pub(crate) fn for_tests(id: &str) -> Arc<Self> {
        Self::new(Arc::new(ConnectionContext::for_tests(id)))
    }

    pub(crate) fn last_active_ms(&self) -> i64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    /// Records inbound or outbound data: resets the idle timer and advances `lastActiveAt`.
    pub(crate) fn touch(&self) {
        self.last_active_ms.fetch_max(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        *self.last_data.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub(crate) fn last_data(&self) -> Instant {
        *self.last_data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one message without waiting: a full queue is the client's problem, reported as a throttle.
    pub(crate) fn queue(&self, message: Outbound) -> Result<(), QueueError> {
        self.outbox.push(message).map_err(|(error, _)| error)
    }

    /// Queues a route response or error frame, waiting for room: it answers the client's own message.
    pub(crate) async fn queue_waiting(&self, text: String) -> Result<(), QueueError> {
        let mut message = Outbound::Text(text.into());
        loop {
            // Listening before trying, so room made between the try and the wait is not missed.
            let room = self.outbox.room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            match self.outbox.push(message) {
                Ok(()) => return Ok(()),
                Err((QueueError::Full, back)) => {
                    message = back;
                    room.await;
                }
                Err((QueueError::Gone, _)) => return Err(QueueError::Gone),
            }
        }
    }

    /// The next queued message, for the connection's task; registers its waker while there is none.
    pub(crate) fn poll_outbound(&self, cx: &mut Context<'_>) -> Poll<Outbound> {
        self.outbox.reader.register(cx.waker());
        let mut state = self.outbox.lock();
        let Some(message) = state.messages.pop_front() else { return Poll::Pending };
        let had_no_room = state.messages.len() + 1 == OUTBOUND_QUEUE;
        if state.messages.is_empty() {
            // Released rather than kept for the next burst: an idle connection holds no queue.
            state.messages = VecDeque::new();
        }
        drop(state);
        if had_no_room {
            self.outbox.room.notify_waiters();
        }
        Poll::Ready(message)
    }

    /// The socket is gone: what is queued is dropped, and posts and waiting route responses learn it is Gone.
    pub(crate) fn close_outbox(&self) {
        let mut state = self.outbox.lock();
        state.closed = true;
        state.messages = VecDeque::new();
        drop(state);
        self.outbox.room.notify_waiters();
    }

    /// Asks the connection's task to close the socket. The first cause wins.
    pub(crate) fn request_close(&self, cause: CloseCause) {
        if self.close_cause.set(cause).is_ok() {
            self.close_waker.wake();
        }
    }

    /// Whether a close was requested.
    pub(crate) fn is_closing(&self) -> bool {
        self.close_cause.get().is_some()
    }

    /// Waits until a close was requested, and returns its cause. One waiter at a time: the connection's task.
    pub(crate) fn close_requested(&self) -> impl Future<Output = CloseCause> + '_ {
        std::future::poll_fn(|cx| {
            // Registered before looking, so a request made in between still wakes the task.
            self.close_waker.register(cx.waker());
            match self.close_cause.get() {
                Some(cause) => Poll::Ready(cause.clone()),
                None => Poll::Pending,
            }
        })
    }
}

/// Every open connection, by id. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    /// Looked up once per recipient of every fan-out, so it hashes with foldhash (seeded per process) rather than
    /// SipHash. The keys are ids the harness drew at random, so a client cannot choose colliding ones.
    inner: Arc<Mutex<foldhash::HashSet<ById>>>,
}

/// A registered connection, found by its own id: a map would keep a second copy of every id as its key.
struct ById(Arc<Connection>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id().hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for ById {}

impl Registry {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.lock().get(id).map(|entry| entry.0.clone())
    }

    pub(crate) fn insert(&self, connection: Arc<Connection>) {
        self.lock().replace(ById(connection));
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Connection>> {
        self.lock().take(id).map(|entry| entry.0)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Connection>> {
        self.matching(|_| true)
    }

    /// The connections `predicate` picks, without a copy of the others.
    pub(crate) fn matching(&self, predicate: impl Fn(&Connection) -> bool) -> Vec<Arc<Connection>> {
        self.lock().iter().filter(|entry| predicate(&entry.0)).map(|entry| entry.0.clone()).collect()
    }

    /// `DeleteConnection`: forgets the connection at once (later posts answer Gone) and closes its socket.
    pub(crate) fn delete(&self, id: &str) -> Result<(), QueueError> {
        let connection = self.remove(id).ok_or(QueueError::Gone)?;
        connection.request_close(CloseCause::deleted());
        Ok(())
    }

    /// `PostToConnection`: queues one message and advances `lastActiveAt`.
    pub(crate) fn post(&self, id: &str, message: Outbound) -> Result<(), QueueError> {
        let connection = self.get(id).ok_or(QueueError::Gone)?;
        connection.queue(message)?;
        connection.touch();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashSet<ById>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The alphabet of current API Gateway connection ids.
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A new connection id: 16 random characters (96 bits from the thread's CSPRNG) plus `==`, like current AWS ids.
/// Unguessable, so one client cannot address another's connection by guessing.
pub(crate) fn new_connection_id() -> String {
    random_chars(16) + "=="
}

/// A request id in AWS's shape (15 characters plus `=`).
pub(crate) fn new_request_id() -> String {
    random_chars(15) + "="
}

/// A message id, formatted like a connection id as AWS does.
pub(crate) fn new_message_id() -> String {
    new_connection_id()
}

/// Whether `id` has the shape of an API Gateway connection id (current `…==` and older `…=` formats): anything else
/// is a malformed id (400), not a gone one (410).
pub(crate) fn is_well_formed_connection_id(id: &str) -> bool {
    let base = id.trim_end_matches('=');
    let padding = id.len() - base.len();
    (1..=2).contains(&padding) && (12..=62).contains(&base.len()) && base.bytes().all(|b| ID_ALPHABET.contains(&b))
}

fn random_chars(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n).map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())])).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn connection_ids_have_the_aws_shape_and_do_not_repeat() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_connection_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert!(is_well_formed_connection_id(id), "{id}");
            assert!(shared::ids::ConnectionId::parse(id.as_str()).is_ok(), "{id}");
        }
    }

    #[test]
    fn malformed_connection_ids_are_recognised() {
        for id in ["", "abc==", "not-an-id", "gbf_-C9vMQAYKEiZo!==", "gbf_-C9vMQAYKEiZoAxx", "gbf_-C9vMQAYKEiZoA==="] {
            assert!(!is_well_formed_connection_id(id), "{id}");
        }
        for id in ["gbf_-C9vMQAYKEiZoA==", "Kf2bqd9WywMCEng=", "AAAAAAAAAAAAAAAA=="] {
            assert!(is_well_formed_connection_id(id), "{id}");
        }
    }

    #[test]
    fn post_data_is_text_when_it_is_utf8_and_binary_otherwise() {
        assert_eq!(Outbound::from_post(bytes::Bytes::from_static(b"hi")), Outbound::Text("hi".into()));
        let raw = bytes::Bytes::from_static(&[0xff, 0x00, 0xfe]);
        assert_eq!(Outbound::from_post(raw.clone()), Outbound::Binary(raw));
    }

    #[tokio::test]
    async fn delete_forgets_the_connection_and_signals_a_normal_close() {
        let registry = Registry::default();
        let connection = Connection::for_tests("gbf_-C9vMQAYKEiZoA==");
        registry.insert(connection.clone());

        registry.delete("gbf_-C9vMQAYKEiZoA==").expect("deleted");
        connection.request_close(CloseCause::going_away());

        let cause = tokio::time::timeout(std::time::Duration::from_secs(5), connection.close_requested()).await;
        assert_eq!(cause.ok(), Some(CloseCause::deleted()), "the first cause wins");
        assert_eq!(registry.post("gbf_-C9vMQAYKEiZoA==", Outbound::Text("x".into())), Err(QueueError::Gone));
        assert_eq!(registry.delete("gbf_-C9vMQAYKEiZoA=="), Err(QueueError::Gone));
    }

    #[tokio::test]
    async fn a_post_is_queued_and_advances_last_active() {
        let registry = Registry::default();
        let connection = Connection::for_tests("gbf_-C9vMQAYKEiZoA==");
        registry.insert(connection.clone());

        registry.post("gbf_-C9vMQAYKEiZoA==", Outbound::Text("hi".into())).expect("queued");

        assert_eq!(take(&connection), Some(Outbound::Text("hi".into())));
        assert!(connection.last_active_ms() > 1);
    }

    /// What the connection's task would take next, without waiting.
    fn take(connection: &Connection) -> Option<Outbound> {
        match connection.poll_outbound(&mut Context::from_waker(futures::task::noop_waker_ref())) {
            Poll::Ready(message) => Some(message),
            Poll::Pending => None,
        }
    }

    #[test]
    fn the_queue_is_bounded_keeps_order_and_holds_no_memory_once_empty() {
        let connection = Connection::for_tests("gbf_-C9vMQAYKEiZoA==");
        for n in 0..OUTBOUND_QUEUE {
            connection.queue(Outbound::Text(n.to_string().into())).expect("room");
        }
        assert_eq!(connection.queue(Outbound::Text("one too many".into())), Err(QueueError::Full));

        for n in 0..OUTBOUND_QUEUE {
            assert_eq!(take(&connection), Some(Outbound::Text(n.to_string().into())));
        }
        assert_eq!(take(&connection), None);
        assert_eq!(connection.outbox.lock().messages.capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_route_response_goes_in_when_room_is_made_and_fails_when_the_socket_is_gone() {
        let connection = Connection::for_tests("gbf_-C9vMQAYKEiZoA==");
        for n in 0..OUTBOUND_QUEUE {
            connection.queue(Outbound::Text(n.to_string().into())).expect("room");
        }
        let waiting = tokio::spawn({
            let connection = connection.clone();
            async move { connection.queue_waiting("the ack".into()).await }
        });
        // The response cannot go in until the task takes a message; it is not done before.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(take(&connection), Some(Outbound::Text("0".into())));
        let queued = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert_eq!(queued.expect("queued within 5 s").expect("no panic"), Ok(()));

        let stuck = tokio::spawn({
            let connection = connection.clone();
            async move { connection.queue_waiting("never sent".into()).await }
        });
        tokio::task::yield_now().await;
        connection.close_outbox();
        let gone = tokio::time::timeout(std::time::Duration::from_secs(5), stuck).await;
        assert_eq!(gone.expect("answered within 5 s").expect("no panic"), Err(QueueError::Gone));
        assert_eq!(connection.queue(Outbound::Text("late".into())), Err(QueueError::Gone));
        assert_eq!(take(&connection), None);
    }
}
