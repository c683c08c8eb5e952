//! What keeps a harness left running on a developer's machine from being used by the web pages they visit.
//!
//! - **Host**: every request must name a loopback host (`localhost`, `*.localhost`, `127.0.0.1`, `[::1]`). A page on
//!   a rebinding domain reaches 127.0.0.1 with its own name in `Host`, so it is refused (DNS rebinding).
//! - **Origin**: while the public development secrets are in use and `CORS_ORIGINS` is unset, browser requests
//!   (HTTP and WebSocket upgrades alike) are accepted only from local origins, and CORS answers name that origin
//!   instead of `*`: anyone can mint tokens and API keys for such a hub, so no other page may talk to it. With real
//!   secrets, or with `CORS_ORIGINS` set, the hub's own rules (`shared::http`'s CORS layer and `$connect`'s origin
//!   check) apply unchanged.
//!
//! This is harness policy, not API Gateway emulation: API Gateway itself checks neither. It holds no hub logic.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::config::Config;

/// The harness's edge rules, decided once from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgePolicy {
    /// Browser requests only from local origins (public dev secrets in use, no `CORS_ORIGINS`).
    pub local_origins_only: bool,
}

impl EdgePolicy {
    pub fn from_config(config: &Config) -> Self {
        Self { local_origins_only: config.harness.dev_secrets && config.cors_origins.is_empty() }
    }
}

/// The middleware: refuses foreign hosts and (when local-only) foreign origins, and narrows CORS answers.
pub(crate) async fn guard(State(policy): State<Arc<EdgePolicy>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(host) = host.as_deref()
        && !is_loopback_host(host)
    {
        tracing::warn!(host, "request refused: Host is not a loopback name (DNS rebinding?)");
        return refuse("Host not allowed: the harness answers only localhost and 127.0.0.1");
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    let Some(origin) = origin.filter(|_| policy.local_origins_only) else {
        return next.run(request).await;
    };
    if !origin.to_str().is_ok_and(is_local_origin) {
        tracing::warn!(origin = ?origin, "request refused: not a local origin while the public dev secrets are in use");
        return refuse("Origin not allowed: set CORS_ORIGINS, or real JWT_SECRET and INTERNAL_API_KEY, to allow it");
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_some_and(|v| v == "*") {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

fn refuse(message: &str) -> Response {
    (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/json")], json!({"message": message}).to_string())
        .into_response()
}

/// Whether a `Host` header names this machine: `localhost` (and its subdomains, which RFC 6761 reserves for
/// loopback), `127.0.0.1` or `[::1]`, with any port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split(']').next() == Some("::1"),
        None => host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name == "127.0.0.1"
}

/// Whether an `Origin` is a page served from this machine: `http(s)://` and a loopback host. `null` (sandboxed
/// frames, `file:` pages) is not.
pub fn is_local_origin(origin: &str) -> bool {
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && !host.contains('/') && is_loopback_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_with_and_without_ports() {
        for host in ["localhost", "localhost:3001", "127.0.0.1:3001", "[::1]:3001", "app.localhost:8080", "LOCALHOST"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example", "evil.example:3001", "127.0.0.1.evil.example", "localhost.evil.example", "[::2]"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn only_http_pages_on_loopback_hosts_are_local_origins() {
        for origin in ["http://localhost:5173", "https://127.0.0.1", "http://[::1]:8080"] {
            assert!(is_local_origin(origin), "{origin}");
        }
        for origin in ["null", "https://evil.example", "http://localhost.evil.example", "file://", "ws://localhost"] {
            assert!(!is_local_origin(origin), "{origin}");
        }
    }
}
