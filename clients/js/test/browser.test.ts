// The bundled SDK in headless Chromium (Debian's package, driven by playwright-core) against the real harness:
// connect with the subprotocol token, React StrictMode without a second socket or join, send, receive, reconnect
// after a server-side disconnect, and recover what was sent while the page was offline.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { type Browser, chromium, type Page } from 'playwright-core';
import { closeAll, collect, connect, type Hub, startHub, token, until, withTimeout } from './support.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const here = dirname(fileURLToPath(import.meta.url));

let hub: Hub;
let pages: Server;
let browser: Browser;
let page: Page;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package`);
  hub = await startHub();
  // React's development build, as an app under development runs it: StrictMode double-mounts only there.
  const bundle = await esbuild.build({
    entryPoints: [join(here, '..', 'test', 'browser', 'page.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    define: { 'process.env.NODE_ENV': '"development"' },
    logLevel: 'warning',
  });
  const script = bundle.outputFiles[0]!.text;
  pages = createServer((request, response) => {
    if (request.url === '/page.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    } else {
      response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><div id="app"></div><script type="module" src="/page.js"></script>');
    }
  });
  await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  page = await browser.newPage();
  page.on('pageerror', (error) => console.error('page error:', error));
  await page.goto(`http://127.0.0.1:${(pages.address() as AddressInfo).port}/`);
  await page.waitForFunction(() => 'bellhop' in window, undefined, { timeout: 10_000 });
});

after(async () => {
  closeAll();
  await browser?.close();
  pages?.close();
  await hub?.stop();
});

type Status = {
  state: string;
  connectionId: string;
  sockets: number;
  mounts: number;
  joins: number;
  leaves: number;
  seen: Array<{ content: string; seq: number; recovered: boolean }>;
  text: string;
};
const status = (): Promise<Status> => page.evaluate(() => (window as any).bellhop.status());
const waitFor = (what: string, predicate: string) =>
  page.waitForFunction(`(() => { const s = window.bellhop.status(); return ${predicate}; })()`, undefined, { timeout: 10_000 }).catch(
    (error) => assert.fail(`waiting for ${what}: ${error.message}`),
  );

test('a page connects, joins, sends, receives, reconnects and recovers', async () => {
  await page.evaluate(([url, jwt]) => (window as any).bellhop.start(url, jwt), [hub.wsUrl, token('browser-user')]);
  await waitFor('connected and joined', "s.state === 'connected' && s.text === 'connected in-room'");

  // StrictMode mounted, unmounted and remounted the tree: still one socket and one join.
  let now = await status();
  assert.equal(now.mounts, 2, 'StrictMode mounted the component twice');
  assert.equal(now.sockets, 1);
  assert.equal(now.joins, 1);
  assert.equal(now.leaves, 0);

  const node = connect(hub, 'node-user').client;
  await withTimeout(node.room('topic:browser').ready, 10_000, 'node join');
  const fromPage = collect(node, 'message:new');
  await node.request('message:send', { room: 'topic:browser', content: 'hello page' });
  await waitFor('the live message', "s.seen.some((m) => m.content === 'hello page' && !m.recovered)");
  await page.evaluate(() => (window as any).bellhop.send('hello node'));
  await until(node, 'the page message', () => fromPage.some((e) => e.data.content === 'hello node'));

  await hub.server.disconnect(now.connectionId);
  await waitFor('a new connection', `s.state === 'connected' && s.connectionId !== ${JSON.stringify(now.connectionId)}`);
  now = await status();
  assert.equal(now.sockets, 2);
  assert.equal(now.joins, 2);

  await page.evaluate(() => (window as any).bellhop.disconnect());
  for (const content of ['away 1', 'away 2', 'away 3']) await node.request('message:send', { room: 'topic:browser', content });
  await page.evaluate(() => (window as any).bellhop.connect());
  await waitFor('the recovered messages', 's.seen.filter((m) => m.recovered).length === 3');
  now = await status();
  const recovered = now.seen.filter((m) => m.recovered);
  assert.deepEqual(recovered.map((m) => m.content), ['away 1', 'away 2', 'away 3']);
  const seqs = now.seen.map((m) => m.seq);
  assert.deepEqual(seqs, [...new Set(seqs)].sort((x, y) => x - y), 'each seq once, in order');
});

test('a handshake refused for an expired token is explained in the browser too', async () => {
  await page.evaluate(([url, jwt]) => (window as any).bellhop.startOther(url, jwt), [hub.wsUrl, token('late-user', {}, -120)]);
  await page.waitForFunction(() => (window as any).bellhop.changes.some((c: any) => c.to === 'reconnecting'), undefined, { timeout: 10_000 });
  const change = await page.evaluate(() => (window as any).bellhop.changes.find((c: any) => c.to === 'reconnecting'));
  assert.equal(change.reason.status, 401);
  assert.equal(change.reason.error.code, 'TOKEN_EXPIRED');
  assert.equal(change.reason.code, 1006, 'all a browser sees of a refused handshake');
  await page.evaluate(() => (window as any).bellhop.other.close());
});

test('coming back online skips the backoff', async () => {
  await page.evaluate(([url, jwt]) => {
    (window as any).bellhop.changes.length = 0;
    (window as any).bellhop.startOther(url, jwt);
  }, [hub.wsUrl, token('wake-user')]);
  await page.waitForFunction(() => (window as any).bellhop.other.state === 'connected', undefined, { timeout: 10_000 });
  const id = await page.evaluate(() => (window as any).bellhop.other.connectionId);
  await hub.server.disconnect(id);
  await page.waitForFunction(() => (window as any).bellhop.other.state === 'reconnecting', undefined, { timeout: 10_000 });
  await page.evaluate(() => (window as any).bellhop.online());
  await page.waitForFunction(() => (window as any).bellhop.other.state === 'connected', undefined, { timeout: 10_000 });
  const [lost, back] = await page.evaluate(() => (window as any).bellhop.changes.slice(-2));
  assert.deepEqual([lost.to, back.to], ['reconnecting', 'connected']);
  // The backoff drew a random wait below a minute; unless it drew almost none, the reconnect came well before it.
  if (lost.reason.delayMs >= 1000) assert.ok(back.at - lost.at < lost.reason.delayMs, `${back.at - lost.at} ms`);
  await page.evaluate(() => (window as any).bellhop.other.close());
});
