// A "holding" TCP client: opens connections, optionally sends a few bytes,
// and keeps them open without reading a greeting being required, so that
// they sit in listeners' accept queues until a later step resolves them
// (accept, close the listener, shut it down). It then tells, per connection,
// whether it is still waiting, was reset, or was served and by whom.
import net from 'node:net';
import { UsageError } from '../errors.js';
import { isLoopback } from './address.js';

/** At most this many held connections per client. */
export const HOLD_MAX_CONNECTIONS = 4096;

export interface HoldOptions {
  /** Loopback only (127.0.0.0/8 or ::1). */
  host: string;
  port: number;
  count: number;
  /** Fixed source ports, one per connection; default: ephemeral. */
  sourcePorts?: readonly number[];
  /** Sent on each connection once connected. */
  payload?: Uint8Array;
  /** Every connection is destroyed after this long, whatever happened. Default 30000. */
  lifetimeMs?: number;
}

/**
 * - connecting: SYN sent, handshake not complete (a full SYN queue, or nothing answering yet);
 * - waiting: connected, nothing received (queued, or accepted by someone silent);
 * - served: bytes arrived (`reply` holds the first line);
 * - reset: ECONNRESET or EPIPE, before any byte arrived;
 * - closed: the server closed cleanly without sending anything;
 * - failed: any other error (`error` names it: ECONNREFUSED, ETIMEDOUT, ...).
 */
export type HeldState = 'connecting' | 'waiting' | 'served' | 'reset' | 'closed' | 'failed';

export interface HeldConnection {
  index: number;
  /** The local port once known (0 before the kernel assigned one). */
  localPort: number;
  state: HeldState;
  reply: string;
  /** What came after the first line (a lifecycle worker echoes the client's bytes there). */
  body: string;
  /** The connection is over: the server closed it, or an error ended it. */
  ended: boolean;
  /** The errno name for reset and failed (also when bytes came first and then a reset). */
  error: string | null;
}

interface Held {
  socket: net.Socket;
  record: HeldConnection;
  data: string;
}

export class HoldingClient {
  readonly #held: Held[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #lifetime: NodeJS.Timeout;

  private constructor(options: HoldOptions) {
    for (let index = 0; index < options.count; index++) {
      const localPort = options.sourcePorts?.[index];
      const socket = net.connect({
        host: options.host,
        port: options.port,
        ...(localPort === undefined ? {} : { localPort }),
      });
      const held: Held = {
        socket,
        data: '',
        record: {
          index,
          localPort: localPort ?? 0,
          state: 'connecting',
          reply: '',
          body: '',
          ended: false,
          error: null,
        },
      };
      this.#held.push(held);
      socket.on('connect', () => {
        held.record.localPort = socket.localPort ?? held.record.localPort;
        if (held.record.state === 'connecting') held.record.state = 'waiting';
        if (options.payload !== undefined && options.payload.length > 0) socket.write(options.payload);
        this.#wake();
      });
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        if (held.data.length < 4096) held.data += chunk;
        const newline = held.data.indexOf('\n');
        held.record.reply = newline < 0 ? held.data : held.data.slice(0, newline);
        held.record.body = newline < 0 ? '' : held.data.slice(newline + 1);
        held.record.state = 'served';
        this.#wake();
      });
      socket.on('end', () => {
        held.record.ended = true;
        if (held.record.state !== 'served') held.record.state = 'closed';
        this.#wake();
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        const code = err.code ?? 'UNKNOWN';
        held.record.error = code;
        held.record.ended = true;
        if (held.record.state !== 'served')
          held.record.state = code === 'ECONNRESET' || code === 'EPIPE' ? 'reset' : 'failed';
        this.#wake();
      });
    }
    this.#lifetime = setTimeout(() => this.close(), options.lifetimeMs ?? 30_000);
    this.#lifetime.unref();
  }

  /** Starts the connections. UsageError for a non-loopback host or a count out of range. */
  static open(options: HoldOptions): HoldingClient {
    if (!isLoopback(options.host)) {
      throw new UsageError(`a holding client only connects to loopback (127.0.0.0/8 or ::1), got ${options.host}`);
    }
    if (!Number.isInteger(options.count) || options.count < 1 || options.count > HOLD_MAX_CONNECTIONS) {
      throw new UsageError(`a holding client opens 1 to ${HOLD_MAX_CONNECTIONS} connections, got ${options.count}`);
    }
    if (options.sourcePorts !== undefined && options.sourcePorts.length !== options.count) {
      throw new UsageError(
        `sourcePorts must name one port per connection (${options.count}), got ${options.sourcePorts.length}`,
      );
    }
    return new HoldingClient(options);
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  /** A snapshot, one record per connection, in opening order. */
  report(): HeldConnection[] {
    return this.#held.map((h) => ({ ...h.record }));
  }

  /**
   * Resolves true as soon as `done(report)` holds, false if it still does not
   * after `timeoutMs`. Checked on every connection event, never by polling.
   */
  waitUntil(done: (report: HeldConnection[]) => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!done(this.report())) return;
        finish(true);
      };
      const finish = (value: boolean): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(value);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** Destroys every connection (idempotent). */
  close(): void {
    clearTimeout(this.#lifetime);
    for (const h of this.#held) h.socket.destroy();
    this.#wake();
  }
}

/** Counts per state: what a report says about a set of held connections. */
export function countStates(report: readonly HeldConnection[]): Record<HeldState, number> {
  const counts: Record<HeldState, number> = { connecting: 0, waiting: 0, served: 0, reset: 0, closed: 0, failed: 0 };
  for (const r of report) counts[r.state]++;
  return counts;
}
