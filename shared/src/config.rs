//! The one `Config`, read once at start-up from the environment (Lambdas) or built by the harness.
//!
//! Every environment variable Bellhop reads is read here and nowhere else, the local harness's own settings
//! ([`HarnessSettings`]) included; the README's configuration table lists them. Secrets are held as `SecretString`
//! so they never reach a log line through `Debug`.

use std::collections::HashMap;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use crate::auth::JwtSettings;
use crate::rooms::{RoleRooms, RoomPolicy};

/// The secrets the harness uses when none are configured. They are public, so the harness says so loudly.
pub const DEV_JWT_SECRET: &str = "bellhop-dev-secret-do-not-use-in-production";
pub const DEV_INTERNAL_API_KEY: &str = "bellhop-dev-internal-key";

/// Shortest `JWT_SECRET` a Lambda accepts: an HS256 key should carry at least 256 bits (RFC 7518 §3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The longest delay SQS gives a single message (15 minutes): every timer check waits at most this long, so
/// `CALL_RING_SECONDS` may not exceed it.
pub const MAX_TIMER_DELAY_SECONDS: u64 = 900;

/// Size and rate limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest chat message content, in characters.
    pub max_content_chars: usize,
    /// Largest page a history or notification query may ask for.
    pub max_page: u32,
    /// Largest internal emit request body, in bytes. Frames sent to clients are additionally capped at 128 KB.
    pub max_emit_bytes: usize,
    /// Concurrent `PostToConnection` calls per fan-out.
    pub fanout_concurrency: usize,
    /// Largest `call:signal` payload, in bytes.
    pub max_signal_bytes: usize,
    /// Most rooms one connection may be in at once, its automatic rooms included; this also bounds `hello`.
    pub max_rooms_per_connection: usize,
    /// Most connections one user may hold open at once (tabs and devices).
    pub max_connections_per_user: usize,
    /// Frames per second one connection may send, sustained; 0 turns the inbound rate limit off.
    pub inbound_per_second: u32,
    /// Frames one connection may send at once above the sustained rate.
    pub inbound_burst: u32,
    /// Refused frames (beyond a refill of one every 3 s) after which a connection that keeps exceeding its rate is
    /// closed.
    pub rate_strikes: u32,
    /// Least time between two typing events of one connection in one room; more are coalesced.
    pub typing_interval_ms: u64,
    /// Calls one user may start per minute.
    pub calls_per_minute: u32,
    /// Missed-call notifications one user may receive per minute.
    pub notifications_per_minute: u32,
    /// How long before its token expires a connection is told so with `auth:expiring`.
    pub token_warning_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_content_chars: 4000,
            max_page: 100,
            max_emit_bytes: 128 * 1024,
            fanout_concurrency: 64,
            max_signal_bytes: 32 * 1024,
            max_rooms_per_connection: 100,
            max_connections_per_user: 20,
            inbound_per_second: 10,
            inbound_burst: 30,
            rate_strikes: 20,
            typing_interval_ms: 2000,
            calls_per_minute: 10,
            notifications_per_minute: 30,
            token_warning_seconds: 60,
        }
    }
}

/// Where the harness keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HarnessStore {
    /// A SQLite file under [`HarnessSettings::data_dir`].
    Sqlite,
    /// In-memory SQLite, lost on exit.
    Memory,
    /// DynamoDB at `DYNAMODB_ENDPOINT` (DynamoDB Local), table `TABLE_NAME`.
    Dynamodb,
}

/// How the harness's handlers reach sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HarnessPusher {
    /// Straight into the harness's connection registry.
    InProcess,
    /// The AWS SDK adapter, through the harness's own `@connections`.
    Sdk,
}

