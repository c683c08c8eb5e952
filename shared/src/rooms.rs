//! Room names, the access policy that says who may join which room, and the role → room templates used to
//! auto-join connections at `$connect`.
//!
//! This module decides; it does not look anything up. Whether a user holds a grant on `booking:42` is a store
//! question answered by the caller and passed in as [`JoinFacts`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::ids::UserId;

pub const MAX_ROOM_LEN: usize = 160;
const MAX_SEGMENTS: usize = 3;

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

/// How a kind of room decides who may join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoomRule {
    /// `user:{sub}`: only that user.
    SelfOnly,
    /// `chat:{a}:{b}`: exactly the two users named.
    Pair,
    /// `topic:{name}`: any authenticated user.
    Public,
    /// `presence:{user}`: subscribers to a user's presence; visibility is checked by the presence handler.
    Presence,
    /// Rooms only reachable through the role templates or the token's `rooms` claim (`admin`, `calendar`…).
    AutoOnly,
    /// `booking:{id}`, `visit:{id}`…: users granted through the internal API, or holding the room in their token.
    Granted,
}

impl RoomRule {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "self" | "self-only" => Some(RoomRule::SelfOnly),
            "pair" => Some(RoomRule::Pair),
            "public" => Some(RoomRule::Public),
            "presence" => Some(RoomRule::Presence),
            "auto" | "auto-only" => Some(RoomRule::AutoOnly),
            "granted" => Some(RoomRule::Granted),
            _ => None,
        }
    }
}

/// What the caller has looked up about a join, so the policy can decide without I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinFacts {
    /// The internal API granted this user this room.
    pub granted: bool,
}

/// Outcome of a policy check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// A grant lookup is needed before the policy can answer (the rule is [`RoomRule::Granted`]).
    NeedsGrant,
    Denied,
}

/// The kind → rule table. Kinds not listed fall back to `Granted`: unknown rooms are closed by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    rules: BTreeMap<String, RoomRule>,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        let rules = [
            ("user", RoomRule::SelfOnly),
            ("chat", RoomRule::Pair),
            ("topic", RoomRule::Public),
            ("presence", RoomRule::Presence),
            ("admin", RoomRule::AutoOnly),
            ("calendar", RoomRule::AutoOnly),
            ("provider", RoomRule::AutoOnly),
            ("secretary", RoomRule::AutoOnly),
            ("customer", RoomRule::AutoOnly),
            ("booking", RoomRule::Granted),
            ("visit", RoomRule::Granted),
            ("call", RoomRule::Granted),
            ("vendor", RoomRule::Granted),
        ];
        Self { rules: rules.into_iter().map(|(k, r)| (k.to_owned(), r)).collect() }
    }
}

impl RoomPolicy {
    /// The default table with `overrides` applied, parsed from `kind=rule,kind=rule`.
    pub fn with_overrides(spec: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kind, rule) = entry.split_once('=').ok_or_else(|| format!("`{entry}` is not kind=rule"))?;
            let rule = RoomRule::parse(rule.trim())
                .ok_or_else(|| format!("`{rule}` is not one of self, pair, public, presence, auto, granted"))?;
            policy.rules.insert(kind.trim().to_owned(), rule);
        }
        Ok(policy)
    }

    pub fn rule_for(&self, room: &RoomName) -> RoomRule {
        self.rules.get(room.kind()).copied().unwrap_or(RoomRule::Granted)
    }

    /// Decides whether `identity` may join `room`. `auto_rooms` are the rooms this identity is auto-joined to.
    pub fn check_join(
        &self,
        identity: &Identity,
        auto_rooms: &[RoomName],
        room: &RoomName,
        facts: JoinFacts,
    ) -> Access {
        if auto_rooms.contains(room) || identity.rooms.contains(room) {
            return Access::Allowed;
        }
        match self.rule_for(room) {
            RoomRule::SelfOnly => allow_if(room.ids().eq([identity.user_id.as_str()])),
            RoomRule::Pair => allow_if(room.ids().any(|id| id == identity.user_id.as_str())),
            RoomRule::Public => Access::Allowed,
            // Subscribing to presence is a visibility question the presence handler answers.
            RoomRule::Presence => Access::Denied,
            RoomRule::AutoOnly => Access::Denied,
            RoomRule::Granted if facts.granted => Access::Allowed,
            RoomRule::Granted => Access::NeedsGrant,
        }
    }
}

fn allow_if(condition: bool) -> Access {
    if condition { Access::Allowed } else { Access::Denied }
}

/// Role → room templates. `{sub}` in a template is replaced by the user's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRooms {
    templates: BTreeMap<String, Vec<String>>,
}

impl Default for RoleRooms {
    /// The Easy!Appointments mapping, in Bellhop's room grammar.
    fn default() -> Self {
        let templates = [
            ("admin", vec!["admin", "calendar"]),
            ("provider", vec!["provider:{sub}", "calendar"]),
            ("secretary", vec!["secretary:{sub}", "calendar"]),
            ("customer", vec!["customer:{sub}"]),
        ];
        Self {
            templates: templates
                .into_iter()
                .map(|(role, rooms)| (role.to_owned(), rooms.into_iter().map(str::to_owned).collect()))
                .collect(),
        }
    }
}

