//! The DynamoDB adapter of the store port: one table, keys designed for the access paths, no Scan except the
//! explicit broadcast listing.
//!
//! It owns the physical layout of every record and the request patterns that keep multi-item changes consistent.
//! It does not create tables in production: [`DynamoStore::create_table_if_missing`] exists for the local harness and
//! the tests; deployed tables come from the SAM template.
//!
//! # Key design
//!
//! Every key is a pair of strings `PK`/`SK`. One overloaded global secondary index, `GSI1` (`GSI1PK`/`GSI1SK`,
//! projection ALL), serves the single access path the base table cannot. `ttl` (epoch seconds) is the TTL attribute.
//!
//! | Record                      | PK                  | SK                              | Notes                                   |
//! |-----------------------------|---------------------|---------------------------------|-----------------------------------------|
//! | connection                  | `CONN#{id}`         | `META`                          | full record, `rooms` string set, `ttl`  |
//! | user → connection (mirror)  | `USER#{user}`       | `CONN#{id}`                     | full record copy, `ttl`                 |
//! | room → connection           | `ROOM#{room}`       | `CONN#{id}`                     | `user_id`, `ttl`                        |
//! | room member count           | `ROOM#{room}`       | `COUNT`                         | `members` (drives `active_rooms`)       |
//! | grant                       | `ROOM#{room}`       | `GRANT#{user}`                  |                                         |
//! | user → granted room         | `USER#{user}`       | `ROOMS#GRANT#{room}`            | mirror of the grant                     |
//! | participation               | `USER#{user}`       | `ROOMS#PART#{room}`             |                                         |
//! | read watermark              | `USER#{user}`       | `READ#{room}`                   | `seq`                                   |
//! | presence                    | `USER#{user}`       | `PRESENCE`                      |                                         |
//! | room sequence counter       | `ROOM#{room}`       | `COUNTER`                       | `seq`                                   |
//! | event                       | `EVT#{room}`        | `SEQ#{seq, 20 digits}`          | `GSI1PK=EVT#{room}`, `GSI1SK=ID#{id}`   |
//! | client-message dedupe       | `EVT#{room}`        | `CMID#{sender}#{client_msg_id}` | copy of the first event                 |
//! | notification                | `NOTIF#{user}`      | `N#{id}`                        |                                         |
//! | unread notification counter | `NOTIF#{user}`      | `UNREAD`                        | `unread`                                |
//! | call                        | `CALL#{id}`         | `CALL`                          |                                         |
//! | idempotency key             | `IDEM#{key}`        | `IDEM`                          | `expires_at` (ms), `ttl`                |
//! | global counters (16 shards) | `STATS`             | `GLOBAL#{00..15}`               | `active_connections`, `active_rooms`…   |
//!
//! Why these choices:
//! - The connection → rooms path is a string set on the connection item rather than a second item per membership,
//!   so a connect with N rooms writes N + 2 items (two BatchWriteItem calls for 30 rooms), and the rooms to clean up
//!   are read back atomically by the same DeleteItem that removes the connection. The set is always a superset of
//!   the memberships: it is written before a membership appears and shrunk after it disappears.
//! - User → connections is a mirror item in the user's partition, not a GSI: presence decides "last connection
//!   closed" from it, and a GSI's eventual consistency would report a user offline during a page reload.
//! - Grants are mirrored into the user partition next to participation (`ROOMS#…`), so a user's conversations are
//!   one Query.
//! - Finding an event by id is the one path served by `GSI1`. It is eventually consistent, which is acceptable for
//!   looking up events that clients have already received.
//!
//! # Consistency
//!
//! - `append_event` is one TransactWriteItems: the counter moves from the expected value to the next one, the event
//!   item is created, and the dedupe item (when a client message id is given) is created, all or nothing. The
//!   expected value comes from an in-process hint and, after a lost race, from the failed condition's old item, so
//!   sequence numbers have no gaps even if a Lambda dies mid-append.
//! - `join_room`, `add_notification` and `mark_notifications_read` are TransactWriteItems; call transitions,
//!   watermarks, idempotency claims and `create_call` are conditional writes.
//! - Member counts and global stats are atomic `ADD` counters updated after the items they count. A crash between the
//!   two, or a TTL expiry of a connection whose `$disconnect` never arrived, leaves them off; they feed `/health`
//!   only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::meta::region::ProvideRegion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError as SdkBoxError, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, PutRequest, ReturnConsumedCapacity, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
    WriteRequest,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    Appended, CallRecord, CallState, CallTransition, CallType, ConnectionRecord, HistoryQuery, IdempotencyClaim,
    Member, NewRoomEvent, Notification, NotificationQuery, NotificationSelector, PresenceRecord, PresenceStatus,
    RemovedConnection, RoomEvent, Stats, Store, StoreError, StoreResult,
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
}

/// Counts the DynamoDB operations a client performs, by operation name, and sums the capacity they consumed.
///
/// Attach it with [`DynamoStore::from_config_with_counter`] (or [`RequestCounter::attach`] on a config builder).
/// It is an SDK interceptor: it sees every operation the client sends, including ones issued outside the store.
/// While attached it asks DynamoDB for `ReturnConsumedCapacity: TOTAL` on every data-plane call, which is why it is
/// opt-in rather than always on.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    inner: Arc<Mutex<CounterState>>,
}

#[derive(Debug, Default)]
struct CounterState {
    operations: BTreeMap<&'static str, u64>,
    attempts: u64,
    capacity_units: f64,
}

impl RequestCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the counter to a DynamoDB client configuration.
    pub fn attach(&self, builder: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
        builder.interceptor(self.clone())
    }

    /// How many times each operation was executed (an execution may take several HTTP attempts).
    pub fn operations(&self) -> BTreeMap<&'static str, u64> {
        self.with_state(|s| s.operations.clone())
    }

    /// Executions of one operation, such as `"BatchWriteItem"`.
    pub fn count(&self, operation: &str) -> u64 {
        self.with_state(|s| s.operations.get(operation).copied().unwrap_or(0))
    }

    /// Executions of every operation.
    pub fn total(&self) -> u64 {
        self.with_state(|s| s.operations.values().sum())
    }

    /// HTTP attempts, retries included.
    pub fn attempts(&self) -> u64 {
        self.with_state(|s| s.attempts)
    }

    /// Capacity units DynamoDB reported as consumed (DynamoDB Local reports them too, but they mean little there).
    pub fn capacity_units(&self) -> f64 {
        self.with_state(|s| s.capacity_units)
    }

    /// Forgets everything counted so far.
    pub fn reset(&self) {
        self.with_state(|s| *s = CounterState::default());
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut CounterState) -> T) -> T {
        // A panic while holding this lock can only come from a bug in these few lines; the counts are still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
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

    /// Creates the table with on-demand billing, `GSI1` and TTL on `ttl`, and waits until it is active. For the local
    /// harness and tests only: deployed tables belong to the SAM template, and Lambdas never call this.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let exists = match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => false,
            Err(e) => return Err(StoreError::backend(e)),
        };
        if !exists {
            let attribute = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(StoreError::backend)
            };
            let key = |name: &str, key_type: KeyType| {
                KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(StoreError::backend)
            };
            let gsi1 = GlobalSecondaryIndex::builder()
                .index_name(GSI1)
                .key_schema(key(GSI1PK, KeyType::Hash)?)
                .key_schema(key(GSI1SK, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(StoreError::backend)?;
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attribute(PK)?)
                .attribute_definitions(attribute(SK)?)
                .attribute_definitions(attribute(GSI1PK)?)
                .attribute_definitions(attribute(GSI1SK)?)
                .key_schema(key(PK, KeyType::Hash)?)
                .key_schema(key(SK, KeyType::Range)?)
                .global_secondary_indexes(gsi1)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // Another process created it between our describe and create: that is the state we wanted.
                Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(e) => return Err(StoreError::backend(e)),
            }
        }
        self.wait_until_active().await?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL)
            .build()
            .map_err(StoreError::backend)?;
        match self.client.update_time_to_live().table_name(&self.table).time_to_live_specification(ttl).send().await {
            Ok(_) => Ok(()),
            // Enabling TTL twice is rejected as a validation error; the table is already in the wanted state.
            Err(e) if e.as_service_error().is_some_and(|e| is_ttl_already_enabled(e.meta().message())) => Ok(()),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    async fn wait_until_active(&self) -> StoreResult<()> {
        for attempt in 0..120u32 {
            let described =
                self.client.describe_table().table_name(&self.table).send().await.map_err(StoreError::backend)?;
            let status = described.table().and_then(|t| t.table_status());
            if status.is_some_and(|s| *s == aws_sdk_dynamodb::types::TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(if attempt < 10 { 50 } else { 500 })).await;
        }
        Err(StoreError::backend(DynamoItemError::Invalid("TableStatus")))
    }
}

/// Retries and timeouts for every DynamoDB call. Throttling and transient errors (5xx, dropped connections) are
/// retried by the SDK's standard strategy with jittered exponential backoff from 50 ms; after the last attempt the
/// error reaches the handler, which answers `INTERNAL`. The bounds keep a store that stays down well inside a
/// Lambda's timeout, so the client gets an answer instead of a timed-out invocation.
const MAX_ATTEMPTS: u32 = 4;
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);

