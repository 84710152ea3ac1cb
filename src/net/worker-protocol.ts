import type { BinderName, BindRequest, EffectiveOptions } from './binder.js';
import type { EngineName } from './engine.js';
import type { UserIdentity } from './users.js';

/**
 * The worker's accept counter: an unnamed file the parent opened and hands
 * over as this fd. The count is its first 8 bytes (an unsigned 64-bit integer
 * in host byte order), written before each greeting or reply, so the parent
 * reads the exact count whenever it likes, and after any death.
 */
export const COUNTER_FD = 4;
export const COUNTER_BYTES = 8;

/** What a worker process is told to do (passed as JSON in argv). */
export interface WorkerConfig extends BindRequest {
  workerId: number;
  binder: BinderName;
  user?: UserIdentity;
  /** How often the parent reads the counter for `stats` events; 0 disables them. */
  statsIntervalMs: number;
  /**
   * Boot, say `ready`, and bind only when told. Booting Node is the slow part,
   * so a scenario boots every worker at once and still binds them in order.
   */
  holdBind?: boolean;
  /** Who accepts, as decideEngine chose in the parent: the worker never decides again. */
  engine: EngineName;
  /** A network namespace to run in (/proc/PID/ns/net of a process there), entered with nsenter before Node starts. */
  netns?: string;
  /**
   * Scenario lifecycle mode (TCP, native helper): the worker drives its socket
   * one syscall at a time on `lifecycle` requests (worker-lifecycle.ts), and
   * `bind` means bind plus listen, on the port the request names.
   */
  lifecycle?: WorkerLifecycleConfig;
}

/** When a lifecycle worker gives its socket to another owner with fchown(2). */
export type FchownAt = 'before-bind' | 'after-bind' | 'after-listen';

export interface WorkerLifecycleConfig {
  /** listen(2)'s backlog. */
  backlog: number;
  fchown?: { uid: number; gid: number; at: FchownAt };
}

/** One lifecycle step on a worker's own socket. */
export type LifecycleRequest =
  | { op: 'bind'; port: number }
  | { op: 'listen' }
  | { op: 'close' }
  | { op: 'shutdown' }
  | { op: 'setsockopt'; option: 'SO_REUSEPORT' | 'SO_REUSEADDR'; value: boolean }
  | { op: 'pause' }
  | { op: 'resume' };

/** What a lifecycle step did: `ok` or the errno name of the call that failed. */
export interface LifecycleAnswer {
  outcome: string;
  /** The failed call, e.g. "listen" or "setsockopt(SO_REUSEPORT)". */
  syscall?: string;
  /** The bound port (after bind, listen). */
  port?: number;
  /** close / shutdown: connections that were waiting in the accept queue just before. */
  queued?: number;
}

export type ToWorker =
  | { type: 'bind'; port?: number }
  | { type: 'stop' }
  | { type: 'ping'; seq: number }
  | { type: 'lifecycle'; seq: number; request: LifecycleRequest };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'listening'; address: string; port: number; binder: BinderName; uid: number; options?: EffectiveOptions }
  | { type: 'bind-error'; code: string; errno: number; syscall: string; message: string }
  | { type: 'pong'; seq: number }
  | ({ type: 'lifecycle-done'; seq: number } & LifecycleAnswer)
  | { type: 'stopped' };
