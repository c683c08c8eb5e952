/**
 * The operator's view (`/admin`): `/health` counters and per-minute rates, a connection inspector (with each
 * connection's last activity), the active rooms with their member counts and last `seq`, a room's live connections,
 * grants and last events, and the actions (force-disconnect, grant, revoke, emit). Everything goes
 * through the hub's `x-api-key` routes; the key is kept in sessionStorage, so it lives as long as the tab.
 */
import { createServerClient, type EmitRequest } from '../../js/src/server.js';
import { api, byId, el, errorText, HubError, list, say, time } from './common.js';

interface Health {
  status: string;
  stats: { active_connections: number; active_rooms: number; total_connections: number; total_messages: number; uptime_seconds: number };
}
interface ConnectionView {
  connectionId: string;
  userId: string;
  role: string | null;
  name: string | null;
  connectedAt: string;
  expiresAt: string;
  rooms: string[];
  /** When its last frame was admitted; null before its first frame. */
  lastActivity: string | null;
}
interface ActiveRoom {
  room: string;
  members: number;
  lastSeq: number;
}
interface Page<T> {
  items: T[];
  next: string | null;
}
interface RoomInfo {
  room: string;
  rule: string;
  members: string[];
  connections: number;
  onlineUsers: string[];
}
interface HistoryPage {
  room: string;
  events: Array<{ seq: number; id: string; event: string; data: unknown; createdAt: string }>;
  hasMore: boolean;
}

const KEY = 'bellhop.admin.apiKey';
const POLL_MS = 5_000;
/** Ten minutes of samples at one per poll. */
const SAMPLES = (10 * 60_000) / POLL_MS;
const input = (id: string) => byId<HTMLInputElement>(id);
const enc = encodeURIComponent;

let apiKey = sessionStorage.getItem(KEY) ?? '';
const samples: Array<{ at: number; connections: number; messages: number }> = [];
let poller: ReturnType<typeof setInterval> | undefined;

/** An internal request; a refused key sends the operator back to the key form. */
async function internal<T>(method: string, path: string, body?: unknown): Promise<T> {
  try {
    return await api<T>(method, path, { apiKey, body });
  } catch (error) {
    if (error instanceof HubError && error.status === 403 && error.code === 'FORBIDDEN' && /x-api-key/.test(error.message)) lock('The key was refused.');
    throw error;
  }
}

function lock(message = ''): void {
  apiKey = '';
  sessionStorage.removeItem(KEY);
  clearInterval(poller);
  byId('admin').hidden = true;
  byId('key-form').hidden = false;
  say(byId('key-status'), message, Boolean(message));
}

async function unlock(key: string): Promise<void> {
  apiKey = key;
  try {
    // Any internal read tells whether the key is right; this one reads one small, keyed item.
    await api('GET', '/internal/users/admin-key-check/connections?limit=1', { apiKey });
  } catch (error) {
    return lock(error instanceof HubError && error.status === 403 ? 'That key was refused.' : errorText(error));
  }
  sessionStorage.setItem(KEY, key);
  byId('key-form').hidden = true;
  byId('admin').hidden = false;
  void poll();
  void activeRooms();
  clearInterval(poller);
  poller = setInterval(() => void poll(), POLL_MS);
}

// ---- health and rates ----------------------------------------------------------------------------------------------

async function poll(): Promise<void> {
  try {
    const health = await api<Health>('GET', '/health');
    const stats = health.stats;
    const shown: Array<[string, string]> = [
      ['Live connections', String(stats.active_connections)],
      ['Active rooms', String(stats.active_rooms)],
      ['Connections (total)', String(stats.total_connections)],
      ['Messages (total)', String(stats.total_messages)],
      ['Uptime', `${Math.floor(stats.uptime_seconds / 60)} min`],
    ];
    byId('health').replaceChildren(...shown.flatMap(([name, value]) => [el('dt', {}, name), el('dd', {}, value)]));
    say(byId('health-status'), `${health.status}, ${time()}`);
    samples.push({ at: Date.now(), connections: stats.total_connections, messages: stats.total_messages });
    if (samples.length > SAMPLES + 1) samples.shift();
    bars('connect-rate', perMinute('connections'));
    bars('message-rate', perMinute('messages'));
  } catch (error) {
    say(byId('health-status'), errorText(error), true);
  }
}

/**
 * The counter's increase in each of the last minutes, oldest first, from the polls that fall in that minute (the
 * counters are totals, so the increase between the first and last poll of a minute is what happened in it). A
 * restarted process (a counter going down) counts from zero.
 */
function perMinute(counter: 'connections' | 'messages'): Array<{ label: string; value: number }> {
  const now = Date.now();
  const minutes: Array<{ label: string; value: number }> = [];
  for (let ago = 9; ago >= 0; ago--) {
    const from = now - (ago + 1) * 60_000;
    const to = now - ago * 60_000;
    let value = 0;
    for (let i = 1; i < samples.length; i++) {
      const current = samples[i]!;
      const previous = samples[i - 1]!;
      if (current.at > from && current.at <= to) {
        const delta = current[counter] - previous[counter];
        value += delta >= 0 ? delta : current[counter];
      }
    }
    minutes.push({ label: ago === 0 ? 'now' : `-${ago}m`, value });
  }
  return minutes;
}

