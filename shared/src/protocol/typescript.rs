//! The TypeScript declarations of the wire format, generated from the Rust types in [`super`] and
//! [`super::payloads`] with `ts-rs`, so the client SDK's types are never written a second time.
//!
//! [`render`] produces the whole `clients/js/src/generated/protocol.ts`: every payload type, plus `ActionMap`
//! (action name → request and ack data) and `EventMap` (event name → data). A test compares the checked-in file
//! with a fresh render and fails when they drift; `BELLHOP_UPDATE_BINDINGS=1 cargo test -p shared typescript`
//! rewrites it.

use ts_rs::{Config, TS};

use super::payloads::*;
use super::{Action, ErrorBody, ErrorCode, ErrorEnvelope, ServerFrame, events};
use crate::ids::{ConnectionId, UserId};
use crate::rooms::RoomName;

/// Where the generated file lives, relative to the workspace root.
pub const GENERATED_PATH: &str = "clients/js/src/generated/protocol.ts";

fn config() -> Config {
    // Sequence numbers and counts are far below 2^53, and clients expect plain numbers, not bigints.
    Config::new().with_large_int("number".to_owned())
}

fn name<T: TS>() -> String {
    T::name(&config())
}

/// The request and ack data type of each action. A `match`, so adding an action without its types fails to compile.
pub(crate) fn action_types(action: Action) -> (String, String) {
    let none = || "undefined".to_owned();
    match action {
        Action::Hello => (none(), name::<Connected>()),
        Action::AuthRefresh => (name::<AuthRefresh>(), name::<AuthRefreshed>()),
        Action::RoomJoin => (name::<RoomRequest>(), name::<Joined>()),
        Action::RoomLeave => (name::<RoomRequest>(), name::<Left>()),
        Action::RoomMembers => (name::<MembersRequest>(), name::<MembersPage>()),
        Action::MessageSend => (name::<SendMessage>(), name::<Sent>()),
        Action::MessageHistory => (name::<HistoryRequest>(), name::<HistoryPage>()),
        Action::MessageRead => (name::<ReadMessages>(), name::<MessagesRead>()),
        Action::TypingStart | Action::TypingStop => (name::<RoomRequest>(), name::<TypingAck>()),
        Action::PresenceSet => (name::<SetPresence>(), name::<Presence>()),
        Action::PresenceGet => (name::<UsersRequest>(), name::<Presences>()),
        Action::PresenceSubscribe => (name::<UsersRequest>(), name::<Subscribed>()),
        Action::PresenceUnsubscribe => (name::<UsersRequest>(), name::<Unsubscribed>()),
        Action::NotificationList => (name::<ListNotifications>(), name::<NotificationPage>()),
        Action::NotificationRead => (name::<ReadNotifications>(), name::<NotificationsRead>()),
        Action::NotificationUnreadCount => (none(), name::<UnreadCount>()),
        Action::CallInitiate => (name::<InitiateCall>(), name::<CallStarted>()),
        Action::CallAccept | Action::CallReject | Action::CallEnd => (name::<CallRef>(), name::<CallView>()),
        Action::CallSignal => (name::<SignalRequest>(), name::<SignalRelayed>()),
    }
}

/// Every event Bellhop itself sends, with its data type.
pub(crate) fn event_types() -> Vec<(&'static str, String)> {
    vec![
        (events::CONNECTED, name::<Connected>()),
        (events::AUTH_EXPIRING, name::<AuthExpiring>()),
        (events::ERROR, name::<ErrorBody>()),
        (events::MESSAGE_NEW, name::<ChatMessage>()),
        (events::MESSAGE_READ, name::<ReadReceipt>()),
        (events::ROOM_USER_JOINED, name::<UserJoined>()),
        (events::ROOM_USER_LEFT, name::<UserLeft>()),
        (events::TYPING_START, name::<Typing>()),
        (events::TYPING_STOP, name::<Typing>()),
        (events::PRESENCE_CHANGED, name::<Presence>()),
        (events::NOTIFICATION_NEW, name::<NewNotification>()),
        (events::CALL_INCOMING, name::<CallIncoming>()),
        (events::CALL_ACCEPTED, name::<CallAccepted>()),
        (events::CALL_REJECTED, name::<CallRejected>()),
        (events::CALL_ENDED, name::<CallEnded>()),
        (events::CALL_MISSED, name::<CallMissed>()),
        (events::CALL_SIGNAL, name::<CallSignal>()),
    ]
}

