//! The timer's SQS delay queue, emulated the way the rest of this crate emulates API Gateway: the harness's
//! [`Timer`] enqueues the very message `shared::timer::sqs::SqsTimer` sends in the cloud (a `TimerJob` body: a
//! missed-call or token-expiry check, with its delay), and when messages are due they are handed to
//! `shared::handlers::call_timeout` as an `aws_lambda_events` SQS event shaped as Lambda's event source mapping
//! delivers it: batches of up to 10 records, each with its message id, receipt handle, MD5 of the body and
//! `ApproximateReceiveCount`. Records the handler reports in `batchItemFailures` become visible again after the
//! queue's visibility timeout and, once received `maxReceiveCount` times, go to the dead-letter queue (kept in
//! memory and logged), as `template.yaml` configures the real queue.
//!
//! So the cloud's missed-call path (`call-timeout`'s handler, partial batch failures) runs offline too, and the
//! harness needs no timer of its own. Not emulated: SQS's at-least-once duplicates and its out-of-order delivery
//! (this queue delivers each due message once per receive, in due order).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{Value, json};
use shared::handlers::Deps;
use shared::store::BoxError;
use shared::timer::Timer;
use shared::timer::{MAX_DELAY_SECONDS, TimerJob};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Records per invocation: the event source mapping's `BatchSize` in `template.yaml`.
pub const BATCH_SIZE: usize = 10;
/// How long a failed record stays invisible before it is received again: the queue's `VisibilityTimeout`.
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(120);
/// Receives before a record goes to the dead-letter queue: the redrive policy's `maxReceiveCount`.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// The emulated queue's settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self { visibility_timeout: VISIBILITY_TIMEOUT, max_receive_count: MAX_RECEIVE_COUNT }
    }
}

/// One message in the queue.
#[derive(Debug, Clone)]
struct QueuedMessage {
    message_id: String,
    body: String,
    sent_ms: i64,
    receive_count: u32,
    first_receive_ms: Option<i64>,
}

#[derive(Default)]
struct State {
    /// Messages by (the instant they become visible, a sequence number keeping equal instants apart).
    waiting: BTreeMap<(Instant, u64), QueuedMessage>,
    next_seq: u64,
    dead_letters: Vec<QueuedMessage>,
}

/// The delay queue and its consumer. Cheap to share; bound to the handlers' dependencies after they are built.
pub struct DelayQueue {
    settings: QueueSettings,
    region: String,
    state: Mutex<State>,
    wake: Notify,
    deps: OnceLock<Weak<Deps>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DelayQueueError {
    #[error("a delay of {0} s exceeds the SQS maximum of {MAX_DELAY_SECONDS} s")]
    DelayTooLong(u64),
    #[error("could not encode the timer message")]
    Encode(#[source] serde_json::Error),
}

impl DelayQueue {
    pub fn new(settings: QueueSettings, region: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            settings,
            region: region.into(),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            deps: OnceLock::new(),
        })
    }

    /// Connects the consumer to the handlers' dependencies (weakly: `Deps` holds this queue as its timer) and starts
    /// it. The consumer stops once the dependencies are gone.
    pub fn start(self: &Arc<Self>, deps: &Arc<Deps>) {
        if self.deps.set(Arc::downgrade(deps)).is_ok() {
            tokio::spawn(consume(Arc::downgrade(self)));
        }
    }

    /// Messages moved to the dead-letter queue so far (their bodies).
    pub fn dead_letters(&self) -> Vec<String> {
        self.lock().dead_letters.iter().map(|m| m.body.clone()).collect()
    }

