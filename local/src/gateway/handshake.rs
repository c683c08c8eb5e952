//! The upgrade request: authorizer, then `$connect`, then either the refusal AWS would send or a 101 and a session.
//!
//! The harness performs the WebSocket handshake itself (hyper upgrade + raw tokio-tungstenite) instead of axum's
//! `WebSocketUpgrade`, because it needs what axum hides: sending fragmented frames (AWS delivers > 32 KB messages in
//! continuation frames) and choosing the subprotocol from `$connect`'s response instead of auto-selecting one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerResponse;
use aws_lambda_events::encodings::Body as LambdaBody;
use aws_lambda_events::iam::IamPolicyEffect;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use shared::gateway::{MAX_AUTHORIZER_RESULT_BYTES, MAX_CONNECT_URL_BYTES, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES};
use shared::handlers::{authorizer, connect};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::Instrument;

use super::Gateway;
use super::connections::{CloseCause, Connection, new_connection_id, new_request_id};
use super::duplex::Outlet;
use super::events::{self, ConnectionContext, HandshakeRequest, Invocation};
use super::session;

/// Socket buffers. The read buffer is held by every idle connection (the 128 KiB default cost about 90 KB each,
/// 4 KiB about 4 KB); 512 bytes hold a typical client frame (an action, an id, a room and a short message) in one
/// read. A larger frame costs one more read and still arrives whole, because tungstenite reserves each frame's full
/// length once it has its header. tungstenite writes only control frames, and hands each to the connection's
/// outlet at once (`duplex::Outlet`), which bounds what waits for a client that stops reading.
pub(crate) fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .max_message_size(Some(MAX_MESSAGE_BYTES))
}

