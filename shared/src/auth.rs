//! Who is talking: platform JWT verification, token extraction from the `$connect` request, and the identity that
//! travels from the authorizer to every later event as `requestContext.authorizer`.
//!
//! Only HS256 with a shared secret is accepted: the algorithm is pinned here and never read from the token, so
//! `alg: none` and algorithm-swap tokens fail. Tokens are never logged.

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{RoomName, UserId};
use crate::protocol::ErrorCode;
use crate::protocol::payloads::Profile;

/// The subprotocol a browser offers next to its `bearer.<jwt>` entry; the server echoes it back.
pub const SUBPROTOCOL: &str = "bellhop.v1";
/// Prefix of the `Sec-WebSocket-Protocol` entry that carries the token.
pub const SUBPROTOCOL_TOKEN_PREFIX: &str = "bearer.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Authentication error: Missing token")]
    Missing,
    #[error("Authentication error: Invalid token")]
    Invalid,
    #[error("Authentication error: Token expired")]
    Expired,
}

impl AuthError {
    /// The stable code clients switch on.
    pub fn code(self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::MissingToken,
            AuthError::Invalid => ErrorCode::InvalidToken,
            AuthError::Expired => ErrorCode::TokenExpired,
        }
    }
}

/// JWT settings, read once into [`crate::config::Config`].
#[derive(Clone)]
pub struct JwtSettings {
    pub secret: SecretString,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
}

/// The claims Bellhop reads from a platform token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Rooms the platform signed this user into (room-scoped access, auto-joined at connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

/// An authenticated user, as every handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub rooms: Vec<RoomName>,
    /// When the token the connection opened with expires (`exp`, seconds since the epoch). `None` for events whose
    /// authorizer context carries no `exp`, such as those of connections authorized before it was added.
    pub expires_at: Option<i64>,
}

impl Identity {
    fn from_claims(claims: Claims) -> Result<Self, AuthError> {
        let user_id = UserId::parse(claims.sub).map_err(|_| AuthError::Invalid)?;
        let rooms = claims
            .rooms
            .unwrap_or_default()
            .into_iter()
            .map(RoomName::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| AuthError::Invalid)?;
        Ok(Self {
            user_id,
            role: claims.role,
            name: claims.name,
            email: claims.email,
            rooms,
            expires_at: Some(claims.exp),
        })
    }

    /// The authorizer `context`. API Gateway allows only flat string/number/boolean values, so the room list is a
    /// JSON-encoded string.
    pub fn to_authorizer_context(&self) -> HashMap<String, Value> {
        let mut context = HashMap::new();
        context.insert("userId".to_owned(), Value::String(self.user_id.to_string()));
        for (key, value) in [("role", &self.role), ("name", &self.name), ("email", &self.email)] {
            if let Some(value) = value {
                context.insert(key.to_owned(), Value::String(value.clone()));
            }
        }
        if let Some(exp) = self.expires_at {
            // A string like every other value, as API Gateway forwards it on later events anyway.
            context.insert("exp".to_owned(), Value::String(exp.to_string()));
        }
        if !self.rooms.is_empty() {
            let rooms: Vec<&str> = self.rooms.iter().map(RoomName::as_str).collect();
            context.insert("rooms".to_owned(), Value::String(serde_json::to_string(&rooms).unwrap_or_default()));
        }
        context
    }

    /// Reads the identity back from `requestContext.authorizer`, where API Gateway has turned every value into a
    /// string and added `principalId` (and `integrationLatency` on CONNECT).
    pub fn from_authorizer_fields(fields: &HashMap<String, Value>) -> Option<Self> {
        let text = |key: &str| fields.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let user_id = UserId::parse(text("userId")?).ok()?;
        let rooms = match text("rooms") {
            Some(encoded) => serde_json::from_str::<Vec<String>>(&encoded)
                .ok()?
                .into_iter()
                .map(RoomName::parse)
                .collect::<Result<Vec<_>, _>>()
                .ok()?,
            None => Vec::new(),
        };
        // API Gateway hands every context value back as a string.
        let expires_at = fields.get("exp").and_then(|exp| exp.as_i64().or_else(|| exp.as_str()?.parse().ok()));
        Some(Self { user_id, role: text("role"), name: text("name"), email: text("email"), rooms, expires_at })
    }

