//! Validated identifiers that cross trust boundaries: connection ids and user ids.
//!
//! Both are opaque strings on the wire. Parsing them once, at the edge, means the rest of the library never has to
//! wonder whether an id is empty, enormous, or carries characters that would break a DynamoDB key or a URL path.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest connection id accepted. API Gateway ids are 16 characters plus `==`; the margin covers older formats.
const MAX_CONNECTION_ID_LEN: usize = 64;
/// Longest user id accepted: long enough for UUIDs, ObjectIds, e-mail style subjects and prefixed ids.
pub const MAX_USER_ID_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("connection id must be 1 to {MAX_CONNECTION_ID_LEN} characters of A-Z a-z 0-9 - _ =")]
    Connection,
    #[error("user id must be 1 to {MAX_USER_ID_LEN} characters of A-Z a-z 0-9 - _ . @ | +")]
    User,
}

/// An API Gateway connection id, such as `gbf_-C9vMQAYKEiZoA==`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ts_rs::TS)]
#[serde(try_from = "String", into = "String")]
#[ts(type = "string")]
pub struct ConnectionId(String);

impl ConnectionId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        let ok = !raw.is_empty()
            && raw.len() <= MAX_CONNECTION_ID_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='));
        if ok { Ok(Self(raw)) } else { Err(IdError::Connection) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The subject of a platform JWT: who is talking.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ts_rs::TS)]
#[serde(try_from = "String", into = "String")]
#[ts(type = "string")]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        let ok = !raw.is_empty()
            && raw.len() <= MAX_USER_ID_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'|' | b'+'));
        if ok { Ok(Self(raw)) } else { Err(IdError::User) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }
        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.0
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
string_newtype_impls!(ConnectionId);
string_newtype_impls!(UserId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_gateway_connection_ids_parse() {
        for id in ["gbf_-C9vMQAYKEiZoA==", "Kf2bqd9WywMCEng="] {
            assert_eq!(ConnectionId::parse(id).map(|c| c.to_string()), Ok(id.to_owned()));
        }
    }

    #[test]
    fn connection_ids_with_path_characters_are_rejected() {
        for id in ["", "a/b", "a b", "../x", &"x".repeat(65)] {
            assert_eq!(ConnectionId::parse(id), Err(IdError::Connection), "{id}");
        }
    }

    #[test]
    fn user_ids_accept_common_subject_shapes_and_reject_separators() {
        for id in ["u1", "507f1f77bcf86cd799439011", "auth0|abc", "a.b@example.com"] {
            assert!(UserId::parse(id).is_ok(), "{id}");
        }
        for id in ["", "a:b", "a b", "a/b", "a#b"] {
            assert_eq!(UserId::parse(id), Err(IdError::User), "{id}");
        }
    }
}
