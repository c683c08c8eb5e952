//! The backend-agnostic contract suite of the store port: what every [`Store`] adapter must do, written once and run
//! by each adapter's tests.
//!
//! Each case takes `&dyn Store` and names everything it creates with a fresh UUID, so all cases can share one store,
//! even a DynamoDB table holding data from earlier runs, and can run in any order. The only store-wide state is the
//! counters behind [`Store::stats`]: the cases assert on deltas, and [`stats_count_connections_rooms_messages`]
//! needs the store to itself while it runs (as [`run_all`] does) because its exact deltas would see concurrent
//! writers. Timestamps are truncated to milliseconds before they are stored, the precision every adapter keeps.
//! The suite asserts nothing about order where the port promises none; it sorts both sides instead.
//!
//! Panicking is how a case fails, so `expect` is used freely here.

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use serde_json::json;

use super::{
    ActiveRoom, Admission, Appended, CallRecord, CallState, CallTransition, CallType, ConnectionRecord, HistoryQuery,
    IdempotencyClaim, JoinOutcome, Member, NewRoomEvent, Notification, NotificationQuery, NotificationSelector,
    PresenceRecord, PresenceStatus, RateLimit, RoomEvent, RoomState, Store, StoreError, StoreResult, UserPresence,
};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

/// Calls `$callback!` with the name of every case. The list lives here once: [`run_all`] and each adapter's
/// one-test-per-case module are generated from it, so a new case runs everywhere or fails to compile nowhere.
macro_rules! with_every_case {
    ($callback:ident) => {
        $callback! {
            connect_join_leave,
            put_connection_joins_auto_rooms_and_counts_stats,
            delete_connection_removes_every_membership_and_is_idempotent,
            join_room_of_an_unknown_connection_is_not_found,
            last_connection_of_user_is_reported,
            room_members_lists_every_page,
            grants_and_revokes,
            participation_and_user_rooms_include_grants,
            append_event_allocates_gapless_seq,
            append_event_is_idempotent_per_client_msg_id,
            append_message_records_participation_and_counts_each_message_once,
            concurrent_appends_get_distinct_seqs,
            history_pages_latest_before_after,
            get_event_by_id,
            count_unread_excludes_own_and_read,
            read_watermark_never_goes_down,
            idempotency_claim_complete_release,
            stats_count_connections_rooms_messages,
            presence_set_and_get,
            user_presence_reads_connections_status_and_subscribers,
            last_disconnect_stamps_presence_and_names_subscribers,
            join_room_within_refuses_past_the_room_limit,
            room_state_has_members_and_latest_seq,
            notifications_list_page_filter_and_mark_read,
            calls_transition_conditionally,
            token_expiry_round_trips_and_extends,
            room_members_page_through_every_member_once,
            user_rooms_page_through_grants_and_participation_once,
            a_cursor_from_elsewhere_is_invalid,
            room_member_count_follows_joins_and_leaves,
            active_rooms_list_counts_members_and_last_seq,
            active_rooms_page_through_every_room_once,
            admit_frame_records_the_last_activity_of_admitted_frames,
            admit_allows_a_burst_then_limits_with_retry_after
        }
    };
}
// The adapters' test modules are its other users.
#[cfg(test)]
pub(crate) use with_every_case;

/// Runs every case in sequence against one store.
pub async fn run_all(store: &dyn Store) {
    macro_rules! in_sequence {
        ($($case:ident),*) => {
            $($case(store).await;)*
        };
    }
    with_every_case!(in_sequence);
}

// ---- connections and membership ---------------------------------------------------------------------------------

pub async fn connect_join_leave(store: &dyn Store) {
    let user = user("join");
    let conn = connection(&user);
    let own = RoomName::for_user(&user);
    let topic = room("topic");
    store.put_connection(&conn, std::slice::from_ref(&own)).await.expect("put connection");

    assert_eq!(store.get_connection(&conn.connection_id).await.expect("get"), Some(conn.clone()));
    assert!(store.get_connection(&connection_id()).await.expect("get unknown").is_none());
    assert_eq!(store.user_connections(&user).await.expect("user connections"), std::slice::from_ref(&conn));
    assert!(store.all_connections().await.expect("all connections").contains(&conn.connection_id));

    assert!(store.join_room(&conn, &topic).await.expect("join"), "first join is new");
    assert!(!store.join_room(&conn, &topic).await.expect("join again"), "second join reports already a member");
    assert_eq!(store.room_members(&topic).await.expect("members"), [member(&conn)]);
    assert_eq!(
        sorted(store.connection_rooms(&conn.connection_id).await.expect("rooms")),
        sorted(vec![own, topic.clone()])
    );

    assert!(store.leave_room(&conn.connection_id, &topic).await.expect("leave"), "leaving a joined room");
    assert!(!store.leave_room(&conn.connection_id, &topic).await.expect("leave again"), "leaving twice");
    assert!(store.room_members(&topic).await.expect("members after leave").is_empty());

    store.delete_connection(&conn.connection_id).await.expect("cleanup");
}

pub async fn put_connection_joins_auto_rooms_and_counts_stats(store: &dyn Store) {
    let user = user("auto");
    let conn = connection(&user);
    let rooms = vec![RoomName::for_user(&user), room("customer")];
    let before = store.stats().await.expect("stats before");

    store.put_connection(&conn, &rooms).await.expect("put connection");

    for room in &rooms {
        assert_eq!(store.room_members(room).await.expect("members"), [member(&conn)], "{room}");
    }
    assert_eq!(sorted(store.connection_rooms(&conn.connection_id).await.expect("rooms")), sorted(rooms.clone()));
    let after = store.stats().await.expect("stats after");
    // Other writers may share the store, so only a lower bound holds for the monotonic counter.
    assert!(after.total_connections > before.total_connections, "{before:?} -> {after:?}");

    // Re-putting the same id replaces the record and adds the new rooms.
    let replaced = ConnectionRecord { role: Some("provider".to_owned()), ..conn.clone() };
    let extra = room("provider");
    store.put_connection(&replaced, std::slice::from_ref(&extra)).await.expect("re-put connection");
    assert_eq!(store.get_connection(&conn.connection_id).await.expect("get"), Some(replaced.clone()));
    assert_eq!(store.user_connections(&user).await.expect("user connections"), [replaced]);
    assert_eq!(store.room_members(&extra).await.expect("members of new room"), [member(&conn)]);

    store.delete_connection(&conn.connection_id).await.expect("cleanup");
}

pub async fn delete_connection_removes_every_membership_and_is_idempotent(store: &dyn Store) {
    let user = user("delete");
    let conn = connection(&user);
    let (a, b, c) = (room("topic"), room("booking"), room("visit"));
    store.put_connection(&conn, &[a.clone(), b.clone()]).await.expect("put connection");
    store.join_room(&conn, &c).await.expect("join");

    let removed = store.delete_connection(&conn.connection_id).await.expect("delete").expect("connection existed");

    assert_eq!(removed.record, conn);
    // The port promises no order for the rooms left.
    assert_eq!(sorted(removed.rooms), sorted(vec![a.clone(), b, c]));
    assert!(removed.last_of_user);
    assert!(store.get_connection(&conn.connection_id).await.expect("get").is_none());
    assert!(store.connection_rooms(&conn.connection_id).await.expect("rooms").is_empty());
    assert!(store.room_members(&a).await.expect("members").is_empty());
    assert!(store.user_connections(&user).await.expect("user connections").is_empty());
    assert!(!store.all_connections().await.expect("all").contains(&conn.connection_id));
    assert!(store.delete_connection(&conn.connection_id).await.expect("delete again").is_none());
}

