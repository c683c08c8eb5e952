//! The v1 client wire format, and the only place it is defined.
//!
//! Clients send JSON text frames `{"action", "id"?, "data"?}`. The server answers a frame that carries an `id` with
//! exactly one `ack` (sent as the API Gateway route response), and pushes `event` frames. The heartbeat is the one
//! exception: `{"action":"ping"}` is answered by API Gateway itself with [`PONG_FRAME`], never with an ack. This
//! module parses inbound frames into typed values with precise errors and serialises outbound frames; it does no I/O
//! and knows nothing of rooms or storage.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

pub mod payloads;
pub mod typescript;

pub use payloads::{CallState, CallType, PresenceStatus, Timestamp, now, timestamp};

/// Longest client-chosen request id echoed back in an ack.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The heartbeat's action name. API Gateway routes it (`$request.body.action`) to the `ping` route, a MOCK
/// integration that answers [`PONG_FRAME`] without invoking any function, so it is not an [`Action`]: the message
/// function only sees it when that route is missing, and then refuses it with a message that says so.
pub const PING_ACTION: &str = "ping";

/// The heartbeat's answer, byte for byte: the `ping` route's response template in `template.yaml` (a test keeps the
/// two equal) and what [`ServerFrame::Pong`] serialises to. It is static because the answer comes from a mapping
/// template, which echoes nothing of the request: a ping's `id`, if any, is ignored.
pub const PONG_FRAME: &str = r#"{"type":"pong"}"#;

/// Every action a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Hello,
    AuthRefresh,
    RoomJoin,
    RoomLeave,
    RoomMembers,
    MessageSend,
    MessageHistory,
    MessageRead,
    TypingStart,
    TypingStop,
    PresenceSet,
    PresenceGet,
    PresenceSubscribe,
    PresenceUnsubscribe,
    NotificationList,
    NotificationRead,
    NotificationUnreadCount,
    CallInitiate,
    CallAccept,
    CallReject,
    CallEnd,
    CallSignal,
}

