/**
 * `bellhop-client/react`: hooks over one client provided by `<BellhopProvider client={client}>`.
 *
 * Create the client once, outside components (module scope), so no render or remount can open a second socket.
 * Rooms and presence subscriptions are reference-counted with a deferred release, so React StrictMode's
 * mount → unmount → mount costs one join and no leave.
 */
import { createContext, createElement, type ReactNode, useContext, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import type { Client } from './client.js';
import type { ActionMap, EventMap, Presence } from './generated/protocol.js';
import type { Room, RoomOptions } from './room.js';
import type { State } from './types.js';
import type { EventMeta } from './wire.js';

const BellhopContext = createContext<Client<any, any> | null>(null);

export function BellhopProvider(props: { client: Client<any, any>; children?: ReactNode }) {
  return createElement(BellhopContext.Provider, { value: props.client }, props.children);
}

/** The provided client and its connection state (re-rendering on every change). */
export function useBellhop<A = ActionMap, E = EventMap>(): { client: Client<A, E>; state: State } {
  const client = useContext(BellhopContext);
  if (!client) throw new Error('bellhop-client/react: wrap the tree in <BellhopProvider client={client}>');
  const state = useSyncExternalStore(
    (notify) => client.on('state', notify),
    () => client.state,
    () => client.state,
  );
  return { client, state };
}

/** A handle on `name` while the component is mounted (`null` before the first effect, or without a name). */
export function useRoom<E = EventMap>(name: string | null | undefined, options?: RoomOptions): Room<E> | null {
  const { client } = useBellhop<ActionMap, E>();
  const [room, setRoom] = useState<Room<E> | null>(null);
  const recover = options?.recover ?? false;
  useEffect(() => {
    if (!name) return;
    const handle = client.room(name, { recover });
    setRoom(handle);
    return () => handle.leave();
  }, [client, name, recover]);
  return room && room.name === name ? room : null;
}

/** Calls `handler` for hub event `event` (only those addressed to `room`, when given) while mounted. */
export function useEvent<E = EventMap, K extends keyof E & string = keyof E & string>(
  event: K,
  handler: (data: E[K], meta: EventMeta) => void,
  room?: string,
): void {
  const { client } = useBellhop<any, E>();
  const latest = useRef(handler);
  useEffect(() => {
    latest.current = handler;
  });
  useEffect(
    () =>
      client.events.on(event, (data: E[K], meta: EventMeta) => {
        if (!room || meta?.room === room) latest.current(data, meta);
      }),
    [client, event, room],
  );
}

/** The presence of `userIds` by user id, kept current through `presence:subscribe` while mounted. */
export function usePresence(userIds: string[]): Record<string, Presence> {
  const { client } = useBellhop();
  const key = [...userIds].sort().join('\n');
  const [presences, setPresences] = useState<Record<string, Presence>>({});
  useEffect(() => {
    if (!key) return;
    return client.subscribePresence(key.split('\n'), (presence) =>
      setPresences((previous) => ({ ...previous, [presence.userId]: presence })),
    );
  }, [client, key]);
  return presences;
}
