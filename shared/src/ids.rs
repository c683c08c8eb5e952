//! Validated identifiers that cross trust boundaries: connection ids, user ids and room names.
//!
//! All are strings on the wire. Parsing them once, at the edge, means the rest of the library never has to
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

pub const MAX_ROOM_LEN: usize = 160;
const MAX_SEGMENTS: usize = 3;

/// Why a room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error(
        "room name must be `kind` or `kind:id[:id]`, at most {MAX_ROOM_LEN} characters, each part non-empty \
         A-Z a-z 0-9 - _ . @ | +"
    )]
    Invalid,
    #[error("room `{0}` must be `chat:a:b` with the two user ids in sorted order")]
    UnsortedPair(String),
}

/// A validated room name: `kind` (a role-wide room such as `calendar`) or `kind:id[:id]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ts_rs::TS)]
#[serde(try_from = "String", into = "String")]
#[ts(type = "string")]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: impl Into<String>) -> Result<Self, RoomError> {
        let raw = raw.into();
        let segments: Vec<&str> = raw.split(':').collect();
        let valid = raw.len() <= MAX_ROOM_LEN
            && segments.len() <= MAX_SEGMENTS
            && segments.iter().all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'|' | b'+'))
            });
        if !valid {
            return Err(RoomError::Invalid);
        }
        if segments.first() == Some(&"chat") && (segments.len() != 3 || segments[1] >= segments[2]) {
            return Err(RoomError::UnsortedPair(raw));
        }
        Ok(Self(raw))
    }

    /// The room of one user: every connection of that user is in it, so emitting to a user is emitting here.
    pub fn for_user(user: &UserId) -> Self {
        Self(format!("user:{user}"))
    }

    /// The room whose members are the subscribers to `user`'s presence.
    pub fn presence_of(user: &UserId) -> Self {
        Self(format!("presence:{user}"))
    }

    /// The direct-chat room of two users, ids sorted so both sides name the same room.
    pub fn chat_between(a: &UserId, b: &UserId) -> Option<Self> {
        match a.as_str().cmp(b.as_str()) {
            std::cmp::Ordering::Less => Some(Self(format!("chat:{a}:{b}"))),
            std::cmp::Ordering::Greater => Some(Self(format!("chat:{b}:{a}"))),
            std::cmp::Ordering::Equal => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `:`, or the whole name for bare role-wide rooms.
    pub fn kind(&self) -> &str {
        self.0.split(':').next().unwrap_or(&self.0)
    }

    /// The parts after the kind.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.split(':').skip(1)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RoomName {
    type Error = RoomError;
    fn try_from(raw: String) -> Result<Self, RoomError> {
        Self::parse(raw)
    }
}

impl From<RoomName> for String {
    fn from(room: RoomName) -> String {
        room.0
    }
}

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