impl Action {
    pub const ALL: [Action; 22] = [
        Action::Hello,
        Action::AuthRefresh,
        Action::RoomJoin,
        Action::RoomLeave,
        Action::RoomMembers,
        Action::MessageSend,
        Action::MessageHistory,
        Action::MessageRead,
        Action::TypingStart,
        Action::TypingStop,
        Action::PresenceSet,
        Action::PresenceGet,
        Action::PresenceSubscribe,
        Action::PresenceUnsubscribe,
        Action::NotificationList,
        Action::NotificationRead,
        Action::NotificationUnreadCount,
        Action::CallInitiate,
        Action::CallAccept,
        Action::CallReject,
        Action::CallEnd,
        Action::CallSignal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Hello => "hello",
            Action::AuthRefresh => "auth:refresh",
            Action::RoomJoin => "room:join",
            Action::RoomLeave => "room:leave",
            Action::RoomMembers => "room:members",
            Action::MessageSend => "message:send",
            Action::MessageHistory => "message:history",
            Action::MessageRead => "message:read",
            Action::TypingStart => "typing:start",
            Action::TypingStop => "typing:stop",
            Action::PresenceSet => "presence:set",
            Action::PresenceGet => "presence:get",
            Action::PresenceSubscribe => "presence:subscribe",
            Action::PresenceUnsubscribe => "presence:unsubscribe",
            Action::NotificationList => "notification:list",
            Action::NotificationRead => "notification:read",
            Action::NotificationUnreadCount => "notification:unreadCount",
            Action::CallInitiate => "call:initiate",
            Action::CallAccept => "call:accept",
            Action::CallReject => "call:reject",
            Action::CallEnd => "call:end",
            Action::CallSignal => "call:signal",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Event names Bellhop itself emits. Internal services may emit any other name.
pub mod events {
    pub const CONNECTED: &str = "connected";
    pub const AUTH_EXPIRING: &str = "auth:expiring";
    pub const ERROR: &str = "error";
    pub const MESSAGE_NEW: &str = "message:new";
    pub const MESSAGE_READ: &str = "message:read";
    pub const ROOM_USER_JOINED: &str = "room:userJoined";
    pub const ROOM_USER_LEFT: &str = "room:userLeft";
    pub const TYPING_START: &str = "typing:start";
    pub const TYPING_STOP: &str = "typing:stop";
    pub const PRESENCE_CHANGED: &str = "presence:changed";
    pub const NOTIFICATION_NEW: &str = "notification:new";
    pub const CALL_INCOMING: &str = "call:incoming";
    pub const CALL_ACCEPTED: &str = "call:accepted";
    pub const CALL_REJECTED: &str = "call:rejected";
    pub const CALL_ENDED: &str = "call:ended";
    pub const CALL_MISSED: &str = "call:missed";
    pub const CALL_SIGNAL: &str = "call:signal";
}

/// Stable, documented error codes: one vocabulary for socket acks and `error` events, the HTTP API's error
/// envelope and internal emit. Clients switch on these; messages are for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidJson,
    /// The frame is JSON but not a `{"action": ...}` object, or `id` is malformed.
    InvalidFrame,
    /// `action` names no known action.
    UnknownAction,
    /// `data` is missing a field, has a field of the wrong type, or a value out of range.
    InvalidData,
    /// A room name does not follow the room grammar.
    InvalidRoom,
    /// The caller is authenticated but not allowed to do this.
    Forbidden,
    /// The caller is not authenticated.
    Unauthorized,
    /// The connection's token expired and was not refreshed in time (`auth:refresh`); reconnect with a new one.
    TokenExpired,
    /// The referenced booking room, call, notification or connection does not exist.
    NotFound,
    /// The action conflicts with current state (a call already answered, an idempotency key in flight).
    Conflict,
    /// The payload is larger than the limit.
    PayloadTooLarge,
    /// The caller sends faster than allowed.
    RateLimited,
    /// Something failed on our side; nothing was half-written.
    Internal,
    // The HTTP API's and internal emit's own cases, in the same vocabulary.
    /// A paging cursor is not one the listing handed out.
    InvalidCursor,
    /// An HTTP query string has an unknown parameter or a value of the wrong type.
    InvalidQuery,
    /// An HTTP request body could not be read.
    InvalidBody,
    /// An HTTP path parameter is malformed.
    InvalidPath,
    /// A user id is malformed.
    InvalidUser,
    /// A connection id is malformed.
    InvalidConnection,
    /// An emitted event name is empty, too long or not printable.
    InvalidEvent,
    /// An emit body is not the documented object.
    InvalidPayload,
    /// `persist` needs at least one room to store the event in.
    InvalidPersist,
    /// An emit's notification is missing a field or too large.
    InvalidNotification,
    /// An `idempotencyKey` is empty or too long.
    InvalidIdempotencyKey,
    /// The token does not verify (signature, algorithm, claims).
    InvalidToken,
    /// No token was presented.
    MissingToken,
    /// An emit names no event.
    MissingEvent,
    /// An emit names no room, user or connection.
    MissingTargets,
    /// A grant or revoke names no user, or too many.
    MissingUsers,
    /// An emit names more rooms, users or connections than allowed.
    TooManyTargets,
    /// `broadcast: true` while `BROADCAST_ENABLED` is off.
    BroadcastDisabled,
    /// Development tokens are minted only while the public development secret is in use.
    DevTokensDisabled,
    /// The HTTP route exists but not with this method.
    MethodNotAllowed,
    /// The HTTP body is not `application/json`.
    UnsupportedMediaType,
    /// The Management API failed; try again.
    PushFailed,
    /// The store is unreachable; try again.
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::InvalidFrame => "INVALID_FRAME",
            ErrorCode::UnknownAction => "UNKNOWN_ACTION",
            ErrorCode::InvalidData => "INVALID_DATA",
            ErrorCode::InvalidRoom => "INVALID_ROOM",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::InvalidCursor => "INVALID_CURSOR",
            ErrorCode::InvalidQuery => "INVALID_QUERY",
            ErrorCode::InvalidBody => "INVALID_BODY",
            ErrorCode::InvalidPath => "INVALID_PATH",
            ErrorCode::InvalidUser => "INVALID_USER",
            ErrorCode::InvalidConnection => "INVALID_CONNECTION",
            ErrorCode::InvalidEvent => "INVALID_EVENT",
            ErrorCode::InvalidPayload => "INVALID_PAYLOAD",
            ErrorCode::InvalidPersist => "INVALID_PERSIST",
            ErrorCode::InvalidNotification => "INVALID_NOTIFICATION",
            ErrorCode::InvalidIdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::MissingToken => "MISSING_TOKEN",
            ErrorCode::MissingEvent => "MISSING_EVENT",
            ErrorCode::MissingTargets => "MISSING_TARGETS",
            ErrorCode::MissingUsers => "MISSING_USERS",
            ErrorCode::TooManyTargets => "TOO_MANY_TARGETS",
            ErrorCode::BroadcastDisabled => "BROADCAST_DISABLED",
            ErrorCode::DevTokensDisabled => "DEV_TOKENS_DISABLED",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::PushFailed => "PUSH_FAILED",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }
}

