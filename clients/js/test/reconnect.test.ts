// Reconnecting after every way API Gateway ends a connection, the heartbeat, the offline queue and token refresh.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { closeAll, collect, connect, type Hub, nextEvent, nextState, startHub, token, until, withTimeout } from './support.js';

const hubs: Hub[] = [];
async function hub(options?: Parameters<typeof startHub>[0]): Promise<Hub> {
  const started = await startHub(options);
  hubs.push(started);
  return started;
}
after(async () => {
  closeAll();
  await Promise.all(hubs.map((h) => h.stop()));
});

const fast = { reconnect: { minMs: 10, maxMs: 50 } };

describe('reconnecting', () => {
  test('after a server-side DELETE @connections the client reconnects and is back in its rooms', async () => {
    const h = await hub();
    const { client: a, wire } = connect(h, 'amy', fast);
    const b = connect(h, 'ben').client;
    const room = a.room('topic:deleted');
    await withTimeout(Promise.all([room.ready, b.room('topic:deleted').ready]), 10_000, 'joins');
    const before = a.connectionId!;

    const lost = nextState(a, 'reconnecting');
    const back = until(a, 'connected again', () => a.state === 'connected' && a.connectionId !== before);
    await h.server.disconnect(before);
    assert.equal((await lost).reason.code, 1000);
    await back;
    assert.equal(wire.sockets, 2);
    assert.equal(wire.count('room:join'), 2, 'the room was joined again on the new connection');

    const arrived = nextEvent(a, 'message:new');
    await b.request('message:send', { room: 'topic:deleted', content: 'after the reconnect' });
    assert.equal((await arrived).data.content, 'after the reconnect');
  });

  test('the idle close (1001) is just another reconnect', async () => {
    const h = await hub({ idleSecs: 1 });
    const { client } = connect(h, 'cat', { ...fast, heartbeatMs: 3_600_000 });
    await withTimeout(client.ready(), 10_000, 'connected');
    const lost = await nextState(client, 'reconnecting', 15_000);
    assert.equal(lost.reason.code, 1001);
    await nextState(client, 'connected');
  });

  test('the heartbeat keeps an idle connection open', async () => {
    const h = await hub({ idleSecs: 2 });
    const { client, wire } = connect(h, 'dan', { heartbeatMs: 300 });
    await withTimeout(client.ready(), 10_000, 'connected');
    const changes = collect(client, 'state');
    const id = client.connectionId;
    // Fifteen heartbeats 300 ms apart span more than twice the 2 s idle limit.
    await until(client, 'fifteen heartbeats', () => wire.count('ping') >= 15, 20_000);
    assert.deepEqual(changes, []);
    assert.equal(client.connectionId, id);
    assert.equal(client.state, 'connected');
  });

  test('the lifetime close is just another reconnect, rooms included', async () => {
    const h = await hub({ lifetimeSecs: 2 });
    const { client, wire } = connect(h, 'eva', { ...fast, heartbeatMs: 300 });
    client.room('topic:lifetime');
    await withTimeout(client.ready(), 10_000, 'connected');
    const lost = await nextState(client, 'reconnecting', 15_000);
    assert.equal(lost.reason.code, 1001);
    await nextState(client, 'connected');
    assert.equal(wire.count('room:join'), 2);
  });

  test('an unanswered heartbeat drops the socket and reconnects', async () => {
    const h = await hub();
    const { client, wire } = connect(h, 'fay', { ...fast, heartbeatMs: 100, ackTimeoutMs: 200 });
    await withTimeout(client.ready(), 10_000, 'connected');
    wire.dropOut = (frame) => frame.action === 'ping';
    const lost = await nextState(client, 'reconnecting');
    assert.deepEqual([lost.reason.code, lost.reason.reason], [4000, 'heartbeat unanswered']);
    wire.dropOut = () => false;
    await nextState(client, 'connected');
  });
});