pub async fn join_room_of_an_unknown_connection_is_not_found(store: &dyn Store) {
    // A membership must not outlive its connection: it would keep the room active and in fan-out forever.
    let ghost = connection(&user("ghost"));
    let topic = room("topic");

    let joined = store.join_room(&ghost, &topic).await;

    assert!(matches!(joined, Err(StoreError::NotFound)), "{joined:?}");
    assert!(store.room_members(&topic).await.expect("members").is_empty());
    assert!(store.connection_rooms(&ghost.connection_id).await.expect("rooms").is_empty());
    assert!(store.get_connection(&ghost.connection_id).await.expect("get").is_none());
}

pub async fn last_connection_of_user_is_reported(store: &dyn Store) {
    let user = user("last");
    let (first, second) = (connection(&user), connection(&user));
    let own = RoomName::for_user(&user);
    store.put_connection(&first, std::slice::from_ref(&own)).await.expect("put first");
    store.put_connection(&second, std::slice::from_ref(&own)).await.expect("put second");

    assert_eq!(
        by_connection(store.user_connections(&user).await.expect("user connections")),
        by_connection(vec![first.clone(), second.clone()])
    );
    assert_eq!(sorted(store.room_members(&own).await.expect("members")), sorted(vec![member(&first), member(&second)]));

    let removed = store.delete_connection(&first.connection_id).await.expect("delete first").expect("existed");
    assert!(!removed.last_of_user, "the user still has a connection");
    let removed = store.delete_connection(&second.connection_id).await.expect("delete second").expect("existed");
    assert!(removed.last_of_user, "the user is now offline");
}

pub async fn room_members_lists_every_page(store: &dyn Store) {
    // 300 members: enough that an adapter which reads only the first page of a paginated query, or caps its page
    // size, comes up short.
    let crowd = room("topic");
    let users: Vec<UserId> = (0..7).map(|_| user("crowd")).collect();
    let conns: Vec<ConnectionRecord> = (0..300).map(|i| connection(&users[i % users.len()])).collect();
    for chunk in conns.chunks(25) {
        let puts = chunk.iter().map(|conn| store.put_connection(conn, std::slice::from_ref(&crowd)));
        for result in join_all(puts).await {
            result.expect("put connection");
        }
    }

    let members = store.room_members(&crowd).await.expect("members");

    assert_eq!(members.len(), conns.len());
    assert_eq!(sorted(members), sorted(conns.iter().map(member).collect()));
    for chunk in conns.chunks(25) {
        for result in join_all(chunk.iter().map(|conn| store.delete_connection(&conn.connection_id))).await {
            assert!(result.expect("delete").is_some());
        }
    }
    assert!(store.room_members(&crowd).await.expect("members after cleanup").is_empty());
}

// ---- grants and participation -----------------------------------------------------------------------------------

pub async fn grants_and_revokes(store: &dyn Store) {
    let booking = room("booking");
    let (u1, u2, u3) = (user("grant"), user("grant"), user("grant"));

    store.grant(&booking, &[u1.clone(), u2.clone()]).await.expect("grant");
    store.grant(&booking, std::slice::from_ref(&u1)).await.expect("granting twice is harmless");

    assert!(store.is_granted(&booking, &u1).await.expect("is granted"));
    assert!(!store.is_granted(&booking, &u3).await.expect("is granted to a stranger"));
    assert!(!store.is_granted(&room("booking"), &u1).await.expect("is granted elsewhere"));
    assert_eq!(sorted(store.room_grants(&booking).await.expect("grants")), sorted(vec![u1.clone(), u2.clone()]));

    store.revoke(&booking, &[u1.clone(), u3]).await.expect("revoking a missing grant is harmless");

    assert!(!store.is_granted(&booking, &u1).await.expect("is granted after revoke"));
    assert_eq!(store.room_grants(&booking).await.expect("grants after revoke"), [u2]);
    assert!(store.room_grants(&room("booking")).await.expect("grants of an unknown room").is_empty());
}

pub async fn participation_and_user_rooms_include_grants(store: &dyn Store) {
    let (me, other) = (user("rooms"), user("rooms"));
    let (joined, granted, foreign) = (room("topic"), room("booking"), room("topic"));

    store.record_participation(&me, &joined).await.expect("participation");
    store.record_participation(&me, &joined).await.expect("recording twice is harmless");
    store.grant(&granted, std::slice::from_ref(&me)).await.expect("grant");
    store.record_participation(&other, &foreign).await.expect("other user's participation");

    assert_eq!(sorted(store.user_rooms(&me).await.expect("rooms")), sorted(vec![joined.clone(), granted]));
    assert_eq!(store.user_rooms(&other).await.expect("other rooms"), [foreign]);
    assert!(store.user_rooms(&user("rooms")).await.expect("rooms of a stranger").is_empty());
    // Intentionally unasserted: whether a revoked grant still lists the room among the user's conversations. An
    // adapter may record participation when it grants, and the port leaves that open.
}

// ---- room history -----------------------------------------------------------------------------------------------

pub async fn append_event_allocates_gapless_seq(store: &dyn Store) {
    let (chat, other) = (room("topic"), room("topic"));
    let sender = user("sender");

    let mut appended = Vec::new();
    for i in 0..3 {
        let new = new_event(&chat, Some(&sender), None, json!({ "text": format!("hello {i}") }));
        let result = store.append_event(new.clone()).await.expect("append");
        assert!(!result.duplicate);
        assert_eq!(result.event, stored(new, i + 1));
        appended.push(result.event);
    }
    let first_elsewhere = store.append_event(new_event(&other, None, None, json!({}))).await.expect("append other");

    assert_eq!(first_elsewhere.event.seq, 1, "each room counts on its own");
    assert_eq!(store.history(&chat, HistoryQuery::Latest { limit: 10 }).await.expect("history"), appended);
}

pub async fn append_message_records_participation_and_counts_each_message_once(store: &dyn Store) {
    let chat = room("topic");
    let sender = user("sender");
    let before = store.stats().await.expect("stats before").total_messages;
    // What the chat handler does with the answer: a new message the store did not count, it counts itself.
    let count_as_the_caller_does = |appended: Appended| async move {
        if !appended.duplicate && !appended.counted {
            store.count_messages(1).await.expect("count");
        }
        appended
    };

    let message = new_event(&chat, Some(&sender), Some("m1"), json!({ "text": "hi" }));
    let first = count_as_the_caller_does(store.append_message(message.clone()).await.expect("append")).await;
    assert!(!first.duplicate);
    assert_eq!(first.event, stored(message.clone(), 1));
    assert_eq!(store.user_rooms(&sender).await.expect("rooms"), std::slice::from_ref(&chat), "the sender takes part");

    let retry = count_as_the_caller_does(store.append_message(message).await.expect("append retry")).await;
    assert!(retry.duplicate, "same sender and client_msg_id is a retry");
    assert_eq!(retry.event, first.event);

    let second = new_event(&chat, Some(&sender), None, json!({ "text": "again" }));
    let second = count_as_the_caller_does(store.append_message(second).await.expect("second append")).await;
    assert_eq!(second.event.seq, 2, "a duplicate allocates no sequence number");
    assert_eq!(
        store.history(&chat, HistoryQuery::Latest { limit: 10 }).await.expect("history"),
        [first.event, second.event]
    );
    assert_eq!(store.user_rooms(&sender).await.expect("rooms again"), [chat], "participation is recorded once");
    let after = store.stats().await.expect("stats after").total_messages;
    assert_eq!(after, before + 2, "two messages, the retry not counted");
}