/// Every declared type, in a stable order (declarations may refer to later ones: TypeScript hoists types).
pub(crate) fn declarations() -> Vec<String> {
    let cfg = config();
    macro_rules! decls {
        ($($ty:ty),* $(,)?) => { vec![$(format!("export {}", <$ty>::decl(&cfg))),*] };
    }
    decls![
        serde_json::Value,
        UserId,
        ConnectionId,
        RoomName,
        Timestamp_,
        ErrorCode,
        ErrorBody,
        ErrorEnvelope,
        ServerFrame,
        Profile,
        PresenceStatus,
        CallState,
        CallType,
        Connected,
        AuthRefresh,
        AuthRefreshed,
        AuthExpiring,
        RoomRequest,
        Participant,
        Joined,
        Left,
        MembersRequest,
        MembersPage,
        UserJoined,
        UserLeft,
        SendMessage,
        MessageBody,
        ChatMessage,
        Sent,
        HistoryRequest,
        HistoryEntry,
        HistoryPage,
        ReadMessages,
        MessagesRead,
        ReadReceipt,
        TypingAck,
        Typing,
        SetPresence,
        Presence,
        UsersRequest,
        Presences,
        Subscribed,
        Unsubscribed,
        ListNotifications,
        NotificationView,
        NotificationPage,
        NewNotification,
        ReadNotifications,
        NotificationsRead,
        UnreadCount,
        InitiateCall,
        CallStarted,
        CallRef,
        CallView,
        SignalRequest,
        SignalRelayed,
        CallIncoming,
        CallAccepted,
        CallRejected,
        CallEnded,
        CallMissed,
        CallSignal,
    ]
}

/// `Timestamp` is a plain `String` alias in Rust; this gives it a name of its own in TypeScript.
#[derive(TS)]
#[ts(rename = "Timestamp", type = "string")]
struct Timestamp_;

/// The complete generated file.
pub fn render() -> String {
    let mut out = String::from(
        "// Generated from the Rust types in shared/src/protocol by ts-rs. Do not edit: run\n\
         // `BELLHOP_UPDATE_BINDINGS=1 cargo test -p shared typescript` after changing the protocol.\n\
         /* eslint-disable */\n\n",
    );
    for declaration in declarations() {
        out.push_str(&declaration);
        out.push_str("\n\n");
    }
    out.push_str(
        "/** Every action: what its `data` must be, and what its ack's `data` is. */\nexport interface ActionMap {\n",
    );
    for action in Action::ALL {
        let (request, ack) = action_types(action);
        out.push_str(&format!("  \"{}\": {{ request: {request}; ack: {ack} }};\n", action.as_str()));
    }
    out.push_str("}\n\n/** Every event Bellhop itself sends, and its `data`. Internal services may emit others. */\n");
    out.push_str("export interface EventMap {\n");
    for (event, data) in event_types() {
        out.push_str(&format!("  \"{event}\": {data};\n"));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn generated_file() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(GENERATED_PATH)
    }

    #[test]
    fn typescript_bindings_match_the_rust_protocol() {
        let fresh = render();
        let path = generated_file();
        if std::env::var_os("BELLHOP_UPDATE_BINDINGS").is_some() {
            std::fs::create_dir_all(path.parent().expect("generated file has a parent")).expect("create dir");
            std::fs::write(&path, &fresh).expect("write bindings");
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == fresh,
            "{} is out of date with the Rust protocol types: run BELLHOP_UPDATE_BINDINGS=1 cargo test -p shared \
             typescript, and review the change to the client SDK",
            path.display()
        );
    }

    #[test]
    fn every_action_and_event_is_typed() {
        let text = render();
        for action in Action::ALL {
            assert!(text.contains(&format!("\"{}\": {{ request:", action.as_str())), "{action}");
        }
        assert!(!text.contains("bigint"), "sequence numbers must be plain numbers");
    }
}
