// bellhop-client/server against the real internal API: emits, idempotent retries, typed errors; and the CommonJS build.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { createServerClient, EmitError } from 'bellhop-client/server';
import { closeAll, collect, connect, type Hub, nextEvent, rejectionOf, startHub, until, withTimeout } from './support.js';

let hub: Hub;
before(async () => {
  hub = await startHub();
});
after(async () => {
  closeAll();
  await hub?.stop();
});

const emitError = (promise: Promise<unknown>) => rejectionOf(promise, EmitError);

describe('emit', () => {
  test('an emit to a granted room reaches its members', async () => {
    await hub.server.grant('booking:42', ['client-1', 'owner-1']);
    const { client } = connect(hub, 'client-1');
    await withTimeout(client.room('booking:42').ready, 10_000, 'join');
    const arrived = nextEvent(client, 'booking:status_changed');
    const report = await hub.server.emit({ event: 'booking:status_changed', data: { status: 'confirmed' }, rooms: ['booking:42'], persist: true });
    assert.equal(report.delivered, 1);
    assert.equal(report.duplicate, false);
    const { data, meta } = await arrived;
    assert.deepEqual(data, { status: 'confirmed' });
    assert.equal(meta.seq, report.seqs?.['booking:42']);
  });

  test('a retry after a failed attempt carries the same idempotencyKey and delivers once', async () => {
    const { client } = connect(hub, 'bot-watcher');
    await withTimeout(client.room('topic:retries').ready, 10_000, 'join');
    const seen = collect(client, 'appointment:created');
    const keys: string[] = [];
    let calls = 0;
    const flaky: typeof fetch = async (input, init) => {
      keys.push(JSON.parse(String(init?.body)).idempotencyKey);
      // The first attempt reaches the hub, but its answer is lost on the way back.
      const answer = await fetch(input, init);
      if (++calls === 1) throw new TypeError('socket hang up');
      return answer;
    };
    const server = createServerClient({ url: hub.httpUrl, apiKey: 'bellhop-dev-internal-key', fetch: flaky, retryDelayMs: 1 });
    const report = await server.emit({ event: 'appointment:created', data: { id: 'a1' }, rooms: ['topic:retries'] });
    assert.equal(calls, 2);
    assert.equal(keys[0], keys[1]);
    assert.equal(report.duplicate, true);
    await until(client, 'the event', () => seen.length === 1);
    // A second emit with a fresh key goes through: the key, not the content, is what deduplicates.
    await server.emit({ event: 'appointment:created', data: { id: 'a1' }, rooms: ['topic:retries'] });
    await until(client, 'the second event', () => seen.length === 2);
  });

  test('refusals reject with the hub code and status, without retrying', async () => {
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const wrongKey = createServerClient({ url: hub.httpUrl, apiKey: 'not-the-key', fetch: counting });
    const forbidden = await emitError(wrongKey.emit({ event: 'x', rooms: ['topic:x'] }));
    assert.deepEqual([forbidden.code, forbidden.status, forbidden.retryable], ['FORBIDDEN', 403, false]);
    assert.equal(calls, 1);

    const cases: Array<[any, string, number]> = [
      [{ rooms: ['topic:x'] }, 'MISSING_EVENT', 400],
      [{ event: 'x' }, 'MISSING_TARGETS', 400],
      [{ event: 'x', rooms: ['not a room'] }, 'INVALID_ROOM', 400],
      [{ event: 'x', users: ['u1'], persist: true }, 'INVALID_PERSIST', 400],
      [{ event: 'x', rooms: ['topic:x'], data: 'y'.repeat(300_000) }, 'PAYLOAD_TOO_LARGE', 413],
    ];
    for (const [request, code, status] of cases) {
      const error = await emitError(hub.server.emit(request));
      assert.deepEqual([error.code, error.status], [code, status], error.message);
    }
  });

  test('an unreachable hub is a NETWORK error after the retries', async () => {
    const server = createServerClient({ url: 'http://127.0.0.1:9', apiKey: 'k', retries: 1, retryDelayMs: 1 });
    const error = await emitError(server.emit({ event: 'x', rooms: ['topic:x'] }));
    assert.deepEqual([error.code, error.status, error.retryable], ['NETWORK', 0, true]);
  });
});

describe('packaging', () => {
  test('CommonJS consumers get the same API through require', () => {
    const require = createRequire(import.meta.url);
    const cjs = require('bellhop-client');
    assert.equal(typeof cjs.createClient, 'function');
    assert.equal(typeof cjs.BellhopError, 'function');
    assert.equal(typeof require('bellhop-client/server').createServerClient, 'function');
    assert.equal(typeof require('bellhop-client/react').useRoom, 'function');
  });
});