    /// The public profile attached to messages and join events.
    pub fn profile(&self) -> Profile {
        Profile {
            id: self.user_id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            role: self.role.clone(),
        }
    }
}

/// Verifies platform tokens. Built once per process.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(settings: &JwtSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_seconds;
        validation.validate_nbf = true;
        // A configured issuer or audience must also be present: jsonwebtoken checks them only when the token has them.
        let mut required = vec!["exp", "sub"];
        required.extend(settings.issuer.as_ref().map(|_| "iss"));
        required.extend(settings.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
        }
        Self { key: DecodingKey::from_secret(settings.secret.expose_secret().as_bytes()), validation }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        Identity::from_claims(data.claims)
    }
}

impl Claims {
    /// Claims for `sub`, valid from now for `ttl_secs`, with the issuer and audience `settings` check; no role,
    /// profile or rooms. Development tokens start here and add what they need.
    pub fn for_subject(sub: impl Into<String>, ttl_secs: i64, settings: &JwtSettings) -> Self {
        let now = chrono::Utc::now().timestamp();
        Self {
            sub: sub.into(),
            exp: now.saturating_add(ttl_secs),
            nbf: None,
            iat: Some(now),
            iss: settings.issuer.clone(),
            aud: settings.audience.clone(),
            role: None,
            name: None,
            email: None,
            rooms: None,
        }
    }
}

/// Signs a token with the shared secret: the dev-token command of the harness and the tests use it, exactly as
/// a platform backend would.
pub fn mint_token(secret: &SecretString, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}

/// Where a token was found on the upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    QueryString,
    /// Found in `Sec-WebSocket-Protocol`; `echo` is the protocol the `$connect` response must select, if any.
    Subprotocol {
        echo: Option<String>,
    },
    AuthorizationHeader,
}

/// Finds the token on a `$connect` request: `?token=`, a `bearer.<jwt>` subprotocol entry, or
/// `Authorization: Bearer` for non-browser clients. Header names are matched case-insensitively because API
/// Gateway preserves the client's spelling.
pub fn extract_token(query: &HashMap<String, String>, headers: &http::HeaderMap) -> Option<(String, TokenSource)> {
    if let Some(token) = query.get("token").filter(|t| !t.is_empty()) {
        return Some((token.clone(), TokenSource::QueryString));
    }
    let offered = offered_subprotocols(headers);
    if let Some(token) = offered.iter().find_map(|p| p.strip_prefix(SUBPROTOCOL_TOKEN_PREFIX)) {
        let echo = offered.iter().any(|p| p == SUBPROTOCOL).then(|| SUBPROTOCOL.to_owned());
        return Some((token.to_owned(), TokenSource::Subprotocol { echo }));
    }
    let authorization = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = authorization.strip_prefix("Bearer ").or_else(|| authorization.strip_prefix("bearer "))?;
    Some((token.trim().to_owned(), TokenSource::AuthorizationHeader))
}

