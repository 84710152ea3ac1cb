import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { formatHostPort, KernelError } from '../errors.js';
import type { Protocol } from './address.js';
import type { BinderName, EffectiveOptions } from './binder.js';
import { explainBindError } from './explain.js';
import type { FromWorker, ToWorker, WorkerConfig } from './worker-protocol.js';

const WORKER_MAIN = fileURLToPath(new URL('./worker-main.js', import.meta.url));
// A worker holds one socket and a counter; a small young generation keeps its
// RSS well under 50 MB even while it accepts thousands of connections a second.
const WORKER_EXEC_ARGV = ['--max-semi-space-size=1', '--max-old-space-size=32'];
const STOP_TIMEOUT_MS = 3000;

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
      pid: number;
      code: string;
      errno: number;
      syscall: string;
      message: string;
    }
  | ({ event: 'exit' } & WorkerExit);

export type ExitReason = 'stopped' | 'bind-failed' | 'crashed';

export type BindOutcome =
  | { ok: true; address: string; port: number; binder: BinderName; uid?: number; options?: EffectiveOptions }
  | { ok: false; error: KernelError; explanation: string; exitCode: number };

export interface WorkerExit {
  workerId: number;
  pid: number;
  accepted: number;
  reason: ExitReason;
  exitCode: number | null;
  signal: string | null;
}

export type WorkerSpec = Omit<WorkerConfig, 'statsIntervalMs'> & { statsIntervalMs?: number };

/**
 * The parent's handle on one worker process. The worker's own counter is the
 * truth; `accepted` here is the last value it reported.
 */
export class WorkerProcess {
  readonly spec: WorkerSpec;
  readonly pid: number;
  accepted = 0;
  /** The port the worker actually bound (differs from the spec's when that was 0). */
  port: number | undefined;
  readonly bound: Promise<BindOutcome>;
  /** Resolves once the worker has booted (only meaningful with `holdBind`). */
  readonly ready: Promise<void>;
  readonly exited: Promise<WorkerExit>;
  private readonly child: ChildProcess;
  private readonly pendingCounts = new Map<number, (n: number) => void>();
  private nextSeq = 1;
  private stopRequested = false;
  private sawStopped = false;
  private bindFailed = false;

  constructor(spec: WorkerSpec, onEvent: (event: WorkerEvent) => void) {
    this.spec = spec;
    const config: WorkerConfig = { statsIntervalMs: 250, ...spec };
    this.child = fork(WORKER_MAIN, [JSON.stringify(config)], {
      execArgv: WORKER_EXEC_ARGV,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'json',
    });
    this.pid = this.child.pid ?? -1;
    let stderr = '';
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    const id = { workerId: spec.workerId, pid: this.pid };
    let resolveBound: (outcome: BindOutcome) => void = () => {};
    this.bound = new Promise((resolve) => {
      resolveBound = resolve;
    });
    let resolveReady: () => void = () => {};
    this.ready = new Promise((resolve) => {
      resolveReady = resolve;
    });
    this.child.on('message', (message: FromWorker) => {
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
          const explained = explainBindError(message.code, spec);
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
        case 'count':
          if (message.accepted !== this.accepted) {
            this.accepted = message.accepted;
            onEvent({ event: 'stats', ...id, accepted: message.accepted });
          }
          this.pendingCounts.get(message.seq)?.(message.accepted);
          this.pendingCounts.delete(message.seq);
          break;
        case 'stopped':
          this.sawStopped = true;
          this.accepted = message.accepted;
          break;
      }
    });
    this.exited = new Promise((resolve) => {
      const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
        const reason: ExitReason = this.bindFailed ? 'bind-failed' : this.sawStopped ? 'stopped' : 'crashed';
        if (reason === 'crashed') {
          const detail = stderr.trim().split('\n').slice(-1)[0] ?? '';
          const why = signal ? `killed by ${signal}` : `exited with code ${exitCode}`;
          const where = formatHostPort(spec.address, spec.port);
          resolveBound({
            ok: false,
            error: new KernelError(`worker ${spec.workerId} for ${where} ${why}${detail ? `: ${detail}` : ''}`, {
              code: 'ECRASHED',
              errno: 0,
              syscall: 'none',
            }),
            explanation: `worker ${spec.workerId} ${why} before it was listening${detail ? `: ${detail}` : ''}`,
            exitCode: 1,
          });
        }
        resolveReady();
        for (const pending of this.pendingCounts.values()) pending(this.accepted);
        this.pendingCounts.clear();
        const exit: WorkerExit = { ...id, accepted: this.accepted, reason, exitCode, signal };
        onEvent({ event: 'exit', ...exit });
        resolve(exit);
      };
      this.child.once('exit', finish);
      this.child.once('error', () => finish(null, null));
    });
  }

  /** The worker's exact counter, asked over IPC (ordered after every accept it has made so far). */
  count(): Promise<number> {
    if (this.child.exitCode !== null || this.child.signalCode !== null || !this.child.connected) {
      return Promise.resolve(this.accepted);
    }
    const seq = this.nextSeq++;
    return new Promise((resolve) => {
      this.pendingCounts.set(seq, resolve);
      this.post({ type: 'count', seq });
    });
  }

  /** With `holdBind`: go ahead and bind; resolves with the outcome. */
  bind(): Promise<BindOutcome> {
    this.post({ type: 'bind' });
    return this.bound;
  }

  /** Asks the worker to close its socket and report its final counter; kills it if it does not. */
  stop(timeoutMs = STOP_TIMEOUT_MS): Promise<WorkerExit> {
    if (!this.stopRequested && this.child.exitCode === null && this.child.signalCode === null) {
      this.stopRequested = true;
      this.post({ type: 'stop' });
      const timer = setTimeout(() => this.kill(), timeoutMs);
      timer.unref();
      void this.exited.then(() => clearTimeout(timer));
    }
    return this.exited;
  }

  /** Last resort, by pid: only this worker. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  private post(message: ToWorker): void {
    if (this.child.connected) this.child.send(message, (err) => err && this.kill());
  }
}

export function spawnWorker(spec: WorkerSpec, onEvent: (event: WorkerEvent) => void): WorkerProcess {
  return new WorkerProcess(spec, onEvent);
}

/** Stops every worker and waits for all of them. */
export async function stopAll(workers: readonly WorkerProcess[]): Promise<WorkerExit[]> {
  return Promise.all(workers.map((worker) => worker.stop()));
}