/// Settings only the local harness reads (the Lambdas ignore them); `local`'s command-line flags override them.
#[derive(Clone)]
pub struct HarnessSettings {
    pub port: u16,
    pub stage: String,
    pub store: HarnessStore,
    pub data_dir: PathBuf,
    pub pusher: HarnessPusher,
    pub idle_timeout_seconds: u64,
    pub max_lifetime_seconds: u64,
    /// The stage's route throttling as `(burst, rate per second)`; `None` turns throttling off (load tests).
    pub throttling: Option<(u32, u32)>,
    /// Runs one connection's messages one after another instead of concurrently as AWS does.
    pub strict_order: bool,
    /// Credentials `@connections` requests must be SigV4-signed with.
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// The region of the emulated API: the SigV4 credential scope of `@connections` requests.
    pub region: String,
    /// Added before every `@connections` answer, to stand in for the management API's latency in measurements.
    pub management_delay_ms: u64,
    /// Threads that run the harness's sockets and handlers: 1 (the default) is a single event loop, more is a
    /// work-stealing pool. See `local`'s `main` for why one is the default.
    pub worker_threads: u16,
    /// Whether the public development secrets are in use: the harness then accepts browser requests only from
    /// local origins, unless `CORS_ORIGINS` names others.
    pub dev_secrets: bool,
}

