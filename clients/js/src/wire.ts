/**
 * What the client adds to the generated protocol types (`generated/protocol.ts`): where an event came from. The frame
 * envelopes and every payload the runtime reads are the generated ones.
 */
import type { ServerFrame } from './generated/protocol.js';

/** An `event` frame. */
export type EventFrame = Extract<ServerFrame, { type: 'event' }>;

/** What every listener gets next to the event's data. */
export interface EventMeta {
  /** The room the event was addressed to, when it came through a room. */
  room?: string;
  /** The room's sequence number, for durable events. */
  seq?: number;
  /** True when the event was missed while away and fetched from the room's history. */
  recovered: boolean;
}
