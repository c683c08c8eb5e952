/**
 * The developer console (`/`): one user's connection to the hub through bellhop-client, with rooms, messages,
 * typing, presence, notifications, a call and internal emits, and every frame either way. Tokens come from the
 * hub's `POST /dev/token`, which exists only while the hub uses its public development secret.
 */
import { BellhopError, type CallHandle, type ChatMessage, type Client, type Connected, createClient, type Room } from '../../js/src/index.js';
import { createServerClient, type EmitRequest } from '../../js/src/server.js';
import type { WebSocketConstructor } from '../../js/src/types.js';
import { api, byId, el, errorText, HubError, list, say, time } from './common.js';

interface DevToken {
  token: string;
  expiresAt: string;
  internalApiKey?: string | null;
  warning: string;
}

const input = (id: string) => byId<HTMLInputElement>(id);
const defaultWsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/local`;

let client: Client | undefined;
/** Rooms this page joined itself, with their handles; automatic rooms have none. */
const handles = new Map<string, Room>();
/** Every room the connection is in, as far as this page knows. */
const rooms = new Set<string>();
let call: CallHandle | undefined;
let framesShown = 0;

// ---- frames --------------------------------------------------------------------------------------------------------

/**
 * The browser's WebSocket, recording every frame either way into the Frames panel. It also picks out the ack of each
 * `hello`: its data (`connected`: the connection id and automatic rooms) is what the console shows first.
 */
function recordingWebSocket(onHello: (welcome: Connected) => void): WebSocketConstructor {
  return class extends WebSocket {
    private readonly helloIds = new Set<string>();
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.addEventListener('message', (event) => {
        const raw = String(event.data);
        frame('in', raw);
        const parsed = parse(raw);
        if (parsed?.type === 'ack' && parsed.ok && this.helloIds.delete(parsed.id)) onHello(parsed.data as Connected);
      });
      this.addEventListener('close', (event) => frame('in', JSON.stringify({ close: event.code, reason: event.reason })));
    }
    override send(data: string): void {
      const parsed = parse(data);
      if (parsed?.action === 'hello' && typeof parsed.id === 'string') this.helloIds.add(parsed.id);
      frame('out', data);
      super.send(data);
    }
  } as unknown as WebSocketConstructor;
}

function parse(raw: string): any {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

function frame(direction: 'in' | 'out', raw: string): void {
  // What is not JSON is shown as it came.
  const parsed = parse(raw);
  const pretty = parsed === undefined ? raw : JSON.stringify(parsed, null, 2);
  const item = el('li', { class: `frame ${direction}` }, el('span', { class: 'muted' }, `${time()} ${direction === 'in' ? '←' : '→'}`), el('pre', {}, pretty));
  applyFilter(item);
  byId('frames').prepend(item);
  framesShown++;
  // The newest 500 frames are kept, so a long session does not grow the page without bound.
  if (framesShown > 500) byId('frames').lastElementChild?.remove();
}

function applyFilter(item: HTMLElement): void {
  const filter = input('frame-filter').value.trim().toLowerCase();
  item.hidden = filter !== '' && !(item.textContent ?? '').toLowerCase().includes(filter);
}

// ---- connection ----------------------------------------------------------------------------------------------------

async function getToken(): Promise<string> {
  try {
    const minted = await api<DevToken>('POST', '/dev/token', {
      body: { sub: input('user').value.trim(), role: input('role').value, name: input('name').value, rooms: list(input('token-rooms').value) },
    });
    const banner = byId('dev-banner');
    banner.hidden = false;
    say(banner, minted.warning);
    if (minted.internalApiKey && !input('emit-key').value) input('emit-key').value = minted.internalApiKey;
    return minted.token;
  } catch (error) {
    if (error instanceof HubError && error.code === 'DEV_TOKENS_DISABLED') {
      const banner = byId('dev-banner');
      banner.hidden = false;
      say(banner, `${error.message}. This console connects only to a hub that uses the public development secret.`, true);
    }
    // UNAUTHORIZED stops the client's retries until Connect is pressed again.
    throw new BellhopError('UNAUTHORIZED', errorText(error));
  }
}

function connect(): void {
  client?.close();
  handles.clear();
  rooms.clear();
  renderRooms();
  const next: Client = createClient({
    url: input('ws-url').value.trim(),
    getToken,
    WebSocket: recordingWebSocket((welcome) => {
      if (client !== next) return;
      for (const room of welcome.rooms) rooms.add(room);
      renderRooms();
      say(byId('connect-status'), `connected as ${welcome.user.name ?? welcome.user.id} (${welcome.user.role ?? 'no role'}); automatic rooms: ${welcome.rooms.join(', ') || 'none'}`);
    }),
  });
  client = next;
  next.on('state', ({ to, reason }) => {
    if (client !== next) return;
    byId('state').textContent = to;
    byId('connection-id').textContent = next.connectionId ?? '';
    input('disconnect').disabled = to === 'disconnected' || to === 'closed';
    const detail = reason?.error ? `${reason.error.code}: ${reason.error.message}` : reason?.code ? `close ${reason.code} ${reason.reason ?? ''}` : '';
    if (to !== 'connected') say(byId('connect-status'), detail, Boolean(reason?.error));
  });
  next.on('message:new', showMessage);
  next.on('typing:start', (typing) => {
    byId('typing').textContent = `${typing.name ?? typing.userId} is typing in ${typing.room}…`;
  });
  next.on('typing:stop', () => {
    byId('typing').textContent = '';
  });
  next.on('room:userLeft', (left) => {
    if (left.userId === input('user').value.trim() && left.reason) {
      // This user was removed (a revoked grant): the room is no longer ours.
      rooms.delete(left.room);
      handles.get(left.room)?.leave();
      handles.delete(left.room);
      renderRooms();
    }
  });
  next.on('unread', (count) => {
    byId('unread').textContent = String(count);
  });
  next.on('notification:new', (notification) => {
    byId('notifications').prepend(el('li', {}, el('span', { class: 'muted' }, time(notification.createdAt)), ' ', el('strong', {}, notification.title), ' ', notification.message));
  });
  next.on('call:incoming', (incoming) => {
    watchCall(incoming.callId, 'ringing');
    callLog(`incoming ${incoming.callType} call from ${incoming.caller.name ?? incoming.callerId}`);
    input('call-accept').disabled = false;
    input('call-reject').disabled = false;
  });
  updateShareLink();
}

/** A chat message: from a `message:new` event, or from the ack of this page's own send (the hub does not echo it). */
function showMessage(message: ChatMessage): void {
  const item = el('li', { class: 'message' }, el('span', { class: 'muted' }, `${time(message.createdAt)} ${message.room} #${message.seq}`), ' ', el('strong', {}, message.sender.name ?? message.sender.id), ': ', message.content);
  byId('messages').prepend(item);
}

