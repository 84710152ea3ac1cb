import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { errnoName, formatHostPort, KernelError } from '../errors.js';
import { hardenedExecArgv, nodeChildEnv } from '../process-hardening.js';
import type { Protocol } from './address.js';
import type { BinderName, EffectiveOptions } from './binder.js';
import { CounterFile } from './counter-file.js';
import { explainBindError, explainSpawnError } from './explain.js';
import { processState } from './proc-stat.js';
import type { FromWorker, LifecycleAnswer, LifecycleRequest, ToWorker, WorkerConfig } from './worker-protocol.js';

const WORKER_MAIN = fileURLToPath(new URL('./worker-main.js', import.meta.url));
// Maglev is on by default from Node 22 (V8 12).
const MAGLEV_BY_DEFAULT = Number(process.versions.node.split('.')[0]) >= 22;

/**
 * V8 flags for a worker, which holds one socket and a counter. Measured on
 * Node 20.20 and 24.21 with `npm run bench` (peak RSS after 40k connections):
 * - native engine: the C thread serves, JS only starts up and answers the
 *   parent, so the interpreter alone will do (`--max-opt=0`): no optimizing
 *   compiler's code is ever paged in (Node 24: 51.8 -> 49.2 MiB);
 * - builtin engine: JS runs per connection, so Maglev stays (TurboFan adds
 *   ~5 MiB of code for no measurable speed here), GC and compiles run on the
 *   main thread instead of a pool of helpers, and a 16 MiB old space (live
 *   heap is about 6) is collected before it grows to 32 (71.6 -> 58.0 MiB,
 *   same CPU per connection).
 */
function workerExecArgv(engine: WorkerConfig['engine']): string[] {
  // On Node 20 any V8 flag makes V8 reject Node's built-in code cache (the flags are part
  // of its hash), so every internal module is compiled from source: about 15 ms of CPU per
  // boot. A native-engine worker there is well under 50 MB without them.
  if (engine === 'native')
    return [
      ...(MAGLEV_BY_DEFAULT ? ['--max-opt=0', '--max-semi-space-size=1', '--max-old-space-size=32'] : []),
      ...hardenedExecArgv(),
    ];
  // On Node 20 tier 2 would mean Sparkplug only: 1.6x the CPU per datagram.
  const topTier = MAGLEV_BY_DEFAULT ? ['--max-opt=2'] : [];
  return [...topTier, '--single-threaded', '--max-semi-space-size=1', '--max-old-space-size=16', ...hardenedExecArgv()];
}
export const STOP_TIMEOUT_MS = 3000;
const DEFAULT_STATS_INTERVAL_MS = 250;

export type WorkerEvent =
  | {
      event: 'listening';
      workerId: number;
      pid: number;
      address: string;
      port: number;
      protocol: Protocol;
      binder: BinderName;
      uid: number;
      options?: EffectiveOptions;
    }
  | { event: 'stats'; workerId: number; pid: number; accepted: number }
  | {
      event: 'error';
      workerId: number;
      /** null when the process could not be started at all. */
      pid: number | null;
      code: string;
      errno: number;
      syscall: string;
      message: string;
    }
  | ({ event: 'exit' } & WorkerExit);

/**
 * How a worker ended: `stopped` when asked, `bind-failed`, `killed` when we
 * had to SIGKILL it (it did not stop in time), `crashed` for any death we did
 * not cause (including someone else's kill -9), `spawn-failed` when no process
 * could be started.
 */
export type ExitReason = 'stopped' | 'bind-failed' | 'crashed' | 'killed' | 'spawn-failed';

export type BindOutcome =
  | { ok: true; address: string; port: number; binder: BinderName; uid?: number; options?: EffectiveOptions }
  | { ok: false; error: KernelError; explanation: string; exitCode: number };

export interface WorkerExit {
  workerId: number;
  /** null when no process was started (`spawn-failed`). */
  pid: number | null;
  /**
   * Exact, whatever the reason: read from the worker's counter file, which the
   * worker updates before each greeting and which outlives it. A client that
   * read a greeting is always counted; a worker killed between its accept and
   * its greeting counts that connection too (the client saw no greeting).
   */
  accepted: number;
  reason: ExitReason;
  exitCode: number | null;
  /** The signal that ended the process, e.g. 'SIGKILL' (ours when reason is `killed`). */
  signal: NodeJS.Signals | null;
  /** One line on how it ended, for every reason but `stopped`. */
  detail?: string;
}

