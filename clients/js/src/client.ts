/**
 * The connection: one WebSocket at a time, an explicit state machine around it, requests matched to their acks,
 * reconnection with full-jitter backoff, the heartbeat, the bounded offline queue, token refresh, and the registry
 * of rooms and presence subscriptions that are restored after every reconnect.
 *
 * API Gateway closes idle connections after 10 minutes and every connection after 2 hours, and refuses pushes during
 * `$connect`; the client therefore treats a close as routine: it says `hello` on every new socket, re-joins its rooms,
 * re-subscribes presence, recovers what its rooms missed by `seq`, and only then reports `connected` and sends what
 * was queued. Room bookkeeping lives in `room.ts`; this file owns the socket.
 */
import { Emitter } from './emitter.js';
import { randomId } from './id.js';
import { BellhopError } from './errors.js';
import { Room, RoomEntry, type RoomOptions } from './room.js';
import type {
  AckOf,
  Args,
  Handler,
  SeqStorage,
  State,
  StateReason,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';
import type {
  ActionMap,
  CallView,
  EventMap,
  NotificationsRead,
  Presence,
  ServerFrame,
  SignalRelayed,
} from './generated/protocol.js';
import type { EventMeta } from './wire.js';

export interface ClientOptions {
  /** The WebSocket URL, stage included: `wss://abc.execute-api.eu-west-1.amazonaws.com/prod`. */
  url: string;
  /** Called before every connect and reconnect, and when the hub warns that the token expires. */
  getToken: () => string | Promise<string>;
  /**
   * Where the token travels: the `bearer.<jwt>` subprotocol (default: out of URLs and access logs) or `?token=`
   * (for proxies that drop subprotocols).
   */
  tokenIn?: 'subprotocol' | 'query';
  /**
   * The HTTP API, asked `GET /me` to learn why a handshake was refused (browsers only see close 1006). Defaults to
   * the WebSocket URL's origin, which is right for the local harness; `null` turns the check off.
   */
  httpUrl?: string | null;
  /** A WebSocket implementation where there is no global one (Node 20: `ws`). */
  WebSocket?: WebSocketConstructor;
  /** How long a request waits for its ack, queueing included, unless the call says otherwise. Default 10 s. */
  ackTimeoutMs?: number;
  /** How long the socket may take to open and answer `hello`. Default 10 s. */
  connectTimeoutMs?: number;
  /** A `ping` after this long without sending anything. Default 9 minutes, under API Gateway's 10-minute idle limit. */
  heartbeatMs?: number;
  /** Backoff between reconnects: a random delay up to `min(maxMs, minMs * 2^attempt)`. Defaults 500 ms and 20 s. */
  reconnect?: { minMs?: number; maxMs?: number };
  /** How many idempotent requests may wait for a connection. Default 100; 0 turns queueing off. */
  queueLimit?: number;
  /** Keeps each recovering room's last `seq`, so a page reload recovers too. */
  storage?: SeqStorage;
  /** Most events one room recovers after a disconnect; older ones are reported as a `gap`. Default 1000. */
  maxRecover?: number;
  /** Connect at once (default) or wait for `connect()`. */
  autoConnect?: boolean;
}

/** See `Client.call`. */
export interface CallHandle {
  readonly callId: string;
  accept(): Promise<CallView>;
  reject(): Promise<CallView>;
  end(): Promise<CallView>;
  /** Relays a WebRTC payload to the other party, who gets `call:signal {callId, from, payload}`. */
  signal(payload: unknown): Promise<SignalRelayed>;
  on(what: 'incoming' | 'accepted' | 'rejected' | 'ended' | 'missed' | 'signal', handler: (data: any) => void): () => void;
  /** Removes this handle's listeners. */
  dispose(): void;
}

export interface RequestOptions {
  timeoutMs?: number;
}

/** Actions that are safe to send twice, and so may wait for a connection and be re-sent after a reconnect. */
const IDEMPOTENT = new Set([
  'room:join',
  'room:leave',
  'message:send',
  'message:history',
  'message:read',
  'presence:set',
  'presence:get',
  'presence:subscribe',
  'presence:unsubscribe',
  'notification:list',
  'notification:read',
  'notification:unreadCount',
  'auth:refresh',
]);

/** A `ping` waiting for a pong. */
interface PongWaiter {
  resolve: () => void;
  reject: (error: BellhopError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Pending {
  action: string;
  frame: string;
  resolve: (data: any) => void;
  reject: (error: BellhopError) => void;
  timer: ReturnType<typeof setTimeout>;
  sent: boolean;
  /** Requests the client makes for itself while (re)connecting go out before `connected`. */
  internal: boolean;
}

const OPEN = 1;

export class Client<A = ActionMap, E = EventMap> {
  /** The current connection state. */
  state: State = 'disconnected';
  /** The hub's id for the current connection (from `hello`), or `undefined` while not connected. */
  connectionId: string | undefined;
  /** The latest unread notification count seen, or `undefined` before any. */
  unread: number | undefined;

  /** @internal */ readonly options: Required<Omit<ClientOptions, 'storage' | 'WebSocket' | 'httpUrl' | 'reconnect'>> & {
    storage?: SeqStorage;
    httpUrl: string | null;
    minMs: number;
    maxMs: number;
  };
  /** @internal */ readonly events = new Emitter();
  /** @internal */ readonly rooms = new Map<string, RoomEntry>();
  /** @internal */ readonly presenceRefs = new Map<string, number>();
  /** The latest presence seen per user. */
  readonly presences = new Map<string, Presence>();

  private readonly WebSocketImpl: WebSocketConstructor;
  private ws: WebSocketLike | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly pongWaiters = new Set<PongWaiter>();
  private nextId = 0;
  private attempt = 0;
  /** Bumped for every new socket and on close, so the callbacks of an abandoned one do nothing. */
  private generation = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly detach: () => void;

  constructor(options: ClientOptions) {
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) {
      throw new TypeError('bellhop-client: no global WebSocket here; pass one as the `WebSocket` option');
    }
    if (!/^wss?:\/\//.test(options.url)) throw new TypeError('bellhop-client: `url` must start with ws:// or wss://');
    if (typeof options.getToken !== 'function') throw new TypeError('bellhop-client: `getToken` must be a function');
    this.WebSocketImpl = WebSocketImpl;
    this.options = {
      url: options.url,
      getToken: options.getToken,
      tokenIn: options.tokenIn ?? 'subprotocol',
      httpUrl:
        options.httpUrl === undefined ? options.url.replace(/^ws/, 'http').replace(/^(https?:\/\/[^/?#]+).*$/, '$1') : options.httpUrl,
      ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      heartbeatMs: options.heartbeatMs ?? 540_000,
      minMs: options.reconnect?.minMs ?? 500,
      maxMs: options.reconnect?.maxMs ?? 20_000,
      queueLimit: options.queueLimit ?? 100,
      storage: options.storage,
      maxRecover: options.maxRecover ?? 1000,
      autoConnect: options.autoConnect ?? true,
    };
    this.detach = this.watchEnvironment();
    if (this.options.autoConnect) this.connect();
  }

  /** Listens to a hub event (`message:new`, `appointment:created`…) or to the client's `state`, `gap`, `unread`. */
  on<K extends (keyof E | 'state' | 'gap' | 'unread') & string>(event: K, handler: Handler<E, K>): () => void {
    return this.events.on(event, handler);
  }

  /** Resolves once the client is `connected` (at once if it is); rejects if it is closed first. */
  ready(): Promise<void> {
    if (this.state === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const off = this.events.on('state', ({ to }: { to: State }) => {
        if (to === 'connected') resolve();
        else if (to === 'closed') reject(new BellhopError('CLOSED', 'the client was closed'));
        else return;
        off();
      });
    });
  }

  /**
   * Sends an action and resolves with its ack's data, or rejects with a `BellhopError`. While disconnected,
   * idempotent actions wait in the queue (the timeout runs meanwhile); others reject with `DISCONNECTED`.
   * `message:send` gets a `clientMsgId` when it has none, so a retry is never stored twice.
   */
  request<K extends keyof A & string>(action: K, ...[data, options]: Args<A, K, RequestOptions>): Promise<AckOf<A, K>> {
    let payload: any = data;
    if (action === 'message:send' && payload && !payload.clientMsgId) payload = { ...payload, clientMsgId: randomId() };
    return this.ask(action, payload, options?.timeoutMs, false);
  }

  /**
   * The heartbeat: sends `{"action":"ping"}` and resolves when the hub answers. API Gateway answers a ping itself
   * with `{"type":"pong"}`, which carries no id, so any pong answers every ping in flight: it shows the socket is
   * alive and costs no function invocation. Never queued: rejects with `DISCONNECTED` while not connected, and
   * with `TIMEOUT` when no pong comes within `timeoutMs` (default `ackTimeoutMs`).
   */
  ping(options?: RequestOptions): Promise<void> {
    return this.heartbeat(options?.timeoutMs ?? this.options.ackTimeoutMs);
  }

  /**
   * Fire-and-forget: no id, no ack (failures arrive as an `error` event). Never queued: returns false when there
   * is no connection to send on, which is what volatile actions such as typing want.
   */
  send<K extends keyof A & string>(action: K, ...[data]: Args<A, K>): boolean {
    if (this.state !== 'connected') return false;
    return this.write(JSON.stringify({ action, data }));
  }

  /**
   * A handle on a room, joined on first use and re-joined after every reconnect. Handles are reference-counted:
   * two components asking for the same room share one join, and the room is left when the last handle leaves.
   */
  room(name: string, options?: RoomOptions): Room<E> {
    let entry = this.rooms.get(name);
    if (!entry) {
      entry = new RoomEntry(this, name);
      this.rooms.set(name, entry);
    }
    // Rooms speak Bellhop's own actions, whatever action map the application typed the client with.
    return new Room<E>(this as unknown as Client, entry, options);
  }

  /**
   * Subscribes to the presence of users, reference-counted per user like rooms and restored after reconnects. The
   * handler gets each user's current presence first (as soon as it is known), then every change. Returns the function
   * that unsubscribes.
   */
  subscribePresence(userIds: string[], handler: (presence: Presence) => void): () => void {
    const off = this.events.on('presence:changed', (data: Presence) => {
      if (userIds.includes(data?.userId)) handler(data);
    });
    for (const id of userIds) {
      const known = this.presences.get(id);
      if (known) handler(known);
    }
    const fresh = userIds.filter((id) => {
      const refs = this.presenceRefs.get(id) ?? 0;
      this.presenceRefs.set(id, refs + 1);
      return refs === 0;
    });
    if (fresh.length && this.state === 'connected') this.subscribeUsers(fresh);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      off();
      // Deferred, so an unsubscribe immediately followed by a subscribe (React StrictMode) costs nothing.
      setTimeout(() => {
        const gone = userIds.filter((id) => {
          const refs = (this.presenceRefs.get(id) ?? 1) - 1;
          if (refs > 0) this.presenceRefs.set(id, refs);
          else this.presenceRefs.delete(id);
          return refs <= 0;
        });
        if (gone.length && this.state === 'connected') {
          this.ask('presence:unsubscribe', { userIds: gone }, undefined, false).catch(() => {});
        }
      });
    };
  }

  /**
   * A handle on one call: its actions with the `callId` filled in, and its events (`incoming`, `accepted`,
   * `rejected`, `ended`, `missed`, `signal` for WebRTC offers, answers and ICE candidates) filtered to it.
   */
  call(callId: string): CallHandle {
    const offs: Array<() => void> = [];
    const act = (action: string, extra?: object) => this.ask(action, { callId, ...extra }, undefined, false);
    return {
      callId,
      accept: () => act('call:accept'),
      reject: () => act('call:reject'),
      end: () => act('call:end'),
      signal: (payload) => act('call:signal', { payload }),
      on: (what, handler) => {
        const off = this.events.on(`call:${what}`, (data: { callId?: string }) => {
          if (data?.callId === callId) handler(data);
        });
        offs.push(off);
        return off;
      },
      dispose: () => offs.forEach((off) => off()),
    };
  }

  /** Marks notifications read (all of them without ids); `unread` follows the new count. */
  readNotifications(ids?: string[]): Promise<NotificationsRead> {
    return this.ask('notification:read', ids ? { notificationIds: ids } : { all: true }, undefined, false);
  }

  /** Opens the connection if it is not open or opening. Called by the constructor unless `autoConnect: false`. */
  connect(): void {
    if (this.state === 'closed') throw new BellhopError('CLOSED', 'the client was closed');
    if (this.ws || this.state === 'connecting' || this.state === 'reconnecting') return;
    this.open('connecting', {});
  }

  /** Closes the socket and stops reconnecting until `connect()`. Queued idempotent requests keep waiting. */
  disconnect(): void {
    if (this.state === 'closed') return;
    this.stop(1000, 'client disconnected');
    this.setState('disconnected', { code: 1000 });
  }

  /** Closes for good: the socket, the timers, every pending request (rejected with `CLOSED`). */
  close(): void {
    if (this.state === 'closed') return;
    this.stop(1000, 'client closed');
    this.detach();
    for (const entry of this.rooms.values()) entry.dispose();
    this.failPending(() => true, 'CLOSED', 'the client was closed');
    this.setState('closed', { code: 1000 });
  }

  // ---- internals shared with room.ts ------------------------------------------------------------------------------

  /** @internal Sends a request; `internal` requests go out as soon as the socket is open, before `connected`. */
  ask(action: string, data: unknown, timeoutMs: number | undefined, internal: boolean): Promise<any> {
    if (this.state === 'closed') return Promise.reject(new BellhopError('CLOSED', 'the client was closed'));
    const usable = internal ? this.ws?.readyState === OPEN : this.state === 'connected';
    if (!usable && internal) return Promise.reject(new BellhopError('DISCONNECTED', 'the connection closed'));
    if (!usable) {
      if (!IDEMPOTENT.has(action)) {
        return Promise.reject(new BellhopError('DISCONNECTED', `not connected; ${action} is not queued while offline`));
      }
      let waiting = 0;
      for (const p of this.pending.values()) if (!p.sent) waiting++;
      if (waiting >= this.options.queueLimit) {
        return Promise.reject(new BellhopError('DISCONNECTED', 'not connected and the offline queue is full'));
      }
    }
    const id = `c${++this.nextId}`;
    const frame = JSON.stringify(data === undefined ? { action, id } : { action, id, data });
    const ms = timeoutMs ?? this.options.ackTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new BellhopError('TIMEOUT', `no answer to ${action} within ${ms} ms`));
      }, ms);
      const pending: Pending = { action, frame, resolve, reject, timer, sent: false, internal };
      this.pending.set(id, pending);
      if (usable) pending.sent = this.write(frame);
    });
  }

  /** @internal */
  deliver(event: string, data: unknown, meta: EventMeta): void {
    if (event === 'notification:new') this.setUnread((data as { unreadCount?: number })?.unreadCount);
    if (event === 'presence:changed') this.presences.set((data as Presence).userId, data as Presence);
    this.events.emit(event, data, meta);
    if (meta.room) this.rooms.get(meta.room)?.events.emit(event, data, meta);
  }

  /** @internal */
  setUnread(count: unknown): void {
    if (typeof count === 'number' && count !== this.unread) {
      this.unread = count;
      this.events.emit('unread', count);
    }
  }

  // ---- the socket -------------------------------------------------------------------------------------------------

  private async open(state: 'connecting' | 'reconnecting', reason: StateReason): Promise<void> {
    const generation = ++this.generation;
    this.setState(state, reason);
    let token: string;
    try {
      // Always asynchronous, so that even a synchronous getToken reports its outcome after `createClient` returns.
      token = await Promise.resolve().then(() => this.options.getToken());
    } catch (cause) {
      if (generation !== this.generation) return;
      const error = cause instanceof BellhopError ? cause : new BellhopError('TOKEN_UNAVAILABLE', String(cause));
      // An `UNAUTHORIZED` from getToken means the user is signed out: retrying cannot help until `connect()`.
      if (error.code === 'UNAUTHORIZED') this.setState('disconnected', { error: { code: error.code, message: error.message } });
      else this.retry({ error: { code: error.code, message: error.message } });
      return;
    }
    if (generation !== this.generation) return;
    const bySubprotocol = this.options.tokenIn === 'subprotocol';
    const url = bySubprotocol
      ? this.options.url
      : `${this.options.url}${this.options.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
    let ws: WebSocketLike;
    try {
      ws = new this.WebSocketImpl(url, bySubprotocol ? ['bellhop.v1', `bearer.${token}`] : undefined);
    } catch (cause) {
      this.retry({ error: { code: 'CONNECT_FAILED', message: String(cause) } });
      return;
    }
    this.ws = ws;
    let opened = false;
    this.connectTimer = setTimeout(
      () => this.lost(ws, { error: { code: 'TIMEOUT', message: 'the hub did not answer in time' } }, !opened && token),
      this.options.connectTimeoutMs,
    );
    ws.onopen = () => {
      opened = true;
      this.greet(ws);
    };
    ws.onmessage = (event) => this.receive(typeof event.data === 'string' ? event.data : String(event.data));
    ws.onclose = (event) => this.lost(ws, { code: event.code, reason: event.reason || undefined }, !opened && token);
    ws.onerror = () => {};
  }

  /** `hello`, then the rooms and presence subscriptions back, then `connected` and the queue. */
  private async greet(ws: WebSocketLike): Promise<void> {
    try {
      const welcome: AckOf<ActionMap, 'hello'> = await this.ask('hello', undefined, this.options.connectTimeoutMs, true);
      if (ws !== this.ws) return;
      this.connectionId = welcome?.connectionId;
      const joins = [...this.rooms.values()].filter((e) => e.refs > 0).map((e) => e.join());
      const users = [...this.presenceRefs.keys()];
      if (users.length) this.subscribeUsers(users);
      await Promise.all(joins);
    } catch (error) {
      if (ws === this.ws) this.lost(ws, { error: { code: (error as BellhopError).code, message: (error as Error).message } }, false);
      return;
    }
    if (ws !== this.ws) return;
    clearTimeout(this.connectTimer);
    this.attempt = 0;
    this.setState('connected', {});
    for (const pending of this.pending.values()) if (!pending.sent) pending.sent = this.write(pending.frame);
    this.armHeartbeat();
  }

  /** The ack carries the current presences: they are delivered as `presence:changed`, like every later change. */
  private subscribeUsers(userIds: string[]): void {
    this.ask('presence:subscribe', { userIds }, undefined, true)
      .then((ack: AckOf<ActionMap, 'presence:subscribe'>) => {
        for (const presence of ack.presences) this.deliver('presence:changed', presence, { recovered: false });
      })
      .catch(() => {});
  }

  private receive(text: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === 'pong') {
      for (const waiter of this.pongWaiters) {
        clearTimeout(waiter.timer);
        waiter.resolve();
      }
      this.pongWaiters.clear();
    } else if (frame.type === 'ack') {
      const pending = frame.id === undefined ? undefined : this.pending.get(frame.id);
      if (!pending || frame.id === undefined) return;
      this.pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.ok) {
        this.setUnread((frame.data as { unreadCount?: unknown })?.unreadCount);
        pending.resolve(frame.data);
      } else {
        pending.reject(new BellhopError(frame.error?.code ?? 'INTERNAL', frame.error?.message ?? 'request failed'));
      }
    } else if (frame.type === 'event') {
      if (frame.event === 'auth:expiring') this.refreshToken();
      const entry = frame.room === undefined ? undefined : this.rooms.get(frame.room);
      if (entry && typeof frame.seq === 'number') entry.live(frame);
      else this.deliver(frame.event, frame.data, { room: frame.room, seq: frame.seq, recovered: false });
    }
  }

  /** `auth:expiring`: fetch a fresh token and hand it to the hub before the connection is closed for expiry. */
  private async refreshToken(): Promise<void> {
    try {
      const token = await this.options.getToken();
      await this.ask('auth:refresh', { token }, undefined, true);
    } catch {
      // The hub closes the connection when the token expires; the reconnect then fetches a token again.
    }
  }

  private write(frame: string): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(frame);
    } catch {
      return false;
    }
    this.armHeartbeat();
    return true;
  }

  /** The idle clock restarts with every frame in either direction; a ping nobody answers means a dead socket. */
  private armHeartbeat(): void {
    clearTimeout(this.heartbeatTimer);
    if (this.state !== 'connected') return;
    this.heartbeatTimer = setTimeout(() => this.checkAlive(), this.options.heartbeatMs);
  }

  /** Pings, and drops the socket (to reconnect) when no pong comes back in time. */
  private checkAlive(): void {
    const ws = this.ws;
    this.heartbeat(this.options.ackTimeoutMs).catch(() => {
      if (ws && ws === this.ws) this.lost(ws, { code: 4000, reason: 'heartbeat unanswered' }, false);
    });
  }

  private heartbeat(ms: number): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new BellhopError('CLOSED', 'the client was closed'));
    if (this.state !== 'connected') return Promise.reject(new BellhopError('DISCONNECTED', 'not connected; a ping is never queued'));
    return new Promise((resolve, reject) => {
      const waiter: PongWaiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.pongWaiters.delete(waiter);
          reject(new BellhopError('TIMEOUT', `no pong within ${ms} ms`));
        }, ms),
      };
      this.pongWaiters.add(waiter);
      if (!this.write(JSON.stringify({ action: 'ping' }))) {
        this.pongWaiters.delete(waiter);
        clearTimeout(waiter.timer);
        reject(new BellhopError('DISCONNECTED', 'the connection closed'));
      }
    });
  }

  /** Pings waiting for a pong on a socket that is gone will never get one. */
  private failPongs(code: string, message: string): void {
    for (const waiter of this.pongWaiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new BellhopError(code, message));
    }
    this.pongWaiters.clear();
  }

  /** The socket is gone (closed by the hub, the network, a timeout): clean up and schedule the next attempt. */
  private async lost(ws: WebSocketLike, reason: StateReason, refusedToken: string | false): Promise<void> {
    if (ws !== this.ws) return;
    this.ws = null;
    this.connectionId = undefined;
    this.clearTimers();
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(4000, 'abandoned');
    } catch {
      // Already closed.
    }
    // Sent but unanswered: idempotent requests go again after the reconnect, the others cannot know their fate.
    this.failPending((p) => p.sent && !IDEMPOTENT.has(p.action), 'DISCONNECTED', 'the connection closed before the answer');
    this.failPending((p) => p.internal, 'DISCONNECTED', 'the connection closed');
    this.failPongs('DISCONNECTED', 'the connection closed');
    for (const pending of this.pending.values()) pending.sent = false;
    for (const entry of this.rooms.values()) entry.reset();
    const generation = this.generation;
    if (refusedToken && this.options.httpUrl && typeof fetch === 'function') {
      Object.assign(reason, await this.diagnose(refusedToken));
      if (generation !== this.generation) return;
    }
    this.retry(reason);
  }

  /** Asks `GET /me` why a handshake was refused: the only place a browser can learn that a token expired. */
  private async diagnose(token: string): Promise<StateReason> {
    try {
      const answer = await fetch(`${this.options.httpUrl}/me`, { headers: { authorization: `Bearer ${token}` } });
      if (answer.ok) return {};
      const body = (await answer.json().catch(() => ({}))) as { error?: { code: string; message: string } };
      return { status: answer.status, error: body.error };
    } catch {
      return {};
    }
  }

  private retry(reason: StateReason): void {
    if (this.state === 'closed' || this.state === 'disconnected') return;
    const ceiling = Math.min(this.options.maxMs, this.options.minMs * 2 ** this.attempt);
    const delayMs = Math.floor(Math.random() * ceiling);
    this.attempt++;
    this.setState('reconnecting', { ...reason, attempt: this.attempt, delayMs }, true);
    this.retryTimer = setTimeout(() => this.open('reconnecting', { attempt: this.attempt }), delayMs);
  }

  /** Back online or back in view: try now instead of waiting out the backoff, and check a connection that looks fine. */
  private readonly wake = (): void => {
    const g = globalThis as { document?: { visibilityState?: string } };
    if (g.document?.visibilityState === 'hidden') return;
    if (this.state === 'reconnecting' && !this.ws) {
      clearTimeout(this.retryTimer);
      this.attempt = 0;
      this.open('reconnecting', { attempt: 0 });
    } else if (this.state === 'connected') {
      this.checkAlive();
    }
  };

  private watchEnvironment(): () => void {
    const g = globalThis as {
      addEventListener?: (n: string, f: () => void) => void;
      removeEventListener?: (n: string, f: () => void) => void;
      document?: { addEventListener(n: string, f: () => void): void; removeEventListener(n: string, f: () => void): void };
    };
    g.addEventListener?.('online', this.wake);
    g.document?.addEventListener('visibilitychange', this.wake);
    return () => {
      g.removeEventListener?.('online', this.wake);
      g.document?.removeEventListener('visibilitychange', this.wake);
    };
  }

  private stop(code: number, text: string): void {
    this.generation++;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    this.connectionId = undefined;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(code, text);
      } catch {
        // Already closed.
      }
    }
    this.failPending((p) => p.internal || (p.sent && !IDEMPOTENT.has(p.action)), 'DISCONNECTED', 'the client disconnected');
    this.failPongs('DISCONNECTED', 'the client disconnected');
    for (const pending of this.pending.values()) pending.sent = false;
    for (const entry of this.rooms.values()) entry.reset();
  }

  private clearTimers(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.heartbeatTimer);
  }

  private failPending(which: (p: Pending) => boolean, code: string, message: string): void {
    for (const [id, pending] of this.pending) {
      if (!which(pending)) continue;
      this.pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new BellhopError(code, message));
    }
  }

  /** Reports a change; `again` reports a state re-entered with news (each scheduled reconnect attempt). */
  private setState(to: State, reason: StateReason, again = false): void {
    const from = this.state;
    if (from === to && !again) return;
    this.state = to;
    this.events.emit('state', { from, to, reason });
  }
}
