//! Token lifetime on live connections. API Gateway authorizes a WebSocket once, at `$connect`, and would let the
//! connection live for two hours whatever the token's `exp` said. Bellhop closes it once `exp` plus the JWT leeway
//! has passed, after warning it with `auth:expiring`; the client extends it with `auth:refresh` and a new token for
//! the same user, verified exactly as the handshake verifies one.
//!
//! Identity on every event still comes from the authorizer context, which never changes: a refresh only moves the
//! expiry, kept in the connection record where every function instance sees it. Two mechanisms enforce it:
//! - a chain of timer checks ([`check`]) per connection, scheduled at connect, which warns and closes idle
//!   connections too (a check reschedules itself, since one delay-queue message waits at most 15 minutes);
//! - a check of every frame ([`refuse_if_expired`]), free until the token the connection opened with has expired,
//!   which holds even where no timer queue is configured.
//!
//! The Management API closes a connection with 1000 whatever the reason, so the reason (`TOKEN_EXPIRED`) travels
//! first as an `error` event.

use chrono::{DateTime, Utc};

use super::Deps;
use super::caller::Caller;
use super::delivery::prune;
use super::errors::{ActionError, ActionResult, HandlerError};
use crate::auth::AuthError;
use crate::ids::ConnectionId;
use crate::protocol::payloads::{AuthExpiring, AuthRefresh, AuthRefreshed};
use crate::protocol::{ErrorBody, ErrorCode, ServerFrame, events, timestamp};
use crate::push::PushError;
use crate::timer::{MAX_DELAY_SECONDS, TimerJob};

/// The instant a token expiring at `expires_at` stops being honoured: its `exp` plus the configured leeway.
fn closes_at(deps: &Deps, expires_at: DateTime<Utc>) -> DateTime<Utc> {
    let leeway = i64::try_from(deps.config.jwt.leeway_seconds).unwrap_or(0);
    expires_at + chrono::Duration::seconds(leeway)
}

fn from_epoch(seconds: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
}

/// Schedules the first check of a new connection: when its warning is due, or in 15 minutes if that is later.
/// Best effort: without it an idle connection is closed late, and a busy one still at its next frame.
pub async fn schedule_first_check(deps: &Deps, caller: &Caller) {
    let Some(expires_at) = caller.identity.expires_at.and_then(from_epoch) else { return };
    schedule_check(deps, caller.id(), warning_at(deps, expires_at)).await;
}

fn warning_at(deps: &Deps, expires_at: DateTime<Utc>) -> DateTime<Utc> {
    let warning = i64::try_from(deps.config.limits.token_warning_seconds).unwrap_or(0);
    expires_at - chrono::Duration::seconds(warning)
}

/// Schedules the next check for `at` or later, never earlier: delays are whole seconds, so the wait is rounded up. A
/// check that came early would find nothing due yet and schedule itself again for the same instant, at once, over
/// and over until that instant; and one after the warning would warn again each time.
async fn schedule_check(deps: &Deps, connection: &ConnectionId, at: DateTime<Utc>) {
    let wait = seconds_until(at, Utc::now()).clamp(0, i64::try_from(MAX_DELAY_SECONDS).unwrap_or(900));
    let job = TimerJob::token_expiry(connection.as_str());
    if let Err(error) = deps.timer.schedule(&job, wait.unsigned_abs()).await {
        tracing::warn!(connection_id = %connection, %error, "could not schedule the token expiry check");
    }
}

/// Whole seconds from `now` until `at`, rounded up (negative when `at` has passed).
fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (at - now).num_microseconds().unwrap_or(i64::MAX).saturating_add(999_999).div_euclid(1_000_000)
}

