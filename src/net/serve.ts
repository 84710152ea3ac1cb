import { formatHostPort, UsageError } from '../errors.js';
import type { Protocol } from './address.js';
import { type BinderChoice, type BinderName, resolveBinder } from './binder.js';
import { decideEngine, type EngineRequest, requestedEngine } from './engine.js';
import { listenersOn, type PortListener } from './listeners.js';
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

/** Sockets of other processes that already receive on the port: they will take a share. */
export type ServeWarning = { event: 'warning'; message: string; otherListeners: PortListener[] };

export type ServeEvent = WorkerEvent | ServeWarning;

export interface ServeSummary {
  address: string;
  port: number;
  protocol: Protocol;
  binder: BinderName;
  /** Why serving ended: asked to stop, a bind failed, a worker could not be started, or one died on its own. */
  outcome: 'stopped' | 'bind-failed' | 'spawn-failed' | 'crashed';
  /** Every worker's end; a worker reuseport had to kill has reason `killed`, and the exit code is then 1. */
  workers: WorkerExit[];
  /** Exact: the sum of every worker's counter, dead or alive. */
  total: number;
  /** Other processes' sockets on this port when serving started. */
  otherListeners: PortListener[];
  /** Non-zero when the outcome is a failure or a worker had to be killed; 2 where the input was at fault. */
  exitCode: number;
  failure?: string;
}

/**
 * Runs `workers` processes that each bind host:port and count what they accept,
 * until `signal` aborts or a worker fails. Reports progress through `onEvent`.
 */
export async function serve(
  options: ServeOptions,
  onEvent: (event: ServeEvent) => void,
  signal: AbortSignal,
): Promise<ServeSummary> {
  let user: UserIdentity | undefined;
  if (options.user !== undefined) {
    if (!isRoot()) throw new UsageError(`--user needs root: only root can create sockets as another user`);
    try {
      user = resolveUser(options.user);
    } catch (err) {
      throw err instanceof UsageError ? new UsageError(`--user: ${err.message}`) : err;
    }
  }
  const binder = await resolveBinder(options.binder);
  const requested = requestedEngine(options.engine);
  const engine = decideEngine({ requested, protocol: options.protocol, binder, ...engineAvailability() });
  const otherListeners = options.port === 0 ? [] : listenersOn(options.protocol, options.port);
  if (otherListeners.length > 0) {
    onEvent({ event: 'warning', message: describeOtherListeners(options, otherListeners), otherListeners });
  }
  const workers: WorkerProcess[] = [];
  let failure: { outcome: ServeSummary['outcome']; message: string; exitCode: number } | undefined;
  /** Workers the failure message already names. */
  const named = new Set<number>();
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
      const outcome = await Promise.race([first.bound, woken.then(() => null)]);
      if (outcome?.ok) port = outcome.port;
    }
    for (let workerId = workers.length + 1; workerId <= options.workers && port !== 0; workerId++) {
      workers.push(start(workerId, port));
    }
    // Every worker binds, or we say which one could not and why.
    const outcomes = await Promise.race([Promise.all(workers.map((w) => w.bound)), woken.then(() => null)]);
    const badIndex = outcomes?.findIndex((outcome) => !outcome.ok) ?? -1;
    const badBind = outcomes?.[badIndex];
    if (badBind && !badBind.ok) {
      const exit = await workers[badIndex]!.exited;
      named.add(exit.workerId);
      const who = options.workers > 1 && exit.reason !== 'spawn-failed' ? `worker ${badIndex + 1}: ` : '';
      failure = {
        outcome: exit.reason === 'spawn-failed' ? 'spawn-failed' : 'bind-failed',
        message: `${who}${badBind.explanation}`,
        exitCode: badBind.exitCode,
      };
    } else if (!signal.aborted) {
      for (const worker of workers) {
        void worker.exited.then((exit) => {
          if (exit.reason === 'crashed' && !signal.aborted && !failure) {
            named.add(exit.workerId);
            failure = {
              outcome: 'crashed',
              message: `worker ${exit.workerId} (pid ${exit.pid}) died on its own (${exit.signal ?? `exit code ${exit.exitCode}`}); it had accepted ${exit.accepted}`,
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
  // Deaths after the stop began (a kill during shutdown, or ours after the timeout) fail the run too.
  const unclean = exits.filter(
    (exit) => (exit.reason === 'killed' || exit.reason === 'crashed') && !named.has(exit.workerId),
  );
  const uncleanMessages = unclean.map(
    (exit) =>
      `worker ${exit.workerId} (pid ${exit.pid}) ${exit.reason === 'killed' ? exit.detail : `died: ${exit.detail}`}; it had accepted ${exit.accepted}`,
  );
  const total = exits.reduce((sum, exit) => sum + exit.accepted, 0);
  const message = [failure?.message, ...uncleanMessages].filter(Boolean).join('; ');
  return {
    address: options.host,
    port: workers.find((w) => w.port !== undefined)?.port ?? options.port,
    protocol: options.protocol,
    binder,
    outcome: failure?.outcome ?? 'stopped',
    workers: exits,
    total,
    otherListeners,
    exitCode: failure?.exitCode ?? (unclean.length > 0 ? 1 : 0),
    ...(message ? { failure: message } : {}),
  };
}

function describeOtherListeners(options: ServeOptions, listeners: PortListener[]): string {
  const who = listeners
    .map((l) => {
      const where = formatHostPort(l.address, l.port);
      return l.pid === null
        ? `a process we cannot see (uid ${l.uid}) on ${where}`
        : `pid ${l.pid} (${l.command ?? '?'}) on ${where}`;
    })
    .join(', ');
  return `other processes already receive on ${options.protocol} port ${options.port}: ${who}; if they share the workers' address they take a share of the traffic that these counts do not include`;
}