/// Every entry of every `Sec-WebSocket-Protocol` header, trimmed.
pub fn offered_subprotocols(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "test-secret-test-secret-test-secret";

    fn settings() -> JwtSettings {
        JwtSettings { secret: SecretString::from(SECRET), issuer: None, audience: None, leeway_seconds: 5 }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.to_owned(),
            exp: now() + 600,
            nbf: None,
            iat: Some(now()),
            iss: None,
            aud: None,
            role: Some("provider".into()),
            name: Some("Dr Lee".into()),
            email: None,
            rooms: Some(vec!["visit:v1".into()]),
        }
    }

    fn sign(claims: &Claims) -> String {
        mint_token(&SecretString::from(SECRET), claims).expect("sign")
    }

    fn raw_token(header: Value, payload: Value, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            signature
        )
    }

    fn check(token: &str, expected: Result<&str, AuthError>) {
        let got = TokenVerifier::new(&settings()).verify(token).map(|i| i.user_id.to_string());
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "token {token}");
    }

    #[test]
    fn a_valid_token_yields_the_identity() {
        let identity = TokenVerifier::new(&settings()).verify(&sign(&claims("u1"))).expect("valid");
        assert_eq!(identity.user_id.as_str(), "u1");
        assert_eq!(identity.role.as_deref(), Some("provider"));
        assert_eq!(identity.rooms, vec![RoomName::parse("visit:v1").expect("room")]);
    }

    #[test]
    fn expired_tokens_say_token_expired() {
        let mut c = claims("u1");
        c.exp = now() - 120;
        check(&sign(&c), Err(AuthError::Expired));
        assert_eq!(AuthError::Expired.to_string(), "Authentication error: Token expired");
    }

    #[test]
    fn tokens_signed_with_another_key_are_invalid() {
        let other = mint_token(&SecretString::from("another-secret"), &claims("u1")).expect("sign");
        check(&other, Err(AuthError::Invalid));
        assert_eq!(AuthError::Invalid.to_string(), "Authentication error: Invalid token");
    }

    #[test]
    fn alg_none_is_rejected() {
        let token = raw_token(json!({"alg": "none", "typ": "JWT"}), json!({"sub": "u1", "exp": now() + 600}), "");
        check(&token, Err(AuthError::Invalid));
    }

    #[test]
    fn an_algorithm_swap_is_rejected() {
        // A token claiming HS512 (or RS256) must not be verified with the HS256 secret just because it says so.
        let c = claims("u1");
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &c, &EncodingKey::from_secret(SECRET.as_bytes()))
                .expect("sign");
        check(&hs512, Err(AuthError::Invalid));
        let rs256 = raw_token(json!({"alg": "RS256", "typ": "JWT"}), serde_json::to_value(&c).expect("json"), "c2ln");
        check(&rs256, Err(AuthError::Invalid));
    }

    #[test]
    fn a_future_nbf_is_rejected() {
        let mut c = claims("u1");
        c.nbf = Some(now() + 3600);
        check(&sign(&c), Err(AuthError::Invalid));
    }

    #[test]
    fn missing_or_unusable_sub_is_rejected() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": now() + 600}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        check(&token, Err(AuthError::Invalid));
        check(&sign(&claims("has:colon")), Err(AuthError::Invalid));
    }

    #[test]
    fn missing_exp_is_rejected() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "u1"}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        check(&token, Err(AuthError::Invalid));
    }

    #[test]
    fn garbage_and_empty_tokens_are_rejected() {
        check("", Err(AuthError::Missing));
        check("abc", Err(AuthError::Invalid));
        check("a.b.c", Err(AuthError::Invalid));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let mut s = settings();
        s.issuer = Some("https://platform.example".into());
        s.audience = Some("bellhop".into());
        let verifier = TokenVerifier::new(&s);
        let mut c = claims("u1");
        assert_eq!(verifier.verify(&sign(&c)), Err(AuthError::Invalid));
        c.iss = Some("https://platform.example".into());
        c.aud = Some("bellhop".into());
        assert!(verifier.verify(&sign(&c)).is_ok());
        c.aud = Some("someone-else".into());
        assert_eq!(verifier.verify(&sign(&c)), Err(AuthError::Invalid));
    }

    #[test]
    fn identity_survives_the_authorizer_context_round_trip_with_stringified_values() {
        let identity = TokenVerifier::new(&settings()).verify(&sign(&claims("u1"))).expect("valid");
        let mut fields = identity.to_authorizer_context();
        // API Gateway adds these; they must not confuse the reader.
        fields.insert("principalId".into(), json!("u1"));
        fields.insert("integrationLatency".into(), json!(12));
        assert_eq!(Identity::from_authorizer_fields(&fields), Some(identity));
        assert_eq!(Identity::from_authorizer_fields(&HashMap::new()), None);
    }

    #[test]
    fn tokens_are_found_in_query_subprotocol_or_authorization_header() {
        let mut query = HashMap::new();
        let mut headers = http::HeaderMap::new();
        assert_eq!(extract_token(&query, &headers), None);

        headers.insert("sec-websocket-protocol", "bellhop.v1, bearer.abc.def.ghi".parse().expect("header"));
        assert_eq!(
            extract_token(&query, &headers),
            Some(("abc.def.ghi".into(), TokenSource::Subprotocol { echo: Some(SUBPROTOCOL.into()) }))
        );

        query.insert("token".to_owned(), "q.q.q".to_owned());
        assert_eq!(extract_token(&query, &headers), Some(("q.q.q".into(), TokenSource::QueryString)));

        let mut auth_only = http::HeaderMap::new();
        auth_only.insert("authorization", "Bearer h.h.h".parse().expect("header"));
        assert_eq!(
            extract_token(&HashMap::new(), &auth_only),
            Some(("h.h.h".into(), TokenSource::AuthorizationHeader))
        );
    }
}
