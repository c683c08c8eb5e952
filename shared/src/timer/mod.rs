//! The timer port: checks the hub schedules for later, such as turning an unanswered call into a missed one or
//! closing a connection whose token expired.
//!
//! A Lambda cannot keep a task alive after it answers, so a check is a message on a delay queue: SQS in the cloud
//! ([`sqs::SqsTimer`], consumed by `functions/call-timeout`), the harness's emulation of that queue offline. Both
//! end in the same handler. This module owns the queue message's shape ([`TimerJob`]), so the sender and the
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

/// The longest delay one queue message can wait (SQS's 15 minutes); defined with the configuration it bounds.
pub use crate::config::MAX_TIMER_DELAY_SECONDS as MAX_DELAY_SECONDS;

/// A check the hub runs later: the body of one delay-queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimerJob {
    /// Turn a call still ringing after its ring time into a missed one.
    MissedCall(MissedCallCheck),
    /// Warn a connection whose token is about to expire, and close it once it has.
    TokenExpiry(TokenExpiryCheck),
}

impl TimerJob {
    pub fn missed_call(call_id: impl Into<String>) -> Self {
        TimerJob::MissedCall(MissedCallCheck { call_id: call_id.into() })
    }

    pub fn token_expiry(connection_id: impl Into<String>) -> Self {
        TimerJob::TokenExpiry(TokenExpiryCheck { connection_id: connection_id.into() })
    }
}

/// `{"callId": "..."}`. Nothing else is needed, because the call record in the store is the truth about whether the
/// call was answered. Unknown fields are refused so the two kinds of job cannot be mistaken for each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MissedCallCheck {
    pub call_id: String,
}

/// `{"connectionId": "..."}`. The connection record holds the token's current expiry, which `auth:refresh` moves,
/// so the check reads it when it runs rather than trusting a time fixed when it was scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenExpiryCheck {
    pub connection_id: String,
}

/// Schedules checks to run after a delay of at most [`MAX_DELAY_SECONDS`].
#[async_trait]
pub trait Timer: Send + Sync + 'static {
    async fn schedule(&self, job: &TimerJob, after_seconds: u64) -> Result<(), BoxError>;
}

/// The Lambda functions' fallback timer when no timer queue is configured (`MISSED_CALL_QUEUE_URL` unset): schedules
/// nothing. A ringing call past its ring time is then expired the next time anyone touches it, and an expired token
/// is refused at the connection's next frame.
pub struct OnTouchTimer;

#[async_trait]
impl Timer for OnTouchTimer {
    async fn schedule(&self, _job: &TimerJob, _after_seconds: u64) -> Result<(), BoxError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_job_round_trips_as_its_own_kind() {
        for (job, body) in [
            (TimerJob::missed_call("c-1"), r#"{"callId":"c-1"}"#),
            (TimerJob::token_expiry("conn-1"), r#"{"connectionId":"conn-1"}"#),
        ] {
            assert_eq!(serde_json::to_string(&job).expect("encode"), body);
            assert_eq!(serde_json::from_str::<TimerJob>(body).expect("decode"), job);
        }
        assert!(serde_json::from_str::<TimerJob>(r#"{"callId":"c","connectionId":"x"}"#).is_err());
    }
}
