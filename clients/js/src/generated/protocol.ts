// Generated from the Rust types in shared/src/protocol by ts-rs. Do not edit: run
// `BELLHOP_UPDATE_BINDINGS=1 cargo test -p shared typescript` after changing the protocol.
/* eslint-disable */

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

export type UserId = string;

export type ConnectionId = string;

export type RoomName = string;

export type Timestamp = string;

export type ErrorCode = "INVALID_JSON" | "INVALID_FRAME" | "UNKNOWN_ACTION" | "INVALID_DATA" | "INVALID_ROOM" | "FORBIDDEN" | "UNAUTHORIZED" | "TOKEN_EXPIRED" | "NOT_FOUND" | "CONFLICT" | "PAYLOAD_TOO_LARGE" | "RATE_LIMITED" | "INTERNAL" | "INVALID_CURSOR" | "INVALID_QUERY" | "INVALID_BODY" | "INVALID_PATH" | "INVALID_USER" | "INVALID_CONNECTION" | "INVALID_EVENT" | "INVALID_PAYLOAD" | "INVALID_PERSIST" | "INVALID_NOTIFICATION" | "INVALID_IDEMPOTENCY_KEY" | "INVALID_TOKEN" | "MISSING_TOKEN" | "MISSING_EVENT" | "MISSING_TARGETS" | "MISSING_USERS" | "TOO_MANY_TARGETS" | "BROADCAST_DISABLED" | "DEV_TOKENS_DISABLED" | "METHOD_NOT_ALLOWED" | "UNSUPPORTED_MEDIA_TYPE" | "PUSH_FAILED" | "UNAVAILABLE";

export type ErrorBody = { code: ErrorCode, message: string, 
/**
 * With `RATE_LIMITED`: how long to wait before the same request can succeed.
 */
retryAfterMs?: number, };

export type ErrorEnvelope = { error: ErrorBody, status?: number, };

export type ServerFrame = { "type": "ack", id?: string, ok: boolean, data?: JsonValue, error?: ErrorBody, } | { "type": "event", event: string, room?: string, seq?: number, data: JsonValue, } | { "type": "pong" };

export type Profile = { id: UserId, name: string | null, email: string | null, role: string | null, };

export type PresenceStatus = "online" | "away" | "busy" | "in_call" | "offline";

export type CallState = "initiating" | "ringing" | "accepted" | "in_progress" | "ended" | "rejected" | "missed" | "failed";

export type CallType = "audio" | "video";

export type Connected = { connectionId: ConnectionId, user: Profile, 
/**
 * The rooms this connection is in (at most the per-connection room limit).
 */
rooms: Array<RoomName>, serverTime: string, };

export type AuthRefresh = { token: string, };

export type AuthRefreshed = { 
/**
 * When the new token expires; `null` for a token without `exp`.
 */
expiresAt: string | null, };

export type AuthExpiring = { expiresAt: string, closesAt: string, };

export type RoomRequest = { room: string, };

export type Participant = { userId: UserId, };

export type Joined = { room: RoomName, 
/**
 * False when this connection was already a member.
 */
joined: boolean, 
/**
 * Users in the room now, the joiner included; at most the participant limit, see `participantCount`.
 */
participants: Array<Participant>, 
/**
 * How many distinct users are in the room, even when `participants` was cut at the limit.
 */
participantCount: number, 
/**
 * The room's latest durable `seq` (0 when nothing was stored yet), for recovery with `message:history`.
 */
lastSeq: number, };

export type Left = { room: RoomName, 
/**
 * False when this connection was not a member.
 */
left: boolean, };

export type MembersRequest = { room: string, 
/**
 * The previous page's `nextCursor`.
 */
cursor?: string, limit?: number, };

export type MembersPage = { room: RoomName, participants: Array<Participant>, 
/**
 * Pass as `cursor` for the next page; `null` on the last page.
 */
nextCursor: string | null, };

export type UserJoined = { room: RoomName, userId: UserId, user: Profile, };

export type UserLeft = { room: RoomName, userId: UserId, reason?: string | null, };

export type SendMessage = { room: string, content: string, 
/**
 * Makes the send idempotent: a retry with the same id is stored and delivered once.
 */
clientMsgId?: string, 
/**
 * Any JSON object of at most 4 KiB, stored and delivered with the message.
 */
metadata?: JsonValue, };

export type MessageBody = { id: string, room: RoomName, sender: Profile, content: string, clientMsgId: string | null, 
/**
 * `null` when the sender gave none.
 */
metadata: JsonValue, createdAt: string, updatedAt: string, };

export type ChatMessage = { seq: number, id: string, room: RoomName, sender: Profile, content: string, clientMsgId: string | null, 
/**
 * `null` when the sender gave none.
 */
metadata: JsonValue, createdAt: string, updatedAt: string, };

export type Sent = { message: ChatMessage, 
/**
 * True when this was a retry of a send already stored: nothing was stored or delivered again.
 */
duplicate: boolean, };

export type HistoryRequest = { room: string, beforeSeq?: number, afterSeq?: number, limit?: number, };

export type HistoryEntry = { seq: number, id: string, event: string, data: JsonValue, createdAt: string, };

export type HistoryPage = { room: RoomName, events: Array<HistoryEntry>, 
/**
 * More events exist beyond this page in the direction asked for.
 */
hasMore: boolean, };

export type ReadMessages = { room: string, seq?: number, messageIds?: Array<string>, };

export type MessagesRead = { room: RoomName, 
/**
 * The reader's watermark now; it never moves backwards.
 */
seq: number, messageIds: Array<string>, };

export type ReadReceipt = { room: RoomName, userId: UserId, seq: number, readAt: string, };

