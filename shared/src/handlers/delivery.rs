//! Delivery and pruning, together: sending frames to connections, removing the connections the Management API
//! reports gone, and telling rooms and presence subscribers about a user who left.
//!
//! They live in one module because they call each other: a delivery that finds a gone connection prunes it, and
//! pruning announces the departure, which is a delivery. Departure notices use a fan-out that does not prune, so a
//! gone connection found while announcing one departure is left to the next delivery or to the TTL, and removals do
//! not cascade through busy rooms.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use super::{Deps, presence};
use crate::ids::{ConnectionId, UserId};
use crate::protocol::payloads::UserLeft;
use crate::protocol::{ServerFrame, events};
use crate::push::{FanOutReport, fan_out};
use crate::rooms::RoomName;
use crate::store::{RemovedConnection, StoreError};

impl Deps {
    /// Sends one frame to many connections and prunes those that are gone. Returns the fan-out report.
    pub async fn deliver(&self, targets: Vec<ConnectionId>, frame: &ServerFrame) -> FanOutReport {
        let payload = Bytes::from(frame.to_json());
        self.deliver_bytes(targets, payload).await
    }

    /// As [`Deps::deliver`], for a payload already serialised once for all recipients.
    pub async fn deliver_bytes(&self, targets: Vec<ConnectionId>, payload: Bytes) -> FanOutReport {
        if targets.is_empty() {
            return FanOutReport::default();
        }
        let report = fan_out(&self.pusher, targets, payload, self.config.limits.fanout_concurrency).await;
        for gone in &report.gone {
            prune(self, gone).await;
        }
        report
    }

    /// Adds one to the `total_messages` counter behind `/health`. Best effort: the message is stored and delivered by
    /// now, and failing it over a monitoring counter would make the client retry what already succeeded.
    pub async fn count_message(&self) {
        if let Err(error) = self.store.count_messages(1).await {
            tracing::warn!(%error, "message counter not updated");
        }
    }
}

/// Removes a connection that the Management API reported gone. Failures are logged, never raised: the record
/// expires by TTL anyway.
///
/// Boxed because delivering can prune and pruning delivers (departure notices): the recursion needs a sized future.
pub fn prune<'a>(deps: &'a Deps, connection: &'a ConnectionId) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        match deps.store.delete_connection(connection).await {
            Ok(Some(removed)) => {
                tracing::info!(connection_id = %connection, "pruned gone connection");
                announce_departure(deps, &removed).await;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(connection_id = %connection, error = %error, "prune failed"),
        }
    })
}

/// Tells the rooms a removed connection was in that its user left (when no other connection of theirs remains
/// there), and presence subscribers that the user is offline (when this was the last connection).
pub async fn announce_departure(deps: &Deps, removed: &RemovedConnection) {
    let user = &removed.record.user_id;
    for room in &removed.rooms {
        if let Err(error) = announce_user_left(deps, room, user, None, Vec::new()).await {
            tracing::warn!(room = %room, error = %error, "could not announce a departure");
        }
    }
    if let Some(offline) = &removed.offline {
        presence::on_last_disconnect(deps, user, offline.clone()).await;
    }
}

/// Sends `room:userLeft` to a conversation room once `user` has no connection left in it; `also` are connections
/// outside the room that should hear it too (a revoked user's own connections). Role-wide and personal rooms are not
/// conversations, and announcing every leave there would be noise, so they hear nothing.
pub async fn announce_user_left(
    deps: &Deps,
    room: &RoomName,
    user: &UserId,
    reason: Option<&str>,
    also: Vec<ConnectionId>,
) -> Result<(), StoreError> {
    if !deps.config.room_policy.announces_membership(room) {
        return Ok(());
    }
    let members = deps.store.room_members(room).await?;
    if members.iter().any(|m| &m.user_id == user) {
        return Ok(());
    }
    let left = UserLeft { room: room.clone(), user_id: user.clone(), reason: reason.map(str::to_owned) };
    let frame = ServerFrame::typed_room_event(events::ROOM_USER_LEFT, room.as_str(), &left);
    let mut targets: Vec<ConnectionId> = members.into_iter().map(|m| m.connection_id).collect();
    targets.extend(also);
    fan_out(&deps.pusher, targets, Bytes::from(frame.to_json()), deps.config.limits.fanout_concurrency).await;
    Ok(())
}