function bars(id: string, values: Array<{ label: string; value: number }>): void {
  const max = Math.max(1, ...values.map((v) => v.value));
  byId(id).replaceChildren(
    ...values.map(({ label, value }) =>
      el('div', { class: 'bar', title: `${label}: ${value}` }, el('span', { style: `height:${Math.round((value / max) * 100)}%` }), el('small', {}, `${value}`), el('small', { class: 'muted' }, label)),
    ),
  );
}

// ---- connections ---------------------------------------------------------------------------------------------------

let connectionsMore: (() => Promise<void>) | undefined;

function connectionRow(connection: ConnectionView): HTMLElement {
  const rooms = el('td', {});
  for (const room of connection.rooms) {
    const link = el('button', { type: 'button', class: 'link chip' }, room);
    link.addEventListener('click', () => void inspectRoom(room));
    rooms.append(link, ' ');
  }
  const disconnect = el('button', { type: 'button', class: 'danger' }, 'Disconnect');
  const row = el(
    'tr',
    { 'data-connection': connection.connectionId },
    el('td', { class: 'mono' }, connection.connectionId),
    el('td', {}, connection.userId),
    el('td', {}, connection.role ?? ''),
    el('td', { title: `record lapses ${time(connection.expiresAt)}` }, time(connection.connectedAt)),
    el('td', { class: 'last-activity', title: connection.lastActivity ?? 'no frame yet' }, connection.lastActivity ? time(connection.lastActivity) : '—'),
    rooms,
    el('td', {}, disconnect),
  );
  disconnect.addEventListener('click', async () => {
    try {
      const answer = await internal<{ wasStale: boolean }>('DELETE', `/internal/connections/${enc(connection.connectionId)}`);
      row.classList.add('gone');
      disconnect.disabled = true;
      say(byId('inspect-status'), `disconnected ${connection.connectionId}${answer.wasStale ? ' (it was already gone)' : ''}`);
    } catch (error) {
      say(byId('inspect-status'), errorText(error), true);
    }
  });
  return row;
}

async function byUser(user: string, after?: string): Promise<void> {
  const query = new URLSearchParams({ limit: '20' });
  if (after) query.set('after', after);
  try {
    const page = await internal<Page<ConnectionView>>('GET', `/internal/users/${enc(user)}/connections?${query}`);
    if (!after) byId('connections').replaceChildren();
    byId('connections').append(...page.items.map(connectionRow));
    const more = page.next;
    connectionsMore = more ? () => byUser(user, more) : undefined;
    byId('connections-more').hidden = !more;
    say(byId('inspect-status'), page.items.length || after ? '' : `${user} has no live connection`);
  } catch (error) {
    say(byId('inspect-status'), errorText(error), true);
  }
}

async function byConnection(id: string): Promise<void> {
  try {
    const connection = await internal<ConnectionView>('GET', `/internal/connections/${enc(id)}`);
    byId('connections').replaceChildren(connectionRow(connection));
    byId('connections-more').hidden = true;
    say(byId('inspect-status'), '');
  } catch (error) {
    byId('connections').replaceChildren();
    say(byId('inspect-status'), errorText(error), true);
  }
}

// ---- active rooms --------------------------------------------------------------------------------------------------

let activeRoomsMore: (() => Promise<void>) | undefined;

/** A page of the rooms with live connections; without `after` the table starts over. */
async function activeRooms(after?: string): Promise<void> {
  const query = new URLSearchParams({ limit: '20' });
  if (after) query.set('after', after);
  try {
    const page = await internal<Page<ActiveRoom>>('GET', `/internal/rooms?${query}`);
    if (!after) byId('active-rooms').replaceChildren();
    for (const active of page.items) {
      const open = el('button', { type: 'button', class: 'link' }, active.room);
      open.addEventListener('click', () => void inspectRoom(active.room));
      byId('active-rooms').append(
        el('tr', { 'data-room': active.room }, el('td', {}, open), el('td', { class: 'members' }, String(active.members)), el('td', { class: 'last-seq' }, String(active.lastSeq))),
      );
    }
    const next = page.next;
    activeRoomsMore = next ? () => activeRooms(next) : undefined;
    byId('active-rooms-more').hidden = !next;
    say(byId('active-rooms-status'), page.items.length || after ? '' : 'no room has a live connection');
  } catch (error) {
    say(byId('active-rooms-status'), errorText(error), true);
  }
}

// ---- rooms ---------------------------------------------------------------------------------------------------------

let roomName = '';
const more: Record<string, (() => Promise<void>) | undefined> = {};

async function inspectRoom(room: string): Promise<void> {
  roomName = room;
  input('room').value = room;
  say(byId('room-status'), '');
  try {
    const info = await internal<RoomInfo>('GET', `/internal/rooms/${enc(room)}`);
    byId('room-summary').replaceChildren(el('strong', {}, info.room), ` — ${info.rule} room, ${info.connections} live connection(s), ${info.onlineUsers.length} user(s) online`);
    byId('room-connections').replaceChildren();
    byId('room-grants').replaceChildren();
    byId('room-events').replaceChildren();
    await Promise.all([roomConnections(room), roomGrants(room), roomEvents(room)]);
  } catch (error) {
    say(byId('room-status'), errorText(error), true);
  }
}

