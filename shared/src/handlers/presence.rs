//! Presence: who is online, away, busy or in a call, and who may know it.
//!
//! A user is online while any of their connections is open; the status they chose (`away`, `busy`…) holds across
//! all their connections and is stored apart from the connections themselves. Subscribers of a user are the members
//! of the room `presence:{user}`, so a status change is one room fan-out.
//!
//! Visibility rule: a user's presence is visible to themselves and to users who share a room with them — a room
//! either holds a grant on or has taken part in, or a room both are connected to right now. Personal (`user:`) and
//! presence rooms do not count.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::Caller;
use super::chat::iso;
use super::message::{ActionError, ActionResult};
use super::{Deps, HandlerError};
use crate::ids::UserId;
use crate::protocol::{ServerFrame, events, parse_data};
use crate::rooms::RoomName;
use crate::store::{PresenceRecord, PresenceStatus};

const MAX_USERS_PER_REQUEST: usize = 50;
const MAX_CUSTOM_STATUS_CHARS: usize = 140;

/// Called after `$connect`: the user's first connection brings them online for their subscribers.
pub async fn on_connected(deps: &Deps, caller: &Caller) -> Result<(), HandlerError> {
    let user = &caller.identity.user_id;
    if deps.store.user_connections(user).await?.len() == 1 {
        let stored = deps.store.get_presence(std::slice::from_ref(user)).await?.into_iter().next();
        let payload = presence_payload(user, stored.as_ref(), true);
        announce(deps, user, payload).await?;
    }
    Ok(())
}

/// Called when a user's last connection is gone: stamps last-seen and tells subscribers the user is offline.
/// A lingering `in_call` is cleared, since a user without connections is in no call.
pub async fn on_last_disconnect(deps: &Deps, user: &UserId) -> Result<(), HandlerError> {
    let stored = deps.store.get_presence(std::slice::from_ref(user)).await?.into_iter().next();
    let record = PresenceRecord {
        user_id: user.clone(),
        status: match stored.as_ref().map(|p| p.status) {
            Some(PresenceStatus::InCall | PresenceStatus::Offline) | None => PresenceStatus::Online,
            Some(status) => status,
        },
        custom_status: stored.and_then(|p| p.custom_status),
        last_seen: chrono::Utc::now(),
    };
    deps.store.set_presence(&record).await?;
    announce(deps, user, presence_payload(user, Some(&record), false)).await
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

fn presence_payload(user: &UserId, stored: Option<&PresenceRecord>, online: bool) -> Value {
    let status = match (online, stored.map(|p| p.status)) {
        (false, _) => PresenceStatus::Offline,
        (true, Some(PresenceStatus::Offline) | None) => PresenceStatus::Online,
        (true, Some(status)) => status,
    };
    json!({
        "userId": user,
        "status": status.as_str(),
        "customStatus": stored.and_then(|p| p.custom_status.clone()),
        "lastSeen": stored.map(|p| iso(&p.last_seen)),
        "online": online,
    })
}

async fn announce(deps: &Deps, user: &UserId, payload: Value) -> Result<(), HandlerError> {
    let room = RoomName::presence_of(user);
    let subscribers = deps.store.room_members(&room).await?;
    let frame = ServerFrame::room_event(events::PRESENCE_CHANGED, room.as_str(), None, payload);
    deps.deliver(subscribers.into_iter().map(|m| m.connection_id).collect(), &frame).await;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetRequest {
    status: String,
    #[serde(default)]
    custom_status: Option<String>,
}

/// `presence:set {status, customStatus?}` with status online, away, busy or in_call → ack with the new presence.
pub async fn set(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let request: SetRequest = parse_data(data)?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UsersRequest {
    user_ids: Vec<String>,
}

fn parse_users(data: Value) -> Result<Vec<UserId>, ActionError> {
    let request: UsersRequest = parse_data(data)?;
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

/// Rooms that make two users visible to each other.
async fn shared_rooms_of(deps: &Deps, user: &UserId) -> Result<HashSet<RoomName>, HandlerError> {
    let mut rooms: HashSet<RoomName> = deps.store.user_rooms(user).await?.into_iter().collect();
    for connection in deps.store.user_connections(user).await? {
        rooms.extend(deps.store.connection_rooms(&connection.connection_id).await?);
    }
    rooms.retain(|room| !matches!(room.kind(), "user" | "presence"));
    Ok(rooms)
}

/// Splits `users` into those the caller may see and those it may not.
pub async fn partition_visible(
    deps: &Deps,
    viewer: &UserId,
    users: Vec<UserId>,
) -> Result<(Vec<UserId>, Vec<UserId>), HandlerError> {
    let viewer_rooms = shared_rooms_of(deps, viewer).await?;
    let (mut visible, mut hidden) = (Vec::new(), Vec::new());
    for user in users {
        let sees = &user == viewer || !shared_rooms_of(deps, &user).await?.is_disjoint(&viewer_rooms);
        if sees { visible.push(user) } else { hidden.push(user) }
    }
    Ok((visible, hidden))
}

async fn presences(deps: &Deps, users: &[UserId]) -> Result<Vec<Value>, HandlerError> {
    let stored = deps.store.get_presence(users).await?;
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let online = !deps.store.user_connections(user).await?.is_empty();
        out.push(presence_payload(user, stored.iter().find(|p| &p.user_id == user), online));
    }
    Ok(out)
}

/// `presence:get {userIds}` → ack `{presences, forbidden}`.
pub async fn get(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let users = parse_users(data)?;
    let (visible, hidden) = partition_visible(deps, &caller.identity.user_id, users).await?;
    Ok(json!({"presences": presences(deps, &visible).await?, "forbidden": hidden}))
}

/// `presence:subscribe {userIds}` → ack `{subscribed, forbidden, presences}`; later changes arrive as
/// `presence:changed`.
pub async fn subscribe(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let users = parse_users(data)?;
    let (visible, hidden) = partition_visible(deps, &caller.identity.user_id, users).await?;
    for user in &visible {
        deps.store.join_room(&caller.connection, &RoomName::presence_of(user)).await?;
    }
    Ok(json!({"subscribed": visible, "forbidden": hidden, "presences": presences(deps, &visible).await?}))
}

/// `presence:unsubscribe {userIds}` → ack `{unsubscribed}`.
pub async fn unsubscribe(deps: &Deps, caller: &Caller, data: Value) -> ActionResult {
    let users = parse_users(data)?;
    for user in &users {
        deps.store.leave_room(caller.id(), &RoomName::presence_of(user)).await?;
    }
    Ok(json!({"unsubscribed": users}))
}