pub async fn append_event_is_idempotent_per_client_msg_id(store: &dyn Store) {
    let chat = room("topic");
    let (alice, bob) = (user("alice"), user("bob"));
    let first = store
        .append_event(new_event(&chat, Some(&alice), Some("m1"), json!({ "text": "once" })))
        .await
        .expect("append");

    let retry = store
        .append_event(new_event(&chat, Some(&alice), Some("m1"), json!({ "text": "retried" })))
        .await
        .expect("append retry");
    assert!(retry.duplicate, "same sender and client_msg_id is a retry");
    assert_eq!(retry.event, first.event, "a retry returns the first event");

    let from_bob = store.append_event(new_event(&chat, Some(&bob), Some("m1"), json!({}))).await.expect("append bob");
    assert!(!from_bob.duplicate, "the same client_msg_id from another sender is a new message");
    assert_eq!(from_bob.event.seq, 2, "a duplicate allocates no sequence number");

    let elsewhere = store.append_event(new_event(&room("topic"), Some(&alice), Some("m1"), json!({}))).await;
    assert!(!elsewhere.expect("append in another room").duplicate, "client_msg_id is scoped to the room");

    // Without a sender (a platform emit) the id is scoped to the room alone, apart from every sender's ids.
    let emitted = store.append_event(new_event(&chat, None, Some("m1"), json!({}))).await.expect("emit");
    assert!(!emitted.duplicate, "no sender is a scope of its own");
    let emitted_again = store.append_event(new_event(&chat, None, Some("m1"), json!({}))).await.expect("emit retry");
    assert!(emitted_again.duplicate, "a retried emit stores once");
    assert_eq!(emitted_again.event, emitted.event);
    let plain = store.append_event(new_event(&chat, Some(&alice), None, json!({}))).await.expect("no client id");
    assert!(!plain.duplicate);

    let seqs: Vec<u64> = store
        .history(&chat, HistoryQuery::Latest { limit: 10 })
        .await
        .expect("history")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

pub async fn concurrent_appends_get_distinct_seqs(store: &dyn Store) {
    let chat = room("topic");
    let sender = user("racer");
    let appends = (0..20).map(|i| store.append_event(new_event(&chat, Some(&sender), None, json!({ "i": i }))));

    let mut seqs: Vec<u64> = join_all(appends).await.into_iter().map(|r| r.expect("append").event.seq).collect();
    seqs.sort_unstable();

    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
    let history = store.history(&chat, HistoryQuery::Latest { limit: 50 }).await.expect("history");
    assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=20).collect::<Vec<u64>>());

    // Racing retries of one message store it exactly once.
    let retried = room("topic");
    let retries = (0..10).map(|_| store.append_event(new_event(&retried, Some(&sender), Some("same"), json!({}))));
    let results: Vec<_> = join_all(retries).await.into_iter().map(|r| r.expect("append retry")).collect();
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 1, "exactly one retry is the original");
    assert!(results.iter().all(|r| r.event == results[0].event), "every retry returns the same event");
    assert_eq!(results[0].event.seq, 1);
}

pub async fn history_pages_latest_before_after(store: &dyn Store) {
    let chat = room("topic");
    for i in 1..=10 {
        store.append_event(new_event(&chat, None, None, json!({ "n": i }))).await.expect("append");
    }
    let seqs = |query: HistoryQuery| {
        let chat = chat.clone();
        async move { store.history(&chat, query).await.expect("history").iter().map(|e| e.seq).collect::<Vec<u64>>() }
    };

    assert_eq!(seqs(HistoryQuery::Latest { limit: 3 }).await, [8, 9, 10]);
    assert_eq!(seqs(HistoryQuery::Latest { limit: 100 }).await, (1..=10).collect::<Vec<u64>>());
    assert_eq!(seqs(HistoryQuery::Before { before: 8, limit: 3 }).await, [5, 6, 7]);
    assert_eq!(seqs(HistoryQuery::Before { before: 3, limit: 5 }).await, [1, 2]);
    assert!(seqs(HistoryQuery::Before { before: 1, limit: 5 }).await.is_empty());
    assert_eq!(seqs(HistoryQuery::After { after: 7, limit: 2 }).await, [8, 9]);
    assert_eq!(seqs(HistoryQuery::After { after: 0, limit: 3 }).await, [1, 2, 3]);
    assert!(seqs(HistoryQuery::After { after: 10, limit: 5 }).await.is_empty());
    let events = store.history(&chat, HistoryQuery::Latest { limit: 1 }).await.expect("latest event");
    assert_eq!(events[0].data, json!({ "n": 10 }));
    assert!(store.history(&room("topic"), HistoryQuery::Latest { limit: 10 }).await.expect("empty room").is_empty());
}

pub async fn get_event_by_id(store: &dyn Store) {
    let chat = room("topic");
    let sender = user("getter");
    store.append_event(new_event(&chat, None, None, json!({}))).await.expect("append first");
    let wanted = store
        .append_event(new_event(&chat, Some(&sender), Some("c1"), json!({ "text": "find me", "n": [1, 2] })))
        .await
        .expect("append");

    assert_eq!(store.get_event(&chat, &wanted.event.id).await.expect("get"), Some(wanted.event.clone()));
    assert!(store.get_event(&room("topic"), &wanted.event.id).await.expect("get in another room").is_none());
    assert!(store.get_event(&chat, &event_id()).await.expect("get unknown").is_none());
}

pub async fn count_unread_excludes_own_and_read(store: &dyn Store) {
    let chat = room("topic");
    let (alice, bob) = (user("alice"), user("bob"));
    for sender in [Some(&alice), Some(&bob), None, Some(&bob)] {
        store.append_event(new_event(&chat, sender, None, json!({}))).await.expect("append");
    }

    assert_eq!(store.count_unread(&chat, 0, &alice).await.expect("alice unread"), 3, "events without sender count");
    assert_eq!(store.count_unread(&chat, 0, &bob).await.expect("bob unread"), 2);
    assert_eq!(store.count_unread(&chat, 2, &alice).await.expect("alice after 2"), 2);
    assert_eq!(store.count_unread(&chat, 4, &alice).await.expect("alice caught up"), 0);
    assert_eq!(store.count_unread(&room("topic"), 0, &alice).await.expect("empty room"), 0);
}

pub async fn read_watermark_never_goes_down(store: &dyn Store) {
    let (chat, other) = (room("topic"), room("topic"));
    let (reader, stranger) = (user("reader"), user("reader"));

    assert_eq!(store.read_watermark(&reader, &chat).await.expect("initial"), 0);
    assert_eq!(store.mark_read(&reader, &chat, 5).await.expect("mark 5"), 5);
    assert_eq!(store.mark_read(&reader, &chat, 3).await.expect("mark 3"), 5, "an older mark does not lower it");
    assert_eq!(store.read_watermark(&reader, &chat).await.expect("after lower mark"), 5);
    assert_eq!(store.mark_read(&reader, &chat, 7).await.expect("mark 7"), 7);
    assert_eq!(store.read_watermark(&reader, &chat).await.expect("after raise"), 7);
    assert_eq!(store.read_watermark(&reader, &other).await.expect("other room"), 0);
    assert_eq!(store.read_watermark(&stranger, &chat).await.expect("other user"), 0);
}

