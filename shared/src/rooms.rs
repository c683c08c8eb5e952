//! The room access policy (who may join and who may publish in which kind of room) and the role → room templates
//! used to auto-join connections at `$connect`. The room name grammar is [`crate::ids::RoomName`].
//!
//! This module decides; it does not look anything up. Whether a user holds a grant on `booking:42` is a store
//! question answered by the caller and passed in as [`JoinFacts`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
#[cfg(test)]
use crate::ids::UserId;
pub use crate::ids::{MAX_ROOM_LEN, RoomError, RoomName};

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

/// Who may publish in a kind of room: send messages, typing indicators and read receipts. Internal emits may
/// target every room whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Publish {
    /// Conversation rooms: every member may write.
    Members,
    /// Rooms fed by the platform (`user:*`, role rooms, `presence:*`): clients only listen.
    Platform,
}

impl Publish {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "members" => Some(Publish::Members),
            "platform" => Some(Publish::Platform),
            _ => None,
        }
    }

    /// The publish rule a join rule implies unless `ROOM_POLICY` says otherwise: rooms people converse in accept
    /// their members' messages; rooms only the platform fills accept none.
    fn default_for(rule: RoomRule) -> Self {
        match rule {
            RoomRule::Pair | RoomRule::Public | RoomRule::Granted => Publish::Members,
            RoomRule::SelfOnly | RoomRule::Presence | RoomRule::AutoOnly => Publish::Platform,
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
    /// Publish rules set explicitly; other kinds publish as their join rule implies ([`Publish::default_for`]).
    publish: BTreeMap<String, Publish>,
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
        Self { rules: rules.into_iter().map(|(k, r)| (k.to_owned(), r)).collect(), publish: BTreeMap::new() }
    }
}

impl RoomPolicy {
    /// The default table with `overrides` applied, parsed from `kind=rule[/publish],…`, for example
    /// `vendor=granted,calendar=auto/members`.
    pub fn with_overrides(spec: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kind, rule) = entry.split_once('=').ok_or_else(|| format!("`{entry}` is not kind=rule"))?;
            let (rule, publish) = match rule.split_once('/') {
                Some((rule, publish)) => (rule, Some(publish.trim())),
                None => (rule, None),
            };
            let rule = RoomRule::parse(rule.trim())
                .ok_or_else(|| format!("`{rule}` is not one of self, pair, public, presence, auto, granted"))?;
            let kind = kind.trim().to_owned();
            match publish {
                Some(publish) => {
                    let publish = Publish::parse(publish)
                        .ok_or_else(|| format!("`{publish}` is not a publish rule (members or platform)"))?;
                    policy.publish.insert(kind.clone(), publish);
                }
                None => {
                    policy.publish.remove(&kind);
                }
            }
            policy.rules.insert(kind, rule);
        }
        Ok(policy)
    }

    pub fn rule_for(&self, room: &RoomName) -> RoomRule {
        self.rules.get(room.kind()).copied().unwrap_or(RoomRule::Granted)
    }

    pub fn publish_for(&self, room: &RoomName) -> Publish {
        self.publish.get(room.kind()).copied().unwrap_or_else(|| Publish::default_for(self.rule_for(room)))
    }

    /// Whether clients may write into `room` (messages, typing, read receipts) once they are members.
    pub fn may_publish(&self, room: &RoomName) -> bool {
        self.publish_for(room) == Publish::Members
    }

    /// Rooms whose joins and leaves are announced to the other members: the rooms people converse in.
    pub fn announces_membership(&self, room: &RoomName) -> bool {
        matches!(self.rule_for(room), RoomRule::Granted | RoomRule::Pair | RoomRule::Public)
    }

    /// Rooms that make their members visible to each other (presence, calls): private conversations only. A public
    /// topic does not count, or anyone could join a busy topic and then watch and call everyone in it.
    pub fn is_private_conversation(&self, room: &RoomName) -> bool {
        matches!(self.rule_for(room), RoomRule::Granted | RoomRule::Pair)
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
            expires_at: None,
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
    fn conversation_rooms_accept_members_writes_and_platform_rooms_accept_none() {
        let policy = RoomPolicy::default();
        for writable in ["booking:42", "visit:7", "chat:a:b", "call:9", "topic:dogs", "vendor:3", "unlisted:1"] {
            assert!(policy.may_publish(&room(writable)), "{writable}");
        }
        for read_only in ["user:alice", "calendar", "admin", "provider:p1", "presence:alice", "customer:c1"] {
            assert!(!policy.may_publish(&room(read_only)), "{read_only}");
        }
    }

    #[test]
    fn publish_rules_are_configurable_beside_join_rules() {
        let policy = RoomPolicy::with_overrides("calendar=auto/members, booking=granted/platform").expect("valid");
        assert!(policy.may_publish(&room("calendar")));
        assert!(!policy.may_publish(&room("booking:1")));
        assert_eq!(policy.rule_for(&room("calendar")), RoomRule::AutoOnly);
        assert!(RoomPolicy::with_overrides("calendar=auto/everyone").is_err());
    }

    #[test]
    fn only_private_conversations_make_users_visible_to_each_other() {
        let policy = RoomPolicy::default();
        assert!(policy.is_private_conversation(&room("booking:1")));
        assert!(policy.is_private_conversation(&room("chat:a:b")));
        assert!(!policy.is_private_conversation(&room("topic:dogs")));
        assert!(!policy.is_private_conversation(&room("calendar")));
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