export type TypingAck = { room: RoomName, 
/**
 * True when no event was sent because this connection already announced typing in the room moments ago.
 */
coalesced: boolean, };

export type Typing = { room: RoomName, userId: UserId, name: string | null, role: string | null, };

export type SetPresence = { 
/**
 * `online`, `away`, `busy` or `in_call`.
 */
status: string, customStatus?: string, };

export type Presence = { userId: UserId, status: PresenceStatus, customStatus: string | null, lastSeen: string | null, online: boolean, };

export type UsersRequest = { userIds: Array<string>, };

export type Presences = { presences: Array<Presence>, 
/**
 * Users whose presence the caller may not see.
 */
forbidden: Array<UserId>, };

export type Subscribed = { subscribed: Array<UserId>, forbidden: Array<UserId>, presences: Array<Presence>, };

export type Unsubscribed = { unsubscribed: Array<UserId>, };

export type ListNotifications = { unreadOnly?: boolean, 
/**
 * The previous page's `nextBefore`.
 */
before?: string, limit?: number, };

export type NotificationView = { 
/**
 * UUID v7, so ids sort as creation times do.
 */
id: string, title: string, message: string, kind: string | null, data: JsonValue, read: boolean, createdAt: string, };

export type NotificationPage = { notifications: Array<NotificationView>, 
/**
 * Unread notifications in total, not only on this page.
 */
unreadCount: number, 
/**
 * Pass as `before` for the next page; `null` on the last page.
 */
nextBefore: string | null, };

export type NewNotification = { unreadCount: number, 
/**
 * UUID v7, so ids sort as creation times do.
 */
id: string, title: string, message: string, kind: string | null, data: JsonValue, read: boolean, createdAt: string, };

export type ReadNotifications = { notificationId?: string, notificationIds?: Array<string>, all?: boolean, };

export type NotificationsRead = { 
/**
 * How many notifications changed from unread to read: 0 when this is a retry.
 */
updated: number, unreadCount: number, };

export type UnreadCount = { unreadCount: number, };

export type InitiateCall = { recipientId: string, callType: CallType, visitId?: string, };

export type CallStarted = { callId: string, 
/**
 * `ringing`, or `missed` when the recipient had no open connection.
 */
state: CallState, reason?: string | null, };

export type CallRef = { callId: string, };

export type CallView = { callId: string, callerId: UserId, recipientId: UserId, callType: CallType, visitId: string | null, state: CallState, createdAt: string, answeredAt: string | null, endedAt: string | null, 
/**
 * Seconds between acceptance and the end; only on `call:end`.
 */
duration?: number | null, };

export type SignalRequest = { callId: string, payload: JsonValue, };

export type SignalRelayed = { callId: string, 
/**
 * How many of the other party's connections received it.
 */
relayed: number, };

export type CallIncoming = { callId: string, callerId: UserId, caller: Profile, callType: CallType, visitId: string | null, 
/**
 * How long the call rings before it becomes `missed`.
 */
ringSeconds: number, };

export type CallAccepted = { callId: string, acceptedBy: UserId, acceptedByConnection: ConnectionId, };

export type CallRejected = { callId: string, rejectedBy: UserId, };

export type CallEnded = { callId: string, endedBy: UserId, 
/**
 * Seconds between acceptance and the end; 0 for a call that never connected.
 */
duration: number, };

export type CallMissed = { callId: string, callerId: UserId, recipientId: UserId, callType: CallType, };

export type CallSignal = { callId: string, from: UserId, payload: JsonValue, };

/** Every action: what its `data` must be, and what its ack's `data` is. */
export interface ActionMap {
  "hello": { request: undefined; ack: Connected };
  "auth:refresh": { request: AuthRefresh; ack: AuthRefreshed };
  "room:join": { request: RoomRequest; ack: Joined };
  "room:leave": { request: RoomRequest; ack: Left };
  "room:members": { request: MembersRequest; ack: MembersPage };
  "message:send": { request: SendMessage; ack: Sent };
  "message:history": { request: HistoryRequest; ack: HistoryPage };
  "message:read": { request: ReadMessages; ack: MessagesRead };
  "typing:start": { request: RoomRequest; ack: TypingAck };
  "typing:stop": { request: RoomRequest; ack: TypingAck };
  "presence:set": { request: SetPresence; ack: Presence };
  "presence:get": { request: UsersRequest; ack: Presences };
  "presence:subscribe": { request: UsersRequest; ack: Subscribed };
  "presence:unsubscribe": { request: UsersRequest; ack: Unsubscribed };
  "notification:list": { request: ListNotifications; ack: NotificationPage };
  "notification:read": { request: ReadNotifications; ack: NotificationsRead };
  "notification:unreadCount": { request: undefined; ack: UnreadCount };
  "call:initiate": { request: InitiateCall; ack: CallStarted };
  "call:accept": { request: CallRef; ack: CallView };
  "call:reject": { request: CallRef; ack: CallView };
  "call:end": { request: CallRef; ack: CallView };
  "call:signal": { request: SignalRequest; ack: SignalRelayed };
}

/** Every event Bellhop itself sends, and its `data`. Internal services may emit others. */
export interface EventMap {
  "connected": Connected;
  "auth:expiring": AuthExpiring;
  "error": ErrorBody;
  "message:new": ChatMessage;
  "message:read": ReadReceipt;
  "room:userJoined": UserJoined;
  "room:userLeft": UserLeft;
  "typing:start": Typing;
  "typing:stop": Typing;
  "presence:changed": Presence;
  "notification:new": NewNotification;
  "call:incoming": CallIncoming;
  "call:accepted": CallAccepted;
  "call:rejected": CallRejected;
  "call:ended": CallEnded;
  "call:missed": CallMissed;
  "call:signal": CallSignal;
}
