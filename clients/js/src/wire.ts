/**
 * The frame envelopes of Bellhop's v1 protocol, and the few payload fields the client's runtime reads itself (the
 * `lastSeq` of a join, the pages of `message:history`, the `seq` of a sent message, unread counts). Everything an
 * application reads is typed by the generated protocol maps instead; these shapes only let the runtime do its job
 * without depending on the whole protocol.
 */

/** `{"type":"ack"}`: the answer to a request that carried an `id`. */
export interface AckFrame {
  type: 'ack';
  id?: string;
  ok: boolean;
  data?: unknown;
  error?: { code: string; message: string };
}

/** `{"type":"event"}`: pushed by the hub. Durable room events carry the room's `seq`. */
export interface EventFrame {
  type: 'event';
  event: string;
  room?: string;
  seq?: number;
  data: unknown;
}

/** One entry of a `message:history` page. */
export interface HistoryEntry {
  seq: number;
  event: string;
  data: unknown;
}

export interface HistoryPage {
  events: HistoryEntry[];
  hasMore: boolean;
}

/** What every listener gets next to the event's data. */
export interface EventMeta {
  /** The room the event was addressed to, when it came through a room. */
  room?: string;
  /** The room's sequence number, for durable events. */
  seq?: number;
  /** True when the event was missed while away and fetched from the room's history. */
  recovered: boolean;
}