/// `{"code": ..., "message": ...}`: the body of a failed ack, of an `error` event and of HTTP error envelopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// With `RATE_LIMITED`: how long to wait before the same request can succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_ms: None }
    }

    /// A `RATE_LIMITED` answer that says when to try again.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let millis = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { code: ErrorCode::RateLimited, message: message.into(), retry_after_ms: Some(millis) }
    }
}

/// `{"error": {"code", "message"}}`: the body of every HTTP error answer and of a `$connect` refusal. A refused
/// emit invoke adds the HTTP `status` the same refusal has over HTTP, since a Lambda answer has no status line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub status: Option<u16>,
}

impl ErrorEnvelope {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: ErrorBody::new(code, message), status: None }
    }
}

/// Why an inbound frame could not be turned into an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("frame must be a JSON object with a string \"action\"")]
    NotAnObject,
    #[error("frame is missing \"action\"")]
    MissingAction,
    #[error("\"action\" must be a string")]
    ActionNotString,
    #[error("unknown action \"{0}\"")]
    UnknownAction(String),
    #[error(
        "\"ping\" is answered by API Gateway's ping route with {{\"type\":\"pong\"}}; it reached the message function, so \
         the API lacks that route"
    )]
    PingNotRouted,
    #[error("\"id\" must be a string or number of at most {MAX_REQUEST_ID_LEN} characters")]
    InvalidId,
    #[error("invalid data: {0}")]
    InvalidData(String),
}

impl ProtocolError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::InvalidJson(_) => ErrorCode::InvalidJson,
            ProtocolError::NotAnObject | ProtocolError::MissingAction | ProtocolError::ActionNotString => {
                ErrorCode::InvalidFrame
            }
            ProtocolError::InvalidId => ErrorCode::InvalidFrame,
            ProtocolError::UnknownAction(_) | ProtocolError::PingNotRouted => ErrorCode::UnknownAction,
            ProtocolError::InvalidData(_) => ErrorCode::InvalidData,
        }
    }

    pub fn to_error_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}

/// A parsed client frame. `data` is still untyped: each action parses it with [`parse_data`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub action: Action,
    pub id: Option<String>,
    pub data: Value,
}

/// What is known of a frame that failed to parse: enough to address the error to the right request.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedFrame {
    /// The request id, when the frame carried a usable one, so the error can be sent as that request's ack.
    pub id: Option<String>,
    pub error: ProtocolError,
}

/// Parses one inbound text frame.
pub fn parse_client_frame(body: &str) -> Result<ClientFrame, RejectedFrame> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| RejectedFrame { id: None, error: ProtocolError::InvalidJson(json_error_summary(&e)) })?;
    let Value::Object(mut object) = value else {
        return Err(RejectedFrame { id: None, error: ProtocolError::NotAnObject });
    };
    // The id is read first so that every later error can still be answered as an ack to that request.
    let id = match object.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_REQUEST_ID_LEN => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(RejectedFrame { id: None, error: ProtocolError::InvalidId });
        }
    };
    let reject = |error| RejectedFrame { id: id.clone(), error };
    let action = match object.remove("action") {
        None | Some(Value::Null) => return Err(reject(ProtocolError::MissingAction)),
        Some(Value::String(name)) if name == PING_ACTION => return Err(reject(ProtocolError::PingNotRouted)),
        Some(Value::String(name)) => {
            Action::from_name(&name).ok_or_else(|| reject(ProtocolError::UnknownAction(name)))?
        }
        Some(_) => return Err(reject(ProtocolError::ActionNotString)),
    };
    let data = object.remove("data").unwrap_or(Value::Null);
    Ok(ClientFrame { action, id, data })
}

