/**
 * How the client is typed: an action map (action name → `{ request, ack }` data types) and an event map (event name →
 * data type). The defaults are Bellhop's own protocol, generated from the Rust types; an application adds the events
 * its services emit by extending the event map.
 */
import type { EventMeta } from './wire.js';

/** The request data type of an action. */
export type RequestOf<A, K extends keyof A> = A[K] extends { request: infer R } ? R : never;
/** The ack data type of an action. */
export type AckOf<A, K extends keyof A> = A[K] extends { ack: infer R } ? R : never;

/** The arguments after the action's name: its data (optional for actions without any), then `More`. */
export type Args<A, K extends keyof A, More = never> = [RequestOf<A, K>] extends [undefined]
  ? [data?: undefined, ...more: [More] extends [never] ? [] : [options?: More]]
  : [data: RequestOf<A, K>, ...more: [More] extends [never] ? [] : [options?: More]];

/** Connection states. `connected` means the socket is open, `hello` was answered and every room re-joined. */
export type State = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed';

/** Why the state changed. Every field is optional: each transition fills in what it knows. */
export interface StateReason {
  /** The WebSocket close code (1000 when the hub deleted the connection, 1001 at the idle or lifetime limit…). */
  code?: number;
  /** The close frame's reason text. */
  reason?: string;
  /**
   * When the handshake was refused, the hub's verdict on the token from `GET /me` (`TOKEN_EXPIRED`,
   * `INVALID_TOKEN`, `MISSING_TOKEN`); or the client's own cause (`TIMEOUT`, a `getToken` failure).
   */
  error?: { code: string; message: string };
  /** The HTTP status `GET /me` answered with when the handshake was refused. */
  status?: number;
  /** The number of the reconnect attempt about to be made. */
  attempt?: number;
  /** How long the client waits before that attempt. */
  delayMs?: number;
}

export interface StateChange {
  from: State;
  to: State;
  reason: StateReason;
}

/** `gap`: recovery could not deliver events `fromSeq..toSeq` of `room` (history no longer holds them). */
export interface Gap {
  room: string;
  fromSeq: number;
  toSeq: number;
}

/** The client's own events, next to the hub's. */
export interface ClientEvents {
  state: StateChange;
  gap: Gap;
  /** The unread notification count changed. */
  unread: number;
}

/** A listener of event `K`: hub events get their data and where it came from; the client's own events their payload. */
export type Handler<E, K> = K extends keyof ClientEvents
  ? (payload: ClientEvents[K]) => void
  : K extends keyof E
    ? (data: E[K], meta: EventMeta) => void
    : never;

/** A minimal `Storage` (`localStorage`, `sessionStorage`, or an async store such as React Native's AsyncStorage). */
export interface SeqStorage {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
}

/** The part of the standard `WebSocket` the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // `any` parameters keep every implementation's own event types assignable (DOM, undici, `ws`).
  onopen: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
