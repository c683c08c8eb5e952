/** What the three pages share: element helpers, JSON over fetch with the hub's error envelope, and formatting. */

/** The element with this id; a page that lacks one of its own elements is a build bug, so this throws. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element as T;
}

/** Builds an element with text content (never HTML: everything shown comes from the network). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  for (const child of children) element.append(child);
  return element;
}

/** An error answered by the hub in its envelope `{ error: { code, message } }`. */
export class HubError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(`${code}: ${message}`);
  }
}

/** A JSON request to this origin; rejects with a `HubError` carrying the hub's code. */
export async function api<T>(method: string, path: string, options: { body?: unknown; apiKey?: string } = {}): Promise<T> {
  const headers: Record<string, string> = {};
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.apiKey) headers['x-api-key'] = options.apiKey;
  const init: RequestInit = { method, headers };
  if (options.body !== undefined) init.body = JSON.stringify(options.body);
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed: any;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    throw new HubError(`HTTP_${response.status}`, text.slice(0, 200), response.status);
  }
  if (!response.ok) {
    throw new HubError(parsed?.error?.code ?? `HTTP_${response.status}`, parsed?.error?.message ?? text.slice(0, 200), response.status);
  }
  return parsed as T;
}

/** `a, b , c` → `['a', 'b', 'c']`. */
export function list(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

export function time(iso: string | Date = new Date()): string {
  const date = typeof iso === 'string' ? new Date(iso) : iso;
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleTimeString();
}

/** Shows a message in a status line, as an error when `error` is set. */
export function say(target: HTMLElement, message: string, error = false): void {
  target.textContent = message;
  target.classList.toggle('error', error);
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
