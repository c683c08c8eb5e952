//! Messages in rooms: `message:send`, `message:history`, `message:read`, and the ephemeral `typing:start/stop`.
//!
//! Messages are durable room events with a per-room `seq`; a retried send with the same `clientMsgId` is stored and
//! delivered once. Typing indicators are never stored and never echoed to the sender's own connections.

use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::Caller;
use super::membership::{check_access, members_if_joined};
use super::message::{ActionError, ActionResult};
use super::{Deps, now_iso};
use crate::protocol::{ErrorCode, ServerFrame, events, parse_data};
use crate::rooms::RoomName;
use crate::store::{HistoryQuery, NewRoomEvent, RoomEvent};

const MAX_CLIENT_MSG_ID_LEN: usize = 64;
const MAX_METADATA_BYTES: usize = 4096;
const MAX_READ_IDS: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendRequest {
    room: String,
    content: String,
    #[serde(default)]
    client_msg_id: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `message:send {room, content, clientMsgId?, metadata?}` → ack `{message, duplicate}`; `message:new` with the
/// message and its `seq` to every other connection in the room.
pub async fn send(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let request: SendRequest = parse_data(data)?;
    let room = RoomName::parse(request.room)?;
    let content = request.content.trim();
    if content.is_empty() {
        return Err(ActionError::invalid("content must not be empty"));
    }
    let max = deps.config.limits.max_content_chars;
    if content.chars().count() > max {
        return Err(ActionError::new(ErrorCode::PayloadTooLarge, format!("content is longer than {max} characters")));
    }
    if let Some(id) = &request.client_msg_id
        && (id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_LEN)
    {
        return Err(ActionError::invalid(format!("clientMsgId must be 1 to {MAX_CLIENT_MSG_ID_LEN} characters")));
    }
    if let Some(metadata) = &request.metadata
        && (!metadata.is_object() || metadata.to_string().len() > MAX_METADATA_BYTES)
    {
        return Err(ActionError::invalid(format!("metadata must be an object of at most {MAX_METADATA_BYTES} bytes")));
    }
    let members = members_if_joined(deps, caller, &room).await?;
    // Participation (the conversations list) is recorded before the message so that a failure here leaves nothing
    // behind but an idempotent marker for a room the sender is already in, never a stored message the client was told
    // had failed.
    deps.store.record_participation(&caller.identity.user_id, &room).await?;

    let id = uuid::Uuid::now_v7().to_string();
    let created_at = chrono::Utc::now();
    let timestamp = iso(&created_at);
    let message = json!({
        "id": id,
        "room": room,
        "sender": caller.identity.profile(),
        "content": content,
        "clientMsgId": request.client_msg_id,
        "metadata": request.metadata.unwrap_or(Value::Null),
        "createdAt": timestamp,
        "updatedAt": timestamp,
    });
    let appended = deps
        .store
        .append_event(NewRoomEvent {
            room: room.clone(),
            id,
            event: events::MESSAGE_NEW.to_owned(),
            data: message,
            sender: Some(caller.identity.user_id.clone()),
            client_msg_id: request.client_msg_id,
            created_at,
        })
        .await?;
    let stored = message_with_seq(&appended.event);
    if appended.duplicate {
        tracing::info!(room = %room, seq = appended.event.seq, "duplicate send answered from the store");
    } else {
        let frame =
            ServerFrame::room_event(events::MESSAGE_NEW, room.as_str(), Some(appended.event.seq), stored.clone());
        let others = members.into_iter().map(|m| m.connection_id).filter(|c| c != caller.id()).collect();
        let report = deps.deliver(others, &frame).await;
        deps.count_message().await;
        tracing::info!(room = %room, seq = appended.event.seq, delivered = report.delivered.len(), "message sent");
    }
    Ok(json!({"message": stored, "duplicate": appended.duplicate}))
}

/// The stored event's data with its `seq` added: what clients see as a message.
pub fn message_with_seq(event: &RoomEvent) -> Value {
    let mut data = event.data.clone();
    if let Value::Object(map) = &mut data {
        map.insert("seq".to_owned(), json!(event.seq));
    }
    data
}

/// One history entry as clients receive it.
pub fn history_entry(event: &RoomEvent) -> Value {
    json!({
        "seq": event.seq,
        "id": event.id,
        "event": event.event,
        "data": event.data,
        "createdAt": iso(&event.created_at),
    })
}

pub fn iso(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HistoryRequest {
    room: String,
    #[serde(default)]
    before_seq: Option<u64>,
    #[serde(default)]
    after_seq: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `message:history {room, beforeSeq? | afterSeq?, limit?}` → ack `{room, events, hasMore}` in ascending `seq`.
pub async fn history(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let request: HistoryRequest = parse_data(data)?;
    let room = RoomName::parse(request.room)?;
    let max = deps.config.limits.max_page;
    let limit = request.limit.unwrap_or(50);
    if limit == 0 || limit > max {
        return Err(ActionError::invalid(format!("limit must be between 1 and {max}")));
    }
    let query = match (request.before_seq, request.after_seq) {
        (Some(_), Some(_)) => return Err(ActionError::invalid("give beforeSeq or afterSeq, not both")),
        (Some(before), None) => HistoryQuery::Before { before, limit: limit + 1 },
        (None, Some(after)) => HistoryQuery::After { after, limit: limit + 1 },
        (None, None) => HistoryQuery::Latest { limit: limit + 1 },
    };
    check_access(deps, caller, &room).await?;
    let (events, has_more) = page(deps.store.history(&room, query).await?, limit as usize, &query);
    Ok(json!({"room": room, "events": events.iter().map(history_entry).collect::<Vec<_>>(), "hasMore": has_more}))
}

/// Trims a page fetched with one extra row: the extra row only says whether there is more.
fn page(mut events: Vec<RoomEvent>, limit: usize, query: &HistoryQuery) -> (Vec<RoomEvent>, bool) {
    let has_more = events.len() > limit;
    if has_more {
        match query {
            // Paging backwards keeps the newest `limit`; the extra row is the oldest.
            HistoryQuery::Latest { .. } | HistoryQuery::Before { .. } => {
                events.remove(0);
            }
            HistoryQuery::After { .. } => events.truncate(limit),
        }
    }
    (events, has_more)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadRequest {
    room: String,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    message_ids: Option<Vec<String>>,
}

/// `message:read {room, seq | messageIds}` → ack `{room, seq, messageIds}`; `message:read {room, userId, seq}` to
/// the room's other connections. The read watermark only moves forward.
pub async fn read(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let request: ReadRequest = parse_data(data)?;
    let room = RoomName::parse(request.room)?;
    let members = members_if_joined(deps, caller, &room).await?;
    let (seq, ids) = match (request.seq, request.message_ids) {
        (Some(seq), None) => (seq, Vec::new()),
        (None, Some(ids)) if !ids.is_empty() && ids.len() <= MAX_READ_IDS => {
            let mut highest = 0;
            for id in &ids {
                let event = deps
                    .store
                    .get_event(&room, id)
                    .await?
                    .ok_or_else(|| ActionError::not_found(format!("message {id} not found in {room}")))?;
                highest = highest.max(event.seq);
            }
            (highest, ids)
        }
        (None, Some(_)) => return Err(ActionError::invalid(format!("messageIds must hold 1 to {MAX_READ_IDS} ids"))),
        _ => return Err(ActionError::invalid("give seq or messageIds")),
    };
    let latest = deps.store.history(&room, HistoryQuery::Latest { limit: 1 }).await?.last().map(|e| e.seq).unwrap_or(0);
    if seq > latest {
        return Err(ActionError::invalid(format!("seq {seq} is beyond the last message ({latest})")));
    }
    let watermark = deps.store.mark_read(&caller.identity.user_id, &room, seq).await?;
    let frame = ServerFrame::room_event(
        events::MESSAGE_READ,
        room.as_str(),
        None,
        json!({"room": room, "userId": caller.identity.user_id, "seq": watermark, "readAt": now_iso()}),
    );
    let others = members.into_iter().map(|m| m.connection_id).filter(|c| c != caller.id()).collect();
    deps.deliver(others, &frame).await;
    Ok(json!({"room": room, "seq": watermark, "messageIds": ids}))
}

/// `typing:start` / `typing:stop {room}` → `{room, userId, name}` to the members who are not the sender. One query:
/// the member list both proves membership and gives the recipients.
pub async fn typing(deps: &Deps, caller: &Caller, data: Value, event: &'static str) -> ActionResult {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TypingRequest {
        room: String,
    }
    let request: TypingRequest = parse_data(data)?;
    let room = RoomName::parse(request.room)?;
    let members = members_if_joined(deps, caller, &room).await?;
    let user = &caller.identity.user_id;
    let frame = ServerFrame::room_event(
        event,
        room.as_str(),
        None,
        json!({"room": room, "userId": user, "name": caller.identity.name, "role": caller.identity.role}),
    );
    let others: Vec<_> = members.into_iter().filter(|m| &m.user_id != user).map(|m| m.connection_id).collect();
    deps.deliver(others, &frame).await;
    Ok(json!({"room": room}))
}
