//! `$disconnect` and pruning: removing a connection and every membership it held, telling rooms the user left and
//! presence subscribers the user went offline.
//!
//! `$disconnect` is best effort in API Gateway, so the same removal also runs when a push answers Gone, and records
//! expire by TTL when neither happens.

use std::future::Future;
use std::pin::Pin;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use bytes::Bytes;

use super::caller::response;
use super::{Deps, HandlerError, presence};
use crate::ids::ConnectionId;
use crate::protocol::{ServerFrame, events};
use crate::push::fan_out;
use crate::rooms::RoomRule;
use crate::store::RemovedConnection;

#[tracing::instrument(name = "disconnect", skip_all, fields(connection_id, status = event.request_context.disconnect_status_code))]
pub async fn handle(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let Some(connection) = event.request_context.connection_id.as_deref().and_then(|id| ConnectionId::parse(id).ok())
    else {
        return Err(HandlerError::MalformedEvent("requestContext.connectionId"));
    };
    tracing::Span::current().record("connection_id", connection.as_str());
    let removed = deps.store.delete_connection(&connection).await?;
    if let Some(removed) = removed {
        tracing::info!(
            reason = event.request_context.disconnect_reason.as_deref().unwrap_or(""),
            n_rooms = removed.rooms.len(),
            "disconnected"
        );
        announce_departure(deps, &removed).await;
    }
    Ok(response(200, None))
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
///
/// Room departure notices use a plain fan-out that does not prune: a Gone found while announcing one departure is
/// left to the next delivery or to the TTL, so removals do not cascade through busy rooms.
async fn announce_departure(deps: &Deps, removed: &RemovedConnection) {
    let user = &removed.record.user_id;
    for room in &removed.rooms {
        // Role-wide and personal rooms are not conversations: announcing every leave there would be noise.
        if !matches!(deps.config.room_policy.rule_for(room), RoomRule::Granted | RoomRule::Pair | RoomRule::Public) {
            continue;
        }
        let members = match deps.store.room_members(room).await {
            Ok(members) => members,
            Err(error) => {
                tracing::warn!(room = %room, error = %error, "could not list room after leave");
                continue;
            }
        };
        if members.iter().any(|m| &m.user_id == user) {
            continue;
        }
        let frame = ServerFrame::room_event(
            events::ROOM_USER_LEFT,
            room.as_str(),
            None,
            serde_json::json!({"room": room, "userId": user}),
        );
        let targets = members.into_iter().map(|m| m.connection_id).collect();
        fan_out(&deps.pusher, targets, Bytes::from(frame.to_json()), deps.config.limits.fanout_concurrency).await;
    }
    if removed.last_of_user
        && let Err(error) = presence::on_last_disconnect(deps, user).await
    {
        tracing::warn!(error = %error, "presence update after disconnect failed");
    }
}
