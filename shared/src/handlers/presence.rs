//! Presence: who is online, away, busy or in a call, and who may know it.
//!
//! A user is online while any of their connections is open; the status they chose (`away`, `busy`…) holds across
//! all their connections and is stored apart from the connections themselves. Subscribers of a user are the members
//! of the room `presence:{user}`, so a status change is one room fan-out.
//!
//! Visibility rule: a user's presence is visible to themselves and to users they share a private conversation with
//! now: a granted room (`booking:`, `visit:`…) both may enter today, or a `chat:a:b` pair in which the other user
//! has written or is connected. Public topics, role rooms and rooms left long ago do not count, so joining a busy
//! topic reveals nobody. The same rule decides who may call whom ([`super::calls`]).

use std::collections::HashSet;

use super::Deps;
use super::caller::Caller;
use super::errors::{ActionError, ActionResult, HandlerError};
use crate::auth::Identity;
use crate::ids::{RoomName, UserId};
use crate::protocol::payloads::{Presence, Presences, SetPresence, Subscribed, Unsubscribed, UsersRequest};
use crate::protocol::{ErrorCode, ServerFrame, events, timestamp};
use crate::rooms::RoomRule;
use crate::store::{Member, PresenceRecord, PresenceStatus, UserPresence, WentOffline};

const MAX_USERS_PER_REQUEST: usize = 50;
const MAX_CUSTOM_STATUS_CHARS: usize = 140;
/// How many of a user's rooms (in name order) the visibility rule looks through for a shared conversation.
const MAX_ROOMS_CONSIDERED: usize = 500;

/// Called after `$connect` recorded the user's first connection (none was open before it): brings them online for
/// their subscribers, from what `$connect` read before recording it.
pub async fn on_first_connect(deps: &Deps, caller: &Caller, before: UserPresence) {
    let user = &caller.identity.user_id;
    let payload = presence_payload(user, before.stored.as_ref(), true);
    announce_to(deps, user, before.subscribers, payload).await;
}

/// Called when a user's last connection is gone: the store already stamped last-seen (and cleared a lingering
/// `in_call`, since a user without connections is in no call); this tells the subscribers the user is offline.
pub async fn on_last_disconnect(deps: &Deps, user: &UserId, offline: WentOffline) {
    let payload = presence_payload(user, Some(&offline.presence), false);
    announce_to(deps, user, offline.subscribers, payload).await;
}

/// Sets the stored status of a user (used by the call flow for `in_call`) and tells subscribers.
pub async fn set_status(deps: &Deps, user: &UserId, status: PresenceStatus) -> Result<(), HandlerError> {
    let stored = deps.store.get_presence(std::slice::from_ref(user)).await?.into_iter().next();
    let record = PresenceRecord {
        user_id: user.clone(),
        status,
        custom_status: stored.and_then(|p| p.custom_status),
        last_seen: chrono::Utc::now(),
    };
    deps.store.set_presence(&record).await?;
    let online = !deps.store.user_connections(user).await?.is_empty();
    announce(deps, user, presence_payload(user, Some(&record), online)).await
}

fn presence_payload(user: &UserId, stored: Option<&PresenceRecord>, online: bool) -> Presence {
    let status = match (online, stored.map(|p| p.status)) {
        (false, _) => PresenceStatus::Offline,
        (true, Some(PresenceStatus::Offline) | None) => PresenceStatus::Online,
        (true, Some(status)) => status,
    };
    Presence {
        user_id: user.clone(),
        status,
        custom_status: stored.and_then(|p| p.custom_status.clone()),
        last_seen: stored.map(|p| timestamp(&p.last_seen)),
        online,
    }
}

async fn announce(deps: &Deps, user: &UserId, payload: Presence) -> Result<(), HandlerError> {
    let subscribers = deps.store.room_members(&RoomName::presence_of(user)).await?;
    announce_to(deps, user, subscribers, payload).await;
    Ok(())
}

async fn announce_to(deps: &Deps, user: &UserId, subscribers: Vec<Member>, payload: Presence) {
    let room = RoomName::presence_of(user);
    let frame = ServerFrame::typed_room_event(events::PRESENCE_CHANGED, room.as_str(), &payload);
    deps.deliver(subscribers.into_iter().map(|m| m.connection_id).collect(), &frame).await;
}

/// `presence:set {status, customStatus?}` with status online, away, busy or in_call → ack with the new presence.
pub async fn set(deps: &Deps, caller: &Caller, request: SetPresence) -> ActionResult<Presence> {
    let status = PresenceStatus::parse(&request.status)
        .filter(|s| *s != PresenceStatus::Offline)
        .ok_or_else(|| ActionError::invalid("status must be one of online, away, busy, in_call"))?;
    let custom_status = request.custom_status.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if custom_status.as_ref().is_some_and(|s| s.chars().count() > MAX_CUSTOM_STATUS_CHARS) {
        return Err(ActionError::invalid(format!("customStatus is longer than {MAX_CUSTOM_STATUS_CHARS} characters")));
    }
    let user = &caller.identity.user_id;
    let record = PresenceRecord { user_id: user.clone(), status, custom_status, last_seen: chrono::Utc::now() };
    deps.store.set_presence(&record).await?;
    let payload = presence_payload(user, Some(&record), true);
    announce(deps, user, payload.clone()).await?;
    Ok(payload)
}