/// Parses an action's `data` into its typed form, turning serde's complaint into a precise client error.
/// A missing `data` is treated as `{}` so that actions whose fields are all optional need no payload.
pub fn parse_data<T: DeserializeOwned>(data: Value) -> Result<T, ProtocolError> {
    let data = if data.is_null() { Value::Object(Default::default()) } else { data };
    // The path names the offending field even for type errors, which serde alone reports without a field name.
    serde_path_to_error::deserialize(data).map_err(|e| {
        let inner = json_error_summary(e.inner());
        match e.path().to_string().as_str() {
            "." => ProtocolError::InvalidData(inner),
            path => ProtocolError::InvalidData(format!("{path}: {inner}")),
        }
    })
}

/// serde_json appends "at line 1 column 7" to its messages; for one-line frames that is noise, not help.
fn json_error_summary(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// Turns a payload into a frame's `data`. The [`payloads`] types hold only strings, numbers, booleans, lists and
/// JSON values with string keys, which serde_json always serialises, so the fallback is never taken.
pub fn to_data(payload: &impl Serialize) -> Value {
    serde_json::to_value(payload).unwrap_or(Value::Null)
}

/// A frame sent to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        id: Option<String>,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        data: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        error: Option<ErrorBody>,
    },
    Event {
        event: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        room: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        seq: Option<u64>,
        data: Value,
    },
    /// The heartbeat's answer, sent by API Gateway's `ping` route (see [`PONG_FRAME`]), never by a function.
    Pong,
}

impl ServerFrame {
    pub fn ack_ok(id: Option<String>, data: Value) -> Self {
        ServerFrame::Ack { id, ok: true, data: Some(data), error: None }
    }

    pub fn ack_err(id: Option<String>, error: ErrorBody) -> Self {
        ServerFrame::Ack { id, ok: false, data: None, error: Some(error) }
    }

    pub fn event(event: impl Into<String>, data: Value) -> Self {
        ServerFrame::Event { event: event.into(), room: None, seq: None, data }
    }

    pub fn room_event(event: impl Into<String>, room: impl Into<String>, seq: Option<u64>, data: Value) -> Self {
        ServerFrame::Event { event: event.into(), room: Some(room.into()), seq, data }
    }

    /// An `error` event, for failures that have no request id to acknowledge.
    pub fn error_event(error: ErrorBody) -> Self {
        ServerFrame::event(events::ERROR, serde_json::to_value(error).unwrap_or(Value::Null))
    }

    /// An event whose data is one of the [`payloads`] types.
    pub fn typed_event(event: impl Into<String>, data: &impl Serialize) -> Self {
        ServerFrame::event(event, to_data(data))
    }

    /// A room event whose data is one of the [`payloads`] types.
    pub fn typed_room_event(event: impl Into<String>, room: impl Into<String>, data: &impl Serialize) -> Self {
        ServerFrame::room_event(event, room, None, to_data(data))
    }

    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every field is a string, number, bool or an already-built Value.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_rejected(body: &str, code: ErrorCode, id: Option<&str>) {
        let rejected = parse_client_frame(body).expect_err(body);
        assert_eq!(rejected.error.code(), code, "{body}: {}", rejected.error);
        assert_eq!(rejected.id.as_deref(), id, "{body}");
    }

    #[test]
    fn every_action_name_round_trips() {
        for action in Action::ALL {
            let frame = parse_client_frame(&json!({"action": action.as_str()}).to_string()).expect("parses");
            assert_eq!(frame.action, action);
            assert_eq!(frame.data, Value::Null);
        }
    }

