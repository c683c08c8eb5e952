// The page the browser test loads: the bundled SDK and its React hooks, rendered in StrictMode, with the browser's
// own WebSocket wrapped to count sockets and frames. The test drives it through `window.bellhop`.
import { type Client, createClient } from 'bellhop-client';
import { BellhopProvider, useBellhop, useEvent, useRoom } from 'bellhop-client/react';
import { createElement, StrictMode, useEffect } from 'react';
import { createRoot } from 'react-dom/client';

const sent: Array<{ action: string }> = [];
let sockets = 0;
class CountingWebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols);
    sockets++;
  }
  override send(data: string): void {
    sent.push(JSON.parse(data));
    super.send(data);
  }
}

const ROOM = 'topic:browser';
const seen: Array<{ content: string; seq: number; recovered: boolean }> = [];
let client: Client | undefined;
/** Effect mounts of the component: 2 proves StrictMode's mount → unmount → mount ran. */
let mounts = 0;

function Chat() {
  const { state } = useBellhop();
  const room = useRoom(ROOM, { recover: true });
  useEffect(() => {
    mounts++;
  }, []);
  useEvent('message:new', (message: any, meta) => seen.push({ content: message.content, seq: meta.seq!, recovered: meta.recovered }), ROOM);
  return createElement('p', { id: 'status' }, `${state} ${room ? 'in-room' : 'no-room'}`);
}

const api = {
  start(url: string, token: string): void {
    client = createClient({ url, getToken: () => token, WebSocket: CountingWebSocket, reconnect: { minMs: 10, maxMs: 50 } });
    const root = createRoot(document.getElementById('app')!);
    root.render(createElement(StrictMode, null, createElement(BellhopProvider, { client }, createElement(Chat))));
  },
  status: () => ({
    state: client?.state,
    connectionId: client?.connectionId,
    sockets,
    mounts,
    joins: sent.filter((f) => f.action === 'room:join').length,
    leaves: sent.filter((f) => f.action === 'room:leave').length,
    seen,
    text: document.getElementById('status')?.textContent,
  }),
  async send(content: string): Promise<number> {
    const room = client!.room(ROOM);
    try {
      const ack: any = await room.send(content);
      return ack.message.seq;
    } finally {
      room.leave();
    }
  },
  /**
   * A second client whose reconnects wait a minute, and what it reported: shows that `online` skips the backoff,
   * and that a refused handshake is explained through `GET /me`.
   */
  other: undefined as Client | undefined,
  changes: [] as Array<{ to: string; reason: unknown; at: number }>,
  startOther(url: string, token: string): void {
    api.other = createClient({ url, getToken: () => token, reconnect: { minMs: 60_000, maxMs: 60_000 } });
    api.other.on('state', ({ to, reason }) => api.changes.push({ to, reason, at: performance.now() }));
  },
  online: () => window.dispatchEvent(new Event('online')),
  disconnect: () => client!.disconnect(),
  connect: () => client!.connect(),
};
(window as unknown as { bellhop: typeof api }).bellhop = api;