    /// Messages waiting, visible or not.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, message: QueuedMessage, visible_at: Instant) {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.waiting.insert((visible_at, seq), message);
        drop(state);
        self.wake.notify_one();
    }

    /// Removes up to one batch of visible messages, marking them received; or says when the next one is due.
    fn receive(&self, now: Instant) -> Result<Vec<QueuedMessage>, Option<Instant>> {
        let mut state = self.lock();
        let due: Vec<(Instant, u64)> =
            state.waiting.keys().take_while(|(visible_at, _)| *visible_at <= now).take(BATCH_SIZE).copied().collect();
        if due.is_empty() {
            return Err(state.waiting.keys().next().map(|(at, _)| *at));
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        Ok(due
            .into_iter()
            .filter_map(|key| state.waiting.remove(&key))
            .map(|mut message| {
                message.receive_count += 1;
                message.first_receive_ms.get_or_insert(now_ms);
                message
            })
            .collect())
    }

    /// The SQS event Lambda's event source mapping delivers for `batch`, built as JSON and parsed into the typed
    /// event, so the shape is proven the way a real payload would be.
    fn event(&self, batch: &[QueuedMessage]) -> Result<SqsEvent, serde_json::Error> {
        let arn = format!("arn:aws:sqs:{}:000000000000:bellhop-missed-calls", self.region);
        let records: Vec<Value> = batch
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id,
                    "receiptHandle": format!("{}#{}", m.message_id, m.receive_count),
                    "body": m.body,
                    "attributes": {
                        "ApproximateReceiveCount": m.receive_count.to_string(),
                        "SentTimestamp": m.sent_ms.to_string(),
                        "SenderId": shared::gateway::LOCAL_ACCESS_KEY_ID,
                        "ApproximateFirstReceiveTimestamp": m.first_receive_ms.unwrap_or(m.sent_ms).to_string(),
                    },
                    "messageAttributes": {},
                    "md5OfBody": md5_hex(m.body.as_bytes()),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": self.region,
                })
            })
            .collect();
        serde_json::from_value(json!({ "Records": records }))
    }
}

#[async_trait]
impl Timer for DelayQueue {
    async fn schedule(&self, job: &TimerJob, after_seconds: u64) -> Result<(), BoxError> {
        // SQS refuses a DelaySeconds over 900, and so does this queue.
        if after_seconds > MAX_DELAY_SECONDS {
            return Err(Box::new(DelayQueueError::DelayTooLong(after_seconds)));
        }
        let body = serde_json::to_string(job).map_err(|e| Box::new(DelayQueueError::Encode(e)) as BoxError)?;
        let message = QueuedMessage {
            message_id: uuid::Uuid::new_v4().to_string(),
            body,
            sent_ms: chrono::Utc::now().timestamp_millis(),
            receive_count: 0,
            first_receive_ms: None,
        };
        self.enqueue(message, Instant::now() + Duration::from_secs(after_seconds));
        Ok(())
    }
}