function renderRooms(): void {
  const target = byId('rooms');
  target.replaceChildren();
  const select = byId<HTMLSelectElement>('send-room');
  const chosen = select.value;
  select.replaceChildren();
  for (const room of [...rooms].sort()) {
    const leave = el('button', { type: 'button', class: 'link', 'aria-label': `leave ${room}` }, '×');
    leave.addEventListener('click', () => void leaveRoom(room));
    target.append(el('li', { 'data-room': room }, room, ' ', leave));
    select.append(el('option', {}, room));
  }
  if (rooms.has(chosen)) select.value = chosen;
  updateShareLink();
}

async function joinRoom(name: string): Promise<void> {
  if (!client || !name) return;
  const room = client.room(name, { recover: true });
  handles.set(name, room);
  try {
    const joined = await room.ready;
    rooms.add(name);
    renderRooms();
    byId<HTMLSelectElement>('send-room').value = name;
    say(byId('rooms-status'), `joined ${name} (${joined.participants.length} online)`);
  } catch (error) {
    handles.delete(name);
    room.leave();
    say(byId('rooms-status'), errorText(error), true);
  }
}

async function leaveRoom(name: string): Promise<void> {
  const handle = handles.get(name);
  handles.delete(name);
  rooms.delete(name);
  renderRooms();
  try {
    if (handle) handle.leave();
    else await client?.request('room:leave', { room: name });
    say(byId('rooms-status'), `left ${name}`);
  } catch (error) {
    say(byId('rooms-status'), errorText(error), true);
  }
}

// ---- calls ---------------------------------------------------------------------------------------------------------

function callLog(text: string): void {
  byId('call-log').prepend(el('li', {}, el('span', { class: 'muted' }, time()), ' ', text));
}

function watchCall(callId: string, state: string): void {
  call?.dispose();
  if (!client) return;
  call = client.call(callId);
  byId('call-id').textContent = callId;
  setCallState(state);
  call.on('accepted', () => setCallState('accepted'));
  call.on('rejected', () => setCallState('rejected'));
  call.on('ended', () => setCallState('ended'));
  call.on('missed', () => setCallState('missed'));
  call.on('signal', (signal) => callLog(`signal from ${signal.from}: ${JSON.stringify(signal.payload)}`));
}

function setCallState(state: string): void {
  byId('call-state').textContent = state;
  const live = state === 'ringing' || state === 'accepted';
  input('call-end').disabled = !live;
  input('signal-send').disabled = state !== 'accepted';
  if (state !== 'ringing') {
    input('call-accept').disabled = true;
    input('call-reject').disabled = true;
  }
  if (state !== 'ringing') callLog(state);
}

async function callAction(what: 'accept' | 'reject' | 'end'): Promise<void> {
  if (!call) return;
  try {
    const view = await call[what]();
    setCallState(view.state === 'in_progress' ? 'accepted' : view.state);
  } catch (error) {
    callLog(`${what} failed: ${errorText(error)}`);
  }
}

// ---- sharing -------------------------------------------------------------------------------------------------------