async function roomConnections(room: string, after?: string): Promise<void> {
  const query = new URLSearchParams({ limit: '20' });
  if (after) query.set('after', after);
  const page = await internal<Page<{ connectionId: string; userId: string }>>('GET', `/internal/rooms/${enc(room)}/connections?${query}`);
  for (const member of page.items) {
    const open = el('button', { type: 'button', class: 'link mono' }, member.connectionId);
    open.addEventListener('click', () => {
      input('inspect').value = member.connectionId;
      void byConnection(member.connectionId);
    });
    byId('room-connections').append(el('li', {}, open, ` ${member.userId}`));
  }
  paged('room-connections-more', page.next, (next) => roomConnections(room, next));
}

async function roomGrants(room: string, after?: string): Promise<void> {
  const query = new URLSearchParams({ limit: '20' });
  if (after) query.set('after', after);
  const page = await internal<Page<string>>('GET', `/internal/rooms/${enc(room)}/grants?${query}`);
  for (const user of page.items) {
    const revoke = el('button', { type: 'button', class: 'link danger' }, 'revoke');
    revoke.addEventListener('click', async () => {
      try {
        const answer = await internal<{ removedConnections: number }>('DELETE', `/internal/rooms/${enc(room)}/members`, { users: [user] });
        await inspectRoom(room);
        say(byId('room-status'), `revoked ${user} (${answer.removedConnections} connection(s) removed)`);
      } catch (error) {
        say(byId('room-status'), errorText(error), true);
      }
    });
    byId('room-grants').append(el('li', {}, user, ' ', revoke));
  }
  paged('room-grants-more', page.next, (next) => roomGrants(room, next));
}

async function roomEvents(room: string, before?: number): Promise<void> {
  const query = new URLSearchParams({ limit: '20' });
  if (before !== undefined) query.set('before', String(before));
  const page = await internal<HistoryPage>('GET', `/internal/rooms/${enc(room)}/events?${query}`);
  // Newest first on screen; each older page goes below.
  for (const event of [...page.events].reverse()) {
    byId('room-events').append(
      el('li', {}, el('span', { class: 'muted' }, `#${event.seq} ${time(event.createdAt)} `), el('strong', {}, event.event), ' ', el('code', {}, JSON.stringify(event.data))),
    );
  }
  const oldest = page.events[0]?.seq;
  paged('room-events-more', page.hasMore && oldest !== undefined ? String(oldest) : null, (next) => roomEvents(room, Number(next)));
}

function paged(buttonId: string, next: string | null, load: (next: string) => Promise<void>): void {
  byId(buttonId).hidden = !next;
  more[buttonId] = next ? () => load(next) : undefined;
}

// ---- wiring --------------------------------------------------------------------------------------------------------

function start(): void {
  byId('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void unlock(input('api-key').value.trim());
    input('api-key').value = '';
  });
  byId('forget-key').addEventListener('click', () => lock());
  byId('inspect-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void byUser(input('inspect').value.trim());
  });
  byId('by-connection').addEventListener('click', () => void byConnection(input('inspect').value.trim()));
  byId('connections-more').addEventListener('click', () => void connectionsMore?.());
  byId('rooms-refresh').addEventListener('click', () => void activeRooms());
  byId('active-rooms-more').addEventListener('click', () => void activeRoomsMore?.());
  byId('room-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void inspectRoom(input('room').value.trim());
  });
  for (const id of ['room-connections-more', 'room-grants-more', 'room-events-more']) {
    byId(id).addEventListener('click', () => void more[id]?.().catch((error: unknown) => say(byId('room-status'), errorText(error), true)));
  }
  byId('grant-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await internal('PUT', `/internal/rooms/${enc(roomName || input('room').value.trim())}/members`, { users: list(input('grant-users').value) });
      input('grant-users').value = '';
      await inspectRoom(roomName || input('room').value.trim());
    } catch (error) {
      say(byId('room-status'), errorText(error), true);
    }
  });
  byId('emit-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const report = byId('emit-report');
    let data: unknown;
    try {
      data = JSON.parse(byId<HTMLTextAreaElement>('emit-data').value || 'null');
    } catch (error) {
      return say(report, `data is not JSON: ${errorText(error)}`, true);
    }
    const request: EmitRequest = { event: input('emit-event').value.trim(), data, persist: input('emit-persist').checked };
    const rooms = list(input('emit-rooms').value);
    const users = list(input('emit-users').value);
    if (rooms.length) request.rooms = rooms;
    if (users.length) request.users = users;
    try {
      const hub = createServerClient({ url: location.origin, apiKey, retries: 0 });
      say(report, JSON.stringify(await hub.emit(request), null, 2));
    } catch (error) {
      say(report, errorText(error), true);
    }
  });
  if (apiKey) void unlock(apiKey);
}

start();