async fn client_from_config(endpoint: Option<&str>, counter: Option<&RequestCounter>) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    let mut local_region = None;
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        // DynamoDB Local needs some signature but no real identity. Only the environment is consulted here: the full
        // chain would probe the EC2 metadata service and stall start-up for seconds on a laptop.
        if aws_config::environment::EnvironmentVariableCredentialsProvider::new().provide_credentials().await.is_err() {
            loader = loader.credentials_provider(Credentials::new(
                LOCAL_ACCESS_KEY,
                LOCAL_SECRET_KEY,
                None,
                None,
                "bellhop-local",
            ));
        }
        if aws_config::environment::EnvironmentVariableRegionProvider::new().region().await.is_none() {
            local_region = Some(Region::new(LOCAL_REGION));
            loader = loader.region(Region::new(LOCAL_REGION));
        }
    }
    let sdk_config = loader.load().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk_config);
    if let Some(region) = local_region {
        builder = builder.region(region);
    }
    client_from_sdk_config(builder, counter)
}

/// The client for `builder` with this adapter's retries and timeouts, and `counter` attached when given.
fn client_from_sdk_config(builder: aws_sdk_dynamodb::config::Builder, counter: Option<&RequestCounter>) -> Client {
    let mut builder = builder
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(counter) = counter {
        builder = counter.attach(builder);
    }
    Client::from_conf(builder.build())
}

const LOCAL_ACCESS_KEY: &str = "bellhoplocal";
const LOCAL_SECRET_KEY: &str = "bellhoplocal";
const LOCAL_REGION: &str = "us-east-1";

const PK: &str = "PK";
const SK: &str = "SK";
const GSI1: &str = "GSI1";
const GSI1PK: &str = "GSI1PK";
const GSI1SK: &str = "GSI1SK";
const TTL: &str = "ttl";

/// BatchWriteItem's limit.
const BATCH_WRITE_MAX: usize = 25;
/// BatchGetItem's limit.
const BATCH_GET_MAX: usize = 100;
/// Retries of a batch's unprocessed items before giving up (DynamoDB throttling lasts seconds, not minutes).
const BATCH_RETRIES: u32 = 8;
/// Attempts of an append before the room is declared too contended; each lost attempt means another append won.
const APPEND_ATTEMPTS: u32 = 200;
/// Concurrent single-item requests a store operation may have in flight (member count updates, notification reads).
const ITEM_CONCURRENCY: usize = 8;
/// Keys longer than this are hashed: DynamoDB caps partition keys at 2048 bytes and sort keys at 1024.
const MAX_RAW_KEY_PART: usize = 512;
/// The in-process sequence hints are bounded so a long-lived harness does not grow without limit.
const MAX_SEQ_HINTS: usize = 10_000;

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

/// A key part taken from caller input, hashed when too long for a DynamoDB key.
fn key_part(raw: &str) -> String {
    if raw.len() <= MAX_RAW_KEY_PART {
        raw.to_owned()
    } else {
        let digest = Sha256::digest(raw.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

fn conn_pk(id: &ConnectionId) -> String {
    format!("CONN#{id}")
}
fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}
fn room_pk(room: &RoomName) -> String {
    format!("ROOM#{room}")
}
fn events_pk(room: &RoomName) -> String {
    format!("EVT#{room}")
}
fn seq_sk(seq: u64) -> String {
    format!("SEQ#{seq:020}")
}
fn notif_pk(user: &UserId) -> String {
    format!("NOTIF#{user}")
}
fn call_pk(call_id: &str) -> String {
    format!("CALL#{}", key_part(call_id))
}
fn idem_pk(key: &str) -> String {
    format!("IDEM#{}", key_part(key))
}
const META: &str = "META";
const COUNT: &str = "COUNT";
const COUNTER: &str = "COUNTER";
const UNREAD: &str = "UNREAD";
const PRESENCE: &str = "PRESENCE";
const STATS_PK: &str = "STATS";
/// The global counters are spread over this many items (`STATS`/`GLOBAL#{n}`): one item takes at most 1,000 writes a
/// second, and every message, connect and disconnect in the deployment adds to these counters. Reading them back is
/// one BatchGetItem.
const STATS_SHARDS: u8 = 16;

fn stats_sk(shard: u8) -> String {
    format!("GLOBAL#{shard:02}")
}
const GRANT_ROOMS: &str = "ROOMS#GRANT#";
const PART_ROOMS: &str = "ROOMS#PART#";

/// Timestamps are stored as RFC 3339 strings with as many fractional digits as they carry, so they round-trip
/// exactly (to the nanosecond) and stay readable in the console.
fn ts(at: &DateTime<Utc>) -> AttributeValue {
    s(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

// ---- reading items -----------------------------------------------------------------------------------------------

fn attr_s<'a>(item: &'a Item, name: &'static str) -> StoreResult<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

fn attr_opt_s<'a>(item: &'a Item, name: &'static str) -> StoreResult<Option<&'a str>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

fn attr_i64(item: &Item, name: &'static str) -> StoreResult<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| StoreError::backend(DynamoItemError::Invalid(name))),
        _ => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

/// A counter that may be absent (0) and, after drift, negative (read as 0).
fn attr_count(item: Option<&Item>, name: &'static str) -> StoreResult<u64> {
    match item {
        Some(item) if item.contains_key(name) => attr_i64(item, name).map(|v| u64::try_from(v).unwrap_or(0)),
        _ => Ok(0),
    }
}

fn attr_u64(item: &Item, name: &'static str) -> StoreResult<u64> {
    u64::try_from(attr_i64(item, name)?).map_err(|_| StoreError::backend(DynamoItemError::Invalid(name)))
}

fn attr_bool(item: &Item, name: &'static str) -> StoreResult<bool> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Ok(*v),
        _ => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

fn attr_time(item: &Item, name: &'static str) -> StoreResult<DateTime<Utc>> {
    parse_time(attr_s(item, name)?, name)
}

fn attr_opt_time(item: &Item, name: &'static str) -> StoreResult<Option<DateTime<Utc>>> {
    attr_opt_s(item, name)?.map(|raw| parse_time(raw, name)).transpose()
}

fn parse_time(raw: &str, name: &'static str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|source| StoreError::backend(DynamoItemError::Timestamp { name, source }))
}

fn attr_json(item: &Item, name: &'static str) -> StoreResult<Value> {
    serde_json::from_str(attr_s(item, name)?)
        .map_err(|source| StoreError::backend(DynamoItemError::Json { name, source }))
}

fn attr_user(item: &Item, name: &'static str) -> StoreResult<UserId> {
    UserId::parse(attr_s(item, name)?).map_err(|_| StoreError::backend(DynamoItemError::Invalid(name)))
}

fn attr_opt_user(item: &Item, name: &'static str) -> StoreResult<Option<UserId>> {
    attr_opt_s(item, name)?
        .map(|raw| UserId::parse(raw).map_err(|_| StoreError::backend(DynamoItemError::Invalid(name))))
        .transpose()
}

fn attr_room(item: &Item, name: &'static str) -> StoreResult<RoomName> {
    RoomName::parse(attr_s(item, name)?).map_err(|_| StoreError::backend(DynamoItemError::Invalid(name)))
}

fn attr_string_set(item: &Item, name: &'static str) -> StoreResult<Vec<String>> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(AttributeValue::Ss(values)) => Ok(values.clone()),
        Some(_) => Err(StoreError::backend(DynamoItemError::Attribute(name))),
    }
}

/// The part of a sort key after `prefix`.
fn sk_suffix<'a>(item: &'a Item, prefix: &str) -> StoreResult<&'a str> {
    attr_s(item, SK)?.strip_prefix(prefix).ok_or_else(|| StoreError::backend(DynamoItemError::Invalid(SK)))
}

fn json_string(value: &Value) -> AttributeValue {
    // Serialising a `Value` cannot fail: its map keys are strings and it holds no foreign types.
    s(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
}

fn put_opt(item: &mut Item, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), s(value));
    }
}

// ---- records ⇄ items ---------------------------------------------------------------------------------------------

fn connection_attrs(item: &mut Item, c: &ConnectionRecord) {
    item.insert("connection_id".into(), s(c.connection_id.as_str()));
    item.insert("user_id".into(), s(c.user_id.as_str()));
    put_opt(item, "role", c.role.as_deref());
    put_opt(item, "name", c.name.as_deref());
    put_opt(item, "email", c.email.as_deref());
    item.insert("connected_at".into(), ts(&c.connected_at));
    item.insert("expires_at".into(), ts(&c.expires_at));
    item.insert(TTL.into(), n(c.expires_at.timestamp()));
}

fn connection_from_item(item: &Item) -> StoreResult<ConnectionRecord> {
    Ok(ConnectionRecord {
        connection_id: ConnectionId::parse(attr_s(item, "connection_id")?)
            .map_err(|_| StoreError::backend(DynamoItemError::Invalid("connection_id")))?,
        user_id: attr_user(item, "user_id")?,
        role: attr_opt_s(item, "role")?.map(str::to_owned),
        name: attr_opt_s(item, "name")?.map(str::to_owned),
        email: attr_opt_s(item, "email")?.map(str::to_owned),
        connected_at: attr_time(item, "connected_at")?,
        expires_at: attr_time(item, "expires_at")?,
    })
}

fn event_attrs(item: &mut Item, e: &RoomEvent) {
    item.insert("room".into(), s(e.room.as_str()));
    item.insert("seq".into(), n(e.seq));
    item.insert("id".into(), s(&e.id));
    item.insert("event".into(), s(&e.event));
    item.insert("data".into(), json_string(&e.data));
    put_opt(item, "sender", e.sender.as_ref().map(UserId::as_str));
    put_opt(item, "client_msg_id", e.client_msg_id.as_deref());
    item.insert("created_at".into(), ts(&e.created_at));
}

fn event_from_item(item: &Item) -> StoreResult<RoomEvent> {
    Ok(RoomEvent {
        room: attr_room(item, "room")?,
        seq: attr_u64(item, "seq")?,
        id: attr_s(item, "id")?.to_owned(),
        event: attr_s(item, "event")?.to_owned(),
        data: attr_json(item, "data")?,
        sender: attr_opt_user(item, "sender")?,
        client_msg_id: attr_opt_s(item, "client_msg_id")?.map(str::to_owned),
        created_at: attr_time(item, "created_at")?,
    })
}

fn notification_from_item(item: &Item) -> StoreResult<Notification> {
    Ok(Notification {
        id: attr_s(item, "id")?.to_owned(),
        user_id: attr_user(item, "user_id")?,
        title: attr_s(item, "title")?.to_owned(),
        message: attr_s(item, "message")?.to_owned(),
        kind: attr_opt_s(item, "kind")?.map(str::to_owned),
        data: attr_json(item, "data")?,
        read: attr_bool(item, "read")?,
        created_at: attr_time(item, "created_at")?,
    })
}

fn call_type_str(t: CallType) -> &'static str {
    match t {
        CallType::Audio => "audio",
        CallType::Video => "video",
    }
}