/// The event source mapping: polls for due messages and invokes `call-timeout`'s handler with each batch.
async fn consume(queue: Weak<DelayQueue>) {
    loop {
        let Some(this) = queue.upgrade() else { return };
        let Some(deps) = this.deps.get().and_then(Weak::upgrade) else { return };
        match this.receive(Instant::now()) {
            Ok(batch) => {
                deliver(&this, &deps, batch).await;
            }
            Err(next) => {
                // Sleep until the next message is due or a new one arrives; hold no strong reference meanwhile,
                // so a harness that shuts down ends this task.
                let wake = async {
                    match next {
                        Some(at) => {
                            tokio::select! {
                                _ = tokio::time::sleep_until(at) => {}
                                _ = this.wake.notified() => {}
                            }
                        }
                        None => {
                            tokio::select! {
                                _ = this.wake.notified() => {}
                                // Re-check now and then whether the harness is gone.
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                        }
                    }
                };
                drop(deps);
                wake.await;
            }
        }
    }
}

/// One invocation: the handler's `batchItemFailures` go back to the queue after the visibility timeout, or to the
/// dead-letter queue once they have been received `maxReceiveCount` times.
async fn deliver(queue: &DelayQueue, deps: &Deps, batch: Vec<QueuedMessage>) {
    let event = match queue.event(&batch) {
        Ok(event) => event,
        Err(error) => {
            tracing::error!(%error, "emulated SQS event does not deserialise");
            return;
        }
    };
    let response = shared::handlers::call_timeout::handle(deps, event).await;
    for failure in response.batch_item_failures {
        let Some(message) = batch.iter().find(|m| m.message_id == failure.item_identifier) else {
            // An empty or unknown identifier fails the whole batch, as Lambda reads it.
            for message in &batch {
                retry_or_dead_letter(queue, message.clone());
            }
            return;
        };
        retry_or_dead_letter(queue, message.clone());
    }
}

fn retry_or_dead_letter(queue: &DelayQueue, message: QueuedMessage) {
    if message.receive_count >= queue.settings.max_receive_count {
        tracing::error!(
            message_id = message.message_id,
            receive_count = message.receive_count,
            "missed-call check moved to the dead-letter queue"
        );
        queue.lock().dead_letters.push(message);
    } else {
        tracing::warn!(message_id = message.message_id, "missed-call check failed; it will be received again");
        queue.enqueue(message, Instant::now() + queue.settings.visibility_timeout);
    }
}

/// The MD5 digest SQS reports as `md5OfBody`, in hex.
fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc_1321_test_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5_hex(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[tokio::test]
    async fn messages_become_visible_after_their_delay_in_batches_of_ten() {
        let queue = DelayQueue::new(QueueSettings::default(), "us-east-1");
        for n in 0..12 {
            queue.schedule(&TimerJob::missed_call(format!("call-{n}")), 0).await.expect("scheduled");
        }
        queue.schedule(&TimerJob::missed_call("later"), 60).await.expect("scheduled");

        let now = Instant::now();
        let first = queue.receive(now).expect("a batch");
        let second = queue.receive(now).expect("the rest");
        let next = queue.receive(now).expect_err("nothing else is due");

        assert_eq!((first.len(), second.len()), (10, 2));
        assert!(first.iter().all(|m| m.receive_count == 1));
        assert!(next.is_some_and(|at| at > now + Duration::from_secs(59)));
    }

    #[tokio::test]
    async fn a_delay_over_fifteen_minutes_is_refused_as_sqs_refuses_it() {
        let queue = DelayQueue::new(QueueSettings::default(), "us-east-1");
        let error = queue.schedule(&TimerJob::missed_call("c"), MAX_DELAY_SECONDS + 1).await.expect_err("too long");
        assert!(error.to_string().contains("exceeds the SQS maximum"), "{error}");
        assert_eq!(queue.waiting(), 0);
    }

    #[tokio::test]
    async fn the_event_has_the_shape_lambdas_event_source_mapping_delivers() {
        let queue = DelayQueue::new(QueueSettings::default(), "eu-west-1");
        queue.schedule(&TimerJob::missed_call("call-1"), 0).await.expect("scheduled");
        let batch = queue.receive(Instant::now()).expect("a batch");

        let event = queue.event(&batch).expect("deserialises into SqsEvent");

        let record = &event.records[0];
        assert_eq!(record.body.as_deref(), Some(r#"{"callId":"call-1"}"#));
        assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
        assert_eq!(record.aws_region.as_deref(), Some("eu-west-1"));
        assert_eq!(record.attributes.get("ApproximateReceiveCount").map(String::as_str), Some("1"));
        assert_eq!(record.md5_of_body.as_deref(), Some(md5_hex(br#"{"callId":"call-1"}"#).as_str()));
    }

    #[tokio::test]
    async fn a_failed_record_comes_back_after_the_visibility_timeout_until_it_is_dead_lettered() {
        let settings = QueueSettings { visibility_timeout: Duration::ZERO, max_receive_count: 2 };
        let queue = DelayQueue::new(settings, "us-east-1");
        queue.schedule(&TimerJob::missed_call("call-1"), 0).await.expect("scheduled");

        let first = queue.receive(Instant::now()).expect("received once");
        retry_or_dead_letter(&queue, first[0].clone());
        let second = queue.receive(Instant::now()).expect("received again");
        retry_or_dead_letter(&queue, second[0].clone());

        assert_eq!(second[0].receive_count, 2);
        assert_eq!(queue.waiting(), 0);
        assert_eq!(queue.dead_letters(), [r#"{"callId":"call-1"}"#]);
    }
}
