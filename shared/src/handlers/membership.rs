//! `hello`, `room:join`, `room:leave`, `room:members`, and the two room checks every room action shares: who may
//! read a room ([`check_access`]) and who may write into it ([`members_if_publisher`]).

use std::collections::BTreeSet;

use super::Deps;
use super::caller::Caller;
use super::delivery::announce_user_left;
use super::errors::{ActionError, ActionResult};
use crate::auth::Identity;
use crate::ids::{RoomName, UserId};
use crate::protocol::payloads::{
    Connected, Joined, Left, MembersPage, MembersRequest, Participant, RoomRequest, UserJoined,
};
use crate::protocol::{ErrorCode, ServerFrame, events, now};
use crate::rooms::{Access, JoinFacts, RoomRule};
use crate::store::{HistoryQuery, JoinOutcome, Member, StoreError};

/// Most users listed in a `room:join` ack; `participantCount` gives the total and `room:members` pages the rest.
/// 200 user ids of at most 128 characters stay far below API Gateway's 128 KB route-response limit.
pub const MAX_JOIN_PARTICIPANTS: usize = 200;

/// `hello`: the welcome API Gateway does not let `$connect` send.
pub async fn hello(deps: &Deps, caller: &Caller) -> ActionResult<Connected> {
    let rooms = deps.store.connection_rooms(caller.id()).await?;
    Ok(Connected { connection_id: caller.id().clone(), user: caller.identity.profile(), rooms, server_time: now() })
}