fn call_from_item(item: &Item) -> StoreResult<CallRecord> {
    let call_type = match attr_s(item, "call_type")? {
        "audio" => CallType::Audio,
        "video" => CallType::Video,
        _ => return Err(StoreError::backend(DynamoItemError::Invalid("call_type"))),
    };
    Ok(CallRecord {
        call_id: attr_s(item, "call_id")?.to_owned(),
        caller: attr_user(item, "caller")?,
        recipient: attr_user(item, "recipient")?,
        call_type,
        visit_id: attr_opt_s(item, "visit_id")?.map(str::to_owned),
        state: CallState::parse(attr_s(item, "state")?)
            .ok_or_else(|| StoreError::backend(DynamoItemError::Invalid("state")))?,
        created_at: attr_time(item, "created_at")?,
        answered_at: attr_opt_time(item, "answered_at")?,
        ended_at: attr_opt_time(item, "ended_at")?,
    })
}

fn presence_from_item(item: &Item) -> StoreResult<PresenceRecord> {
    Ok(PresenceRecord {
        user_id: attr_user(item, "user_id")?,
        status: PresenceStatus::parse(attr_s(item, "status")?)
            .ok_or_else(|| StoreError::backend(DynamoItemError::Invalid("status")))?,
        custom_status: attr_opt_s(item, "custom_status")?.map(str::to_owned),
        last_seen: attr_time(item, "last_seen")?,
    })
}

// ---- SDK error helpers -------------------------------------------------------------------------------------------

fn is_ttl_already_enabled(message: Option<&str>) -> bool {
    message.is_some_and(|m| m.contains("already enabled"))
}

/// The cancellation reasons of a cancelled transaction, or `None` for any other failure.
fn cancellation_reasons<R>(error: &SdkError<TransactWriteItemsError, R>) -> Option<&[CancellationReason]> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => Some(e.cancellation_reasons()),
        _ => None,
    }
}

fn reason_is(reasons: &[CancellationReason], index: usize, code: &str) -> bool {
    reasons.get(index).and_then(CancellationReason::code) == Some(code)
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";
const TRANSACTION_CONFLICT: &str = "TransactionConflict";

/// Sleeps before retry `attempt` (1-based) with full jitter, capped at `cap_ms`.
async fn backoff(attempt: u32, base_ms: u64, cap_ms: u64) {
    let ceiling = base_ms.saturating_mul(1 << attempt.min(10)).min(cap_ms).max(1);
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=ceiling))).await;
}

