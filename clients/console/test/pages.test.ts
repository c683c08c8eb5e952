// The console, admin and docs pages as the hub serves them, in headless Chromium (Debian's package, driven by
// playwright-core) against the real harness binary on a free port: two consoles exchange messages, typing, presence,
// a call and an emit; the admin view lists the active rooms, finds a connection with its rooms and last activity,
// grants and revokes, and force-disconnects it;
// /docs renders every route and the whole WebSocket protocol. Every request the pages make is recorded, and none may leave
// loopback. Screenshots go to target/console-screenshots/.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// This file runs from clients/console/.test-build/.
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const shots = join(repo, 'target', 'console-screenshots');
const DEV_INTERNAL_API_KEY = 'bellhop-dev-internal-key';
const WAIT_MS = 10_000;

let harness: ChildProcess;
let http = '';
let browser: Browser;
let context: BrowserContext;
/** Every URL a page asked for: documents, scripts, styles, fetches, WebSockets. */
const requested: string[] = [];
/** Uncaught page errors and console errors (a Content-Security-Policy refusal is one). */
const problems: string[] = [];

/** Resolves or rejects within `ms`, so no wait in this file can hang the run. */
function within<T>(ms: number, what: string, body: (resolve: (value: T) => void, reject: (error: Error) => void) => void): Promise<T> {
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

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package`);
  const binary = process.env.BELLHOP_HARNESS ?? join(repo, 'target', 'debug', 'local');
  const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: 'warn' };
  // The console's token route exists only with the public development secrets.
  for (const name of Object.keys(env)) {
    if (name.startsWith('BELLHOP_') || ['JWT_SECRET', 'INTERNAL_API_KEY', 'JWT_ISSUER', 'JWT_AUDIENCE'].includes(name)) delete env[name];
  }
  harness = spawn(binary, ['--port', '0', '--store', 'memory'], { env, stdio: ['ignore', 'pipe', 'ignore'] });
  process.once('exit', () => harness.kill('SIGKILL'));
  http = await within<string>(20_000, 'the harness to print its URLs', (resolve, reject) => {
    harness.once('error', reject);
    harness.once('exit', (code) => reject(new Error(`the harness exited with ${code} before it was ready`)));
    createInterface({ input: harness.stdout! }).on('line', (line) => {
      const url = /HTTP API:\s+(http:\/\/\S+)/.exec(line)?.[1];
      if (url) resolve(url);
    });
  });
  mkdirSync(shots, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.on('request', (request) => requested.push(request.url()));
  context.on('page', (page) => watch(page));
});

after(async () => {
  await browser?.close();
  harness?.kill('SIGKILL');
});

function watch(page: Page): void {
  page.on('websocket', (socket) => requested.push(socket.url()));
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of 40[34]/.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
}

async function open(path: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${http}${path}`, { timeout: WAIT_MS });
  return page;
}

/** Waits until the element's text contains `text`. */
async function seen(page: Page, selector: string, text: string): Promise<void> {
  try {
    await page.waitForFunction(
      ([sel, want]) => [...document.querySelectorAll(sel!)].some((node) => (node.textContent ?? '').includes(want!)),
      [selector, text],
      { timeout: WAIT_MS },
    );
  } catch (error) {
    const actual = await page.locator(selector).allTextContents().catch(() => []);
    throw new Error(`${selector} never showed "${text}"; it shows ${JSON.stringify(actual).slice(0, 600)}`, { cause: error });
  }
}

async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).first().textContent({ timeout: WAIT_MS })) ?? '';
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true, timeout: WAIT_MS });
}

let alice: Page;
let bob: Page;