describe('the offline queue', () => {
  test('a message sent while reconnecting is delivered once the connection is back', async () => {
    const h = await hub();
    const { client: a } = connect(h, 'gus', fast);
    const b = connect(h, 'hal').client;
    await withTimeout(Promise.all([a.room('topic:queue').ready, b.room('topic:queue').ready]), 10_000, 'joins');
    const received = collect(b, 'message:new');
    let queued: Promise<any> | undefined;
    a.on('state', ({ to }) => {
      if (to === 'reconnecting' && !queued) queued = a.request('message:send', { room: 'topic:queue', content: 'queued' });
    });
    await h.server.disconnect(a.connectionId!);
    await until(a, 'the send to be queued', () => queued !== undefined);
    const ack = await withTimeout(queued!, 10_000, 'queued send');
    assert.equal(ack.message.content, 'queued');
    await until(a, 'the message to arrive', () => received.length === 1);
  });

  test('a send whose ack was lost is re-sent with the same clientMsgId and stored once', async () => {
    const h = await hub();
    const { client: a, wire } = connect(h, 'ida', fast);
    const b = connect(h, 'jon').client;
    const room = a.room('topic:dedupe');
    await withTimeout(Promise.all([room.ready, b.room('topic:dedupe').ready]), 10_000, 'joins');
    const received = collect(b, 'message:new');
    // The hub stores and delivers the message, but its first ack never reaches the client.
    const sendIds = new Set<string>();
    wire.dropIn = (frame) => frame.type === 'ack' && sendIds.delete(frame.id);
    const sending = room.send('exactly once');
    const first = wire.sent.at(-1)!;
    sendIds.add(first.id!);
    await until(a, 'the message to arrive', () => received.length === 1);
    await h.server.disconnect(a.connectionId!);
    const ack: any = await withTimeout(sending, 10_000, 'the re-sent message');
    assert.equal(ack.duplicate, true);
    const resent = wire.sent.filter((f) => f.action === 'message:send');
    assert.equal(resent.length, 2);
    assert.equal(resent[1]!.data.clientMsgId, first.data.clientMsgId);
    const history: any = await b.request('message:history', { room: 'topic:dedupe' });
    assert.equal(history.events.length, 1);
    assert.equal(received.length, 1);
  });
});

describe('tokens', () => {
  test('the hub warns before the token expires, the client refreshes it, and the connection outlives it', async () => {
    // No leeway, and the warning 3 s ahead: the first token lives 4 s, so the hub warns after about 1 s and would
    // close the connection at 4 s unless the refresh took.
    const h = await hub({ env: { JWT_LEEWAY_SECONDS: '0', TOKEN_EXPIRY_WARNING_SECONDS: '3' } });
    let issued = 0;
    const firstExpiry = Math.floor(Date.now() / 1000) + 4;
    const { client, wire } = connect(h, 'kay', {
      getToken: () => {
        issued++;
        return issued === 1 ? token('kay', { exp: firstExpiry }) : token('kay', {}, 600);
      },
    });
    await withTimeout(client.ready(), 10_000, 'connected');
    const connectionId = client.connectionId;

    await until(client, 'auth:refresh sent', () => wire.count('auth:refresh') === 1);
    // Wait, by the clock, until the first token is past its expiry, then check the same socket still answers.
    await until(client, 'the first token expired', () => Date.now() / 1000 > firstExpiry + 1, 15_000);
    // A request the message function answers (it checks the token; a ping, answered by the gateway, would not).
    const unread = await client.request('notification:unreadCount', undefined, { timeoutMs: 5_000 });

    assert.equal(issued, 2);
    assert.equal(unread.unreadCount, 0);
    assert.equal(client.state, 'connected');
    assert.equal(client.connectionId, connectionId, 'the connection was kept, not replaced');
  });

  test('a reconnect asks for a fresh token', async () => {
    const h = await hub();
    const tokens: string[] = [];
    const { client } = connect(h, 'lee', {
      ...fast,
      getToken: () => {
        tokens.push(token('lee', { n: tokens.length }));
        return tokens.at(-1)!;
      },
    });
    await withTimeout(client.ready(), 10_000, 'connected');
    const id = client.connectionId!;
    await h.server.disconnect(id);
    await until(client, 'connected again', () => client.state === 'connected' && client.connectionId !== id);
    assert.equal(tokens.length, 2);
    assert.notEqual(tokens[0], tokens[1]);
  });
});
