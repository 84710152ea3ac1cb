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
}

export type ToWorker = { type: 'bind' } | { type: 'stop' } | { type: 'ping'; seq: number };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'listening'; address: string; port: number; binder: BinderName; uid: number; options?: EffectiveOptions }
  | { type: 'bind-error'; code: string; errno: number; syscall: string; message: string }
  | { type: 'pong'; seq: number }
  | { type: 'stopped' };