test('two consoles exchange messages, typing, presence, a call and an emit', async () => {
  alice = await open('/?user=alice&name=Alice&role=customer&connect=1');
  await seen(alice, '#state', 'connected');
  await seen(alice, '#dev-banner', 'PUBLIC development JWT secret');
  await seen(alice, '#frames', '"connectionId"');
  await seen(alice, '#rooms', 'user:alice');
  await seen(alice, '#connect-status', 'automatic rooms: customer:alice, user:alice');
  // Bob's page is opened from a shared link: same user, and the room joined once connected.
  bob = await open('/?user=bob&name=Bob&connect=1&join=chat:alice:bob');
  await seen(bob, '#state', 'connected');
  await seen(bob, '#rooms', 'chat:alice:bob');

  await alice.fill('#join-room', 'chat:alice:bob');
  await alice.click('#join-form button');
  await seen(alice, '#rooms', 'chat:alice:bob');
  await seen(alice, '#rooms-status', 'joined chat:alice:bob');
  await alice.selectOption('#send-room', 'chat:alice:bob');

  await alice.locator('#message').pressSequentially('hello', { timeout: WAIT_MS });
  await seen(bob, '#typing', 'Alice is typing in chat:alice:bob');
  await alice.fill('#message', 'hello from alice');
  await alice.click('#send-form button');
  await seen(bob, '#messages', 'hello from alice');
  await seen(alice, '#messages', 'hello from alice');
  await seen(bob, '#typing', '');

  // Presence: Alice watches Bob, who sets himself busy.
  await alice.fill('#watch-users', 'bob');
  await alice.click('#watch-form button');
  await seen(alice, '#presence [data-user="bob"]', 'bob online');
  await bob.selectOption('#my-status', 'busy');
  await bob.click('#set-status');
  await seen(alice, '#presence [data-user="bob"]', 'bob busy');

  await alice.fill('#callee', 'bob');
  await alice.click('#call-form button');
  await seen(bob, '#call-state', 'ringing');
  await seen(bob, '#call-log', 'incoming audio call from Alice');
  await bob.click('#call-accept');
  await seen(alice, '#call-state', 'accepted');
  await seen(bob, '#call-state', 'accepted');
  await alice.fill('#signal', '{"sdp":"offer-1"}');
  await alice.click('#signal-send');
  await seen(bob, '#call-log', 'signal from alice: {"sdp":"offer-1"}');
  await bob.click('#call-end');
  await seen(alice, '#call-state', 'ended');

  // The emit panel is filled with the development API key by the token route.
  assert.equal(await alice.inputValue('#emit-key'), DEV_INTERNAL_API_KEY);
  await alice.fill('#emit-users', 'bob');
  await alice.fill('#emit-data', '{"appointmentId": "a-77"}');
  await alice.click('#emit-form button');
  await seen(bob, '#frames', '"appointmentId": "a-77"');
  await seen(bob, '#frames', '"event": "appointment:created"');
  assert.doesNotMatch(await text(alice, '#emit-report'), /error/i);

  // The frame filter hides what does not match.
  await bob.fill('#frame-filter', 'appointment:created');
  const visible = await bob.locator('#frames li:not([hidden])').count();
  const all = await bob.locator('#frames li').count();
  assert.ok(visible >= 1 && visible < all, `the filter shows ${visible} of ${all} frames`);
  await bob.fill('#frame-filter', '');
  await shot(alice, 'console-alice');
  await shot(bob, 'console-bob');
});

