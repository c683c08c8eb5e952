//! Missed calls across two functions: `message` sends the check to the SQS queue the template names, and
//! `call-timeout`, fed that check as Lambda's SQS poller would, expires the call and tells the recipient.

use serde_json::json;
use shared::store::{CallState, Store};

use crate::{Stack, body_of, fixture, invoke, message_event};

#[tokio::test]
async fn a_call_from_the_message_binary_is_queued_on_sqs_and_the_call_timeout_binary_expires_it() {
    let Some(stack) = Stack::new().await else { return };
    let mut recipient = stack.client("u-7").await;
    let mut connect = stack.start("connect").await;
    let mut message = stack.start("message").await;
    let mut call_timeout = stack.start("call-timeout").await;
    assert_eq!(invoke(&mut connect, &fixture("apigw-connect")).await["statusCode"], 200);
    // Only users who share a private conversation may call each other.
    assert_eq!(recipient.request("room:join", json!({"room": "chat:u-42:u-7"})).await["ok"], true);
    let join = json!({"action": "room:join", "id": "j-1", "data": {"room": "chat:u-42:u-7"}});
    assert_eq!(body_of(&invoke(&mut message, &message_event(&join)).await)["ok"], true);

    let initiated = invoke(
        &mut message,
        &message_event(
            &json!({"action": "call:initiate", "id": "call-1", "data": {"recipientId": "u-7", "callType": "audio"}}),
        ),
    )
    .await;
    let ack = body_of(&initiated);
    assert_eq!(ack["ok"], true, "{ack}");
    let call_id = ack["data"]["callId"].as_str().expect("a call id").to_owned();
    let incoming = recipient.next_event("call:incoming").await;
    assert_eq!(incoming["data"]["callId"], call_id.as_str(), "{incoming}");

    // The check waits on the queue for CALL_RING_SECONDS (the template's default, 30 s): it is there, delayed, beside
    // the token-expiry check the connect binary scheduled for the recipient's connection.
    let attributes = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes");
    let delayed = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed));
    assert_eq!(delayed.map(String::as_str), Some("2"), "{attributes:?}");

    // Lambda's SQS poller hands the function the message in the fixture's shape.
    let mut event = fixture("sqs-call-timeout");
    event["Records"][0]["body"] = json!(json!({"callId": call_id}).to_string());
    let answered = invoke(&mut call_timeout, &event).await;

    assert_eq!(answered, json!({"batchItemFailures": []}));
    let missed = recipient.next_event("call:missed").await;
    assert_eq!(missed["data"]["callId"], call_id.as_str(), "{missed}");
    let call = stack.store.get_call(&call_id).await.expect("store").expect("the call");
    assert_eq!(call.state, CallState::Missed);
    stack.assert_permissions();
}