/// Decides whether `identity` may read and join `room`: the one access check of the socket and the HTTP API.
/// A granted room nobody holds a grant on (the platform never opened it) answers `NOT_FOUND` ("Booking not found"),
/// any other refusal `FORBIDDEN`.
pub async fn check_access(deps: &Deps, identity: &Identity, room: &RoomName) -> Result<(), ActionError> {
    let auto = deps.config.role_rooms.auto_rooms(identity);
    let policy = &deps.config.room_policy;
    match policy.check_join(identity, &auto, room, JoinFacts::default()) {
        Access::Allowed => Ok(()),
        Access::Denied if policy.rule_for(room) == RoomRule::Presence => {
            Err(ActionError::forbidden(format!("subscribe to presence with presence:subscribe, not by joining {room}")))
        }
        Access::Denied => Err(ActionError::forbidden(format!("Unauthorized: you may not join {room}"))),
        Access::NeedsGrant => {
            if deps.store.is_granted(room, &identity.user_id).await? {
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

/// `room:join {room}` → ack [`Joined`]; `room:userJoined` to the other members when the user was not already there
/// through another connection. A connection may be in at most `MAX_ROOMS_PER_CONNECTION` rooms.
pub async fn join(deps: &Deps, caller: &Caller, request: RoomRequest) -> ActionResult<Joined> {
    let room = RoomName::parse(request.room)?;
    check_access(deps, &caller.identity, &room).await?;

    let max_rooms = deps.config.limits.max_rooms_per_connection;
    let joined = match deps.store.join_room_within(&caller.connection, &room, max_rooms).await? {
        JoinOutcome::Joined => true,
        JoinOutcome::AlreadyMember => false,
        JoinOutcome::RoomLimit => {
            return Err(ActionError::new(
                ErrorCode::RateLimited,
                format!("a connection may be in at most {max_rooms} rooms; leave one first"),
            ));
        }
    };
    let user = &caller.identity.user_id;
    let announces = deps.config.room_policy.announces_membership(&room);
    let participation = async { if announces { deps.store.record_participation(user, &room).await } else { Ok(()) } };
    // Read after the join, so the latest `seq` includes every event stored before this connection could receive
    // pushes; the other members are everyone but this connection. The read does not depend on the participation
    // marker, so both run at once: a Lambda is billed for every millisecond it waits (bench `cloud-durations`).
    let (participation, state) = tokio::join!(participation, deps.store.room_state(&room));
    participation?;
    let state = state?;
    tracing::info!(room = %room, joined, "room join");
    let others: Vec<&Member> = state.members.iter().filter(|m| &m.connection_id != caller.id()).collect();
    let user_was_present = others.iter().any(|m| &m.user_id == user);
    if joined && !user_was_present && announces {
        let joined_event = UserJoined { room: room.clone(), user_id: user.clone(), user: caller.identity.profile() };
        let frame = ServerFrame::typed_room_event(events::ROOM_USER_JOINED, room.as_str(), &joined_event);
        deps.deliver(others.iter().map(|m| m.connection_id.clone()).collect(), &frame).await;
    }

    let mut users: BTreeSet<&UserId> = others.iter().map(|m| &m.user_id).collect();
    users.insert(user);
    let participant_count = users.len() as u64;
    let participants =
        users.into_iter().take(MAX_JOIN_PARTICIPANTS).map(|id| Participant { user_id: id.clone() }).collect();
    Ok(Joined { room, joined, participants, participant_count, last_seq: state.latest_seq })
}

/// The room's latest durable `seq`, 0 before anything was stored.
pub async fn last_seq(deps: &Deps, room: &RoomName) -> Result<u64, ActionError> {
    Ok(deps.store.history(room, HistoryQuery::Latest { limit: 1 }).await?.last().map(|e| e.seq).unwrap_or(0))
}

/// `room:leave {room}` → ack [`Left`]; `room:userLeft` to the others when no connection of the user remains.
pub async fn leave(deps: &Deps, caller: &Caller, request: RoomRequest) -> ActionResult<Left> {
    let room = RoomName::parse(request.room)?;
    if room == RoomName::for_user(&caller.identity.user_id) {
        return Err(ActionError::new(ErrorCode::Forbidden, "a connection cannot leave its own user room"));
    }
    let left = deps.store.leave_room(caller.id(), &room).await?;
    tracing::info!(room = %room, left, "room leave");
    if left {
        announce_user_left(deps, &room, &caller.identity.user_id, None, Vec::new()).await?;
    }
    Ok(Left { room, left })
}

/// `room:members {room, cursor?, limit?}` → ack [`MembersPage`]: one page of the users in a room the caller may
/// join, in connection order.
pub async fn members(deps: &Deps, caller: &Caller, request: MembersRequest) -> ActionResult<MembersPage> {
    let room = RoomName::parse(request.room)?;
    let max = deps.config.limits.max_page;
    let limit = request.limit.unwrap_or(max.min(50));
    if limit == 0 || limit > max {
        return Err(ActionError::invalid(format!("limit must be between 1 and {max}")));
    }
    check_access(deps, &caller.identity, &room).await?;
    let page = deps.store.room_members_page(&room, request.cursor.as_deref(), limit).await.map_err(cursor_error)?;
    let mut seen = BTreeSet::new();
    let participants = page
        .items
        .into_iter()
        .filter(|m| seen.insert(m.user_id.clone()))
        .map(|m| Participant { user_id: m.user_id })
        .collect();
    Ok(MembersPage { room, participants, next_cursor: page.next })
}

/// A cursor the store cannot read is the client's mistake; any other store failure is ours.
pub fn cursor_error(error: StoreError) -> ActionError {
    match error {
        StoreError::InvalidCursor => {
            ActionError::new(ErrorCode::InvalidCursor, "cursor is not one this listing handed out")
        }
        other => other.into(),
    }
}

/// The write check of every client write into a room (`message:send`, `typing:*`, `message:read`): the room's
/// publish rule must let members write, and the caller's connection must be in the room. Returns the room's members,
/// which the caller needs next for fan-out, so the check costs no extra query.
pub async fn members_if_publisher(deps: &Deps, caller: &Caller, room: &RoomName) -> Result<Vec<Member>, ActionError> {
    if !deps.config.room_policy.may_publish(room) {
        return Err(ActionError::forbidden(format!(
            "{room} is written by the platform only; clients cannot post there"
        )));
    }
    let members = deps.store.room_members(room).await?;
    if members.iter().any(|m| &m.connection_id == caller.id()) {
        Ok(members)
    } else {
        Err(ActionError::forbidden(format!("join {room} first")))
    }
}