export type WorkerSpec = Omit<WorkerConfig, 'statsIntervalMs'> & { statsIntervalMs?: number };

/**
 * The parent's handle on one worker process. The count is read from a file
 * the worker writes before each greeting, so it is exact at any moment, for a
 * frozen worker and after any death.
 */
export class WorkerProcess {
  readonly spec: WorkerSpec;
  /** -1 when no process could be started; `exited` then says why (reason `spawn-failed`). */
  readonly pid: number;
  /** The port the worker actually bound (differs from the spec's when that was 0). */
  port: number | undefined;
  readonly bound: Promise<BindOutcome>;
  /** Resolves once the worker has booted (only meaningful with `holdBind`). */
  readonly ready: Promise<void>;
  readonly exited: Promise<WorkerExit>;
  private readonly child: ChildProcess | undefined;
  private readonly counter: CounterFile | undefined;
  private finalCount: number | undefined;
  private readonly pendingPings = new Map<number, (answered: boolean) => void>();
  private readonly pendingSteps = new Map<number, (answer: LifecycleAnswer) => void>();
  private nextSeq = 1;
  private stopRequested = false;
  private sawStopped = false;
  private bindFailed = false;
  private killedByUs: string | undefined;

  constructor(spec: WorkerSpec, onEvent: (event: WorkerEvent) => void) {
    this.spec = spec;
    const config: WorkerConfig = { statsIntervalMs: DEFAULT_STATS_INTERVAL_MS, ...spec };
    let resolveBound: (outcome: BindOutcome) => void = () => {};
    this.bound = new Promise((resolve) => {
      resolveBound = resolve;
    });
    let resolveReady: () => void = () => {};
    this.ready = new Promise((resolve) => {
      resolveReady = resolve;
    });
    let resolveExited: (exit: WorkerExit) => void = () => {};
    this.exited = new Promise((resolve) => {
      resolveExited = resolve;
    });

    let startError: NodeJS.ErrnoException | undefined;
    try {
      this.counter = CounterFile.create();
      // The counter rides along as fd COUNTER_FD (index 4 of stdio).
      this.child = fork(WORKER_MAIN, [JSON.stringify(config)], {
        // In another network namespace: nsenter execs Node there, and the IPC and counter fds ride through.
        ...(spec.netns
          ? {
              execPath: 'nsenter',
              execArgv: [`--net=${spec.netns}`, '--', process.execPath, ...workerExecArgv(config.engine)],
            }
          : { execArgv: workerExecArgv(config.engine) }),
        env: nodeChildEnv(),
        stdio: ['ignore', 'ignore', 'pipe', 'ipc', this.counter.fd],
        serialization: 'json',
      });
    } catch (err) {
      startError = err as NodeJS.ErrnoException;
    }
    this.pid = this.child?.pid ?? -1;
    const child = this.child;

    const spawnFailed = (err: NodeJS.ErrnoException) => {
      const code = err.code ?? (typeof err.errno === 'number' ? errnoName(err.errno) : 'UNKNOWN');
      const explained = explainSpawnError(code, spec.workerId);
      onEvent({
        event: 'error',
        workerId: spec.workerId,
        pid: null,
        code,
        errno: typeof err.errno === 'number' ? -Math.abs(err.errno) : 0,
        syscall: err.syscall ?? 'spawn',
        message: explained.message,
      });
      resolveBound({
        ok: false,
        error: new KernelError(explained.message, {
          code,
          errno: typeof err.errno === 'number' ? -Math.abs(err.errno) : 0,
          syscall: err.syscall ?? 'spawn',
        }),
        explanation: explained.message,
        exitCode: explained.exitCode,
      });
      resolveReady();
      this.finalCount = 0;
      this.closeCounter();
      const exit: WorkerExit = {
        workerId: spec.workerId,
        pid: null,
        accepted: 0,
        reason: 'spawn-failed',
        exitCode: null,
        signal: null,
        detail: explained.message,
      };
      onEvent({ event: 'exit', ...exit });
      resolveExited(exit);
    };
    if (!child || startError) {
      // Reported on the next tick, like a fork failure, so callers see one way of failing.
      const err = startError ?? new Error('fork returned no process');
      process.nextTick(() => spawnFailed(err));
      return;
    }

    const id = { workerId: spec.workerId, pid: this.pid };
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    child.on('message', (message: FromWorker) => {
      switch (message.type) {
        case 'ready':
          resolveReady();
          break;
        case 'listening':
          this.port = message.port;
          onEvent({
            event: 'listening',
            ...id,
            address: message.address,
            port: message.port,
            protocol: spec.protocol,
            binder: message.binder,
            uid: message.uid,
            ...(message.options ? { options: message.options } : {}),
          });
          resolveBound({
            ok: true,
            address: message.address,
            port: message.port,
            binder: message.binder,
            uid: message.uid,
            ...(message.options ? { options: message.options } : {}),
          });
          break;
        case 'bind-error': {
          this.bindFailed = true;
          const error = new KernelError(message.message, {
            code: message.code,
            errno: message.errno,
            syscall: message.syscall,
            address: spec.address,
            port: spec.port,
          });
          // A socket option refused before or after the bind (steered-socket.ts) is not a bind failure.
          const explained = message.syscall.startsWith('setsockopt(')
            ? { message: `${message.syscall} failed: ${message.code}`, exitCode: 1 }
            : explainBindError(message.code, spec);
          onEvent({
            event: 'error',
            ...id,
            code: message.code,
            errno: message.errno,
            syscall: message.syscall,
            message: explained.message,
          });
          resolveBound({ ok: false, error, explanation: explained.message, exitCode: explained.exitCode });
          break;
        }
        case 'pong':
          this.pendingPings.get(message.seq)?.(true);
          this.pendingPings.delete(message.seq);
          break;
        case 'lifecycle-done': {
          const { type: _type, seq, ...done } = message;
          this.pendingSteps.get(seq)?.(done);
          this.pendingSteps.delete(seq);
          break;
        }
        case 'stopped':
          this.sawStopped = true;
          break;
      }
    });

    let stats: NodeJS.Timeout | undefined;
    if (config.statsIntervalMs > 0) {
      let reported = 0;
      stats = setInterval(() => {
        const now = this.accepted;
        if (now !== reported) {
          reported = now;
          onEvent({ event: 'stats', ...id, accepted: now });
        }
      }, config.statsIntervalMs);
      stats.unref();
    }

    let settled = false;
    // 'close', not 'exit': Node may still deliver IPC messages (a last 'stopped') after 'exit'.
    child.once('close', (exitCode: number | null, signal: NodeJS.Signals | null) => {
      // After a failed spawn Node emits 'error' and then 'close' too: settled once, by 'error'.
      if (settled) return;
      settled = true;
      clearInterval(stats);
      this.finalCount = this.counter?.read() ?? 0;
      this.closeCounter();
      const lastLine = stderr.trim().split('\n').slice(-1)[0] ?? '';
      const how = signal ? `killed by ${signal}` : `exited with code ${exitCode}`;
      let reason: ExitReason;
      let detail: string | undefined;
      if (this.bindFailed) {
        reason = 'bind-failed';
      } else if (this.killedByUs && signal === 'SIGKILL') {
        reason = 'killed';
        detail = this.killedByUs;
      } else if (this.sawStopped || (this.stopRequested && exitCode === 0)) {
        reason = 'stopped';
      } else {
        reason = 'crashed';
        detail = `${how}, not by reuseport${lastLine ? `: ${lastLine}` : ''}`;
      }
      // Settles `bound` for a worker that ended before it was listening (no-op once settled).
      const where = formatHostPort(spec.address, spec.port);
      const before = `worker ${spec.workerId} ${reason === 'stopped' ? 'was stopped' : how} before it was listening${lastLine ? `: ${lastLine}` : ''}`;
      resolveBound({
        ok: false,
        error: new KernelError(`${before} (${where})`, { code: 'ECRASHED', errno: 0, syscall: 'none' }),
        explanation: before,
        exitCode: 1,
      });
      resolveReady();
      for (const pending of this.pendingPings.values()) pending(false);
      this.pendingPings.clear();
      for (const pending of this.pendingSteps.values()) pending({ outcome: 'ECRASHED', syscall: how });
      this.pendingSteps.clear();
      const exit: WorkerExit = {
        ...id,
        accepted: this.finalCount,
        reason,
        exitCode,
        signal,
        ...(detail ? { detail } : {}),
      };
      onEvent({ event: 'exit', ...exit });
      resolveExited(exit);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      // A process that never started has no 'close' to wait for.
      if (child.pid === undefined && !settled) {
        settled = true;
        clearInterval(stats);
        spawnFailed(err);
      }
    });
  }

