//! The limits that keep one client from costing everyone else: frames per connection, typing fan-outs, calls and
//! missed-call notifications per user. Their state lives in the store ([`crate::store::Store::admit`], and for frames
//! [`crate::store::Store::admit_frame`], which also records the connection's last activity), because
//! Lambda instances share no memory: the harness and every function instance see the same buckets.
//!
//! A limiter that cannot reach the store lets the request through and logs it. Rate limiting protects the hub from
//! abuse; refusing every client while the store blips would turn a short outage into a longer one, and the action
//! itself still fails cleanly if the store is really down.

use std::time::Duration;

use super::Deps;
use crate::ids::{ConnectionId, RoomName, UserId};
use crate::store::{Admission, RateLimit, StoreResult};

/// What a limiter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Limited { retry_after: Duration },
}

/// `n` events a minute, all of which may come at once.
pub fn per_minute(n: u32) -> RateLimit {
    let n = n.max(1);
    RateLimit { interval: Duration::from_secs(60) / n, burst: n }
}

/// Takes one event from bucket `key`.
async fn check(deps: &Deps, key: &str, limit: RateLimit) -> Verdict {
    verdict(deps.store.admit(key, limit, chrono::Utc::now()).await, key)
}

fn verdict(admission: StoreResult<Admission>, key: &str) -> Verdict {
    match admission {
        Ok(Admission::Allowed) => Verdict::Allowed,
        Ok(Admission::Limited { retry_after }) => Verdict::Limited { retry_after },
        Err(error) => {
            tracing::warn!(key, %error, "rate limiter unavailable; letting the request through");
            Verdict::Allowed
        }
    }
}

/// One inbound frame of `connection`: `INBOUND_RATE_PER_SECOND` sustained, `INBOUND_BURST` at once. With the limit
/// off (0) nothing is written per frame, so no last activity is recorded either.
pub async fn inbound_frame(deps: &Deps, connection: &ConnectionId) -> Verdict {
    let limits = &deps.config.limits;
    if limits.inbound_per_second == 0 {
        return Verdict::Allowed;
    }
    let limit = RateLimit { interval: Duration::from_secs(1) / limits.inbound_per_second, burst: limits.inbound_burst };
    // The connection's own bucket: the same write records its last activity for the operator's view.
    verdict(deps.store.admit_frame(connection, limit, chrono::Utc::now()).await, connection.as_str())
}

/// One refused frame of `connection`. `Limited` means the connection has kept exceeding its rate (more than
/// `RATE_LIMIT_STRIKES` refusals beyond one every three seconds) and is to be closed.
pub async fn strike(deps: &Deps, connection: &ConnectionId) -> Verdict {
    let limit = RateLimit { interval: Duration::from_secs(3), burst: deps.config.limits.rate_strikes };
    check(deps, &format!("strike#{connection}"), limit).await
}

/// One typing event of `connection` in `room`; `Limited` means it is coalesced with the one sent moments ago.
/// Start and stop are counted apart, so a stop right after a start is never swallowed.
pub async fn typing(deps: &Deps, connection: &ConnectionId, room: &RoomName, event: &str) -> Verdict {
    let interval = Duration::from_millis(deps.config.limits.typing_interval_ms);
    if interval.is_zero() {
        return Verdict::Allowed;
    }
    check(deps, &format!("typing#{connection}#{room}#{event}"), RateLimit { interval, burst: 1 }).await
}

/// One call started by `caller`: `CALLS_PER_MINUTE`.
pub async fn call(deps: &Deps, caller: &UserId) -> Verdict {
    check(deps, &format!("calls#{caller}"), per_minute(deps.config.limits.calls_per_minute)).await
}

/// One call from `caller` to `recipient`: at most one per ring time, so a caller cannot keep a recipient's devices
/// ringing with overlapping calls.
pub async fn ring(deps: &Deps, caller: &UserId, recipient: &UserId) -> Verdict {
    let interval = Duration::from_secs(deps.config.call_ring_seconds);
    check(deps, &format!("ring#{caller}#{recipient}"), RateLimit { interval, burst: 1 }).await
}

/// One missed-call notification for `user`: `NOTIFICATIONS_PER_MINUTE`.
pub async fn notification(deps: &Deps, user: &UserId) -> Verdict {
    check(deps, &format!("notify#{user}"), per_minute(deps.config.limits.notifications_per_minute)).await
}