impl DynamoStore {
    fn get_item(&self, key: Item) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
        self.client.get_item().table_name(&self.table).set_key(Some(key)).consistent_read(true)
    }

    async fn fetch(&self, key: Item) -> StoreResult<Option<Item>> {
        let out = self.get_item(key).send().await.map_err(StoreError::backend)?;
        Ok(out.item)
    }

    /// Runs a Query to the end, following `LastEvaluatedKey`. `build` returns the request without a start key.
    async fn query_all(
        &self,
        build: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = build()
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::backend)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// Query on one partition, `SK` starting with `prefix`, strongly consistent.
    fn query_prefix(&self, pk: &str, prefix: &str) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
    }

    /// Writes `requests` in BatchWriteItem calls of at most 25, concurrently, retrying unprocessed items with
    /// backoff. Not atomic: callers order their writes so a partial failure leaves only harmless leftovers.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> StoreResult<()> {
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(BATCH_WRITE_MAX).map(<[WriteRequest]>::to_vec).collect();
        futures::future::try_join_all(chunks.into_iter().map(|chunk| self.batch_write_chunk(chunk))).await?;
        Ok(())
    }

    async fn batch_write_chunk(&self, mut pending: Vec<WriteRequest>) -> StoreResult<()> {
        let mut attempt = 0;
        while !pending.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(StoreError::backend)?;
            pending = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
            if pending.is_empty() {
                break;
            }
            attempt += 1;
            if attempt > BATCH_RETRIES {
                return Err(StoreError::backend(DynamoItemError::Unprocessed(pending.len())));
            }
            backoff(attempt, 25, 2_000).await;
        }
        Ok(())
    }

    /// Reads `keys` (distinct) with strongly consistent BatchGetItem calls of up to 100 keys, retrying unprocessed
    /// keys with backoff. Missing items are simply absent from the answer.
    async fn batch_get(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = Some(
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(StoreError::backend)?,
            );
            let mut attempt = 0;
            while let Some(keys) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(StoreError::backend)?;
                items.extend(out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    attempt += 1;
                    if attempt > BATCH_RETRIES {
                        let left = pending.map_or(0, |k| k.keys().len());
                        return Err(StoreError::backend(DynamoItemError::Unprocessed(left)));
                    }
                    backoff(attempt, 25, 2_000).await;
                }
            }
        }
        Ok(items)
    }

    /// Adds `delta` to the member count of each room and returns how many rooms became non-empty (positive) or
    /// empty (negative), which is what `active_rooms` moves by.
    async fn adjust_member_counts(&self, rooms: &[RoomName], delta: i64) -> StoreResult<i64> {
        futures::stream::iter(rooms.iter().cloned())
            .map(|room| async move {
                let out = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(room_pk(&room), COUNT)))
                    .update_expression("ADD members :d")
                    .expression_attribute_values(":d", n(delta))
                    .return_values(ReturnValue::UpdatedNew)
                    .send()
                    .await
                    .map_err(StoreError::backend)?;
                let now = attr_count(out.attributes.as_ref(), "members")?;
                Ok::<i64, StoreError>(match (delta > 0, now) {
                    (true, 1) => 1,
                    (false, 0) => -1,
                    _ => 0,
                })
            })
            .buffer_unordered(ITEM_CONCURRENCY)
            .try_fold(0i64, |sum, change| async move { Ok(sum + change) })
            .await
    }

    /// Adds to the global counters in one UpdateItem on a random shard; zero deltas are left out.
    async fn adjust_stats(&self, deltas: &[(&str, i64)]) -> StoreResult<()> {
        let deltas: Vec<_> = deltas.iter().filter(|(_, d)| *d != 0).collect();
        if deltas.is_empty() {
            return Ok(());
        }
        let shard = uuid::Uuid::new_v4().as_bytes()[0] % STATS_SHARDS;
        let mut request =
            self.client.update_item().table_name(&self.table).set_key(Some(key(STATS_PK, stats_sk(shard))));
        let mut parts = Vec::new();
        for (i, (name, delta)) in deltas.iter().enumerate() {
            parts.push(format!("#c{i} :d{i}"));
            request = request
                .expression_attribute_names(format!("#c{i}"), *name)
                .expression_attribute_values(format!(":d{i}"), n(delta));
        }
        request.update_expression(format!("ADD {}", parts.join(", "))).send().await.map_err(StoreError::backend)?;
        Ok(())
    }

    fn seq_hint(&self, room: &RoomName) -> u64 {
        let hints = self.seq_hints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hints.get(room.as_str()).copied().unwrap_or(0)
    }

    fn remember_seq(&self, room: &RoomName, seq: u64) {
        let mut hints = self.seq_hints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if hints.len() >= MAX_SEQ_HINTS && !hints.contains_key(room.as_str()) {
            hints.clear();
        }
        let hint = hints.entry(room.as_str().to_owned()).or_insert(0);
        *hint = (*hint).max(seq);
    }

    async fn read_counter(&self, room: &RoomName) -> StoreResult<u64> {
        let item = self.fetch(key(room_pk(room), COUNTER)).await?;
        item.map_or(Ok(0), |i| attr_u64(&i, "seq"))
    }

    fn put_request(item: Item) -> StoreResult<WriteRequest> {
        Ok(WriteRequest::builder()
            .put_request(PutRequest::builder().set_item(Some(item)).build().map_err(StoreError::backend)?)
            .build())
    }

    fn delete_request(key: Item) -> StoreResult<WriteRequest> {
        Ok(WriteRequest::builder()
            .delete_request(DeleteRequest::builder().set_key(Some(key)).build().map_err(StoreError::backend)?)
            .build())
    }

    fn membership_item(connection: &ConnectionRecord, room: &RoomName) -> Item {
        let mut item = key(room_pk(room), conn_pk(&connection.connection_id));
        item.insert("user_id".into(), s(connection.user_id.as_str()));
        item.insert(TTL.into(), n(connection.expires_at.timestamp()));
        item
    }

    fn user_mirror_item(connection: &ConnectionRecord) -> Item {
        let mut item = key(user_pk(&connection.user_id), conn_pk(&connection.connection_id));
        connection_attrs(&mut item, connection);
        item
    }

    /// One transaction per notification id: the read flag flips only if it was false, and the unread counter moves
    /// in the same transaction, so a retried request can never count a notification twice.
    async fn mark_one_read(&self, user: &UserId, id: &str) -> StoreResult<u64> {
        let flip = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(notif_pk(user), format!("N#{}", key_part(id)))))
            .update_expression("SET #read = :true")
            .condition_expression("attribute_exists(PK) AND #read = :false")
            .expression_attribute_names("#read", "read")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .build()
            .map_err(StoreError::backend)?;
        let counter = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(notif_pk(user), UNREAD)))
            .update_expression("ADD unread :minus")
            .expression_attribute_values(":minus", n(-1))
            .build()
            .map_err(StoreError::backend)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(flip).build())
            .transact_items(TransactWriteItem::builder().update(counter).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(1),
            Err(e) if cancellation_reasons(&e).is_some_and(|r| reason_is(r, 0, CONDITION_FAILED)) => Ok(0),
            Err(e) => Err(StoreError::backend(e)),
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    // ---- connections ------------------------------------------------------------------------------------------

    async fn put_connection(&self, connection: &ConnectionRecord, rooms: &[RoomName]) -> StoreResult<()> {
        let rooms: Vec<RoomName> = rooms.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        // The connection item goes first and carries the room set, so cleanup always knows every membership that
        // may exist. It is an UpdateItem rather than a PutItem so that re-putting a connection replaces its fields
        // but adds to its rooms atomically, and ALL_OLD tells a replacement apart from a new connection for the
        // counters.
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conn_pk(&connection.connection_id), META)))
            .return_values(ReturnValue::AllOld);
        let mut fields = Item::new();
        connection_attrs(&mut fields, connection);
        let mut sets = Vec::new();
        for (i, (name, value)) in fields.into_iter().enumerate() {
            sets.push(format!("#f{i} = :f{i}"));
            request = request
                .expression_attribute_names(format!("#f{i}"), name)
                .expression_attribute_values(format!(":f{i}"), value);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        let absent: Vec<&str> = [("role", &connection.role), ("name", &connection.name), ("email", &connection.email)]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| name)
            .collect();
        for (i, name) in absent.iter().enumerate() {
            request = request.expression_attribute_names(format!("#r{i}"), *name);
        }
        if !absent.is_empty() {
            let names: Vec<String> = (0..absent.len()).map(|i| format!("#r{i}")).collect();
            expression.push_str(&format!(" REMOVE {}", names.join(", ")));
        }
        if !rooms.is_empty() {
            expression.push_str(" ADD rooms :rooms");
            request = request.expression_attribute_values(
                ":rooms",
                AttributeValue::Ss(rooms.iter().map(|r| r.as_str().to_owned()).collect()),
            );
        }
        let old = request
            .update_expression(expression)
            .send()
            .await
            .map_err(StoreError::backend)?
            .attributes
            .filter(|a| !a.is_empty());

        let mut writes = Vec::with_capacity(rooms.len() + 2);
        writes.push(Self::put_request(Self::user_mirror_item(connection))?);
        for room in &rooms {
            writes.push(Self::put_request(Self::membership_item(connection, room))?);
        }
        let mut added_rooms = rooms.clone();
        if let Some(old) = &old {
            let old_user = attr_user(old, "user_id")?;
            if old_user != connection.user_id {
                writes.push(Self::delete_request(key(user_pk(&old_user), conn_pk(&connection.connection_id)))?);
            }
            let old_rooms: BTreeSet<String> = attr_string_set(old, "rooms")?.into_iter().collect();
            added_rooms.retain(|r| !old_rooms.contains(r.as_str()));
        }
        self.batch_write(writes).await?;

        let became_active = self.adjust_member_counts(&added_rooms, 1).await?;
        let new_connection = i64::from(old.is_none());
        self.adjust_stats(&[
            ("active_connections", new_connection),
            ("total_connections", new_connection),
            ("active_rooms", became_active),
        ])
        .await
    }

    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<ConnectionRecord>> {
        self.fetch(key(conn_pk(id), META)).await?.map(|item| connection_from_item(&item)).transpose()
    }

    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<Option<RemovedConnection>> {
        // Deleting with ALL_OLD both reads what to clean up and decides the race between two deleters (a prune and
        // a `$disconnect`): only one of them gets the old item, so counters move once.
        let old = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(conn_pk(id), META)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(StoreError::backend)?
            .attributes
            .filter(|a| !a.is_empty());
        let Some(old) = old else { return Ok(None) };
        let record = connection_from_item(&old)?;
        let mut rooms = Vec::new();
        for raw in attr_string_set(&old, "rooms")? {
            rooms.push(RoomName::parse(raw).map_err(|_| StoreError::backend(DynamoItemError::Invalid("rooms")))?);
        }
        rooms.sort();

        let mut deletes = vec![Self::delete_request(key(user_pk(&record.user_id), conn_pk(id)))?];
        for room in &rooms {
            deletes.push(Self::delete_request(key(room_pk(room), conn_pk(id)))?);
        }
        self.batch_write(deletes).await?;
        let became_empty = self.adjust_member_counts(&rooms, -1).await?;
        self.adjust_stats(&[("active_connections", -1), ("active_rooms", became_empty)]).await?;

        let remaining = self
            .query_prefix(&user_pk(&record.user_id), "CONN#")
            .limit(1)
            .projection_expression("PK")
            .send()
            .await
            .map_err(StoreError::backend)?;
        let last_of_user = remaining.items.unwrap_or_default().is_empty();
        Ok(Some(RemovedConnection { record, rooms, last_of_user }))
    }

    async fn user_connections(&self, user: &UserId) -> StoreResult<Vec<ConnectionRecord>> {
        let items = self.query_all(|| self.query_prefix(&user_pk(user), "CONN#")).await?;
        items.iter().map(connection_from_item).collect()
    }

    async fn all_connections(&self) -> StoreResult<Vec<ConnectionId>> {
        // The one Scan in this adapter: listing every connection is inherently O(table) and only runs for an
        // explicitly configured broadcast. The filter keeps the answer small, not the read cost.
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(PK, :conn) AND SK = :meta")
                .expression_attribute_values(":conn", s("CONN#"))
                .expression_attribute_values(":meta", s(META))
                .projection_expression("connection_id")
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::backend)?;
            for item in out.items.unwrap_or_default() {
                ids.push(
                    ConnectionId::parse(attr_s(&item, "connection_id")?)
                        .map_err(|_| StoreError::backend(DynamoItemError::Invalid("connection_id")))?,
                );
            }
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(ids),
            }
        }
    }

    // ---- membership -------------------------------------------------------------------------------------------

    async fn join_room(&self, connection: &ConnectionRecord, room: &RoomName) -> StoreResult<bool> {
        // One transaction: the membership appears only if it is new, and the connection's room set grows with it.
        // If the connection item is gone (a concurrent disconnect), nothing is written, so no orphan is left.
        let membership = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::membership_item(connection, room)))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(StoreError::backend)?;
        let room_set = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(conn_pk(&connection.connection_id), META)))
            .update_expression("ADD rooms :room")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":room", AttributeValue::Ss(vec![room.as_str().to_owned()]))
            .build()
            .map_err(StoreError::backend)?;
        let sent = self
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
                    Some(r) if reason_is(r, 0, CONDITION_FAILED) => Ok(false),
                    Some(r) if reason_is(r, 1, CONDITION_FAILED) => Err(StoreError::NotFound),
                    _ => Err(StoreError::backend(e)),
                };
            }
        }
        let became_active = self.adjust_member_counts(std::slice::from_ref(room), 1).await?;
        self.adjust_stats(&[("active_rooms", became_active)]).await?;
        Ok(true)
    }

    async fn leave_room(&self, connection: &ConnectionId, room: &RoomName) -> StoreResult<bool> {
        // Membership first, room set second: the set stays a superset of the memberships if we stop in between.
        let old = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(room_pk(room), conn_pk(connection))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(StoreError::backend)?
            .attributes
            .filter(|a| !a.is_empty());
        if old.is_none() {
            return Ok(false);
        }
        let shrunk = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conn_pk(connection), META)))
            .update_expression("DELETE rooms :room")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":room", AttributeValue::Ss(vec![room.as_str().to_owned()]))
            .send()
            .await;
        match shrunk {
            Ok(_) => {}
            // The connection itself is gone (a concurrent disconnect cleaned up): nothing left to shrink.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(StoreError::backend(e)),
        }
        let became_empty = self.adjust_member_counts(std::slice::from_ref(room), -1).await?;
        self.adjust_stats(&[("active_rooms", became_empty)]).await?;
        Ok(true)
    }

    async fn room_members(&self, room: &RoomName) -> StoreResult<Vec<Member>> {
        let items = self
            .query_all(|| {
                self.query_prefix(&room_pk(room), "CONN#")
                    .projection_expression("SK, user_id")
                    // Fan-out tolerates a just-joined member missing; eventually consistent reads cost half.
                    .consistent_read(false)
            })
            .await?;
        items
            .iter()
            .map(|item| {
                Ok(Member {
                    connection_id: ConnectionId::parse(sk_suffix(item, "CONN#")?)
                        .map_err(|_| StoreError::backend(DynamoItemError::Invalid(SK)))?,
                    user_id: attr_user(item, "user_id")?,
                })
            })
            .collect()
    }

    async fn connection_rooms(&self, connection: &ConnectionId) -> StoreResult<Vec<RoomName>> {
        let item = self.get_item(key(conn_pk(connection), META)).projection_expression("rooms").send().await;
        let item = item.map_err(StoreError::backend)?.item;
        let mut rooms = Vec::new();
        for raw in item.map_or(Ok(Vec::new()), |i| attr_string_set(&i, "rooms"))? {
            rooms.push(RoomName::parse(raw).map_err(|_| StoreError::backend(DynamoItemError::Invalid("rooms")))?);
        }
        rooms.sort();
        Ok(rooms)
    }

    // ---- grants and participation -----------------------------------------------------------------------------

    async fn grant(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        let users: BTreeSet<&UserId> = users.iter().collect();
        let mut writes = Vec::with_capacity(users.len() * 2);
        for user in users {
            let mut grant = key(room_pk(room), format!("GRANT#{user}"));
            grant.insert("user_id".into(), s(user.as_str()));
            writes.push(Self::put_request(grant)?);
            let mut mirror = key(user_pk(user), format!("{GRANT_ROOMS}{room}"));
            mirror.insert("room".into(), s(room.as_str()));
            writes.push(Self::put_request(mirror)?);
        }
        self.batch_write(writes).await
    }

    async fn revoke(&self, room: &RoomName, users: &[UserId]) -> StoreResult<()> {
        let users: BTreeSet<&UserId> = users.iter().collect();
        let mut writes = Vec::with_capacity(users.len() * 2);
        for user in users {
            writes.push(Self::delete_request(key(room_pk(room), format!("GRANT#{user}")))?);
            writes.push(Self::delete_request(key(user_pk(user), format!("{GRANT_ROOMS}{room}")))?);
        }
        self.batch_write(writes).await
    }

    async fn is_granted(&self, room: &RoomName, user: &UserId) -> StoreResult<bool> {
        let out = self
            .get_item(key(room_pk(room), format!("GRANT#{user}")))
            .projection_expression("PK")
            .send()
            .await
            .map_err(StoreError::backend)?;
        Ok(out.item.is_some_and(|i| !i.is_empty()))
    }

    async fn room_grants(&self, room: &RoomName) -> StoreResult<Vec<UserId>> {
        let items = self.query_all(|| self.query_prefix(&room_pk(room), "GRANT#")).await?;
        items.iter().map(|item| attr_user(item, "user_id")).collect()
    }

    async fn record_participation(&self, user: &UserId, room: &RoomName) -> StoreResult<()> {
        let mut item = key(user_pk(user), format!("{PART_ROOMS}{room}"));
        item.insert("room".into(), s(room.as_str()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn user_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomName>> {
        // Grants and participation share the `ROOMS#` prefix so both come back from one Query.
        let items = self.query_all(|| self.query_prefix(&user_pk(user), "ROOMS#")).await?;
        let rooms: BTreeSet<RoomName> = items.iter().map(|item| attr_room(item, "room")).collect::<StoreResult<_>>()?;
        Ok(rooms.into_iter().collect())
    }

    // ---- room history -----------------------------------------------------------------------------------------

    async fn append_event(&self, event: NewRoomEvent) -> StoreResult<Appended> {
        let dedupe_sk = match (&event.sender, &event.client_msg_id) {
            (Some(sender), Some(cmid)) => Some(format!("CMID#{sender}#{}", key_part(cmid))),
            _ => None,
        };
        let mut prev = self.seq_hint(&event.room);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = RoomEvent {
                room: event.room.clone(),
                seq: prev + 1,
                id: event.id.clone(),
                event: event.event.clone(),
                data: event.data.clone(),
                sender: event.sender.clone(),
                client_msg_id: event.client_msg_id.clone(),
                created_at: event.created_at,
            };
            // The counter moves from exactly `prev`, so a lost race cancels the whole transaction and no number is
            // ever skipped. ALL_OLD on the counter hands back the winner's value for the next attempt.
            let counter = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(room_pk(&event.room), COUNTER)))
                .update_expression("SET seq = :next")
                .condition_expression(if prev == 0 { "attribute_not_exists(seq)" } else { "seq = :prev" })
                .set_expression_attribute_values(if prev == 0 {
                    Some(HashMap::from([(":next".to_owned(), n(stored.seq))]))
                } else {
                    Some(HashMap::from([(":next".to_owned(), n(stored.seq)), (":prev".to_owned(), n(prev))]))
                })
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(StoreError::backend)?;
            let mut event_item = key(events_pk(&event.room), seq_sk(stored.seq));
            event_attrs(&mut event_item, &stored);
            event_item.insert(GSI1PK.into(), s(events_pk(&event.room)));
            event_item.insert(GSI1SK.into(), s(format!("ID#{}", key_part(&event.id))));
            let event_put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(event_item))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map_err(StoreError::backend)?;
            let mut request = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(counter).build())
                .transact_items(TransactWriteItem::builder().put(event_put).build());
            if let Some(dedupe_sk) = &dedupe_sk {
                let mut dedupe = key(events_pk(&event.room), dedupe_sk.clone());
                event_attrs(&mut dedupe, &stored);
                let dedupe_put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(dedupe))
                    .condition_expression("attribute_not_exists(PK)")
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()
                    .map_err(StoreError::backend)?;
                request = request.transact_items(TransactWriteItem::builder().put(dedupe_put).build());
            }
            let error = match request.send().await {
                Ok(_) => {
                    self.remember_seq(&event.room, stored.seq);
                    return Ok(Appended { event: stored, duplicate: false });
                }
                Err(error) => error,
            };
            let Some(reasons) = cancellation_reasons(&error) else { return Err(StoreError::backend(error)) };
            if let Some(dedupe_sk) = dedupe_sk.as_ref().filter(|_| reason_is(reasons, 2, CONDITION_FAILED)) {
                let first = match reasons.get(2).and_then(CancellationReason::item) {
                    Some(item) => event_from_item(item)?,
                    None => match self.fetch(key(events_pk(&event.room), dedupe_sk.clone())).await? {
                        Some(item) => event_from_item(&item)?,
                        None => return Err(StoreError::backend(error)),
                    },
                };
                return Ok(Appended { event: first, duplicate: true });
            }
            if attempt >= APPEND_ATTEMPTS {
                return Err(StoreError::backend(DynamoItemError::Contended(attempt)));
            }
            if reason_is(reasons, 0, CONDITION_FAILED) {
                prev = match reasons.first().and_then(CancellationReason::item).filter(|i| !i.is_empty()) {
                    Some(item) => attr_u64(item, "seq")?,
                    None => self.read_counter(&event.room).await?,
                };
                self.remember_seq(&event.room, prev);
                // A stale hint costs one immediate retry; after that we are racing other appenders, so spread out.
                if attempt > 1 {
                    backoff(attempt.min(6), 2, 50).await;
                }
            } else if reasons.iter().any(|r| r.code() == Some(TRANSACTION_CONFLICT)) {
                backoff(attempt.min(6), 5, 200).await;
            } else {
                return Err(StoreError::backend(error));
            }
        }
    }

    async fn history(&self, room: &RoomName, query: HistoryQuery) -> StoreResult<Vec<RoomEvent>> {
        let (low, high, limit, newest_first) = match query {
            HistoryQuery::Latest { limit } => (1, u64::MAX, limit, true),
            HistoryQuery::Before { before, limit } => (1, before.saturating_sub(1), limit, true),
            HistoryQuery::After { after, limit } => (after.saturating_add(1), u64::MAX, limit, false),
        };
        if limit == 0 || low > high {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        let mut start = None;
        // `Limit` bounds items read per page, but a page also stops at 1 MB, so keep reading until `limit` is met.
        while events.len() < limit as usize {
            let remaining = i32::try_from(limit as usize - events.len()).unwrap_or(i32::MAX);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
                .expression_attribute_values(":pk", s(events_pk(room)))
                .expression_attribute_values(":low", s(seq_sk(low)))
                .expression_attribute_values(":high", s(seq_sk(high)))
                .scan_index_forward(!newest_first)
                .limit(self.page_size.map_or(remaining, |p| p.min(remaining)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::backend)?;
            for item in out.items.unwrap_or_default() {
                events.push(event_from_item(&item)?);
            }
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => break,
            }
        }
        events.truncate(limit as usize);
        if newest_first {
            events.reverse();
        }
        Ok(events)
    }

    async fn get_event(&self, room: &RoomName, id: &str) -> StoreResult<Option<RoomEvent>> {
        // GSI1 is eventually consistent: an event appended a few milliseconds ago may not be found yet.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :pk AND GSI1SK = :sk")
            .expression_attribute_values(":pk", s(events_pk(room)))
            .expression_attribute_values(":sk", s(format!("ID#{}", key_part(id))))
            .send()
            .await
            .map_err(StoreError::backend)?;
        out.items.unwrap_or_default().first().map(event_from_item).transpose()
    }

    async fn count_unread(&self, room: &RoomName, after_seq: u64, reader: &UserId) -> StoreResult<u64> {
        // Reads every event after the watermark (the filter does not reduce the read cost); unread tails are short.
        let mut count = 0u64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
                .filter_expression("attribute_not_exists(sender) OR sender <> :reader")
                .expression_attribute_values(":pk", s(events_pk(room)))
                .expression_attribute_values(":low", s(seq_sk(after_seq.saturating_add(1))))
                .expression_attribute_values(":high", s(seq_sk(u64::MAX)))
                .expression_attribute_values(":reader", s(reader.as_str()))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::backend)?;
            count += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(count),
            }
        }
    }

    async fn mark_read(&self, user: &UserId, room: &RoomName, seq: u64) -> StoreResult<u64> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user), format!("READ#{room}"))))
            .update_expression("SET seq = :seq")
            .condition_expression("attribute_not_exists(seq) OR seq < :seq")
            .expression_attribute_values(":seq", n(seq))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match updated {
            Ok(_) => Ok(seq),
            Err(e) => match e.as_service_error() {
                // The stored watermark is already at or above `seq`; it never moves down.
                Some(service) if service.is_conditional_check_failed_exception() => {
                    let old = match &service {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                            c,
                        ) => c.item().cloned(),
                        _ => None,
                    };
                    match old {
                        Some(item) => attr_u64(&item, "seq"),
                        None => self.read_watermark(user, room).await,
                    }
                }
                _ => Err(StoreError::backend(e)),
            },
        }
    }

    async fn read_watermark(&self, user: &UserId, room: &RoomName) -> StoreResult<u64> {
        let item = self.fetch(key(user_pk(user), format!("READ#{room}"))).await?;
        item.map_or(Ok(0), |i| attr_u64(&i, "seq"))
    }

    // ---- idempotency ------------------------------------------------------------------------------------------

    async fn claim_idempotency(&self, key_raw: &str, ttl_seconds: u64) -> StoreResult<IdempotencyClaim> {
        let now = Utc::now();
        let expires_at = now + chrono::Duration::seconds(i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 1000));
        let mut item = key(idem_pk(key_raw), "IDEM");
        item.insert("state".into(), s("pending"));
        item.insert("expires_at".into(), n(expires_at.timestamp_millis()));
        item.insert(TTL.into(), n(expires_at.timestamp()));
        // TTL deletion lags by up to days, so an expired key that still exists counts as free, from its expiry instant on.
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match claimed {
            Ok(_) => return Ok(IdempotencyClaim::Claimed),
            Err(error) => error,
        };
        let old = match error.as_service_error() {
            Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                c.item().cloned()
            }
            _ => return Err(StoreError::backend(error)),
        };
        let old = match old {
            Some(item) => item,
            None => match self.fetch(key(idem_pk(key_raw), "IDEM")).await? {
                Some(item) => item,
                // Released between our write and our read: the caller may simply try again.
                None => return Ok(IdempotencyClaim::InFlight),
            },
        };
        match attr_s(&old, "state")? {
            "done" => Ok(IdempotencyClaim::Completed(attr_json(&old, "result")?)),
            _ => Ok(IdempotencyClaim::InFlight),
        }
    }

    async fn complete_idempotency(&self, key_raw: &str, result: &Value) -> StoreResult<()> {
        let completed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(idem_pk(key_raw), "IDEM")))
            .update_expression("SET #state = :done, #result = :result")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#result", "result")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":result", json_string(result))
            .send()
            .await;
        match completed {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    async fn release_idempotency(&self, key_raw: &str) -> StoreResult<()> {
        // Only a pending claim is released: a completed answer must survive a late release from a confused caller.
        let released = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(idem_pk(key_raw), "IDEM")))
            .condition_expression("#state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", s("pending"))
            .send()
            .await;
        match released {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    // ---- stats ------------------------------------------------------------------------------------------------

    async fn count_messages(&self, n_messages: u64) -> StoreResult<()> {
        self.adjust_stats(&[("total_messages", i64::try_from(n_messages).unwrap_or(i64::MAX))]).await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        let shards = self.batch_get((0..STATS_SHARDS).map(|shard| key(STATS_PK, stats_sk(shard))).collect()).await?;
        // Each shard holds part of every counter; a shard can be negative on its own (a connect counted on one shard,
        // its disconnect on another), only the sum means anything.
        let sum = |name: &'static str| -> StoreResult<u64> {
            let mut total = 0i64;
            for shard in &shards {
                if shard.contains_key(name) {
                    total = total.saturating_add(attr_i64(shard, name)?);
                }
            }
            Ok(u64::try_from(total).unwrap_or(0))
        };
        Ok(Stats {
            active_connections: sum("active_connections")?,
            active_rooms: sum("active_rooms")?,
            total_connections: sum("total_connections")?,
            total_messages: sum("total_messages")?,
        })
    }

    // ---- presence ---------------------------------------------------------------------------------------------

    async fn set_presence(&self, record: &PresenceRecord) -> StoreResult<()> {
        let mut item = key(user_pk(&record.user_id), PRESENCE);
        item.insert("user_id".into(), s(record.user_id.as_str()));
        item.insert("status".into(), s(record.status.as_str()));
        put_opt(&mut item, "custom_status", record.custom_status.as_deref());
        item.insert("last_seen".into(), ts(&record.last_seen));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn get_presence(&self, users: &[UserId]) -> StoreResult<Vec<PresenceRecord>> {
        // BatchGetItem rejects duplicate keys, so each user is asked for once.
        let users: BTreeSet<&UserId> = users.iter().collect();
        let items = self.batch_get(users.into_iter().map(|u| key(user_pk(u), PRESENCE)).collect()).await?;
        items.iter().map(presence_from_item).collect()
    }

    // ---- notifications ----------------------------------------------------------------------------------------

    async fn add_notification(&self, notification: &Notification) -> StoreResult<bool> {
        let user = &notification.user_id;
        let mut item = key(notif_pk(user), format!("N#{}", key_part(&notification.id)));
        item.insert("id".into(), s(&notification.id));
        item.insert("user_id".into(), s(user.as_str()));
        item.insert("title".into(), s(&notification.title));
        item.insert("message".into(), s(&notification.message));
        put_opt(&mut item, "kind", notification.kind.as_deref());
        item.insert("data".into(), json_string(&notification.data));
        item.insert("read".into(), AttributeValue::Bool(notification.read));
        item.insert("created_at".into(), ts(&notification.created_at));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(StoreError::backend)?;
        let mut request =
            self.client.transact_write_items().transact_items(TransactWriteItem::builder().put(put).build());
        if !notification.read {
            let counter = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(notif_pk(user), UNREAD)))
                .update_expression("ADD unread :one")
                .expression_attribute_values(":one", n(1))
                .build()
                .map_err(StoreError::backend)?;
            request = request.transact_items(TransactWriteItem::builder().update(counter).build());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            // The same notification added twice (a retried request): the first one counted, this one is a no-op.
            Err(e) if cancellation_reasons(&e).is_some_and(|r| reason_is(r, 0, CONDITION_FAILED)) => Ok(false),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    async fn list_notifications(&self, user: &UserId, query: &NotificationQuery) -> StoreResult<Vec<Notification>> {
        let limit = query.limit as usize;
        let mut found = Vec::new();
        let mut start = None;
        // With `unread_only` the filter runs after `Limit`, so pages may come back short: keep reading until the
        // page is full or the partition ends.
        while found.len() < limit {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", s(notif_pk(user)))
                .scan_index_forward(false)
                .limit(self.page_size.unwrap_or(i32::try_from(limit).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start.take());
            request = match &query.before_id {
                Some(before) => request
                    .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :before")
                    .expression_attribute_values(":low", s("N#"))
                    .expression_attribute_values(":before", s(format!("N#{}", key_part(before)))),
                None => request
                    .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                    .expression_attribute_values(":prefix", s("N#")),
            };
            if query.unread_only {
                request = request
                    .filter_expression("#read = :false")
                    .expression_attribute_names("#read", "read")
                    .expression_attribute_values(":false", AttributeValue::Bool(false));
            }
            let out = request.send().await.map_err(StoreError::backend)?;
            for item in out.items.unwrap_or_default() {
                let notification = notification_from_item(&item)?;
                // BETWEEN is inclusive; the cursor itself belongs to the previous page.
                if query.before_id.as_deref() != Some(notification.id.as_str()) {
                    found.push(notification);
                }
            }
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    async fn mark_notifications_read(&self, user: &UserId, selector: &NotificationSelector) -> StoreResult<u64> {
        let ids: Vec<String> = match selector {
            NotificationSelector::Ids(ids) => ids.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect(),
            NotificationSelector::All => {
                let items = self
                    .query_all(|| {
                        self.query_prefix(&notif_pk(user), "N#")
                            .filter_expression("#read = :false")
                            .expression_attribute_names("#read", "read")
                            .expression_attribute_values(":false", AttributeValue::Bool(false))
                            .projection_expression("id")
                    })
                    .await?;
                items.iter().map(|i| attr_s(i, "id").map(str::to_owned)).collect::<StoreResult<_>>()?
            }
        };
        futures::stream::iter(ids)
            .map(|id| async move { self.mark_one_read(user, &id).await })
            .buffer_unordered(ITEM_CONCURRENCY)
            .try_fold(0u64, |sum, changed| async move { Ok(sum + changed) })
            .await
    }

    async fn unread_notifications(&self, user: &UserId) -> StoreResult<u64> {
        let item = self.fetch(key(notif_pk(user), UNREAD)).await?;
        attr_count(item.as_ref(), "unread")
    }

    // ---- calls ------------------------------------------------------------------------------------------------

    async fn create_call(&self, call: &CallRecord) -> StoreResult<()> {
        let mut item = key(call_pk(&call.call_id), "CALL");
        item.insert("call_id".into(), s(&call.call_id));
        item.insert("caller".into(), s(call.caller.as_str()));
        item.insert("recipient".into(), s(call.recipient.as_str()));
        item.insert("call_type".into(), s(call_type_str(call.call_type)));
        put_opt(&mut item, "visit_id", call.visit_id.as_deref());
        item.insert("state".into(), s(call.state.as_str()));
        item.insert("created_at".into(), ts(&call.created_at));
        if let Some(at) = &call.answered_at {
            item.insert("answered_at".into(), ts(at));
        }
        if let Some(at) = &call.ended_at {
            item.insert("ended_at".into(), ts(at));
        }
        let created = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(StoreError::ConditionFailed)
            }
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    async fn get_call(&self, call_id: &str) -> StoreResult<Option<CallRecord>> {
        self.fetch(key(call_pk(call_id), "CALL")).await?.map(|item| call_from_item(&item)).transpose()
    }

    async fn transition_call(&self, call_id: &str, transition: &CallTransition) -> StoreResult<CallRecord> {
        if transition.from.is_empty() {
            // No state can match; still tell an unknown call apart.
            return match self.get_call(call_id).await? {
                Some(_) => Err(StoreError::ConditionFailed),
                None => Err(StoreError::NotFound),
            };
        }
        let placeholders: Vec<String> = (0..transition.from.len()).map(|i| format!(":from{i}")).collect();
        let mut sets = vec!["#state = :to".to_owned()];
        if transition.to == CallState::Accepted {
            sets.push("answered_at = :at".to_owned());
        }
        if transition.to.is_final() {
            sets.push("ended_at = :at".to_owned());
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(call_pk(call_id), "CALL")))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(format!("attribute_exists(PK) AND #state IN ({})", placeholders.join(", ")))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":to", s(transition.to.as_str()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if sets.len() > 1 {
            request = request.expression_attribute_values(":at", ts(&transition.at));
        }
        for (placeholder, state) in placeholders.iter().zip(&transition.from) {
            request = request.expression_attribute_values(placeholder, s(state.as_str()));
        }
        match request.send().await {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| StoreError::backend(DynamoItemError::Attribute("state")))?;
                call_from_item(&item)
            }
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    // The old item tells a state mismatch apart from an unknown call; DynamoDB versions that do not
                    // return it cost one extra read.
                    let exists = match c.item() {
                        Some(item) => !item.is_empty(),
                        None => self.get_call(call_id).await?.is_some(),
                    };
                    Err(if exists { StoreError::ConditionFailed } else { StoreError::NotFound })
                }
                _ => Err(StoreError::backend(e)),
            },
        }
    }
}

