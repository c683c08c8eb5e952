//! Room membership (join, leave, fan-out listing), grants and participation.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};

use super::codec::{Item, attr_count, attr_room, attr_s, attr_string_set, attr_u64, attr_user, n, s, sk_suffix};
use super::keys::{
    ACTIVE_ROOM, ACTIVE_ROOM_SHARDS, ACTIVE_ROOMS_INDEX, ACTIVE_SHARD, COUNT, COUNTER, GRANT_ROOMS, MEMBER, META,
    PART_ROOMS, PK, SK, active_rooms_pk, conn_pk, key, members_partition, membership_key, room_pk, user_pk,
};
use super::requests::{CONDITION_FAILED, cancellation_reasons, reason_is};
use super::{DynamoItemError, DynamoStore};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;
use crate::store::{
    ACTIVE_ROOMS_CURSOR, ActiveRoom, ConnectionRecord, JoinOutcome, MEMBERS_CURSOR, Member, Page, RoomState,
    StoreError, StoreResult, USER_ROOMS_CURSOR, decode_cursor, page_from,
};

pub(super) async fn join_room(
    store: &DynamoStore,
    connection: &ConnectionRecord,
    room: &RoomName,
) -> StoreResult<bool> {
    match join(store, connection, room, None).await? {
        JoinOutcome::Joined => Ok(true),
        JoinOutcome::AlreadyMember | JoinOutcome::RoomLimit => Ok(false),
    }
}

pub(super) async fn join_room_within(
    store: &DynamoStore,
    connection: &ConnectionRecord,
    room: &RoomName,
    max_rooms: usize,
) -> StoreResult<JoinOutcome> {
    join(store, connection, room, Some(max_rooms)).await
}

async fn join(
    store: &DynamoStore,
    connection: &ConnectionRecord,
    room: &RoomName,
    max_rooms: Option<usize>,
) -> StoreResult<JoinOutcome> {
    // One transaction: the membership appears only if it is new, and the connection's room set grows with it.
    // If the connection item is gone (a concurrent disconnect), nothing is written, so no orphan is left. The room
    // limit is a condition on the same set, so checking it costs no read: the set is a superset of the memberships,
    // exactly what a read of it before the join would count.
    let membership = Put::builder()
        .table_name(&store.table)
        .set_item(Some(DynamoStore::membership_item(connection, room)))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(StoreError::backend)?;
    let mut room_set = Update::builder()
        .table_name(&store.table)
        .set_key(Some(key(conn_pk(&connection.connection_id), META)))
        .update_expression("ADD rooms :room")
        .expression_attribute_values(":room", AttributeValue::Ss(vec![room.as_str().to_owned()]));
    room_set = match max_rooms {
        None => room_set.condition_expression("attribute_exists(PK)"),
        Some(max) => room_set
            .condition_expression(
                "attribute_exists(PK) AND (attribute_not_exists(rooms) OR size(rooms) < :max OR contains(rooms, :name))",
            )
            .expression_attribute_values(":max", n(i64::try_from(max).unwrap_or(i64::MAX)))
            .expression_attribute_values(":name", s(room.as_str())),
    };
    let room_set = room_set.build().map_err(StoreError::backend)?;
    let sent = store
        .client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(membership).build())
        .transact_items(TransactWriteItem::builder().update(room_set).build())
        .send()
        .await;
    match sent {
        Ok(_) => {}
        Err(e) => {
            return match cancellation_reasons(&e) {
                Some(r) if reason_is(r, 0, CONDITION_FAILED) => Ok(JoinOutcome::AlreadyMember),
                // The connection is gone or its set is full; only a refused join pays the read that tells which.
                Some(r) if reason_is(r, 1, CONDITION_FAILED) => {
                    match store.fetch(key(conn_pk(&connection.connection_id), META)).await? {
                        Some(_) if max_rooms.is_some() => Ok(JoinOutcome::RoomLimit),
                        _ => Err(StoreError::NotFound),
                    }
                }
                _ => Err(StoreError::backend(e)),
            };
        }
    }
    store.adjust_member_counts(std::slice::from_ref(room), 1).await?;
    Ok(JoinOutcome::Joined)
}

/// One strongly consistent Query of the room's partition from its first membership to its sequence counter:
/// `CONN#…` sorts before `COUNT` and `COUNTER`, so the members and the latest `seq` come back together. The counter
/// moves in the same transaction that stores an event, so its value is the latest durable `seq`. A presence room
/// keeps its members elsewhere and has no history, so it is read the plain way.
pub(super) async fn room_state(store: &DynamoStore, room: &RoomName) -> StoreResult<RoomState> {
    let (pk, prefix) = members_partition(room);
    if prefix != MEMBER {
        return Ok(RoomState {
            members: room_members(store, room).await?,
            latest_seq: store.read_counter(room).await?,
        });
    }
    let items = store.query_all(|| store.query_range(&pk, MEMBER, COUNTER)).await?;
    let mut state = RoomState::default();
    for item in &items {
        match attr_s(item, SK)? {
            sk if sk.starts_with(MEMBER) => state.members.push(member_from_item(item, MEMBER)?),
            COUNTER => state.latest_seq = attr_u64(item, "seq")?,
            _ => {}
        }
    }
    Ok(state)
}