    #[test]
    fn a_full_frame_parses_with_id_and_data() {
        let frame = parse_client_frame(r#"{"action":"message:send","id":"c-17","data":{"room":"booking:42"}}"#)
            .expect("parses");
        assert_eq!(frame.action, Action::MessageSend);
        assert_eq!(frame.id.as_deref(), Some("c-17"));
        assert_eq!(frame.data, json!({"room": "booking:42"}));
    }

    #[test]
    fn numeric_ids_are_accepted_as_strings() {
        let frame = parse_client_frame(r#"{"action":"hello","id":7}"#).expect("parses");
        assert_eq!(frame.id.as_deref(), Some("7"));
    }

    #[test]
    fn malformed_frames_get_precise_codes_and_keep_the_request_id() {
        check_rejected("not json", ErrorCode::InvalidJson, None);
        check_rejected("{\"action\":", ErrorCode::InvalidJson, None);
        check_rejected("[1,2]", ErrorCode::InvalidFrame, None);
        check_rejected("\"hello\"", ErrorCode::InvalidFrame, None);
        check_rejected(r#"{"id":"a"}"#, ErrorCode::InvalidFrame, Some("a"));
        check_rejected(r#"{"action":5,"id":"b"}"#, ErrorCode::InvalidFrame, Some("b"));
        check_rejected(r#"{"action":"dance","id":"c"}"#, ErrorCode::UnknownAction, Some("c"));
        check_rejected(r#"{"action":"hello","id":{"x":1}}"#, ErrorCode::InvalidFrame, None);
        check_rejected(&json!({"action": "hello", "id": "x".repeat(65)}).to_string(), ErrorCode::InvalidFrame, None);
    }

    #[test]
    fn a_ping_that_reaches_the_message_function_is_an_unknown_action_that_names_the_missing_route() {
        check_rejected(r#"{"action":"ping","id":"p"}"#, ErrorCode::UnknownAction, Some("p"));
        let rejected = parse_client_frame(r#"{"action":"ping"}"#).expect_err("ping is no action");
        assert_eq!(rejected.error, ProtocolError::PingNotRouted);
        assert!(rejected.error.to_string().contains("API Gateway's ping route"), "{}", rejected.error);
        assert_eq!(Action::from_name(PING_ACTION), None);
    }

    #[test]
    fn the_pong_frame_is_the_serialised_pong_server_frame() {
        assert_eq!(ServerFrame::Pong.to_json(), PONG_FRAME);
        assert_eq!(serde_json::from_str::<ServerFrame>(PONG_FRAME).expect("parses"), ServerFrame::Pong);
    }

    #[test]
    fn data_errors_name_the_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Join {
            room: String,
        }
        let missing = parse_data::<Join>(json!({})).expect_err("missing");
        assert_eq!(missing, ProtocolError::InvalidData("missing field `room`".into()));
        let wrong = parse_data::<Join>(json!({"room": 5})).expect_err("wrong type");
        assert_eq!(wrong.code(), ErrorCode::InvalidData);
        assert_eq!(wrong.to_string(), "invalid data: room: invalid type: integer `5`, expected a string");
        let null = parse_data::<Join>(Value::Null).expect_err("null data");
        assert_eq!(null.code(), ErrorCode::InvalidData);
    }

    #[test]
    fn server_frames_serialise_to_the_documented_shapes() {
        let cases = [
            (
                ServerFrame::ack_ok(Some("c-1".into()), json!({"x": 1})),
                json!({"type":"ack","id":"c-1","ok":true,"data":{"x":1}}),
            ),
            (
                ServerFrame::ack_err(Some("c-2".into()), ErrorBody::new(ErrorCode::Forbidden, "no")),
                json!({"type":"ack","id":"c-2","ok":false,"error":{"code":"FORBIDDEN","message":"no"}}),
            ),
            (
                ServerFrame::room_event("message:new", "booking:42", Some(118), json!({})),
                json!({"type":"event","event":"message:new","room":"booking:42","seq":118,"data":{}}),
            ),
            (
                ServerFrame::error_event(ErrorBody::new(ErrorCode::InvalidJson, "bad")),
                json!({"type":"event","event":"error","data":{"code":"INVALID_JSON","message":"bad"}}),
            ),
        ];
        for (frame, expected) in cases {
            let text = frame.to_json();
            assert_eq!(serde_json::from_str::<Value>(&text).expect("json"), expected);
            assert_eq!(serde_json::from_str::<ServerFrame>(&text).expect("reparse"), frame);
        }
    }

    #[test]
    fn error_codes_serialise_as_their_documented_names() {
        for code in [ErrorCode::InvalidJson, ErrorCode::PayloadTooLarge, ErrorCode::NotFound, ErrorCode::Internal] {
            assert_eq!(serde_json::to_value(code).expect("json"), json!(code.as_str()));
        }
    }
}
