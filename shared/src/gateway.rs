//! The limits Amazon API Gateway enforces on a WebSocket API, as constants the product and the local harness share.
//!
//! The product keeps its answers under them (an ack over [`MAX_MESSAGE_BYTES`] never reaches a client on AWS), and
//! the harness enforces exactly these numbers, so a limit that is crossed offline fails offline instead of at the
//! first deploy. Values are AWS's published quotas (developer guide, "Amazon API Gateway quotas for configuring and
//! running a WebSocket API"); the stage throttle defaults are the ones `template.yaml` deploys, which an end-to-end
//! test checks, and so is the one route answered without a function (the heartbeat's). This module holds numbers and
//! that route's fixed answer only: no I/O, no policy.

use std::time::Duration;

/// Largest WebSocket frame: larger inbound frames close the socket with 1009; larger outbound messages (route
/// responses, posts) are sent in continuation frames of at most this size.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// Largest WebSocket message in either direction: an inbound message over it closes the socket with 1009, a
/// `PostToConnection` over it answers 413, and a route response over it never reaches the client.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// Longest connect URL (path and query string) API Gateway accepts on the upgrade request.
pub const MAX_CONNECT_URL_BYTES: usize = 4096;

/// Largest Lambda authorizer result (principal, policy and context, as JSON): a larger one fails the connect.
pub const MAX_AUTHORIZER_RESULT_BYTES: usize = 8 * 1024;

/// Longest an integration (the authorizer, `$connect`, a route) may run before API Gateway gives up on it.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// A connection without data frames in either direction for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Every connection is closed after this long, active or not.
pub const MAX_CONNECTION_DURATION: Duration = Duration::from_secs(2 * 60 * 60);

/// The stage's default route throttling burst (`ThrottlingBurstLimit` in `template.yaml`): the token bucket of each
/// route holds this many requests.
pub const STAGE_THROTTLING_BURST: u32 = 500;

/// The stage's default route throttling rate (`ThrottlingRateLimit` in `template.yaml`), in requests per second.
pub const STAGE_THROTTLING_RATE: u32 = 1000;

/// The route key of the heartbeat route `template.yaml` deploys besides `$connect`, `$disconnect` and `$default`:
/// a frame whose `action` is `ping` is answered by a MOCK integration, so no function runs and none is billed.
pub const PING_ROUTE_KEY: &str = crate::protocol::PING_ACTION;

/// The ping route's answer: its integration response template in `template.yaml`, verbatim (the template test
/// checks that), sent back as the route response.
pub const PING_ROUTE_RESPONSE: &str = crate::protocol::PONG_FRAME;

/// The SigV4 signing name of the management API (`@connections`).
pub const MANAGEMENT_SIGNING_NAME: &str = "execute-api";

/// How far a SigV4 request's `X-Amz-Date` may be from the server's clock before AWS refuses it as expired.
pub const MAX_SIGNATURE_SKEW: Duration = Duration::from_secs(5 * 60);

/// The access key the local harness's `@connections` accepts by default, and that AWS clients pointed at a
/// plain-HTTP (emulator) endpoint sign with. Public and worthless outside the harness.
pub const LOCAL_ACCESS_KEY_ID: &str = "AKIDBELLHOPLOCAL";

/// The secret key paired with [`LOCAL_ACCESS_KEY_ID`].
pub const LOCAL_SECRET_ACCESS_KEY: &str = "bellhop-local-dummy-secret";

/// The region AWS clients sign for when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