pub(super) async fn leave_room(store: &DynamoStore, connection: &ConnectionId, room: &RoomName) -> StoreResult<bool> {
    // Membership first, room set second: the set stays a superset of the memberships if we stop in between.
    let old = store
        .client
        .delete_item()
        .table_name(&store.table)
        .set_key(Some(membership_key(room, connection)))
        .return_values(ReturnValue::AllOld)
        .send()
        .await
        .map_err(StoreError::backend)?
        .attributes
        .filter(|a| !a.is_empty());
    if old.is_none() {
        return Ok(false);
    }
    let shrink = async {
        let shrunk = store
            .client
            .update_item()
            .table_name(&store.table)
            .set_key(Some(key(conn_pk(connection), META)))
            .update_expression("DELETE rooms :room")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":room", AttributeValue::Ss(vec![room.as_str().to_owned()]))
            .send()
            .await;
        match shrunk {
            Ok(_) => Ok(()),
            // The connection itself is gone (a concurrent disconnect cleaned up): nothing left to shrink.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(StoreError::backend(e)),
        }
    };
    // The membership is gone, so the set is a superset whatever happens next, and the count must drop whatever the
    // shrink does: both go at once, since a Lambda is billed for every request it waits for in turn.
    futures::try_join!(shrink, store.adjust_member_counts(std::slice::from_ref(room), -1))?;
    Ok(true)
}

pub(super) async fn room_members(store: &DynamoStore, room: &RoomName) -> StoreResult<Vec<Member>> {
    let (pk, prefix) = members_partition(room);
    let items = store
        .query_all(|| {
            store
                .query_prefix(&pk, prefix)
                .projection_expression("SK, user_id")
                // Fan-out tolerates a just-joined member missing; eventually consistent reads cost half.
                .consistent_read(false)
        })
        .await?;
    items.iter().map(|item| member_from_item(item, prefix)).collect()
}

pub(super) async fn connection_rooms(store: &DynamoStore, connection: &ConnectionId) -> StoreResult<Vec<RoomName>> {
    let item = store.get_item(key(conn_pk(connection), META)).projection_expression("rooms").send().await;
    let item = item.map_err(StoreError::backend)?.item;
    let mut rooms = Vec::new();
    for raw in item.map_or(Ok(Vec::new()), |i| attr_string_set(&i, "rooms"))? {
        rooms.push(RoomName::parse(raw).map_err(|_| StoreError::backend(DynamoItemError::Invalid("rooms")))?);
    }
    rooms.sort();
    Ok(rooms)
}

pub(super) async fn grant(store: &DynamoStore, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
    let users: BTreeSet<&UserId> = users.iter().collect();
    let mut writes = Vec::with_capacity(users.len() * 2);
    for user in users {
        let mut grant = key(room_pk(room), format!("GRANT#{user}"));
        grant.insert("user_id".into(), s(user.as_str()));
        writes.push(DynamoStore::put_request(grant)?);
        let mut mirror = key(user_pk(user), format!("{GRANT_ROOMS}{room}"));
        mirror.insert("room".into(), s(room.as_str()));
        writes.push(DynamoStore::put_request(mirror)?);
    }
    store.batch_write(writes).await
}

pub(super) async fn revoke(store: &DynamoStore, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
    let users: BTreeSet<&UserId> = users.iter().collect();
    let mut writes = Vec::with_capacity(users.len() * 2);
    for user in users {
        writes.push(DynamoStore::delete_request(key(room_pk(room), format!("GRANT#{user}")))?);
        writes.push(DynamoStore::delete_request(key(user_pk(user), format!("{GRANT_ROOMS}{room}")))?);
    }
    store.batch_write(writes).await
}

pub(super) async fn is_granted(store: &DynamoStore, room: &RoomName, user: &UserId) -> StoreResult<bool> {
    let out = store
        .get_item(key(room_pk(room), format!("GRANT#{user}")))
        .projection_expression("PK")
        .send()
        .await
        .map_err(StoreError::backend)?;
    Ok(out.item.is_some_and(|i| !i.is_empty()))
}

pub(super) async fn room_grants(store: &DynamoStore, room: &RoomName) -> StoreResult<Vec<UserId>> {
    let items = store.query_all(|| store.query_prefix(&room_pk(room), "GRANT#")).await?;
    items.iter().map(|item| attr_user(item, "user_id")).collect()
}