pub(crate) async fn upgrade(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    let wants_upgrade = header_has_token(headers, header::UPGRADE, "websocket");
    if !wants_upgrade {
        // A plain HTTP request to the WebSocket URL: AWS answers 426.
        return (StatusCode::UPGRADE_REQUIRED, [(header::UPGRADE, "websocket")], "Upgrade Required").into_response();
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let (Some(key), true, true) =
        (key, version_ok && request.method() == Method::GET, header_has_token(headers, header::CONNECTION, "upgrade"))
    else {
        return (StatusCode::BAD_REQUEST, "Bad WebSocket handshake").into_response();
    };
    let url_bytes = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if url_bytes > MAX_CONNECT_URL_BYTES {
        // Loudly: on AWS this connect never reaches the authorizer, typically because a token carries too much.
        tracing::error!(
            url_bytes,
            limit = MAX_CONNECT_URL_BYTES,
            "connect refused: the URL exceeds API Gateway's length limit"
        );
        return aws_json(
            StatusCode::URI_TOO_LONG,
            json!({"message": "Request-URI Too Long"}).to_string(),
            &new_request_id(),
        );
    }
    if let Some(throttles) = &gateway.throttles
        && !throttles.connect.try_take()
    {
        tracing::warn!("connect refused: throttled by the stage's route limits");
        return aws_json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"message": "Too Many Requests"}).to_string(),
            &new_request_id(),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut request);

    let connected_at_ms = chrono::Utc::now().timestamp_millis();
    let connection_id = new_connection_id();
    let request_id = new_request_id();
    let handshake = HandshakeRequest {
        headers: request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect(),
        query: request.uri().query().map(str::to_owned),
        local_port: gateway.port,
        trace_id: trace_id(connected_at_ms),
    };
    let mut ctx = ConnectionContext {
        api_id: gateway.api_id.clone(),
        stage: gateway.stage.clone(),
        domain_name: gateway.domain_name.clone(),
        connection_id: connection_id.clone(),
        connected_at_ms,
        source_ip: peer.ip().to_string(),
        user_agent: request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        authorizer: None,
    };
    let span = tracing::info_span!("connect", connection_id = %connection_id, request_id = %request_id);
    // The rest runs inside the span with `instrument`, not a guard held across awaits: a guard would mark
    // unrelated tasks' events with this connection whenever the handshake yields.
    async move {
        // The identity source is not configured on the emulated authorizer, so it always runs and finds the token
        // itself (query, subprotocol or Authorization header), as the Bellhop template deploys it.
        let started = Instant::now();
        let invocation = Invocation { request_id: request_id.clone(), time_ms: connected_at_ms };
        let limit = gateway.settings.integration_timeout;
        let authorized = match events::authorizer_event(&ctx, &handshake, &invocation) {
            Ok((_, event)) => {
                let deps = gateway.deps.clone();
                match within(limit, async move { authorizer::handle(&deps.verifier, event).await }).await {
                    Some(outcome) => outcome,
                    None => {
                        tracing::error!("handshake refused: the authorizer exceeded the integration timeout");
                        return gateway_refusal(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Internal server error",
                            &ctx,
                            &request_id,
                        );
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "authorizer event has the wrong shape");
                return gateway_refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", &ctx, &request_id);
            }
        };
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match authorized {
            Ok(Ok(answer)) if authorizer_result_bytes(&answer) > MAX_AUTHORIZER_RESULT_BYTES => {
                // Loudly: a token carrying many rooms grows the context past what API Gateway accepts.
                tracing::error!(
                    bytes = authorizer_result_bytes(&answer),
                    limit = MAX_AUTHORIZER_RESULT_BYTES,
                    "handshake refused: the authorizer result exceeds API Gateway's size limit"
                );
                return gateway_refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", &ctx, &request_id);
            }
            Ok(Ok(answer)) => match policy_allows(&answer, &gateway, &ctx) {
                true => {
                    ctx.authorizer =
                        Some(events::stringify_authorizer_context(answer.principal_id.as_deref(), &answer.context))
                }
                false => {
                    tracing::info!("handshake refused: authorizer denied");
                    return gateway_refusal(StatusCode::FORBIDDEN, "Forbidden", &ctx, &request_id);
                }
            },
            Ok(Err(authorizer::AuthorizerError::Unauthorized)) => {
                tracing::info!("handshake refused: authorizer said unauthorized");
                return gateway_refusal(StatusCode::UNAUTHORIZED, "Unauthorized", &ctx, &request_id);
            }
            Err(join) => {
                tracing::error!(error = %join, "authorizer panicked");
                return gateway_refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", &ctx, &request_id);
            }
        }

        let invocation = Invocation { request_id: request_id.clone(), time_ms: chrono::Utc::now().timestamp_millis() };
        let connected = match events::connect_event(&ctx, &handshake, &invocation, Some(latency_ms)) {
            Ok((_, event)) => {
                let deps = gateway.deps.clone();
                match within(limit, async move { connect::handle(&deps, event).await }).await {
                    Some(outcome) => outcome,
                    None => {
                        // As on AWS, `$connect` keeps running detached and no `$disconnect` follows a refused
                        // connect: whatever it writes is left to the records' TTL.
                        tracing::error!("handshake refused: $connect exceeded the integration timeout");
                        return gateway_refusal(
                            StatusCode::GATEWAY_TIMEOUT,
                            "Endpoint request timed out",
                            &ctx,
                            &request_id,
                        );
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "connect event has the wrong shape");
                return gateway_refusal(StatusCode::BAD_GATEWAY, "Internal server error", &ctx, &request_id);
            }
        };
        let answer = match connected {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                tracing::error!(%error, "$connect failed");
                return gateway_refusal(StatusCode::BAD_GATEWAY, "Internal server error", &ctx, &request_id);
            }
            Err(join) => {
                tracing::error!(error = %join, "$connect panicked");
                return gateway_refusal(StatusCode::BAD_GATEWAY, "Internal server error", &ctx, &request_id);
            }
        };
        if !(200..300).contains(&answer.status_code) {
            tracing::info!(status = answer.status_code, "handshake refused by $connect");
            return connect_refusal(answer.status_code, answer.body, &request_id);
        }

        // Registered before the 101 goes out: once the client sees 101, posts to it must succeed.
        let connection = Connection::new(Arc::new(ctx));
        gateway.registry.insert(connection.clone());
        if *gateway.shutdown.borrow() {
            // Shutdown began after this handshake did: `expiry` has asked the connections it saw to close, and this
            // one was not among them.
            connection.request_close(CloseCause::shutdown());
        }
        let guard = gateway.session_guard();
        let session_gateway = gateway.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        Outlet::new(TokioIo::new(upgraded)),
                        Role::Server,
                        Some(socket_config()),
                    )
                    .await;
                    // The session is a task of its own, so that the connection's lifetime is spent holding only
                    // the session's state, not this task's too (the upgrade, and room for the moved context).
                    tokio::spawn(session::run(session_gateway, connection, socket, guard));
                }
                Err(error) => {
                    let _guard = guard;
                    tracing::warn!(%error, connection_id = %connection.id(), "upgrade failed after $connect");
                    session::abandon(&session_gateway, &connection.context).await;
                }
            }
        });
        tracing::info!("connected");

        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let out = response.headers_mut();
        // `$connect`'s headers first (notably Sec-WebSocket-Protocol: API Gateway never picks a protocol itself), then
        // the handshake headers, which the handler must not override.
        for (name, value) in &answer.headers {
            if ![header::CONNECTION, header::UPGRADE, header::CONTENT_LENGTH, header::SEC_WEBSOCKET_ACCEPT]
                .contains(name)
            {
                out.append(name.clone(), value.clone());
            }
        }
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
    .instrument(span)
    .await
}

