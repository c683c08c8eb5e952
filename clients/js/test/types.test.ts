// The public API's types, checked by `tsc --noEmit` (strict): every action's request and ack and every event's data
// come from the generated protocol maps, and mistakes do not compile. At run time this only builds a client offline.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ActionMap, type ChatMessage, createClient, type EventMap, type Joined, type Sent } from 'bellhop-client';
import WS from 'ws';

type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false;
const expectType = <T extends true>(_: T) => {};

type AppEvents = EventMap & { 'appointment:created': { appointmentId: string } };

test('the client is typed by the generated protocol maps', async () => {
  const client = createClient<ActionMap, AppEvents>({
    url: 'ws://127.0.0.1:1/local',
    getToken: () => 'token',
    WebSocket: WS as any,
    autoConnect: false,
  });
  try {
    const send = () => client.request('message:send', { room: 'booking:1', content: 'hi' });
    expectType<Equal<Awaited<ReturnType<typeof send>>, Sent>>(true);
    const ping = () => client.ping();
    expectType<Equal<ReturnType<typeof ping>, Promise<void>>>(true);
    // @ts-expect-error: ping is the gateway's heartbeat, not an action with an ack
    void (() => client.request('ping'));
    client.on('message:new', (message, meta) => {
      expectType<Equal<typeof message, ChatMessage>>(true);
      expectType<Equal<typeof meta.recovered, boolean>>(true);
    });
    client.on('appointment:created', (data) => expectType<Equal<typeof data.appointmentId, string>>(true));
    client.on('state', ({ to }) => expectType<Equal<typeof to, 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed'>>(true));
    const room = client.room('booking:1');
    expectType<Equal<typeof room.ready, Promise<Joined>>>(true);
    room.on('gap', ({ fromSeq }) => expectType<Equal<typeof fromSeq, number>>(true));

    // @ts-expect-error: no such action
    void (() => client.request('message:shout', { room: 'x' }));
    // @ts-expect-error: message:send needs content
    void (() => client.request('message:send', { room: 'x' }));
    // @ts-expect-error: typing is fire-and-forget with a room
    client.send('typing:start', { roomId: 'x' });
    // @ts-expect-error: no such event
    client.on('message:shouted', () => {});
    room.leave();
  } finally {
    client.close();
  }
  assert.equal(client.state, 'closed');
});