test('the admin view shows a connection and its rooms, grants and revokes, and force-disconnect closes the socket', async () => {
  const admin = await open('/admin');
  await admin.fill('#api-key', 'not-the-key');
  await admin.click('#key-form button');
  await seen(admin, '#key-status', 'refused');
  await admin.fill('#api-key', DEV_INTERNAL_API_KEY);
  await admin.click('#key-form button');
  await admin.locator('#admin').waitFor({ state: 'visible', timeout: WAIT_MS });
  assert.equal(await admin.evaluate(() => sessionStorage.getItem('bellhop.admin.apiKey')), DEV_INTERNAL_API_KEY);
  assert.equal(await admin.evaluate(() => localStorage.length), 0, 'the key is kept for the tab only');
  await seen(admin, '#health', 'Live connections');

  // The active rooms list the room both consoles joined, with both members and the seq of alice's message.
  const chat = admin.locator('#active-rooms tr[data-room="chat:alice:bob"]');
  await chat.waitFor({ timeout: WAIT_MS });
  assert.equal(await chat.locator('.members').textContent(), '2');
  assert.ok(Number(await chat.locator('.last-seq').textContent()) >= 1, 'alice wrote in it');

  const bobConnection = (await text(bob, '#connection-id')).trim();
  assert.ok(bobConnection, 'bob is connected');
  await admin.fill('#inspect', 'bob');
  await admin.click('#by-user');
  const row = admin.locator(`tr[data-connection="${bobConnection}"]`);
  await row.waitFor({ timeout: WAIT_MS });
  assert.match((await row.textContent()) ?? '', /chat:alice:bob/);
  assert.notEqual((await row.locator('.last-activity').textContent())?.trim(), '—', 'bob has sent frames');

  await row.getByRole('button', { name: 'chat:alice:bob' }).click();
  await seen(admin, '#room-summary', 'chat:alice:bob');
  await seen(admin, '#room-connections', bobConnection);
  await seen(admin, '#room-events', 'hello from alice');

  await admin.fill('#room', 'booking:42');
  await admin.click('#room-form button');
  await seen(admin, '#room-summary', 'granted room');
  await admin.fill('#grant-users', 'alice, bob');
  await admin.click('#grant-form button');
  await seen(admin, '#room-grants', 'alice');
  await seen(admin, '#room-grants', 'bob');
  await bob.fill('#join-room', 'booking:42');
  await bob.click('#join-form button');
  await seen(bob, '#rooms', 'booking:42');
  await admin.locator('#room-grants li', { hasText: 'bob' }).getByRole('button', { name: 'revoke' }).click();
  await seen(admin, '#room-status', 'revoked bob (1 connection(s) removed)');
  await seen(admin, '#room-grants', 'alice');
  assert.doesNotMatch(await text(admin, '#room-grants'), /bob/);
  await shot(admin, 'admin');

  // Force-disconnect: the hub closes bob's socket with 1000; the client then reconnects on a new connection.
  const closed = within<number>(WAIT_MS, "bob's socket to close", (resolve) => {
    const poll = setInterval(async () => {
      const frames = (await bob.locator('#frames').textContent().catch(() => '')) ?? '';
      const code = /"close": (\d+)/.exec(frames)?.[1];
      if (code) {
        clearInterval(poll);
        resolve(Number(code));
      }
    }, 100);
  });
  await admin.fill('#inspect', bobConnection);
  await admin.click('#by-connection');
  await admin.locator(`tr[data-connection="${bobConnection}"] button.danger`).click({ timeout: WAIT_MS });
  await seen(admin, '#inspect-status', `disconnected ${bobConnection}`);
  assert.equal(await closed, 1000);
  await bob.waitForFunction((old) => {
    const id = document.getElementById('connection-id')?.textContent ?? '';
    return document.getElementById('state')?.textContent === 'connected' && id !== '' && id !== old;
  }, bobConnection, { timeout: WAIT_MS });
  await admin.click('#by-connection');
  await seen(admin, '#inspect-status', 'not found');
});

test('/docs renders every route of /openapi.json and the whole WebSocket protocol', async () => {
  const docs = await open('/docs');
  const spec = (await (await fetch(`${http}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
  const protocol = (await (await fetch(`${http}/docs/protocol.json`)).json()) as { actions: unknown[]; events: unknown[]; types: unknown[]; errorCodes: string[] };
  const operations = Object.entries(spec.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => ({ path, method })));
  assert.ok(operations.length >= 15, `${operations.length} operations`);
  await docs.locator('.opblock').first().waitFor({ timeout: WAIT_MS });
  for (const { path, method } of operations) {
    const block = docs.locator(`.opblock-${method}`, { has: docs.locator(`.opblock-summary-path[data-path="${path}"]`) });
    assert.equal(await block.count(), 1, `${method.toUpperCase()} ${path} is rendered once`);
  }
  assert.equal(await docs.locator('.opblock').count(), operations.length);
  await docs.screenshot({ path: join(shots, 'docs-http.png'), timeout: WAIT_MS });

  await seen(docs, '#actions', 'message:send');
  assert.equal(await docs.locator('#actions tbody tr').count(), protocol.actions.length);
  assert.equal(await docs.locator('#events tbody tr').count(), protocol.events.length);
  assert.equal(await docs.locator('#types .type').count(), protocol.types.length);
  assert.equal(await docs.locator('#error-codes li').count(), protocol.errorCodes.length);
  // A type link leads to its declaration.
  await docs.locator('#action-message\\:send a').first().click();
  await seen(docs, '#type-SendMessage pre', 'content');
  await docs.locator('#websocket').scrollIntoViewIfNeeded();
  await docs.screenshot({ path: join(shots, 'docs-protocol.png'), timeout: WAIT_MS });
});

test('no page asked for anything beyond loopback, and no page reported an error', () => {
  assert.ok(requested.length > 10, `${requested.length} requests recorded`);
  const outside = requested.filter((url) => !['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname));
  assert.deepEqual(outside, []);
  assert.ok(requested.some((url) => url.startsWith('ws://127.0.0.1')), 'the WebSockets were recorded');
  assert.deepEqual(problems, []);
});
