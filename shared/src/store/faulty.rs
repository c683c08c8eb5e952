//! A fault-injecting [`Store`] for tests: it wraps any store, counts every call by operation, and fails the calls
//! its [`Fault`]s name with [`StoreError::Backend`], as a store that timed out or was unreachable would.
//!
//! Tests use it to prove that a handler survives a store failure at any step: count the calls of one healthy run,
//! then fail the k-th call for every k and check what a retry leaves behind. Only built for tests and with the
//! `test-util` feature; production code never sees it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    ActiveRoom, Admission, Appended, CallRecord, CallTransition, ConnectionRecord, HistoryQuery, IdempotencyClaim,
    Member, NewRoomEvent, Notification, NotificationQuery, NotificationSelector, Page, PresenceRecord, RateLimit,
    RemovedConnection, RoomEvent, Stats, Store, StoreError, StoreResult,
};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

/// Which calls fail. Call numbers start at 1 and count every call since the store was made (or last
/// [`FaultyStore::reset_counts`]), failed ones included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The k-th call, whatever its operation.
    Call(u64),
    /// The k-th call of one operation, named as the [`Store`] method (`"append_event"`).
    CallOf(&'static str, u64),
    /// Every call from the k-th on: an outage that lasts until the faults are cleared.
    From(u64),
}

/// The error inside [`StoreError::Backend`] for an injected failure.
#[derive(Debug, thiserror::Error)]
#[error("injected fault in {operation} (call {call})")]
pub struct InjectedFault {
    pub operation: &'static str,
    pub call: u64,
}

/// See the [module documentation](self).
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    total: u64,
    by_operation: BTreeMap<&'static str, u64>,
}

impl FaultyStore {
    /// Wraps `inner` with no faults: every call passes through and is counted.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, state: Mutex::default() }
    }

    /// Adds a fault.
    pub fn with_fault(self, fault: Fault) -> Self {
        self.lock().faults.push(fault);
        self
    }

    /// Replaces the faults; an empty list heals the store.
    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.lock().faults = faults;
    }

    /// The wrapped store, for arranging and checking state without counting calls.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Calls made so far, of every operation.
    pub fn calls(&self) -> u64 {
        self.lock().total
    }

    /// Calls made so far of one operation.
    pub fn calls_of(&self, operation: &str) -> u64 {
        self.lock().by_operation.get(operation).copied().unwrap_or(0)
    }

    /// Calls made so far by operation.
    pub fn operations(&self) -> BTreeMap<&'static str, u64> {
        self.lock().by_operation.clone()
    }

    /// Starts counting again from zero; faults stay.
    pub fn reset_counts(&self) {
        let mut state = self.lock();
        state.total = 0;
        state.by_operation.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a failed assertion elsewhere; the counts stay usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a call of `operation` and decides whether it fails.
    fn enter(&self, operation: &'static str) -> StoreResult<()> {
        let mut state = self.lock();
        state.total += 1;
        let total = state.total;
        let of_operation = {
            let count = state.by_operation.entry(operation).or_insert(0);
            *count += 1;
            *count
        };
        let fails = state.faults.iter().any(|fault| match fault {
            Fault::Call(k) => *k == total,
            Fault::CallOf(name, k) => *name == operation && *k == of_operation,
            Fault::From(k) => total >= *k,
        });
        if fails { Err(StoreError::backend(InjectedFault { operation, call: total })) } else { Ok(()) }
    }
}

