//! Messages in rooms: `message:send`, `message:history`, `message:read`, and the ephemeral `typing:start/stop`.
//!
//! Messages are durable room events with a per-room `seq`; a retried send with the same `clientMsgId` is stored and
//! delivered once. Typing indicators are never stored and never echoed to the sender's own connections. History
//! paging ([`history_page`]) and marking read ([`mark_read`]) exist once and serve the socket and the HTTP API.

use serde_json::Value;

use super::Deps;
use super::caller::Caller;
use super::errors::{ActionError, ActionResult};
use super::limits::{self, Verdict};
use super::membership::{check_access, last_seq, members_if_publisher};
use crate::auth::Identity;
use crate::ids::{ConnectionId, RoomName};
use crate::protocol::payloads::{
    ChatMessage, HistoryEntry, HistoryPage, HistoryRequest, MessageBody, MessagesRead, ReadMessages, ReadReceipt,
    RoomRequest, SendMessage, Sent, Typing, TypingAck,
};
use crate::protocol::{ErrorCode, ServerFrame, events, now, timestamp, to_data};
use crate::store::{HistoryQuery, NewRoomEvent, RoomEvent};

const MAX_CLIENT_MSG_ID_LEN: usize = 64;
const MAX_METADATA_BYTES: usize = 4096;
const MAX_READ_IDS: usize = 100;
/// The default page size of `message:history` and `GET /rooms/{room}/messages`.
pub const DEFAULT_HISTORY_PAGE: u32 = 50;
/// Most bytes of events one history page carries. API Gateway refuses route responses and pushes over 128 KB; the
/// rest of that budget is the ack envelope. A page stops early at this budget and says `hasMore`.
pub const HISTORY_PAGE_BYTES: usize = 96 * 1024;

/// `message:send {room, content, clientMsgId?, metadata?}` → ack [`Sent`]; `message:new` with the message and its
/// `seq` to every other connection in the room.
pub async fn send(deps: &Deps, caller: &Caller, request: SendMessage) -> ActionResult<Sent> {
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
    let members = members_if_publisher(deps, caller, &room).await?;

    let created_at = chrono::Utc::now();
    let body = MessageBody {
        id: uuid::Uuid::now_v7().to_string(),
        room: room.clone(),
        sender: caller.identity.profile(),
        content: content.to_owned(),
        client_msg_id: request.client_msg_id.clone(),
        metadata: request.metadata.unwrap_or(Value::Null),
        created_at: timestamp(&created_at),
        updated_at: timestamp(&created_at),
    };
    // The store records the sender's participation (the conversations list) before the message, so a failure
    // leaves at most that idempotent marker, never a stored message the client was told had failed.
    let appended = deps
        .store
        .append_message(NewRoomEvent {
            room: room.clone(),
            id: body.id.clone(),
            event: events::MESSAGE_NEW.to_owned(),
            data: to_data(&body),
            sender: Some(caller.identity.user_id.clone()),
            client_msg_id: request.client_msg_id,
            created_at,
        })
        .await?;
    let stored = chat_message(&appended.event)?;
    if appended.duplicate {
        tracing::info!(room = %room, seq = appended.event.seq, "duplicate send answered from the store");
    } else {
        let frame =
            ServerFrame::room_event(events::MESSAGE_NEW, room.as_str(), Some(appended.event.seq), to_data(&stored));
        let others = members.into_iter().map(|m| m.connection_id).filter(|c| c != caller.id()).collect();
        // The `/health` counter is written while the posts are in flight, not after them: neither waits for the
        // other, and a Lambda is billed for every millisecond it waits (bench `cloud-durations`).
        let count = async {
            if !appended.counted {
                deps.count_message().await;
            }
        };
        let (report, ()) = tokio::join!(deps.deliver(others, &frame), count);
        tracing::info!(room = %room, seq = appended.event.seq, delivered = report.delivered.len(), "message sent");
    }
    Ok(Sent { message: stored, duplicate: appended.duplicate })
}