  /** What the worker has accepted so far: exact at any moment, also while it is frozen or after it died. */
  get accepted(): number {
    return this.finalCount ?? this.counter?.read() ?? 0;
  }

  /** The worker's exact counter (kept a promise for callers written when it came over IPC). */
  count(): Promise<number> {
    return Promise.resolve(this.accepted);
  }

  /** Whether the worker's JavaScript answers within `timeoutMs` (false for a frozen or dead worker). */
  ping(timeoutMs: number): Promise<boolean> {
    if (!this.running()) return Promise.resolve(false);
    const seq = this.nextSeq++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pendingPings.delete(seq);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      this.pendingPings.set(seq, (answered) => {
        clearTimeout(timer);
        resolve(answered);
      });
      this.post({ type: 'ping', seq });
    });
  }

  /** With `holdBind`: go ahead and bind (lifecycle mode: on `port`); resolves with the outcome. */
  bind(port?: number): Promise<BindOutcome> {
    this.post(port === undefined ? { type: 'bind' } : { type: 'bind', port });
    return this.bound;
  }

  /**
   * Lifecycle mode: one step on the worker's own socket. ECRASHED if the
   * worker ends first, ENOANSWER if it does not answer within `timeoutMs`.
   */
  lifecycle(request: LifecycleRequest, timeoutMs: number): Promise<LifecycleAnswer> {
    if (!this.running()) return Promise.resolve({ outcome: 'ECRASHED', syscall: 'the worker is not running' });
    const seq = this.nextSeq++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pendingSteps.delete(seq);
        resolve({ outcome: 'ENOANSWER', syscall: `no answer within ${timeoutMs / 1000} s` });
      }, timeoutMs);
      timer.unref();
      this.pendingSteps.set(seq, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      this.post({ type: 'lifecycle', seq, request });
    });
  }

  /**
   * Asks the worker to close its socket and exit; SIGKILLs it if it has not
   * within `timeoutMs` (the exit's reason is then `killed`).
   */
  stop(timeoutMs = STOP_TIMEOUT_MS): Promise<WorkerExit> {
    if (!this.stopRequested && this.running()) {
      this.stopRequested = true;
      this.post({ type: 'stop' });
      const timer = setTimeout(() => {
        const state = processState(this.pid);
        this.kill(
          `did not stop within ${timeoutMs / 1000} s of being asked${state === 'T' ? ' (it was frozen: stopped by a signal)' : ''}; killed with SIGKILL`,
        );
      }, timeoutMs);
      timer.unref();
      void this.exited.then(() => clearTimeout(timer));
    }
    return this.exited;
  }

  /** Last resort, by pid: only this worker. `why` becomes the exit's detail. */
  kill(why = 'killed with SIGKILL by reuseport'): void {
    if (!this.running()) return;
    this.killedByUs = why;
    this.child?.kill('SIGKILL');
  }

  private running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private closeCounter(): void {
    this.counter?.close();
  }

  private post(message: ToWorker): void {
    if (this.child?.connected)
      this.child.send(message, (err) => err && this.kill(`lost its IPC channel (${err.message})`));
  }
}

export function spawnWorker(spec: WorkerSpec, onEvent: (event: WorkerEvent) => void): WorkerProcess {
  return new WorkerProcess(spec, onEvent);
}

/** Stops every worker and waits for all of them. */
export async function stopAll(workers: readonly WorkerProcess[]): Promise<WorkerExit[]> {
  return Promise.all(workers.map((worker) => worker.stop()));
}
