//! The key schema: attribute names of the keys and index, and the `PK`/`SK` of every record (the table in the
//! module documentation of [`super`]). Nothing here does I/O.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::codec::{Item, s};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

pub(super) const PK: &str = "PK";
pub(super) const SK: &str = "SK";
pub(super) const GSI1: &str = "GSI1";
pub(super) const GSI1PK: &str = "GSI1PK";
pub(super) const GSI1SK: &str = "GSI1SK";
/// The sparse, keys-only index of the rooms that have members: only a room's member counter item carries its keys,
/// and only while the count is above zero.
pub(super) const ACTIVE_ROOMS_INDEX: &str = "ActiveRooms";
pub(super) const ACTIVE_SHARD: &str = "active_shard";
pub(super) const ACTIVE_ROOM: &str = "active_room";
pub(super) const TTL: &str = "ttl";

/// Keys longer than this are hashed: DynamoDB caps partition keys at 2048 bytes and sort keys at 1024.
pub(super) const MAX_RAW_KEY_PART: usize = 512;

pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

/// A key part taken from caller input, hashed when too long for a DynamoDB key.
pub(super) fn key_part(raw: &str) -> String {
    if raw.len() <= MAX_RAW_KEY_PART {
        raw.to_owned()
    } else {
        let digest = Sha256::digest(raw.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

pub(super) fn conn_pk(id: &ConnectionId) -> String {
    format!("CONN#{id}")
}
pub(super) fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}
pub(super) fn room_pk(room: &RoomName) -> String {
    format!("ROOM#{room}")
}
pub(super) fn events_pk(room: &RoomName) -> String {
    format!("EVT#{room}")
}
pub(super) fn seq_sk(seq: u64) -> String {
    format!("SEQ#{seq:020}")
}
pub(super) fn notif_pk(user: &UserId) -> String {
    format!("NOTIF#{user}")
}
pub(super) fn call_pk(call_id: &str) -> String {
    format!("CALL#{}", key_part(call_id))
}
pub(super) fn idem_pk(key: &str) -> String {
    format!("IDEM#{}", key_part(key))
}
/// A presence room's subscribers are stored in the watched user's partition, `USER#{user}`/`PRESENCE#SUB#{id}`,
/// next to the user's connections (`CONN#…`) and stored presence (`PRESENCE`): `$connect` and the last
/// `$disconnect` read all three with one Query over the range [`USER_PRESENCE_FIRST`]..=[`USER_PRESENCE_LAST`],
/// which no other record of the partition sorts into.
pub(super) const PRESENCE_SUBSCRIBER: &str = "PRESENCE#SUB#";
pub(super) const USER_PRESENCE_FIRST: &str = "CONN#";
/// `$` sorts right after `#`, so this bound follows every `PRESENCE#SUB#…` key and precedes `READ#` and `ROOMS#`.
pub(super) const USER_PRESENCE_LAST: &str = "PRESENCE#SUB$";
/// The prefix of every other room's membership keys, `ROOM#{room}`/`CONN#{id}`.
pub(super) const MEMBER: &str = "CONN#";

/// The user whose presence `room` carries, when it is a presence room.
fn presence_owner(room: &RoomName) -> Option<UserId> {
    room.as_str().strip_prefix("presence:").and_then(|user| UserId::parse(user).ok())
}

/// The partition and sort-key prefix of a room's membership items.
pub(super) fn members_partition(room: &RoomName) -> (String, &'static str) {
    match presence_owner(room) {
        Some(user) => (user_pk(&user), PRESENCE_SUBSCRIBER),
        None => (room_pk(room), MEMBER),
    }
}

/// The key of `connection`'s membership item of `room`.
pub(super) fn membership_key(room: &RoomName, connection: &ConnectionId) -> Item {
    let (pk, prefix) = members_partition(room);
    key(pk, format!("{prefix}{connection}"))
}

pub(super) const META: &str = "META";
pub(super) const COUNT: &str = "COUNT";
pub(super) const COUNTER: &str = "COUNTER";
pub(super) const UNREAD: &str = "UNREAD";
pub(super) const PRESENCE: &str = "PRESENCE";
pub(super) const STATS_PK: &str = "STATS";
/// The global counters are spread over this many items (`STATS`/`GLOBAL#{n}`): one item takes at most 1,000 writes a
/// second, and every message, connect and disconnect in the deployment adds to these counters. Reading them back is
/// one BatchGetItem.
pub(super) const STATS_SHARDS: u8 = 16;

pub(super) fn stats_sk(shard: u8) -> String {
    format!("GLOBAL#{shard:02}")
}
pub(super) const GRANT_ROOMS: &str = "ROOMS#GRANT#";
pub(super) const PART_ROOMS: &str = "ROOMS#PART#";

/// A rate-limit bucket (`RL#{key}`/`RL`).
pub(super) fn limit_pk(key: &str) -> String {
    format!("RL#{}", key_part(key))
}
pub(super) const LIMIT: &str = "RL";

/// The active-rooms index (`active_shard = ACTIVE#{shard}`, `active_room = room` on the member counter item) is spread
/// over this many partitions: every room that becomes active or empties in the deployment writes an index entry, and
/// one index partition takes at most 1,000 writes a second.
pub(super) const ACTIVE_ROOM_SHARDS: u8 = 16;

/// The index shard of a room: FNV-1a of its name, so every process and every version agrees on it (the standard
/// library's hasher is seeded per process).
pub(super) fn active_room_shard(room: &RoomName) -> u8 {
    let hash =
        room.as_str().bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    u8::try_from(hash % u32::from(ACTIVE_ROOM_SHARDS)).unwrap_or(0)
}

pub(super) fn active_rooms_pk(shard: u8) -> String {
    format!("ACTIVE#{shard:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_index_shard_is_fixed_by_its_name_and_within_range() {
        // FNV-1a (32-bit) mod 16, computed independently: a change here would strand every indexed room in its old
        // shard.
        let shard = |name: &str| active_room_shard(&RoomName::parse(name).expect("room"));
        assert_eq!((shard("topic:lobby"), shard("user:alice"), shard("calendar")), (10, 0, 15));
        for i in 0..200 {
            assert!(shard(&format!("topic:{i}")) < ACTIVE_ROOM_SHARDS);
        }
        let used: std::collections::BTreeSet<u8> = (0..200).map(|i| shard(&format!("topic:{i}"))).collect();
        assert_eq!(used.len(), usize::from(ACTIVE_ROOM_SHARDS), "200 rooms reach every shard");
    }
}