fn parse_users(request: UsersRequest) -> Result<Vec<UserId>, ActionError> {
    if request.user_ids.is_empty() || request.user_ids.len() > MAX_USERS_PER_REQUEST {
        return Err(ActionError::invalid(format!("userIds must hold 1 to {MAX_USERS_PER_REQUEST} ids")));
    }
    let mut seen = HashSet::new();
    let mut users = Vec::new();
    for raw in request.user_ids {
        let user =
            UserId::parse(raw.clone()).map_err(|_| ActionError::invalid(format!("`{raw}` is not a valid user id")))?;
        if seen.insert(user.clone()) {
            users.push(user);
        }
    }
    Ok(users)
}

/// The private conversations `viewer` may enter now: the candidates for sharing one with someone else. Revoked
/// grants leave participation records behind, so every granted room is checked against today's grants (or the
/// viewer's token).
async fn conversations_of(deps: &Deps, viewer: &Identity) -> Result<Vec<RoomName>, HandlerError> {
    let policy = &deps.config.room_policy;
    // Read page by page up to a bound, so a user who took part in thousands of rooms cannot make every presence
    // or call request cost thousands of reads.
    let mut rooms = Vec::new();
    let mut cursor: Option<String> = None;
    while rooms.len() < MAX_ROOMS_CONSIDERED {
        let page = deps.store.user_rooms_page(&viewer.user_id, cursor.as_deref(), 100).await?;
        rooms.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    rooms.extend(viewer.rooms.iter().cloned());
    rooms.sort();
    rooms.dedup();
    let mut current = Vec::new();
    for room in rooms.into_iter().filter(|room| policy.is_private_conversation(room)) {
        let may_enter = match policy.rule_for(&room) {
            RoomRule::Pair => room.ids().any(|id| id == viewer.user_id.as_str()),
            _ => viewer.rooms.contains(&room) || deps.store.is_granted(&room, &viewer.user_id).await?,
        };
        if may_enter {
            current.push(room);
        }
    }
    Ok(current)
}

/// Whether `user` shares one of `viewer`'s current conversations: holds a grant on the granted room or is connected
/// to it, or is the other side of a chat pair in which they have written or are connected. A pair room alone is not
/// enough, since anyone may open `chat:me:you` with anyone.
async fn shares_one(
    deps: &Deps,
    conversations: &[RoomName],
    viewer: &UserId,
    user: &UserId,
) -> Result<bool, HandlerError> {
    let policy = &deps.config.room_policy;
    for room in conversations {
        let candidate = match policy.rule_for(room) {
            RoomRule::Pair => room.ids().any(|id| id == user.as_str()),
            _ => true,
        };
        if !candidate {
            continue;
        }
        let connected = deps.store.room_members(room).await?.iter().any(|m| &m.user_id == user);
        let shared = connected
            || match policy.rule_for(room) {
                RoomRule::Pair => deps.store.count_unread(room, 0, viewer).await? > 0,
                _ => deps.store.is_granted(room, user).await?,
            };
        if shared {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Splits `users` into those `viewer` may see (and call) and those it may not.
pub async fn partition_visible(
    deps: &Deps,
    viewer: &Identity,
    users: Vec<UserId>,
) -> Result<(Vec<UserId>, Vec<UserId>), HandlerError> {
    let conversations = conversations_of(deps, viewer).await?;
    let (mut visible, mut hidden) = (Vec::new(), Vec::new());
    for user in users {
        let sees = user == viewer.user_id || shares_one(deps, &conversations, &viewer.user_id, &user).await?;
        if sees { visible.push(user) } else { hidden.push(user) }
    }
    Ok((visible, hidden))
}

async fn presences(deps: &Deps, users: &[UserId]) -> Result<Vec<Presence>, HandlerError> {
    let stored = deps.store.get_presence(users).await?;
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let online = !deps.store.user_connections(user).await?.is_empty();
        out.push(presence_payload(user, stored.iter().find(|p| &p.user_id == user), online));
    }
    Ok(out)
}

/// `presence:get {userIds}` → ack [`Presences`].
pub async fn get(deps: &Deps, caller: &Caller, request: UsersRequest) -> ActionResult<Presences> {
    let users = parse_users(request)?;
    let (visible, hidden) = partition_visible(deps, &caller.identity, users).await?;
    Ok(Presences { presences: presences(deps, &visible).await?, forbidden: hidden })
}

/// `presence:subscribe {userIds}` → ack [`Subscribed`]; later changes arrive as `presence:changed`.
pub async fn subscribe(deps: &Deps, caller: &Caller, request: UsersRequest) -> ActionResult<Subscribed> {
    let users = parse_users(request)?;
    let (visible, hidden) = partition_visible(deps, &caller.identity, users).await?;
    // Presence subscriptions are room memberships, so they count against the connection's room limit.
    let max = deps.config.limits.max_rooms_per_connection;
    let current = deps.store.connection_rooms(caller.id()).await?;
    let new = visible.iter().filter(|user| !current.contains(&RoomName::presence_of(user))).count();
    if current.len() + new > max {
        return Err(ActionError::new(
            ErrorCode::RateLimited,
            format!("a connection may be in at most {max} rooms, presence subscriptions included"),
        ));
    }
    for user in &visible {
        deps.store.join_room(&caller.connection, &RoomName::presence_of(user)).await?;
    }
    let presences = presences(deps, &visible).await?;
    Ok(Subscribed { subscribed: visible, forbidden: hidden, presences })
}

/// `presence:unsubscribe {userIds}` → ack [`Unsubscribed`].
pub async fn unsubscribe(deps: &Deps, caller: &Caller, request: UsersRequest) -> ActionResult<Unsubscribed> {
    let users = parse_users(request)?;
    for user in &users {
        deps.store.leave_room(caller.id(), &RoomName::presence_of(user)).await?;
    }
    Ok(Unsubscribed { unsubscribed: users })
}