/// A stored chat message as clients see it. The stored data was written from a [`MessageBody`]; reading it back
/// fails only if the record was altered outside Bellhop, which is our fault, not the client's.
fn chat_message(event: &RoomEvent) -> Result<ChatMessage, ActionError> {
    let body: MessageBody = serde_json::from_value(event.data.clone()).map_err(|error| {
        tracing::error!(room = %event.room, seq = event.seq, %error, "stored message does not parse");
        ActionError::new(ErrorCode::Internal, "the stored message is unreadable")
    })?;
    Ok(ChatMessage { body, seq: event.seq })
}

/// One history entry as clients receive it.
pub fn history_entry(event: &RoomEvent) -> HistoryEntry {
    HistoryEntry {
        seq: event.seq,
        id: event.id.clone(),
        event: event.event.clone(),
        data: event.data.clone(),
        created_at: timestamp(&event.created_at),
    }
}

/// `message:history {room, beforeSeq? | afterSeq?, limit?}` → ack [`HistoryPage`] in ascending `seq`.
pub async fn history(deps: &Deps, caller: &Caller, request: HistoryRequest) -> ActionResult<HistoryPage> {
    let room = RoomName::parse(request.room)?;
    let window = HistoryWindow { before: request.before_seq, after: request.after_seq, limit: request.limit };
    history_page(deps, &caller.identity, room, window).await
}

/// Which part of a room's history to read: before a `seq`, after one, or the newest; `limit` defaults to
/// [`DEFAULT_HISTORY_PAGE`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryWindow {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub limit: Option<u32>,
}

/// A page of a room's history for a user allowed to read the room: the one implementation behind the socket's
/// `message:history` and the HTTP API's `GET /rooms/{room}/messages`.
pub async fn history_page(
    deps: &Deps,
    identity: &Identity,
    room: RoomName,
    window: HistoryWindow,
) -> ActionResult<HistoryPage> {
    let max = deps.config.limits.max_page;
    let limit = window.limit.unwrap_or(DEFAULT_HISTORY_PAGE.min(max));
    if limit == 0 || limit > max {
        return Err(ActionError::invalid(format!("limit must be between 1 and {max}")));
    }
    // One extra row says whether there is more.
    let query = match (window.before, window.after) {
        (Some(_), Some(_)) => return Err(ActionError::invalid("give beforeSeq or afterSeq, not both")),
        (Some(before), None) => HistoryQuery::Before { before, limit: limit + 1 },
        (None, Some(after)) => HistoryQuery::After { after, limit: limit + 1 },
        (None, None) => HistoryQuery::Latest { limit: limit + 1 },
    };
    check_access(deps, identity, &room).await?;
    let events = deps.store.history(&room, query).await?;
    let (events, has_more) = page(events.iter().map(history_entry).collect(), limit as usize, &query);
    Ok(HistoryPage { room, events, has_more })
}

/// Trims a page fetched with one extra row to `limit` entries and to [`HISTORY_PAGE_BYTES`], keeping the entries
/// nearest the cursor: the newest when paging backwards, the oldest when recovering forwards. At least one entry is
/// kept, so a page always makes progress.
fn page(mut entries: Vec<HistoryEntry>, limit: usize, query: &HistoryQuery) -> (Vec<HistoryEntry>, bool) {
    let backwards = matches!(query, HistoryQuery::Latest { .. } | HistoryQuery::Before { .. });
    if backwards {
        entries.reverse();
    }
    let mut has_more = entries.len() > limit;
    entries.truncate(limit);
    let mut bytes = 0;
    let mut keep = 0;
    for entry in &entries {
        bytes += serde_json::to_vec(entry).map(|v| v.len()).unwrap_or(0) + 1;
        if keep > 0 && bytes > HISTORY_PAGE_BYTES {
            has_more = true;
            break;
        }
        keep += 1;
    }
    entries.truncate(keep);
    if backwards {
        entries.reverse();
    }
    (entries, has_more)
}

