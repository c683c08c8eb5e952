// Rooms: recovery by seq after a disconnect and after a reload, gaps, and reference-counted joins.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SeqStorage } from 'bellhop-client';
import { closeAll, collect, connect, type Hub, startHub, until, withTimeout } from './support.js';

let hub: Hub;
before(async () => {
  hub = await startHub();
});
after(async () => {
  closeAll();
  await hub?.stop();
});

const fast = { reconnect: { minMs: 10, maxMs: 50 } };

/** Two users in one room: `a` recovers, `b` talks. */
async function pair(room: string, options: Parameters<typeof connect>[2] = {}) {
  const a = connect(hub, `a-${room}`, { ...fast, ...options });
  const b = connect(hub, `b-${room}`).client;
  const handle = a.client.room(`topic:${room}`, { recover: true });
  await withTimeout(Promise.all([handle.ready, b.room(`topic:${room}`).ready]), 10_000, 'joins');
  const say = (content: string) => b.request('message:send', { room: `topic:${room}`, content });
  return { a: a.client, wire: a.wire, b, handle, say };
}

function contents(seen: Array<{ data: any }>): string[] {
  return seen.map((e) => e.data.content);
}

function assertInOrderOnce(seen: Array<{ meta: any }>): void {
  const seqs = seen.map((e) => e.meta.seq);
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `seqs in order, once: ${seqs}`);
}

describe('recovery', () => {
  test('messages sent while a client was away arrive after it reconnects: all, once, in order, marked recovered', async () => {
    const { a, handle, say } = await pair('away');
    const seen = collect(a, 'message:new');
    a.disconnect();
    for (let i = 1; i <= 5; i++) await say(`m${i}`);
    a.connect();
    await until(a, 'five recovered messages', () => seen.length === 5);
    assert.deepEqual(contents(seen), ['m1', 'm2', 'm3', 'm4', 'm5']);
    assert.ok(seen.every((e) => e.meta.recovered && e.meta.room === 'topic:away' && e.data.seq === e.meta.seq));
    await say('live');
    await until(a, 'the live message', () => seen.length === 6);
    assert.equal(seen[5]!.meta.recovered, false);
    assertInOrderOnce(seen);
    assert.equal(handle.lastSeq, seen[5]!.meta.seq);
  });

  test('a server-side disconnect in the middle of a burst loses nothing and repeats nothing', async () => {
    const { a, say } = await pair('burst');
    const seen = collect(a, 'message:new');
    const sends: Promise<unknown>[] = [];
    for (let i = 1; i <= 20; i++) {
      sends.push(say(`b${i}`));
      if (i === 8) sends.push(hub.server.disconnect(a.connectionId!));
    }
    await withTimeout(Promise.all(sends), 10_000, 'the burst');
    await until(a, 'twenty messages', () => seen.length >= 20);
    // API Gateway invokes each frame on its own, so concurrent sends may be stored in any order: the room's seq is
    // the order, and every message arrives once in it.
    const sorted = (names: string[]) => [...names].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1)));
    assert.deepEqual(sorted(contents(seen)), Array.from({ length: 20 }, (_, i) => `b${i + 1}`));
    assertInOrderOnce(seen);
  });

  test('durable emits are recovered with their own event name', async () => {
    const { a } = await pair('emits');
    const seen = collect(a, 'appointment:created');
    a.disconnect();
    const report = await hub.server.emit({ event: 'appointment:created', data: { id: 'ap1' }, rooms: ['topic:emits'], persist: true });
    a.connect();
    await until(a, 'the recovered emit', () => seen.length === 1);
    assert.deepEqual(seen[0]!.data, { id: 'ap1' });
    assert.equal(seen[0]!.meta.seq, report.seqs?.['topic:emits']);
    assert.equal(seen[0]!.meta.recovered, true);
  });

  test('with storage, a new client (a page reload) recovers from the last seq the old one saw', async () => {
    const saved = new Map<string, string>();
    const storage: SeqStorage = { getItem: (k) => saved.get(k) ?? null, setItem: (k, v) => void saved.set(k, v) };
    const first = await pair('reload', { storage });
    const before = collect(first.a, 'message:new');
    await first.say('r1');
    await until(first.a, 'r1', () => before.length === 1);
    first.a.close();
    await first.say('r2');
    await first.say('r3');

    const again = connect(hub, 'a-reload', { ...fast, storage }).client;
    const seen = collect(again, 'message:new');
    again.room('topic:reload', { recover: true });
    await until(again, 'r2 and r3', () => seen.length === 2);
    assert.deepEqual(contents(seen), ['r2', 'r3']);
    assert.ok(seen.every((e) => e.meta.recovered));
    assert.equal(saved.get('bellhop:seq:topic:reload'), String(seen[1]!.meta.seq));
  });

  test('a hole larger than maxRecover is reported as a gap and only the newest events are recovered', async () => {
    const { a, handle, say } = await pair('gap', { maxRecover: 2 });
    const seen = collect(a, 'message:new');
    const gaps: any[] = [];
    handle.on('gap', (gap) => gaps.push(gap));
    a.disconnect();
    const acks: any[] = [];
    for (let i = 1; i <= 5; i++) acks.push(await say(`g${i}`));
    a.connect();
    await until(a, 'two recovered messages', () => seen.length === 2);
    assert.deepEqual(contents(seen), ['g4', 'g5']);
    assert.deepEqual(gaps, [{ room: 'topic:gap', fromSeq: acks[0].message.seq, toSeq: acks[2].message.seq }]);
  });

  test('a live event that arrives after a hole waits until the hole is filled from history', async () => {
    const { a, wire, say } = await pair('hole');
    const seen = collect(a, 'message:new');
    // The first live message never reaches the client, as if lost on the way; the next one reveals the hole.
    let dropped = false;
    wire.dropIn = (frame) => frame.event === 'message:new' && !dropped && (dropped = true);
    await say('lost on the way');
    await say('after the hole');
    await until(a, 'both messages', () => seen.length === 2);
    assert.deepEqual(contents(seen), ['lost on the way', 'after the hole']);
    assert.deepEqual(seen.map((e) => e.meta.recovered), [true, false]);
    assertInOrderOnce(seen);
    assert.equal(wire.count('message:history'), 1);
  });

  test('own messages count as seen: nothing is fetched or delivered back after sending', async () => {
    const { a, wire, handle, b } = await pair('own');
    const seen = collect(a, 'message:new');
    await handle.send('mine');
    const theirs = b.request('message:send', { room: 'topic:own', content: 'theirs' });
    await theirs;
    await until(a, 'their message', () => seen.length === 1);
    assert.equal(seen[0]!.data.content, 'theirs');
    assert.equal(wire.count('message:history'), 0);
  });
});