impl std::fmt::Debug for HarnessSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HarnessSettings")
            .field("port", &self.port)
            .field("stage", &self.stage)
            .field("store", &self.store)
            .field("data_dir", &self.data_dir)
            .field("pusher", &self.pusher)
            .field("throttling", &self.throttling)
            .field("strict_order", &self.strict_order)
            .field("worker_threads", &self.worker_threads)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("dev_secrets", &self.dev_secrets)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Config {
    pub jwt: JwtSettings,
    pub internal_api_key: SecretString,
    /// DynamoDB table of the cloud store.
    pub table_name: String,
    /// Overrides the DynamoDB endpoint (DynamoDB Local).
    pub dynamodb_endpoint: Option<String>,
    /// Management API endpoint, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`. When unset, the pusher
    /// derives it from the event's `domainName` and `stage`.
    pub management_endpoint: Option<String>,
    /// A CA bundle the Lambdas trust instead of the Amazon Trust Services roots they trust by default (`SSL_CERT_FILE`,
    /// the variable OpenSSL and rustls-native-certs read): for a VPC whose egress re-signs TLS, such as AWS Network
    /// Firewall's TLS inspection. See `crate::aws::load_in_lambda`.
    pub ssl_cert_file: Option<String>,
    pub room_policy: RoomPolicy,
    pub role_rooms: RoleRooms,
    pub limits: Limits,
    /// Allows `broadcast: true` emits to every connection. Off by default: it costs one post per connection.
    pub broadcast_enabled: bool,
    /// Origins allowed by the HTTP API's CORS layer and on WebSocket upgrades; empty allows any.
    pub cors_origins: Vec<String>,
    /// Lifetime of connection and membership records: API Gateway's 2 h cap plus a margin.
    pub connection_ttl_seconds: u64,
    /// How long an emit's idempotency key is remembered.
    pub idempotency_ttl_seconds: u64,
    /// How long a call rings before it is missed.
    pub call_ring_seconds: u64,
    /// SQS queue whose delayed messages time out unanswered calls in the cloud.
    pub missed_call_queue_url: Option<String>,
    /// The local harness's own settings.
    pub harness: HarnessSettings,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("table_name", &self.table_name)
            .field("dynamodb_endpoint", &self.dynamodb_endpoint)
            .field("management_endpoint", &self.management_endpoint)
            .field("ssl_cert_file", &self.ssl_cert_file)
            .field("broadcast_enabled", &self.broadcast_enabled)
            .field("cors_origins", &self.cors_origins)
            .field("limits", &self.limits)
            .field("call_ring_seconds", &self.call_ring_seconds)
            .field("missed_call_queue_url", &self.missed_call_queue_url)
            .field("harness", &self.harness)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the configuration of a Lambda function. Secrets are required.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|name| vars.get(name).cloned(), false)
    }

    /// Reads the harness configuration: the same variables, but secrets fall back to public development values.
    pub fn from_env_with_dev_defaults() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|name| vars.get(name).cloned(), true)
    }

    /// Builds a configuration from any variable source; `dev_defaults` fills in the public development secrets.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, dev_defaults: bool) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let secret = |name: &'static str, dev: &str| -> Result<SecretString, ConfigError> {
            match get(name) {
                Some(value) => Ok(SecretString::from(value)),
                None if dev_defaults => Ok(SecretString::from(dev.to_owned())),
                None => Err(ConfigError::Missing(name)),
            }
        };
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                Some(raw) => raw
                    .parse()
                    .map_err(|_| ConfigError::Invalid { name, reason: format!("`{raw}` is not a whole number") }),
                None => Ok(default),
            }
        };
        let small = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            let value = number(name, u64::from(default))?;
            u32::try_from(value)
                .map_err(|_| ConfigError::Invalid { name, reason: format!("{value} is larger than {}", u32::MAX) })
        };
        let flag = |name: &'static str| -> Result<bool, ConfigError> {
            match get(name).as_deref() {
                None | Some("false" | "0" | "no") => Ok(false),
                Some("true" | "1" | "yes") => Ok(true),
                Some(other) => Err(ConfigError::Invalid { name, reason: format!("`{other}` is not true or false") }),
            }
        };

        let jwt_secret = secret("JWT_SECRET", DEV_JWT_SECRET)?;
        // The harness only warns about a weak secret it was given (see `local`); a Lambda refuses to start with one.
        if !dev_defaults && jwt_secret.expose_secret().len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                reason: format!(
                    "{} bytes is too short for an HS256 key; use at least {MIN_JWT_SECRET_BYTES} random bytes",
                    jwt_secret.expose_secret().len()
                ),
            });
        }
        let jwt = JwtSettings {
            secret: jwt_secret,
            issuer: get("JWT_ISSUER"),
            audience: get("JWT_AUDIENCE"),
            leeway_seconds: number("JWT_LEEWAY_SECONDS", 30)?,
        };
        let room_policy = match get("ROOM_POLICY") {
            Some(spec) => RoomPolicy::with_overrides(&spec)
                .map_err(|reason| ConfigError::Invalid { name: "ROOM_POLICY", reason })?,
            None => RoomPolicy::default(),
        };
        let role_rooms = match get("ROLE_ROOMS") {
            Some(spec) => {
                RoleRooms::parse(&spec).map_err(|reason| ConfigError::Invalid { name: "ROLE_ROOMS", reason })?
            }
            None => RoleRooms::default(),
        };
        let defaults = Limits::default();
        let limits = Limits {
            max_content_chars: number("MAX_MESSAGE_CHARS", defaults.max_content_chars as u64)? as usize,
            max_page: number("MAX_PAGE_SIZE", u64::from(defaults.max_page))?.clamp(1, 1000) as u32,
            max_emit_bytes: number("MAX_EMIT_BYTES", defaults.max_emit_bytes as u64)? as usize,
            fanout_concurrency: number("FANOUT_CONCURRENCY", defaults.fanout_concurrency as u64)?.clamp(1, 1024)
                as usize,
            max_signal_bytes: defaults.max_signal_bytes,
            max_rooms_per_connection: number("MAX_ROOMS_PER_CONNECTION", defaults.max_rooms_per_connection as u64)?
                .clamp(1, 1000) as usize,
            max_connections_per_user: number("MAX_CONNECTIONS_PER_USER", defaults.max_connections_per_user as u64)?
                .clamp(1, 1000) as usize,
            inbound_per_second: small("INBOUND_RATE_PER_SECOND", defaults.inbound_per_second)?,
            inbound_burst: small("INBOUND_BURST", defaults.inbound_burst)?.max(1),
            rate_strikes: small("RATE_LIMIT_STRIKES", defaults.rate_strikes)?.max(1),
            typing_interval_ms: number("TYPING_INTERVAL_MS", defaults.typing_interval_ms)?,
            calls_per_minute: small("CALLS_PER_MINUTE", defaults.calls_per_minute)?.max(1),
            notifications_per_minute: small("NOTIFICATIONS_PER_MINUTE", defaults.notifications_per_minute)?.max(1),
            token_warning_seconds: number("TOKEN_EXPIRY_WARNING_SECONDS", defaults.token_warning_seconds)?,
        };
        let internal_api_key = secret("INTERNAL_API_KEY", DEV_INTERNAL_API_KEY)?;
        let dev_secrets =
            jwt.secret.expose_secret() == DEV_JWT_SECRET || internal_api_key.expose_secret() == DEV_INTERNAL_API_KEY;
        let harness = harness_settings(&get, dev_secrets)?;
        Ok(Self {
            jwt,
            internal_api_key,
            table_name: get("TABLE_NAME").unwrap_or_else(|| "bellhop".to_owned()),
            dynamodb_endpoint: get("DYNAMODB_ENDPOINT"),
            management_endpoint: get("WS_ENDPOINT"),
            ssl_cert_file: get("SSL_CERT_FILE"),
            room_policy,
            role_rooms,
            limits,
            broadcast_enabled: flag("BROADCAST_ENABLED")?,
            cors_origins: get("CORS_ORIGINS")
                .map(|v| v.split(',').map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect())
                .unwrap_or_default(),
            connection_ttl_seconds: number("CONNECTION_TTL_SECONDS", 2 * 3600 + 15 * 60)?,
            idempotency_ttl_seconds: number("IDEMPOTENCY_TTL_SECONDS", 600)?,
            call_ring_seconds: ring_seconds(number("CALL_RING_SECONDS", 30)?)?,
            missed_call_queue_url: get("MISSED_CALL_QUEUE_URL"),
            harness,
        })
    }

    /// A configuration for tests: development secrets and defaults everywhere.
    pub fn for_tests() -> Self {
        // The empty lookup with dev defaults cannot fail: every value has a valid default.
        Self::from_lookup(|_| None, true).unwrap_or_else(|e| panic!("default config is valid: {e}"))
    }
}

