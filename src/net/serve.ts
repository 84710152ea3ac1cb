import { UsageError } from '../errors.js';
import type { Protocol } from './address.js';
import { type BinderChoice, type BinderName, resolveBinder } from './binder.js';
import { decideEngine, type EngineRequest, requestedEngine } from './engine.js';
import { engineAvailability } from './native.js';
import { isRoot, resolveUser, type UserIdentity } from './users.js';
import { spawnWorker, stopAll, type WorkerEvent, type WorkerExit, type WorkerProcess } from './worker-pool.js';

export interface ServeOptions {
  host: string;
  port: number;
  workers: number;
  protocol: Protocol;
  reusePort: boolean;
  user?: string;
  binder: BinderChoice;
  /** `--engine`; absent: REUSEPORT_ENGINE, else auto. See WorkerConfig.engine. */
  engine?: EngineRequest;
}

export interface ServeSummary {
  address: string;
  port: number;
  protocol: Protocol;
  binder: BinderName;
  /** Why serving ended: asked to stop, a bind failed, or a worker died on its own. */
  outcome: 'stopped' | 'bind-failed' | 'crashed';
  workers: WorkerExit[];
  total: number;
  /** Non-zero when the outcome is a failure; 2 where the input was at fault. */
  exitCode: number;
  failure?: string;
}

/**
 * Runs `workers` processes that each bind host:port and count what they accept,
 * until `signal` aborts or a worker fails. Reports progress through `onEvent`.
 */
export async function serve(
  options: ServeOptions,
  onEvent: (event: WorkerEvent) => void,
  signal: AbortSignal,
): Promise<ServeSummary> {
  let user: UserIdentity | undefined;
  if (options.user !== undefined) {
    if (!isRoot()) throw new UsageError(`--user needs root: only root can create sockets as another user`);
    user = resolveUser(options.user);
  }
  const binder = await resolveBinder(options.binder);
  const requested = requestedEngine(options.engine);
  const engine = decideEngine({ requested, protocol: options.protocol, binder, ...engineAvailability() });
  const workers: WorkerProcess[] = [];
  let failure: { outcome: ServeSummary['outcome']; message: string; exitCode: number } | undefined;
  let wake: () => void = () => {};
  const woken = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const onAbort = () => wake();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const start = (workerId: number, port: number) =>
      spawnWorker(
        {
          workerId,
          protocol: options.protocol,
          address: options.host,
          port,
          reusePort: options.reusePort,
          binder,
          engine,
          ...(user ? { user } : {}),
        },
        onEvent,
      );
    let port = options.port;
    if (port === 0) {
      // Port 0: the first worker lets the kernel choose, the others join that port.
      const first = start(1, 0);
      workers.push(first);
      const outcome = await first.bound;
      if (outcome.ok) port = outcome.port;
    }
    for (let workerId = workers.length + 1; workerId <= options.workers && port !== 0; workerId++) {
      workers.push(start(workerId, port));
    }
    // Every worker binds, or we say which one could not and why.
    const outcomes = await Promise.race([Promise.all(workers.map((w) => w.bound)), woken.then(() => null)]);
    const badBind = outcomes?.find((outcome) => !outcome.ok);
    if (badBind && !badBind.ok) {
      const who = options.workers > 1 ? `worker ${outcomes!.indexOf(badBind) + 1}: ` : '';
      failure = { outcome: 'bind-failed', message: `${who}${badBind.explanation}`, exitCode: badBind.exitCode };
    } else if (!signal.aborted) {
      for (const worker of workers) {
        void worker.exited.then((exit) => {
          if (exit.reason === 'crashed' && !signal.aborted && !failure) {
            failure = {
              outcome: 'crashed',
              message: `worker ${exit.workerId} (pid ${exit.pid}) died on its own (${exit.signal ?? `exit code ${exit.exitCode}`})`,
              exitCode: 1,
            };
            wake();
          }
        });
      }
      await woken;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  const exits = await stopAll(workers);
  const total = exits.reduce((sum, exit) => sum + exit.accepted, 0);
  return {
    address: options.host,
    port: workers.find((w) => w.port !== undefined)?.port ?? options.port,
    protocol: options.protocol,
    binder,
    outcome: failure?.outcome ?? 'stopped',
    workers: exits,
    total,
    exitCode: failure?.exitCode ?? 0,
    ...(failure ? { failure: failure.message } : {}),
  };
}