/** The page's URL reopens the same user, token rooms and joined rooms; `connect=1` connects at once. */
function updateShareLink(): void {
  const params = new URLSearchParams();
  if (input('ws-url').value !== defaultWsUrl) params.set('ws', input('ws-url').value);
  for (const id of ['user', 'role', 'name']) if (input(id).value.trim()) params.set(id, input(id).value.trim());
  if (input('token-rooms').value.trim()) params.set('rooms', list(input('token-rooms').value).join(','));
  if (handles.size) params.set('join', [...handles.keys()].join(','));
  params.set('connect', '1');
  byId<HTMLAnchorElement>('share').href = `${location.pathname}?${params}`;
}

function start(): void {
  const params = new URLSearchParams(location.search);
  input('ws-url').value = params.get('ws') ?? defaultWsUrl;
  input('user').value = params.get('user') ?? '';
  input('role').value = params.get('role') ?? '';
  input('name').value = params.get('name') ?? '';
  input('token-rooms').value = params.get('rooms') ?? '';

  byId('connect-form').addEventListener('submit', (event) => {
    event.preventDefault();
    connect();
  });
  input('disconnect').addEventListener('click', () => client?.disconnect());
  byId('join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void joinRoom(input('join-room').value.trim());
    input('join-room').value = '';
  });
  byId('send-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const room = byId<HTMLSelectElement>('send-room').value;
    const content = input('message').value;
    if (!client || !room || !content) return;
    input('message').value = '';
    const handle = handles.get(room);
    const sent = handle ? handle.send(content) : client.request('message:send', { room, content });
    sent.then((ack) => showMessage(ack.message), (error: unknown) => say(byId('rooms-status'), errorText(error), true));
  });
  input('message').addEventListener('input', () => {
    const room = byId<HTMLSelectElement>('send-room').value;
    const handle = handles.get(room);
    if (handle) handle.startTyping();
    else if (room) client?.send('typing:start', { room });
  });
  byId('set-status').addEventListener('click', () => {
    const status = byId<HTMLSelectElement>('my-status').value as 'online' | 'away' | 'busy';
    client?.request('presence:set', { status }).catch((error: unknown) => say(byId('connect-status'), errorText(error), true));
  });
  byId('watch-form').addEventListener('submit', (event) => {
    event.preventDefault();
    client?.subscribePresence(list(input('watch-users').value), (presence) => {
      const target = byId('presence');
      target.querySelector(`[data-user="${CSS.escape(presence.userId)}"]`)?.remove();
      target.append(el('li', { 'data-user': presence.userId }, el('strong', {}, presence.userId), ` ${presence.status}${presence.online ? '' : ' (offline)'}`));
    });
  });
  byId('read-all').addEventListener('click', () => {
    client?.readNotifications().catch((error: unknown) => say(byId('connect-status'), errorText(error), true));
  });
  byId('call-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const recipientId = input('callee').value.trim();
    const callType = byId<HTMLSelectElement>('call-type').value as 'audio' | 'video';
    client
      ?.request('call:initiate', { recipientId, callType })
      .then((started) => {
        watchCall(started.callId, 'ringing');
        callLog(`calling ${recipientId}`);
      })
      .catch((error: unknown) => callLog(`call failed: ${errorText(error)}`));
  });
  input('call-accept').addEventListener('click', () => void callAction('accept'));
  input('call-reject').addEventListener('click', () => void callAction('reject'));
  input('call-end').addEventListener('click', () => void callAction('end'));
  byId('signal-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const raw = input('signal').value;
    let payload: unknown = raw;
    try {
      payload = JSON.parse(raw);
    } catch {
      // Plain text is relayed as a string.
    }
    call?.signal(payload).then(() => callLog(`signal sent: ${raw}`), (error: unknown) => callLog(`signal failed: ${errorText(error)}`));
  });
  byId('emit-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void emit();
  });
  input('frame-filter').addEventListener('input', () => {
    for (const item of byId('frames').children) applyFilter(item as HTMLElement);
  });
  byId('frames-clear').addEventListener('click', () => {
    byId('frames').replaceChildren();
    framesShown = 0;
  });
  for (const id of ['ws-url', 'user', 'role', 'name', 'token-rooms']) input(id).addEventListener('input', updateShareLink);
  updateShareLink();

  if (params.get('connect') === '1' && input('user').value) {
    connect();
    const join = list(params.get('join') ?? '');
    if (join.length) void client?.ready().then(() => Promise.all(join.map(joinRoom)));
  }
}

async function emit(): Promise<void> {
  const report = byId('emit-report');
  let data: unknown;
  try {
    data = JSON.parse(byId<HTMLTextAreaElement>('emit-data').value || 'null');
  } catch (error) {
    return say(report, `data is not JSON: ${errorText(error)}`, true);
  }
  const hub = createServerClient({ url: location.origin, apiKey: input('emit-key').value, retries: 0 });
  const request: EmitRequest = { event: input('emit-event').value.trim(), data, persist: input('emit-persist').checked };
  const roomsTo = list(input('emit-rooms').value);
  const usersTo = list(input('emit-users').value);
  if (roomsTo.length) request.rooms = roomsTo;
  if (usersTo.length) request.users = usersTo;
  try {
    say(report, JSON.stringify(await hub.emit(request), null, 2));
  } catch (error) {
    say(report, errorText(error), true);
  }
}

start();
