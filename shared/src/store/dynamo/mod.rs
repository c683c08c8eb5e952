//! The DynamoDB adapter of the store port: one table, keys designed for the access paths, no Scan except the
//! explicit broadcast listing.
//!
//! It owns the physical layout of every record and the request patterns that keep multi-item changes consistent.
//! It does not create tables in production: [`DynamoStore::create_table_if_missing`] exists for the local harness and
//! the tests; deployed tables come from the SAM template.
//!
//! # Key design
//!
//! Every key is a pair of strings `PK`/`SK`. Two global secondary indexes serve the access paths the base table
//! cannot: `GSI1` (`GSI1PK`/`GSI1SK`, projection ALL) finds events by id, and the sparse `ActiveRooms`
//! (`active_shard`/`active_room`, projection KEYS_ONLY) lists the rooms that have members. `ttl` (epoch seconds) is
//! the TTL attribute.
//!
//! | Record                      | PK                  | SK                              | Notes                                   |
//! |-----------------------------|---------------------|---------------------------------|-----------------------------------------|
//! | connection                  | `CONN#{id}`         | `META`                          | full record, `rooms` string set, `ttl`; `in_tat`, `last_activity` |
//! | user → connection (mirror)  | `USER#{user}`       | `CONN#{id}`                     | full record copy, `ttl`                 |
//! | room → connection           | `ROOM#{room}`       | `CONN#{id}`                     | `user_id`, `ttl`                        |
//! | presence subscriber         | `USER#{user}`       | `PRESENCE#SUB#{id}`             | member of `presence:{user}`; `user_id` (the subscriber), `ttl` |
//! | room member count           | `ROOM#{room}`       | `COUNT`                         | `members` (`active_rooms`; user room: "last connection"); while non-empty `active_shard=ACTIVE#{00..15}`, `active_room={room}` |
//! | grant                       | `ROOM#{room}`       | `GRANT#{user}`                  |                                         |
//! | user → granted room         | `USER#{user}`       | `ROOMS#GRANT#{room}`            | mirror of the grant                     |
//! | participation               | `USER#{user}`       | `ROOMS#PART#{room}`             |                                         |
//! | read watermark              | `USER#{user}`       | `READ#{room}`                   | `seq`                                   |
//! | presence                    | `USER#{user}`       | `PRESENCE`                      |                                         |
//! | room sequence counter       | `ROOM#{room}`       | `COUNTER`                       | `seq`                                   |
//! | event                       | `EVT#{room}`        | `SEQ#{seq, 20 digits}`          | `GSI1PK=EVT#{room}`, `GSI1SK=ID#{id}`   |
//! | client-message dedupe       | `EVT#{room}`        | `CMID#{sender}#{client_msg_id}` | copy of the first event; no sender: `CMID##…` |
//! | notification                | `NOTIF#{user}`      | `N#{id}`                        |                                         |
//! | unread notification counter | `NOTIF#{user}`      | `UNREAD`                        | `unread`                                |
//! | call                        | `CALL#{id}`         | `CALL`                          |                                         |
//! | idempotency key             | `IDEM#{key}`        | `IDEM`                          | `expires_at` (ms), `ttl`                |
//! | global counters (16 shards) | `STATS`             | `GLOBAL#{00..15}`               | `active_connections`, `total_connections`, `total_messages` (`active_rooms` is counted in `ActiveRooms`) |
//! | rate-limit bucket (GCRA)    | `RL#{key}`          | `RL`                            | `tat` (ms), `ttl` when full again       |
//!
//! Why these choices:
//! - The connection → rooms path is a string set on the connection item rather than a second item per membership,
//!   so a connect with N rooms writes N + 2 items (two BatchWriteItem calls for 30 rooms), and the rooms to clean up
//!   are read back atomically by the same DeleteItem that removes the connection. The set is always a superset of
//!   the memberships: it is written before a membership appears and shrunk after it disappears.
//! - User → connections is a mirror item in the user's partition, not a GSI: the per-user limit and presence read it,
//!   and a GSI's eventual consistency would report a user offline during a page reload.
//! - A presence room's subscribers live in the watched user's partition, not the room's: the user's `CONN#…`
//!   mirrors, `PRESENCE` and `PRESENCE#SUB#…` sort next to each other and nothing else of the partition sorts
//!   between them (`READ#` and `ROOMS#` come after `PRESENCE#SUB$`), so `$connect` reads the connection limit, the
//!   status to announce and whom to tell in one Query, and the last `$disconnect` the last two in one.
//! - The user room's member count (`ROOM#user:{user}`/`COUNT`) counts exactly the user's connections: a disconnect
//!   that brings it to 0 was the last one, without a read. It can only drift high (a lost `$disconnect`), so any
//!   other answer is confirmed by a Query of the mirrors.
//! - A room's `CONN#…` memberships sort just before its `COUNT` and `COUNTER` items, so a join reads the members and
//!   the latest `seq` in one Query.
//! - Grants are mirrored into the user partition next to participation (`ROOMS#…`), so a user's conversations are
//!   one Query.
//! - Finding an event by id is served by `GSI1`. It is eventually consistent, which is acceptable for looking up
//!   events that clients have already received.
//! - The active rooms are the member counter items themselves, indexed on `ActiveRooms` under `ACTIVE#{shard}` (16
//!   shards by FNV-1a of the room name, so no index partition takes every room that opens in the deployment) while
//!   their count is above zero: the increment sets the index keys in the UpdateItem it makes anyway, and only the
//!   decrement that empties a room pays one more, conditional, UpdateItem to remove them. The index is its own and
//!   keys-only, not a part of `GSI1`, because DynamoDB writes an index only when an attribute the index holds
//!   changes: with projection ALL every count change (each join, leave, connect and disconnect) was an index write;
//!   keys-only, re-setting the keys to the values they hold writes nothing, so only a room becoming active or
//!   emptying does (ARCHITECTURE.md, "What each action costs in DynamoDB", has the sources and a measurement). Listing them is one Query per shard from a cursor, never a Scan, then a BatchGetItem of the
//!   listed rooms' `COUNT` and `COUNTER` items for their counts and last `seq`; the index lags the counter, so an
//!   entry whose count is already 0 is skipped.
//! - A connection's inbound rate-limit bucket (`in_tat`) lives on its connection item, so the UpdateItem that admits
//!   a frame also sets `last_activity` for the operator's view at no extra request, and the bucket is deleted with
//!   the connection.
//!
//! # Code map
//!
//! `keys` (the table above), `codec` (records ⇄ items), `admin` (table creation), `client` (SDK client set-up),
//! `requests` (reads, paged Queries, batches, transaction cancellation reasons), `counter` (the request counter), and
//! one module per aggregate that [`Store`] delegates to: `connections`, `membership`, `history`, `idempotency`,
//! `limits`, `stats`, `presence`, `notifications`, `calls`.
//!
//! # Consistency
//!
//! - `append_event` is one TransactWriteItems: the counter moves from the expected value to the next one, the event
//!   item is created, and the dedupe item (when a client message id is given) is created, all or nothing. The
//!   expected value comes from an in-process hint and, after a lost race, from the failed condition's old item, so
//!   sequence numbers have no gaps even if a Lambda dies mid-append.
//! - `join_room`, `add_notification` and `mark_notifications_read` are TransactWriteItems (a join with a room limit
//!   makes it a condition on the connection's room set); call transitions,
//!   watermarks, idempotency claims and `create_call` are conditional writes.
//! - Member counts and global stats are atomic `ADD` counters updated after the items they count (a disconnect moves
//!   them once the connection item is gone, before the other items). A crash between the two, or a TTL expiry of a
//!   connection whose `$disconnect` never arrived, leaves them off; they feed `/health`, and the user room's count
//!   only ever short-cuts the "last connection" Query when it reaches 0.
//! - The last disconnect reads the stored presence and rewrites it (`last_seen`) inside its removal batch: a
//!   `presence:set` between the read and the batch is overwritten, as it was by the read-then-PutItem before.