/// Runs one integration in its own task (so a panic is contained) and gives up after `limit`, as API Gateway does.
/// `None` means the integration timed out; it keeps running detached, as a Lambda would.
async fn within<T: Send + 'static>(
    limit: std::time::Duration,
    integration: impl Future<Output = T> + Send + 'static,
) -> Option<Result<T, tokio::task::JoinError>> {
    tokio::time::timeout(limit, tokio::spawn(integration)).await.ok()
}

/// The size of an authorizer result as API Gateway measures it: the JSON the Lambda returns.
fn authorizer_result_bytes(answer: &ApiGatewayCustomAuthorizerResponse) -> usize {
    serde_json::to_vec(answer).map_or(usize::MAX, |json| json.len())
}

/// Whether the authorizer's policy allows invoking this stage's `$connect`: an explicit Deny wins, and some Allow
/// statement must cover the method ARN (wildcards allowed), as IAM evaluates it.
fn policy_allows(answer: &ApiGatewayCustomAuthorizerResponse, gateway: &Gateway, ctx: &ConnectionContext) -> bool {
    let arn = format!("arn:aws:execute-api:local:000000000000:{}/{}/$connect", ctx.api_id, gateway.stage);
    let statements = &answer.policy_document.statement;
    let covers = |resources: &[String]| resources.iter().any(|r| glob_match(r, &arn));
    let denied = statements.iter().any(|s| matches!(s.effect, IamPolicyEffect::Deny) && covers(&s.resource));
    let allowed = statements.iter().any(|s| matches!(s.effect, IamPolicyEffect::Allow) && covers(&s.resource));
    allowed && !denied
}

/// IAM-style `*` and `?` matching.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// A refusal by API Gateway itself (authorizer outcomes): AWS's JSON body and `x-amz-apigw-id`, no error-type header.
fn gateway_refusal(status: StatusCode, message: &str, ctx: &ConnectionContext, request_id: &str) -> Response {
    let body = json!({"message": message, "connectionId": ctx.connection_id, "requestId": request_id});
    aws_json(status, body.to_string(), request_id)
}

/// A non-2xx `$connect` answer: that status and the handler's body, in AWS's content type.
fn connect_refusal(status_code: i64, body: Option<LambdaBody>, request_id: &str) -> Response {
    let status = u16::try_from(status_code).ok().and_then(|s| StatusCode::from_u16(s).ok());
    let body = events::body_text(body).unwrap_or_default();
    aws_json(status.unwrap_or(StatusCode::BAD_GATEWAY), body, request_id)
}

fn aws_json(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amz-apigw-id", id);
    }
    response
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// An X-Ray style trace id: `Root=1-{epoch seconds hex}-{24 hex}`.
fn trace_id(now_ms: i64) -> String {
    let random: [u8; 12] = rand::random();
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("Root=1-{:08x}-{hex}", now_ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_wildcards_match_like_iam() {
        let arn = "arn:aws:execute-api:local:000000000000:bellhoploc/local/$connect";
        assert!(glob_match(arn, arn));
        assert!(glob_match("arn:aws:execute-api:*:*:bellhoploc/*", arn));
        assert!(glob_match("*", arn));
        assert!(!glob_match("arn:aws:execute-api:local:000000000000:bellhoploc/prod/$connect", arn));
        assert!(glob_match("arn:aws:execute-api:local:000000000000:bellhoploc/loca?/$connect", arn));
    }

    #[tokio::test]
    async fn an_integration_that_outlives_the_limit_times_out() {
        let slow = within(std::time::Duration::from_millis(10), std::future::pending::<()>()).await;
        assert!(slow.is_none());
        let quick = within(std::time::Duration::from_secs(5), async { 7 }).await;
        assert_eq!(quick.map(|r| r.ok()), Some(Some(7)));
    }

    #[test]
    fn trace_ids_have_the_x_ray_shape() {
        let id = trace_id(1_790_294_265_737);
        assert!(id.starts_with("Root=1-6ab5b8f9-"), "{id}");
        assert_eq!(id.len(), "Root=1-6ab5b8f9-03af80023921e01c301d6aef".len());
    }
}
