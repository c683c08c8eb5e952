/**
 * `bellhop-client`: the browser and Node client of the Bellhop hub.
 *
 * ```ts
 * const client = createClient({ url: 'wss://rt.example.com/prod', getToken: () => fetchToken() });
 * const room = client.room('booking:42', { recover: true });
 * room.on('message:new', (message, { recovered }) => render(message));
 * await room.send('Hi');
 * ```
 */
import { Client, type ClientOptions } from './client.js';
import type { ActionMap, EventMap } from './generated/protocol.js';

export { Client } from './client.js';
export { randomId } from './id.js';
export type { CallHandle, ClientOptions, RequestOptions } from './client.js';
export { BellhopError } from './errors.js';
export { Room } from './room.js';
export type { RoomEvents, RoomHandler, RoomOptions } from './room.js';
export type * from './types.js';
export type { EventMeta } from './wire.js';
/** Every request, ack and event payload of the protocol, generated from the hub's Rust types. */
export type * from './generated/protocol.js';

/**
 * Creates a client and (unless `autoConnect: false`) connects it. Type parameters: the action map and the event map,
 * Bellhop's own by default; add the events your services emit with `EventMap & { 'appointment:created': ... }`.
 */
export function createClient<A = ActionMap, E = EventMap>(options: ClientOptions): Client<A, E> {
  return new Client<A, E>(options);
}
