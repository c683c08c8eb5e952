//! `$connect`: records the connection, joins its automatic rooms (own user room, role rooms, token rooms) and tells
//! presence subscribers the user came online.
//!
//! API Gateway refuses any `PostToConnection` to the connecting client until this returns, so the welcome frame is
//! sent later, in answer to the client's `hello`.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::caller::{caller_of, refusal, response};
use super::{Deps, HandlerError, presence, tokens};
use crate::auth::{TokenSource, extract_token};
use crate::protocol::ErrorCode;
use crate::store::StoreError;

#[tracing::instrument(name = "connect", skip_all, fields(connection_id, user_id))]
pub async fn handle(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let caller = match caller_of(&event, &deps.config) {
        Ok(caller) => caller,
        // Without the authorizer's identity the route is misconfigured or was called directly: refuse, never guess.
        Err(error) => {
            tracing::warn!(%error, "connect refused");
            return Ok(refusal(401, ErrorCode::Unauthorized, "Authentication error: Missing token"));
        }
    };
    let span = tracing::Span::current();
    span.record("connection_id", caller.id().as_str());
    span.record("user_id", caller.identity.user_id.as_str());

    if let Some(origin) = event.headers.get(http::header::ORIGIN).and_then(|o| o.to_str().ok())
        && !deps.config.cors_origins.is_empty()
        && !deps.config.cors_origins.iter().any(|allowed| allowed == origin)
    {
        tracing::info!(origin, "connect refused: origin not allowed");
        return Ok(refusal(403, ErrorCode::Forbidden, "origin not allowed"));
    }

    let store_failed = |error: StoreError| {
        tracing::error!(error = %error, source = ?std::error::Error::source(&error), "connect failed: store");
        refusal(500, ErrorCode::Internal, "could not record the connection; try again")
    };
    // Counted before the connection is recorded, so a refused connect leaves nothing behind. Two connects racing at
    // the limit can both pass; the limit is a guard against runaway clients, not an exact quota. The same read
    // brings what the presence announcement needs, so it costs no second read.
    let before = match deps.store.user_presence(&caller.identity.user_id).await {
        Ok(before) => before,
        Err(error) => return Ok(store_failed(error)),
    };
    let open = before.connections.len();
    let max = deps.config.limits.max_connections_per_user;
    if open >= max {
        tracing::info!(open, max, "connect refused: too many connections");
        return Ok(refusal(429, ErrorCode::RateLimited, &format!("a user may hold at most {max} open connections")));
    }

    let mut rooms = deps.config.role_rooms.auto_rooms(&caller.identity);
    // A token may list more rooms than a connection may be in; the excess is not joined rather than refusing the
    // user outright, and `hello` shows which rooms the connection is in.
    rooms.truncate(deps.config.limits.max_rooms_per_connection);
    if let Err(error) = deps.store.put_connection(&caller.connection, &rooms).await {
        return Ok(store_failed(error));
    }
    tracing::info!(n_rooms = rooms.len(), "connected");
    tokens::schedule_first_check(deps, &caller).await;

    // Telling subscribers is best effort: the connection is already recorded and usable.
    if open == 0 {
        presence::on_first_connect(deps, &caller, before).await;
    }

    let mut answer = response(200, None);
    // A browser that offered subprotocols fails the handshake unless one is selected: echo ours when offered.
    let query =
        event.query_string_parameters.first("token").map(|t| ("token".to_owned(), t.to_owned())).into_iter().collect();
    if let Some((_, TokenSource::Subprotocol { echo: Some(protocol) })) = extract_token(&query, &event.headers)
        && let Ok(value) = http::HeaderValue::from_str(&protocol)
    {
        answer.headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    Ok(answer)
}