// ---- idempotency ------------------------------------------------------------------------------------------------

pub async fn idempotency_claim_complete_release(store: &dyn Store) {
    let (done, failed, short, instant) = (key(), key(), key(), key());
    let answer = json!({ "status": 202, "body": { "delivered": 3 } });

    assert_eq!(store.claim_idempotency(&done, 60).await.expect("claim"), IdempotencyClaim::Claimed);
    assert_eq!(store.claim_idempotency(&done, 60).await.expect("claim again"), IdempotencyClaim::InFlight);
    store.complete_idempotency(&done, &answer, 60).await.expect("complete");
    assert_eq!(store.claim_idempotency(&done, 60).await.expect("repeat"), IdempotencyClaim::Completed(answer.clone()));
    // A late release from a confused caller must not throw the stored answer away.
    store.release_idempotency(&done).await.expect("release after completion");
    assert_eq!(store.claim_idempotency(&done, 60).await.expect("repeat"), IdempotencyClaim::Completed(answer.clone()));
    let unclaimed = store.complete_idempotency(&key(), &answer, 60).await;
    assert!(matches!(unclaimed, Err(StoreError::NotFound)), "completing an unclaimed key: {unclaimed:?}");

    assert_eq!(store.claim_idempotency(&failed, 60).await.expect("claim"), IdempotencyClaim::Claimed);
    store.release_idempotency(&failed).await.expect("release");
    store.release_idempotency(&failed).await.expect("releasing twice is harmless");
    store.release_idempotency(&key()).await.expect("releasing an unknown key is harmless");
    assert_eq!(store.claim_idempotency(&failed, 60).await.expect("retry"), IdempotencyClaim::Claimed);

    // A key is free again from its expiry instant on. Adapters that keep expiry in whole seconds must still treat
    // the key as expired once that second has begun, which is what lets a 1 s ttl pass within this short sleep.
    assert_eq!(store.claim_idempotency(&instant, 0).await.expect("claim"), IdempotencyClaim::Claimed);
    store.complete_idempotency(&instant, &json!("stale"), 0).await.expect("complete");
    assert_eq!(store.claim_idempotency(&instant, 60).await.expect("reclaim"), IdempotencyClaim::Claimed);
    assert_eq!(store.claim_idempotency(&short, 1).await.expect("claim"), IdempotencyClaim::Claimed);
    assert_eq!(store.claim_idempotency(&short, 1).await.expect("claim again"), IdempotencyClaim::InFlight);
    // A completed answer lives for the ttl given at completion, not the claim's lease.
    let (leased, kept) = (key(), json!("kept"));
    assert_eq!(store.claim_idempotency(&leased, 1).await.expect("claim"), IdempotencyClaim::Claimed);
    store.complete_idempotency(&leased, &kept, 60).await.expect("complete");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(store.claim_idempotency(&short, 60).await.expect("after expiry"), IdempotencyClaim::Claimed);
    assert_eq!(store.claim_idempotency(&leased, 60).await.expect("after lease"), IdempotencyClaim::Completed(kept));
}

// ---- stats ------------------------------------------------------------------------------------------------------

/// Needs the store to itself while it runs: see the module documentation.
pub async fn stats_count_connections_rooms_messages(store: &dyn Store) {
    let user = user("stats");
    let (first, second) = (connection(&user), connection(&user));
    let (shared, only_first, joined) = (room("topic"), room("topic"), room("topic"));
    let before = store.stats().await.expect("stats before");

    store.put_connection(&first, &[shared.clone(), only_first]).await.expect("put first");
    store.put_connection(&second, std::slice::from_ref(&shared)).await.expect("put second");
    store.put_connection(&second, std::slice::from_ref(&shared)).await.expect("re-put second");
    store.join_room(&second, &joined).await.expect("join");
    store.count_messages(3).await.expect("count 3");
    store.count_messages(2).await.expect("count 2");

    let during = store.stats().await.expect("stats during");
    assert_eq!(during.active_connections, before.active_connections + 2);
    assert_eq!(during.active_rooms, before.active_rooms + 3, "rooms with two members count once");
    assert_eq!(during.total_connections, before.total_connections + 2, "a re-put is the same connection");
    assert_eq!(during.total_messages, before.total_messages + 5);

    store.delete_connection(&first.connection_id).await.expect("delete first");
    let after_first = store.stats().await.expect("stats after first delete");
    assert_eq!(after_first.active_connections, before.active_connections + 1);
    assert_eq!(after_first.active_rooms, before.active_rooms + 2, "a room with no member left is not active");
    assert_eq!(after_first.total_connections, during.total_connections, "totals never go down");

    store.delete_connection(&second.connection_id).await.expect("delete second");
    let after = store.stats().await.expect("stats after");
    assert_eq!(after.active_connections, before.active_connections);
    assert_eq!(after.active_rooms, before.active_rooms);
    assert_eq!(after.total_connections, before.total_connections + 2);
    assert_eq!(after.total_messages, before.total_messages + 5);
}

// ---- presence ---------------------------------------------------------------------------------------------------

pub async fn presence_set_and_get(store: &dyn Store) {
    let (u1, u2, unknown) = (user("presence"), user("presence"), user("presence"));
    let p1 = PresenceRecord {
        user_id: u1.clone(),
        status: PresenceStatus::Online,
        custom_status: Some("at the front desk".to_owned()),
        last_seen: now(),
    };
    let p2 =
        PresenceRecord { user_id: u2.clone(), status: PresenceStatus::Busy, custom_status: None, last_seen: now() };
    store.set_presence(&p1).await.expect("set p1");
    store.set_presence(&p2).await.expect("set p2");

    let found = store.get_presence(&[u1.clone(), u2.clone(), unknown.clone()]).await.expect("get");
    assert_eq!(by_user(found), by_user(vec![p1.clone(), p2.clone()]), "unknown users are absent");

    let away = PresenceRecord {
        status: PresenceStatus::InCall,
        custom_status: None,
        last_seen: now() + Duration::seconds(5),
        ..p1
    };
    store.set_presence(&away).await.expect("overwrite p1");
    assert_eq!(store.get_presence(std::slice::from_ref(&u1)).await.expect("get p1"), [away]);
    assert!(store.get_presence(&[]).await.expect("get nobody").is_empty());
    assert!(store.get_presence(&[unknown]).await.expect("get unknown").is_empty());
}

