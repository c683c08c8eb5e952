//! `$disconnect`: removing a connection and every membership it held, telling rooms the user left and presence
//! subscribers the user went offline.
//!
//! `$disconnect` is best effort in API Gateway, so the same removal also runs when a push answers Gone
//! ([`super::delivery::prune`]), and records expire by TTL when neither happens.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::caller::response;
use super::delivery::announce_departure;
use super::{Deps, HandlerError};
use crate::ids::ConnectionId;

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
