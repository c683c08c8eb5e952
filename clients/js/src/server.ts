/**
 * `bellhop-client/server`: for platform services (a booking backend, a bot, a worker) that push events to rooms and
 * users through the hub's internal HTTP API, authenticated with the internal API key.
 *
 * `emit()` gives every request an `idempotencyKey` (yours, or a random one) and retries network failures, `409`
 * (the same key still in flight), `429` and `5xx` with full-jitter backoff: the hub answers a repeated key with the
 * first report and delivers nothing twice. Other refusals reject at once with an `EmitError` carrying the hub's code.
 */
import { randomId } from './id.js';

export interface EmitOptions {
  /** The HTTP API's base URL: `http://127.0.0.1:3001` for the harness, the HTTP API's invoke URL on AWS. */
  url: string;
  /** The internal API key (`INTERNAL_API_KEY`), sent as `x-api-key`. */
  apiKey: string;
  /** A `fetch` where there is no global one. */
  fetch?: typeof fetch;
  /** Per attempt. Default 10 s. */
  timeoutMs?: number;
  /** Attempts after the first. Default 3. */
  retries?: number;
  /** Backoff base. Default 200 ms (a random wait up to 200 ms, 400 ms, 800 ms…). */
  retryDelayMs?: number;
}

/** What `POST /internal/emit` takes. */
export interface EmitRequest<D = unknown> {
  event: string;
  data?: D;
  rooms?: string[];
  users?: string[];
  connections?: string[];
  exceptConnection?: string;
  /** Store the event in each room's history, with a `seq` clients recover by. */
  persist?: boolean;
  broadcast?: boolean;
  notification?: { title: string; message: string; kind?: string; data?: unknown };
  /** Defaults to a random key per `emit()` call, so its retries are never delivered twice. */
  idempotencyKey?: string;
}

/** What the hub did with an emit. */
export interface EmitReport {
  recipients: number;
  delivered: number;
  pruned: number;
  failed: number;
  seqs?: Record<string, number>;
  notified: number;
  /** True when this answers an earlier request with the same key. */
  duplicate: boolean;
}

/**
 * A refusal or failure of the internal API. `code` is the hub's (`MISSING_EVENT`, `INVALID_ROOM`, `FORBIDDEN`,
 * `PAYLOAD_TOO_LARGE`…) or `NETWORK` / `TIMEOUT`; `status` is the HTTP status (0 without an answer).
 */
export class EmitError extends Error {
  readonly code: string;
  readonly status: number;
  readonly retryable: boolean;

  constructor(code: string, message: string, status: number) {
    super(message);
    this.name = 'EmitError';
    this.code = code;
    this.status = status;
    this.retryable = status === 0 || status === 409 || status === 429 || status >= 500;
  }
}

export interface ServerClient {
  /** Pushes one event; resolves with the hub's report. */
  emit<D = unknown>(request: EmitRequest<D>): Promise<EmitReport>;
  /** Lets users join a granted room (`booking:42`, `visit:7`…). */
  grant(room: string, users: string[]): Promise<unknown>;
  /** Takes the grant back. */
  revoke(room: string, users: string[]): Promise<unknown>;
  /** Closes a connection (the client reconnects: use it to make a client re-authenticate). */
  disconnect(connectionId: string): Promise<unknown>;
}

export function createServerClient(options: EmitOptions): ServerClient {
  const base = options.url.replace(/\/+$/, '');
  const doFetch = options.fetch ?? globalThis.fetch;
  if (!doFetch) throw new TypeError('bellhop-client/server: no global fetch here; pass one as the `fetch` option');
  const retries = options.retries ?? 3;
  const delay = options.retryDelayMs ?? 200;

  async function once(method: string, path: string, body: unknown): Promise<unknown> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), options.timeoutMs ?? 10_000);
    let answer: Response;
    try {
      answer = await doFetch(base + path, {
        method,
        headers: { 'x-api-key': options.apiKey, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: abort.signal,
      });
    } catch (cause) {
      throw abort.signal.aborted
        ? new EmitError('TIMEOUT', `no answer from ${path} in time`, 0)
        : new EmitError('NETWORK', `could not reach the hub: ${String(cause)}`, 0);
    } finally {
      clearTimeout(timer);
    }
    const text = await answer.text();
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (answer.ok) return parsed;
    const error = parsed?.error;
    throw new EmitError(error?.code ?? `HTTP_${answer.status}`, error?.message ?? text.slice(0, 200), answer.status);
  }

  async function send(method: string, path: string, body?: unknown): Promise<any> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await once(method, path, body);
      } catch (error) {
        if (!(error as EmitError).retryable || attempt >= retries) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * delay * 2 ** attempt));
      }
    }
  }

  const members = (method: string) => (room: string, users: string[]) =>
    send(method, `/internal/rooms/${encodeURIComponent(room)}/members`, { users });

  return {
    emit: (request) => send('POST', '/internal/emit', { idempotencyKey: randomId(), ...request }),
    grant: members('PUT'),
    revoke: members('DELETE'),
    disconnect: (connectionId) => send('DELETE', `/internal/connections/${encodeURIComponent(connectionId)}`),
  };
}
