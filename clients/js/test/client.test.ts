// Connecting, requests and their acks, every error path, and how a refused handshake is explained.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BellhopError, createClient } from 'bellhop-client';
import WS from 'ws';
import { closeAll, connect, type Hub, nextEvent, nextState, rejectionOf, startHub, token, withTimeout } from './support.js';

let hub: Hub;
before(async () => {
  hub = await startHub();
});
after(async () => {
  closeAll();
  await hub?.stop();
});

const rejection = (promise: Promise<unknown>) => rejectionOf(promise, BellhopError);

describe('connecting', () => {
  test('a client connects with the token in the bearer subprotocol and says hello', async () => {
    const { client, wire } = connect(hub, 'alice');
    const change = await nextState(client, 'connected');
    assert.equal(change.from, 'connecting');
    assert.ok(client.connectionId, 'hello answered with a connection id');
    assert.equal(wire.sent[0]?.action, 'hello');
    assert.equal(wire.sockets, 1);
  });

  test('the token can travel in the query string instead', async () => {
    const { client } = connect(hub, 'bob', { tokenIn: 'query' });
    await withTimeout(client.ready(), 10_000, 'connected');
    const hello = await client.request('hello', undefined);
    assert.equal(hello.connectionId, client.connectionId);
  });

  test('getToken is asked for a token on every connect', async () => {
    let calls = 0;
    const client = createClient({
      url: hub.wsUrl,
      WebSocket: WS as any,
      getToken: async () => {
        calls++;
        return token('carol');
      },
    });
    try {
      await withTimeout(client.ready(), 10_000, 'connected');
      client.disconnect();
      client.connect();
      await withTimeout(client.ready(), 10_000, 'connected again');
      assert.equal(calls, 2);
    } finally {
      client.close();
    }
  });

  test('an expired token is refused, and the state says why from GET /me', async () => {
    const client = createClient({
      url: hub.wsUrl,
      WebSocket: WS as any,
      getToken: () => token('dave', {}, -120),
      reconnect: { minMs: 60_000, maxMs: 60_000 },
    });
    try {
      const change = await nextState(client, 'reconnecting');
      assert.equal(change.reason.status, 401);
      assert.equal(change.reason.error.code, 'TOKEN_EXPIRED');
      assert.equal(change.reason.error.message, 'Authentication error: Token expired');
      assert.equal(change.reason.attempt, 1);
    } finally {
      client.close();
    }
  });

  test('reconnects back off with full jitter under a doubling ceiling, forever', async () => {
    const client = createClient({
      url: hub.wsUrl,
      WebSocket: WS as any,
      getToken: () => token('gil', {}, -120),
      reconnect: { minMs: 10, maxMs: 40 },
      httpUrl: null,
    });
    const attempts: Array<{ attempt: number; delayMs: number }> = [];
    try {
      await withTimeout(
        new Promise<void>((resolve) =>
          client.on('state', ({ to, reason }) => {
            if (to !== 'reconnecting' || reason.attempt === undefined) return;
            attempts.push({ attempt: reason.attempt, delayMs: reason.delayMs! });
            if (attempts.length === 5) resolve();
          }),
        ),
        10_000,
        'five attempts',
      );
    } finally {
      client.close();
    }
    assert.deepEqual(attempts.map((a) => a.attempt), [1, 2, 3, 4, 5]);
    const ceilings = [10, 20, 40, 40, 40];
    attempts.forEach(({ delayMs }, i) => assert.ok(delayMs >= 0 && delayMs < ceilings[i]!, `attempt ${i + 1} waited ${delayMs} ms`));
  });

  test('bad options are refused with a clear error', () => {
    assert.throws(() => createClient({ url: 'http://127.0.0.1/local', getToken: () => 't', WebSocket: WS as any }), /ws:\/\/ or wss:\/\//);
    assert.throws(() => createClient({ url: hub.wsUrl, getToken: 't' as any, WebSocket: WS as any }), /getToken/);
  });

  test('a token signed with another secret is refused as INVALID_TOKEN', async () => {
    const forged = token('eve').replace(/\.[^.]+$/, '.AAAA');
    const client = createClient({ url: hub.wsUrl, WebSocket: WS as any, getToken: () => forged, reconnect: { minMs: 60_000 } });
    try {
      const change = await nextState(client, 'reconnecting');
      assert.equal(change.reason.error.code, 'INVALID_TOKEN');
    } finally {
      client.close();
    }
  });

  test('getToken failing with UNAUTHORIZED stops retrying until connect()', async () => {
    const client = createClient({
      url: hub.wsUrl,
      WebSocket: WS as any,
      getToken: () => {
        throw new BellhopError('UNAUTHORIZED', 'signed out');
      },
    });
    try {
      const change = await nextState(client, 'disconnected');
      assert.deepEqual(change.reason.error, { code: 'UNAUTHORIZED', message: 'signed out' });
    } finally {
      client.close();
    }
  });

  test('close() rejects what is pending and ends in closed', async () => {
    const { client } = connect(hub, 'frank', { autoConnect: false });
    const queued = client.request('presence:get', { userIds: ['frank'] });
    client.close();
    assert.equal((await rejection(queued)).code, 'CLOSED');
    assert.equal(client.state, 'closed');
  });
});

describe('requests and acks', () => {
  test('an ack resolves with its data', async () => {
    const { client } = connect(hub, 'gina');
    const ack: any = await client.request('room:join', { room: 'topic:acks' });
    assert.equal(ack.room, 'topic:acks');
    assert.equal(ack.joined, true);
  });

  test('every error code from the hub rejects with that code', async () => {
    const { client } = connect(hub, 'hank');
    await withTimeout(client.ready(), 10_000, 'connected');
    const cases: Array<[string, unknown, string]> = [
      ['dance', {}, 'UNKNOWN_ACTION'],
      ['message:send', { room: 'topic:x' }, 'INVALID_DATA'],
      ['room:join', { room: 'no spaces allowed' }, 'INVALID_ROOM'],
      ['room:join', { room: 'chat:ivy:jack' }, 'FORBIDDEN'],
      ['room:join', { room: 'booking:never-opened' }, 'NOT_FOUND'],
      ['message:send', { room: 'topic:not-joined', content: 'hi' }, 'FORBIDDEN'],
      ['message:send', { room: 'topic:x', content: 'x'.repeat(5000) }, 'PAYLOAD_TOO_LARGE'],
      ['call:accept', { callId: 'no-such-call' }, 'NOT_FOUND'],
    ];
    for (const [action, data, code] of cases) {
      const error = await rejection(client.request(action as any, data as any));
      assert.equal(error.code, code, `${action} ${JSON.stringify(data).slice(0, 60)}: ${error.message}`);
      assert.ok(error.message.length > 0);
    }
  });

  test('a request nobody answers rejects with TIMEOUT', async () => {
    const { client, wire } = connect(hub, 'ivy');
    await withTimeout(client.ready(), 10_000, 'connected');
    wire.dropOut = (frame) => frame.action === 'presence:get';
    const error = await rejection(client.request('presence:get', { userIds: ['ivy'] }, { timeoutMs: 200 }));
    assert.equal(error.code, 'TIMEOUT');
    assert.equal(error.retryable, true);
  });

  test('a non-idempotent request while offline rejects with DISCONNECTED at once', async () => {
    const { client } = connect(hub, 'jack', { autoConnect: false });
    const error = await rejection(client.request('call:initiate', { recipientId: 'ivy', callType: 'audio' }));
    assert.equal(error.code, 'DISCONNECTED');
  });

  test('a non-idempotent request in flight when the connection drops rejects with DISCONNECTED', async () => {
    const { client, wire } = connect(hub, 'kim');
    await withTimeout(client.ready(), 10_000, 'connected');
    wire.dropOut = (frame) => frame.action === 'call:initiate';
    const pending = client.request('call:initiate', { recipientId: 'lou', callType: 'video' });
    await hub.server.disconnect(client.connectionId!);
    assert.equal((await rejection(pending)).code, 'DISCONNECTED');
  });

  test('send is fire-and-forget; its failure arrives as an error event', async () => {
    const { client } = connect(hub, 'lou');
    await withTimeout(client.ready(), 10_000, 'connected');
    const failure = nextEvent(client, 'error');
    assert.equal(client.send('room:join', { room: 'bad room' } as any), true);
    const { data } = await failure;
    assert.equal(data.code, 'INVALID_ROOM');
  });

  test('the offline queue is bounded', async () => {
    const { client } = connect(hub, 'mia', { autoConnect: false, queueLimit: 2 });
    const queued = [client.request('notification:unreadCount', undefined), client.request('notification:unreadCount', undefined)];
    const error = await rejection(client.request('notification:unreadCount', undefined));
    assert.equal(error.code, 'DISCONNECTED');
    client.connect();
    const answers = await withTimeout(Promise.all(queued), 10_000, 'queued requests');
    assert.ok(answers.every((a) => a.unreadCount === 0));
  });

  test('ping resolves on the gateway\'s pong, sends no id and is never queued', async () => {
    const { client, wire } = connect(hub, 'pia', { autoConnect: false });
    assert.equal((await rejection(client.ping())).code, 'DISCONNECTED');
    client.connect();
    await withTimeout(client.ready(), 10_000, 'connected');
    await withTimeout(Promise.all([client.ping(), client.ping({ timeoutMs: 5_000 })]), 10_000, 'two pings');
    const pings = wire.sent.filter((frame) => frame.action === 'ping');
    assert.deepEqual(pings, [{ action: 'ping' }, { action: 'ping' }]);
    // It is the pong that answers: without one, the ping times out.
    wire.dropIn = (frame) => frame.type === 'pong';
    assert.equal((await rejection(client.ping({ timeoutMs: 300 }))).code, 'TIMEOUT');
  });
});

describe('domain helpers', () => {
  test('typing reaches the other member and stops by itself', async () => {
    const a = connect(hub, 'nia').client;
    const b = connect(hub, 'omar').client;
    const roomA = a.room('topic:typing');
    const roomB = b.room('topic:typing');
    await withTimeout(Promise.all([roomA.ready, roomB.ready]), 10_000, 'joins');
    const started = nextEvent(b, 'typing:start');
    roomA.startTyping();
    assert.equal((await started).data.userId, 'nia');
    const stopped = nextEvent(b, 'typing:stop');
    roomA.stopTyping();
    assert.equal((await stopped).meta.room, 'topic:typing');
  });

  test('presence subscribe delivers the current presence, then changes', async () => {
    // Presence is visible only within a private conversation both may enter, such as a granted booking.
    await hub.server.grant('booking:presence', ['pia', 'quinn']);
    const a = connect(hub, 'pia').client;
    const b = connect(hub, 'quinn').client;
    await withTimeout(Promise.all([a.room('booking:presence').ready, b.room('booking:presence').ready]), 10_000, 'joins');
    const seen: any[] = [];
    const first = new Promise<void>((resolve) => {
      a.subscribePresence(['quinn'], (presence) => {
        seen.push(presence);
        if (seen.length === 1) resolve();
      });
    });
    await withTimeout(first, 10_000, 'current presence');
    assert.equal(seen[0].status, 'online');
    const changed = nextEvent(a, 'presence:changed', (p) => p.status === 'busy');
    await b.request('presence:set', { status: 'busy' });
    await changed;
    assert.equal(seen.at(-1).status, 'busy');
  });

  test('read receipts and the unread notification count', async () => {
    const a = connect(hub, 'ray').client;
    const b = connect(hub, 'sue').client;
    const roomA = a.room('topic:receipts');
    const roomB = b.room('topic:receipts');
    await withTimeout(Promise.all([roomA.ready, roomB.ready]), 10_000, 'joins');
    const arrived = nextEvent(b, 'message:new');
    const sent: any = await roomA.send('read me');
    await arrived;
    const receipt = nextEvent(a, 'message:read');
    await withTimeout(roomB.markRead(), 10_000, 'markRead');
    assert.equal((await receipt).data.seq, sent.message.seq);

    const unread = new Promise<number>((resolve) => b.on('unread', resolve));
    await hub.server.emit({ event: 'booking:confirmed', users: ['sue'], notification: { title: 'Booked', message: 'See you' } });
    assert.equal(await withTimeout(unread, 10_000, 'unread'), 1);
    await b.readNotifications();
    assert.equal(b.unread, 0);
  });

  test('a call handle filters its events and relays signals', async () => {
    // Calls, like presence, reach only people one shares a private conversation with.
    await hub.server.grant('visit:calls', ['tom', 'uma']);
    const a = connect(hub, 'tom').client;
    const b = connect(hub, 'uma').client;
    await withTimeout(Promise.all([a.room('visit:calls').ready, b.room('visit:calls').ready]), 10_000, 'joins');
    const incoming = nextEvent(b, 'call:incoming');
    const started: any = await a.request('call:initiate', { recipientId: 'uma', callType: 'video' });
    const callId = (await incoming).data.callId;
    assert.equal(callId, started.callId);
    const callerSide = a.call(callId);
    const calleeSide = b.call(callId);
    const accepted = new Promise((resolve) => callerSide.on('accepted', resolve));
    await calleeSide.accept();
    await withTimeout(accepted, 10_000, 'call:accepted');
    const signal = new Promise<any>((resolve) => calleeSide.on('signal', resolve));
    await callerSide.signal({ sdp: 'offer' });
    assert.deepEqual((await withTimeout(signal, 10_000, 'call:signal')).payload, { sdp: 'offer' });
    const ended = new Promise<any>((resolve) => calleeSide.on('ended', resolve));
    await callerSide.end();
    assert.equal((await withTimeout(ended, 10_000, 'call:ended')).endedBy, 'tom');
    callerSide.dispose();
    calleeSide.dispose();
  });
});