// ---- request counting --------------------------------------------------------------------------------------------

/// Runs `$body` with `$input` bound to the typed input of whichever data-plane operation `$erased` holds.
macro_rules! with_data_plane_input {
    ($erased:expr, $method:ident, |$input:ident| $body:expr) => {{
        use aws_sdk_dynamodb::operation as op;
        if let Some($input) = $erased.$method::<op::get_item::GetItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::put_item::PutItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::update_item::UpdateItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::delete_item::DeleteItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::query::QueryInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::scan::ScanInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::batch_write_item::BatchWriteItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::batch_get_item::BatchGetItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::transact_write_items::TransactWriteItemsInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::transact_get_items::TransactGetItemsInput>() {
            $body
        }
    }};
}

/// The operation name of a type-erased input (the SDK's `Input`). The SDK's `Metadata` in the config bag would say
/// the same, but naming it needs the `aws-smithy-runtime-api` crate; matching the inputs we send keeps the dependency
/// list as it is. A macro because the SDK does not re-export the erased `Input` and `Output` types.
macro_rules! operation_name {
    ($input:expr) => {
        operation_name!(@names $input;
            get_item::GetItemInput => "GetItem",
            put_item::PutItemInput => "PutItem",
            update_item::UpdateItemInput => "UpdateItem",
            delete_item::DeleteItemInput => "DeleteItem",
            query::QueryInput => "Query",
            scan::ScanInput => "Scan",
            batch_write_item::BatchWriteItemInput => "BatchWriteItem",
            batch_get_item::BatchGetItemInput => "BatchGetItem",
            transact_write_items::TransactWriteItemsInput => "TransactWriteItems",
            transact_get_items::TransactGetItemsInput => "TransactGetItems",
            create_table::CreateTableInput => "CreateTable",
            describe_table::DescribeTableInput => "DescribeTable",
            delete_table::DeleteTableInput => "DeleteTable",
            update_time_to_live::UpdateTimeToLiveInput => "UpdateTimeToLive",
            list_tables::ListTablesInput => "ListTables",
        )
    };
    (@names $input:expr; $($module:ident :: $ty:ident => $name:literal),* $(,)?) => {{
        let input = $input;
        $(if input.downcast_ref::<aws_sdk_dynamodb::operation::$module::$ty>().is_some() { $name } else)* { "Other" }
    }};
}

