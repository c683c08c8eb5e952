/**
 * The one error type the client rejects with. `code` is the hub's stable code (`FORBIDDEN`, `NOT_FOUND`,
 * `INVALID_DATA`…) or one of the client's own: `TIMEOUT` (no ack in time), `DISCONNECTED` (the connection went away
 * before the request could be answered, or it cannot be queued), `CLOSED` (the client was closed).
 */
export class BellhopError extends Error {
  readonly code: string;
  /** True when trying the same request again later may succeed. */
  readonly retryable: boolean;

  constructor(code: string, message: string) {
    super(message);
    this.name = 'BellhopError';
    this.code = code;
    this.retryable = RETRYABLE.includes(code);
  }
}

const RETRYABLE = ['TIMEOUT', 'DISCONNECTED', 'INTERNAL', 'RATE_LIMITED'];
