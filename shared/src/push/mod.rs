//! The push port: delivering one frame to one connection, and closing a connection, as API Gateway's Management
//! API does (`POST`/`DELETE /@connections/{id}`).
//!
//! Adapters: [`apigw::ApiGatewayPusher`] (the real AWS SDK; in the cloud, and against the harness's `@connections`
//! offline) and the harness's in-process pusher, which lives in `local` because it writes to sockets. A `Gone`
//! answer is a normal outcome: the caller prunes that connection.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::ids::ConnectionId;
use crate::store::BoxError;

pub mod apigw;

/// API Gateway refuses `PostToConnection` payloads above this many bytes.
pub const MAX_PAYLOAD_BYTES: usize = 131_072;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The connection no longer exists (HTTP 410): prune it.
    #[error("connection is gone")]
    Gone,
    /// The payload exceeds 128 KB (HTTP 413); retrying cannot help.
    #[error("payload exceeds {MAX_PAYLOAD_BYTES} bytes")]
    PayloadTooLarge,
    /// Throttled (HTTP 429) after the adapter's retry budget was spent.
    #[error("throttled by the management api")]
    Throttled,
    #[error("management api call failed")]
    Backend(#[source] BoxError),
}

#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    /// Sends one text frame to one connection.
    async fn post(&self, connection: &ConnectionId, payload: Bytes) -> Result<(), PushError>;

    /// Closes a connection (close code 1000); API Gateway then fires `$disconnect`.
    async fn disconnect(&self, connection: &ConnectionId) -> Result<(), PushError>;
}

/// What happened when one payload was sent to many connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOutReport {
    pub delivered: Vec<ConnectionId>,
    /// Connections that answered Gone; the caller must prune them.
    pub gone: Vec<ConnectionId>,
    pub failed: Vec<ConnectionId>,
}

/// Posts `payload` to every target with at most `concurrency` requests in flight. Never fails as a whole: each
/// target's outcome is in the report.
pub async fn fan_out(
    pusher: &Arc<dyn Pusher>,
    targets: Vec<ConnectionId>,
    payload: Bytes,
    concurrency: usize,
) -> FanOutReport {
    let mut report = FanOutReport::default();
    let mut outcomes = futures::stream::iter(targets)
        .map(|target| {
            let payload = payload.clone();
            async move {
                let outcome = pusher.post(&target, payload).await;
                (target, outcome)
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((target, outcome)) = outcomes.next().await {
        match outcome {
            Ok(()) => report.delivered.push(target),
            Err(PushError::Gone) => report.gone.push(target),
            Err(error) => {
                tracing::warn!(connection_id = %target, error = %error, "push failed");
                report.failed.push(target);
            }
        }
    }
    report
}

/// A pusher that records what it was asked to deliver, for handler tests.
#[cfg(any(test, feature = "test-util"))]
pub mod recording {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use serde_json::Value;

    use super::*;

    #[derive(Default)]
    pub struct RecordingPusher {
        sent: Mutex<Vec<(ConnectionId, Value)>>,
        disconnected: Mutex<Vec<ConnectionId>>,
        gone: Mutex<HashSet<ConnectionId>>,
    }

    impl RecordingPusher {
        /// Posts to this connection will answer Gone from now on.
        pub fn mark_gone(&self, connection: &ConnectionId) {
            self.gone.lock().unwrap_or_else(|e| e.into_inner()).insert(connection.clone());
        }

        /// Every frame delivered so far, parsed, in delivery order.
        pub fn sent(&self) -> Vec<(ConnectionId, Value)> {
            self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        /// Frames delivered to one connection.
        pub fn sent_to(&self, connection: &ConnectionId) -> Vec<Value> {
            self.sent().into_iter().filter(|(c, _)| c == connection).map(|(_, v)| v).collect()
        }

        pub fn disconnected(&self) -> Vec<ConnectionId> {
            self.disconnected.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        pub fn clear(&self) {
            self.sent.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    #[async_trait]
    impl Pusher for RecordingPusher {
        async fn post(&self, connection: &ConnectionId, payload: Bytes) -> Result<(), PushError> {
            if self.gone.lock().unwrap_or_else(|e| e.into_inner()).contains(connection) {
                return Err(PushError::Gone);
            }
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Err(PushError::PayloadTooLarge);
            }
            let value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            self.sent.lock().unwrap_or_else(|e| e.into_inner()).push((connection.clone(), value));
            Ok(())
        }

        async fn disconnect(&self, connection: &ConnectionId) -> Result<(), PushError> {
            self.disconnected.lock().unwrap_or_else(|e| e.into_inner()).push(connection.clone());
            Ok(())
        }
    }
}
