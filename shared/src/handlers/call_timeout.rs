//! The `call-timeout` function's handler: it consumes the missed-call queue (messages sent by
//! [`crate::timer::sqs::SqsTimer`] when a call starts ringing, delayed by `CALL_RING_SECONDS`) and expires every
//! call still ringing when its message arrives.
//!
//! The decision is [`calls::expire_if_unanswered`], a conditional write, so a call answered, rejected or ended in
//! the meantime is left alone and a message delivered twice (SQS is at least once) does nothing the second time.
//! Failures are reported per record (`ReportBatchItemFailures` on the event source mapping): a store fault returns
//! only that record to the queue, to be retried and dead-lettered after the queue's `maxReceiveCount`, while a body
//! that is not a missed-call check can never succeed, so it is logged once at `error` and dropped rather than
//! retried into the dead-letter queue.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;

use super::{Deps, HandlerError, calls, tokens};
use crate::ids::ConnectionId;
use crate::timer::{MissedCallCheck, TimerJob, TokenExpiryCheck};

/// Records checked at once. Each costs a few store calls and two small fan-outs; the template's batch size is 10.
const CONCURRENCY: usize = 10;

/// Longest call id accepted from a message. Call ids are UUIDs, so anything longer was not sent by Bellhop.
const MAX_CALL_ID_CHARS: usize = 128;

/// Expires the call of every record that is still ringing, and answers which records SQS must deliver again.
#[tracing::instrument(skip_all, fields(records = event.records.len()))]
pub async fn handle(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    // The futures are built before they are streamed: a stream mapping a closure over borrowed records is not
    // provably `Send` for every lifetime (rust-lang/rust#100013), which stops callers that spawn this handler, such
    // as the local harness's emulated event source mapping.
    let checks: Vec<_> = event.records.iter().map(|record| check_record(deps, record)).collect();
    let outcomes: Vec<_> = futures::stream::iter(checks).buffered(CONCURRENCY).collect().await;
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in outcomes {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        match outcome {
            Ok(call_id) => tracing::debug!(message_id, call_id, "missed-call check done"),
            Err(error) if error.is_retryable() => {
                let receive_count = record.attributes.get("ApproximateReceiveCount").map(String::as_str);
                tracing::warn!(
                    message_id,
                    receive_count,
                    error = %error,
                    source = ?std::error::Error::source(&error),
                    "missed-call check failed; SQS will deliver it again"
                );
                // SQS always sends a message id. Without one, Lambda reads the empty identifier as a failure of the
                // whole batch: the only way left to have this record retried, and harmless for the others, whose
                // checks are idempotent.
                response.add_failure(message_id);
            }
            Err(error) => tracing::error!(
                message_id,
                body_bytes = record.body.as_ref().map_or(0, String::len),
                error = %error,
                source = ?std::error::Error::source(&error),
                "dropping a message that is not a missed-call check"
            ),
        }
    }
    response
}

/// Why one record was not checked.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("message has no body")]
    MissingBody,
    #[error("message body is not a timer check")]
    Malformed(#[source] serde_json::Error),
    #[error("call id is empty or longer than {MAX_CALL_ID_CHARS} characters")]
    InvalidCallId,
    #[error("connection id is not valid")]
    InvalidConnectionId,
    #[error("the check failed")]
    Expire(#[source] HandlerError),
}

impl RecordError {
    /// Only a fault of the store (or anything else outside the message) can go away by delivering it again.
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Expire(_))
    }
}

/// Checks one record; answers its call id.
async fn check_record<'a>(deps: &Deps, record: &'a SqsMessage) -> (&'a SqsMessage, Result<String, RecordError>) {
    (record, check(deps, record).await)
}

