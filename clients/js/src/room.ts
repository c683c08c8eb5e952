/**
 * Rooms: one shared entry per room name (reference count, join state, the last `seq` seen, recovery), and the
 * handles components hold on it.
 *
 * Durable room events carry the room's `seq`. An entry delivers each `seq` once: duplicates are dropped, and in a
 * room joined with `recover`, events are delivered in `seq` order: a hole (a disconnect, or a live event overtaking
 * another) is filled from `message:history` before anything after it is delivered, and what history no longer holds
 * is announced as a `gap`. The sender's own messages are never pushed back to it, so the `seq` in a send's ack counts
 * as seen.
 */
import type { Client } from './client.js';
import { Emitter } from './emitter.js';
import type { BellhopError } from './errors.js';
import type { EventMap, HistoryPage, Joined, MessagesRead, SendMessage, Sent } from './generated/protocol.js';
import type { Gap } from './types.js';
import type { EventFrame, EventMeta } from './wire.js';

export interface RoomOptions {
  /** Fetch missed durable events after reconnects (and after reloads, with the client's `storage`). */
  recover?: boolean;
}

/** A room handle's own events, next to the hub's events addressed to the room. */
export interface RoomEvents {
  gap: Gap;
  /** Every successful join and re-join, with the join's ack. */
  joined: Joined;
  /** A join or re-join was refused (`FORBIDDEN`, `NOT_FOUND`…). */
  denied: BellhopError;
}

export type RoomHandler<E, K> = K extends keyof RoomEvents
  ? (payload: RoomEvents[K]) => void
  : K extends keyof E
    ? (data: E[K], meta: EventMeta) => void
    : never;

const PAGE = 100;
/** Out-of-order seqs remembered in a room without recovery before the oldest hole is given up on. */
const MAX_AHEAD = 64;
/** Typing indicators: re-sent at most this often while typing goes on, stopped after this long without input. */
const TYPING_REPEAT_MS = 3000;
const TYPING_IDLE_MS = 5000;

/** @internal The state of one room, shared by all its handles. */
export class RoomEntry {
  refs = 0;
  recover = false;
  readonly events = new Emitter();
  /** Highest `seq` up to which everything was delivered or seen; `undefined` until the first join answers. */
  last: number | undefined;
  /** Seqs seen beyond `last + 1` (own sends, events that overtook others). */
  private readonly ahead = new Set<number>();
  /** While joining or recovering, live durable events wait here so that order holds. */
  private busy = false;
  private buffer: EventFrame[] = [];
  private joined = false;
  private leaveTimer: ReturnType<typeof setTimeout> | undefined;
  readonly ready: Promise<Joined>;
  private settle!: { resolve: (ack: Joined) => void; reject: (error: BellhopError) => void };

  constructor(
    private readonly client: Client<any, any>,
    readonly name: string,
  ) {
    this.ready = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // Nobody has to wait for the first join; a refusal is also reported as `denied`.
    this.ready.catch(() => {});
  }

  acquire(recover: boolean): void {
    clearTimeout(this.leaveTimer);
    this.recover ||= recover;
    if (++this.refs === 1 && !this.joined && !this.busy && this.client.state === 'connected') this.join();
  }

  release(): void {
    if (--this.refs > 0) return;
    // Deferred, so that a release followed at once by an acquire (React StrictMode's unmount and remount) neither
    // leaves nor joins again.
    this.leaveTimer = setTimeout(() => {
      if (this.refs > 0) return;
      this.client.rooms.delete(this.name);
      if (this.joined && this.client.state === 'connected') {
        this.client.ask('room:leave', { room: this.name }, undefined, false).catch(() => {});
      }
      this.joined = false;
    });
  }