describe('reference-counted rooms', () => {
  test('two handles share one join; release and re-acquire in one tick (StrictMode) neither leaves nor joins again', async () => {
    const { client, wire } = connect(hub, 'strict');
    await withTimeout(client.ready(), 10_000, 'connected');
    const first = client.room('topic:strict');
    const second = client.room('topic:strict');
    await withTimeout(Promise.all([first.ready, second.ready]), 10_000, 'join');
    first.leave();
    second.leave();
    const third = client.room('topic:strict');
    await withTimeout(third.ready, 10_000, 'still joined');
    assert.equal(wire.count('room:join'), 1);
    assert.equal(wire.count('room:leave'), 0);
    third.leave();
    await until(client, 'the leave', () => wire.count('room:leave') === 1);
  });

  test('handles created while offline join once the client connects', async () => {
    const { client, wire } = connect(hub, 'early', { autoConnect: false });
    const room = client.room('topic:early');
    client.room('topic:early');
    client.connect();
    const ack: any = await withTimeout(room.ready, 10_000, 'join');
    assert.equal(ack.joined, true);
    assert.equal(wire.count('room:join'), 1);
  });

  test('a refused join rejects ready and is reported as denied', async () => {
    const { client } = connect(hub, 'denied');
    const room = client.room('chat:other:people');
    const denied = new Promise<any>((resolve) => room.on('denied', resolve));
    const error: any = await withTimeout(room.ready.then(() => assert.fail('joined'), (e) => e), 10_000, 'refusal');
    assert.equal(error.code, 'FORBIDDEN');
    assert.equal((await withTimeout(denied, 10_000, 'denied')).code, 'FORBIDDEN');
  });
});