async fn check(deps: &Deps, record: &SqsMessage) -> Result<String, RecordError> {
    let body = record.body.as_deref().ok_or(RecordError::MissingBody)?;
    match serde_json::from_str(body).map_err(RecordError::Malformed)? {
        TimerJob::MissedCall(MissedCallCheck { call_id }) => {
            if call_id.is_empty() || call_id.chars().count() > MAX_CALL_ID_CHARS {
                return Err(RecordError::InvalidCallId);
            }
            calls::expire_if_unanswered(deps, &call_id).await.map_err(RecordError::Expire)?;
            Ok(call_id)
        }
        TimerJob::TokenExpiry(TokenExpiryCheck { connection_id }) => {
            let connection = ConnectionId::parse(connection_id).map_err(|_| RecordError::InvalidConnectionId)?;
            tokens::check(deps, &connection).await.map_err(RecordError::Expire)?;
            Ok(connection.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::config::Config;
    use crate::ids::{ConnectionId, UserId};
    use crate::push::recording::RecordingPusher;
    use crate::rooms::RoomName;
    use crate::store::faulty::{Fault, FaultyStore};
    use crate::store::sqlite::SqliteStore;
    use crate::store::*;
    use crate::timer::OnTouchTimer;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/sqs-call-timeout.json");
    /// The call id in the fixture's body.
    const FIXTURE_CALL_ID: &str = "0193a5b2-7c1e-7d3f-9a4b-2c8e1f6d5a90";

    struct Fixture {
        deps: Deps,
        pusher: Arc<RecordingPusher>,
        alice: ConnectionId,
        bob: ConnectionId,
    }

    /// Alice (the caller) and Bob (the recipient), one connection each, over `store`.
    async fn fixture_over(store: Arc<dyn Store>) -> Fixture {
        let pusher = Arc::new(RecordingPusher::default());
        let deps = Deps::new(Config::for_tests(), store, pusher.clone(), Arc::new(OnTouchTimer));
        let alice = connect(&deps, "conn-alice", "alice").await;
        let bob = connect(&deps, "conn-bob", "bob").await;
        Fixture { deps, pusher, alice, bob }
    }

    async fn fixture() -> Fixture {
        fixture_over(Arc::new(SqliteStore::in_memory().await.expect("in-memory store"))).await
    }

    async fn connect(deps: &Deps, id: &str, user: &str) -> ConnectionId {
        let record = ConnectionRecord::for_tests(id, user);
        deps.store.put_connection(&record, &[RoomName::for_user(&record.user_id)]).await.expect("put connection");
        record.connection_id
    }

    /// A call from Alice to Bob, in `state`, that started ringing 31 s ago.
    async fn call(deps: &Deps, call_id: &str, state: CallState) {
        let started = chrono::Utc::now() - chrono::Duration::seconds(31);
        let record = CallRecord {
            call_id: call_id.to_owned(),
            caller: UserId::parse("alice").expect("user id"),
            recipient: UserId::parse("bob").expect("user id"),
            call_type: CallType::Video,
            visit_id: None,
            state,
            created_at: started,
            answered_at: (state == CallState::Accepted).then_some(started),
            ended_at: None,
        };
        deps.store.create_call(&record).await.expect("create call");
    }

    async fn state_of(deps: &Deps, call_id: &str) -> CallState {
        deps.store.get_call(call_id).await.expect("get call").expect("call exists").state
    }

    /// An SQS record as Lambda delivers it, with `body` (or none).
    fn record(message_id: &str, body: Option<&str>) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(message_id.to_owned());
        record.receipt_handle = Some(format!("receipt-{message_id}"));
        record.body = body.map(str::to_owned);
        record.event_source = Some("aws:sqs".to_owned());
        record.attributes.insert("ApproximateReceiveCount".to_owned(), "1".to_owned());
        record
    }

    fn event(records: Vec<SqsMessage>) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = records;
        event
    }

    fn check_body(call_id: &str) -> String {
        json!({"callId": call_id}).to_string()
    }

    fn failures(response: &SqsBatchResponse) -> Vec<&str> {
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    fn events(frames: &[Value]) -> Vec<&str> {
        frames.iter().filter_map(|f| f["event"].as_str()).collect()
    }

    #[test]
    fn the_fixture_is_an_sqs_event_that_round_trips() {
        let parsed: SqsEvent = serde_json::from_slice(FIXTURE).expect("fixture is an SqsEvent");
        let reparsed: SqsEvent =
            serde_json::from_str(&serde_json::to_string(&parsed).expect("serialise")).expect("reparse");
        assert_eq!(parsed, reparsed);

        let record = &parsed.records[0];
        assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
        assert!(record.event_source_arn.as_deref().is_some_and(|arn| arn.starts_with("arn:aws:sqs:")));
        assert_eq!(record.attributes.get("ApproximateReceiveCount").map(String::as_str), Some("1"));
        let check: MissedCallCheck = serde_json::from_str(record.body.as_deref().expect("body")).expect("a check");
        assert_eq!(check.call_id, FIXTURE_CALL_ID);
    }

    #[tokio::test]
    async fn a_call_still_ringing_becomes_missed_and_both_parties_are_told() {
        let f = fixture().await;
        call(&f.deps, FIXTURE_CALL_ID, CallState::Ringing).await;
        let event: SqsEvent = serde_json::from_slice(FIXTURE).expect("fixture");

        let response = handle(&f.deps, event).await;

        assert!(failures(&response).is_empty(), "{response:?}");
        assert_eq!(state_of(&f.deps, FIXTURE_CALL_ID).await, CallState::Missed);
        for (who, connection) in [("caller", &f.alice), ("recipient", &f.bob)] {
            let frames = f.pusher.sent_to(connection);
            let missed: Vec<&Value> = frames.iter().filter(|f| f["event"] == "call:missed").collect();
            assert_eq!(missed.len(), 1, "{who} gets one call:missed: {frames:?}");
            assert_eq!(missed[0]["data"]["callId"], FIXTURE_CALL_ID);
            assert_eq!(missed[0]["data"]["callerId"], "alice");
            assert_eq!(missed[0]["data"]["recipientId"], "bob");
        }
        assert!(events(&f.pusher.sent_to(&f.bob)).contains(&"notification:new"), "the recipient is notified");
        assert!(!events(&f.pusher.sent_to(&f.alice)).contains(&"notification:new"), "the caller is not");
    }

    #[tokio::test]
    async fn a_call_answered_before_its_check_arrives_stays_accepted_and_nobody_is_told() {
        let f = fixture().await;
        call(&f.deps, "call-answered", CallState::Accepted).await;

        let response = handle(&f.deps, event(vec![record("m-1", Some(&check_body("call-answered")))])).await;

        assert!(failures(&response).is_empty(), "{response:?}");
        assert_eq!(state_of(&f.deps, "call-answered").await, CallState::Accepted);
        assert!(f.pusher.sent().is_empty(), "{:?}", f.pusher.sent());
    }

    #[tokio::test]
    async fn a_check_delivered_twice_tells_the_parties_once() {
        let f = fixture().await;
        call(&f.deps, "call-twice", CallState::Ringing).await;
        let body = check_body("call-twice");

        let first = handle(&f.deps, event(vec![record("m-1", Some(&body))])).await;
        let second = handle(&f.deps, event(vec![record("m-1", Some(&body))])).await;

        assert!(failures(&first).is_empty() && failures(&second).is_empty());
        let missed = events(&f.pusher.sent_to(&f.alice)).into_iter().filter(|e| *e == "call:missed").count();
        assert_eq!(missed, 1);
    }

    #[tokio::test]
    async fn a_check_for_an_unknown_call_is_done_not_retried() {
        let f = fixture().await;

        let response = handle(&f.deps, event(vec![record("m-1", Some(&check_body("call-gone")))])).await;

        assert!(failures(&response).is_empty(), "{response:?}");
        assert!(f.pusher.sent().is_empty());
    }

    #[tokio::test]
    async fn malformed_messages_are_dropped_not_retried() {
        let f = fixture().await;
        call(&f.deps, "call-ok", CallState::Ringing).await;
        let too_long = "x".repeat(MAX_CALL_ID_CHARS + 1);
        let records = vec![
            record("m-not-json", Some("not json")),
            record("m-wrong-shape", Some(r#"{"call":"call-ok"}"#)),
            record("m-wrong-type", Some(r#"{"callId":42}"#)),
            record("m-empty-id", Some(r#"{"callId":""}"#)),
            record("m-long-id", Some(&check_body(&too_long))),
            record("m-no-body", None),
            record("m-good", Some(&check_body("call-ok"))),
        ];

        let response = handle(&f.deps, event(records)).await;

        assert!(failures(&response).is_empty(), "a bad body can never succeed: {response:?}");
        assert_eq!(state_of(&f.deps, "call-ok").await, CallState::Missed, "the good record in the batch still counts");
    }

    #[tokio::test]
    async fn a_store_failure_returns_only_that_record_to_the_queue() {
        let store = Arc::new(FaultyStore::new(Arc::new(SqliteStore::in_memory().await.expect("in-memory store"))));
        let f = fixture_over(store.clone()).await;
        call(&f.deps, "call-a", CallState::Ringing).await;
        call(&f.deps, "call-b", CallState::Ringing).await;
        store.set_faults(vec![Fault::CallOf("transition_call", 1)]);
        let records = vec![
            record("m-a", Some(&check_body("call-a"))),
            record("m-b", Some(&check_body("call-b"))),
            record("m-malformed", Some("{")),
        ];

        let response = handle(&f.deps, event(records)).await;

        // Records are checked concurrently, so either check may be the one whose transition failed.
        let failed = failures(&response);
        assert_eq!(failed.len(), 1, "{response:?}");
        let (broken, fine) = if failed[0] == "m-a" { ("call-a", "call-b") } else { ("call-b", "call-a") };
        assert_eq!(state_of(&f.deps, broken).await, CallState::Ringing, "kept for the retry");
        assert_eq!(state_of(&f.deps, fine).await, CallState::Missed);
        let serialised = serde_json::to_value(&response).expect("serialise");
        assert_eq!(serialised, json!({"batchItemFailures": [{"itemIdentifier": failed[0]}]}));
    }

    #[tokio::test]
    async fn a_check_that_failed_after_the_transition_stores_the_notification_on_its_retry_and_only_once() {
        let store = Arc::new(FaultyStore::new(Arc::new(SqliteStore::in_memory().await.expect("in-memory store"))));
        store.set_faults(vec![Fault::CallOf("add_notification", 1)]);
        let f = fixture_over(store).await;
        call(&f.deps, "call-retried", CallState::Ringing).await;
        let check = || event(vec![record("m-1", Some(&check_body("call-retried")))]);
        let count = |connection: &ConnectionId, name: &str| {
            f.pusher.sent_to(connection).iter().filter(|frame| frame["event"] == name).count()
        };

        let first = handle(&f.deps, check()).await;
        assert_eq!(failures(&first), ["m-1"], "the notification could not be stored: SQS must retry");
        assert_eq!(state_of(&f.deps, "call-retried").await, CallState::Missed);
        assert_eq!((count(&f.bob, "call:missed"), count(&f.bob, "notification:new")), (1, 0));

        for _ in 0..2 {
            let retry = handle(&f.deps, check()).await;
            assert!(failures(&retry).is_empty(), "{retry:?}");
        }
        assert_eq!(count(&f.bob, "notification:new"), 1, "stored and announced once, by the first retry");
        assert_eq!((count(&f.alice, "call:missed"), count(&f.bob, "call:missed")), (1, 1), "frames not repeated");
        let bob = UserId::parse("bob").expect("user id");
        assert_eq!(f.deps.store.unread_notifications(&bob).await.expect("unread"), 1);
    }
}