mod admin;
mod calls;
mod client;
mod codec;
mod connections;
mod counter;
mod history;
mod idempotency;
mod keys;
mod limits;
mod membership;
mod notifications;
mod presence;
mod requests;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use counter::RequestCounter;

use client::{client_from_config, client_from_sdk_config};

use super::{
    ActiveRoom, Admission, Appended, CallRecord, CallTransition, ConnectionRecord, HistoryQuery, IdempotencyClaim,
    JoinOutcome, Member, NewRoomEvent, Notification, NotificationQuery, NotificationSelector, Page, PresenceRecord,
    RateLimit, RemovedConnection, RoomEvent, RoomState, Stats, Store, StoreResult, UserPresence,
};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

/// The store on one DynamoDB table. Cheap to clone: the SDK client and the sequence hints are shared.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Page size for paginated Queries and Scans; `None` lets DynamoDB fill 1 MB pages.
    page_size: Option<i32>,
    /// The last sequence number this process saw per room, so an uncontended append is one request.
    seq_hints: Arc<Mutex<HashMap<String, u64>>>,
}

/// Why a DynamoDB answer could not be used. Carried inside [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum DynamoItemError {
    #[error("item attribute `{0}` is missing or has the wrong type")]
    Attribute(&'static str),
    #[error("item attribute `{0}` has an invalid value")]
    Invalid(&'static str),
    #[error("item attribute `{name}` is not valid JSON")]
    Json {
        name: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("item attribute `{name}` is not an RFC 3339 timestamp")]
    Timestamp {
        name: &'static str,
        #[source]
        source: chrono::ParseError,
    },
    #[error("DynamoDB left {0} batch requests unprocessed after retries")]
    Unprocessed(usize),
    #[error("room sequence counter stayed contended after {0} attempts")]
    Contended(u32),
    #[error(
        "table `{table}` has no `{index}` index: it was created before the index existed; delete it (DynamoDB Local \
         keeps tables in memory, so restarting it does) or use another table name"
    )]
    MissingIndex { table: String, index: &'static str },
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), page_size: None, seq_hints: Arc::default() }
    }

    /// Builds a client from the AWS default configuration chain. With an `endpoint` (DynamoDB Local), the endpoint is
    /// used and, when the environment names no credentials or region, fixed dummy credentials and `us-east-1` are
    /// used so no AWS setup is needed. DynamoDB Local keeps one database per access key and region, so every local
    /// process that uses this constructor sees the same tables.
    pub async fn from_config(table: &str, endpoint: Option<&str>) -> Self {
        Self::new(client_from_config(endpoint, None).await, table)
    }

    /// A store on `table` whose client comes from an SDK configuration loaded once and shared with the other AWS
    /// clients (the Lambdas' wiring), with this adapter's retries and timeouts.
    pub fn from_sdk_config(sdk_config: &aws_config::SdkConfig, table: &str) -> Self {
        Self::new(client_from_sdk_config(aws_sdk_dynamodb::config::Builder::from(sdk_config), None), table)
    }

    /// [`DynamoStore::from_config`] with a [`RequestCounter`] attached to the client.
    pub async fn from_config_with_counter(table: &str, endpoint: Option<&str>, counter: &RequestCounter) -> Self {
        Self::new(client_from_config(endpoint, Some(counter)).await, table)
    }

    /// Caps Query and Scan pages at `items` so tests can exercise pagination without megabytes of data.
    pub fn with_page_size(mut self, items: i32) -> Self {
        self.page_size = Some(items.max(1));
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Every operation delegates to the module of its aggregate, which owns the request patterns.
#[async_trait]
impl Store for DynamoStore {
    async fn put_connection(&self, connection: &ConnectionRecord, rooms: &[RoomName]) -> StoreResult<()> {
        connections::put_connection(self, connection, rooms).await
    }

    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        connections::get_connection(self, id).await
    }

    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<Option<RemovedConnection>> {
        connections::delete_connection(self, id).await
    }

    async fn set_token_expiry(&self, id: &ConnectionId, at: DateTime<Utc>) -> StoreResult<bool> {
        connections::set_token_expiry(self, id, at).await
    }

    async fn user_connections(&self, user: &UserId) -> StoreResult<Vec<ConnectionRecord>> {
        connections::user_connections(self, user).await
    }

    async fn user_presence(&self, user: &UserId) -> StoreResult<UserPresence> {
        presence::user_presence(self, user).await
    }

    async fn all_connections(&self) -> StoreResult<Vec<ConnectionId>> {
        connections::all_connections(self).await
    }

    async fn join_room(&self, connection: &ConnectionRecord, room: &RoomName) -> StoreResult<bool> {
        membership::join_room(self, connection, room).await
    }

    async fn join_room_within(
        &self,
        connection: &ConnectionRecord,
        room: &RoomName,
        max_rooms: usize,
    ) -> StoreResult<JoinOutcome> {
        membership::join_room_within(self, connection, room, max_rooms).await
    }

    async fn room_state(&self, room: &RoomName) -> StoreResult<RoomState> {
        membership::room_state(self, room).await
    }

    async fn leave_room(&self, connection: &ConnectionId, room: &RoomName) -> StoreResult<bool> {
        membership::leave_room(self, connection, room).await
    }

    async fn room_members(&self, room: &RoomName) -> StoreResult<Vec<Member>> {
        membership::room_members(self, room).await
    }

    async fn room_members_page(&self, room: &RoomName, after: Option<&str>, limit: u32) -> StoreResult<Page<Member>> {
        membership::room_members_page(self, room, after, limit).await
    }

    async fn room_member_count(&self, room: &RoomName) -> StoreResult<u64> {
        membership::room_member_count(self, room).await
    }

    async fn active_rooms_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Page<ActiveRoom>> {
        membership::active_rooms_page(self, after, limit).await
    }

    async fn connection_rooms(&self, connection: &ConnectionId) -> StoreResult<Vec<RoomName>> {
        membership::connection_rooms(self, connection).await
    }

    async fn grant(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        membership::grant(self, room, users).await
    }

    async fn revoke(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        membership::revoke(self, room, users).await
    }

    async fn is_granted(&self, room: &RoomName, user: &UserId) -> StoreResult<bool> {
        membership::is_granted(self, room, user).await
    }

    async fn room_grants(&self, room: &RoomName) -> StoreResult<Vec<UserId>> {
        membership::room_grants(self, room).await
    }

    async fn record_participation(&self, user: &UserId, room: &RoomName) -> StoreResult<()> {
        membership::record_participation(self, user, room).await
    }

    async fn user_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomName>> {
        membership::user_rooms(self, user).await
    }

    async fn user_rooms_page(&self, user: &UserId, after: Option<&str>, limit: u32) -> StoreResult<Page<RoomName>> {
        membership::user_rooms_page(self, user, after, limit).await
    }

    async fn append_event(&self, event: NewRoomEvent) -> StoreResult<Appended> {
        history::append_event(self, event).await
    }

    /// Two requests, participation first; the count is left to the caller, which makes it after the delivery so that
    /// the members do not wait for a third request.
    async fn append_message(&self, event: NewRoomEvent) -> StoreResult<Appended> {
        if let Some(sender) = &event.sender {
            membership::record_participation(self, sender, &event.room).await?;
        }
        history::append_event(self, event).await
    }

    async fn history(&self, room: &RoomName, query: HistoryQuery) -> StoreResult<Vec<RoomEvent>> {
        history::history(self, room, query).await
    }

    async fn get_event(&self, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>> {
        history::get_event(self, room, id).await
    }

    async fn count_unread(&self, room: &RoomName, after_seq: u64, reader: &UserId) -> StoreResult<u64> {
        history::count_unread(self, room, after_seq, reader).await
    }

    async fn mark_read(&self, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64> {
        history::mark_read(self, user, room, seq).await
    }

    async fn read_watermark(&self, user: &UserId, room: &RoomName) -> StoreResult<u64> {
        history::read_watermark(self, user, room).await
    }

    async fn claim_idempotency(&self, key_raw: &str, ttl_seconds: u64) -> StoreResult<IdempotencyClaim> {
        idempotency::claim_idempotency(self, key_raw, ttl_seconds).await
    }

    async fn complete_idempotency(&self, key_raw: &str, result: &Value, ttl_seconds: u64) -> StoreResult<()> {
        idempotency::complete_idempotency(self, key_raw, result, ttl_seconds).await
    }

    async fn release_idempotency(&self, key_raw: &str) -> StoreResult<()> {
        idempotency::release_idempotency(self, key_raw).await
    }

    async fn admit(&self, key: &str, limit: RateLimit, now: DateTime<Utc>) -> StoreResult<Admission> {
        limits::admit(self, key, limit, now).await
    }

    async fn admit_frame(
        &self,
        connection: &ConnectionId,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission> {
        limits::admit_frame(self, connection, limit, now).await
    }

    async fn connection_activity(&self, connection: &ConnectionId) -> StoreResult<Option<DateTime<Utc>>> {
        limits::connection_activity(self, connection).await
    }

    async fn count_messages(&self, n_messages: u64) -> StoreResult<()> {
        stats::count_messages(self, n_messages).await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        stats::stats(self).await
    }

    async fn set_presence(&self, record: &PresenceRecord) -> StoreResult<()> {
        presence::set_presence(self, record).await
    }

    async fn get_presence(&self, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
        presence::get_presence(self, users).await
    }

    async fn add_notification(&self, notification: &Notification) -> StoreResult<bool> {
        notifications::add_notification(self, notification).await
    }

    async fn list_notifications(&self, user: &UserId, query: &NotificationQuery) -> StoreResult<Vec<Notification>> {
        notifications::list_notifications(self, user, query).await
    }

    async fn mark_notifications_read(&self, user: &UserId, selector: &NotificationSelector) -> StoreResult<u64> {
        notifications::mark_notifications_read(self, user, selector).await
    }

    async fn unread_notifications(&self, user: &UserId) -> StoreResult<u64> {
        notifications::unread_notifications(self, user).await
    }

    async fn create_call(&self, call: &CallRecord) -> StoreResult<()> {
        calls::create_call(self, call).await
    }

    async fn get_call(&self, call_id: &str) -> StoreResult<Option<CallRecord>> {
        calls::get_call(self, call_id).await
    }

    async fn transition_call(&self, call_id: &str, transition: &CallTransition) -> StoreResult<CallRecord> {
        calls::transition_call(self, call_id, transition).await
    }
}
