//! `hello`, `room:join`, `room:leave`, and the access check every room action shares.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Deps;
use super::caller::Caller;
use super::message::{ActionError, ActionResult};
use crate::protocol::{ErrorCode, ServerFrame, events, parse_data};
use crate::rooms::{Access, JoinFacts, RoomName, RoomRule};
use crate::store::HistoryQuery;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomRequest {
    room: String,
}

/// `hello`: the welcome API Gateway does not let `$connect` send.
pub async fn hello(deps: &Deps, caller: &Caller) -> ActionResult {
    let rooms = deps.store.connection_rooms(caller.id()).await?;
    Ok(json!({
        "connectionId": caller.id(),
        "user": caller.identity.profile(),
        "rooms": rooms,
        "serverTime": super::now_iso(),
    }))
}

/// Decides whether the caller may read and join `room`, answering `NOT_FOUND` for a granted room nobody holds a
/// grant on (the platform never opened it) and `FORBIDDEN` otherwise.
pub async fn check_access(deps: &Deps, caller: &Caller, room: &RoomName) -> Result<(), ActionError> {
    let auto = deps.config.role_rooms.auto_rooms(&caller.identity);
    let policy = &deps.config.room_policy;
    match policy.check_join(&caller.identity, &auto, room, JoinFacts::default()) {
        Access::Allowed => Ok(()),
        Access::Denied if policy.rule_for(room) == RoomRule::Presence => {
            Err(ActionError::forbidden(format!("subscribe to presence with presence:subscribe, not by joining {room}")))
        }
        Access::Denied => Err(ActionError::forbidden(format!("Unauthorized: you may not join {room}"))),
        Access::NeedsGrant => {
            if deps.store.is_granted(room, &caller.identity.user_id).await? {
                Ok(())
            } else if deps.store.room_grants(room).await?.is_empty() {
                Err(ActionError::not_found(format!("{} not found", describe(room))))
            } else {
                Err(ActionError::forbidden(format!("Unauthorized: you are not a participant of {room}")))
            }
        }
    }
}

/// "Booking not found" reads better than "booking:42 not found" for the common kinds.
fn describe(room: &RoomName) -> String {
    let kind = room.kind();
    let mut chars = kind.chars();
    match chars.next() {
        Some(first) if room.ids().next().is_some() => format!("{}{} {}", first.to_uppercase(), chars.as_str(), room),
        _ => format!("Room {room}"),
    }
}

/// Rooms whose joins and leaves are announced to the other members.
pub fn announces_membership(deps: &Deps, room: &RoomName) -> bool {
    matches!(deps.config.room_policy.rule_for(room), RoomRule::Granted | RoomRule::Pair | RoomRule::Public)
}

/// `room:join {room}` → ack `{room, joined, participants, lastSeq}`; `room:userJoined` to the other members when
/// the user was not already there through another connection.
pub async fn join(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let request: RoomRequest = parse_data(data)?;
    let room = RoomName::parse(request.room)?;
    check_access(deps, caller, &room).await?;

    let user = &caller.identity.user_id;
    let before = deps.store.room_members(&room).await?;
    let user_was_present = before.iter().any(|m| &m.user_id == user);
    let joined = deps.store.join_room(&caller.connection, &room).await?;
    if announces_membership(deps, &room) {
        deps.store.record_participation(user, &room).await?;
    }
    tracing::info!(room = %room, joined, "room join");

    if joined && !user_was_present && announces_membership(deps, &room) {
        let frame = ServerFrame::room_event(
            events::ROOM_USER_JOINED,
            room.as_str(),
            None,
            json!({"room": room, "userId": user, "user": caller.identity.profile()}),
        );
        let others = before.iter().map(|m| m.connection_id.clone()).collect();
        deps.deliver(others, &frame).await;
    }

    let mut participants: BTreeSet<&str> = before.iter().map(|m| m.user_id.as_str()).collect();
    participants.insert(user.as_str());
    let last_seq =
        deps.store.history(&room, HistoryQuery::Latest { limit: 1 }).await?.last().map(|e| e.seq).unwrap_or(0);
    Ok(json!({
        "room": room,
        "joined": joined,
        "participants": participants.into_iter().map(|id| json!({"userId": id})).collect::<Vec<_>>(),
        "lastSeq": last_seq,
    }))
}

/// `room:leave {room}` → ack `{room, left}`; `room:userLeft` to the others when no connection of the user remains.
pub async fn leave(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let request: RoomRequest = parse_data(data)?;
    let room = RoomName::parse(request.room)?;
    if room == RoomName::for_user(&caller.identity.user_id) {
        return Err(ActionError::new(ErrorCode::Forbidden, "a connection cannot leave its own user room"));
    }
    let left = deps.store.leave_room(caller.id(), &room).await?;
    tracing::info!(room = %room, left, "room leave");
    if left && announces_membership(deps, &room) {
        let members = deps.store.room_members(&room).await?;
        if !members.iter().any(|m| m.user_id == caller.identity.user_id) {
            let frame = ServerFrame::room_event(
                events::ROOM_USER_LEFT,
                room.as_str(),
                None,
                json!({"room": room, "userId": caller.identity.user_id}),
            );
            deps.deliver(members.into_iter().map(|m| m.connection_id).collect(), &frame).await;
        }
    }
    Ok(json!({"room": room, "left": left}))
}

/// `room:members {room, cursor?, limit?}` → ack `{room, participants, nextCursor}`: one page of the users in a
/// room the caller may join.
pub async fn members(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let request: crate::protocol::payloads::MembersRequest = parse_data(data)?;
    let room = RoomName::parse(request.room)?;
    let max = deps.config.limits.max_page;
    let limit = request.limit.unwrap_or(max.min(50));
    if limit == 0 || limit > max {
        return Err(ActionError::invalid(format!("limit must be between 1 and {max}")));
    }
    check_access(deps, caller, &room).await?;
    let mut members = deps.store.room_members(&room).await?;
    members.sort();
    let start = match &request.cursor {
        Some(cursor) => members.partition_point(|m| m.connection_id.as_str() <= cursor.as_str()),
        None => 0,
    };
    let page: Vec<_> = members.iter().skip(start).take(limit as usize).collect();
    let next_cursor =
        if start + page.len() < members.len() { page.last().map(|m| m.connection_id.to_string()) } else { None };
    let mut users: Vec<&str> = page.iter().map(|m| m.user_id.as_str()).collect();
    users.dedup();
    Ok(json!({
        "room": room,
        "participants": users.into_iter().map(|id| json!({"userId": id})).collect::<Vec<_>>(),
        "nextCursor": next_cursor,
    }))
}

/// Fails with `FORBIDDEN` unless the caller's connection is in the room. Returns the room's members, which the
/// caller usually needs next for fan-out, so membership costs no extra query.
pub async fn members_if_joined(
    deps: &Deps,
    caller: &Caller,
    room: &RoomName,
) -> Result<Vec<crate::store::Member>, ActionError> {
    let members = deps.store.room_members(room).await?;
    if members.iter().any(|m| &m.connection_id == caller.id()) {
        Ok(members)
    } else {
        Err(ActionError::forbidden(format!("join {room} first")))
    }
}
