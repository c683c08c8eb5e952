//! The cloud adapter of the [`Timer`] port: a missed-call check is one message on the missed-call SQS queue,
//! delayed by the ring time (`DelaySeconds`), which `functions/call-timeout` receives and hands to
//! `handlers::call_timeout`. It deliberately knows nothing about what a missed call is.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_smithy_types::timeout::TimeoutConfig;

use super::{MAX_DELAY_SECONDS, Timer, TimerJob};
use crate::store::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("a delay of {0} s exceeds the SQS maximum of {MAX_DELAY_SECONDS} s")]
    DelayTooLong(u64),
    #[error("could not encode the timer message")]
    Encode(#[source] serde_json::Error),
    /// Boxed because the SDK error is large and this enum travels on the happy path's `Result`.
    #[error("could not send the timer message")]
    Send(#[source] Box<SdkError<SendMessageError>>),
}

/// [`Timer`] over `aws-sdk-sqs`: `SendMessage` with `DelaySeconds` to the missed-call queue.
#[derive(Debug, Clone)]
pub struct SqsTimer {
    client: Client,
    queue_url: String,
}

impl SqsTimer {
    /// A timer sending to `queue_url`; `endpoint` overrides the SQS endpoint (an emulator in tests). Region and
    /// credentials as [`crate::aws::load`] gives them.
    pub async fn for_queue(queue_url: impl Into<String>, endpoint: Option<&str>) -> Self {
        Self::from_sdk_config(&crate::aws::load(endpoint).await, queue_url)
    }

    /// A timer from an already loaded SDK configuration.
    pub fn from_sdk_config(shared: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        // `call:initiate` waits for this send while the caller waits for its ack, inside API Gateway's 29 s, so a
        // stuck connection must fail fast; the SDK's standard retries (3 attempts) stay on, since a duplicate
        // message is harmless: expiring a call is a conditional write.
        let config = aws_sdk_sqs::config::Builder::from(shared)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(8))
                    .build(),
            )
            .build();
        Self { client: Client::from_conf(config), queue_url: queue_url.into() }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The SDK client, for calls outside the [`Timer`] port (tests receive through it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends `job`, to be delivered `after_seconds` from now.
    pub async fn send(&self, job: &TimerJob, after_seconds: u64) -> Result<(), ScheduleError> {
        let delay = i32::try_from(after_seconds)
            .ok()
            .filter(|_| after_seconds <= MAX_DELAY_SECONDS)
            .ok_or(ScheduleError::DelayTooLong(after_seconds))?;
        let body = serde_json::to_string(job).map_err(ScheduleError::Encode)?;
        let sent = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|error| ScheduleError::Send(Box::new(error)))?;
        tracing::debug!(?job, delay_seconds = delay, message_id = sent.message_id(), "check scheduled");
        Ok(())
    }
}

#[async_trait]
impl Timer for SqsTimer {
    async fn schedule(&self, job: &TimerJob, after_seconds: u64) -> Result<(), BoxError> {
        Ok(self.send(job, after_seconds).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::MissedCallCheck;

    /// The SQS endpoint of the integration test, e.g. `moto_server` started by `scripts/sqs-local.sh`.
    const ENDPOINT_VARIABLE: &str = "SQS_ENDPOINT";

    #[test]
    fn the_message_body_is_a_camel_case_call_id() {
        let body = serde_json::to_string(&MissedCallCheck { call_id: "c-1".to_owned() }).expect("encode");
        assert_eq!(body, r#"{"callId":"c-1"}"#);
    }

    #[tokio::test]
    async fn a_delay_beyond_fifteen_minutes_is_refused_before_any_request() {
        // Nothing listens on port 9 of loopback: reaching the network would fail differently.
        let timer = SqsTimer::for_queue("http://127.0.0.1:9/000000000000/missed", Some("http://127.0.0.1:9")).await;

        let error = timer.send(&TimerJob::missed_call("c-1"), MAX_DELAY_SECONDS + 1).await.expect_err("too long");

        assert!(matches!(error, ScheduleError::DelayTooLong(901)), "{error}");
    }

    #[tokio::test]
    async fn a_scheduled_check_arrives_on_the_queue_after_its_delay() {
        let Some(endpoint) = crate::testing::integration_var(ENDPOINT_VARIABLE, "an SQS emulator") else { return };
        let probe = SqsTimer::for_queue("unused", Some(&endpoint)).await;
        let queue_name = format!("bellhop-missed-{}", uuid::Uuid::new_v4().simple());
        let created = probe.client().create_queue().queue_name(&queue_name).send().await.expect("create queue");
        let queue_url = created.queue_url().expect("queue url").to_owned();
        let timer = SqsTimer::for_queue(queue_url.clone(), Some(&endpoint)).await;

        let sent_at = std::time::Instant::now();
        timer.schedule(&TimerJob::missed_call("call-42"), 2).await.expect("send through the Timer port");

        let mut received = Vec::new();
        for _ in 0..10 {
            let answer = timer
                .client()
                .receive_message()
                .queue_url(&queue_url)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            received.extend(answer.messages().iter().filter_map(|m| m.body().map(str::to_owned)));
            if !received.is_empty() {
                break;
            }
        }
        assert_eq!(received.len(), 1, "{received:?}");
        // Measured from before the send, so a slow machine can only make this larger: a message that ignored its
        // DelaySeconds would arrive within milliseconds.
        assert!(sent_at.elapsed() >= Duration::from_secs(2), "delivered after {:?}", sent_at.elapsed());
        let check: MissedCallCheck = serde_json::from_str(&received[0]).expect("body is a MissedCallCheck");
        assert_eq!(check, MissedCallCheck { call_id: "call-42".to_owned() });
        timer.client().delete_queue().queue_url(&queue_url).send().await.expect("delete queue");
    }
}