pub async fn user_presence_reads_connections_status_and_subscribers(store: &dyn Store) {
    let (watched, watcher) = (user("watched"), user("watcher"));
    assert_eq!(store.user_presence(&watched).await.expect("nothing yet"), UserPresence::default());

    let (first, second) = (connection(&watched), connection(&watched));
    store.put_connection(&first, &[RoomName::for_user(&watched)]).await.expect("put first");
    store.put_connection(&second, &[]).await.expect("put second");
    let stored = PresenceRecord {
        user_id: watched.clone(),
        status: PresenceStatus::Busy,
        custom_status: None,
        last_seen: now(),
    };
    store.set_presence(&stored).await.expect("set presence");
    let subscriber = connection(&watcher);
    store.put_connection(&subscriber, &[]).await.expect("put subscriber");
    let room = RoomName::presence_of(&watched);
    assert!(store.join_room(&subscriber, &room).await.expect("subscribe"));

    let found = store.user_presence(&watched).await.expect("user presence");
    assert_eq!(by_connection(found.connections), by_connection(vec![first.clone(), second.clone()]));
    assert_eq!(found.stored, Some(stored));
    assert_eq!(found.subscribers, [member(&subscriber)]);
    // A presence room is a room like any other for every other operation.
    assert_eq!(store.room_members(&room).await.expect("members"), [member(&subscriber)]);
    let page = store.room_members_page(&room, None, 10).await.expect("page");
    assert_eq!(page.items, [member(&subscriber)]);
    assert_eq!(store.room_member_count(&room).await.expect("count"), 1);
    assert_eq!(store.connection_rooms(&subscriber.connection_id).await.expect("rooms"), std::slice::from_ref(&room));
    assert!(store.leave_room(&subscriber.connection_id, &room).await.expect("unsubscribe"));
    assert!(store.user_presence(&watched).await.expect("after leave").subscribers.is_empty());
    assert!(store.join_room(&subscriber, &room).await.expect("subscribe again"));
    let removed = store.delete_connection(&subscriber.connection_id).await.expect("delete").expect("existed");
    assert_eq!(removed.rooms, std::slice::from_ref(&room));
    assert!(store.room_members(&room).await.expect("members after delete").is_empty());
    assert_eq!(store.room_member_count(&room).await.expect("count after delete"), 0);

    for conn in [first, second] {
        store.delete_connection(&conn.connection_id).await.expect("cleanup");
    }
}

pub async fn last_disconnect_stamps_presence_and_names_subscribers(store: &dyn Store) {
    // With and without the user's own room: an adapter may decide "last" from that room's member count.
    for own_room in [true, false] {
        let (user, watcher) = (user("leaving"), user("watcher"));
        let rooms = if own_room { vec![RoomName::for_user(&user)] } else { Vec::new() };
        let (first, second) = (connection(&user), connection(&user));
        store.put_connection(&first, &rooms).await.expect("put first");
        store.put_connection(&second, &rooms).await.expect("put second");
        let subscriber = connection(&watcher);
        store.put_connection(&subscriber, &[]).await.expect("put subscriber");
        store.join_room(&subscriber, &RoomName::presence_of(&user)).await.expect("subscribe");
        let away = PresenceRecord {
            user_id: user.clone(),
            status: PresenceStatus::Away,
            custom_status: Some("lunch".to_owned()),
            last_seen: now() - Duration::hours(1),
        };
        store.set_presence(&away).await.expect("set away");

        let removed = store.delete_connection(&first.connection_id).await.expect("delete first").expect("existed");
        assert!(!removed.last_of_user && removed.offline.is_none(), "{removed:?}");
        assert_eq!(store.get_presence(std::slice::from_ref(&user)).await.expect("get"), std::slice::from_ref(&away));

        let before = now();
        let removed = store.delete_connection(&second.connection_id).await.expect("delete second").expect("existed");
        assert!(removed.last_of_user);
        let offline = removed.offline.expect("the last connection reports the offline presence");
        assert_eq!(offline.subscribers, [member(&subscriber)]);
        assert_eq!(
            (offline.presence.status, offline.presence.custom_status.as_deref()),
            (PresenceStatus::Away, Some("lunch"))
        );
        assert!(offline.presence.last_seen >= before, "last seen is the disconnect: {offline:?}");
        assert_eq!(
            store.get_presence(std::slice::from_ref(&user)).await.expect("get"),
            std::slice::from_ref(&offline.presence)
        );

        // A user without connections is in no call, and one who never chose a status is online when back.
        let third = connection(&user);
        store.put_connection(&third, &rooms).await.expect("put third");
        store.set_presence(&PresenceRecord { status: PresenceStatus::InCall, ..away }).await.expect("in call");
        let removed = store.delete_connection(&third.connection_id).await.expect("delete third").expect("existed");
        assert_eq!(removed.offline.expect("last").presence.status, PresenceStatus::Online);
        let newcomer = connection(&self::user("newcomer"));
        let rooms = if own_room { vec![RoomName::for_user(&newcomer.user_id)] } else { Vec::new() };
        store.put_connection(&newcomer, &rooms).await.expect("put newcomer");
        let removed =
            store.delete_connection(&newcomer.connection_id).await.expect("delete newcomer").expect("existed");
        let offline = removed.offline.expect("last");
        assert_eq!((offline.presence.status, offline.presence.custom_status), (PresenceStatus::Online, None));
        assert!(offline.subscribers.is_empty());

        store.delete_connection(&subscriber.connection_id).await.expect("cleanup");
    }
}

pub async fn join_room_within_refuses_past_the_room_limit(store: &dyn Store) {
    let conn = connection(&user("limited"));
    let (a, b, c) = (room("topic"), room("topic"), room("topic"));
    store.put_connection(&conn, std::slice::from_ref(&a)).await.expect("put");

    assert_eq!(store.join_room_within(&conn, &b, 2).await.expect("second room"), JoinOutcome::Joined);
    assert_eq!(store.join_room_within(&conn, &c, 2).await.expect("third room"), JoinOutcome::RoomLimit);
    assert!(store.room_members(&c).await.expect("members").is_empty(), "a refused join writes nothing");
    assert_eq!(sorted(store.connection_rooms(&conn.connection_id).await.expect("rooms")), sorted(vec![a, b.clone()]));
    assert_eq!(store.join_room_within(&conn, &b, 2).await.expect("again"), JoinOutcome::AlreadyMember);
    assert!(store.leave_room(&conn.connection_id, &b).await.expect("leave"));
    assert_eq!(store.join_room_within(&conn, &c, 2).await.expect("room freed"), JoinOutcome::Joined);
    let ghost = store.join_room_within(&connection(&user("ghost")), &c, 2).await;
    assert!(matches!(ghost, Err(StoreError::NotFound)), "{ghost:?}");

    store.delete_connection(&conn.connection_id).await.expect("cleanup");
}

pub async fn room_state_has_members_and_latest_seq(store: &dyn Store) {
    let topic = room("topic");
    assert_eq!(store.room_state(&topic).await.expect("empty room"), RoomState::default());
    let (one, two) = (connection(&user("state")), connection(&user("state")));
    for conn in [&one, &two] {
        store.put_connection(conn, std::slice::from_ref(&topic)).await.expect("put");
    }
    for i in 0..3 {
        store.append_event(new_event(&topic, None, None, json!({ "i": i }))).await.expect("append");
    }

    let state = store.room_state(&topic).await.expect("room state");
    assert_eq!(sorted(state.members), sorted(vec![member(&one), member(&two)]));
    assert_eq!(state.latest_seq, 3);

    for conn in [one, two] {
        store.delete_connection(&conn.connection_id).await.expect("cleanup");
    }
}

// ---- notifications ----------------------------------------------------------------------------------------------

