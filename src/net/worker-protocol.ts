import type { BinderName, BindRequest, EffectiveOptions } from './binder.js';
import type { EngineName } from './engine.js';
import type { UserIdentity } from './users.js';

/** What a worker process is told to do (passed as JSON in argv). */
export interface WorkerConfig extends BindRequest {
  workerId: number;
  binder: BinderName;
  user?: UserIdentity;
  /** How often unsolicited counter updates are pushed; 0 disables them. */
  statsIntervalMs: number;
  /**
   * Boot, say `ready`, and bind only when told. Booting Node is the slow part,
   * so a scenario boots every worker at once and still binds them in order.
   */
  holdBind?: boolean;
  /** Who accepts, as decideEngine chose in the parent: the worker never decides again. */
  engine: EngineName;
}

export type ToWorker = { type: 'bind' } | { type: 'stop' } | { type: 'count'; seq: number };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'listening'; address: string; port: number; binder: BinderName; uid: number; options?: EffectiveOptions }
  | { type: 'bind-error'; code: string; errno: number; syscall: string; message: string }
  | { type: 'count'; accepted: number; seq: number }
  | { type: 'stopped'; accepted: number };
