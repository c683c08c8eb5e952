//! Route throttling as API Gateway applies a stage's `DefaultRouteSettings`: one token bucket per route key, holding
//! `burst` requests and refilled at `rate` per second, shared by every connection of the stage.
//!
//! The harness uses the values `template.yaml` deploys (see `shared::gateway`), so a client that would be throttled
//! in the cloud is throttled offline too. What a throttled request gets back (429 on `$connect`, an error frame on a
//! message) is decided by the caller; this module only counts. No I/O.

use std::sync::Mutex;

use tokio::time::Instant;

/// A stage's route throttling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttling {
    /// Requests a route accepts at once before the rate applies (`ThrottlingBurstLimit`).
    pub burst: u32,
    /// Requests per second a route accepts in the long run (`ThrottlingRateLimit`).
    pub rate: f64,
}

impl Throttling {
    /// The stage defaults `template.yaml` deploys.
    pub fn stage_defaults() -> Self {
        Self { burst: shared::gateway::STAGE_THROTTLING_BURST, rate: f64::from(shared::gateway::STAGE_THROTTLING_RATE) }
    }
}

/// One route's token bucket.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    settings: Throttling,
    /// Tokens left and when they were last counted.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub(crate) fn new(settings: Throttling) -> Self {
        Self { settings, state: Mutex::new((f64::from(settings.burst), Instant::now())) }
    }

    /// Takes one token if there is one: `false` means the request is throttled.
    pub(crate) fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = *state;
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let refilled = (tokens + elapsed * self.settings.rate).min(f64::from(self.settings.burst));
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            true
        } else {
            *state = (refilled, now);
            false
        }
    }
}

/// The buckets of the emulated stage's routes. The stage's `DefaultRouteSettings` give every route its own bucket
/// of the same size, so the heartbeat route does not draw from `$default`'s and the other way round.
#[derive(Debug)]
pub(crate) struct RouteThrottles {
    pub(crate) connect: TokenBucket,
    default_route: TokenBucket,
    ping_route: TokenBucket,
}

impl RouteThrottles {
    pub(crate) fn new(settings: Throttling) -> Self {
        Self {
            connect: TokenBucket::new(settings),
            default_route: TokenBucket::new(settings),
            ping_route: TokenBucket::new(settings),
        }
    }

    /// The bucket of the route a message was routed to.
    pub(crate) fn message_route(&self, route_key: &str) -> &TokenBucket {
        if route_key == shared::gateway::PING_ROUTE_KEY { &self.ping_route } else { &self.default_route }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_ping_route_and_default_have_a_bucket_each() {
        let throttles = RouteThrottles::new(Throttling { burst: 1, rate: 0.001 });
        let now = Instant::now();
        assert!(throttles.message_route("ping").try_take_at(now));
        assert!(!throttles.message_route("ping").try_take_at(now));
        assert!(throttles.message_route("$default").try_take_at(now), "$default still has its own token");
    }

    #[test]
    fn a_full_bucket_accepts_the_burst_then_refuses() {
        let bucket = TokenBucket::new(Throttling { burst: 3, rate: 1.0 });
        let now = Instant::now();
        let taken: Vec<bool> = (0..4).map(|_| bucket.try_take_at(now)).collect();
        assert_eq!(taken, [true, true, true, false]);
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_the_burst() {
        let bucket = TokenBucket::new(Throttling { burst: 2, rate: 10.0 });
        let start = Instant::now();
        assert!(bucket.try_take_at(start) && bucket.try_take_at(start));
        assert!(!bucket.try_take_at(start));
        // 100 ms at 10/s is one token.
        let later = start + Duration::from_millis(100);
        assert!(bucket.try_take_at(later));
        assert!(!bucket.try_take_at(later));
        // An hour later the bucket is full again, but holds only the burst.
        let much_later = later + Duration::from_secs(3600);
        let taken: Vec<bool> = (0..3).map(|_| bucket.try_take_at(much_later)).collect();
        assert_eq!(taken, [true, true, false]);
    }
}