/// The timer's token check for one connection: nothing when it is gone, a close once its token expired, an
/// `auth:expiring` warning once the warning is due, and always the next check while the connection lives.
pub async fn check(deps: &Deps, connection: &ConnectionId) -> Result<(), HandlerError> {
    let Some(record) = deps.store.get_connection(connection).await? else { return Ok(()) };
    let Some(expires_at) = record.token_expires_at else { return Ok(()) };
    let now = Utc::now();
    let closes_at = closes_at(deps, expires_at);
    if now >= closes_at {
        close_expired(deps, connection).await;
        return Ok(());
    }
    if now >= warning_at(deps, expires_at) {
        let warning = AuthExpiring { expires_at: timestamp(&expires_at), closes_at: timestamp(&closes_at) };
        deps.deliver(vec![connection.clone()], &ServerFrame::typed_event(events::AUTH_EXPIRING, &warning)).await;
        schedule_check(deps, connection, closes_at).await;
    } else {
        schedule_check(deps, connection, warning_at(deps, expires_at)).await;
    }
    Ok(())
}

/// Refuses a frame of a connection whose token has expired and was not refreshed in time, and closes it. Costs no
/// store read until the token the connection opened with has expired.
pub async fn refuse_if_expired(deps: &Deps, caller: &Caller) -> Result<Option<ActionError>, HandlerError> {
    let Some(opened_with) = caller.identity.expires_at.and_then(from_epoch) else { return Ok(None) };
    let now = Utc::now();
    if now < closes_at(deps, opened_with) {
        return Ok(None);
    }
    let refreshed = deps.store.get_connection(caller.id()).await?.and_then(|record| record.token_expires_at);
    if refreshed.is_some_and(|expires_at| now < closes_at(deps, expires_at)) {
        return Ok(None);
    }
    close_expired(deps, caller.id()).await;
    Ok(Some(ActionError::new(ErrorCode::TokenExpired, "token expired; reconnect with a new token")))
}

async fn close_expired(deps: &Deps, connection: &ConnectionId) {
    tracing::info!(connection_id = %connection, "closing a connection whose token expired");
    let notice = ServerFrame::error_event(ErrorBody::new(ErrorCode::TokenExpired, "token expired"));
    deps.deliver(vec![connection.clone()], &notice).await;
    match deps.pusher.disconnect(connection).await {
        Ok(()) => {}
        Err(PushError::Gone) => prune(deps, connection).await,
        Err(error) => tracing::warn!(connection_id = %connection, %error, "could not close an expired connection"),
    }
}

/// `auth:refresh {token}` → ack [`AuthRefreshed`]: a new token for the same user extends the connection's life.
/// The token is verified exactly as the handshake verifies one; a token of another user is refused, since the
/// connection's identity cannot change after `$connect`.
pub async fn refresh(deps: &Deps, caller: &Caller, request: AuthRefresh) -> ActionResult<AuthRefreshed> {
    let identity = deps.verifier.verify(&request.token).map_err(|error| {
        let code = match error {
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::Missing | AuthError::Invalid => ErrorCode::Unauthorized,
        };
        ActionError::new(code, format!("the new token was refused: {error}"))
    })?;
    if identity.user_id != caller.identity.user_id {
        return Err(ActionError::forbidden("the new token is for another user; reconnect to change users"));
    }
    let expires_at = identity.expires_at.and_then(from_epoch);
    if let Some(expires_at) = expires_at
        && !deps.store.set_token_expiry(caller.id(), expires_at).await?
    {
        return Err(ActionError::not_found("this connection is no longer known; reconnect"));
    }
    tracing::info!(expires_at = ?expires_at, "token refreshed");
    Ok(AuthRefreshed { expires_at: expires_at.as_ref().map(timestamp) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_never_scheduled_before_its_instant() {
        let now = Utc::now();
        let after = |ms: i64| seconds_until(now + chrono::Duration::milliseconds(ms), now);
        assert_eq!([after(0), after(1), after(999), after(1_000), after(1_001), after(5_999)], [0, 1, 1, 1, 2, 6]);
        assert!(after(-1_500) <= 0, "a passed instant is due at once");
    }
}