impl RoleRooms {
    /// Parses `role=room|room;role=room`, for example `admin=admin|calendar;provider=provider_{sub}|calendar`.
    /// Each template must expand to a valid room name.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut templates = BTreeMap::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (role, rooms) = entry.split_once('=').ok_or_else(|| format!("`{entry}` is not role=room|room"))?;
            let rooms: Vec<String> =
                rooms.split('|').map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned).collect();
            for template in &rooms {
                RoomName::parse(template.replace("{sub}", "sample-user"))
                    .map_err(|e| format!("template `{template}` for role `{role}`: {e}"))?;
            }
            templates.insert(role.trim().to_owned(), rooms);
        }
        Ok(Self { templates })
    }

    /// Every room a connection of `identity` joins at `$connect`: its own user room, its role's rooms and the
    /// rooms listed in its token, without duplicates.
    pub fn auto_rooms(&self, identity: &Identity) -> Vec<RoomName> {
        let mut rooms = vec![RoomName::for_user(&identity.user_id)];
        let templates = identity.role.as_deref().and_then(|role| self.templates.get(role));
        for template in templates.into_iter().flatten() {
            // Templates were validated at parse time with a sample id; user ids share the room charset, so a
            // failure here cannot happen for a valid identity and would only drop that one room.
            if let Ok(room) = RoomName::parse(template.replace("{sub}", identity.user_id.as_str())) {
                rooms.push(room);
            }
        }
        rooms.extend(identity.rooms.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        rooms.retain(|room| seen.insert(room.clone()));
        rooms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(sub: &str, role: Option<&str>, rooms: &[&str]) -> Identity {
        Identity {
            user_id: UserId::parse(sub).expect("user id"),
            role: role.map(str::to_owned),
            name: None,
            email: None,
            rooms: rooms.iter().map(|r| RoomName::parse(*r).expect("room")).collect(),
        }
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).expect(name)
    }

    #[test]
    fn valid_room_names_parse_and_expose_kind_and_ids() {
        for name in ["calendar", "user:u1", "booking:507f", "chat:a:b", "topic:appointments", "provider_7", "visit:v-1"]
        {
            assert!(RoomName::parse(name).is_ok(), "{name}");
        }
        assert_eq!(room("chat:a:b").kind(), "chat");
        assert_eq!(room("chat:a:b").ids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(room("calendar").kind(), "calendar");
    }

    #[test]
    fn malformed_room_names_are_rejected() {
        let long = "x".repeat(MAX_ROOM_LEN + 1);
        for name in [
            "",
            ":",
            "a:",
            ":a",
            "a::b",
            "a:b:c:d",
            "a b",
            "a/b",
            "room#1",
            long.as_str(),
            "chat:b:a",
            "chat:a",
            "chat:a:a",
        ] {
            assert!(RoomName::parse(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn chat_between_sorts_the_pair() {
        let (a, b) = (UserId::parse("bob").expect("id"), UserId::parse("alice").expect("id"));
        assert_eq!(RoomName::chat_between(&a, &b), Some(room("chat:alice:bob")));
        assert_eq!(RoomName::chat_between(&a, &a), None);
    }

    #[test]
    fn the_policy_table_decides_each_kind() {
        let policy = RoomPolicy::default();
        let u1 = identity("u1", Some("customer"), &["visit:v9"]);
        let auto = RoleRooms::default().auto_rooms(&u1);
        let check = |name: &str, granted: bool| policy.check_join(&u1, &auto, &room(name), JoinFacts { granted });
        let cases = [
            ("user:u1", false, Access::Allowed),
            ("user:u2", false, Access::Denied),
            ("chat:u0:u1", false, Access::Allowed),
            ("chat:u1:u2", false, Access::Allowed),
            ("chat:u2:u3", false, Access::Denied),
            ("topic:appointments", false, Access::Allowed),
            ("customer:u1", false, Access::Allowed),
            ("calendar", false, Access::Denied),
            ("admin", false, Access::Denied),
            ("booking:42", false, Access::NeedsGrant),
            ("booking:42", true, Access::Allowed),
            ("visit:v9", false, Access::Allowed),
            ("unknownkind:1", false, Access::NeedsGrant),
            ("presence:u2", false, Access::Denied),
        ];
        for (name, granted, expected) in cases {
            assert_eq!(check(name, granted), expected, "{name} granted={granted}");
        }
    }

    #[test]
    fn policy_overrides_replace_rules_and_reject_nonsense() {
        let policy = RoomPolicy::with_overrides("calendar=public, vendor=granted").expect("valid");
        assert_eq!(policy.rule_for(&room("calendar")), RoomRule::Public);
        assert!(RoomPolicy::with_overrides("calendar").is_err());
        assert!(RoomPolicy::with_overrides("calendar=open").is_err());
    }

    #[test]
    fn default_role_templates_follow_the_easy_appointments_mapping() {
        let rooms = RoleRooms::default();
        let names = |sub: &str, role: &str| -> Vec<String> {
            rooms.auto_rooms(&identity(sub, Some(role), &[])).into_iter().map(String::from).collect()
        };
        assert_eq!(names("1", "admin"), ["user:1", "admin", "calendar"]);
        assert_eq!(names("7", "provider"), ["user:7", "provider:7", "calendar"]);
        assert_eq!(names("8", "secretary"), ["user:8", "secretary:8", "calendar"]);
        assert_eq!(names("9", "customer"), ["user:9", "customer:9"]);
        assert_eq!(names("9", "stranger"), ["user:9"]);
    }

    #[test]
    fn role_templates_parse_from_config_and_reject_invalid_rooms() {
        let rooms = RoleRooms::parse("provider=provider_{sub}|calendar; admin=admin").expect("valid");
        let auto = rooms.auto_rooms(&identity("7", Some("provider"), &["booking:1", "calendar"]));
        let names: Vec<String> = auto.into_iter().map(String::from).collect();
        assert_eq!(names, ["user:7", "provider_7", "calendar", "booking:1"]);
        assert!(RoleRooms::parse("admin=bad room").is_err());
        assert!(RoleRooms::parse("admin").is_err());
    }
}