pub async fn notifications_list_page_filter_and_mark_read(store: &dyn Store) {
    let (me, other) = (user("notified"), user("notified"));
    let mine: Vec<Notification> = (0..5).map(|i| notification(&me, i)).collect();
    let theirs = notification(&other, 0);
    for n in mine.iter().chain([&theirs]) {
        assert!(store.add_notification(n).await.expect("add"), "a new notification is stored");
    }
    assert!(!store.add_notification(&mine[0]).await.expect("add again"), "the same id again changes nothing");
    // Newest first is descending id order; sorting here keeps the case independent of id generation.
    let mut newest_first = mine.clone();
    newest_first.sort_by(|a, b| b.id.cmp(&a.id));
    let list = |unread_only: bool, before_id: Option<&str>, limit: u32| {
        let query = NotificationQuery { unread_only, before_id: before_id.map(str::to_owned), limit };
        let me = me.clone();
        async move { store.list_notifications(&me, &query).await.expect("list") }
    };

    assert_eq!(list(false, None, 10).await, newest_first);
    let page1 = list(false, None, 2).await;
    assert_eq!(page1, newest_first[0..2]);
    let page2 = list(false, Some(&page1[1].id), 2).await;
    assert_eq!(page2, newest_first[2..4]);
    let page3 = list(false, Some(&page2[1].id), 2).await;
    assert_eq!(page3, newest_first[4..]);
    assert!(list(false, Some(&page3[0].id), 2).await.is_empty());
    assert_eq!(store.unread_notifications(&me).await.expect("unread"), 5);

    let ids = NotificationSelector::Ids(vec![
        mine[0].id.clone(),
        mine[1].id.clone(),
        mine[1].id.clone(),
        theirs.id.clone(),
        event_id(),
    ]);
    assert_eq!(store.mark_notifications_read(&me, &ids).await.expect("mark ids"), 2, "other users' ids are ignored");
    assert_eq!(store.mark_notifications_read(&me, &ids).await.expect("mark ids again"), 0, "a retry changes nothing");
    assert_eq!(store.unread_notifications(&me).await.expect("unread after ids"), 3);
    assert_eq!(store.unread_notifications(&other).await.expect("other unread"), 1);

    let unread = list(true, None, 10).await;
    assert_eq!(unread.len(), 3);
    assert!(unread.iter().all(|n| !n.read));
    assert!(unread.iter().all(|n| n.id != mine[0].id && n.id != mine[1].id));
    let unread_page = list(true, Some(&unread[0].id), 1).await;
    assert_eq!(unread_page, unread[1..2]);

    assert_eq!(store.mark_notifications_read(&me, &NotificationSelector::All).await.expect("mark all"), 3);
    assert_eq!(store.mark_notifications_read(&me, &NotificationSelector::All).await.expect("mark all again"), 0);
    assert_eq!(store.unread_notifications(&me).await.expect("unread after all"), 0);
    assert!(list(false, None, 10).await.iter().all(|n| n.read));
    assert!(list(true, None, 10).await.is_empty());
    assert_eq!(store.unread_notifications(&other).await.expect("other still unread"), 1);
    assert_eq!(store.unread_notifications(&user("notified")).await.expect("stranger"), 0);
}

// ---- calls ------------------------------------------------------------------------------------------------------

pub async fn calls_transition_conditionally(store: &dyn Store) {
    let (caller, recipient) = (user("caller"), user("callee"));
    let raced = call(&caller, &recipient);
    store.create_call(&raced).await.expect("create");
    assert!(matches!(store.create_call(&raced).await, Err(StoreError::ConditionFailed)), "creating twice fails");
    assert_eq!(store.get_call(&raced.call_id).await.expect("get"), Some(raced.clone()));
    assert!(store.get_call(&event_id()).await.expect("get unknown").is_none());

    // Two answers race from Ringing: exactly one wins.
    let at = now();
    let accept = transition(&[CallState::Ringing], CallState::Accepted, at);
    let reject = transition(&[CallState::Ringing], CallState::Rejected, at);
    let (accepted, rejected) =
        futures::join!(store.transition_call(&raced.call_id, &accept), store.transition_call(&raced.call_id, &reject));
    match (accepted, rejected) {
        (Ok(call), Err(StoreError::ConditionFailed)) => {
            assert_eq!(call, CallRecord { state: CallState::Accepted, answered_at: Some(at), ..raced.clone() });
        }
        (Err(StoreError::ConditionFailed), Ok(call)) => {
            assert_eq!(call, CallRecord { state: CallState::Rejected, ended_at: Some(at), ..raced.clone() });
        }
        (a, r) => panic!("exactly one transition must win: accepted {a:?}, rejected {r:?}"),
    }

    let call = call(&caller, &recipient);
    store.create_call(&call).await.expect("create second");
    let (t1, t2, t3) = (now(), now() + Duration::seconds(2), now() + Duration::seconds(60));

    let accept = transition(&[CallState::Ringing], CallState::Accepted, t1);
    let answered = store.transition_call(&call.call_id, &accept).await.expect("accept");
    assert_eq!(answered, CallRecord { state: CallState::Accepted, answered_at: Some(t1), ..call.clone() });
    let start = transition(&[CallState::Accepted], CallState::InProgress, t2);
    let talking = store.transition_call(&call.call_id, &start).await.expect("start");
    assert_eq!(talking, CallRecord { state: CallState::InProgress, ..answered.clone() }, "answered_at is kept");
    let missed = store.transition_call(&call.call_id, &transition(&[CallState::Ringing], CallState::Missed, t2)).await;
    assert!(matches!(missed, Err(StoreError::ConditionFailed)), "{missed:?}");
    let ended = transition(&[CallState::Accepted, CallState::InProgress], CallState::Ended, t3);
    let ended = store.transition_call(&call.call_id, &ended).await.expect("end");
    assert_eq!(ended, CallRecord { state: CallState::Ended, ended_at: Some(t3), ..talking });
    assert_eq!(store.get_call(&call.call_id).await.expect("get ended"), Some(ended));

    let unknown = store.transition_call(&event_id(), &transition(&[CallState::Ringing], CallState::Accepted, t1)).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");

    // No `from` state is a condition no call meets, which still tells an unknown call from a known one.
    let nothing = transition(&[], CallState::Ended, t3);
    let known = store.transition_call(&call.call_id, &nothing).await;
    assert!(matches!(known, Err(StoreError::ConditionFailed)), "{known:?}");
    let unknown = store.transition_call(&event_id(), &nothing).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

// ---- builders ---------------------------------------------------------------------------------------------------

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Now, truncated to the millisecond precision every adapter keeps.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("the current time is representable")
}

// ---- token expiry, paging, member counts, rate limits ----------------------------------------------------------

pub async fn token_expiry_round_trips_and_extends(store: &dyn Store) {
    let conn = connection(&user("refresher"));
    store.put_connection(&conn, &[]).await.expect("put");
    assert_eq!(store.get_connection(&conn.connection_id).await.expect("get"), Some(conn.clone()));

    let later = now() + Duration::hours(3);
    assert!(store.set_token_expiry(&conn.connection_id, later).await.expect("extend"));

    let read = store.get_connection(&conn.connection_id).await.expect("get").expect("still there");
    assert_eq!(read.token_expires_at, Some(later));
    let listed = store.user_connections(&conn.user_id).await.expect("user connections");
    assert_eq!(listed.iter().map(|c| c.token_expires_at).collect::<Vec<_>>(), [Some(later)], "listings see it too");
    let unknown = store.set_token_expiry(&connection_id(), later).await.expect("unknown connection");
    assert!(!unknown, "an unknown connection is false, not created");
    let without = ConnectionRecord { token_expires_at: None, ..connection(&user("no-exp")) };
    store.put_connection(&without, &[]).await.expect("put without exp");
    let read = store.get_connection(&without.connection_id).await.expect("get").expect("there");
    assert_eq!(read.token_expires_at, None);
}