/// Generates the [`Store`] impl: each method counts, maybe fails, then delegates. Written as a list so a new port
/// operation is one line here.
macro_rules! faulty_store_impl {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for FaultyStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> StoreResult<$ret> {
                    self.enter(stringify!($name))?;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

faulty_store_impl! {
    fn put_connection(&self, connection: &ConnectionRecord, rooms: &[RoomName]) -> ();
    fn get_connection(&self, id: &ConnectionId) -> Option<ConnectionRecord>;
    fn delete_connection(&self, id: &ConnectionId) -> Option<RemovedConnection>;
    fn set_token_expiry(&self, id: &ConnectionId, at: DateTime<Utc>) -> bool;
    fn user_connections(&self, user: &UserId) -> Vec<ConnectionRecord>;
    fn all_connections(&self) -> Vec<ConnectionId>;
    fn join_room(&self, connection: &ConnectionRecord, room: &RoomName) -> bool;
    fn leave_room(&self, connection: &ConnectionId, room: &RoomName) -> bool;
    fn room_members(&self, room: &RoomName) -> Vec<Member>;
    fn room_members_page(&self, room: &RoomName, after: Option<&str>, limit: u32) -> Page<Member>;
    fn room_member_count(&self, room: &RoomName) -> u64;
    fn active_rooms_page(&self, after: Option<&str>, limit: u32) -> Page<ActiveRoom>;
    fn connection_rooms(&self, connection: &ConnectionId) -> Vec<RoomName>;
    fn grant(&self, room: &RoomName, users: &[UserId]) -> ();
    fn revoke(&self, room: &RoomName, users: &[UserId]) -> ();
    fn is_granted(&self, room: &RoomName, user: &UserId) -> bool;
    fn room_grants(&self, room: &RoomName) -> Vec<UserId>;
    fn record_participation(&self, user: &UserId, room: &RoomName) -> ();
    fn user_rooms(&self, user: &UserId) -> Vec<RoomName>;
    fn user_rooms_page(&self, user: &UserId, after: Option<&str>, limit: u32) -> Page<RoomName>;
    fn append_event(&self, event: NewRoomEvent) -> Appended;
    fn append_message(&self, event: NewRoomEvent) -> Appended;
    fn history(&self, room: &RoomName, query: HistoryQuery) -> Vec<RoomEvent>;
    fn get_event(&self, room: &RoomName, id: &str) -> Option<RoomEvent>;
    fn count_unread(&self, room: &RoomName, after_seq: u64, reader: &UserId) -> u64;
    fn mark_read(&self, user: &UserId, room: &RoomName, seq: u64) -> u64;
    fn read_watermark(&self, user: &UserId, room: &RoomName) -> u64;
    fn claim_idempotency(&self, key: &str, ttl_seconds: u64) -> IdempotencyClaim;
    fn complete_idempotency(&self, key: &str, result: &Value, ttl_seconds: u64) -> ();
    fn release_idempotency(&self, key: &str) -> ();
    fn admit(&self, key: &str, limit: RateLimit, now: DateTime<Utc>) -> Admission;
    fn admit_frame(&self, connection: &ConnectionId, limit: RateLimit, now: DateTime<Utc>) -> Admission;
    fn connection_activity(&self, connection: &ConnectionId) -> Option<DateTime<Utc>>;
    fn count_messages(&self, n: u64) -> ();
    fn stats(&self) -> Stats;
    fn set_presence(&self, record: &PresenceRecord) -> ();
    fn get_presence(&self, users: &[UserId]) -> Vec<PresenceRecord>;
    fn add_notification(&self, notification: &Notification) -> bool;
    fn list_notifications(&self, user: &UserId, query: &NotificationQuery) -> Vec<Notification>;
    fn mark_notifications_read(&self, user: &UserId, selector: &NotificationSelector) -> u64;
    fn unread_notifications(&self, user: &UserId) -> u64;
    fn create_call(&self, call: &CallRecord) -> ();
    fn get_call(&self, call_id: &str) -> Option<CallRecord>;
    fn transition_call(&self, call_id: &str, transition: &CallTransition) -> CallRecord;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    async fn store(faults: Vec<Fault>) -> FaultyStore {
        let store = FaultyStore::new(Arc::new(SqliteStore::in_memory().await.expect("in-memory store")));
        store.set_faults(faults);
        store
    }

    fn is_injected(result: &StoreResult<u64>) -> bool {
        matches!(result, Err(StoreError::Backend(e)) if e.is::<InjectedFault>())
    }

    #[tokio::test]
    async fn the_kth_call_of_any_operation_fails_and_every_call_is_counted() {
        let store = store(vec![Fault::Call(2)]).await;
        let user = UserId::parse("alice").expect("user");

        let first = store.unread_notifications(&user).await;
        let second = store.unread_notifications(&user).await;
        let third = store.unread_notifications(&user).await;

        assert!(!is_injected(&first) && is_injected(&second) && !is_injected(&third));
        assert_eq!((store.calls(), store.calls_of("unread_notifications")), (3, 3));
    }

    #[tokio::test]
    async fn a_fault_of_one_operation_counts_only_that_operation() {
        let store = store(vec![Fault::CallOf("read_watermark", 1)]).await;
        let user = UserId::parse("alice").expect("user");
        let room = RoomName::parse("topic:x").expect("room");

        let other = store.unread_notifications(&user).await;
        let named = store.read_watermark(&user, &room).await;
        let again = store.read_watermark(&user, &room).await;

        assert!(!is_injected(&other) && is_injected(&named) && !is_injected(&again));
    }

    #[tokio::test]
    async fn an_outage_lasts_until_the_faults_are_cleared() {
        let store = store(vec![Fault::From(1)]).await;
        let user = UserId::parse("alice").expect("user");

        assert!(is_injected(&store.unread_notifications(&user).await));
        assert!(is_injected(&store.unread_notifications(&user).await));
        store.set_faults(Vec::new());
        assert_eq!(store.unread_notifications(&user).await.expect("healed"), 0);
    }
}
