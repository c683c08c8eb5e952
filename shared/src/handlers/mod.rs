//! Lambda event ↔ domain mapping: the one implementation of every route, run unchanged by the Lambda functions and
//! by the local harness.
//!
//! - [`authorizer`]: the `$connect` REQUEST authorizer (JWT → IAM policy + identity context).
//! - [`connect`], [`disconnect`]: connection lifecycle, auto-joined rooms, presence.
//! - [`message`]: the `$default` route; parses the frame and dispatches on `action`.
//! - [`emit`]: internal services pushing events to rooms, users and connections.
//! - [`call_timeout`]: the missed-call queue's consumer, which expires calls nobody answered.
//!
//! Errors are mapped to client-visible frames or statuses here, at the edge, and nowhere deeper.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::ids::ConnectionId;
use crate::protocol::ServerFrame;
use crate::push::{FanOutReport, Pusher, fan_out};
use crate::store::{Store, StoreError};

pub mod authorizer;
pub mod call_timeout;
pub mod caller;
pub mod calls;
pub mod chat;
pub mod connect;
pub mod disconnect;
pub mod emit;
pub mod membership;
pub mod message;
pub mod notifications;
pub mod presence;

/// Everything a handler needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub pusher: Arc<dyn Pusher>,
    pub verifier: TokenVerifier,
    pub call_timer: Arc<dyn calls::CallTimer>,
    pub started_at: DateTime<Utc>,
}

impl Deps {
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        pusher: Arc<dyn Pusher>,
        call_timer: Arc<dyn calls::CallTimer>,
    ) -> Self {
        let verifier = TokenVerifier::new(&config.jwt);
        Self { config: Arc::new(config), store, pusher, verifier, call_timer, started_at: Utc::now() }
    }

    /// The cloud wiring every Lambda shares: DynamoDB store, Management API pusher at `WS_ENDPOINT`, and the call
    /// timer: delayed SQS messages when `MISSED_CALL_QUEUE_URL` is set, otherwise only the on-touch expiry. The AWS
    /// configuration (region, credentials chain) is loaded once at cold start and shared by the three clients.
    pub async fn for_lambda(config: Config) -> Result<Self, crate::config::ConfigError> {
        use crate::store::dynamo::DynamoStore;
        let endpoint = config.management_endpoint.clone().ok_or(crate::config::ConfigError::Missing("WS_ENDPOINT"))?;
        let sdk_config = crate::aws::load(None).await;
        let store = match config.dynamodb_endpoint.as_deref() {
            // An endpoint override is DynamoDB Local, which has credential rules of its own.
            Some(dynamodb_endpoint) => DynamoStore::from_config(&config.table_name, Some(dynamodb_endpoint)).await,
            None => DynamoStore::from_sdk_config(&sdk_config, &config.table_name),
        };
        let pusher = crate::push::apigw::ApiGatewayPusher::from_sdk_config(&sdk_config, &endpoint);
        // Building the SQS client sends nothing, so functions that never start a call pay only for its set-up.
        let call_timer: Arc<dyn calls::CallTimer> = match &config.missed_call_queue_url {
            Some(queue_url) => {
                Arc::new(crate::schedule::SqsCallTimer::from_sdk_config(&sdk_config, queue_url.as_str()))
            }
            None => Arc::new(calls::OnTouchCallTimer),
        };
        Ok(Self::new(config, Arc::new(store), Arc::new(pusher), call_timer))
    }

    /// Adds one to the `total_messages` counter behind `/health`. Best effort: the message is stored and delivered by
    /// now, and failing it over a monitoring counter would make the client retry what already succeeded.
    pub async fn count_message(&self) {
        if let Err(error) = self.store.count_messages(1).await {
            tracing::warn!(%error, "message counter not updated");
        }
    }

    /// Sends one frame to many connections and prunes those that are gone. Returns the fan-out report.
    pub async fn deliver(&self, targets: Vec<ConnectionId>, frame: &ServerFrame) -> FanOutReport {
        let payload = Bytes::from(frame.to_json());
        self.deliver_bytes(targets, payload).await
    }

    /// As [`Deps::deliver`], for a payload already serialised once for all recipients.
    pub async fn deliver_bytes(&self, targets: Vec<ConnectionId>, payload: Bytes) -> FanOutReport {
        if targets.is_empty() {
            return FanOutReport::default();
        }
        let report = fan_out(&self.pusher, targets, payload, self.config.limits.fanout_concurrency).await;
        for gone in &report.gone {
            disconnect::prune(self, gone).await;
        }
        report
    }
}

/// A failure no client input explains. Client mistakes never become this; they become error frames or statuses.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("store operation failed")]
    Store(#[from] StoreError),
    #[error("event is missing {0}")]
    MalformedEvent(&'static str),
}

/// The current time as clients see it: ISO 8601 UTC with milliseconds.
pub fn now_iso() -> String {
    chat::iso(&Utc::now())
}

/// How the Lambda runtime reports an unexpected handler failure: a stable type, and a message without internals.
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::Store(_) => "StoreError",
            HandlerError::MalformedEvent(_) => "MalformedEvent",
        };
        tracing::error!(error = %error, source = ?std::error::Error::source(&error), "handler failed");
        lambda_runtime::Diagnostic { error_type: error_type.to_owned(), error_message: error.to_string() }
    }
}

/// API Gateway answers 401 only when the authorizer fails with exactly the message `Unauthorized`.
impl From<authorizer::AuthorizerError> for lambda_runtime::Diagnostic {
    fn from(error: authorizer::AuthorizerError) -> Self {
        lambda_runtime::Diagnostic { error_type: "Unauthorized".to_owned(), error_message: error.to_string() }
    }
}