/// Follows every page of a listing and returns the items in order.
async fn all_pages<T, F>(limit: u32, mut page: impl FnMut(Option<String>) -> F) -> Vec<T>
where
    F: std::future::Future<Output = StoreResult<super::Page<T>>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let next = page(cursor.take()).await.expect("page");
        assert!(next.items.len() <= limit as usize, "a page holds at most `limit` items");
        assert!(!next.items.is_empty() || items.is_empty(), "no empty page after the first");
        items.extend(next.items);
        match next.next {
            Some(c) => cursor = Some(c),
            None => return items,
        }
    }
}

pub async fn room_members_page_through_every_member_once(store: &dyn Store) {
    let lobby = room("topic");
    let mut expected = Vec::new();
    for i in 0..7 {
        let conn = connection(&user(&format!("member{i}")));
        store.put_connection(&conn, std::slice::from_ref(&lobby)).await.expect("put");
        expected.push(member(&conn));
    }
    expected.sort_by(|a, b| a.connection_id.as_str().cmp(b.connection_id.as_str()));

    let lobby_ref = &lobby;
    let paged =
        all_pages(3, |after| async move { store.room_members_page(lobby_ref, after.as_deref(), 3).await }).await;

    assert_eq!(paged, expected, "every member once, in connection id order");
    let exact = store.room_members_page(&lobby, None, 7).await.expect("one page");
    assert_eq!((exact.items.len(), exact.next), (7, None), "a page that ends the listing has no cursor");
    let empty = store.room_members_page(&room("topic"), None, 3).await.expect("empty room");
    assert_eq!((empty.items, empty.next), (Vec::new(), None));
}

pub async fn user_rooms_page_through_grants_and_participation_once(store: &dyn Store) {
    let someone = user("pager");
    let mut expected = Vec::new();
    for i in 0..4 {
        let granted = room("booking");
        store.grant(&granted, std::slice::from_ref(&someone)).await.expect("grant");
        expected.push(granted.clone());
        if i % 2 == 0 {
            // Granted and joined: still listed once.
            store.record_participation(&someone, &granted).await.expect("participate");
        }
        let joined = room("topic");
        store.record_participation(&someone, &joined).await.expect("participate");
        expected.push(joined);
    }
    expected.sort();

    let someone_ref = &someone;
    let paged =
        all_pages(3, |after| async move { store.user_rooms_page(someone_ref, after.as_deref(), 3).await }).await;

    assert_eq!(paged, expected, "every room once, in name order");
    assert_eq!(paged, store.user_rooms(&someone).await.expect("user rooms"), "the same rooms as the full listing");
}

pub async fn a_cursor_from_elsewhere_is_invalid(store: &dyn Store) {
    let lobby = room("topic");
    let someone = user("cursor");
    for _ in 0..2 {
        store.record_participation(&someone, &room("topic")).await.expect("participate");
    }
    let rooms_cursor = store.user_rooms_page(&someone, None, 1).await.expect("page").next.expect("a second page");

    let garbage = store.room_members_page(&lobby, Some("not a cursor!"), 5).await;
    let foreign = store.room_members_page(&lobby, Some(&rooms_cursor), 5).await;

    assert!(matches!(garbage, Err(StoreError::InvalidCursor)), "{garbage:?}");
    assert!(matches!(foreign, Err(StoreError::InvalidCursor)), "a cursor of another listing: {foreign:?}");
    let active_garbage = store.active_rooms_page(Some("not a cursor!"), 5).await;
    let active_foreign = store.active_rooms_page(Some(&rooms_cursor), 5).await;
    assert!(matches!(active_garbage, Err(StoreError::InvalidCursor)), "{active_garbage:?}");
    assert!(matches!(active_foreign, Err(StoreError::InvalidCursor)), "{active_foreign:?}");
}

pub async fn room_member_count_follows_joins_and_leaves(store: &dyn Store) {
    let lobby = room("topic");
    let (a, b) = (connection(&user("counted")), connection(&user("counted")));
    assert_eq!(store.room_member_count(&lobby).await.expect("count"), 0);

    store.put_connection(&a, std::slice::from_ref(&lobby)).await.expect("put a");
    store.put_connection(&b, &[]).await.expect("put b");
    store.join_room(&b, &lobby).await.expect("join b");
    store.join_room(&b, &lobby).await.expect("join b again");
    assert_eq!(store.room_member_count(&lobby).await.expect("count"), 2, "a repeated join counts once");

    store.leave_room(&b.connection_id, &lobby).await.expect("leave b");
    store.delete_connection(&a.connection_id).await.expect("disconnect a");
    assert_eq!(store.room_member_count(&lobby).await.expect("count"), 0);
}

/// Every active room, read through pages of `limit`; panics on a room listed twice.
async fn all_active_rooms(store: &dyn Store, limit: u32) -> Vec<ActiveRoom> {
    let rooms = all_pages(limit, |after| async move { store.active_rooms_page(after.as_deref(), limit).await }).await;
    let mut seen = std::collections::BTreeSet::new();
    for active in &rooms {
        assert!(seen.insert(active.room.clone()), "{} listed twice", active.room);
    }
    rooms
}

fn find_active<'a>(rooms: &'a [ActiveRoom], room: &RoomName) -> Option<&'a ActiveRoom> {
    rooms.iter().find(|active| active.room == *room)
}

pub async fn active_rooms_list_counts_members_and_last_seq(store: &dyn Store) {
    let (busy, quiet, emptied) = (room("topic"), room("topic"), room("topic"));
    let (a, b) = (connection(&user("active")), connection(&user("active")));
    store.put_connection(&a, &[busy.clone(), emptied.clone()]).await.expect("put a");
    store.put_connection(&b, std::slice::from_ref(&busy)).await.expect("put b");
    store.join_room(&b, &quiet).await.expect("join quiet");
    for i in 0..3 {
        store.append_event(new_event(&busy, Some(&a.user_id), None, json!({ "i": i }))).await.expect("append");
    }
    store.leave_room(&a.connection_id, &emptied).await.expect("leave emptied");

    let rooms = all_active_rooms(store, 50).await;

    let listed = |room: &RoomName| find_active(&rooms, room).map(|r| (r.members, r.last_seq));
    assert_eq!(listed(&busy), Some((2, 3)), "two members, three events");
    assert_eq!(listed(&quiet), Some((1, 0)), "no event yet: last seq 0");
    assert_eq!(listed(&emptied), None, "a room whose last member left is not active");

    store.delete_connection(&a.connection_id).await.expect("disconnect a");
    store.delete_connection(&b.connection_id).await.expect("disconnect b");
    let rooms = all_active_rooms(store, 50).await;
    assert!(find_active(&rooms, &busy).is_none() && find_active(&rooms, &quiet).is_none(), "{rooms:?}");
}