/// The harness's settings. Read with their own helpers, not `get`/`number`/`flag`, because the template test
/// requires every variable those read to be set for each Lambda, and these mean nothing in the cloud.
fn harness_settings(get: &impl Fn(&str) -> Option<String>, dev_secrets: bool) -> Result<HarnessSettings, ConfigError> {
    let local_number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
        get(name).map_or(Ok(default), |raw| {
            raw.parse().map_err(|_| ConfigError::Invalid { name, reason: format!("`{raw}` is not a whole number") })
        })
    };
    let local_flag = |name: &'static str| -> Result<bool, ConfigError> {
        match get(name).as_deref() {
            None | Some("false" | "0" | "no" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some(other) => Err(ConfigError::Invalid { name, reason: format!("`{other}` is not true or false") }),
        }
    };
    let invalid = |name: &'static str, reason: String| ConfigError::Invalid { name, reason };
    let store = match get("BELLHOP_STORE").as_deref() {
        None | Some("sqlite") => HarnessStore::Sqlite,
        Some("memory") => HarnessStore::Memory,
        Some("dynamodb") => HarnessStore::Dynamodb,
        Some(other) => return Err(invalid("BELLHOP_STORE", format!("`{other}` is not sqlite, memory or dynamodb"))),
    };
    let pusher = match get("BELLHOP_PUSHER").as_deref() {
        None | Some("in-process") => HarnessPusher::InProcess,
        Some("sdk") => HarnessPusher::Sdk,
        Some(other) => return Err(invalid("BELLHOP_PUSHER", format!("`{other}` is not in-process or sdk"))),
    };
    let port = local_number("BELLHOP_PORT", 3001)?;
    let port = u16::try_from(port).map_err(|_| invalid("BELLHOP_PORT", format!("{port} is not a port")))?;
    let positive = |name: &'static str, value: u64| -> Result<u32, ConfigError> {
        u32::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| invalid(name, format!("{value} is outside 1..={}", u32::MAX)))
    };
    let throttling = if local_flag("BELLHOP_NO_THROTTLE")? {
        None
    } else {
        let burst = local_number("BELLHOP_THROTTLE_BURST", u64::from(crate::gateway::STAGE_THROTTLING_BURST))?;
        let rate = local_number("BELLHOP_THROTTLE_RATE", u64::from(crate::gateway::STAGE_THROTTLING_RATE))?;
        Some((positive("BELLHOP_THROTTLE_BURST", burst)?, positive("BELLHOP_THROTTLE_RATE", rate)?))
    };
    Ok(HarnessSettings {
        port,
        stage: get("BELLHOP_STAGE").unwrap_or_else(|| "local".to_owned()),
        store,
        data_dir: PathBuf::from(get("BELLHOP_DATA_DIR").unwrap_or_else(|| ".data".to_owned())),
        pusher,
        idle_timeout_seconds: local_number("BELLHOP_IDLE_TIMEOUT_SECS", crate::gateway::IDLE_TIMEOUT.as_secs())?,
        max_lifetime_seconds: local_number(
            "BELLHOP_MAX_LIFETIME_SECS",
            crate::gateway::MAX_CONNECTION_DURATION.as_secs(),
        )?,
        throttling,
        strict_order: local_flag("BELLHOP_STRICT_ORDER")?,
        access_key_id: get("BELLHOP_ACCESS_KEY_ID").unwrap_or_else(|| crate::gateway::LOCAL_ACCESS_KEY_ID.to_owned()),
        secret_access_key: SecretString::from(
            get("BELLHOP_SECRET_ACCESS_KEY").unwrap_or_else(|| crate::gateway::LOCAL_SECRET_ACCESS_KEY.to_owned()),
        ),
        region: get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| crate::gateway::DEFAULT_REGION.to_owned()),
        management_delay_ms: local_number("BELLHOP_MANAGEMENT_DELAY_MS", 0)?,
        worker_threads: {
            let n = local_number("BELLHOP_WORKER_THREADS", 1)?;
            u16::try_from(n)
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| invalid("BELLHOP_WORKER_THREADS", format!("{n} is not between 1 and 256")))?
        },
        dev_secrets,
    })
}