  /** Joins (or re-joins after a reconnect), then catches up. Never throws: refusals are reported as `denied`. */
  async join(): Promise<void> {
    this.busy = true;
    try {
      const storage = this.client.options.storage;
      if (this.last === undefined && this.recover && storage) {
        const stored = Number(await storage.getItem(this.key()));
        if (stored > 0) this.last = stored;
      }
      const ack: Joined = await this.client.ask('room:join', { room: this.name }, undefined, true);
      this.joined = true;
      this.settle.resolve(ack);
      this.events.emit('joined', ack);
      await this.catchUp(ack.lastSeq);
    } catch (error) {
      const code = (error as BellhopError).code;
      if (code !== 'DISCONNECTED' && code !== 'CLOSED' && code !== 'TIMEOUT') {
        this.settle.reject(error as BellhopError);
        this.events.emit('denied', error);
      }
    } finally {
      this.busy = false;
      this.drain();
    }
  }

  /** After a join: recovering rooms fetch what they missed up to `latest`; the others just start counting there. */
  private async catchUp(latest: number): Promise<void> {
    if (this.last === undefined || !this.recover) {
      if (this.last === undefined || latest > this.last) this.setLast(latest);
      return;
    }
    const max = this.client.options.maxRecover;
    if (latest - this.last > max) {
      this.gap(this.last + 1, latest - max);
      this.setLast(latest - max);
    }
    if (latest > this.last) await this.fetchMissed();
  }

  /** Pages through `message:history` after `last`, delivering each event once, in order, marked `recovered`. */
  private async fetchMissed(): Promise<void> {
    for (;;) {
      const from = this.last as number;
      const page: HistoryPage = await this.client.ask(
        'message:history',
        { room: this.name, afterSeq: from, limit: PAGE },
        undefined,
        true,
      );
      for (const entry of page.events) {
        const next = (this.last as number) + 1;
        if (entry.seq > next && !this.ahead.has(next)) {
          // History starts after the hole: those events are gone for good.
          this.gap(next, entry.seq - 1);
          this.setLast(entry.seq - 1);
        }
        if (this.accept(entry.seq)) {
          // An event that also arrived live while waiting is delivered as it arrived, not as recovered.
          const live = this.buffer.find((f) => f.seq === entry.seq);
          if (live) {
            this.client.deliver(live.event, live.data, { room: this.name, seq: entry.seq, recovered: false });
            continue;
          }
          // Live `message:new` frames carry the seq inside the message too; recovered ones look the same.
          const data =
            entry.event === 'message:new' && entry.data && typeof entry.data === 'object'
              ? { ...entry.data, seq: entry.seq }
              : entry.data;
          this.client.deliver(entry.event, data, { room: this.name, seq: entry.seq, recovered: true });
        }
      }
      if (!page.hasMore || page.events.length === 0 || this.last === from) return;
    }
  }

  /** A live durable event for this room. */
  live(frame: EventFrame): void {
    const seq = frame.seq as number;
    if (this.busy || (!this.joined && this.refs > 0)) {
      this.buffer.push(frame);
      return;
    }
    if (this.last !== undefined) {
      if (seq <= this.last || this.ahead.has(seq)) return;
      if (this.recover && seq > this.last + 1) {
        this.buffer.push(frame);
        this.fill();
        return;
      }
      this.accept(seq);
    }
    this.client.deliver(frame.event, frame.data, { room: frame.room, seq, recovered: false });
  }

  /** A live event overtook others: fetch the ones in between before delivering it. */
  private fill(): void {
    this.busy = true;
    this.fetchMissed()
      .catch(() => {})
      .finally(() => {
        this.busy = false;
        // What history could not supply before the waiting events is lost: say so once rather than ask again.
        const first = Math.min(...this.buffer.map((f) => f.seq as number));
        const next = (this.last as number) + 1;
        if (this.joined && first > next && !this.ahead.has(next)) {
          this.gap(next, first - 1);
          this.setLast(first - 1);
        }
        this.drain();
      });
  }

  /** The `seq` of a message this connection sent: the hub does not echo it, so it counts as seen here. */
  sent(seq: unknown): void {
    if (typeof seq === 'number' && this.last !== undefined) this.accept(seq);
  }