pub async fn active_rooms_page_through_every_room_once(store: &dyn Store) {
    let conn = connection(&user("roomy"));
    let rooms: Vec<RoomName> = (0..7).map(|_| room("topic")).collect();
    store.put_connection(&conn, &rooms).await.expect("put");

    let paged = all_active_rooms(store, 3).await;
    let whole = all_active_rooms(store, 1000).await;

    for room in &rooms {
        assert_eq!(find_active(&paged, room).map(|r| r.members), Some(1), "{room} listed once with its member");
    }
    let names = |list: &[ActiveRoom]| list.iter().map(|r| r.room.clone()).collect::<Vec<_>>();
    assert_eq!(names(&paged), names(&whole), "small pages list the same rooms in the same order as one big page");
    store.delete_connection(&conn.connection_id).await.expect("cleanup");
}

pub async fn admit_frame_records_the_last_activity_of_admitted_frames(store: &dyn Store) {
    let conn = connection(&user("activity"));
    store.put_connection(&conn, &[]).await.expect("put");
    let limit = RateLimit { interval: std::time::Duration::from_secs(1), burst: 2 };
    let start = now();
    assert_eq!(store.connection_activity(&conn.connection_id).await.expect("activity"), None, "no frame yet");

    assert_eq!(store.admit_frame(&conn.connection_id, limit, start).await.expect("admit"), Admission::Allowed);
    let later = start + Duration::milliseconds(10);
    assert_eq!(store.admit_frame(&conn.connection_id, limit, later).await.expect("admit"), Admission::Allowed);
    assert_eq!(store.connection_activity(&conn.connection_id).await.expect("activity"), Some(later));

    let refused = store.admit_frame(&conn.connection_id, limit, later + Duration::milliseconds(10)).await;
    assert!(matches!(refused.expect("admit"), Admission::Limited { .. }), "the burst is spent");
    assert_eq!(
        store.connection_activity(&conn.connection_id).await.expect("activity"),
        Some(later),
        "a refused frame is not activity"
    );
    let refilled = later + Duration::seconds(2);
    assert_eq!(store.admit_frame(&conn.connection_id, limit, refilled).await.expect("admit"), Admission::Allowed);
    assert_eq!(store.connection_activity(&conn.connection_id).await.expect("activity"), Some(refilled));

    let unknown = connection_id();
    assert_eq!(store.admit_frame(&unknown, limit, start).await.expect("unknown"), Admission::Allowed);
    assert_eq!(store.connection_activity(&unknown).await.expect("activity"), None, "nothing recorded for it");
    assert!(store.get_connection(&unknown).await.expect("get").is_none(), "no record appears for it");
    store.delete_connection(&conn.connection_id).await.expect("cleanup");
    assert_eq!(store.connection_activity(&conn.connection_id).await.expect("activity"), None);
}

pub async fn admit_allows_a_burst_then_limits_with_retry_after(store: &dyn Store) {
    let bucket = format!("contract-limit-{}", suffix());
    let limit = RateLimit { interval: std::time::Duration::from_millis(1000), burst: 3 };
    let start = now();

    for i in 0..3 {
        let admitted = store.admit(&bucket, limit, start).await.expect("admit");
        assert_eq!(admitted, Admission::Allowed, "event {i} of the burst");
    }
    let limited = store.admit(&bucket, limit, start).await.expect("admit");
    assert_eq!(limited, Admission::Limited { retry_after: std::time::Duration::from_millis(1000) });
    let later = store.admit(&bucket, limit, start + Duration::milliseconds(400)).await.expect("admit");
    assert_eq!(later, Admission::Limited { retry_after: std::time::Duration::from_millis(600) }, "the wait shrinks");

    // One interval later one event fits again, and only one.
    let refilled = start + Duration::milliseconds(1000);
    assert_eq!(store.admit(&bucket, limit, refilled).await.expect("admit"), Admission::Allowed);
    assert!(matches!(store.admit(&bucket, limit, refilled).await.expect("admit"), Admission::Limited { .. }));

    // Long idle: the bucket is full again and the whole burst is allowed.
    let idle = start + Duration::seconds(60);
    for _ in 0..3 {
        assert_eq!(store.admit(&bucket, limit, idle).await.expect("admit"), Admission::Allowed);
    }
    let other = store.admit(&format!("{bucket}-other"), limit, start).await.expect("admit");
    assert_eq!(other, Admission::Allowed, "buckets are independent");
}

fn user(prefix: &str) -> UserId {
    UserId::parse(format!("{prefix}-{}", suffix())).expect("valid user id")
}

fn room(kind: &str) -> RoomName {
    RoomName::parse(format!("{kind}:{}", suffix())).expect("valid room name")
}

fn connection_id() -> ConnectionId {
    ConnectionId::parse(format!("c-{}", suffix())).expect("valid connection id")
}

fn event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn key() -> String {
    format!("contract-{}", suffix())
}

fn connection(user: &UserId) -> ConnectionRecord {
    let connected_at = now();
    ConnectionRecord {
        connection_id: connection_id(),
        user_id: user.clone(),
        role: Some("customer".to_owned()),
        name: Some("Contract Tester".to_owned()),
        email: None,
        connected_at,
        expires_at: connected_at + Duration::hours(2) + Duration::minutes(10),
        token_expires_at: Some(connected_at + Duration::hours(1)),
    }
}

fn member(connection: &ConnectionRecord) -> Member {
    Member { connection_id: connection.connection_id.clone(), user_id: connection.user_id.clone() }
}

fn new_event(
    room: &RoomName,
    sender: Option<&UserId>,
    client_msg_id: Option<&str>,
    data: serde_json::Value,
) -> NewRoomEvent {
    NewRoomEvent {
        room: room.clone(),
        id: event_id(),
        event: "message".to_owned(),
        data,
        sender: sender.cloned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        created_at: now(),
    }
}

fn stored(event: NewRoomEvent, seq: u64) -> RoomEvent {
    RoomEvent {
        room: event.room,
        seq,
        id: event.id,
        event: event.event,
        data: event.data,
        sender: event.sender,
        client_msg_id: event.client_msg_id,
        created_at: event.created_at,
    }
}

fn notification(user: &UserId, i: usize) -> Notification {
    Notification {
        id: event_id(),
        user_id: user.clone(),
        title: format!("Booking {i} confirmed"),
        message: "See you soon".to_owned(),
        kind: if i.is_multiple_of(2) { Some("booking".to_owned()) } else { None },
        data: json!({ "booking": i }),
        read: false,
        created_at: now(),
    }
}

fn call(caller: &UserId, recipient: &UserId) -> CallRecord {
    CallRecord {
        call_id: format!("call-{}", suffix()),
        caller: caller.clone(),
        recipient: recipient.clone(),
        call_type: CallType::Video,
        visit_id: Some(format!("visit-{}", suffix())),
        state: CallState::Ringing,
        created_at: now(),
        answered_at: None,
        ended_at: None,
    }
}

fn transition(from: &[CallState], to: CallState, at: DateTime<Utc>) -> CallTransition {
    CallTransition { from: from.to_vec(), to, at }
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

fn by_connection(mut records: Vec<ConnectionRecord>) -> Vec<ConnectionRecord> {
    records.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    records
}

fn by_user(mut records: Vec<PresenceRecord>) -> Vec<PresenceRecord> {
    records.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    records
}