/// `message:read {room, seq | messageIds}` → ack [`MessagesRead`]; `message:read {room, userId, seq}` to the room's
/// connections.
pub async fn read(deps: &Deps, caller: &Caller, request: ReadMessages) -> ActionResult<MessagesRead> {
    let room = RoomName::parse(request.room)?;
    let ids = match (&request.seq, request.message_ids) {
        (Some(_), None) => Vec::new(),
        (None, Some(ids)) if !ids.is_empty() && ids.len() <= MAX_READ_IDS => ids,
        (None, Some(_)) => return Err(ActionError::invalid(format!("messageIds must hold 1 to {MAX_READ_IDS} ids"))),
        _ => return Err(ActionError::invalid("give seq or messageIds")),
    };
    check_may_mark_read(deps, &caller.identity, &room).await?;
    let seq = match request.seq {
        Some(seq) => seq,
        None => {
            let mut highest = 0;
            for id in &ids {
                let event = deps
                    .store
                    .get_event(&room, id)
                    .await?
                    .ok_or_else(|| ActionError::not_found(format!("message {id} not found in {room}")))?;
                highest = highest.max(event.seq);
            }
            highest
        }
    };
    let watermark = record_read(deps, &caller.identity, &room, seq, Some(caller.id())).await?;
    Ok(MessagesRead { room, seq: watermark, message_ids: ids })
}

/// Marks `room` read up to `seq` for `identity` and sends the read receipt: the one implementation behind
/// `message:read` and `POST /messages/read`. Returns the new watermark, which never moves backwards.
pub async fn mark_read(
    deps: &Deps,
    identity: &Identity,
    room: &RoomName,
    seq: u64,
    except: Option<&ConnectionId>,
) -> ActionResult<u64> {
    check_may_mark_read(deps, identity, room).await?;
    record_read(deps, identity, room, seq, except).await
}

/// A read receipt is a write into the room, so the room must accept its members' writes; being allowed to read it is
/// enough otherwise, and no joined socket is needed (an HTTP caller has none).
async fn check_may_mark_read(deps: &Deps, identity: &Identity, room: &RoomName) -> Result<(), ActionError> {
    if !deps.config.room_policy.may_publish(room) {
        return Err(ActionError::forbidden(format!("{room} is written by the platform only; it has no read receipts")));
    }
    check_access(deps, identity, room).await
}

/// Stores the watermark and tells the room's connections, except `except` (the reader's own socket).
async fn record_read(
    deps: &Deps,
    identity: &Identity,
    room: &RoomName,
    seq: u64,
    except: Option<&ConnectionId>,
) -> ActionResult<u64> {
    let latest = last_seq(deps, room).await?;
    if seq > latest {
        return Err(ActionError::invalid(format!("seq {seq} is beyond the last message ({latest})")));
    }
    let user = &identity.user_id;
    let watermark = deps.store.mark_read(user, room, seq).await?;
    let receipt = ReadReceipt { room: room.clone(), user_id: user.clone(), seq: watermark, read_at: now() };
    let frame = ServerFrame::typed_room_event(events::MESSAGE_READ, room.as_str(), &receipt);
    let members = deps.store.room_members(room).await?;
    let targets = members.into_iter().map(|m| m.connection_id).filter(|c| Some(c) != except).collect();
    deps.deliver(targets, &frame).await;
    Ok(watermark)
}

/// `typing:start` / `typing:stop {room}` → `{room, userId, name, role}` to the members who are not the sender. One
/// query: the member list both proves membership and gives the recipients.
pub async fn typing(
    deps: &Deps,
    caller: &Caller,
    request: RoomRequest,
    event: &'static str,
) -> ActionResult<TypingAck> {
    let room = RoomName::parse(request.room)?;
    let members = members_if_publisher(deps, caller, &room).await?;
    // A burst of typing events costs at most one fan-out per interval; the rest are acknowledged as coalesced.
    if limits::typing(deps, caller.id(), &room, event).await != Verdict::Allowed {
        return Ok(TypingAck { room, coalesced: true });
    }
    let user = &caller.identity.user_id;
    let typing = Typing {
        room: room.clone(),
        user_id: user.clone(),
        name: caller.identity.name.clone(),
        role: caller.identity.role.clone(),
    };
    let frame = ServerFrame::typed_room_event(event, room.as_str(), &typing);
    let others: Vec<_> = members.into_iter().filter(|m| &m.user_id != user).map(|m| m.connection_id).collect();
    deps.deliver(others, &frame).await;
    Ok(TypingAck { room, coalesced: false })
}