/// The ring time must fit in one SQS message delay (at most 15 minutes), because the cloud's missed-call check is a
/// delayed message; and a call that is missed the moment it rings is no call at all.
fn ring_seconds(seconds: u64) -> Result<u64, ConfigError> {
    let max = MAX_TIMER_DELAY_SECONDS;
    if (1..=max).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(ConfigError::Invalid {
            name: "CALL_RING_SECONDS",
            reason: format!("{seconds} is outside 1..={max} (the longest SQS message delay)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn lambdas_require_their_secrets() {
        let error = Config::from_lookup(lookup(&[]), false).expect_err("missing secret");
        assert!(matches!(error, ConfigError::Missing("JWT_SECRET")));
        let strong = "a-secret-of-at-least-thirty-two-bytes";
        let error = Config::from_lookup(lookup(&[("JWT_SECRET", strong)]), false).expect_err("missing key");
        assert!(matches!(error, ConfigError::Missing("INTERNAL_API_KEY")));
    }

    #[test]
    fn lambdas_refuse_a_jwt_secret_shorter_than_32_bytes() {
        let short = "x".repeat(MIN_JWT_SECRET_BYTES - 1);
        let error = Config::from_lookup(lookup(&[("JWT_SECRET", &short), ("INTERNAL_API_KEY", "k")]), false)
            .expect_err("too short");
        assert!(error.to_string().starts_with("JWT_SECRET is invalid: 31 bytes is too short"), "{error}");
        let enough = "x".repeat(MIN_JWT_SECRET_BYTES);
        Config::from_lookup(lookup(&[("JWT_SECRET", &enough), ("INTERNAL_API_KEY", "k")]), false)
            .expect("32 bytes are enough");
    }

    #[test]
    fn harness_settings_default_to_aws_values_and_can_turn_throttling_off() {
        let config = Config::for_tests();
        assert_eq!(config.harness.port, 3001);
        assert_eq!(config.harness.throttling, Some((500, 1000)));
        assert!(config.harness.dev_secrets && !config.harness.strict_order);
        assert_eq!(config.harness.worker_threads, 1);
        let refused = Config::from_lookup(lookup(&[("BELLHOP_WORKER_THREADS", "0")]), true);
        assert!(matches!(refused, Err(ConfigError::Invalid { name: "BELLHOP_WORKER_THREADS", .. })));
        let config = Config::from_lookup(
            lookup(&[("BELLHOP_NO_THROTTLE", "1"), ("BELLHOP_STORE", "memory"), ("AWS_REGION", "eu-west-1")]),
            true,
        )
        .expect("valid");
        assert_eq!(config.harness.throttling, None);
        assert_eq!(config.harness.store, HarnessStore::Memory);
        assert_eq!(config.harness.region, "eu-west-1");
        let error = Config::from_lookup(lookup(&[("BELLHOP_THROTTLE_RATE", "0")]), true).expect_err("zero rate");
        assert!(error.to_string().starts_with("BELLHOP_THROTTLE_RATE is invalid"), "{error}");
    }

    #[test]
    fn the_harness_falls_back_to_public_dev_secrets() {
        let config = Config::from_lookup(lookup(&[]), true).expect("defaults");
        assert_eq!(config.jwt.secret.expose_secret(), DEV_JWT_SECRET);
        assert_eq!(config.internal_api_key.expose_secret(), DEV_INTERNAL_API_KEY);
        assert_eq!(config.call_ring_seconds, 30);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let error = Config::from_lookup(lookup(&[("FANOUT_CONCURRENCY", "many")]), true).expect_err("invalid");
        assert!(error.to_string().starts_with("FANOUT_CONCURRENCY is invalid"), "{error}");
        let error = Config::from_lookup(lookup(&[("ROLE_ROOMS", "admin=bad room")]), true).expect_err("invalid");
        assert!(error.to_string().starts_with("ROLE_ROOMS is invalid"), "{error}");
        let error = Config::from_lookup(lookup(&[("BROADCAST_ENABLED", "maybe")]), true).expect_err("invalid");
        assert!(error.to_string().starts_with("BROADCAST_ENABLED is invalid"), "{error}");
    }

    #[test]
    fn call_ring_seconds_must_fit_one_sqs_message_delay() {
        for bad in ["0", "901"] {
            let error = Config::from_lookup(lookup(&[("CALL_RING_SECONDS", bad)]), true).expect_err("out of range");
            assert!(error.to_string().starts_with("CALL_RING_SECONDS is invalid"), "{error}");
        }
        let config = Config::from_lookup(lookup(&[("CALL_RING_SECONDS", "900")]), true).expect("the maximum is valid");
        assert_eq!(config.call_ring_seconds, 900);
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let secret = "hunter2-hunter2-hunter2-hunter2-hunter2";
        let config = Config::from_lookup(
            lookup(&[("JWT_SECRET", secret), ("INTERNAL_API_KEY", "k3y"), ("BELLHOP_SECRET_ACCESS_KEY", "s3cr3t")]),
            false,
        )
        .expect("valid");
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2") && !text.contains("k3y") && !text.contains("s3cr3t"), "{text}");
    }
}
