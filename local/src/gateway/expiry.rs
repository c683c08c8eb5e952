//! API Gateway's idle timeout and maximum connection duration, and the close of every socket at shutdown, for all
//! connections from one task. Each connection's own task then waits only for its socket and its close signal: a
//! timer in every session would be about 0.2 KB that each idle connection holds (the timer itself, and the futures
//! that wait on it and on the shutdown signal).
//!
//! The task checks every connection once per tick, a tenth of the shorter limit and at most a second, so a
//! connection closes within that tick of its deadline: API Gateway gives no finer promise for a 10-minute idle
//! timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::Gateway;
use super::connections::{CloseCause, Connection};

const LONGEST_TICK: Duration = Duration::from_secs(1);
const SHORTEST_TICK: Duration = Duration::from_millis(10);

/// Runs until the harness shuts down, then asks every connection to close with 1001.
pub(crate) async fn run(gateway: Arc<Gateway>) {
    let settings = &gateway.settings;
    let tick = (settings.idle_timeout.min(settings.max_lifetime) / 10).clamp(SHORTEST_TICK, LONGEST_TICK);
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shutdown = gateway.shutdown.clone();
    loop {
        tokio::select! {
            _ = ticks.tick() => close_expired(&gateway, Instant::now()),
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    for connection in gateway.registry.all() {
        connection.request_close(CloseCause::shutdown());
    }
}

/// Asks each connection past its idle timeout or its maximum duration to close.
fn close_expired(gateway: &Gateway, now: Instant) {
    let settings = &gateway.settings;
    let lived_too_long = |connection: &Connection| connection.opened + settings.max_lifetime <= now;
    let idle_too_long = |connection: &Connection| connection.last_data() + settings.idle_timeout <= now;
    let expired = gateway
        .registry
        .matching(|connection| !connection.is_closing() && (lived_too_long(connection) || idle_too_long(connection)));
    for connection in expired {
        if lived_too_long(&connection) {
            tracing::info!(connection_id = %connection.id(), "maximum connection duration reached");
            connection.request_close(CloseCause::going_away());
        } else {
            tracing::info!(connection_id = %connection.id(), "idle timeout");
            connection.request_close(CloseCause::going_away());
        }
    }
}
