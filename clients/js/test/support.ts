/**
 * Test support: the real harness binary on a free port with an in-memory store (one per test file), development
 * tokens signed like a platform backend signs them, a recording WebSocket, and waits that always have a deadline.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient, type Client, type ClientOptions } from 'bellhop-client';
import { createServerClient, type ServerClient } from 'bellhop-client/server';
import WS from 'ws';

// This file runs from clients/js/.test-build/.
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The harness's public development secrets (`shared/src/config.rs`). */
export const DEV_JWT_SECRET = 'bellhop-dev-secret-do-not-use-in-production';
export const DEV_INTERNAL_API_KEY = 'bellhop-dev-internal-key';

export interface Hub {
  wsUrl: string;
  httpUrl: string;
  server: ServerClient;
  stop(): Promise<void>;
}

/** Starts `target/debug/local` (or `$BELLHOP_HARNESS`) and reads the URLs it prints. */
export async function startHub(
  options: { idleSecs?: number; lifetimeSecs?: number; env?: Record<string, string> } = {},
): Promise<Hub> {
  const binary = process.env.BELLHOP_HARNESS ?? join(repo, 'target', 'debug', 'local');
  const args = ['--port', '0', '--store', 'memory'];
  if (options.idleSecs) args.push('--idle-timeout-secs', String(options.idleSecs));
  if (options.lifetimeSecs) args.push('--max-lifetime-secs', String(options.lifetimeSecs));
  const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: process.env.TEST_LOG ? 'debug' : 'warn' };
  // The harness must use its development secrets, which the tests sign with.
  for (const name of Object.keys(env)) {
    if (name.startsWith('BELLHOP_') || ['JWT_SECRET', 'INTERNAL_API_KEY', 'JWT_ISSUER', 'JWT_AUDIENCE'].includes(name)) {
      delete env[name];
    }
  }
  Object.assign(env, options.env);
  const child: ChildProcess = spawn(binary, args, { env, stdio: ['ignore', 'pipe', process.env.TEST_LOG ? 'inherit' : 'ignore'] });
  // Killed with this process too, so a crashed test run leaves no harness behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const urls = await within<{ wsUrl: string; httpUrl: string }>(20_000, 'the harness to print its URLs', (resolve, reject) => {
    let wsUrl: string | undefined;
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the harness exited with ${code} before it was ready`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      wsUrl ??= /WebSocket:\s+(ws:\/\/[^?\s]+)/.exec(line)?.[1];
      const httpUrl = /HTTP API:\s+(http:\/\/\S+)/.exec(line)?.[1];
      if (wsUrl && httpUrl) resolve({ wsUrl, httpUrl });
    });
  });
  return {
    ...urls,
    server: createServerClient({ url: urls.httpUrl, apiKey: DEV_INTERNAL_API_KEY }),
    stop: () =>
      new Promise<void>((resolve) => {
        process.off('exit', killOnExit);
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

/** An HS256 JWT signed with the harness's development secret. */
export function token(sub: string, claims: Record<string, unknown> = {}, ttlSecs = 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ sub, iat: now, exp: now + ttlSecs, ...claims })}`;
  return `${body}.${createHmac('sha256', DEV_JWT_SECRET).update(body).digest('base64url')}`;
}

/**
 * A `ws` WebSocket that records every frame the client sends, and can drop chosen frames either way: how the tests
 * make a request go unanswered without a fake server.
 */
export class Wire {
  sockets = 0;
  sent: Array<{ action: string; id?: string; data?: any }> = [];
  dropOut: (frame: any) => boolean = () => false;
  dropIn: (frame: any) => boolean = () => false;

  get WebSocket(): NonNullable<ClientOptions['WebSocket']> {
    const wire = this;
    return class extends WS {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        wire.sockets++;
        // The client sets `onmessage`; the frames it gets pass `dropIn` first.
        let handler: ((event: { data: unknown }) => void) | null = null;
        this.addEventListener('message', (event) => {
          if (handler && !wire.dropIn(JSON.parse(String(event.data)))) handler(event);
        });
        Object.defineProperty(this, 'onmessage', { get: () => handler, set: (next) => (handler = next) });
      }
      override send(data: string): void {
        const frame = JSON.parse(data);
        wire.sent.push(frame);
        if (!wire.dropOut(frame)) super.send(data);
      }
    } as unknown as NonNullable<ClientOptions['WebSocket']>;
  }

  count(action: string): number {
    return this.sent.filter((f) => f.action === action).length;
  }
}

/** A client of `hub` for `sub`, on a recording wire; closed by `closeAll`. */
export function connect(hub: Hub, sub: string, options: Partial<ClientOptions> & { claims?: Record<string, unknown> } = {}) {
  const wire = new Wire();
  const { claims, ...rest } = options;
  const client = createClient({ url: hub.wsUrl, getToken: () => token(sub, claims), WebSocket: wire.WebSocket, ...rest });
  opened.push(client);
  return { client, wire };
}

const opened: Client[] = [];
export function closeAll(): void {
  for (const client of opened.splice(0)) client.close();
}

/** A promise settled by `body`, or rejected when `ms` pass first. */
export function within<T>(
  ms: number,
  what: string,
  body: (resolve: (value: T) => void, reject: (error: unknown) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    body(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Waits until `check()` holds, re-checking whenever `client` reports anything. */
export function until(client: Client<any, any>, what: string, check: () => boolean, ms = 10_000): Promise<void> {
  return within(ms, what, (resolve) => {
    if (check()) return resolve();
    const timer = setInterval(() => {
      if (check()) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
    client.on('state', () => {
      if (check()) {
        clearInterval(timer);
        resolve();
      }
    });
  });
}

/** The next `state` change to `to` (whose reason the test inspects). */
export function nextState(client: Client<any, any>, to: string, ms = 10_000) {
  return within<{ from: string; to: string; reason: any }>(ms, `state ${to}`, (resolve) => {
    const off = client.on('state', (change) => {
      if (change.to === to) {
        off();
        resolve(change);
      }
    });
  });
}

/** The next hub event `name` (optionally matching `filter`). */
export function nextEvent<T = any>(client: Client<any, any>, name: string, filter: (data: any) => boolean = () => true, ms = 10_000) {
  return within<{ data: T; meta: any }>(ms, `event ${name}`, (resolve) => {
    const off = client.on(name, (data: any, meta: any) => {
      if (filter(data)) {
        off();
        resolve({ data, meta });
      }
    });
  });
}

/** Collects hub events `name` into an array. */
export function collect(client: Client<any, any>, name: string): Array<{ data: any; meta: any }> {
  const seen: Array<{ data: any; meta: any }> = [];
  client.on(name, (data: any, meta: any) => seen.push({ data, meta }));
  return seen;
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return within(ms, what, (resolve, reject) => promise.then(resolve, reject));
}

/** The error `promise` is rejected with, which must be an instance of `kind`; fails if it resolves instead. */
export async function rejectionOf<E extends Error>(promise: Promise<unknown>, kind: new (...args: any[]) => E): Promise<E> {
  const outcome = promise.then(
    () => assert.fail(`expected a rejection with ${kind.name}`),
    (error: unknown) => error,
  );
  const error = await withTimeout(outcome, 10_000, `rejection with ${kind.name}`);
  assert.ok(error instanceof kind, `not a ${kind.name}: ${error}`);
  return error;
}