fn capacity_units(capacity: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>) -> f64 {
    capacity.and_then(aws_sdk_dynamodb::types::ConsumedCapacity::capacity_units).unwrap_or(0.0)
}

fn capacity_units_sum(capacity: &[aws_sdk_dynamodb::types::ConsumedCapacity]) -> f64 {
    capacity.iter().filter_map(aws_sdk_dynamodb::types::ConsumedCapacity::capacity_units).sum()
}

/// Capacity units reported in a type-erased output (the SDK's `Output`).
macro_rules! consumed_capacity {
    ($output:expr) => {{
        use aws_sdk_dynamodb::operation as op;
        let output = $output;
        if let Some(o) = output.downcast_ref::<op::get_item::GetItemOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::put_item::PutItemOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::update_item::UpdateItemOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::delete_item::DeleteItemOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::query::QueryOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::scan::ScanOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::batch_write_item::BatchWriteItemOutput>() {
            capacity_units_sum(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::batch_get_item::BatchGetItemOutput>() {
            capacity_units_sum(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::transact_write_items::TransactWriteItemsOutput>() {
            capacity_units_sum(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::transact_get_items::TransactGetItemsOutput>() {
            capacity_units_sum(o.consumed_capacity())
        } else {
            0.0
        }
    }};
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "BellhopRequestCounter"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        let name: &'static str = operation_name!(context.input());
        self.with_state(|s| *s.operations.entry(name).or_insert(0) += 1);
        Ok(())
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        let input = context.input_mut();
        with_data_plane_input!(input, downcast_mut, |typed| {
            typed.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
        });
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        self.with_state(|s| s.attempts += 1);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        if let Some(Ok(output)) = context.output_or_error() {
            let units: f64 = consumed_capacity!(output);
            self.with_state(|s| s.capacity_units += units);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Runs the store contract suite and the adapter's own cases against a real DynamoDB Local. Every test creates
    //! a table of its own (`bellhop-test-{uuid}`), so cases never see each other's counters. Without
    //! `DYNAMODB_ENDPOINT` the tests say loudly that they skipped; with `TEST_INTEGRATION=1` they fail instead.

    use std::time::Instant;

    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    use chrono::Duration as ChronoDuration;
    use futures::future::join_all;
    use serde_json::json;

    use super::*;
    use crate::store::contract;

    /// A store on a fresh table, with a request counter attached.
    struct TestTable {
        store: DynamoStore,
        counter: RequestCounter,
        endpoint: String,
    }

    impl TestTable {
        async fn create() -> Option<Self> {
            let endpoint = crate::testing::integration_var("DYNAMODB_ENDPOINT", "DynamoDB Local")?;
            let table = format!("bellhop-test-{}", uuid::Uuid::new_v4().simple());
            let counter = RequestCounter::new();
            let store = DynamoStore::from_config_with_counter(&table, Some(&endpoint), &counter).await;
            store.create_table_if_missing().await.expect("create test table");
            counter.reset();
            Some(Self { store, counter, endpoint })
        }

        /// Another store on the same table, as a second Lambda instance would have: no shared sequence hints.
        async fn second_store(&self) -> DynamoStore {
            DynamoStore::from_config(self.store.table(), Some(&self.endpoint)).await
        }

        async fn drop_table(self) {
            // Best effort: DynamoDB Local runs in memory, so a table left behind by a failed test dies with it.
            let _ = self.store.client().delete_table().table_name(self.store.table()).send().await;
        }
    }

    macro_rules! contract_cases {
        ($($case:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(table) = TestTable::create().await else { return };
                contract::$case(&table.store).await;
                table.drop_table().await;
            }
        )*};
    }

    contract::with_every_case!(contract_cases);

    fn user(prefix: &str) -> UserId {
        UserId::parse(format!("{prefix}-{}", uuid::Uuid::new_v4().simple())).expect("valid user id")
    }

    fn room(kind: &str) -> RoomName {
        RoomName::parse(format!("{kind}:{}", uuid::Uuid::new_v4().simple())).expect("valid room name")
    }

    fn connection(user: &UserId) -> ConnectionRecord {
        let connected_at = Utc::now();
        ConnectionRecord {
            connection_id: ConnectionId::parse(format!("c-{}", uuid::Uuid::new_v4().simple())).expect("valid id"),
            user_id: user.clone(),
            role: None,
            name: Some("Tester".to_owned()),
            email: Some("tester@example.com".to_owned()),
            connected_at,
            expires_at: connected_at + ChronoDuration::hours(2),
        }
    }

    fn new_event(room: &RoomName, sender: Option<&UserId>, client_msg_id: Option<&str>) -> NewRoomEvent {
        NewRoomEvent {
            room: room.clone(),
            id: uuid::Uuid::now_v7().to_string(),
            event: "message".to_owned(),
            data: json!({ "text": "hi" }),
            sender: sender.cloned(),
            client_msg_id: client_msg_id.map(str::to_owned),
            created_at: Utc::now(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contract_suite_passes_in_sequence_on_one_table() {
        let Some(table) = TestTable::create().await else { return };
        contract::run_all(&table.store).await;
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creating_the_table_twice_is_harmless() {
        let Some(table) = TestTable::create().await else { return };
        table.store.create_table_if_missing().await.expect("second create");
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_connection_with_30_rooms_writes_in_two_batches() {
        let Some(table) = TestTable::create().await else { return };
        let conn = connection(&user("batch"));
        let rooms: Vec<RoomName> = (0..30).map(|_| room("topic")).collect();

        table.store.put_connection(&conn, &rooms).await.expect("put connection");

        // 30 memberships + the user mirror = 31 items = two BatchWriteItem calls. Besides them: one UpdateItem for
        // the connection item, one per room for its member count, and one for the global stats.
        let ops = table.counter.operations();
        assert_eq!(table.counter.count("BatchWriteItem"), 2, "{ops:?}");
        assert_eq!(table.counter.count("UpdateItem"), 1 + 30 + 1, "{ops:?}");
        assert_eq!(table.counter.total(), 2 + 32, "{ops:?}");
        assert!(table.counter.capacity_units() > 0.0, "consumed capacity is summed: {ops:?}");
        assert_eq!(table.store.connection_rooms(&conn.connection_id).await.expect("rooms").len(), 30);
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_uncontended_append_is_one_transaction() {
        let Some(table) = TestTable::create().await else { return };
        let chat = room("topic");
        let sender = user("sender");
        let one_transaction = BTreeMap::from([("TransactWriteItems", 1)]);

        let first = table.store.append_event(new_event(&chat, Some(&sender), Some("m"))).await.expect("append");
        assert_eq!((first.event.seq, first.duplicate), (1, false));
        assert_eq!(table.counter.operations(), one_transaction);

        table.counter.reset();
        let second = table.store.append_event(new_event(&chat, Some(&sender), None)).await.expect("append");
        assert_eq!((second.event.seq, second.duplicate), (2, false));
        assert_eq!(table.counter.operations(), one_transaction);

        // A retry is answered by the failed transaction itself: the dedupe item's old image is the first event.
        table.counter.reset();
        let retry = table.store.append_event(new_event(&chat, Some(&sender), Some("m"))).await.expect("retry");
        assert!(retry.duplicate);
        assert_eq!(retry.event, first.event);
        assert_eq!(table.counter.operations(), one_transaction);

        // A fresh instance does not know the room's counter yet: its first append costs one failed transaction.
        let cold = table.second_store().await;
        let third = cold.append_event(new_event(&chat, None, None)).await.expect("append from a cold instance");
        assert_eq!(third.event.seq, 3);
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_instance_with_a_stale_hint_still_appends_without_gaps() {
        let Some(table) = TestTable::create().await else { return };
        let other = table.second_store().await;
        let chat = room("topic");

        let mut seqs = Vec::new();
        for i in 0..6 {
            let store = if i % 2 == 0 { &table.store } else { &other };
            seqs.push(store.append_event(new_event(&chat, None, None)).await.expect("append").event.seq);
        }

        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_from_two_instances_leave_no_gaps() {
        let Some(table) = TestTable::create().await else { return };
        let other = table.second_store().await;
        let chat = room("topic");

        let appends = (0..30).map(|i| {
            let store = if i % 2 == 0 { &table.store } else { &other };
            store.append_event(new_event(&chat, None, None))
        });
        let mut seqs: Vec<u64> = join_all(appends).await.into_iter().map(|r| r.expect("append").event.seq).collect();
        seqs.sort_unstable();

        assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
        let history = table.store.history(&chat, HistoryQuery::Latest { limit: 100 }).await.expect("history");
        assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=30).collect::<Vec<u64>>());
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listings_follow_every_page_when_pages_are_small() {
        let Some(table) = TestTable::create().await else { return };
        let store = table.store.clone().with_page_size(7);
        let crowd = room("topic");
        let owner = user("paged");
        let conns: Vec<ConnectionRecord> = (0..120).map(|_| connection(&owner)).collect();
        for chunk in conns.chunks(20) {
            for result in join_all(chunk.iter().map(|c| store.put_connection(c, std::slice::from_ref(&crowd)))).await {
                result.expect("put connection");
            }
        }
        for _ in 0..25 {
            store.append_event(new_event(&crowd, None, None)).await.expect("append");
        }

        assert_eq!(store.room_members(&crowd).await.expect("members").len(), 120);
        assert_eq!(store.user_connections(&owner).await.expect("user connections").len(), 120);
        assert_eq!(store.all_connections().await.expect("all").len(), 120);
        let latest = store.history(&crowd, HistoryQuery::Latest { limit: 20 }).await.expect("history");
        assert_eq!(latest.iter().map(|e| e.seq).collect::<Vec<_>>(), (6..=25).collect::<Vec<u64>>());
        assert_eq!(store.count_unread(&crowd, 3, &owner).await.expect("unread"), 22);
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_mark_all_read_never_drifts_the_unread_counter() {
        let Some(table) = TestTable::create().await else { return };
        let me = user("notified");
        for i in 0..12 {
            let notification = Notification {
                id: uuid::Uuid::now_v7().to_string(),
                user_id: me.clone(),
                title: format!("n{i}"),
                message: "m".to_owned(),
                kind: None,
                data: json!(null),
                read: false,
                created_at: Utc::now(),
            };
            table.store.add_notification(&notification).await.expect("add");
            // Adding the same notification again (a retried request) must not count it twice.
            table.store.add_notification(&notification).await.expect("add again");
        }
        assert_eq!(table.store.unread_notifications(&me).await.expect("unread"), 12);

        let marks = (0..3).map(|_| table.store.mark_notifications_read(&me, &NotificationSelector::All));
        let changed: u64 = join_all(marks).await.into_iter().map(|r| r.expect("mark all")).sum();

        assert_eq!(changed, 12, "each notification flips exactly once");
        assert_eq!(table.store.unread_notifications(&me).await.expect("unread after"), 0);
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn joining_with_an_unknown_connection_is_not_found_and_writes_nothing() {
        let Some(table) = TestTable::create().await else { return };
        let conn = connection(&user("ghost"));
        let topic = room("topic");

        let joined = table.store.join_room(&conn, &topic).await;

        assert!(matches!(joined, Err(StoreError::NotFound)), "{joined:?}");
        assert!(table.store.room_members(&topic).await.expect("members").is_empty());
        assert!(table.store.get_connection(&conn.connection_id).await.expect("get").is_none());
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timestamps_round_trip_to_the_nanosecond() {
        let Some(table) = TestTable::create().await else { return };
        let mut conn = connection(&user("clock"));
        conn.connected_at = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid instant");
        conn.expires_at = conn.connected_at + ChronoDuration::milliseconds(7_200_001);

        table.store.put_connection(&conn, &[]).await.expect("put");

        assert_eq!(table.store.get_connection(&conn.connection_id).await.expect("get"), Some(conn));
        table.drop_table().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_transition_from_no_state_tells_unknown_from_mismatched() {
        let Some(table) = TestTable::create().await else { return };
        let call = CallRecord {
            call_id: format!("call-{}", uuid::Uuid::new_v4().simple()),
            caller: user("caller"),
            recipient: user("callee"),
            call_type: CallType::Audio,
            visit_id: None,
            state: CallState::Ringing,
            created_at: Utc::now(),
            answered_at: None,
            ended_at: None,
        };
        table.store.create_call(&call).await.expect("create");
        let nothing = CallTransition { from: Vec::new(), to: CallState::Ended, at: Utc::now() };

        let known = table.store.transition_call(&call.call_id, &nothing).await;
        let unknown = table.store.transition_call("call-unknown", &nothing).await;

        assert!(matches!(known, Err(StoreError::ConditionFailed)), "{known:?}");
        assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
        table.drop_table().await;
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_fails_fast_with_a_backend_error() {
        // Bind a port, learn its number and close it, so nothing listens there.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            listener.local_addr().expect("local addr").port()
        };
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_timeout(Duration::from_secs(3))
                    .build(),
            )
            .build();
        let store = DynamoStore::new(Client::from_conf(config), "unreachable");
        let started = Instant::now();

        let result = tokio::time::timeout(Duration::from_secs(10), store.stats()).await;

        let result = result.expect("the call gives up instead of hanging");
        assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
}