pub(super) async fn record_participation(store: &DynamoStore, user: &UserId, room: &RoomName) -> StoreResult<()> {
    let mut item = key(user_pk(user), format!("{PART_ROOMS}{room}"));
    item.insert("room".into(), s(room.as_str()));
    store.client.put_item().table_name(&store.table).set_item(Some(item)).send().await.map_err(StoreError::backend)?;
    Ok(())
}

pub(super) async fn user_rooms(store: &DynamoStore, user: &UserId) -> StoreResult<Vec<RoomName>> {
    // Grants and participation share the `ROOMS#` prefix so both come back from one Query.
    let items = store.query_all(|| store.query_prefix(&user_pk(user), "ROOMS#")).await?;
    let rooms: BTreeSet<RoomName> = items.iter().map(|item| attr_room(item, "room")).collect::<StoreResult<_>>()?;
    Ok(rooms.into_iter().collect())
}

/// One Query of `limit + 1` items from the cursor on: the extra item only says whether another page exists.
pub(super) async fn room_members_page(
    store: &DynamoStore,
    room: &RoomName,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Page<Member>> {
    let after = after.map(|cursor| decode_cursor(MEMBERS_CURSOR, cursor)).transpose()?;
    let limit = limit.max(1);
    let (pk, prefix) = members_partition(room);
    let items = query_page(store, &pk, prefix, after.as_deref(), limit).await?;
    let members = items.iter().map(|item| member_from_item(item, prefix)).collect::<StoreResult<Vec<_>>>()?;
    Ok(page_from(members, limit as usize, MEMBERS_CURSOR, |m| m.connection_id.as_str()))
}

/// The member counter item (`ROOM#{room}`/`COUNT`), maintained by every join and leave: one GetItem.
pub(super) async fn room_member_count(store: &DynamoStore, room: &RoomName) -> StoreResult<u64> {
    let item = store.fetch(key(room_pk(room), COUNT)).await?;
    attr_count(item.as_ref(), "members")
}

/// The active-rooms index is `ACTIVE_ROOM_SHARDS` partitions of the keys-only `ActiveRooms` index keyed by room name,
/// read in shard order: a page walks the index from the cursor's shard and room on until it holds `limit + 1`
/// entries (one Query per shard visited, more only for a shard holding more than a page), then reads those rooms'
/// member counters and sequence counters with BatchGetItem. The index is eventually consistent, so an entry whose
/// count is already 0 is skipped, and the walk goes on for as many entries as were skipped.
pub(super) async fn active_rooms_page(
    store: &DynamoStore,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Page<ActiveRoom>> {
    let mut walk = match after {
        Some(cursor) => {
            let (shard, room) = decode_active_cursor(&decode_cursor(ACTIVE_ROOMS_CURSOR, cursor)?)?;
            IndexWalk { shard, after: Some(room), start: None }
        }
        None => IndexWalk { shard: 0, after: None, start: None },
    };
    let limit = limit.max(1);
    let want = limit as usize + 1;
    let mut found: Vec<(u8, ActiveRoom)> = Vec::with_capacity(want);
    while found.len() < want {
        let entries = walk.next(store, want - found.len()).await?;
        if entries.is_empty() {
            break;
        }
        found.extend(live_rooms(store, entries).await?);
    }
    let rooms: Vec<(String, ActiveRoom)> =
        found.into_iter().map(|(shard, active)| (format!("{shard:02}#{}", active.room), active)).collect();
    let page = page_from(rooms, limit as usize, ACTIVE_ROOMS_CURSOR, |(position, _)| position.as_str());
    Ok(Page { items: page.items.into_iter().map(|(_, room)| room).collect(), next: page.next })
}

/// How far a walk through the active-rooms index has got: the shard it is in, the room of that shard it resumes
/// after (from a page cursor), and the index's own continuation key within the shard.
struct IndexWalk {
    shard: u8,
    after: Option<RoomName>,
    start: Option<Item>,
}

impl IndexWalk {
    /// Up to `n` more index entries in shard, then room, order; fewer only when the index holds no more.
    async fn next(&mut self, store: &DynamoStore, n: usize) -> StoreResult<Vec<(u8, RoomName)>> {
        let mut entries = Vec::with_capacity(n);
        while entries.len() < n && self.shard < ACTIVE_ROOM_SHARDS {
            let mut query = store
                .client
                .query()
                .table_name(&store.table)
                .index_name(ACTIVE_ROOMS_INDEX)
                .key_condition_expression(if self.after.is_some() { "#pk = :pk AND #sk > :after" } else { "#pk = :pk" })
                .expression_attribute_names("#pk", ACTIVE_SHARD)
                .expression_attribute_values(":pk", s(active_rooms_pk(self.shard)))
                .projection_expression("#sk")
                .expression_attribute_names("#sk", ACTIVE_ROOM)
                .limit(i32::try_from(n - entries.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(self.start.take());
            if let Some(room) = &self.after {
                query = query.expression_attribute_values(":after", s(room.as_str()));
            }
            let out = query.send().await.map_err(StoreError::backend)?;
            for item in out.items.unwrap_or_default() {
                entries.push((self.shard, attr_room(&item, ACTIVE_ROOM)?));
            }
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => self.start = Some(next),
                _ => {
                    self.shard += 1;
                    self.after = None;
                }
            }
        }
        Ok(entries)
    }
}

/// The rooms of `entries` that still have members, in the same order, with their member counts and last `seq`:
/// each room's `COUNT` and `COUNTER` items, read with BatchGetItem (the index holds keys only, and it may lag an
/// emptied room's count).
async fn live_rooms(store: &DynamoStore, entries: Vec<(u8, RoomName)>) -> StoreResult<Vec<(u8, ActiveRoom)>> {
    let keys = entries.iter().flat_map(|(_, room)| [key(room_pk(room), COUNT), key(room_pk(room), COUNTER)]).collect();
    let mut members = HashMap::with_capacity(entries.len());
    let mut last_seqs = HashMap::with_capacity(entries.len());
    for item in store.batch_get(keys).await? {
        let pk = attr_s(&item, PK)?.to_owned();
        match attr_s(&item, SK)? {
            COUNT => members.insert(pk, attr_count(Some(&item), "members")?),
            COUNTER => last_seqs.insert(pk, attr_count(Some(&item), "seq")?),
            _ => None,
        };
    }
    Ok(entries
        .into_iter()
        .filter_map(|(shard, room)| {
            let pk = room_pk(&room);
            let members = members.get(&pk).copied().filter(|&count| count > 0)?;
            let last_seq = last_seqs.get(&pk).copied().unwrap_or(0);
            Some((shard, ActiveRoom { room, members, last_seq }))
        })
        .collect())
}

/// The shard and room named by an active-rooms cursor (`{shard:02}#{room}`).
fn decode_active_cursor(last: &str) -> StoreResult<(u8, RoomName)> {
    let (shard, room) = last.split_once('#').ok_or(StoreError::InvalidCursor)?;
    let shard: u8 = shard.parse().map_err(|_| StoreError::InvalidCursor)?;
    let room = RoomName::parse(room).map_err(|_| StoreError::InvalidCursor)?;
    if shard >= ACTIVE_ROOM_SHARDS {
        return Err(StoreError::InvalidCursor);
    }
    Ok((shard, room))
}

/// Grants and participation are two sort-key ranges of the user's partition, each in room order: a page reads
/// `limit + 1` items from the cursor on in each and merges them, so its cost is its size, not the listing's.
pub(super) async fn user_rooms_page(
    store: &DynamoStore,
    user: &UserId,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Page<RoomName>> {
    let after = after.map(|cursor| decode_cursor(USER_ROOMS_CURSOR, cursor)).transpose()?;
    let limit = limit.max(1);
    let pk = user_pk(user);
    let (granted, joined) = futures::try_join!(
        query_page(store, &pk, GRANT_ROOMS, after.as_deref(), limit),
        query_page(store, &pk, PART_ROOMS, after.as_deref(), limit),
    )?;
    let rooms: BTreeSet<RoomName> =
        granted.iter().chain(&joined).map(|item| attr_room(item, "room")).collect::<StoreResult<_>>()?;
    let rooms: Vec<RoomName> = rooms.into_iter().take(limit as usize + 1).collect();
    Ok(page_from(rooms, limit as usize, USER_ROOMS_CURSOR, RoomName::as_str))
}

/// Up to `limit + 1` items of one partition whose sort key starts with `prefix`, after `prefix{after}`.
async fn query_page(
    store: &DynamoStore,
    pk: &str,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Item>> {
    let want = limit as usize + 1;
    let mut items = Vec::with_capacity(want);
    // The start key need not exist: DynamoDB resumes after wherever it would sort.
    let mut start = after.map(|after| key(pk.to_owned(), format!("{prefix}{after}")));
    // A Query page stops at `Limit` items or 1 MB; keep reading only until the page is full.
    while items.len() < want {
        let remaining = i32::try_from(want - items.len()).unwrap_or(i32::MAX);
        let out = store
            .query_prefix(pk, prefix)
            .limit(remaining)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(StoreError::backend)?;
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => break,
        }
    }
    Ok(items)
}

/// A membership item whose sort key is `prefix` and the connection id.
pub(super) fn member_from_item(item: &Item, prefix: &str) -> StoreResult<Member> {
    Ok(Member {
        connection_id: ConnectionId::parse(sk_suffix(item, prefix)?)
            .map_err(|_| StoreError::backend(DynamoItemError::Invalid(SK)))?,
        user_id: attr_user(item, "user_id")?,
    })
}
