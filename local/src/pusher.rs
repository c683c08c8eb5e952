//! The in-process pusher: `shared::push::Pusher` over the harness's own connection registry, with exactly the
//! semantics of `POST`/`DELETE /@connections/{id}` but without the HTTP round trip.
//!
//! It is the harness default; `--pusher sdk` uses the real AWS SDK adapter against the harness's management
//! endpoint instead, which exercises the cloud code path end to end.

use async_trait::async_trait;
use bytes::Bytes;
use shared::gateway::MAX_MESSAGE_BYTES;
use shared::ids::ConnectionId;
use shared::push::{PushError, Pusher};

use crate::gateway::Registry;
use crate::gateway::connections::{Outbound, QueueError};

pub struct InProcessPusher {
    registry: Registry,
}

impl InProcessPusher {
    pub(crate) fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

#[async_trait]
impl Pusher for InProcessPusher {
    async fn post(&self, connection: &ConnectionId, payload: Bytes) -> Result<(), PushError> {
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(PushError::PayloadTooLarge);
        }
        self.registry.post(connection.as_str(), Outbound::from_post(payload)).map_err(push_error)
    }

    async fn disconnect(&self, connection: &ConnectionId) -> Result<(), PushError> {
        self.registry.delete(connection.as_str()).map_err(push_error)
    }
}

fn push_error(error: QueueError) -> PushError {
    match error {
        QueueError::Gone => PushError::Gone,
        QueueError::Full => PushError::Throttled,
    }
}