  /** The connection is gone: the next connection must join again. */
  reset(): void {
    this.joined = false;
  }

  dispose(): void {
    clearTimeout(this.leaveTimer);
  }

  private drain(): void {
    const waiting = this.buffer.sort((a, b) => (a.seq as number) - (b.seq as number));
    this.buffer = [];
    for (const frame of waiting) this.live(frame);
  }

  /** Marks `seq` seen; false when it already was. */
  private accept(seq: number): boolean {
    let last = this.last as number;
    if (seq <= last || this.ahead.has(seq)) return false;
    this.ahead.add(seq);
    while (this.ahead.delete(last + 1)) last++;
    if (this.ahead.size > MAX_AHEAD) {
      last = Math.max(...this.ahead);
      this.ahead.clear();
    }
    this.setLast(last);
    return true;
  }

  private setLast(seq: number): void {
    if (seq === this.last) return;
    this.last = seq;
    if (this.recover) this.client.options.storage?.setItem(this.key(), String(seq));
  }

  private gap(fromSeq: number, toSeq: number): void {
    const gap: Gap = { room: this.name, fromSeq, toSeq };
    this.events.emit('gap', gap);
    this.client.events.emit('gap', gap);
  }

  private key(): string {
    return `bellhop:seq:${this.name}`;
  }
}

/**
 * A component's handle on a room. Listeners added through it are removed by `leave()`, and the room is left when its
 * last handle leaves.
 */
export class Room<E = EventMap> {
  readonly name: string;
  /** Resolves with the first join's ack; rejects when that join is refused. */
  readonly ready: Promise<Joined>;
  private readonly offs: Array<() => void> = [];
  private left = false;
  private typingSentAt = 0;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;

  /** @internal */
  constructor(
    private readonly client: Client,
    private readonly entry: RoomEntry,
    options?: RoomOptions,
  ) {
    this.name = entry.name;
    this.ready = entry.ready;
    entry.acquire(options?.recover ?? false);
  }

  /** The highest `seq` delivered (or sent) in this room so far. */
  get lastSeq(): number | undefined {
    return this.entry.last;
  }

  /** Listens to hub events addressed to this room, or to `gap`, `joined`, `denied`. */
  on<K extends (keyof E | keyof RoomEvents) & string>(event: K, handler: RoomHandler<E, K>): () => void {
    const off = this.entry.events.on(event, handler);
    this.offs.push(off);
    return off;
  }

  /** `message:send` with a `clientMsgId`, so the offline queue and retries never store it twice. Stops typing. */
  async send(content: string, extra?: Omit<SendMessage, 'room' | 'content'>): Promise<Sent> {
    this.stopTyping();
    const ack: Sent = await this.client.request('message:send', { room: this.name, content, ...extra });
    this.entry.sent(ack.message.seq);
    return ack;
  }

  /** Marks the room read up to `seq` (default: the last `seq` seen): a read receipt for the other members. */
  markRead(seq?: number): Promise<MessagesRead> {
    return this.client.request('message:read', { room: this.name, seq: seq ?? this.entry.last ?? 0 });
  }

  /**
   * Says the user is typing: sends `typing:start` at most every 3 s while called, and `typing:stop` after 5 s without
   * a call (or on `stopTyping()`, `send()`, `leave()`). Volatile: never queued while offline.
   */
  startTyping(): void {
    const now = Date.now();
    if (now - this.typingSentAt >= TYPING_REPEAT_MS && this.client.send('typing:start', { room: this.name })) {
      this.typingSentAt = now;
    }
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping(): void {
    clearTimeout(this.typingTimer);
    if (this.typingSentAt) this.client.send('typing:stop', { room: this.name });
    this.typingSentAt = 0;
  }

  /** Drops this handle's listeners and its reference; the last handle out leaves the room. */
  leave(): void {
    if (this.left) return;
    this.left = true;
    this.stopTyping();
    for (const off of this.offs) off();
    this.entry.release();
  }
}
