//! The registry of open connections: what API Gateway remembers per connection (connectedAt, identity, authorizer
//! context, lastActiveAt) and the handle used to write to or close its socket.
//!
//! A connection is in the registry only between a successful `$connect` and the moment its socket closes, so
//! `@connections` answers Gone before (during `$connect`) and after, exactly as AWS does. The registry owns no
//! sockets: each connection's task does, and the registry only holds its outbound queue and close signal.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

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
    pub(crate) id: String,
    pub(crate) connected_at_ms: i64,
    pub(crate) source_ip: String,
    pub(crate) user_agent: Option<String>,
    last_active_ms: AtomicI64,
    /// Last data frame in either direction, for the idle timeout; pings and pongs do not count.
    last_data: Mutex<Instant>,
    /// A flume channel rather than tokio's: both are bounded, but tokio's reserves a block of 32 slots when it is
    /// made, about 1.3 KB that every idle connection would hold, while flume's queue allocates only when a message
    /// waits in it.
    outbound: flume::Sender<Outbound>,
    /// Why the connection is to close, once something asked (the first cause wins), and the signal that wakes its
    /// task. Kept in the connection itself rather than in a watch channel, which would be an allocation of about
    /// 400 bytes per connection for a signal that fires at most once.
    close_cause: OnceLock<CloseCause>,
    close_requested: Notify,
}

/// The receiving end a connection task owns.
pub(crate) struct ConnectionEnds {
    pub(crate) outbound: flume::Receiver<Outbound>,
}

impl Connection {
    pub(crate) fn new(
        id: String,
        connected_at_ms: i64,
        source_ip: String,
        user_agent: Option<String>,
    ) -> (Arc<Self>, ConnectionEnds) {
        let (outbound_tx, outbound_rx) = flume::bounded(OUTBOUND_QUEUE);
        let connection = Arc::new(Self {
            id,
            connected_at_ms,
            source_ip,
            user_agent,
            last_active_ms: AtomicI64::new(connected_at_ms),
            last_data: Mutex::new(Instant::now()),
            outbound: outbound_tx,
            close_cause: OnceLock::new(),
            close_requested: Notify::new(),
        });
        (connection, ConnectionEnds { outbound: outbound_rx })
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

    /// Queues one text message without waiting: a full queue is the client's problem, reported as a throttle.
    pub(crate) fn queue(&self, message: Outbound) -> Result<(), QueueError> {
        self.outbound.try_send(message).map_err(|error| match error {
            flume::TrySendError::Full(_) => QueueError::Full,
            flume::TrySendError::Disconnected(_) => QueueError::Gone,
        })
    }

    /// Queues a route response or error frame, waiting for room: it answers the client's own message.
    pub(crate) async fn queue_waiting(&self, text: String) -> Result<(), QueueError> {
        self.outbound.send_async(Outbound::Text(text.into())).await.map_err(|_| QueueError::Gone)
    }

    /// Asks the connection's task to close the socket. The first cause wins.
    pub(crate) fn request_close(&self, cause: CloseCause) {
        if self.close_cause.set(cause).is_ok() {
            // Stores a permit when the task is not waiting right now, so the request is never missed.
            self.close_requested.notify_one();
        }
    }

    /// Waits until a close was requested, and returns its cause.
    pub(crate) async fn close_requested(&self) -> CloseCause {
        loop {
            if let Some(cause) = self.close_cause.get() {
                return cause.clone();
            }
            self.close_requested.notified().await;
        }
    }
}

/// Every open connection, by id. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    /// Looked up once per recipient of every fan-out, so it hashes with foldhash (seeded per process) rather than
    /// SipHash. The keys are ids the harness drew at random, so a client cannot choose colliding ones.
    inner: Arc<Mutex<foldhash::HashMap<String, Arc<Connection>>>>,
}

impl Registry {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn insert(&self, connection: Arc<Connection>) {
        self.lock().insert(connection.id.clone(), connection);
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Connection>> {
        self.lock().remove(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Connection>> {
        self.lock().values().cloned().collect()
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

    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<String, Arc<Connection>>> {
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
        let (connection, _ends) = Connection::new("gbf_-C9vMQAYKEiZoA==".into(), 1, "127.0.0.1".into(), None);
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
        let (connection, ends) = Connection::new("gbf_-C9vMQAYKEiZoA==".into(), 1, "127.0.0.1".into(), None);
        registry.insert(connection.clone());

        registry.post("gbf_-C9vMQAYKEiZoA==", Outbound::Text("hi".into())).expect("queued");

        assert_eq!(ends.outbound.try_recv().ok(), Some(Outbound::Text("hi".into())));
        assert!(connection.last_active_ms() > 1);
    }
}
