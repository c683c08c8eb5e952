//! The timer port: checks the hub schedules for later, such as turning an unanswered call into a missed one.
//!
//! A Lambda cannot keep a task alive after it answers, so a check is a message on a delay queue: SQS in the cloud
//! ([`sqs::SqsCallTimer`], consumed by `functions/call-timeout`), the harness's emulation of that queue offline. Both
//! end in the same handler. This module owns the queue message's shape ([`MissedCallCheck`]), so the sender and the
//! consumer cannot drift apart, and the delay limit SQS enforces.
//!
//! Why an SQS delay queue and not EventBridge Scheduler: each message carries its own delay (`DelaySeconds`, up to
//! 15 minutes, which bounds `CALL_RING_SECONDS`), so one queue serves every call and nothing is created per call that
//! must be deleted afterwards; a check that keeps failing lands in a dead-letter queue instead of vanishing; the
//! consumer takes batches with per-record failure reports; and a message costs a fraction of a scheduler invocation.
//! The price is at-least-once delivery, which costs nothing here because every check is a conditional write.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::BoxError;

pub mod sqs;

/// The longest delay SQS gives a single message (15 minutes); `CALL_RING_SECONDS` may not exceed it.
pub const MAX_DELAY_SECONDS: u64 = 900;

/// The body of a missed-call message: `{"callId": "..."}`. Nothing else is needed, because the call record in the
/// store is the truth about whether the call was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissedCallCheck {
    pub call_id: String,
}

/// Schedules the check that turns an unanswered call into a missed one.
#[async_trait]
pub trait CallTimer: Send + Sync + 'static {
    async fn schedule_missed_check(&self, call_id: &str, after_seconds: u64) -> Result<(), BoxError>;
}

/// The Lambda functions' fallback timer when no missed-call queue is configured (`MISSED_CALL_QUEUE_URL` unset):
/// schedules nothing. A ringing call past its ring time is then expired the next time anyone touches it, and both
/// parties are told then.
pub struct OnTouchCallTimer;

#[async_trait]
impl CallTimer for OnTouchCallTimer {
    async fn schedule_missed_check(&self, _call_id: &str, _after_seconds: u64) -> Result<(), BoxError> {
        Ok(())
    }
}
